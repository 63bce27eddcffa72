"""The one place where every failure becomes the OpenAI error envelope.

``{"error": {"message", "type", "param", "code"}}`` with the right status, for our own errors
(:class:`rag.errors.RagError`), request validation (400, never 422), routing errors (404, 405),
oversized bodies (413) and anything unexpected (500, logged with its traceback). A 5xx body says
only what kind of failure it was and the request id; its detail is in the log line with that id.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rag.errors import RagError, RateLimited
from serving.wire import UNICODE_ERROR, ErrorBody, ErrorResponse, encodable

log = logging.getLogger(__name__)

_TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
}
# Every envelope carries a code (clients switch on it): an error that names none gets its status's.
_CODE_BY_STATUS = {
    400: "invalid_request",
    401: "invalid_api_key",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "request_too_large",
    415: "unsupported_media_type",
    429: "rate_limit_exceeded",
    500: "internal_error",
    502: "upstream_error",
    503: "upstream_unavailable",
    504: "upstream_timeout",
}


def code_for(status: int) -> str:
    """The error code for a status when the error itself names none."""
    return _CODE_BY_STATUS.get(status, "server_error" if status >= 500 else "invalid_request")


class RequestTooLarge(HTTPException):
    """The request body is larger than the configured limit."""

    def __init__(self, limit_bytes: int) -> None:
        super().__init__(413, f"request body is larger than the limit of {limit_bytes // 1024} KiB")


def printable(text: str) -> str:
    r"""``text`` with anything UTF-8 cannot hold (lone surrogates) written as ``\udXXX`` escapes."""
    return text if encodable(text) else text.encode("utf-8", "backslashreplace").decode("utf-8")


def envelope(message: str, type_: str, param: str | None, code: str) -> dict[str, Any]:
    """The OpenAI error envelope as a plain dict (its texts always encodable: they may quote the caller)."""
    body = ErrorBody(
        message=printable(message),
        type=type_,
        param=None if param is None else printable(param),
        code=printable(code),
    )
    return ErrorResponse(error=body).model_dump()


# What a caller is told of a failure on our side: the detail (store paths, backend URLs, SDK
# messages) goes to the log line carrying the same request id, never into the response.
_PUBLIC_5XX = {
    502: "a backend of the service (vector store, embedder or chat model) answered with an error",
    503: "a backend of the service (vector store, embedder or chat model) is unavailable; try again later",
    504: "a backend of the service (vector store, embedder or chat model) did not answer in time",
}


# Failures common enough to say more about, still without internals (the holder's pid and command are logged).
_PUBLIC_BY_CODE = {
    "store_locked": "the vector store is in use by another process (an embedded store serves one process at a "
    "time; use a store server to ingest while serving); try again later",
}


def public_reason(status: int, code: str | None = None) -> str:
    """What a caller may be told of a failure on our side: its kind, never paths, addresses or SDK messages."""
    return _PUBLIC_BY_CODE.get(code or "", _PUBLIC_5XX.get(status, "internal server error"))


def public_message(status: int, request_id: str | None, code: str | None = None) -> str:
    """The message of a 5xx body: what kind of failure, and the request id to find its log line by."""
    text = public_reason(status, code)
    return text + (f" (request id {request_id}; the service log has the details)" if request_id else "")


def translate(exc: BaseException, request_id: str | None = None) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Status, envelope and extra headers for any exception; a 5xx is logged with its detail."""
    if isinstance(exc, RagError):
        headers = {}
        if isinstance(exc, RateLimited):
            headers["Retry-After"] = str(max(1, round(exc.retry_after_s)))
        if exc.status >= 500:
            log.error("request %s failed (%d %s): %s", request_id or "-", exc.status, exc.code, exc.message)
            message = public_message(exc.status, request_id, exc.code)
            return exc.status, envelope(message, exc.type, None, exc.code or code_for(exc.status)), headers
        return exc.status, envelope(exc.message, exc.type, exc.param, exc.code or code_for(exc.status)), headers
    if isinstance(exc, RequestValidationError):
        message, param = describe_validation(exc.errors())
        return 400, envelope(message, "invalid_request_error", param, "invalid_request"), {}
    if isinstance(exc, HTTPException):
        status = exc.status_code
        type_ = _TYPE_BY_STATUS.get(status, "api_error" if status >= 500 else "invalid_request_error")
        message = str(exc.detail) if exc.detail else "error"
        if status >= 500:
            log.error("request %s failed (%d): %s", request_id or "-", status, message)
            message = public_message(status, request_id)
        headers = dict(exc.headers or {})
        return status, envelope(message, type_, None, code_for(status)), headers
    log.error("unexpected error (request %s)", request_id or "-", exc_info=exc)
    return 500, envelope(public_message(500, request_id), "server_error", None, "internal_error"), {}


