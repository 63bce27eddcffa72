"""The development and production profiles render what they promise."""

from __future__ import annotations

import json

from tests.charts.render import FULLNAME, NS, component, config_map, env_of, of_kind, one, pod_spec


def test_dev_profile_runs_chroma_extractive_answers_a_worker_and_open_webui(rendered):
    docs = rendered["dev"]
    data = config_map(docs)
    assert data["RAG_STORE__URL"] == f"chroma+http://{FULLNAME}-chroma.{NS}.svc.cluster.local:8000"
    assert data["RAG_CHAT__URL"] == "extractive://"
    assert not of_kind(docs, "InferenceService") and not of_kind(docs, "CronJob")
    assert one(docs, "StatefulSet")["metadata"]["name"] == f"{FULLNAME}-chroma"
    assert component(docs, "Deployment", "worker")
    assert component(docs, "Deployment", "webui")


def test_prod_profile_uses_milvus_kserve_and_no_public_endpoint(rendered):
    docs = rendered["prod"]
    data = config_map(docs)
    assert data["RAG_STORE__URL"].startswith("milvus://")
    assert {d["metadata"]["labels"]["app.kubernetes.io/component"] for d in of_kind(docs, "InferenceService")} == {
        "llm",
        "embedder",
        "reranker",
    }
    public = json.loads(data["RAG_CHAIN__PUBLIC_URL_PREFIXES"])
    for url in [data["RAG_CHAT__URL"], *json.loads(data["RAG_CHAIN__FALLBACK_URLS"])]:
        assert not any(url.startswith(p) for p in public), url
    assert data["RAG_AUTH__REQUIRED"] == "true"
    assert data["RAG_AUTH__ACCESS_FILE"] == "/etc/rag/access/access.yaml"
    (server,) = pod_spec(one(docs, "Deployment", FULLNAME))["containers"]
    assert env_of(server)["RAG_STORE__API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "milvus-token", "key": "token"}
    assert env_of(server)["RAG_AUTH__OPENWEBUI_JWT_SECRET"]["valueFrom"]["secretKeyRef"]["name"] == "rag-openwebui"
    assert {i["metadata"]["name"] for i in of_kind(docs, "Ingress")} == {FULLNAME, f"{FULLNAME}-webui"}
    assert component(docs, "NetworkPolicy", "server")
