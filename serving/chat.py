"""Chat completions: OpenAI request to pipeline call, pipeline events to OpenAI responses and SSE.

The retrieval and generation logic lives in :mod:`rag.pipeline`; this module only converts.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing
from typing import Any

from rag.chat import check_features
from rag.errors import InvalidRequest, NotFound, UpstreamTimeout
from rag.pipeline import Answer, Citation, Pipeline
from rag.types import ChatRequest, Delta, Filter, GenParams, Message, Role, ToolCalls, Usage
from serving.errors import translate
from serving.metrics import Metrics
from serving.wire import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Choice,
    ChunkChoice,
    DeltaMessage,
    SourceRef,
    ToolCall,
    ToolCallPiece,
    UsageInfo,
)

log = logging.getLogger(__name__)

Events = AsyncIterator[Delta | Answer]

# Open WebUI's title/tags/follow-up prompts start with this line (its default task templates).
TASK_MARKER = "### Task:"
SNIPPET_CHARS = 300
_ROLES: dict[str, Role] = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
    "tool": "tool",
}


def check_model(req_model: str, pipeline: Pipeline) -> None:
    """Refuse a model name other than the one this service advertises."""
    name = pipeline.settings.server.model_name
    if req_model != name:
        raise NotFound(
            f"the model '{req_model}' does not exist; this service serves '{name}'",
            param="model",
            code="model_not_found",
        )


def to_messages(req: ChatCompletionRequest) -> tuple[Message, ...]:
    """The request's messages as core messages (text, and the tool calls of an agent's tool loop)."""
    return tuple(
        Message(
            role=_ROLES[m.role],
            content=m.text(),
            tool_calls=tuple(c.model_dump(exclude_none=True) for c in m.tool_calls or ()),
            tool_call_id=m.tool_call_id,
        )
        for m in req.messages
    )


def check_size(messages: Sequence[Message], max_messages: int, max_input_tokens: int) -> None:
    """Refuse conversations longer than the limits (tokens estimated, as no tokenizer is at hand)."""
    if len(messages) > max_messages:
        raise InvalidRequest(
            f"too many messages ({len(messages)}; at most {max_messages})", param="messages", code="too_many_messages"
        )
    tokens = sum(estimate_tokens(m.content) for m in messages)
    if tokens > max_input_tokens:
        raise InvalidRequest(
            f"the messages are about {tokens} tokens long; at most {max_input_tokens} are accepted",
            param="messages",
            code="context_length_exceeded",
        )


def to_params(req: ChatCompletionRequest) -> GenParams:
    """The sampling parameters the caller set."""
    return GenParams(
        temperature=req.temperature,
        top_p=req.top_p,
        max_tokens=req.token_limit(),
        stop=req.stop_list(),
        seed=req.seed,
        response_format=req.format_dict(),
        tools=req.tool_dicts(),
        tool_choice=req.tool_choice_value(),
        logprobs=bool(req.logprobs),
        top_logprobs=req.top_logprobs,
    )


def is_task_request(messages: Sequence[Message]) -> bool:
    """Whether this is one of Open WebUI's side requests (title, tags, follow-ups) rather than a question."""
    for m in reversed(messages):
        if m.role == "user":
            return TASK_MARKER in m.content
    return False


async def events_for(pipeline: Pipeline, messages: tuple[Message, ...], params: GenParams, flt: Filter) -> Events:
    """Deltas then one Answer: retrieval-augmented, or straight to the backend for Open WebUI tasks.

    Raises:
        InvalidRequest: the backend cannot honour a requested feature (before any retrieval).
    """
    check_features(pipeline.chat, params)
    if is_task_request(messages):
        log.debug("task request: answering without retrieval")
        return _passthrough(pipeline, messages, params)
    prepared = await pipeline.prepare(messages, flt, params)
    return pipeline.stream(prepared)


async def _passthrough(pipeline: Pipeline, messages: tuple[Message, ...], params: GenParams) -> Events:
    question = next((m.content for m in reversed(messages) if m.role == "user"), "")
    request = ChatRequest(messages=messages, question=question, params=params)
    parts: list[str] = []
    calls = ToolCalls()
    finish, usage = "stop", Usage()
    async with aclosing(pipeline.chat.stream(request)) as deltas:  # type: ignore[type-var]
        async for delta in deltas:
            if delta.text or delta.tool_calls or delta.logprobs:
                parts.append(delta.text)
                calls.add(delta.tool_calls)
                yield Delta(text=delta.text, tool_calls=delta.tool_calls, logprobs=delta.logprobs)
            finish = delta.finish_reason or finish
            usage = delta.usage or usage
    yield Answer(
        text="".join(parts),
        citations=(),
        retrieved=(),
        backend=pipeline.chat.name,
        finish_reason=finish,
        usage=usage,
        tool_calls=calls.merged(),
    )


