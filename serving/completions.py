"""Legacy completions (``POST /v1/completions``): the prompt is asked as one question, the answer cites.

Pipeline events become ``text_completion`` bodies and SSE chunks here; retrieval, the ACL and the
backend call are the chat route's (:mod:`serving.chat`).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing
from typing import Any

from rag.pipeline import Answer
from rag.types import Delta, GenParams, Message
from serving.chat import Events, source_refs, sse, usage_of
from serving.errors import translate
from serving.wire import Completion, CompletionChoice, CompletionRequest

log = logging.getLogger(__name__)


def to_messages(req: CompletionRequest) -> tuple[Message, ...]:
    """The prompt as a one-question conversation."""
    return (Message(role="user", content=req.text()),)


def to_params(req: CompletionRequest) -> GenParams:
    """The sampling parameters the caller set."""
    return GenParams(
        temperature=req.temperature, top_p=req.top_p, max_tokens=req.max_tokens, stop=req.stop_list(), seed=req.seed
    )


def completion_id() -> str:
    """A fresh ``cmpl-`` id."""
    return f"cmpl-{uuid.uuid4().hex}"


def _body(completion: Completion) -> dict[str, Any]:
    body = completion.model_dump(mode="json")
    for key in ("usage", "sources"):
        if body[key] is None:
            del body[key]
    return body


def complete(answer: Answer, model: str, messages: Sequence[Message]) -> dict[str, Any]:
    """The final answer as one ``text_completion`` body with the ``sources`` extension."""
    return _body(
        Completion(
            id=completion_id(),
            model=model,
            choices=[CompletionChoice(text=answer.text, finish_reason=answer.finish_reason)],
            usage=usage_of(answer, messages),
            sources=source_refs(answer.citations),
        )
    )


async def stream_sse(
    first: Delta | Answer,
    events: Events,
    model: str,
    messages: Sequence[Message],
    include_usage: bool,
    request_id: str | None = None,
) -> AsyncIterator[bytes]:
    """The SSE body: text chunks, a finish chunk with ``sources``, the usage chunk if asked, ``[DONE]``."""
    cid, created = completion_id(), int(time.time())

    def chunk(choices: list[CompletionChoice], **kw: Any) -> bytes:
        return sse(_body(Completion(id=cid, created=created, model=model, choices=choices, **kw)))

    async def chain() -> Events:
        yield first
        async with aclosing(events) as rest:  # type: ignore[type-var]
            async for event in rest:
                yield event

    try:
        async with aclosing(chain()) as stream:  # type: ignore[type-var]
            async for event in stream:
                if isinstance(event, Delta):
                    if event.text:
                        yield chunk([CompletionChoice(text=event.text)])
                    continue
                yield chunk(
                    [CompletionChoice(text="", finish_reason=event.finish_reason)], sources=source_refs(event.citations)
                )
                if include_usage:
                    yield chunk([], usage=usage_of(event, messages))
    except Exception as exc:
        status, body, _ = translate(exc, request_id)
        log.warning("stream failed after it started (%s): %s", status, body["error"]["message"])
        yield sse(body)
    yield sse("[DONE]")
