"""``rag kserve status/url`` as real processes, with the kserve SDK, against the fake Kubernetes API over HTTPS."""

from __future__ import annotations

import base64
import json
import socket
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from rag.errors import InvalidRequest, UpstreamUnavailable
from rag.openai_client import openai_base_url, require_model
from rag.registry import CHATS, parse_url
from tests.deploy.conftest import DEPLOY_RAG, ROOT, clean_env, needs_deploy_venv, run
from tests.fakes.kube_api import FakeKubeAPI, fresh_isvc, knative_isvc, self_signed, standard_isvc
from ui.kserve import _served_name, backend_url, summarize

SCHEMA = json.loads((ROOT / "tests/deploy/schemas/kserve-inferenceservice.excerpt.schema.json").read_text())


def kserve(api_or_kc: FakeKubeAPI | Path | None, tmp_path: Path, *args: str, **env: str) -> Any:
    """``rag kserve ARGS`` from the SDK virtualenv, reaching the fake through a kubeconfig it does not share."""
    argv = [str(DEPLOY_RAG), "kserve", *args]
    if isinstance(api_or_kc, FakeKubeAPI):
        argv += ["--kubeconfig", str(api_or_kc.write_kubeconfig(tmp_path / "kubeconfig", namespace="models"))]
    elif isinstance(api_or_kc, Path):
        argv += ["--kubeconfig", str(api_or_kc)]
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return run(argv, clean_env(home, **env))


@pytest.mark.parametrize(
    "obj",
    [
        knative_isvc(),
        knative_isvc(ready=False),
        standard_isvc(),
        standard_isvc(failed=True),
        standard_isvc(ready=False, mode="Standard"),
        fresh_isvc(),
    ],
    ids=["knative", "knative-pending", "standard", "standard-failed", "standard-new-name", "fresh"],
)
def test_fake_inferenceservices_have_the_shape_the_kserve_crd_admits(obj: dict[str, Any]):
    jsonschema.validate(obj, SCHEMA)
    assert obj["apiVersion"] == "serving.kserve.io/v1beta1" and obj["kind"] == "InferenceService"


def test_served_model_name_comes_from_the_runtime_arguments_else_the_service_name():
    assert _served_name(["--model_name=qwen"], "llm") == "qwen"
    assert _served_name(["--served-model-name", "mistral", "--dtype=half"], "llm") == "mistral"
    assert _served_name(["--max-model-len=8192"], "llm") == "llm"


def test_backend_urls_are_ones_the_chat_backend_table_accepts():
    for obj, base in (
        (knative_isvc(), "http://llm.models.svc.cluster.local/openai/v1"),
        (standard_isvc(), "http://llm-predictor.models.svc.cluster.local/openai/v1"),
    ):
        url = parse_url(backend_url(summarize(obj)))
        assert url.scheme in CHATS
        assert openai_base_url(url) == base
        assert require_model(url, "x") == "qwen"


def test_without_a_reported_address_the_url_is_derived_from_the_mode_and_modelmesh_is_refused():
    raw = standard_isvc(mode="Standard", annotate=False)
    del raw["status"]["address"]
    assert backend_url(summarize(raw)) == "kserve+http://llm-predictor.models.svc.cluster.local/openai/v1?model=qwen"
    knative = knative_isvc(ready=False)
    assert backend_url(summarize(knative)) == "kserve+http://llm.models.svc.cluster.local/openai/v1?model=qwen"
    with pytest.raises(UpstreamUnavailable, match=r"no status\.url"):
        backend_url(summarize(knative), external=True)
    with pytest.raises(UpstreamUnavailable, match="nor a deployment mode"):
        backend_url(summarize(fresh_isvc()))
    mesh = standard_isvc(mode="ModelMesh")
    with pytest.raises(InvalidRequest, match="ModelMesh"):
        backend_url(summarize(mesh))