def estimate_tokens(text: str) -> int:
    """A rough token count (about four characters a token) where the backend gives none."""
    return math.ceil(len(text) / 4) if text else 0


def usage_of(answer: Answer, messages: Sequence[Message]) -> UsageInfo:
    """The backend's usage, or an estimate when it reported none."""
    usage = answer.usage
    prompt, completion = usage.prompt_tokens, usage.completion_tokens
    if prompt == 0 and completion == 0:
        prompt = sum(estimate_tokens(m.content) for m in messages)
        completion = estimate_tokens(answer.text)
    return UsageInfo(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


def source_refs(citations: Sequence[Citation]) -> list[SourceRef]:
    """The cited chunks as our ``sources`` extension."""
    refs = []
    for c in citations:
        chunk = c.hit.chunk
        snippet = " ".join(chunk.text.split())
        if len(snippet) > SNIPPET_CHARS:
            snippet = snippet[: SNIPPET_CHARS - 1].rstrip() + "…"
        refs.append(
            SourceRef(
                n=c.n,
                id=chunk.id,
                title=chunk.title or chunk.source,
                source=chunk.source,
                section=chunk.section,
                page=chunk.page,
                snippet=snippet,
                score=round(c.hit.score, 4),
            )
        )
    return refs


def completion_id() -> str:
    """A fresh ``chatcmpl-`` id."""
    return f"chatcmpl-{uuid.uuid4().hex}"


def complete(answer: Answer, model: str, messages: Sequence[Message]) -> ChatCompletion:
    """The final answer as one ``chat.completion`` with the ``sources`` extension."""
    calls = [ToolCall.model_validate(c) for c in answer.tool_calls] or None
    message = AssistantMessage(content=answer.text if answer.text or not calls else None, tool_calls=calls)
    choice = Choice(
        message=message,
        finish_reason=answer.finish_reason,
        logprobs=dict(answer.logprobs) if answer.logprobs is not None else None,
    )
    return ChatCompletion(
        id=completion_id(),
        model=model,
        choices=[choice],
        usage=usage_of(answer, messages),
        sources=source_refs(answer.citations),
    )


def completion_json(completion: ChatCompletion) -> dict[str, Any]:
    """The response body: a message without tool calls or refusal omits those fields, as OpenAI's does."""
    body = completion.model_dump(mode="json")
    for choice in body["choices"]:
        choice["message"] = {k: v for k, v in choice["message"].items() if v is not None or k == "content"}
    return body


async def final_answer(events: Events) -> Answer:
    """Drain the events to their final Answer."""
    answer: Answer | None = None
    async with aclosing(events) as stream:  # type: ignore[type-var]
        async for event in stream:
            if isinstance(event, Answer):
                answer = event
    if answer is None:  # pragma: no cover - the pipeline always ends with an Answer
        raise RuntimeError("generation ended without an answer")
    return answer


def source_events(citations: Sequence[Citation]) -> list[dict[str, Any]]:
    """Open WebUI's citation form: one ``{"type": "source", ...}`` event per citation, in marker order.

    Open WebUI merges passages that share ``metadata.source`` and maps marker ``[n]`` to the n-th
    distinct one, so each passage gets its own ``source`` (the document URI plus ``#<chunk id>``)
    and events follow the dense marker numbers. It reads ``metadata.page`` as 0-based (LangChain's
    convention); our own ``sources`` field keeps pages 1-based.
    """
    events = []
    for c in sorted(citations, key=lambda c: c.n):
        chunk = c.hit.chunk
        title = chunk.title or chunk.source
        meta: dict[str, Any] = {"source": f"{chunk.source}#{chunk.id}", "name": title, "n": c.n}
        if chunk.page is not None:
            meta["page"] = chunk.page - 1
        if chunk.section:
            meta["section"] = chunk.section
        data = {"source": {"name": title, "id": chunk.source}, "document": [chunk.text], "metadata": [meta]}
        events.append({"type": "source", "data": data})
    return events


def sse(payload: dict[str, Any] | str) -> bytes:
    """One SSE ``data:`` event."""
    data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return f"data: {data}\n\n".encode()


def _chunk(chunk: ChatCompletionChunk) -> bytes:
    body = chunk.model_dump()
    for key in ("usage", "event", "sources"):
        if body[key] is None:
            del body[key]
    for choice in body["choices"]:
        choice["delta"] = {k: v for k, v in choice["delta"].items() if v is not None}
        for piece in choice["delta"].get("tool_calls") or ():
            for key in ("id", "type"):
                if piece[key] is None:
                    del piece[key]
    return sse(body)


def _pieces(delta: Delta) -> list[ToolCallPiece] | None:
    """A delta's tool-call pieces in the OpenAI chunk shape."""
    if not delta.tool_calls:
        return None
    out = []
    for p in delta.tool_calls:
        fn = {"arguments": p.arguments} if p.name is None else {"name": p.name, "arguments": p.arguments}
        out.append(ToolCallPiece(index=p.index, id=p.id, type="function" if p.id else None, function=fn))
    return out


async def stream_sse(
    first: Delta | Answer,
    events: Events,
    model: str,
    messages: Sequence[Message],
    include_usage: bool,
    request_id: str | None = None,
) -> AsyncIterator[bytes]:
    """The SSE body: role, content, sources, finish, optional usage, ``[DONE]``; errors as a data event.

    Every chunk has one entry in ``choices`` (what strict clients index), except the usage chunk that
    ``include_usage`` asks for, last before ``[DONE]``, as OpenAI sends it. Open WebUI's source events
    ride on chunks with an empty delta; the finish chunk carries the ``sources`` extension.
    ``first`` is the event already taken from ``events`` so failures before the first byte could
    still become a proper HTTP status.
    """
    cid, created = completion_id(), int(time.time())

    def chunk(**kw: Any) -> bytes:
        return _chunk(ChatCompletionChunk(id=cid, created=created, model=model, **kw))

    try:
        yield chunk(choices=[ChunkChoice(delta=DeltaMessage(role="assistant", content=""))])
        async with aclosing(_chain(first, events)) as stream:  # type: ignore[type-var]
            async for event in stream:
                if isinstance(event, Delta):
                    if event.text or event.tool_calls or event.logprobs:
                        delta = DeltaMessage(content=event.text or None, tool_calls=_pieces(event))
                        logprobs = dict(event.logprobs) if event.logprobs is not None else None
                        yield chunk(choices=[ChunkChoice(delta=delta, logprobs=logprobs)])
                    continue
                for ev in source_events(event.citations):
                    yield chunk(choices=[ChunkChoice(delta=DeltaMessage())], event=ev)
                finish = ChunkChoice(delta=DeltaMessage(), finish_reason=event.finish_reason)
                yield chunk(choices=[finish], sources=source_refs(event.citations))
                if include_usage:
                    yield chunk(choices=[], usage=usage_of(event, messages))
    except Exception as exc:
        # Headers are gone: the failure can only be told in the stream itself.
        status, body, _ = translate(exc, request_id)
        log.warning("stream failed after it started (%s): %s", status, body["error"]["message"])
        yield sse(body)
    yield sse("[DONE]")


async def observed(events: Events, metrics: Metrics, started: float, deadline: float) -> Events:
    """``events`` under the request deadline, feeding TTFT, retrieval, token and citation metrics.

    ``started`` is a ``time.perf_counter()`` value; ``deadline`` is in event-loop time.
    """
    first_token = False
    try:
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    event = await anext(events)
            except StopAsyncIteration:
                return
            except TimeoutError as e:
                raise UpstreamTimeout("the request took longer than limits.request_timeout_s allows") from e
            if isinstance(event, Delta):
                if event.text and not first_token:
                    first_token = True
                    metrics.ttft.observe(time.perf_counter() - started)
            elif "retrieval" in event.timings_ms:
                metrics.retrieval.observe(event.timings_ms["retrieval"] / 1000)
                metrics.answers.inc()
                if not event.retrieved:
                    metrics.empty_retrievals.inc()
                if not event.citations:
                    metrics.uncited.inc()
            if isinstance(event, Answer):
                metrics.tokens.labels("prompt").inc(event.usage.prompt_tokens)
                metrics.tokens.labels("completion").inc(event.usage.completion_tokens)
            yield event
    finally:
        await events.aclose()  # type: ignore[attr-defined]


async def _chain(first: Delta | Answer, rest: Events) -> Events:
    yield first
    async with aclosing(rest) as stream:  # type: ignore[type-var]
        async for event in stream:
            yield event
