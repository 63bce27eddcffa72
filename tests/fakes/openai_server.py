"""Protocol-faithful fake of the OpenAI API for tests; not the OpenAI API.

A real HTTP server (uvicorn, loopback, free port) that replays the wire format of
``GET /v1/models``, ``POST /v1/chat/completions`` (JSON and SSE ``chat.completion.chunk`` streams,
a final usage chunk when ``stream_options.include_usage``, ``data: [DONE]``) and
``POST /v1/embeddings`` (float or base64), with OpenAI's error envelope. Answers are canned:
``Echo:`` followed by the first words of the last user message, one word per chunk, so tests can
assert on them. ``prefix`` mounts the routes elsewhere (``/openai/v1`` looks like KServe).

Like OpenAI's models it honours ``response_format`` (``json_object``: ``{"answer": "Echo: ..."}``;
``json_schema``: a value following the schema, streamed in pieces), ``tools`` (a call of the
named or first function, arguments following its parameters, ``finish_reason: "tool_calls"``;
after a ``tool`` message it answers in text), and ``logprobs``/``top_logprobs`` (one entry per piece).
"""

from __future__ import annotations

import base64
import itertools
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

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

DEFAULT_MODELS = ("fake-chat", "fake-embed")


def error(status: int, message: str, type_: str, code: str | None = None, param: str | None = None) -> JSONResponse:
    """OpenAI's error envelope."""
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return JSONResponse(body, status_code=status)


def _logprob(piece: str, top: int) -> dict[str, Any]:
    """One token's ``logprobs.content`` entry (the piece counts as one token)."""
    entry = {"token": piece, "logprob": -0.25, "bytes": list(piece.encode())}
    alternatives = [{"token": f"{piece}~{k}", "logprob": -1.0 - k, "bytes": list(f"{piece}~{k}".encode())}
                    for k in range(top)]  # fmt: skip
    return {**entry, "top_logprobs": [entry, *alternatives][:top] if top else []}


