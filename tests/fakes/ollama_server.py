"""Protocol-faithful fake of the Ollama server for tests; not Ollama.

A real HTTP server (uvicorn, loopback, free port) replaying Ollama's native wire format:
``POST /api/chat`` (newline-delimited JSON objects, streamed unless ``"stream": false``, the last
with ``done: true``, ``done_reason``, token counts and nanosecond durations), ``POST /api/embed``,
``GET /api/tags``, ``GET /`` ("Ollama is running"), and ``{"error": "..."}`` bodies with 404 for a
model that is not pulled. Answers are canned: ``Echo:`` and the first words of the last user
message, one word per line, so tests can assert on them. Model names without a tag mean ``:latest``.
``format`` (``"json"`` or a JSON schema) makes the answer JSON; ``tools`` makes it one message with
``tool_calls`` (``{"function": {"name", "arguments": {...}}}``, arguments an object, no id) and
``done_reason: "stop"``, as Ollama sends them; after a ``tool`` message it answers in text.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from tests.fakes._serve import (
    FakeServer,
    canned_reply,
    count_words,
    cut,
    fake_vector,
    json_pieces,
    json_reply,
    tool_to_call,
)

DEFAULT_MODELS = ("llama3.2:latest", "nomic-embed-text:latest")


def full_name(model: str) -> str:
    """Ollama's name resolution: no tag means ``:latest``."""
    return model if ":" in model else model + ":latest"


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class FakeOllamaServer(FakeServer):
    """Fake Ollama server; ``with FakeOllamaServer() as s: s.host``."""

    def __init__(self, models: tuple[str, ...] = DEFAULT_MODELS, *, embed_dim: int = 16) -> None:
        super().__init__()
        self.models = [full_name(m) for m in models]
        self.embed_dim = embed_dim
        self.serve(self._app())

    @property
    def host(self) -> str:
        """``http://127.0.0.1:<port>``, what ``ollama.AsyncClient(host)`` takes."""
        return self._server.root

    async def _prelude(self, request: Request) -> tuple[dict[str, Any], Response | None]:
        await self.wait()
        failure = self.take_failure()
        if failure is not None:
            return {}, JSONResponse({"error": failure.message}, status_code=failure.status)
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return {}, JSONResponse({"error": "invalid character in JSON body"}, status_code=400)
        self.requests.append(body)
        model = str(body.get("model", ""))
        if not model:
            return body, JSONResponse({"error": "model is required"}, status_code=400)
        if full_name(model) not in self.models:
            return body, JSONResponse({"error": f"model '{model}' not found"}, status_code=404)
        return body, None

    def _app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/")
        async def root() -> Response:
            return PlainTextResponse("Ollama is running")

        @app.get("/api/tags")
        async def tags() -> Response:
            return JSONResponse({"models": [self._tag(m) for m in self.models]})

        @app.post("/api/chat")
        async def chat(request: Request) -> Response:
            body, bad = await self._prelude(request)
            if bad is not None:
                return bad
            messages = body.get("messages") or []
            options = body.get("options") or {}
            stop = options.get("stop") or []
            limit = options.get("num_predict")
            fmt = body.get("format")
            structured = json_reply(fmt, messages) if fmt else None
            reply = canned_reply(messages) if structured is None else json_pieces(structured)
            pieces, reason = cut(reply, limit if limit and limit > 0 else None, stop)
            call = tool_to_call(body.get("tools"), None, messages)
            tool_calls = [{"function": call}] if call is not None else []
            if tool_calls:
                pieces = []
            final = {
                "model": body["model"],
                "created_at": _now(),
                "message": {"role": "assistant", "content": ""},
                "done_reason": reason,
                "done": True,
                "total_duration": 12_000_000 + 1_000_000 * len(pieces),
                "load_duration": 2_000_000,
                "prompt_eval_count": count_words(messages),
                "prompt_eval_duration": 3_000_000,
                "eval_count": len(pieces),
                "eval_duration": 1_000_000 * len(pieces),
            }
            if body.get("stream", True) is False:
                final["message"] = {"role": "assistant", "content": "".join(pieces)}
                if tool_calls:
                    final["message"]["tool_calls"] = tool_calls
                return JSONResponse(final)
            lines = self._lines(body["model"], pieces, final, tool_calls)
            return StreamingResponse(lines, media_type="application/x-ndjson")

        @app.post("/api/embed")
        async def embed(request: Request) -> Response:
            body, bad = await self._prelude(request)
            if bad is not None:
                return bad
            inputs = body.get("input", "")
            inputs = [inputs] if isinstance(inputs, str) else list(inputs)
            return JSONResponse(
                {
                    "model": body["model"],
                    "embeddings": [fake_vector(t, self.embed_dim) for t in inputs],
                    "total_duration": 14_143_917,
                    "load_duration": 1_019_500,
                    "prompt_eval_count": sum(len(t.split()) for t in inputs),
                }
            )

        return app

    async def _lines(
        self, model: str, pieces: list[str], final: dict[str, Any], tool_calls: list[dict[str, Any]]
    ) -> AsyncIterator[str]:
        for piece in pieces:
            part = {"model": model, "created_at": _now(), "message": {"role": "assistant", "content": piece}}
            yield json.dumps({**part, "done": False}) + "\n"
        if tool_calls:
            message = {"role": "assistant", "content": "", "tool_calls": tool_calls}
            yield json.dumps({"model": model, "created_at": _now(), "message": message, "done": False}) + "\n"
        yield json.dumps(final) + "\n"

    def _tag(self, name: str) -> dict[str, Any]:
        family = name.split(":")[0].split(".")[0]
        return {
            "name": name,
            "model": name,
            "modified_at": "2025-01-15T10:00:00.000000000Z",
            "size": 1_321_098_329,
            "digest": hashlib.sha256(name.encode()).hexdigest(),
            "details": {
                "parent_model": "",
                "format": "gguf",
                "family": family,
                "families": [family],
                "parameter_size": "1.2B",
                "quantization_level": "Q4_K_M",
            },
        }
