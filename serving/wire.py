"""OpenAI wire models (and our marked extensions); no service logic lives here.

Requests accept unknown fields, as OpenAI clients send many we do not use. Responses are built
from these models and serialised with ``exclude_none`` where OpenAI omits absent fields.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

# Integer bounds of what the backends take: token counts are int32 in llama.cpp and vLLM, seeds int64.
MAX_INT32 = 2**31 - 1
MIN_INT64, MAX_INT64 = -(2**63), 2**63 - 1
UNICODE_ERROR = "invalid_unicode"


def encodable(text: str) -> bool:
    r"""Whether ``text`` can be written as UTF-8 (JSON's ``"\ud800"`` decodes to a lone surrogate, which cannot)."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def unencodable(value: Any) -> str | None:
    """The dotted path of the first string or key in a JSON value that is not encodable, or None."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:  # a loop, not recursion: the nesting depth is the caller's choice
        path, node = stack.pop()
        if isinstance(node, str):
            if not encodable(node):
                return path or "request body"
        elif isinstance(node, dict):
            for key, item in reversed(node.items()):
                if isinstance(key, str) and not encodable(key):
                    return f"{path} (a key)" if path else "a key of the request body"
                stack.append((f"{path}.{key}" if path else str(key), item))
        elif isinstance(node, list | tuple):
            stack.extend((f"{path}.{i}" if path else str(i), item) for i, item in reversed(list(enumerate(node))))
    return None


class WireRequest(BaseModel):
    """Base of the request bodies: every string in them (fields, unknown fields, keys) must be valid Unicode."""

    @model_validator(mode="before")
    @classmethod
    def _valid_unicode(cls, data: Any) -> Any:
        where = unencodable(data)
        if where is not None:
            message = "is not valid Unicode (a lone surrogate such as \\ud800, or bytes that are not UTF-8)"
            raise PydanticCustomError(UNICODE_ERROR, message, {"field": where})
        return data


# ---------------------------------------------------------------------------------------------
# Chat completions: request
# ---------------------------------------------------------------------------------------------


class TextPart(BaseModel):
    """One part of a multi-part message content; only text parts are accepted."""

    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    """One message of a chat request."""

    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = None

    def text(self) -> str:
        """The message text; a list of parts is concatenated (non-text parts are refused earlier)."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text or "" for p in self.content)

    @field_validator("content")
    @classmethod
    def _only_text_parts(cls, v: str | list[TextPart] | None) -> str | list[TextPart] | None:
        if isinstance(v, list):
            for part in v:
                if part.type != "text" or part.text is None:
                    raise ValueError(f"only text content parts are supported (got type '{part.type}')")
        return v


class StreamOptions(BaseModel):
    """``stream_options`` of a chat request."""

    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


class ChatCompletionRequest(WireRequest):
    """``POST /v1/chat/completions`` body."""

    model_config = ConfigDict(extra="allow")

    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    max_tokens: int | None = Field(None, ge=1, le=MAX_INT32)
    max_completion_tokens: int | None = Field(None, ge=1, le=MAX_INT32)
    stop: str | list[str] | None = None
    n: int = 1
    seed: int | None = Field(None, ge=MIN_INT64, le=MAX_INT64)
    user: str | None = None

    @field_validator("n")
    @classmethod
    def _one_choice(cls, v: int) -> int:
        if v != 1:
            raise ValueError("only n=1 is supported")
        return v

    @field_validator("stop")
    @classmethod
    def _few_stops(cls, v: str | list[str] | None) -> str | list[str] | None:
        if isinstance(v, list) and len(v) > 4:
            raise ValueError("at most 4 stop sequences are allowed")
        return v

    def stop_list(self) -> tuple[str, ...]:
        """``stop`` as a tuple, whichever form it was sent in."""
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)

    def token_limit(self) -> int | None:
        """``max_completion_tokens`` (the current name) or ``max_tokens`` (the old one)."""
        return self.max_completion_tokens or self.max_tokens

    def wants_usage(self) -> bool:
        """Whether a streamed response should end with a usage chunk."""
        return bool(self.stream_options and self.stream_options.include_usage)


# ---------------------------------------------------------------------------------------------
# Chat completions: responses
# ---------------------------------------------------------------------------------------------


