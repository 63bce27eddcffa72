"""Retrieve, prompt, generate, cite: the one path every entry point (CLI, service, eval) shares."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace

from rag.citations import MarkerFilter
from rag.config import Settings
from rag.errors import CollectionNotFound, InvalidRequest
from rag.lang import detect_lang
from rag.prompt import build_messages
from rag.registry import is_auto, make_chat, make_embedder, make_store
from rag.seams import ChatBackend, Embedder, VectorStore
from rag.types import ChatRequest, Delta, Filter, GenParams, Message, ScoredChunk, Usage

log = logging.getLogger(__name__)

MAX_QUERY_CHARS = 8192


@dataclass(frozen=True)
class Citation:
    """A source the answer cites, numbered as in the answer text."""

    n: int
    hit: ScoredChunk


@dataclass(frozen=True)
class Answer:
    """A finished answer with the sources it cites."""

    text: str
    citations: tuple[Citation, ...]
    retrieved: tuple[ScoredChunk, ...]
    backend: str
    finish_reason: str = "stop"
    usage: Usage = field(default_factory=Usage)
    timings_ms: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Prepared:
    """Retrieval done and prompt built; generation not yet started."""

    request: ChatRequest
    retrieved: tuple[ScoredChunk, ...]
    retrieval_ms: float


def question_of(messages: Sequence[Message]) -> tuple[str, tuple[Message, ...]]:
    """Split a chat into the last user question and the turns before it."""
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].role == "user":
            return messages[i].content, tuple(messages[:i])
    raise InvalidRequest("the conversation has no user message", param="messages")


def check_query(query: str) -> str:
    """Reject empty, contentless or oversized queries with a clear message."""
    if len(query) > MAX_QUERY_CHARS:
        raise InvalidRequest(f"query is too long ({len(query)} characters; at most {MAX_QUERY_CHARS})")
    if not any(c.isalnum() for c in query):
        raise InvalidRequest("query is empty or has no letters or digits to search for")
    return query.strip()


class Pipeline:
    """Holds the configured store, embedder and chat backend."""

    def __init__(self, settings: Settings, store: VectorStore, embedder: Embedder, chat: ChatBackend) -> None:
        self.settings = settings
        self.store = store
        self.embedder = embedder
        self.chat = chat
        self._opened = False
        self._open_lock = asyncio.Lock()

    @classmethod
    async def build(cls, settings: Settings) -> Pipeline:
        """Create every backend from settings; ``chat.url = auto`` is resolved here and logged."""
        embedder = make_embedder(settings)
        store = make_store(settings)
        if is_auto(settings.chat.url):
            from rag.chat.auto import resolve_auto

            chat = await resolve_auto(settings)
        else:
            chat = make_chat(settings)
        log.info("pipeline: store=%s embedder=%s chat=%s", settings.store.url, embedder.info.id, chat.name)
        return cls(settings, store, embedder, chat)

    async def ensure_open(self) -> None:
        """Open the collection on first use (it may be created by ingestion after start-up)."""
        if self._opened:
            return
        async with self._open_lock:
            if not self._opened:
                try:
                    await self.store.open(self.embedder.info, create=False)
                except CollectionNotFound as e:
                    raise CollectionNotFound(
                        f"collection '{self.store.name}' does not exist yet; run 'rag ingest PATH' first"
                    ) from e
                self._opened = True

    async def search(self, query: str, k: int | None = None, flt: Filter | None = None) -> list[ScoredChunk]:
        """Scored chunks for a query, best first, above the configured minimum score."""
        query = check_query(query)
        await self.ensure_open()
        vector = await self.embedder.embed_query(query)
        hits = await self.store.search(vector, k or self.settings.retrieval.k, flt)
        return [h for h in hits if h.score >= self.settings.retrieval.min_score]

    async def prepare(
        self, messages: Sequence[Message], flt: Filter | None = None, params: GenParams | None = None
    ) -> Prepared:
        """Retrieve for the last question and build the backend request."""
        question, history = question_of(messages)
        start = time.perf_counter()
        hits = tuple(await self.search(question, flt=flt))
        retrieval_ms = (time.perf_counter() - start) * 1000
        lang = detect_lang(question)
        params = params or GenParams()
        if params.max_tokens is None or params.temperature is None:
            params = replace(
                params,
                max_tokens=params.max_tokens or self.settings.chat.max_tokens,
                temperature=self.settings.chat.temperature if params.temperature is None else params.temperature,
            )
        request = ChatRequest(
            messages=build_messages(question, history, hits, lang),
            sources=hits,
            question=question,
            params=params,
        )
        return Prepared(request=request, retrieved=hits, retrieval_ms=retrieval_ms)

    async def stream(self, prepared: Prepared, chat: ChatBackend | None = None) -> AsyncIterator[Delta | Answer]:
        """Generate: yields text deltas (citation markers already checked), then the final Answer."""
        backend = chat or self.chat
        markers = MarkerFilter(len(prepared.retrieved))
        parts: list[str] = []
        finish, usage = "stop", Usage()
        start = time.perf_counter()
        first_token_ms: float | None = None
        async for delta in backend.stream(prepared.request):
            if delta.text:
                text = markers.feed(delta.text)
                if text:
                    if first_token_ms is None:
                        first_token_ms = (time.perf_counter() - start) * 1000
                    parts.append(text)
                    yield Delta(text=text)
            if delta.finish_reason:
                finish = delta.finish_reason
            if delta.usage:
                usage = delta.usage
        tail = markers.flush()
        if tail:
            parts.append(tail)
            yield Delta(text=tail)
        citations = tuple(Citation(n, prepared.retrieved[n - 1]) for n in markers.cited)
        yield Answer(
            text="".join(parts),
            citations=citations,
            retrieved=prepared.retrieved,
            backend=backend.name,
            finish_reason=finish,
            usage=usage,
            timings_ms={
                "retrieval": prepared.retrieval_ms,
                "first_token": first_token_ms or 0.0,
                "generation": (time.perf_counter() - start) * 1000,
            },
        )

    async def answer(
        self, messages: Sequence[Message], flt: Filter | None = None, params: GenParams | None = None
    ) -> Answer:
        """Retrieve and generate in one call (non-streaming)."""
        prepared = await self.prepare(messages, flt, params)
        async for event in self.stream(prepared):
            if isinstance(event, Answer):
                return event
        raise AssertionError("stream ended without an Answer")  # pragma: no cover

    async def close(self) -> None:
        """Release every backend."""
        await self.chat.close()
        await self.embedder.close()
        await self.store.close()