def describe_validation(errors: Sequence[Any]) -> tuple[str, str | None]:
    """A readable message naming the offending fields, and the first field as ``param``."""
    by_field: dict[str, list[str]] = {}
    for err in errors:
        if err.get("type") == UNICODE_ERROR:
            field = str((err.get("ctx") or {}).get("field", ""))
            by_field.setdefault(field, []).append(str(err.get("msg", "is not valid Unicode")))
            continue
        if err.get("type") == "json_invalid":
            detail = (err.get("ctx") or {}).get("error", "")
            by_field.setdefault("", []).append(f"is not valid JSON ({detail})".replace(" ()", ""))
            continue
        # pydantic adds the union member it tried ('str', 'list[TextPart]') to the location; drop it
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        loc = [p for p in loc if not p.startswith(("list[", "dict[")) and p not in ("str", "int", "TextPart")]
        field = ".".join(loc)
        msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
        if err.get("type") == "missing":
            msg = "is required" if field else "is required (a JSON object)"
        elif not field:
            msg = f"must be a JSON object ({msg})"
        by_field.setdefault(field, [])
        if msg not in by_field[field]:
            by_field[field].append(msg)
    parts = []
    for field, msgs in by_field.items():
        text = " or ".join(msgs) if len(msgs) > 1 and field else "; ".join(msgs)
        parts.append(f"{field}: {text}" if field else f"request body: {text}")
    first = next((f for f in by_field if f), None)
    return "; ".join(parts) or "invalid request", first


def error_response(exc: BaseException, request: Request | None = None) -> JSONResponse:
    """A JSON response carrying the envelope for ``exc``; never raises (a last-resort 500 instead)."""
    request_id = getattr(request.state, "request_id", None) if request is not None else None
    return error_response_for(exc, request_id)


def _last_resort(request_id: str | None) -> JSONResponse:
    message = public_message(500, request_id)
    error = {"message": message, "type": "server_error", "param": None, "code": "internal_error"}
    return JSONResponse({"error": error}, status_code=500)


async def _handle(request: Request, exc: Exception) -> JSONResponse:
    return error_response(exc, request)


def install(app: FastAPI) -> None:
    """Register the envelope for RagError, validation and HTTP errors; add the catch-all."""
    app.add_exception_handler(RagError, _handle)
    app.add_exception_handler(RequestValidationError, _handle)
    app.add_exception_handler(HTTPException, _handle)
    app.add_middleware(CatchAllMiddleware)


class CatchAllMiddleware:
    """Turns an unexpected exception into a 500 envelope (if nothing was sent yet) without re-raising.

    Starlette's own server-error handler would re-raise and log a second time; this one logs once.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app; translate an escaping exception into the envelope."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception as exc:
            if started:
                log.error("error after the response started", exc_info=exc)
                return
            request_id = scope.get("state", {}).get("request_id")
            await error_response_for(exc, request_id)(scope, receive, send)


def error_response_for(exc: BaseException, request_id: str | None) -> JSONResponse:
    """:func:`error_response` for a request id rather than a request."""
    try:
        status, body, headers = translate(exc, request_id)
        return JSONResponse(body, status_code=status, headers=headers)
    except Exception as failure:
        log.error("could not render the error of request %s", request_id or "-", exc_info=failure)
        return _last_resort(request_id)
