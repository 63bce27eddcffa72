"""Ollama through its native ``/api/chat`` (which, unlike ``/v1``, takes options such as the context size).

``ollama://host:11434?model=llama3.2``; an empty host means 127.0.0.1, an empty port 11434.
Optional ``?num_ctx=`` sets the context window. ``response_format`` becomes Ollama's ``format``
(``"json"`` for ``json_object``, the schema itself for ``json_schema``) and ``tools`` its ``tools``
(the same OpenAI function objects); the tool calls Ollama returns whole come back as OpenAI tool calls.
Ollama has no ``tool_choice``: ``auto`` is its behaviour, ``none`` sends no tools, anything else is refused.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from rag.errors import ConfigError, InvalidRequest, RagError, UpstreamError, UpstreamTimeout, UpstreamUnavailable
from rag.types import ChatRequest, Delta, GenParams, ToolCallDelta, Usage

if TYPE_CHECKING:
    from rag.config import Settings
    from rag.registry import BackendURL

log = logging.getLogger(__name__)

DEFAULT_PORT = 11434
HEALTH_TIMEOUT_S = 3.0
FEATURES = frozenset({"response_format", "tools"})


def ollama_format(params: GenParams) -> Any:
    """Ollama's ``format`` for an OpenAI ``response_format`` (None for plain text)."""
    rf = params.response_format
    if rf is None or rf.get("type", "text") == "text":
        return None
    if rf.get("type") == "json_object":
        return "json"
    if rf.get("type") == "json_schema":
        schema = (rf.get("json_schema") or {}).get("schema")
        if not isinstance(schema, dict):
            raise InvalidRequest(
                "response_format.json_schema.schema must be a JSON schema object", param="response_format"
            )
        return schema
    raise InvalidRequest(f"unknown response_format type {rf.get('type')!r}", param="response_format")


def ollama_tools(params: GenParams) -> list[dict[str, Any]] | None:
    """The tools to send (None for none), honouring ``tool_choice`` as far as Ollama can."""
    if not params.tools or params.tool_choice == "none":
        return None
    if params.tool_choice not in (None, "auto"):
        raise InvalidRequest(
            "Ollama cannot force a tool call: tool_choice may be 'auto' or 'none' with this backend",
            param="tool_choice",
            code="unsupported_parameter",
        )
    return [dict(t) for t in params.tools]


def ollama_host(url: BackendURL) -> str:
    """``http://host:port`` of an ``ollama://`` URL (127.0.0.1:11434 when not given)."""
    proto = "https" if url.transport == "https" else "http"
    return f"{proto}://{url.host or '127.0.0.1'}:{url.port or DEFAULT_PORT}"


def convert_ollama_error(e: BaseException, *, host: str, model: str) -> RagError | None:
    """Our error for an ``ollama``/``httpx`` exception; None when it is neither."""
    import httpx
    import ollama

    if isinstance(e, ollama.ResponseError):
        if e.status_code == 404:
            return UpstreamError(
                f"model {model!r} not found at Ollama {host} (pull it with: ollama pull {model}): {e.error}",
                param="model",
                code="model_not_found",
            )
        status = f" {e.status_code}" if e.status_code > 0 else ""
        return UpstreamError(f"Ollama {host} answered{status}: {e.error}")
    if isinstance(e, httpx.TimeoutException):
        return UpstreamTimeout(f"Ollama {host} did not answer in time (model {model!r})")
    if isinstance(e, (httpx.ConnectError, ConnectionError)):
        return UpstreamUnavailable(f"cannot reach Ollama at {host}: {e}")
    if isinstance(e, httpx.HTTPError):
        return UpstreamUnavailable(f"connection to Ollama {host} failed: {type(e).__name__}: {e}")
    if isinstance(e, ollama.RequestError):
        return UpstreamError(f"Ollama request refused by the client: {e.error}")
    return None


def make_ollama_client(host: str, timeout_s: float | None) -> Any:
    """An ``ollama.AsyncClient`` for ``host``."""
    import ollama

    return ollama.AsyncClient(host=host, timeout=timeout_s)