@needs_deploy_venv
def test_status_reports_readiness_urls_and_model_of_a_knative_service(kube_api: FakeKubeAPI, tmp_path: Path):
    kube_api.put(knative_isvc())
    r = kserve(kube_api, tmp_path, "status", "llm", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["ready"] is True and data["mode"] == "Knative"
    assert data["url"] == "http://llm.models.example.com"
    assert data["address"] == "http://llm.models.svc.cluster.local"
    assert (data["model_format"], data["model_name"]) == ("huggingface", "qwen")
    assert data["storage_uri"] == "hf://Qwen/Qwen2.5-7B-Instruct"
    assert (data["model_state"], data["transition"]) == ("Loaded", "UpToDate")
    assert {c["type"]: c["status"] for c in data["conditions"]}["Ready"] == "True"
    assert data["backend_url"] == "kserve+http://llm.models.svc.cluster.local/openai/v1?model=qwen"
    # It went through the real client: the kubeconfig's token, the context's namespace, the CRD's path.
    assert kube_api.requests[-1] == {
        "method": "GET",
        "path": "/apis/serving.kserve.io/v1beta1/namespaces/models/inferenceservices/llm",
        "auth": "Bearer fake-token",
    }
    text = kserve(kube_api, tmp_path, "status", "llm")
    assert text.returncode == 0
    for expected in ("Ready", "huggingface", "qwen", "hf://Qwen/Qwen2.5-7B-Instruct", "PredictorReady"):
        assert expected in text.stdout


@needs_deploy_venv
def test_url_of_a_knative_service_is_its_cluster_local_address_or_with_external_its_ingress_url(
    kube_api: FakeKubeAPI, tmp_path: Path
):
    kube_api.put(knative_isvc())
    r = kserve(kube_api, tmp_path, "url", "llm")
    assert (r.returncode, r.stdout.strip()) == (0, "kserve+http://llm.models.svc.cluster.local/openai/v1?model=qwen")
    r = kserve(kube_api, tmp_path, "url", "llm", "--external")
    assert r.stdout.strip() == "kserve+http://llm.models.example.com/openai/v1?model=qwen"


@pytest.mark.parametrize("mode", ["RawDeployment", "Standard"])
@needs_deploy_venv
def test_url_of_a_standard_mode_service_is_its_predictor_service(kube_api: FakeKubeAPI, tmp_path: Path, mode: str):
    # The newer spelling comes only in status.deploymentMode; the older one also as the annotation.
    kube_api.put(standard_isvc(name="raw", mode=mode, annotate=mode == "RawDeployment"))
    r = kserve(kube_api, tmp_path, "url", "raw")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "kserve+http://raw-predictor.models.svc.cluster.local/openai/v1?model=qwen"
    r = kserve(kube_api, tmp_path, "url", "raw", "--external", "--prefix", "/v1", "--model", "other model")
    assert r.stdout.strip() == "kserve+http://raw-models.example.com/v1?model=other%20model"
    status = json.loads(kserve(kube_api, tmp_path, "status", "raw", "--json").stdout)
    assert status["mode"] == "Standard" and status["storage_uri"] == "pvc://models/qwen2.5-7b-instruct"


@needs_deploy_venv
def test_namespace_option_overrides_the_kubeconfig_context_and_the_model_defaults_to_the_service_name(
    kube_api: FakeKubeAPI, tmp_path: Path
):
    kube_api.put(standard_isvc(name="emb", namespace="team-a", model_name=None))
    r = kserve(kube_api, tmp_path, "url", "emb", "-n", "team-a")
    assert r.stdout.strip() == "kserve+http://emb-predictor.team-a.svc.cluster.local/openai/v1?model=emb"
    assert kube_api.requests[-1]["path"].endswith("/namespaces/team-a/inferenceservices/emb")


@needs_deploy_venv
def test_a_missing_service_is_reported_as_not_found(kube_api: FakeKubeAPI, tmp_path: Path):
    r = kserve(kube_api, tmp_path, "url", "nope")
    assert r.returncode == 2 and r.stdout == ""
    assert "InferenceService models/nope not found" in r.stderr


@needs_deploy_venv
def test_a_service_that_is_not_ready_fails_with_its_conditions(kube_api: FakeKubeAPI, tmp_path: Path):
    kube_api.put(knative_isvc(ready=False))
    kube_api.put(standard_isvc(name="oom", failed=True))
    kube_api.put(fresh_isvc(name="new"))
    r = kserve(kube_api, tmp_path, "status", "llm")
    assert r.returncode == 3
    assert "not ready" in r.stderr and "RevisionMissing" in r.stderr and "Insufficient nvidia.com/gpu" in r.stderr
    r = kserve(kube_api, tmp_path, "url", "llm")
    assert r.returncode == 3 and r.stdout == "" and "is not ready" in r.stderr
    r = kserve(kube_api, tmp_path, "url", "oom")
    assert r.returncode == 3 and "ModelLoadFailed" in r.stderr and "CUDA out of memory" in r.stderr
    r = kserve(kube_api, tmp_path, "status", "new")
    assert r.returncode == 3 and "has no status conditions yet" in r.stderr
    r = kserve(kube_api, tmp_path, "url", "oom", "--allow-not-ready")
    assert r.returncode == 0 and r.stdout.strip().startswith("kserve+http://oom-predictor.models.svc")
    assert "warning" in r.stderr


@needs_deploy_venv
def test_an_unreachable_api_server_is_reported_with_its_address(kube_api: FakeKubeAPI, tmp_path: Path):
    kubeconfig = kube_api.write_kubeconfig(tmp_path / "kubeconfig")
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    kubeconfig.write_text(kubeconfig.read_text().replace(f":{kube_api.port}", f":{dead}"))
    r = kserve(kubeconfig, tmp_path, "status", "llm", "--timeout", "5")
    assert r.returncode == 3
    assert f"cannot reach the Kubernetes API at https://127.0.0.1:{dead}" in r.stderr
    # A server whose certificate the kubeconfig's CA did not sign is not talked to either.
    other_ca, _ = self_signed(tmp_path)
    kubeconfig = kube_api.write_kubeconfig(tmp_path / "kubeconfig")
    text = kubeconfig.read_text()
    mine = base64.b64encode(kube_api.ca_path.read_bytes()).decode()
    kubeconfig.write_text(text.replace(mine, base64.b64encode(other_ca.read_bytes()).decode()))
    r = kserve(kubeconfig, tmp_path, "status", "llm", "--timeout", "5")
    assert r.returncode == 3 and "CERTIFICATE_VERIFY_FAILED" in r.stderr
    assert not [q for q in kube_api.requests if q["path"].startswith("/apis")]


@needs_deploy_venv
def test_no_kubeconfig_is_a_configuration_error(tmp_path: Path):
    r = kserve(None, tmp_path, "status", "llm")
    assert r.returncode == 2 and "no usable Kubernetes configuration" in r.stderr and "--kubeconfig" in r.stderr
    r = kserve(tmp_path / "missing.yaml", tmp_path, "url", "llm")
    assert r.returncode == 2 and "missing.yaml does not exist" in r.stderr


@needs_deploy_venv
def test_kubeconfig_is_read_from_the_environment_like_kubectl(kube_api: FakeKubeAPI, tmp_path: Path):
    kube_api.put(knative_isvc())
    kubeconfig = kube_api.write_kubeconfig(tmp_path / "kc.yaml", namespace="models")
    r = kserve(None, tmp_path, "url", "llm", KUBECONFIG=str(kubeconfig))
    assert r.returncode == 0, r.stderr


@needs_deploy_venv
def test_refused_credentials_forbidden_namespaces_and_a_cluster_without_kserve_get_their_own_errors(
    kube_api: FakeKubeAPI, tmp_path: Path
):
    kube_api.put(knative_isvc())
    bad = kube_api.write_kubeconfig(tmp_path / "bad", namespace="models", token="wrong")
    r = kserve(bad, tmp_path, "status", "llm")
    assert r.returncode == 2 and "refused the credentials" in r.stderr and "Unauthorized" in r.stderr
    kube_api.forbidden_namespaces.add("models")
    r = kserve(kube_api, tmp_path, "status", "llm")
    assert r.returncode == 2 and "not allowed to read InferenceService models/llm" in r.stderr
    assert 'cannot get resource "inferenceservices"' in r.stderr
    kube_api.serves_kserve = False
    r = kserve(kube_api, tmp_path, "status", "llm", "-n", "other")
    assert r.returncode == 2 and "does not serve serving.kserve.io/v1beta1 (is KServe installed?)" in r.stderr


def test_without_the_kserve_extra_the_command_names_it(tmp_path: Path):
    # The main virtualenv cannot hold kserve (scripts/install_deploy.sh says why); to be sure of its absence
    # whatever is installed, a kserve module that fails to import, as a missing package does, comes first.
    shim = tmp_path / "shim" / "kserve"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'kserve'\", name='kserve')\n")
    env = clean_env(tmp_path)
    env["PYTHONPATH"] = f"{shim.parent}:{ROOT}"
    r = run([sys.executable, "-m", "ui.cli", "kserve", "status", "llm"], env)
    assert r.returncode == 2
    assert "pip install 'onprem-rag[kserve]'" in r.stderr
