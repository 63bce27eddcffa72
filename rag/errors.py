"""The error hierarchy: each class knows its HTTP status and OpenAI error type.

Adapters convert SDK exceptions into these at their boundary (``raise ... from e``);
the service and the CLI translate them for the user in exactly one place each.
"""

from __future__ import annotations

import enum


class RagError(Exception):
    """Base of every error this project raises on purpose."""

    status: int = 500
    type: str = "server_error"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code


class ConfigError(RagError):
    """Invalid configuration: unknown scheme, bad URL, missing setting."""

    status = 500
    type = "server_error"
    code = "config_error"


class MissingExtra(ConfigError):
    """An optional dependency that a backend needs is not installed."""

    code = "missing_extra"

    def __init__(self, package: str, extra: str) -> None:
        spec = "onprem-rag" if extra == "core" else f"onprem-rag[{extra}]"
        super().__init__(f"the '{package}' package is needed for this backend; install it with: pip install '{spec}'")


class InvalidRequest(RagError):
    """The caller sent something we cannot act on."""

    status = 400
    type = "invalid_request_error"


class Unauthenticated(RagError):
    """No valid credentials."""

    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class Forbidden(RagError):
    """Valid credentials without the needed scope."""

    status = 403
    type = "permission_error"
    code = "insufficient_scope"


class NotFound(RagError):
    """Unknown model, collection or resource."""

    status = 404
    type = "invalid_request_error"
    code = "not_found"


class CollectionNotFound(NotFound):
    """The collection has not been created (nothing ingested yet)."""

    code = "collection_not_found"


class EmbedderMismatch(RagError):
    """A collection built with one embedder was opened with another."""

    status = 409
    type = "invalid_request_error"
    code = "embedder_mismatch"


class RateLimited(RagError):
    """Too many requests for this key."""

    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class UpstreamError(RagError):
    """A backend answered with an error."""

    status = 502
    type = "api_error"
    code = "upstream_error"


class UpstreamUnavailable(RagError):
    """A backend (store, embedder, model server) cannot be reached."""

    status = 503
    type = "api_error"
    code = "upstream_unavailable"


class StoreLocked(UpstreamUnavailable):
    """An embedded store is open in another process (embedded stores serve one process at a time)."""

    code = "store_locked"


class UpstreamTimeout(RagError):
    """A backend did not answer in time."""

    status = 504
    type = "api_error"
    code = "upstream_timeout"


class ExitCode(enum.IntEnum):
    """Exit codes of the ``rag`` command (docs/cli.md lists them)."""

    OK = 0
    PARTIAL = 1  # the command ran, but some of its work failed (documents that did not ingest)
    CONFIG = 2  # usage, configuration or a request the backends refused as invalid
    BACKEND = 3  # a backend (store, embedder, model server) failed, timed out or is unreachable
    GATE = 4  # an evaluation quality gate (--min / --max) failed
    INTERRUPTED = 130  # Ctrl-C


def exit_code(error: RagError) -> ExitCode:
    """The exit code for an error that ends a command: backends at fault (5xx) or the request/config (4xx)."""
    if isinstance(error, ConfigError):
        return ExitCode.CONFIG
    return ExitCode.BACKEND if error.status >= 500 else ExitCode.CONFIG