class FakeOpenAIServer(FakeServer):
    """Fake OpenAI-compatible server; ``with FakeOpenAIServer() as s: s.base_url``."""

    def __init__(
        self,
        models: tuple[str, ...] = DEFAULT_MODELS,
        *,
        prefix: str = "/v1",
        api_key: str | None = None,
        embed_dim: int = 16,
    ) -> None:
        super().__init__()
        self.models = list(models)
        self.prefix = prefix.rstrip("/")
        self.api_key = api_key
        self.embed_dim = embed_dim
        self._ids = itertools.count(1)
        self.serve(self._app())

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port><prefix>``, what an OpenAI client takes as ``base_url``."""
        return self._server.root + self.prefix

    def _check(self, request: Request) -> JSONResponse | None:
        if self.api_key is not None and request.headers.get("authorization") != f"Bearer {self.api_key}":
            return error(401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key")
        failure = self.take_failure()
        if failure is not None:
            return error(failure.status, failure.message, "server_error" if failure.status >= 500 else "api_error")
        return None

    def _unknown_model(self, model: str) -> JSONResponse:
        return error(
            404,
            f"The model `{model}` does not exist or you do not have access to it.",
            "invalid_request_error",
            "model_not_found",
        )

    def _app(self) -> FastAPI:
        app = FastAPI()
        p = self.prefix

        @app.get(p + "/models")
        async def models(request: Request) -> Response:
            if self.api_key is not None and request.headers.get("authorization") != f"Bearer {self.api_key}":
                return error(401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key")
            data = [{"id": m, "object": "model", "created": 1700000000, "owned_by": "fake"} for m in self.models]
            return JSONResponse({"object": "list", "data": data})

        @app.post(p + "/chat/completions")
        async def chat(request: Request) -> Response:
            await self.wait()
            if (bad := self._check(request)) is not None:
                return bad
            try:
                body = await request.json()
            except json.JSONDecodeError:
                return error(400, "We could not parse the JSON body of your request.", "invalid_request_error")
            self.requests.append(body)
            if not isinstance(body.get("messages"), list) or not body["messages"]:
                return error(400, "'messages' is a required property", "invalid_request_error", param="messages")
            model = str(body.get("model", ""))
            if model not in self.models:
                return self._unknown_model(model)
            stop = body.get("stop") or []
            stop = [stop] if isinstance(stop, str) else list(stop)
            limit = body.get("max_completion_tokens") or body.get("max_tokens")
            structured = json_reply(body.get("response_format"), body["messages"])
            reply = canned_reply(body["messages"]) if structured is None else json_pieces(structured)
            pieces, reason = cut(reply, limit, stop)
            call = tool_to_call(body.get("tools"), body.get("tool_choice"), body["messages"])
            calls = []
            if call is not None:
                arguments = json.dumps(call["arguments"])
                calls = [{"id": f"call_fake{next(self._ids)}", "type": "function",
                          "function": {"name": call["name"], "arguments": arguments}}]  # fmt: skip
                pieces, reason = [], "tool_calls"
            top = body.get("top_logprobs") or 0
            logprobs = bool(body.get("logprobs"))
            usage = {
                "prompt_tokens": count_words(body["messages"]),
                "completion_tokens": len(pieces),
                "total_tokens": count_words(body["messages"]) + len(pieces),
            }
            cid, created = f"chatcmpl-fake{next(self._ids)}", int(time.time())
            if not body.get("stream"):
                message: dict[str, Any] = {"role": "assistant", "content": "".join(pieces) if not calls else None}
                message["refusal"] = None
                if calls:
                    message["tool_calls"] = calls
                lp = {"content": [_logprob(p, top) for p in pieces], "refusal": None} if logprobs else None
                choice = {"index": 0, "message": message, "finish_reason": reason, "logprobs": lp}
                return JSONResponse(
                    {
                        "id": cid,
                        "object": "chat.completion",
                        "created": created,
                        "model": model,
                        "choices": [choice],
                        "usage": usage,
                        "system_fingerprint": "fp_fake",
                    }
                )
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return StreamingResponse(
                self._sse(cid, created, model, pieces, reason, usage if include_usage else None, calls, logprobs, top),
                media_type="text/event-stream",
            )

        @app.post(p + "/embeddings")
        async def embeddings(request: Request) -> Response:
            await self.wait()
            if (bad := self._check(request)) is not None:
                return bad
            body = await request.json()
            self.requests.append(body)
            model = str(body.get("model", ""))
            if model not in self.models:
                return self._unknown_model(model)
            inputs = body.get("input")
            inputs = [inputs] if isinstance(inputs, str) else inputs
            if not isinstance(inputs, list) or not inputs or any(not isinstance(t, str) or not t for t in inputs):
                return error(400, "'input' must be a non-empty string or array of strings", "invalid_request_error")
            data = []
            for i, text in enumerate(inputs):
                vec: Any = fake_vector(text, self.embed_dim)
                if body.get("encoding_format") == "base64":
                    vec = base64.b64encode(np.asarray(vec, dtype="<f4").tobytes()).decode()
                data.append({"object": "embedding", "index": i, "embedding": vec})
            tokens = sum(len(t.split()) for t in inputs)
            usage = {"prompt_tokens": tokens, "total_tokens": tokens}
            return JSONResponse({"object": "list", "data": data, "model": model, "usage": usage})

        return app

    async def _sse(
        self,
        cid: str,
        created: int,
        model: str,
        pieces: list[str],
        reason: str,
        usage: dict[str, int] | None,
        calls: list[dict[str, Any]],
        logprobs: bool,
        top: int,
    ) -> AsyncIterator[str]:
        def chunk(delta: dict[str, Any], finish: str | None, choices: bool = True, lp: Any = None) -> str:
            obj: dict[str, Any] = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_fake",
                "choices": [{"index": 0, "delta": delta, "logprobs": lp, "finish_reason": finish}] if choices else [],
            }
            if usage is not None:
                # With include_usage every chunk carries "usage": null except the extra last one.
                obj["usage"] = None
            return f"data: {json.dumps(obj)}\n\n"

        yield chunk({"role": "assistant", "content": "", "refusal": None}, None)
        for piece in pieces:
            lp = {"content": [_logprob(piece, top)], "refusal": None} if logprobs else None
            yield chunk({"content": piece}, None, lp=lp)
        for i, call in enumerate(calls):
            # OpenAI streams a call as its id and name first, then the arguments in pieces.
            head = {"index": i, "id": call["id"], "type": "function",
                    "function": {"name": call["function"]["name"], "arguments": ""}}  # fmt: skip
            yield chunk({"tool_calls": [head]}, None)
            for part in json_pieces(call["function"]["arguments"]):
                yield chunk({"tool_calls": [{"index": i, "function": {"arguments": part}}]}, None)
        yield chunk({}, reason)
        if usage is not None:
            last = json.loads(chunk({}, None, choices=False)[6:])
            last["usage"] = usage
            yield f"data: {json.dumps(last)}\n\n"
        yield "data: [DONE]\n\n"
