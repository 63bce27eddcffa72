"""The HTTP/1.1 protocol ``rag serve`` runs: uvicorn's httptools protocol with a bounded request head.

httptools (llhttp) has no limit on the size or number of header fields, and it joins the pieces
of a header as they arrive, so a 64 MB header would be held (and copied over and over) before the
app could refuse it. This protocol counts the request head while it is parsed and answers 431 in
the OpenAI error envelope as soon as it passes ``server.max_header_kb`` or ``server.max_headers``,
then closes the connection. Plain uvicorn takes it with
``uvicorn --factory serving.app:create_app --http serving.protocol:HeaderLimitedProtocol``.

The limits come from the app's settings through the ASGI lifespan state (see ``serving.app``), so
the protocol and the app read one configuration; with the lifespan off the defaults apply.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import httptools
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from serving.errors import envelope
from serving.middleware import HEAD_TOO_LARGE, LIMITS_KEY, HeaderLimits

log = logging.getLogger(__name__)


class _Refused(Exception):
    """Raised inside a parser callback to stop parsing a head that is too large."""


class HeaderLimitedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol that refuses oversized request heads while parsing them.

    Parsed bytes (URL and each complete header) are counted in the parser callbacks; a header still
    being received is bounded by counting whole network reads that fall inside one head (the read a
    head starts in is not counted), so no more than the limit plus two reads (256 KiB each) is ever
    buffered. Both counts stay below the true head size, so a head within the limits is never refused.
    """

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        limits = app_state.get(LIMITS_KEY)
        self.limits = limits if isinstance(limits, HeaderLimits) else HeaderLimits.defaults()
        self._in_head = False
        self._messages = 0  # heads begun on this connection
        self._parsed = 0  # bytes of the URL and the complete headers of the current head
        self._received = 0  # bytes of whole reads that lay inside the current head
        self._fields = 0
        self._refused: str | None = None

    def data_received(self, data: bytes) -> None:
        """Feed the parser (as uvicorn does), refusing a head over the limits with 431."""
        self._unset_keepalive_if_required()
        in_head_before, messages_before = self._in_head, self._messages
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError:
            if self._refused is not None:
                self._send_431(self._refused)
                return
            msg = "Invalid HTTP request received."
            self.logger.warning(msg)
            self.send_400_response(msg)
            return
        if self._in_head and in_head_before and self._messages == messages_before:
            # The whole read lay inside one head that is still incomplete: a header being received.
            self._received += len(data)
            reason = self.limits.refusal(self._received, self._fields)
            if reason is not None:
                self._send_431(reason)

    def on_message_begin(self) -> None:
        """A new request head starts: reset the counts."""
        super().on_message_begin()
        self._in_head = True
        self._messages += 1
        self._parsed = self._received = self._fields = 0

    def on_url(self, url: bytes) -> None:
        """Count the URL (it may arrive in pieces)."""
        self._count(len(url), 0)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        """Count one complete header field (name, value, ': ' and CRLF)."""
        self._count(len(name) + len(value) + 4, 1)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        """The head is complete and within the limits: hand the request to the app."""
        self._in_head = False
        super().on_headers_complete()

    def _count(self, size: int, fields: int) -> None:
        self._parsed += size
        self._fields += fields
        if self._parsed > self.limits.max_bytes or self._fields > self.limits.max_fields:  # cheap check per header
            reason = self.limits.refusal(max(self._parsed, self._received), self._fields)
            self._refused = reason
            raise _Refused(reason)

    def _send_431(self, reason: str) -> None:
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "-"
        log.warning("refused a request head from %s: %s", client, reason)
        body = json.dumps(envelope(reason, "invalid_request_error", None, HEAD_TOO_LARGE)).encode()
        content = [STATUS_LINE[431]]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend(
            [
                b"content-type: application/json\r\n",
                b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
                b"connection: close\r\n",
                b"\r\n",
                body,
            ]
        )
        self.transport.write(b"".join(content))
        self.transport.close()
