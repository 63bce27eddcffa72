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


class FunctionCall(BaseModel):
    """The function of a tool call: its name and its arguments as a JSON text."""

    model_config = ConfigDict(extra="allow")

    name: str
    arguments: str = ""


class ToolCall(BaseModel):
    """A tool call the assistant made (in a response, or sent back in a later request)."""

    model_config = ConfigDict(extra="allow")

    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(BaseModel):
    """One message of a chat request."""

    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None

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


class JsonSchemaFormat(BaseModel):
    """``response_format.json_schema``: a named JSON schema the answer must follow."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(min_length=1, max_length=64)
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None
    description: str | None = None


class ResponseFormat(BaseModel):
    """``response_format``: plain text, any JSON object, or JSON following a schema."""

    model_config = ConfigDict(extra="allow")

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_given(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("type 'json_schema' needs a json_schema object")
        return self


class FunctionDef(BaseModel):
    """A function a tool exposes."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(min_length=1, max_length=64)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolDef(BaseModel):
    """One entry of ``tools`` (function tools only)."""

    model_config = ConfigDict(extra="allow")

    type: Literal["function"]
    function: FunctionDef


class NamedToolChoice(BaseModel):
    """``tool_choice`` naming one function."""

    model_config = ConfigDict(extra="allow")

    type: Literal["function"]
    function: dict[str, str]


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
    response_format: ResponseFormat | None = None
    tools: list[ToolDef] | None = Field(None, max_length=128)
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)

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

    def format_dict(self) -> dict[str, Any] | None:
        """``response_format`` as the JSON the caller sent (``schema`` under its own name)."""
        return (
            None if self.response_format is None else self.response_format.model_dump(by_alias=True, exclude_none=True)
        )

    def tool_dicts(self) -> tuple[dict[str, Any], ...]:
        """``tools`` as JSON objects."""
        return tuple(t.model_dump(exclude_none=True) for t in self.tools or ())

    def tool_choice_value(self) -> str | dict[str, Any] | None:
        """``tool_choice`` as sent."""
        tc = self.tool_choice
        return tc.model_dump(exclude_none=True) if isinstance(tc, NamedToolChoice) else tc


# ---------------------------------------------------------------------------------------------
# Chat completions: responses
# ---------------------------------------------------------------------------------------------


class UsageInfo(BaseModel):
    """Token counts."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class AssistantMessage(BaseModel):
    """The generated message of a non-streaming response (``content`` is null when it only calls tools)."""

    role: Literal["assistant"] = "assistant"
    content: str | None
    refusal: None = None
    tool_calls: list[ToolCall] | None = None


class Choice(BaseModel):
    """One choice of a non-streaming response."""

    index: int = 0
    message: AssistantMessage
    finish_reason: str | None = "stop"
    logprobs: dict[str, Any] | None = None


class ToolCallPiece(BaseModel):
    """A streamed piece of a tool call (id, type and name on its first piece only)."""

    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: dict[str, str] = Field(default_factory=dict)


class DeltaMessage(BaseModel):
    """What a streamed chunk adds to the message."""

    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[ToolCallPiece] | None = None


class ChunkChoice(BaseModel):
    """One choice of a streamed chunk."""

    index: int = 0
    delta: DeltaMessage
    finish_reason: str | None = None
    logprobs: dict[str, Any] | None = None


class ChatCompletionChunk(BaseModel):
    """``chat.completion.chunk``: one entry in ``choices``, except the usage chunk ``include_usage`` asks for."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[ChunkChoice] = Field(default_factory=list)
    usage: UsageInfo | None = None
    # --- extensions (onprem-rag) ------------------------------------------------------------------
    # Open WebUI reads {"event": {"type": "source", ...}} from any chunk; ours carry an empty delta.
    event: dict[str, Any] | None = None
    # The cited sources, on the chunk that carries finish_reason (as ``sources`` on chat.completion).
    sources: list[SourceRef] | None = None


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


ChatCompletionChunk.model_rebuild()


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
# Legacy completions (prompt in, text out): for older clients and LlamaIndex's completion mode
# ---------------------------------------------------------------------------------------------


class CompletionRequest(WireRequest):
    """``POST /v1/completions`` body: one text prompt, answered from the documents like a chat question."""

    model_config = ConfigDict(extra="allow")

    model: str
    prompt: str | list[str]
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    max_tokens: int | None = Field(None, ge=1, le=MAX_INT32)
    stop: str | list[str] | None = None
    n: int = 1
    best_of: int | None = None
    echo: bool = False
    suffix: str | None = None
    logprobs: int | None = None
    seed: int | None = Field(None, ge=MIN_INT64, le=MAX_INT64)
    user: str | None = None

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, v: str | list[str]) -> str | list[str]:
        if isinstance(v, list) and len(v) != 1:
            raise ValueError("exactly one prompt is supported (a list of one string, or a string)")
        return v

    @field_validator("n", "best_of")
    @classmethod
    def _one_choice(cls, v: int | None) -> int | None:
        if v not in (None, 1):
            raise ValueError("only 1 is supported")
        return v

    @field_validator("echo")
    @classmethod
    def _no_echo(cls, v: bool) -> bool:
        if v:
            raise ValueError("echo is not supported (the answer is generated from the documents, not a continuation)")
        return v

    @field_validator("suffix")
    @classmethod
    def _no_suffix(cls, v: str | None) -> str | None:
        if v:
            raise ValueError("suffix (insertion) is not supported")
        return v

    @field_validator("logprobs")
    @classmethod
    def _no_logprobs(cls, v: int | None) -> int | None:
        if v is not None:
            raise ValueError("logprobs is not supported on /v1/completions; use /v1/chat/completions")
        return v

    @field_validator("stop")
    @classmethod
    def _few_stops(cls, v: str | list[str] | None) -> str | list[str] | None:
        if isinstance(v, list) and len(v) > 4:
            raise ValueError("at most 4 stop sequences are allowed")
        return v

    def text(self) -> str:
        """The prompt."""
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]

    def stop_list(self) -> tuple[str, ...]:
        """``stop`` as a tuple."""
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)

    def wants_usage(self) -> bool:
        """Whether a streamed response should end with a usage chunk."""
        return bool(self.stream_options and self.stream_options.include_usage)


class CompletionChoice(BaseModel):
    """One choice of a ``text_completion`` (streamed or not)."""

    text: str
    index: int = 0
    logprobs: None = None
    finish_reason: str | None = None


class Completion(BaseModel):
    """``text_completion`` (a whole response, or one streamed chunk) with our ``sources`` extension."""

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[CompletionChoice]
    usage: UsageInfo | None = None
    # --- extension (onprem-rag): the sources the answer cites (on the last streamed chunk) --------
    sources: list[SourceRef] | None = None


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
    code: str


class ErrorResponse(BaseModel):
    """The OpenAI error envelope ``{"error": {...}}``."""

    error: ErrorBody
