"""A real uvicorn process, spoken to with the official ``openai`` client, once per on-disk store."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import openai
import pytest

from tests.serving.conftest import MODEL, RagServer

pytestmark = pytest.mark.slow

CLUSTER = """# Cluster guide

## Hardware

The research cluster has 64 GPUs in the north hall. Each node has 8 GPUs and 1 TB of memory.

## Jobs

Jobs are submitted with the queue command. A job may run for at most 48 hours.
"""
BUDGET = """# Budget

The GPU budget is reviewed every quarter by the infrastructure committee.
"""


@pytest.fixture(scope="module")
def docs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("docs")
    (folder / "cluster.md").write_text(CLUSTER)
    (folder / "budget.md").write_text(BUDGET)
    return folder


@pytest.fixture(scope="module")
def server(start_rag_server: Callable[..., RagServer], store_url: str, docs: Path) -> RagServer:
    return start_rag_server(store_url, docs=docs)


def test_models_list(server: RagServer) -> None:
    [model] = server.openai().models.list().data
    assert model.id == MODEL
    assert model.owned_by == "onprem-rag"
    assert model.model_extra is not None
    assert model.model_extra["rag"]["chat_backend"].startswith("extractive")


def test_chat_non_stream_cites_sources(server: RagServer) -> None:
    client = server.openai()
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": "How many GPUs does the cluster have?"}]
    )
    assert raw.headers["x-rag-backend"].startswith("extractive")
    assert raw.headers["x-request-id"]
    response = raw.parse()
    text = response.choices[0].message.content or ""
    assert "[1]" in text
    assert response.choices[0].finish_reason == "stop"
    assert response.model_extra is not None
    sources = response.model_extra["sources"]
    assert sources[0]["n"] == 1
    assert sources[0]["source"].endswith("cluster.md")
    assert response.usage is not None and response.usage.total_tokens > 0


def test_chat_stream_parses_with_the_official_client(server: RagServer) -> None:
    stream = server.openai().chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "How many GPUs does the cluster have?"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "[1]" in text
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    events = [c.model_extra["event"] for c in chunks if c.model_extra and "event" in c.model_extra]
    assert events and all(e["type"] == "source" for e in events)
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0


def test_embeddings(server: RagServer) -> None:
    client = server.openai()
    result = client.embeddings.create(model=MODEL, input=["GPU cluster", "budget"])
    assert [d.index for d in result.data] == [0, 1]
    assert len(result.data[0].embedding) == 256
    floats = client.embeddings.create(model=MODEL, input="GPU cluster", encoding_format="float")
    assert floats.data[0].embedding == pytest.approx(result.data[0].embedding, abs=1e-6)
    assert result.usage.prompt_tokens > 0


def test_errors_reach_the_client_as_openai_errors(server: RagServer) -> None:
    client = server.openai()
    with pytest.raises(openai.NotFoundError) as not_found:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "GPUs?"}])
    assert not_found.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "GPUs?"}], n=2)
    assert bad.value.param == "n"


def test_search_health_and_page(server: RagServer) -> None:
    with server.http() as http:
        assert http.get("/healthz").status_code == 200
        assert http.get("/readyz").status_code == 200
        hits = http.post("/v1/search", json={"query": "GPU budget quarter", "k": 2}).json()["data"]
        assert hits[0]["source"].endswith("budget.md")
        assert "text/html" in http.get("/").headers["content-type"]
