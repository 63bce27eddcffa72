"""Runs an ASGI app with uvicorn in a background thread on a free loopback port (for the fakes)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Self

import numpy as np
import uvicorn


@dataclass
class Failure:
    """A canned upstream failure: answer ``status`` with ``message`` to the next ``count`` requests."""

    count: int
    status: int
    message: str


class FailureModes:
    """Configurable misbehaviour shared by the fakes: failing requests and slow answers."""

    def __init__(self) -> None:
        self.delay_s = 0.0
        self._failure: Failure | None = None
        self._lock = threading.Lock()

    def fail_next(self, count: int = 1, status: int = 500, message: str = "injected failure") -> None:
        """Make the next ``count`` requests (other than health probes) fail with ``status``."""
        with self._lock:
            self._failure = Failure(count, status, message)

    def take_failure(self) -> Failure | None:
        """The failure to apply to this request, if one is armed (consumes one)."""
        with self._lock:
            f = self._failure
            if f is None or f.count <= 0:
                return None
            f.count -= 1
            return Failure(1, f.status, f.message)

    async def wait(self) -> None:
        """Sleep for the configured delay."""
        if self.delay_s > 0:
            await asyncio.sleep(self.delay_s)

    def reset(self) -> None:
        """Back to well-behaved."""
        with self._lock:
            self._failure = None
        self.delay_s = 0.0


class ServerThread:
    """uvicorn serving ``app`` on 127.0.0.1:<free port> in a daemon thread; a context manager."""

    def __init__(self, app: Any) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True)

    @property
    def root(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start serving and wait until the socket accepts requests."""
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("fake server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        """Stop serving and release the port."""
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()

    def __enter__(self) -> ServerThread:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class FakeServer(FailureModes):
    """What every fake shares: recorded request bodies, failure modes, and its app served in a thread.

    A subclass sets its own fields, then calls ``self.serve(app)``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[dict[str, Any]] = []

    def serve(self, app: Any) -> None:
        """Bind ``app`` to a free loopback port (served from :meth:`start`)."""
        self._server = ServerThread(app)

    @property
    def port(self) -> int:
        """The bound port."""
        return self._server.port

    def reset(self) -> None:
        """Forget recorded requests and failure modes."""
        super().reset()
        self.requests.clear()

    def start(self) -> Self:
        """Start serving."""
        self._server.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        self._server.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def fake_vector(text: str, dim: int) -> list[float]:
    """A deterministic unit vector from hashed words: equal texts embed equally, shared words overlap."""
    v = np.zeros(dim, dtype=np.float64)
    for word in text.lower().split() or [""]:
        h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
        v[h % dim] += 1.0 if (h >> 63) == 0 else -1.0
    norm = float(np.linalg.norm(v))
    if norm == 0:
        v[0], norm = 1.0, 1.0
    return [float(x) for x in v / norm]


def canned_reply(messages: list[dict[str, Any]]) -> list[str]:
    """The deterministic answer, as word pieces: ``Echo:`` and the first words of the last user message."""
    last = next((str(m.get("content") or "") for m in reversed(messages) if m.get("role") == "user"), "")
    words = ["Echo:", *last.split()[:24]]
    return [w if i == len(words) - 1 else w + " " for i, w in enumerate(words)]


def count_words(messages: list[dict[str, Any]]) -> int:
    """Prompt size as the fakes count it: whitespace tokens of every message."""
    return sum(len(str(m.get("content") or "").split()) for m in messages)


def cut(pieces: list[str], max_tokens: int | None, stop: list[str]) -> tuple[list[str], str]:
    """Apply ``max_tokens`` (counted in pieces) and stop strings; returns pieces and the finish reason."""
    reason = "stop"
    if max_tokens is not None and len(pieces) > max_tokens:
        pieces, reason = pieces[:max_tokens], "length"
    if stop:
        text, out = "", []
        for piece in pieces:
            joined = text + piece
            hits = [joined.find(s) for s in stop if s and joined.find(s) >= 0]
            if hits:
                keep = joined[: min(hits)][len(text) :]
                if keep:
                    out.append(keep)
                return out, "stop"
            out.append(piece)
            text = joined
    return pieces, reason


def _last_user(messages: list[dict[str, Any]]) -> str:
    return next((str(m.get("content") or "") for m in reversed(messages) if m.get("role") == "user"), "")


def schema_example(schema: Any, text: str) -> Any:
    """A value following a JSON schema (the subset models are given): strings carry ``text``."""
    if not isinstance(schema, dict):
        return text
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            return schema_example(schema[key][0], text)
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        props = schema.get("properties") or {}
        return {name: schema_example(sub, text) for name, sub in props.items()}
    if kind == "array":
        return [schema_example(schema.get("items") or {}, text)]
    if kind == "integer":
        return 1
    if kind == "number":
        return 1.5
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return text


def json_reply(response_format: Any, messages: list[dict[str, Any]]) -> str | None:
    """The JSON text a model constrained by ``response_format`` answers with (None for plain text).

    ``json_object`` gives ``{"answer": "Echo: ..."}``; ``json_schema`` a value following the schema
    (OpenAI's form ``{"type": "json_schema", "json_schema": {"schema": ...}}`` or Ollama's bare schema).
    """
    text = "".join(canned_reply(messages))
    if response_format in ("json", {"type": "json_object"}) or (
        isinstance(response_format, dict) and response_format.get("type") == "json_object"
    ):
        return json.dumps({"answer": text})
    if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
        return json.dumps(schema_example((response_format.get("json_schema") or {}).get("schema"), text))
    if isinstance(response_format, dict) and response_format.get("type") not in ("text", None):
        return json.dumps(schema_example(response_format, text))
    return None


def tool_to_call(tools: Any, tool_choice: Any, messages: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The function a tool-using model calls: the named one, else the first; none after a tool result.

    Returns ``{"name": ..., "arguments": {...}}`` (arguments following the function's parameter schema).
    """
    if not tools or tool_choice == "none" or (messages and messages[-1].get("role") == "tool"):
        return None
    functions = [t.get("function") or {} for t in tools if isinstance(t, dict)]
    chosen = functions[0]
    if isinstance(tool_choice, dict):
        wanted = (tool_choice.get("function") or {}).get("name")
        chosen = next((f for f in functions if f.get("name") == wanted), chosen)
    args = schema_example(chosen.get("parameters") or {"type": "object", "properties": {}}, _last_user(messages))
    return {"name": chosen.get("name", ""), "arguments": args}


def json_pieces(text: str, size: int = 8) -> list[str]:
    """``text`` in pieces of ``size`` characters, the way a model streams JSON."""
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]
