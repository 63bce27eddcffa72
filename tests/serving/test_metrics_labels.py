"""/metrics labels take validated values only: invented model names or paths never add series."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from serving.routes import UNKNOWN_MODEL
from tests.serving.conftest import MODEL, RagServer, Service

CHAT = "/v1/chat/completions"
QUESTION = [{"role": "user", "content": "How many GPUs does the cluster have?"}]
ROUTES = {
    "/v1/models",
    "/v1/models/{model_id:path}",
    CHAT,
    "/v1/embeddings",
    "/v1/search",
    "/v1/sources",
    "/metrics",
    "/healthz",
    "/readyz",
    "other",
}


def series(text: str) -> dict[str, set[tuple[tuple[str, str], ...]]]:
    """Every metric family's label sets (histogram buckets folded into their series)."""
    out: dict[str, set[tuple[tuple[str, str], ...]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k not in ("le", "quantile")))
            out.setdefault(family.name, set()).add(labels)
    return out


def label_values(text: str, label: str) -> set[str]:
    """Every value ``label`` takes in any family."""
    return {v for sets in series(text).values() for labels in sets for k, v in labels if k == label}


def hostile_requests(names: list[str]) -> list[tuple[str, str, dict[str, object] | None]]:
    """Requests naming models (and paths) that do not exist."""
    out: list[tuple[str, str, dict[str, object] | None]] = []
    for name in names:
        out.append(("POST", CHAT, {"model": name, "messages": QUESTION}))
        out.append(("POST", "/v1/embeddings", {"model": name, "input": "gpu"}))
        out.append(("POST", "/v1/search", {"model": name, "query": "gpu"}))
        out.append(("GET", f"/v1/models/{name}", None))
        out.append(("GET", f"/no/such/{name}", None))
    return out


async def test_invented_model_names_and_paths_add_no_metric_series(service: Service) -> None:
    client = service.client

    async def send(names: list[str]) -> dict[str, set[tuple[tuple[str, str], ...]]]:
        for method, path, body in hostile_requests(names):
            response = await client.request(method, path, json=body)
            assert response.status_code == 404, (path, response.text)
        return series((await client.get("/metrics")).text)

    assert (await client.post(CHAT, json={"model": MODEL, "messages": QUESTION})).status_code == 200
    await client.get("/metrics")  # its own series exists from here on
    after_two = await send([uuid.uuid4().hex for _ in range(2)])
    after_many = await send([uuid.uuid4().hex for _ in range(150)])
    assert after_many == after_two
    text = (await client.get("/metrics")).text
    assert label_values(text, "model") == {"", MODEL, UNKNOWN_MODEL}
    assert label_values(text, "route") <= ROUTES
    assert all(v.isdigit() for v in label_values(text, "status"))


async def test_a_valid_model_is_its_own_label_and_an_embedder_id_too(service: Service) -> None:
    client = service.client
    embedder_id = service.pipeline.embedder.info.id
    assert (await client.post("/v1/embeddings", json={"model": embedder_id, "input": "gpu"})).status_code == 200
    assert (await client.post("/v1/search", json={"model": MODEL, "query": "gpu"})).status_code == 200
    models = label_values((await client.get("/metrics")).text, "model")
    assert {embedder_id, MODEL} <= models


@pytest.mark.slow
def test_a_real_server_keeps_its_metric_series_fixed_under_invented_names(
    start_rag_server: Callable[..., RagServer], tmp_path: Path
) -> None:
    (tmp_path / "cluster.md").write_text("# Cluster\n\nThe research cluster has 64 GPUs in the north hall.\n")
    server = start_rag_server(docs=tmp_path)
    with server.http() as client:

        def send(names: list[str]) -> dict[str, set[tuple[tuple[str, str], ...]]]:
            for method, path, body in hostile_requests(names):
                response = client.request(method, path, json=body)
                assert response.status_code == 404, (path, response.text)
            return series(client.get("/metrics").text)

        assert client.post(CHAT, json={"model": MODEL, "messages": QUESTION}).status_code == 200
        client.get("/metrics")  # its own series exists from here on
        after_two = send([uuid.uuid4().hex for _ in range(2)])
        after_many = send([uuid.uuid4().hex for _ in range(300)])
        text = client.get("/metrics").text
    assert after_many == after_two
    assert label_values(text, "model") == {"", MODEL, UNKNOWN_MODEL}
    assert sum(len(s) for s in after_many.values()) < 200
