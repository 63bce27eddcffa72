"""Pure ASGI middleware (streaming-safe): request ids, the request head and body size limits."""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass

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


class HeaderLimitMiddleware:
    """Answers 431 to a request whose head is over the limits, whatever server parsed it.

    ``serving.protocol`` refuses such heads while parsing them (``rag serve``); this check makes the
    limits hold under any other server too (h11, plain httptools), after the head was read.
    """

    def __init__(self, app: ASGIApp, limits: HeaderLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Measure the head; refuse it or pass the request on."""
        if scope["type"] == "http":
            headers = scope.get("headers") or []
            size = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
            size += sum(len(name) + len(value) + 4 for name, value in headers)
            reason = self.limits.refusal(size, len(headers))
            if reason is not None:
                log.warning("refused a request head: %s", reason)
                body = envelope(reason, "invalid_request_error", None, HEAD_TOO_LARGE)
                await JSONResponse(body, status_code=431, headers={"Connection": "close"})(scope, receive, send)
                return
        await self.app(scope, receive, send)


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
