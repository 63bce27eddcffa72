"""Plain data that flows between the seams. Frozen dataclasses; pydantic lives at the edges."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from rag.errors import InvalidRequest

PUBLIC_GROUP = "public"

# Metadata fields a filter may name; anything else is rejected rather than ignored.
FILTERABLE_FIELDS = frozenset({"source", "title", "section", "page", "lang", "doc_hash"})


@dataclass(frozen=True)
class Chunk:
    """One retrievable passage of a document, with everything needed to cite it."""

    id: str
    text: str
    source: str
    title: str = ""
    section: str = ""
    page: int | None = None
    index: int = 0
    groups: tuple[str, ...] = (PUBLIC_GROUP,)
    content_hash: str = ""
    doc_hash: str = ""
    lang: str = ""
    mtime: float = 0.0
    ingested_at: float = 0.0


@dataclass(frozen=True)
class ScoredChunk:
    """A chunk with its relevance score (higher is better, whatever the backend)."""

    chunk: Chunk
    score: float


@dataclass(frozen=True)
class Filter:
    """Restricts a search. ``groups`` is the caller's ACL: a chunk matches if it shares any group.

    ``None`` means "no restriction"; an empty ``groups`` tuple matches nothing. ``exclude_sources`` leaves
    the chunks of these documents out (retrieval's second look past a document that filled its share).
    """

    groups: tuple[str, ...] | None = None
    sources: tuple[str, ...] | None = None
    where: Mapping[str, str | int] = field(default_factory=dict)
    exclude_sources: tuple[str, ...] = ()


# ``page`` is the one integer field a filter may name; the others are strings. Pages count from 1;
# every store keeps them as 64-bit integers (Chroma refuses larger ones, Milvus keeps a missing page as -1).
_INT_FIELDS = frozenset({"page"})
PAGE_MIN, PAGE_MAX = 1, 2**63 - 1


def validate_filter(flt: Filter | None) -> None:
    """Reject a filter naming a field we do not index, or a value of the wrong type."""
    if flt is None:
        return
    allowed = ", ".join(sorted(FILTERABLE_FIELDS))
    for key, value in flt.where.items():
        if key not in FILTERABLE_FIELDS:
            raise InvalidRequest(
                f"cannot filter on field '{key}'; filterable fields are: {allowed}", param=f"where.{key}"
            )
        want = int if key in _INT_FIELDS else str
        if isinstance(value, bool) or not isinstance(value, want):
            raise InvalidRequest(
                f"filter field '{key}' takes a {want.__name__}, got {type(value).__name__}", param=f"where.{key}"
            )
        if isinstance(value, int) and not PAGE_MIN <= value <= PAGE_MAX:
            raise InvalidRequest(
                f"filter field '{key}' takes a page number from {PAGE_MIN} to {PAGE_MAX} (2^63 - 1), got {value}",
                param=f"where.{key}",
            )
    if flt.groups is not None and isinstance(flt.groups, str):
        raise InvalidRequest("filter groups must be a tuple of group names, not a string", param="groups")
    if flt.sources is not None and isinstance(flt.sources, str):
        raise InvalidRequest("filter sources must be a tuple of source names, not a string", param="sources")
    if isinstance(flt.exclude_sources, str):
        raise InvalidRequest("filter exclude_sources must be a tuple of source names", param="exclude_sources")


def matches_nothing(flt: Filter | None) -> bool:
    """True when the filter can match no chunk (an empty ACL or an empty source list)."""
    return flt is not None and (flt.groups == () or flt.sources == ())


def matches(chunk: Chunk, flt: Filter | None) -> bool:
    """Whether one chunk passes the filter (the in-memory reference semantics)."""
    if flt is None:
        return True
    if flt.groups is not None and not set(flt.groups) & set(chunk.groups):
        return False
    if flt.sources is not None and chunk.source not in flt.sources:
        return False
    if chunk.source in flt.exclude_sources:
        return False
    return all(getattr(chunk, key) == value for key, value in flt.where.items())


@dataclass(frozen=True)
class EmbedderInfo:
    """The identity a collection records so it can refuse a different embedder.

    ``id`` is what the collection records: the model, with the precision of its vectors after a ``+`` when
    it is not fp32 (``MODEL+bf16``), so vectors of different precisions never mix. ``follow``, when set,
    lets the embedder switch to the precision a collection recorded (``MODEL`` or ``MODEL+bf16``): it
    returns the new identity, or None when the recorded id is not one it can produce.
    """

    id: str
    dim: int
    precision: str = "fp32"
    follow: Callable[[str], EmbedderInfo | None] | None = field(default=None, compare=False, repr=False)


Role = Literal["system", "user", "assistant", "tool"]


@dataclass(frozen=True)
class Message:
    """One chat message; an assistant turn may carry the tool calls it made, a tool turn the call it answers."""

    role: Role
    content: str
    tool_calls: tuple[Mapping[str, Any], ...] = ()
    tool_call_id: str | None = None


# Request features only some backends have (see :func:`GenParams.features` and ``rag.chat.FEATURES``).
Feature = Literal["response_format", "tools", "logprobs"]


@dataclass(frozen=True)
class GenParams:
    """Sampling parameters passed through to a chat backend.

    ``response_format``, ``tools`` and ``tool_choice`` are the OpenAI request objects as sent (JSON
    values); a backend that cannot honour one is never given it (the request is refused first).
    """

    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    response_format: Mapping[str, Any] | None = None
    tools: tuple[Mapping[str, Any], ...] = ()
    tool_choice: str | Mapping[str, Any] | None = None
    logprobs: bool = False
    top_logprobs: int | None = None

    def features(self) -> tuple[Feature, ...]:
        """The optional features this request needs (plain text, ``{"type": "text"}``, needs none).

        ``tools`` are needed only when ``tool_choice`` requires a call (``required`` or a named function).
        """
        needed: list[Feature] = []
        if self.response_format is not None and self.response_format.get("type", "text") != "text":
            needed.append("response_format")
        # With tool_choice "auto" (or unset) a model may answer in text, which every backend can do, so
        # only a required call needs tool support. Open WebUI sends its built-in tools on every request.
        if self.tools and (self.tool_choice == "required" or isinstance(self.tool_choice, Mapping)):
            needed.append("tools")
        if self.logprobs or self.top_logprobs:
            needed.append("logprobs")
        return tuple(needed)


@dataclass(frozen=True)
class ChatRequest:
    """What a chat backend is asked to do.

    ``messages`` is the full prompt (sources already numbered in it); ``sources`` and ``question``
    are given too, so answerers that need no LLM (the extractive one) can work from them directly.
    """

    messages: tuple[Message, ...]
    sources: tuple[ScoredChunk, ...] = ()
    question: str = ""
    params: GenParams = field(default_factory=GenParams)


@dataclass(frozen=True)
class Usage:
    """Token counts as the backend reports them (or as estimated where it does not)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens."""
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class ToolCallDelta:
    """A piece of a tool call, as OpenAI streams them: the first piece of ``index`` has id and name."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


class ToolCalls:
    """Accumulates streamed :class:`ToolCallDelta` pieces into whole OpenAI tool calls."""

    def __init__(self) -> None:
        self._calls: dict[int, dict[str, Any]] = {}

    def add(self, pieces: tuple[ToolCallDelta, ...]) -> None:
        """Take the pieces of one delta."""
        for p in pieces:
            call = self._calls.setdefault(p.index, {"id": "", "type": "function", "name": "", "arguments": ""})
            call["id"] = p.id or call["id"]
            call["name"] = p.name or call["name"]
            call["arguments"] += p.arguments

    def merged(self) -> tuple[dict[str, Any], ...]:
        """The calls in index order, as ``{"id", "type": "function", "function": {"name", "arguments"}}``."""
        return tuple(
            {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
            for _, c in sorted(self._calls.items())
        )


@dataclass(frozen=True)
class Delta:
    """One piece of a streamed generation. The last piece carries ``finish_reason`` and usage.

    ``logprobs`` is the backend's OpenAI-shaped ``choices[].logprobs`` object for this piece, when asked for.
    """

    text: str = ""
    finish_reason: str | None = None
    usage: Usage | None = None
    tool_calls: tuple[ToolCallDelta, ...] = ()
    logprobs: Mapping[str, Any] | None = None