class UsageInfo(BaseModel):
    """Token counts."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class AssistantMessage(BaseModel):
    """The generated message of a non-streaming response."""

    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    """One choice of a non-streaming response."""

    index: int = 0
    message: AssistantMessage
    finish_reason: str | None = "stop"
    logprobs: None = None


class DeltaMessage(BaseModel):
    """What a streamed chunk adds to the message."""

    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    """One choice of a streamed chunk."""

    index: int = 0
    delta: DeltaMessage
    finish_reason: str | None = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    """``chat.completion.chunk``; ``event`` carries Open WebUI's citation form (see below)."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[ChunkChoice] = Field(default_factory=list)
    usage: UsageInfo | None = None
    # --- extension: Open WebUI reads citations from {"choices": [], "event": {"type": "source", ...}}
    event: dict[str, Any] | None = None


# ---------------------------------------------------------------------------------------------
# Extensions to the OpenAI schema (ours): cited sources on the non-streaming response
# ---------------------------------------------------------------------------------------------


class SourceRef(BaseModel):
    """A cited source, numbered as the ``[n]`` markers in the answer."""

    n: int
    id: str
    title: str
    source: str
    section: str = ""
    page: int | None = None
    snippet: str
    score: float


class ChatCompletion(BaseModel):
    """``chat.completion`` with our ``sources`` extension."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[Choice]
    usage: UsageInfo
    # --- extension (onprem-rag): the sources the answer cites ---------------------------------
    sources: list[SourceRef] = Field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------


class RagModelInfo(BaseModel):
    """Extension (onprem-rag): what stands behind the advertised model."""

    chat_backend: str
    collection: str
    embedder: str


class ModelCard(BaseModel):
    """One entry of ``GET /v1/models``."""

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "onprem-rag"
    # --- extension (onprem-rag) -----------------------------------------------------------------
    rag: RagModelInfo | None = None


class ModelList(BaseModel):
    """``GET /v1/models``."""

    object: Literal["list"] = "list"
    data: list[ModelCard]


# ---------------------------------------------------------------------------------------------
# Embeddings
# ---------------------------------------------------------------------------------------------

MAX_EMBED_INPUTS = 2048


class EmbeddingRequest(WireRequest):
    """``POST /v1/embeddings`` body (text input only; token-id input is refused)."""

    model_config = ConfigDict(extra="allow")

    model: str
    input: str | list[str]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1, le=MAX_INT32)
    user: str | None = None

    @field_validator("input")
    @classmethod
    def _non_empty(cls, v: str | list[str]) -> str | list[str]:
        texts = [v] if isinstance(v, str) else v
        if not texts:
            raise ValueError("must not be an empty list")
        if len(texts) > MAX_EMBED_INPUTS:
            raise ValueError(f"at most {MAX_EMBED_INPUTS} inputs per request")
        if any(not t for t in texts):
            raise ValueError("must not contain empty strings")
        return v

    def texts(self) -> list[str]:
        """The inputs as a list."""
        return [self.input] if isinstance(self.input, str) else list(self.input)


class EmbeddingData(BaseModel):
    """One embedding; a list of floats or base64 of little-endian float32."""

    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingUsage(BaseModel):
    """Estimated token counts of the inputs."""

    prompt_tokens: int
    total_tokens: int


class EmbeddingResponse(BaseModel):
    """``POST /v1/embeddings`` response."""

    object: Literal["list"] = "list"
    data: list[EmbeddingData]
    model: str
    usage: EmbeddingUsage


# ---------------------------------------------------------------------------------------------
# Search (ours, not OpenAI)
# ---------------------------------------------------------------------------------------------


class SearchRequest(WireRequest):
    """``POST /v1/search``: scored chunks for a query, without generation."""

    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1)
    k: int | None = Field(None, ge=1, le=100)
    filters: dict[str, str | int | list[str]] = Field(default_factory=dict)
    model: str | None = Field(None, description="A model id from /v1/models: searches that profile's collection.")


class SearchHit(BaseModel):
    """One retrieved chunk."""

    id: str
    score: float
    text: str
    source: str
    title: str
    section: str = ""
    page: int | None = None
    index: int = 0
    lang: str = ""


class SearchResponse(BaseModel):
    """``POST /v1/search`` response."""

    object: Literal["list"] = "list"
    query: str
    data: list[SearchHit]


class DeleteResponse(BaseModel):
    """``DELETE /v1/sources`` response."""

    object: Literal["deletion"] = "deletion"
    deleted: int
    sources: list[str]


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------


class ErrorBody(BaseModel):
    """The inside of the OpenAI error envelope."""

    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """The OpenAI error envelope ``{"error": {...}}``."""

    error: ErrorBody
