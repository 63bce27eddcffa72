"""5xx bodies never show store paths, backend addresses or SDK messages; the log line with the request id does.

The failures are real: an embedded Chroma path that is a file, a Chroma server address
nothing listens on, a chat backend that dies mid-stream.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import httpx
import openai
import pytest

from rag.pipeline import Pipeline
from rag.registry import make_embedder, make_store
from serving.app import create_app
from tests.procs import free_port
from tests.serving.conftest import MODEL, RagServer, Service, make_settings
from tests.serving.doubles import ScriptedChat

CHAT = "/v1/chat/completions"
QUESTION = {"model": MODEL, "messages": [{"role": "user", "content": "How many GPUs does the cluster have?"}]}


def logged_with(caplog: pytest.LogCaptureFixture, request_id: str) -> list[str]:
    """Messages of the log records written for one request."""
    return [r.getMessage() for r in caplog.records if request_id in r.getMessage()]


async def test_an_unreachable_store_is_503_without_its_address_and_logged_with_the_request_id(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()  # nothing listens there
    settings = make_settings(tmp_path, store={"url": f"chroma+http://127.0.0.1:{port}", "collection": "docs"})
    pipeline = Pipeline(settings, make_store(settings), make_embedder(settings), ScriptedChat())
    app = create_app(settings, pipeline=pipeline)
    caplog.set_level(logging.INFO)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            for path, body in ((CHAT, QUESTION), ("/v1/search", {"query": "GPUs"})):
                response = await client.post(path, json=body, headers={"X-Request-Id": f"req-{path[4:]}"})
                assert response.status_code == 503, response.text
                error = response.json()["error"]
                assert error["code"] == "upstream_unavailable"
                assert error["type"] == "api_error"
                assert f"req-{path[4:]}" in error["message"] and "unavailable" in error["message"]
                for secret in ("chroma", "Chroma", "127.0.0.1", str(port)):
                    assert secret not in json.dumps(error)
                detail = logged_with(caplog, f"req-{path[4:]}")
                assert any("Chroma" in line and str(port) in line for line in detail), detail


async def test_a_broken_embedded_store_is_5xx_without_its_path(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store_dir = tmp_path / "secret-store-location"
    settings = make_settings(tmp_path, store={"url": f"chroma://{store_dir}", "collection": "docs"})
    store_dir.write_text("a file where the store's directory should be")
    broken = Pipeline(settings, make_store(settings), make_embedder(settings), ScriptedChat())
    app = create_app(settings, pipeline=broken)
    caplog.set_level(logging.INFO)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            response = await client.post("/v1/search", json={"query": "GPUs"}, headers={"X-Request-Id": "req-broken"})
    assert response.status_code >= 500, response.text
    assert "secret-store-location" not in response.text and str(tmp_path) not in response.text
    assert "req-broken" in response.json()["error"]["message"]
    assert any("secret-store-location" in line for line in logged_with(caplog, "req-broken"))


async def test_a_stream_that_fails_midway_ends_with_a_generic_error_event(
    service: Service, caplog: pytest.LogCaptureFixture
) -> None:
    service.chat.fail_at = 2
    caplog.set_level(logging.INFO)
    body = {**QUESTION, "stream": True}
    async with service.client.stream("POST", CHAT, json=body, headers={"X-Request-Id": "req-stream"}) as response:
        events = [line async for line in response.aiter_lines() if line.startswith("data: ")]
    error = json.loads(events[-2].removeprefix("data: "))["error"]
    assert error["code"] == "upstream_unavailable"
    assert "went away" not in error["message"] and "req-stream" in error["message"]
    assert events[-1] == "data: [DONE]"
    assert any("the model server went away" in line for line in logged_with(caplog, "req-stream"))


@pytest.mark.slow
def test_a_real_server_answers_a_store_outage_with_a_generic_body_and_logs_the_detail(
    start_rag_server: Callable[..., RagServer],
) -> None:
    port = free_port()
    server = start_rag_server(f"chroma+http://127.0.0.1:{port}", env={"RAG_STORE__TIMEOUT_S": "2"})
    with pytest.raises(openai.APIStatusError) as failure:
        server.openai().chat.completions.create(model=MODEL, messages=QUESTION["messages"])  # type: ignore[arg-type]
    assert failure.value.status_code == 503, failure.value
    body = failure.value.body
    assert isinstance(body, dict)
    assert str(port) not in json.dumps(body) and "chroma" not in json.dumps(body).lower()
    request_id = failure.value.response.headers["x-request-id"]
    assert request_id in body["message"]
    lines = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    detail = [line["msg"] for line in lines if line.get("request_id") == request_id]
    assert any("Chroma" in msg and str(port) in msg for msg in detail), detail
