"""KServe InferenceServices: resources KServe will accept, the URL of each deployment mode, model
storage from the platform's registries, and the embedder and reranker wired into the settings."""

from __future__ import annotations

import os

import pytest
import yaml

from rag.config import Settings
from rag.registry import validate_urls
from rag.rerank import HttpReranker, make_reranker
from tests.charts.render import (
    FULLNAME,
    LONG_RELEASE,
    NS,
    config_map,
    isvc_containers,
    of_kind,
    one,
    quantity,
    template,
    template_error,
)

ALL_ON = (
    "--set",
    "kserve.enabled=true",
    "--set",
    "kserve.embedder.enabled=true",
    "--set",
    "kserve.reranker.enabled=true",
)

# The Hugging Face ClusterServingRuntime's container resources (kserve/kserve,
# charts/kserve-runtime-configs, kserve-huggingfaceserver): what KServe merges into an
# InferenceService's container for every request or limit it does not set.
HF_RUNTIME_RESOURCES = {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"cpu": "1", "memory": "2Gi"}}


def kserve_merge(runtime: dict, isvc: dict) -> dict:
    """KServe's merge of runtime and InferenceService container resources: the InferenceService wins per key."""
    return {part: {**runtime.get(part, {}), **isvc.get(part, {})} for part in ("requests", "limits")}


def assert_accepted_by_the_api_server(resources: dict) -> None:
    """A request above its limit, or a GPU request other than its limit, is rejected at pod creation."""
    requests, limits = resources["requests"], resources["limits"]
    for name, req in requests.items():
        if name in limits:
            if name == "nvidia.com/gpu":
                assert quantity(req) == quantity(limits[name]), resources
            assert quantity(req) <= quantity(limits[name]), f"{name}: request {req} > limit {limits[name]}"
    assert ("nvidia.com/gpu" in requests) == ("nvidia.com/gpu" in limits), resources


@pytest.mark.parametrize(
    "resources",
    [
        # The values that once shipped: requests.cpu 4 with no CPU limit; the runtime's "1" merged in.
        {"requests": {"cpu": "4", "memory": "24Gi"}, "limits": {"memory": "32Gi"}},
        {"requests": {"cpu": "4", "memory": "24Gi"}, "limits": None},
        {"requests": {"cpu": "6", "memory": "24Gi"}, "limits": {"cpu": "8", "memory": "32Gi"}},
    ],
)
def test_llm_resources_survive_kserves_merge_with_the_runtime_limits(helm, tmp_path, resources):
    values = tmp_path / "values.yaml"
    # null replaces the chart's default limits instead of merging into them.
    limits = resources["limits"]
    resources = {"requests": resources["requests"], "limits": None if limits is None else {"cpu": None, **limits}}
    values.write_text(yaml.safe_dump({"kserve": {"enabled": True, "resources": resources}}))
    docs = template(helm, "-f", str(values))
    (model,) = isvc_containers(one(docs, "InferenceService"))
    own = model["resources"]
    assert set(own["limits"]) >= {"cpu", "memory", "nvidia.com/gpu"}
    assert own["requests"]["nvidia.com/gpu"] == own["limits"]["nvidia.com/gpu"] == 1
    assert_accepted_by_the_api_server(own)
    assert_accepted_by_the_api_server(kserve_merge(HF_RUNTIME_RESOURCES, own))


def test_every_inferenceservice_sets_requests_and_limits_for_cpu_memory_and_its_gpus(helm):
    docs = template(helm, *ALL_ON, "--set", "kserve.reranker.gpus=1", "--set", "kserve.embedder.runtime=tei")
    isvcs = of_kind(docs, "InferenceService")
    assert len(isvcs) == 3
    for isvc in isvcs:
        for c in isvc_containers(isvc):
            res = c["resources"]
            assert set(res["requests"]) >= {"cpu", "memory"} and set(res["limits"]) >= {"cpu", "memory"}
            assert_accepted_by_the_api_server(kserve_merge(HF_RUNTIME_RESOURCES, res))
    (rerank,) = isvc_containers(one(docs, "InferenceService", f"{FULLNAME}-rerank"))
    assert rerank["resources"]["limits"]["nvidia.com/gpu"] == rerank["resources"]["requests"]["nvidia.com/gpu"] == 1
    (embed,) = isvc_containers(one(docs, "InferenceService", f"{FULLNAME}-embed"))
    assert "nvidia.com/gpu" not in embed["resources"]["limits"]  # gpus: 0


@pytest.mark.parametrize(
    ("mode", "host"),
    [
        ("RawDeployment", "{isvc}-predictor.{ns}.svc.cluster.local"),
        ("Standard", "{isvc}-predictor.{ns}.svc.cluster.local"),
        ("Knative", "{isvc}.{ns}.svc.cluster.local"),
        ("Serverless", "{isvc}.{ns}.svc.cluster.local"),
    ],
)
def test_each_deployment_mode_is_annotated_and_gives_the_url_that_exists_in_it(helm, mode, host):
    docs = template(helm, *ALL_ON, "--set", f"kserve.deploymentMode={mode}")
    for isvc in of_kind(docs, "InferenceService"):
        assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == mode
    data = config_map(docs)
    llm = host.format(isvc=f"{FULLNAME}-llm", ns=NS)
    assert data["RAG_CHAT__URL"] == f"kserve+http://{llm}/openai/v1?model={FULLNAME}-llm"
    embed = host.format(isvc=f"{FULLNAME}-embed", ns=NS)
    assert data["RAG_EMBED__URL"] == f"kserve+http://{embed}/openai/v1?model=bge-m3"
    rerank = host.format(isvc=f"{FULLNAME}-rerank", ns=NS)
    assert data["RAG_RETRIEVAL__RERANK_URL"] == f"http://{rerank}/rerank"


