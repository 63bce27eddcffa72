"""What the OpenAI chat and embedding adapters share: endpoint URLs, the client, error conversion."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from rag.errors import ConfigError, RagError, UpstreamError, UpstreamTimeout, UpstreamUnavailable

if TYPE_CHECKING:
    from rag.registry import BackendURL

log = logging.getLogger(__name__)

OPENAI_API_BASE = "https://api.openai.com/v1"
# Local servers ignore the key but the SDK insists on one.
PLACEHOLDER_KEY = "not-needed"


def openai_base_url(url: BackendURL) -> str:
    """The ``/v1`` base URL an ``openai``, ``openai+http(s)`` or ``kserve+http(s)`` URL points at."""
    if url.scheme == "openai":
        return OPENAI_API_BASE
    if url.scheme.startswith("kserve"):
        default_path = "/openai/v1"
    elif url.scheme.startswith("openai"):
        default_path = "/v1"
    else:
        raise ConfigError(f"not an OpenAI-protocol URL: {url.raw!r}")
    if not url.host:
        raise ConfigError(f"{url.scheme}:// needs a host: {url.raw!r}")
    base = url.http_base()
    return base if url.path.strip("/") else base + default_path


def require_model(url: BackendURL, example: str) -> str:
    """The ``?model=`` of a backend URL; a ConfigError naming an example when it is missing."""
    model = url.query.get("model", "").strip()
    if not model:
        raise ConfigError(f"backend URL {url.raw!r} needs a model, like {example}")
    return model


def make_async_client(url: BackendURL, api_key: str | None, timeout_s: float) -> Any:
    """An ``openai.AsyncOpenAI`` for the URL; never reads OPENAI_* environment variables."""
    import openai

    if url.scheme == "openai" and not api_key:
        raise ConfigError("openai:// needs an API key: set RAG_CHAT__API_KEY (or RAG_EMBED__API_KEY)")
    return openai.AsyncOpenAI(
        api_key=api_key or PLACEHOLDER_KEY,
        base_url=openai_base_url(url),
        timeout=timeout_s,
        max_retries=_int_param(url, "retries", 1),
    )


def _int_param(url: BackendURL, key: str, default: int) -> int:
    raw = url.query.get(key)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError as e:
        raise ConfigError(f"?{key}= must be an integer in {url.raw!r}") from e


# The SDK sends requests with httpx2 (newer releases) or httpx; transport errors raised while a
# stream is being read are not always wrapped by the SDK, so both families are recognised by name.
_TRANSPORT_MODULES = ("httpx", "httpx2", "httpcore", "httpcore2")


def convert_openai_error(e: BaseException, *, endpoint: str, model: str) -> RagError | None:
    """Our error for an ``openai`` (or its HTTP transport's) exception; None when it is neither.

    Args:
        e: the exception caught at the adapter's boundary.
        endpoint: the base URL, named in messages so operators know which upstream failed.
        model: the model asked for, named when the upstream does not know it.
    """
    import openai

    if isinstance(e, openai.APITimeoutError):
        return UpstreamTimeout(f"{endpoint} did not answer in time (model {model!r})")
    if isinstance(e, openai.APIConnectionError):
        return UpstreamUnavailable(f"cannot reach {endpoint}: {_cause(e)}")
    if isinstance(e, openai.APIStatusError):
        message = _upstream_message(e)
        if e.status_code == 404:
            return UpstreamError(
                f"model {model!r} not found at {endpoint}: {message}", param="model", code="model_not_found"
            )
        return UpstreamError(f"{endpoint} answered {e.status_code}: {message}")
    if isinstance(e, openai.OpenAIError):
        return UpstreamError(f"{endpoint}: {getattr(e, 'message', None) or e}")
    root = type(e).__module__.partition(".")[0]
    if root in _TRANSPORT_MODULES:
        name = type(e).__name__
        if "Timeout" in name:
            return UpstreamTimeout(f"{endpoint} did not answer in time (model {model!r}): {name}")
        return UpstreamUnavailable(f"connection to {endpoint} failed: {name}: {e}")
    return None


def _upstream_message(e: BaseException) -> str:
    """The ``error.message`` of an OpenAI error envelope, else the SDK's own message."""
    body = getattr(e, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return str(inner["message"])
        if isinstance(inner, str):
            return inner
    return str(getattr(e, "message", None) or e)


def _cause(e: BaseException) -> str:
    """The underlying transport error, which says more than the SDK's generic 'Connection error.'."""
    cause = e.__cause__ or e.__context__
    return f"{type(cause).__name__}: {cause}" if cause is not None else str(e)
