"""One chat adapter for every server that speaks the OpenAI chat-completions protocol.

- ``openai://?model=gpt-4o-mini``: the OpenAI API (needs ``RAG_CHAT__API_KEY``).
- ``openai+http://host:port/v1?model=x`` / ``openai+https://...``: any OpenAI-compatible server
  (vLLM, llama.cpp's server, LM Studio, Ollama's ``/v1``); an empty path means ``/v1``.
- ``kserve+http://isvc.ns.svc/openai/v1?model=x``: a KServe predictor; an empty path means ``/openai/v1``.

Optional query parameters: ``retries`` (SDK retries, default 1); ``fold_system=true`` sends the
system message (sources and rules) at the start of the first user message, for servers whose chat
template drops the system role (llama.cpp's server with ``--chat_format gemma``); ``features=``
(comma-separated, default ``response_format,tools,logprobs``; ``none`` for none) names the optional
request features the server's model honours, so requests needing others are refused instead of
being answered with prose.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from rag.chat import flag, wire_messages
from rag.errors import ConfigError
from rag.openai_client import convert_openai_error, make_async_client, openai_base_url, require_model
from rag.types import ChatRequest, Delta, ToolCallDelta, Usage

if TYPE_CHECKING:
    from rag.config import Settings
    from rag.registry import BackendURL

log = logging.getLogger(__name__)

HEALTH_TIMEOUT_S = 3.0
ALL_FEATURES = frozenset({"response_format", "tools", "logprobs"})


def _estimate_tokens(text: str) -> int:
    return len(text.split())


class OpenAIChat:
    """Streams chat completions from an OpenAI-protocol endpoint through ``openai.AsyncOpenAI``."""

    def __init__(
        self,
        client: Any,
        model: str,
        *,
        name: str,
        endpoint: str,
        default_max_tokens: int = 512,
        default_temperature: float = 0.1,
        fold_system: bool = False,
        features: frozenset[str] = ALL_FEATURES,
    ) -> None:
        self._fold_system = fold_system
        self._features = features
        self._client = client
        self._model = model
        self._name = name
        self._endpoint = endpoint
        self._default_max_tokens = default_max_tokens
        self._default_temperature = default_temperature

    @property
    def name(self) -> str:
        """The backend URL this adapter was built from."""
        return self._name

    @property
    def model(self) -> str:
        """The upstream model id."""
        return self._model

    @property
    def features(self) -> frozenset[str]:
        """Optional request features passed on (all of them unless ``?features=`` says otherwise)."""
        return self._features

    def _args(self, request: ChatRequest) -> dict[str, Any]:
        import openai

        p = request.params
        return {
            "model": self._model,
            "messages": wire_messages(request.messages, fold_system=self._fold_system),
            "temperature": self._default_temperature if p.temperature is None else p.temperature,
            "top_p": openai.omit if p.top_p is None else p.top_p,
            # max_tokens rather than max_completion_tokens: every OpenAI-compatible server knows it.
            "max_tokens": self._default_max_tokens if p.max_tokens is None else p.max_tokens,
            "stop": list(p.stop) if p.stop else openai.omit,
            "seed": openai.omit if p.seed is None else p.seed,
            "response_format": openai.omit if p.response_format is None else dict(p.response_format),
            "tools": [dict(t) for t in p.tools] if p.tools else openai.omit,
            "tool_choice": openai.omit if p.tool_choice is None or not p.tools else p.tool_choice,
            "logprobs": True if p.logprobs else openai.omit,
            "top_logprobs": openai.omit if p.top_logprobs is None else p.top_logprobs,
        }

    async def stream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        """Stream the completion; the last delta has the finish reason and the usage."""
        finish: str | None = None
        usage: Usage | None = None
        pieces = 0
        upstream: Any = None
        try:
            upstream = await self._client.chat.completions.create(
                **self._args(request), stream=True, stream_options={"include_usage": True}
            )
            async for chunk in upstream:
                if chunk.usage is not None:
                    usage = Usage(chunk.usage.prompt_tokens or 0, chunk.usage.completion_tokens or 0)
                if not chunk.choices:
                    continue
                choice = chunk.choices[0]
                if choice.finish_reason:
                    finish = choice.finish_reason
                delta = choice.delta
                text = delta.content if delta is not None else None
                calls = _tool_calls(delta)
                logprobs = choice.logprobs.model_dump(exclude_none=True) if choice.logprobs is not None else None
                if text or calls or logprobs:
                    pieces += 1
                    yield Delta(text=text or "", tool_calls=calls, logprobs=logprobs)
        except Exception as e:
            err = convert_openai_error(e, endpoint=self._endpoint, model=self._model)
            if err is None:
                raise
            raise err from e
        finally:
            if upstream is not None:
                await upstream.close()
        if usage is None:
            # Servers that ignore stream_options send no usage; estimate rather than report nothing.
            prompt = sum(_estimate_tokens(m.content) for m in request.messages)
            usage = Usage(prompt_tokens=prompt, completion_tokens=pieces)
        yield Delta(finish_reason=finish or "stop", usage=usage)

    async def health(self) -> bool:
        """True when the endpoint lists its models within a few seconds."""
        try:
            await self._client.with_options(timeout=HEALTH_TIMEOUT_S, max_retries=0).models.list()
        except Exception as e:
            log.info("chat backend %s is not healthy: %s", self._name, e)
            return False
        return True

    async def close(self) -> None:
        """Close the HTTP connection pool."""
        await self._client.close()


def _tool_calls(delta: Any) -> tuple[ToolCallDelta, ...]:
    """The tool-call pieces of a streamed delta."""
    calls = getattr(delta, "tool_calls", None) or ()
    out = []
    for call in calls:
        fn = call.function
        out.append(
            ToolCallDelta(
                index=call.index,
                id=call.id,
                name=fn.name if fn is not None else None,
                arguments=(fn.arguments or "") if fn is not None else "",
            )
        )
    return tuple(out)


def parse_features(raw: str | None) -> frozenset[str]:
    """The ``?features=`` of a backend URL (default: all).

    Raises:
        ConfigError: an unknown feature name.
    """
    if raw is None:
        return ALL_FEATURES
    names = {n.strip() for n in raw.split(",") if n.strip()} - {"none"}
    unknown = names - ALL_FEATURES
    if unknown:
        raise ConfigError(f"unknown features {sorted(unknown)}; known: {', '.join(sorted(ALL_FEATURES))}, none")
    return frozenset(names)


def from_url(url: BackendURL, settings: Settings) -> OpenAIChat:
    """``openai://?model=``, ``openai+http(s)://host/v1?model=``, ``kserve+http(s)://host/openai/v1?model=``."""
    model = require_model(url, "openai+http://host:8000/v1?model=NAME")
    key = settings.chat.api_key.get_secret_value() if settings.chat.api_key else None
    client = make_async_client(url, key, settings.chat.timeout_s)
    return OpenAIChat(
        client,
        model,
        name=url.raw,
        endpoint=openai_base_url(url),
        default_max_tokens=settings.chat.max_tokens,
        default_temperature=settings.chat.temperature,
        fold_system=flag(url.query, "fold_system", False),
        features=parse_features(url.query.get("features")),
    )
