"""Pure ASGI middleware (streaming-safe): request ids, the request head and body size limits."""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_to_bytes

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rag.config import ServerSettings
from serving.errors import RequestTooLarge, envelope, translate
from serving.metrics import REQUEST_ID

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-Id"
# A caller's id is echoed only if it is short and harmless in logs and headers.
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")
# Key of the head limits in the ASGI lifespan state, where serving.protocol finds them.
LIMITS_KEY = "rag_header_limits"
HEAD_TOO_LARGE = "request_header_too_large"


@dataclass(frozen=True)
class HeaderLimits:
    """How large a request head may be: bytes of the request line and headers, and header fields."""

    max_bytes: int
    max_fields: int

    @classmethod
    def of(cls, server: ServerSettings) -> HeaderLimits:
        """The limits set in ``server``."""
        return cls(max_bytes=server.max_header_kb * 1024, max_fields=server.max_headers)

    @classmethod
    def defaults(cls) -> HeaderLimits:
        """The limits of the default settings."""
        fields = ServerSettings.model_fields
        return cls(fields["max_header_kb"].default * 1024, fields["max_headers"].default)

    def refusal(self, head_bytes: int, fields: int) -> str | None:
        """Why a head of this size is refused (431), or None."""
        if fields > self.max_fields:
            return f"more than {self.max_fields} request header fields (server.max_headers)"
        if head_bytes > self.max_bytes:
            return f"the request headers are larger than {self.max_bytes // 1024} KiB (server.max_header_kb)"
        return None


class HeadCheckMiddleware:
    """Refuses a request head over the limits (431) or a URL that is not valid UTF-8 (400).

    ``serving.protocol`` refuses oversized heads while parsing them (``rag serve``); this check makes
    the limits hold under any other server too (h11, plain httptools), after the head was read.
    Starlette would decode a malformed URL with replacement characters; it is refused instead.
    """

    def __init__(self, app: ASGIApp, limits: HeaderLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the head; refuse it or pass the request on."""
        if scope["type"] == "http":
            refused = self._check(scope)
            if refused is not None:
                status, body = refused
                await JSONResponse(body, status_code=status, headers={"Connection": "close"})(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _check(self, scope: Scope) -> tuple[int, dict[str, Any]] | None:
        headers = scope.get("headers") or []
        raw_path, query = scope.get("raw_path") or b"", scope.get("query_string") or b""
        size = len(raw_path) + len(query) + sum(len(name) + len(value) + 4 for name, value in headers)
        reason = self.limits.refusal(size, len(headers))
        if reason is not None:
            log.warning("refused a request head: %s", reason)
            return 431, envelope(reason, "invalid_request_error", None, HEAD_TOO_LARGE)
        bad = _malformed_url(raw_path, query)
        if bad is not None:
            message, param = bad
            return 400, envelope(message, "invalid_request_error", param, "invalid_request")
        return None


def _malformed_url(raw_path: bytes, query: bytes) -> tuple[str, str | None] | None:
    """(message, param) when the percent-decoded path or a query parameter is not UTF-8, else None."""
    try:
        unquote_to_bytes(raw_path).decode("utf-8")
    except UnicodeDecodeError:
        return "the URL path is not valid UTF-8 (percent-escapes must spell UTF-8)", None
    for pair in query.split(b"&"):
        name, _, value = pair.partition(b"=")
        try:
            decoded = unquote_to_bytes(name.replace(b"+", b" ")).decode("utf-8")
        except UnicodeDecodeError:
            return "a query parameter name is not valid UTF-8", None
        try:
            unquote_to_bytes(value.replace(b"+", b" ")).decode("utf-8")
        except UnicodeDecodeError:
            return f"query parameter '{decoded}' is not valid UTF-8 (percent-escapes must spell UTF-8)", decoded
    return None


class RequestIdMiddleware:
    """Takes the caller's ``X-Request-Id`` (or makes one), keeps it on ``request.state``, echoes it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Attach and echo the request id."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = Headers(scope=scope).get(REQUEST_ID_HEADER, "")
        request_id = given if _SAFE_ID.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        token = REQUEST_ID.set(request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            REQUEST_ID.reset(token)


class BodyLimitMiddleware:
    """Refuses request bodies above ``max_bytes`` with 413 in the OpenAI envelope.

    A declared ``Content-Length`` is checked before reading; a chunked body is counted as it
    arrives and the read fails with :class:`RequestTooLarge`, which the error handlers translate.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the declared size, then count the bytes as they are read."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            status, body, headers = translate(RequestTooLarge(self.max_bytes))
            headers["Connection"] = "close"
            await JSONResponse(body, status_code=status, headers=headers)(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise RequestTooLarge(self.max_bytes)
            return message

        await self.app(scope, counting_receive, send)
