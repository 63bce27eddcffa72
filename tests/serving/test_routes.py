"""Routes in process: chat (plain and streamed), embeddings, search, models, health, the web page."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import numpy as np

from rag.types import Usage
from tests.serving.conftest import MODEL, Service

CHAT = "/v1/chat/completions"


def ask(question: str = "How many GPUs does the cluster have?", **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": question}], **extra}


def sse_data(text: str) -> list[str]:
    events = [block for block in text.split("\n\n") if block.strip()]
    assert all(e.startswith("data: ") for e in events), events
    return [e.removeprefix("data: ") for e in events]


async def test_chat_answers_with_citations_and_sources_extension(service: Service) -> None:
    r = await service.client.post(CHAT, json=ask())
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "The answer is here [1]."}
    assert body["choices"][0]["finish_reason"] == "stop"
    assert r.headers["x-rag-backend"] == "scripted://test"
    [source] = body["sources"]
    assert source["n"] == 1
    assert source["id"] == "a1"
    assert source["title"] == "Cluster guide"
    assert source["source"] == "file:///docs/cluster.md"
    assert source["section"] == "Hardware"
    assert source["snippet"].startswith("The cluster has 64 GPUs")
    usage = body["usage"]
    assert usage["prompt_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


async def test_chat_passes_sampling_parameters_and_history(service: Service) -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "How many "}, {"type": "text", "text": "GPUs?"}]},
        {"role": "assistant", "content": "64 [1]."},
        {"role": "user", "content": "Where are they?"},
    ]
    body = {"model": MODEL, "messages": messages, "temperature": 0.5, "max_completion_tokens": 7, "stop": "END"}
    r = await service.client.post(CHAT, json={**body, "seed": 3, "unknown_openai_field": {"x": 1}})
    assert r.status_code == 200, r.text
    request = service.chat.requests[-1]
    assert request.question == "Where are they?"
    assert request.params.temperature == 0.5
    assert request.params.max_tokens == 7
    assert request.params.stop == ("END",)
    assert request.params.seed == 3
    assert any(m.content == "How many GPUs?" for m in request.messages)


async def test_backend_usage_is_reported_when_given(service: Service) -> None:
    service.chat.usage = Usage(prompt_tokens=11, completion_tokens=5)
    body = (await service.client.post(CHAT, json=ask())).json()
    assert body["usage"] == {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16}


async def test_restricted_documents_are_never_retrieved_for_anonymous_callers(service: Service) -> None:
    await service.client.post(CHAT, json=ask("What are the salary bands for GPU engineers?"))
    sources = service.chat.requests[-1].sources
    assert sources
    assert all("hr" not in s.chunk.groups for s in sources)
    r = await service.client.post("/v1/search", json={"query": "salary bands confidential", "k": 10})
    assert "s1" not in [h["id"] for h in r.json()["data"]]


async def test_open_webui_task_requests_skip_retrieval(service: Service) -> None:
    task = "### Task:\nGenerate a concise title for the chat.\n### Chat History:\nUSER: GPUs?"
    r = await service.client.post(CHAT, json=ask(task))
    assert r.status_code == 200, r.text
    assert r.json()["sources"] == []
    request = service.chat.requests[-1]
    assert request.sources == ()
    assert request.messages[-1].content == task


async def test_stream_sends_role_content_sources_finish_usage_then_done_with_one_choice_per_chunk(
    service: Service,
) -> None:
    r = await service.client.post(CHAT, json=ask(stream=True, stream_options={"include_usage": True}))
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    assert r.headers["x-rag-backend"] == "scripted://test"
    data = sse_data(r.text)
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "The answer is here [1]."
    # Only the usage chunk asked for by include_usage has no choice: strict clients index choices[0].
    assert all(len(c["choices"]) == 1 for c in chunks[:-1])
    [source] = [c for c in chunks if "event" in c]
    assert source["choices"] == [{"index": 0, "delta": {}, "finish_reason": None, "logprobs": None}]
    assert source["event"]["type"] == "source"
    assert source["event"]["data"]["source"] == {"name": "Cluster guide", "id": "file:///docs/cluster.md"}
    assert source["event"]["data"]["document"] == ["The cluster has 64 GPUs in the north hall."]
    meta = source["event"]["data"]["metadata"][0]
    assert meta["source"].startswith("file:///docs/cluster.md#")
    assert (meta["name"], meta["n"]) == ("Cluster guide", 1)
    finish, usage = chunks[-2], chunks[-1]
    assert finish["choices"] == [{"index": 0, "delta": {}, "finish_reason": "stop", "logprobs": None}]
    assert [(s["n"], s["title"]) for s in finish["sources"]] == [(1, "Cluster guide")]
    assert usage["choices"] == []
    assert usage["usage"]["total_tokens"] > 0


async def test_stream_sends_one_source_event_per_citation_in_marker_order(service: Service) -> None:
    # Open WebUI maps the n-th marker to the n-th distinct metadata.source: one passage, one source.
    service.chat.words = ("GPUs [1][2], budget [3].",)
    r = await service.client.post(CHAT, json=ask("GPU cluster jobs budget", stream=True))
    events = [json.loads(d)["event"] for d in sse_data(r.text)[:-1] if "event" in json.loads(d)]
    metas = [m for e in events for m in e["data"]["metadata"]]
    assert [m["n"] for m in metas] == [1, 2, 3]
    assert all(len(e["data"]["document"]) == len(e["data"]["metadata"]) == 1 for e in events)
    assert len({m["source"] for m in metas}) == 3


async def test_failure_before_first_byte_is_a_proper_status(service: Service) -> None:
    service.chat.fail_at = 0
    r = await service.client.post(CHAT, json=ask(stream=True))
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "upstream_unavailable"


async def test_failure_after_stream_started_ends_with_error_event_then_done(service: Service) -> None:
    service.chat.fail_at = 2
    r = await service.client.post(CHAT, json=ask(stream=True))
    assert r.status_code == 200
    data = sse_data(r.text)
    assert data[-1] == "[DONE]"
    error = json.loads(data[-2])
    assert error["error"]["code"] == "upstream_unavailable"
    assert error["error"]["type"] == "api_error"
    assert service.chat.closed_streams == 1


async def test_client_disconnect_stops_generation(service: Service) -> None:
    service.chat.words = tuple(f" w{i}" for i in range(200))
    service.chat.delay_s = 0.01
    body = json.dumps(ask(stream=True)).encode()
    gone = asyncio.Event()
    body_sent = False
    chunks_seen = 0

    async def receive() -> dict[str, Any]:
        nonlocal body_sent
        if not body_sent:
            body_sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal chunks_seen
        if message["type"] == "http.response.body":
            chunks_seen += 1
            if chunks_seen == 5:
                gone.set()  # the client hangs up after a few chunks

    scope = {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": CHAT, "raw_path": CHAT.encode(), "query_string": b"", "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 1), "server": ("test", 80), "state": {},
    }  # fmt: skip
    await asyncio.wait_for(service.app(scope, receive, send), timeout=10)
    assert service.chat.sent < 50
    assert service.chat.closed_streams == 1


async def test_embeddings_float_and_base64(service: Service) -> None:
    r = await service.client.post("/v1/embeddings", json={"model": MODEL, "input": ["GPU cluster", "budget"]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [d["index"] for d in body["data"]] == [0, 1]
    vec = np.array(body["data"][0]["embedding"])
    assert vec.shape == (256,)
    assert abs(np.linalg.norm(vec) - 1) < 1e-5
    assert body["usage"]["prompt_tokens"] > 0
    r64 = await service.client.post(
        "/v1/embeddings", json={"model": "hash-256", "input": "GPU cluster", "encoding_format": "base64"}
    )
    decoded = np.frombuffer(base64.b64decode(r64.json()["data"][0]["embedding"]), dtype="<f4")
    assert np.allclose(decoded, vec, atol=1e-6)


async def test_embeddings_refuse_unknown_model_wrong_dimensions_and_empty_input(service: Service) -> None:
    r = await service.client.post("/v1/embeddings", json={"model": "ada", "input": "x"})
    assert r.status_code == 404
    r = await service.client.post("/v1/embeddings", json={"model": MODEL, "input": "x", "dimensions": 3})
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "dimensions"
    r = await service.client.post("/v1/embeddings", json={"model": MODEL, "input": [""]})
    assert r.status_code == 400


async def test_search_returns_scored_chunks_best_first_with_filters(service: Service) -> None:
    r = await service.client.post("/v1/search", json={"query": "GPU budget quarter", "k": 2})
    assert r.status_code == 200, r.text
    hits = r.json()["data"]
    assert len(hits) == 2
    assert hits[0]["id"] == "b1"
    assert hits[0]["score"] >= hits[1]["score"]
    assert hits[0]["page"] == 3
    r = await service.client.post(
        "/v1/search", json={"query": "GPU", "filters": {"source": "file:///docs/cluster.md", "section": "Jobs"}}
    )
    assert [h["id"] for h in r.json()["data"]] == ["a2"]


async def test_search_refuses_unknown_filter_field(service: Service) -> None:
    r = await service.client.post("/v1/search", json={"query": "GPU", "filters": {"colour": "red"}})
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["param"] == "filters"
    assert "colour" in err["message"]


async def test_models_lists_one_model_with_backend_extension(service: Service) -> None:
    body = (await service.client.get("/v1/models")).json()
    [model] = body["data"]
    assert model["id"] == MODEL
    assert model["owned_by"] == "onprem-rag"
    assert model["rag"] == {"chat_backend": "scripted://test", "collection": "docs", "embedder": "hash-256"}
    assert (await service.client.get(f"/v1/models/{MODEL}")).status_code == 200
    assert (await service.client.get("/v1/models/other")).status_code == 404


async def test_health_and_readiness(service: Service) -> None:
    assert (await service.client.get("/healthz")).json() == {"status": "ok"}
    assert (await service.client.get("/readyz")).status_code == 200
    service.chat.healthy = False
    r = await service.client.get("/readyz")
    assert r.status_code == 503
    assert r.json()["reasons"] == ["chat backend: not healthy"]  # the backend's address is in the log only


async def test_web_page_and_openapi_are_served(service: Service) -> None:
    page = await service.client.get("/")
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    assert "/v1/chat/completions" in page.text or "app.js" in page.text
    spec = (await service.client.get("/openapi.json")).json()
    assert "/v1/chat/completions" in spec["paths"]
    assert "/v1/search" in spec["paths"]
