"""Chat backends for in-process service tests: scripted, so every test knows the exact output."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from rag.errors import UpstreamUnavailable
from rag.types import ChatRequest, Delta, Usage


@dataclass
class ScriptedChat:
    """Streams ``words`` one delta at a time (``{n}`` = number of sources); can fail or stall on purpose.

    ``fail_at``: raise UpstreamUnavailable before yielding that delta (0 = before any output).
    ``delay_s``: sleep before each delta, so a test can disconnect mid-stream.
    """

    words: tuple[str, ...] = ("The", " answer", " is", " here", " [1]", ".")
    fail_at: int | None = None
    delay_s: float = 0.0
    healthy: bool = True
    usage: Usage | None = None
    requests: list[ChatRequest] = field(default_factory=list)
    sent: int = 0
    closed_streams: int = 0

    @property
    def name(self) -> str:
        """Label reported in X-RAG-Backend."""
        return "scripted://test"

    async def stream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        """Yield the scripted words, then a final delta with finish_reason."""
        self.requests.append(request)
        try:
            for i, word in enumerate(self.words):
                if self.fail_at == i:
                    raise UpstreamUnavailable("the model server went away")
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                self.sent += 1
                yield Delta(text=word)
            yield Delta(finish_reason="stop", usage=self.usage)
        finally:
            self.closed_streams += 1

    async def health(self) -> bool:
        """As configured."""
        return self.healthy

    async def close(self) -> None:
        """Nothing to release."""