class OllamaChat:
    """Streams answers from an Ollama server's native chat API."""

    def __init__(
        self,
        client: Any,
        model: str,
        *,
        name: str,
        host: str,
        num_ctx: int | None = None,
        default_max_tokens: int = 512,
        default_temperature: float = 0.1,
    ) -> None:
        self._client = client
        self._model = model
        self._name = name
        self._host = host
        self._num_ctx = num_ctx
        self._default_max_tokens = default_max_tokens
        self._default_temperature = default_temperature

    @property
    def name(self) -> str:
        """``ollama://host:port?model=x``."""
        return self._name

    @property
    def model(self) -> str:
        """The Ollama model name."""
        return self._model

    @property
    def features(self) -> frozenset[str]:
        """``response_format`` (as ``format``) and ``tools``; Ollama's logprobs are not OpenAI's, so not offered."""
        return FEATURES

    def _options(self, request: ChatRequest) -> dict[str, Any]:
        p = request.params
        options: dict[str, Any] = {
            "temperature": self._default_temperature if p.temperature is None else p.temperature,
            "num_predict": self._default_max_tokens if p.max_tokens is None else p.max_tokens,
        }
        if p.top_p is not None:
            options["top_p"] = p.top_p
        if p.stop:
            options["stop"] = list(p.stop)
        if p.seed is not None:
            options["seed"] = p.seed
        if self._num_ctx is not None:
            options["num_ctx"] = self._num_ctx
        return options

    async def stream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        """Stream the answer; the last delta carries ``done_reason`` and the token counts."""
        messages = ollama_messages(request)
        finish: str | None = None
        usage: Usage | None = None
        calls = 0
        extra: dict[str, Any] = {}
        if (fmt := ollama_format(request.params)) is not None:
            extra["format"] = fmt
        if (tools := ollama_tools(request.params)) is not None:
            extra["tools"] = tools
        try:
            parts = await self._client.chat(
                model=self._model, messages=messages, stream=True, options=self._options(request), **extra
            )
            async for part in parts:
                text = part.message.content if part.message is not None else None
                pieces = _tool_calls(part.message.tool_calls if part.message is not None else None, calls)
                calls += len(pieces)
                if text or pieces:
                    yield Delta(text=text or "", tool_calls=pieces)
                if part.done:
                    finish = "tool_calls" if calls else (part.done_reason or "stop")
                    usage = Usage(part.prompt_eval_count or 0, part.eval_count or 0)
        except Exception as e:
            err = convert_ollama_error(e, host=self._host, model=self._model)
            if err is None:
                raise
            raise err from e
        if finish is None:
            raise UpstreamError(f"Ollama {self._host} ended the stream without a final 'done' message")
        yield Delta(finish_reason=finish, usage=usage)

    async def health(self) -> bool:
        """True when the server lists its models and ours is among them."""
        try:
            async with make_ollama_client(self._host, HEALTH_TIMEOUT_S) as probe:
                listing = await probe.list()
        except Exception as e:
            log.info("Ollama at %s is not healthy: %s", self._host, e)
            return False
        names = {m.model for m in listing.models}
        if self._model not in names and f"{self._model}:latest" not in names:
            log.info("Ollama at %s is up but has no model %r (has: %s)", self._host, self._model, sorted(names))
            return False
        return True

    async def close(self) -> None:
        """Close the HTTP connection pool."""
        await self._client.close()


def ollama_messages(request: ChatRequest) -> list[dict[str, Any]]:
    """Messages in Ollama's form: a tool call's arguments are an object, a tool result names its function."""
    names: dict[str, str] = {}
    out: list[dict[str, Any]] = []
    for m in request.messages:
        msg: dict[str, Any] = {"role": m.role, "content": m.content}
        if m.tool_calls:
            calls = []
            for call in m.tool_calls:
                fn = call.get("function") or {}
                names[str(call.get("id", ""))] = str(fn.get("name", ""))
                try:
                    args = json.loads(fn.get("arguments") or "{}")
                except json.JSONDecodeError as e:
                    raise InvalidRequest("a tool call's arguments are not valid JSON", param="messages") from e
                calls.append({"function": {"name": fn.get("name", ""), "arguments": args}})
            msg["tool_calls"] = calls
        if m.role == "tool" and m.tool_call_id in names:
            msg["tool_name"] = names[m.tool_call_id]
        out.append(msg)
    return out


def _tool_calls(calls: Any, first_index: int) -> tuple[ToolCallDelta, ...]:
    """Ollama's whole tool calls (arguments an object, no id) as OpenAI tool-call pieces."""
    out = []
    for i, call in enumerate(calls or ()):
        args = call.function.arguments
        out.append(
            ToolCallDelta(
                index=first_index + i,
                id=f"call_{uuid.uuid4().hex[:24]}",
                name=call.function.name,
                arguments=json.dumps(dict(args or {}), ensure_ascii=False),
            )
        )
    return tuple(out)


def from_url(url: BackendURL, settings: Settings) -> OllamaChat:
    """``ollama://host:11434?model=llama3.2`` (``?num_ctx=`` optional)."""
    model = url.query.get("model", "").strip()
    if not model:
        raise ConfigError(f"backend URL {url.raw!r} needs a model, like ollama://127.0.0.1:11434?model=llama3.2")
    try:
        num_ctx = int(url.query["num_ctx"]) if "num_ctx" in url.query else None
    except ValueError as e:
        raise ConfigError(f"?num_ctx= must be an integer in {url.raw!r}") from e
    host = ollama_host(url)
    return OllamaChat(
        make_ollama_client(host, settings.chat.timeout_s),
        model,
        name=url.raw,
        host=host,
        num_ctx=num_ctx,
        default_max_tokens=settings.chat.max_tokens,
        default_temperature=settings.chat.temperature,
    )