def test_an_unknown_deployment_mode_is_refused(helm):
    assert "deploymentMode" in template_error(
        helm, "--set", "kserve.enabled=true", "--set", "kserve.deploymentMode=Raw"
    )


@pytest.mark.parametrize(
    "uri",
    [
        "pvc://models/qwen2.5-7b-instruct",
        "s3://models/qwen2.5-7b-instruct",
        "oci://registry.lab.internal/models/qwen2.5-7b-instruct:1.0",
        "model-registry://qwen2.5-7b-instruct/v3",
        "hf://Qwen/Qwen2.5-7B-Instruct",
    ],
)
def test_llm_models_come_from_the_platforms_registries(helm, uri):
    docs = template(
        helm,
        "--set",
        "kserve.enabled=true",
        "--set",
        f"kserve.storageUri={uri}",
        "--set",
        "kserve.serviceAccountName=models",
    )
    isvc = one(docs, "InferenceService")
    assert isvc["spec"]["predictor"]["model"]["storageUri"] == uri
    # S3 keys and OCI pull Secrets ride on the predictor's ServiceAccount.
    assert isvc["spec"]["predictor"]["serviceAccountName"] == "models"


def test_a_storage_uri_of_no_known_kind_is_refused(helm):
    assert "storageUri" in template_error(helm, "--set", "kserve.enabled=true", "--set", "kserve.storageUri=/models/x")


def test_tei_predictors_fetch_the_model_and_serve_on_kserves_port(helm):
    docs = template(
        helm,
        *ALL_ON,
        "--set",
        "kserve.embedder.runtime=tei",
        "--set",
        "kserve.reranker.storageUri=oci://registry.lab.internal/rerank:1",
    )
    for name, uri in (
        (f"{FULLNAME}-embed", "pvc://models/bge-m3"),
        (f"{FULLNAME}-rerank", "oci://registry.lab.internal/rerank:1"),
    ):
        isvc = one(docs, "InferenceService", name)
        (c,) = isvc["spec"]["predictor"]["containers"]
        assert c["name"] == "kserve-container"
        env = {e["name"]: e.get("value") for e in c["env"]}
        assert env["STORAGE_URI"] == uri
        assert "--model-id=/mnt/models" in c["args"] and "--port=8080" in c["args"]
        assert c["ports"] == [{"containerPort": 8080, "protocol": "TCP"}]
        assert c["readinessProbe"]["httpGet"]["path"] == "/health"
    data = config_map(docs)
    host = f"{FULLNAME}-embed-predictor.{NS}.svc.cluster.local"
    assert data["RAG_EMBED__URL"] == f"openai+http://{host}/v1?model=bge-m3"


def test_embedder_runs_the_text_embedding_task_on_the_hugging_face_runtime(helm):
    docs = template(helm, "--set", "kserve.embedder.enabled=true")
    (model,) = isvc_containers(one(docs, "InferenceService"))
    assert model["args"][:2] == ["--model_name=bge-m3", "--task=text_embedding"]


def test_reranker_on_the_hugging_face_runtime_is_called_on_its_openai_rerank_route(helm):
    docs = template(helm, "--set", "kserve.reranker.enabled=true", "--set", "kserve.reranker.runtime=huggingface")
    url = config_map(docs)["RAG_RETRIEVAL__RERANK_URL"]
    host = f"{FULLNAME}-rerank-predictor.{NS}.svc.cluster.local"
    assert url == f"http://{host}/openai/v1/rerank?model=bge-reranker-v2-m3"


@pytest.mark.parametrize("runtimes", [("huggingface", "tei"), ("tei", "huggingface")])
def test_the_service_accepts_the_urls_the_chart_wires_in(helm, monkeypatch, runtimes):
    embed_runtime, rerank_runtime = runtimes
    docs = template(
        helm,
        *ALL_ON,
        "--set",
        f"kserve.embedder.runtime={embed_runtime}",
        "--set",
        f"kserve.reranker.runtime={rerank_runtime}",
    )
    for name in list(os.environ):
        if name.startswith("RAG_"):
            monkeypatch.delenv(name)
    for name, value in config_map(docs).items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    validate_urls(settings)  # every scheme is one the service knows
    reranker = make_reranker(settings.retrieval.rerank_url)
    assert isinstance(reranker, HttpReranker)
    # TEI's /rerank takes {query, texts}; the OpenAI-style /v1/rerank takes {model, query, documents}.
    assert reranker.cohere_style is (rerank_runtime == "huggingface")
    assert reranker.model == ("bge-reranker-v2-m3" if rerank_runtime == "huggingface" else "")


def test_inferenceservice_names_leave_room_for_kserves_suffixes(helm):
    docs = template(helm, *ALL_ON, release=LONG_RELEASE)
    names = [d["metadata"]["name"] for d in of_kind(docs, "InferenceService")]
    assert len(set(names)) == 3
    for name in names:
        assert len(name) <= 45 and len(f"{name}-predictor") <= 63, name
    assert any(f"//{n}-predictor." in config_map(docs)["RAG_CHAT__URL"] for n in names)


def test_an_inferenceservice_name_too_long_for_kserve_is_refused(helm):
    assert "kserve.name" in template_error(helm, "--set", "kserve.enabled=true", "--set", f"kserve.name={'m' * 46}")
