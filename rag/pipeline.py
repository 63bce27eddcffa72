"""Retrieve, prompt, generate, cite: the one path every entry point (CLI, service, eval) shares."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from rag.chat import check_features
from rag.chat.extractive import NOT_FOUND
from rag.citations import MarkerFilter
from rag.config import Settings
from rag.context import fit_budget, is_followup, rewrite_messages, select, standalone_heuristic, with_neighbors
from rag.errors import CollectionNotFound, InvalidRequest, RagError
from rag.lang import detect_lang
from rag.prompt import build_messages
from rag.registry import is_auto, make_chat, make_reranker
from rag.retrieval import Retriever
from rag.seams import ChatBackend, Embedder, Reranker, VectorStore
from rag.types import ChatRequest, Delta, Filter, GenParams, Message, ScoredChunk, ToolCalls, Usage

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
    # OpenAI-shaped tool calls ({"id", "type": "function", "function": {"name", "arguments"}}) and logprobs.
    tool_calls: tuple[Mapping[str, Any], ...] = ()
    logprobs: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Prepared:
    """Retrieval done and prompt built; generation not yet started."""

    request: ChatRequest
    retrieved: tuple[ScoredChunk, ...]
    retrieval_ms: float
    # What was searched for: the question, or its standalone rewrite when it was a follow-up.
    search_query: str = ""


def question_of(messages: Sequence[Message]) -> tuple[str, tuple[Message, ...]]:
    """Split a chat into the last user question and the turns before it."""
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].role == "user":
            return messages[i].content, tuple(messages[:i])
    raise InvalidRequest("the conversation has no user message", param="messages")


def tool_turns(messages: Sequence[Message]) -> tuple[Message, ...]:
    """The assistant tool calls and tool results after the last user question (an agent's tool loop)."""
    last_user = max((i for i, m in enumerate(messages) if m.role == "user"), default=-1)
    return tuple(m for m in messages[last_user + 1 :] if m.role == "tool" or (m.role == "assistant" and m.tool_calls))


def plain_history(history: Sequence[Message]) -> tuple[Message, ...]:
    """Earlier turns as text only: a finished tool exchange is not sent again (its answer is in the text)."""
    return tuple(
        Message(m.role, m.content)
        for m in history
        if m.role in ("user", "assistant") and (m.content or not m.tool_calls)
    )


def check_query(query: str) -> str:
    """Reject empty, contentless or oversized queries with a clear message."""
    if len(query) > MAX_QUERY_CHARS:
        raise InvalidRequest(f"query is too long ({len(query)} characters; at most {MAX_QUERY_CHARS})")
    if not any(c.isalnum() for c in query):
        raise InvalidRequest("query is empty or has no letters or digits to search for")
    return query.strip()


class Pipeline:
    """Holds the configured store, embedder and chat backend."""

    def __init__(
        self,
        settings: Settings,
        store: VectorStore,
        embedder: Embedder,
        chat: ChatBackend,
        reranker: Reranker | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.embedder = embedder
        self.chat = chat
        self.reranker = reranker
        self.retriever = Retriever(store, embedder, settings.retrieval, reranker)
        self._opened = False
        self._open_lock = asyncio.Lock()

    @classmethod
    async def build(cls, settings: Settings) -> Pipeline:
        """Create every backend from settings; ``chat.url = auto`` is resolved here and logged."""
        from rag.versions import open_backends

        # Plain store and embedder; once the collection has versions, ones that follow its live version.
        store, embedder = open_backends(settings)
        if is_auto(settings.chat.url):
            from rag.chat.auto import resolve_auto

            chat = await resolve_auto(settings)
        else:
            chat = make_chat(settings)
        reranker = make_reranker(settings)
        log.info(
            "pipeline: store=%s embedder=%s chat=%s retrieval=%s reranker=%s",
            settings.store.url,
            embedder.info.id,
            chat.name,
            settings.retrieval.mode,
            settings.retrieval.rerank_url or "none",
        )
        return cls(settings, store, embedder, chat, reranker)

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
        """Relevant chunks for a query, best first: hybrid dense + BM25 (see rag.retrieval), ACL inside both.

        Scores are the fused score in [0, 1] (1 = ranked first by every retriever used), or the reranker's.
        """
        query = check_query(query)
        await self.ensure_open()
        return await self.retriever.search(query, k or self.settings.retrieval.k, flt)

    async def standalone(self, question: str, history: Sequence[Message]) -> str:
        """The search query for a question: follow-ups are rewritten using the history.

        An LLM backend rewrites it (one short non-streamed generation); the extractive backend, or an
        LLM that fails, falls back to prepending the previous user question.
        """
        if not any(m.role == "user" for m in history) or not is_followup(question):
            return question
        if self.chat.name.startswith("extractive"):
            return standalone_heuristic(question, history)
        request = ChatRequest(
            messages=rewrite_messages(question, history), params=GenParams(max_tokens=96, temperature=0.0)
        )
        parts: list[str] = []
        try:
            async with asyncio.timeout(min(self.settings.chat.timeout_s, 30.0)):
                async for delta in self.chat.stream(request):
                    parts.append(delta.text)
        except (RagError, TimeoutError) as e:
            log.warning("follow-up rewrite failed (%s); using the heuristic", e)
            return standalone_heuristic(question, history)
        rewritten = " ".join("".join(parts).strip().splitlines()[:1]).strip().strip('"')
        # An extractive fallback inside a chain answers the rewrite prompt with its "not found" line.
        if not rewritten or len(rewritten) > 4 * len(question) + 400 or rewritten in NOT_FOUND.values():
            return standalone_heuristic(question, history)
        return rewritten

    async def sources_for(self, query: str, flt: Filter | None = None) -> list[ScoredChunk]:
        """Numbered-source candidates: relevant hits, near-duplicates dropped, MMR, neighbours, token budget."""
        cfg = self.settings.retrieval
        query = check_query(query)
        await self.ensure_open()
        pool = await self.retriever.search(query, max(cfg.k * 3, cfg.k), flt)
        chosen = select(pool, cfg.k, cfg.dedupe_threshold, cfg.mmr_lambda)
        if cfg.neighbors and chosen:
            chosen = await self._expand(query, chosen, flt)
        return fit_budget(chosen, cfg.max_context_tokens)

    async def _expand(self, query: str, chosen: list[ScoredChunk], flt: Filter | None) -> list[ScoredChunk]:
        """Adjacent chunks of each chosen one's document, read under the caller's filter."""
        vector = await self.embedder.embed_query(query)
        out = []
        for hit in chosen:
            base = flt or Filter()
            same = Filter(groups=base.groups, sources=(hit.chunk.source,), where=base.where)
            siblings = await self.store.search(vector, 100, same)
            out.append(with_neighbors(hit, [s.chunk for s in siblings], self.settings.retrieval.neighbors))
        return out

    async def prepare(
        self, messages: Sequence[Message], flt: Filter | None = None, params: GenParams | None = None
    ) -> Prepared:
        """Retrieve for the last question and build the backend request.

        Raises:
            InvalidRequest: the question is unusable, or the backend cannot honour a requested feature.
        """
        params = params or GenParams()
        check_features(self.chat, params)
        question, history = question_of(messages)
        history = plain_history(history)
        check_query(question)
        start = time.perf_counter()
        query = await self.standalone(question, history)
        hits = tuple(await self.sources_for(query[:MAX_QUERY_CHARS], flt))
        retrieval_ms = (time.perf_counter() - start) * 1000
        lang = detect_lang(question)
        if params.max_tokens is None or params.temperature is None:
            params = replace(
                params,
                max_tokens=params.max_tokens or self.settings.chat.max_tokens,
                temperature=self.settings.chat.temperature if params.temperature is None else params.temperature,
            )
        request = ChatRequest(
            messages=(*build_messages(question, history, hits, lang), *tool_turns(messages)),
            sources=hits,
            question=question,
            params=params,
        )
        return Prepared(request=request, retrieved=hits, retrieval_ms=retrieval_ms, search_query=query)

    async def stream(self, prepared: Prepared, chat: ChatBackend | None = None) -> AsyncIterator[Delta | Answer]:
        """Generate: yields text deltas (citation markers already checked), then the final Answer.

        Structured output (a JSON ``response_format``) passes unchanged, as renumbering ``[n]`` would
        corrupt JSON arrays; every source in the prompt is then listed, numbered as the prompt numbers them.
        """
        backend = chat or self.chat
        structured = "response_format" in prepared.request.params.features()
        markers = MarkerFilter(len(prepared.retrieved))
        parts: list[str] = []
        calls = ToolCalls()
        logprobs: list[Any] = []
        finish, usage = "stop", Usage()
        start = time.perf_counter()
        first_token_ms: float | None = None
        async for delta in backend.stream(prepared.request):
            text = (delta.text if structured else markers.feed(delta.text)) if delta.text else ""
            if text or delta.tool_calls or delta.logprobs:
                if first_token_ms is None:
                    first_token_ms = (time.perf_counter() - start) * 1000
                parts.append(text)
                calls.add(delta.tool_calls)
                if delta.logprobs:
                    logprobs.extend(delta.logprobs.get("content") or ())
                yield Delta(text=text, tool_calls=delta.tool_calls, logprobs=delta.logprobs)
            if delta.finish_reason:
                finish = delta.finish_reason
            if delta.usage:
                usage = delta.usage
        tail = "" if structured else markers.flush()
        if tail:
            parts.append(tail)
            yield Delta(text=tail)
        if structured:
            citations = tuple(Citation(n, hit) for n, hit in enumerate(prepared.retrieved, 1))
        else:
            # Markers were renumbered in order of first use: the k-th cited source is now [k].
            citations = tuple(Citation(k, prepared.retrieved[n - 1]) for k, n in enumerate(markers.cited, 1))
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
            tool_calls=calls.merged(),
            logprobs={"content": logprobs} if logprobs else None,
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
        if self.reranker is not None:
            await self.reranker.close()
        await self.embedder.close()
        await self.store.close()
