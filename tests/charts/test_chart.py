"""The Helm chart: lints, renders the expected objects, and its values mirror rag.config.Settings one-to-one.

No cluster here: `helm lint` and `helm template`, then the rendered YAML is parsed and checked.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from typing import Any

import pytest
import yaml

from rag.config import Settings
from tests.charts.render import (
    CHART,
    FULLNAME,
    NS,
    PROFILES,
    RELEASE,
    ROOT,
    SECRET_ENV,
    VALID_ENV,
    VALUES_ALL,
    config_map,
    env_of,
    one,
    pod_spec,
    rag_containers,
    run_helm,
    settings_paths,
    template,
    values_paths,
)

# --- lint ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_helm_lint_strict_passes_for_every_profile(helm, profile):
    proc = run_helm(helm, "lint", str(CHART), "--strict", "--namespace", NS, *PROFILES[profile])
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --- what is rendered ----------------------------------------------------------------------------


def test_default_values_render_the_service_and_its_network_policy_only(default_docs):
    kinds = sorted(d["kind"] for d in default_docs)
    assert kinds == ["ConfigMap", "Deployment", "NetworkPolicy", "PodDisruptionBudget", "Service", "ServiceAccount"]


def test_everything_on_renders_every_optional_part(all_docs):
    kinds = {d["kind"] for d in all_docs}
    assert kinds == {
        "ConfigMap",
        "CronJob",
        "Deployment",
        "HorizontalPodAutoscaler",
        "Ingress",
        "InferenceService",
        "Job",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "Service",
        "ServiceAccount",
        "ServiceMonitor",
    }
    assert one(all_docs, "ServiceMonitor")["apiVersion"] == "monitoring.coreos.com/v1"
    assert {d["apiVersion"] for d in all_docs if d["kind"] == "InferenceService"} == {"serving.kserve.io/v1beta1"}
    assert len([d for d in all_docs if d["kind"] == "Deployment"]) == 2  # the service and Open WebUI
    assert len([d for d in all_docs if d["kind"] == "Job"]) == 2  # bulk ingest and eval


def test_service_runs_rag_serve_with_health_probes(default_docs):
    dep = one(default_docs, "Deployment", FULLNAME)
    (c,) = pod_spec(dep)["containers"]
    assert c["command"] == ["rag", "serve", "--host", "0.0.0.0", "--port", "8000"]
    assert c["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["envFrom"] == [{"configMapRef": {"name": f"{FULLNAME}-config"}}]
    svc = one(default_docs, "Service", FULLNAME)
    assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
    assert svc["spec"]["ports"][0]["targetPort"] == "http"


def test_service_pods_run_non_root_on_a_read_only_root_with_a_writable_tmp(default_docs):
    spec = pod_spec(one(default_docs, "Deployment", FULLNAME))
    (c,) = spec["containers"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert "/var/lib/rag" in mounts  # config.data_dir is writable too
    assert c["resources"]["requests"]["cpu"]


def test_access_file_is_mounted_read_only_from_its_secret_where_the_setting_points(default_docs, all_docs):
    assert "access" not in {v["name"] for v in pod_spec(one(default_docs, "Deployment", FULLNAME))["volumes"]}
    spec = pod_spec(one(all_docs, "Deployment", FULLNAME))
    (c,) = spec["containers"]
    (mount,) = [m for m in c["volumeMounts"] if m["name"] == "access"]
    assert mount == {"name": "access", "mountPath": "/etc/rag/access", "readOnly": True}
    (volume,) = [v for v in spec["volumes"] if v["name"] == "access"]
    assert volume["secret"] == {"secretName": "rag-access", "items": [{"key": "access.yaml", "path": "access.yaml"}]}
    config = one(all_docs, "ConfigMap", f"{FULLNAME}-config")["data"]
    assert config["RAG_AUTH__ACCESS_FILE"] == f"{mount['mountPath']}/access.yaml"


def test_access_file_from_a_configmap_is_mounted_and_found_without_setting_its_path(helm):
    docs = template(helm, "--set", "accessFile.existingConfigMap=rag-access", "--set", "accessFile.key=rules.yaml")
    spec = pod_spec(one(docs, "Deployment", FULLNAME))
    (volume,) = [v for v in spec["volumes"] if v["name"] == "access"]
    assert volume["configMap"] == {"name": "rag-access", "items": [{"key": "rules.yaml", "path": "rules.yaml"}]}
    # config.auth.access_file is empty in the values: the chart points it at the mount.
    assert config_map(docs)["RAG_AUTH__ACCESS_FILE"] == "/etc/rag/access/rules.yaml"


def test_an_access_file_from_both_a_secret_and_a_configmap_is_refused(helm):
    err = run_helm(
        helm,
        "template",
        RELEASE,
        str(CHART),
        "--set",
        "accessFile.existingSecret=a",
        "--set",
        "accessFile.existingConfigMap=b",
    ).stderr
    assert "set existingSecret or existingConfigMap, not both" in err


def test_service_replicas_avoid_sharing_a_node(default_docs, all_docs):
    soft = pod_spec(one(default_docs, "Deployment", FULLNAME))["affinity"]["podAntiAffinity"]
    term = soft["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"]["app.kubernetes.io/component"] == "server"
    hard = pod_spec(one(all_docs, "Deployment", FULLNAME))["affinity"]["podAntiAffinity"]
    assert "requiredDuringSchedulingIgnoredDuringExecution" in hard


def test_hpa_replaces_the_fixed_replica_count(all_docs):
    hpa = one(all_docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == FULLNAME
    assert "replicas" not in one(all_docs, "Deployment", FULLNAME)["spec"]
    assert one(all_docs, "PodDisruptionBudget")["spec"]["minAvailable"] == 2


def test_config_change_rolls_the_service_pods(helm):
    def checksum(*args: str) -> str:
        dep = one(template(helm, *args), "Deployment", FULLNAME)
        return dep["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    assert checksum() != checksum("--set", "config.retrieval.k=7")


# --- config -> RAG_* one-to-one ------------------------------------------------------------------


def test_every_configmap_variable_is_a_real_setting(default_docs, all_docs):
    for docs in (default_docs, all_docs):
        data = one(docs, "ConfigMap", f"{FULLNAME}-config")["data"]
        unknown = set(data) - VALID_ENV
        assert not unknown, f"ConfigMap names no setting of rag.config.Settings: {sorted(unknown)}"


def test_every_setting_appears_in_the_default_values_config():
    config = yaml.safe_load((CHART / "values.yaml").read_text())["config"]
    in_values = values_paths(config)
    in_settings = set(settings_paths())
    assert in_settings - in_values == set(), "settings missing from values.yaml config:"
    assert in_values - in_settings == set(), "values.yaml config keys that are no setting:"


def test_schema_config_section_mirrors_settings():
    schema = json.loads((CHART / "values.schema.json").read_text())

    def schema_paths(node: dict[str, Any], prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
        paths: set[tuple[str, ...]] = set()
        for key, sub in node["properties"].items():
            if sub.get("type") == "object" and "properties" in sub:
                paths |= schema_paths(sub, (*prefix, key))
            else:
                paths.add((*prefix, key))
        return paths

    assert schema_paths(schema["properties"]["config"]) == set(settings_paths())


def test_default_config_renders_every_plain_setting_and_no_secret(default_docs):
    data = one(default_docs, "ConfigMap", f"{FULLNAME}-config")["data"]
    assert set(data) == VALID_ENV - SECRET_ENV
    assert data["RAG_STORE__URL"] == "milvus://milvus:19530"
    assert data["RAG_SERVER__HOST"] == "0.0.0.0"


def test_rendered_environment_parses_back_into_the_same_settings(all_docs, monkeypatch):
    data = one(all_docs, "ConfigMap", f"{FULLNAME}-config")["data"]
    for name in list(os.environ):
        if name.startswith("RAG_"):
            monkeypatch.delenv(name)
    for name, value in data.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    values = yaml.safe_load(VALUES_ALL.read_text())["config"]
    assert settings.ingest.default_groups == values["ingest"]["default_groups"]
    assert settings.ingest.include == values["ingest"]["include"]
    assert settings.embed.query_prefix == "query: "  # trailing space survives
    assert settings.server.max_request_kb == 1_000_000  # not 1e+06
    assert settings.chat.timeout_s == 120.0
    assert str(settings.data_dir) == "/var/lib/rag"


# --- secrets -------------------------------------------------------------------------------------


def test_keys_come_only_from_existing_secrets(all_docs):
    assert not [d for d in all_docs if d["kind"] == "Secret"], "the chart must not render Secrets"
    data = one(all_docs, "ConfigMap", f"{FULLNAME}-config")["data"]
    assert not SECRET_ENV & set(data)
    containers = list(rag_containers(all_docs))
    assert len(containers) == 4  # service, cron ingest, bulk ingest, eval
    for c in containers:
        env = env_of(c)
        assert set(env) >= SECRET_ENV, f"{c['name']} lacks {SECRET_ENV - set(env)}"
        assert env["RAG_CHAT__API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "llm-key", "key": "api-key"}
        assert env["RAG_STORE__API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "milvus-token", "key": "token"}
    sensitive = re.compile(r"KEY|SECRET|TOKEN|PASSWORD|DATABASE_URL|REDIS_URL")
    for d in all_docs:
        if d["kind"] in ("Deployment", "CronJob", "Job", "StatefulSet"):
            for c in pod_spec(d)["containers"]:
                for e in c.get("env", []):
                    if sensitive.search(e["name"]):
                        assert "value" not in e, f"{e['name']} is a plain value in {d['metadata']['name']}"
                        assert "secretKeyRef" in e["valueFrom"]


def test_unset_secret_references_add_no_environment(default_docs):
    for c in rag_containers(default_docs):
        assert not SECRET_ENV & set(env_of(c))


def test_schema_refuses_a_key_given_as_a_value(helm):
    proc = run_helm(helm, "template", RELEASE, str(CHART), "--set-string", "config.chat.api_key=sk-live-123")
    assert proc.returncode != 0
    assert "config.chat.api_key" in proc.stderr


# --- schema --------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["lint", "template"])
def test_schema_refuses_replicas_in_words(helm, command):
    args = [command, *(["t"] if command == "template" else []), str(CHART), "--set-string", "replicaCount=two"]
    proc = run_helm(helm, *args)
    assert proc.returncode != 0
    assert "replicaCount" in proc.stdout + proc.stderr


def test_schema_refuses_a_config_key_that_is_no_setting(helm):
    proc = run_helm(helm, "template", RELEASE, str(CHART), "--set", "config.store.uri=milvus://x:19530")
    assert proc.returncode != 0
    assert "uri" in proc.stderr


def test_schema_refuses_settings_out_of_their_range(helm):
    proc = run_helm(helm, "template", RELEASE, str(CHART), "--set", "config.retrieval.k=0")
    assert proc.returncode != 0
    assert "config.retrieval.k" in proc.stderr


# --- namespaces ----------------------------------------------------------------------------------


def test_no_template_hard_codes_a_namespace():
    for path in sorted((CHART / "templates").iterdir()):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"\bnamespace:|matchNames:", line):
                assert ".Release.Namespace" in line, f"{path.name}:{n}: {line.strip()}"
            if "svc.cluster.local" in line:
                assert ".Release.Namespace" in line or "printf" in line, f"{path.name}:{n}: {line.strip()}"


def test_every_object_lands_in_the_release_namespace(all_docs):
    for d in all_docs:
        assert d["metadata"]["namespace"] == NS, f"{d['kind']} {d['metadata']['name']}"
    sm = one(all_docs, "ServiceMonitor")
    assert sm["spec"]["namespaceSelector"]["matchNames"] == [NS]


# --- ingest --------------------------------------------------------------------------------------


def test_cronjob_ingests_the_source_from_a_read_only_nas_mount(all_docs):
    cron = one(all_docs, "CronJob")
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    assert cron["spec"]["timeZone"] == "Asia/Seoul"
    spec = pod_spec(cron)
    (c,) = spec["containers"]
    assert c["command"] == ["rag", "ingest"]
    assert c["args"] == ["/data/docs/handbooks"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["documents"]["nfs"] == {"server": "nas.storage.internal", "path": "/export/docs", "readOnly": True}
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == "rag-ingest-state"
    mount = next(m for m in c["volumeMounts"] if m["name"] == "documents")
    assert mount["readOnly"] is True
    assert {"secretRef": {"name": "s3-credentials"}} in c["envFrom"]


def test_cronjob_mounts_a_documents_claim(helm):
    docs = template(
        helm,
        "--set",
        "ingest.cron.enabled=true",
        "--set",
        "ingest.documents.type=pvc",
        "--set",
        "ingest.documents.existingClaim=docs",
    )
    volumes = {v["name"]: v for v in pod_spec(one(docs, "CronJob"))["volumes"]}
    assert volumes["documents"]["persistentVolumeClaim"] == {"claimName": "docs", "readOnly": True}


def test_a_documents_claim_without_a_name_is_refused(helm):
    proc = run_helm(
        helm, "template", RELEASE, str(CHART), "--set", "ingest.cron.enabled=true", "--set", "ingest.documents.type=pvc"
    )
    assert proc.returncode != 0
    assert "ingest.documents.existingClaim is required" in proc.stderr


def test_bulk_job_gives_each_pod_its_shard(all_docs):
    job = next(j for j in all_docs if j["kind"] == "Job" and "bulk-ingest" in j["metadata"]["name"])
    assert job["metadata"]["name"] == f"{FULLNAME}-bulk-ingest-2026-11-28"
    assert job["spec"]["completionMode"] == "Indexed"
    assert job["spec"]["completions"] == 8
    assert job["spec"]["parallelism"] == 4
    spec = pod_spec(job)
    (c,) = spec["containers"]
    assert c["command"] + c["args"] == ["rag", "ingest", "/data/docs/handbooks", "--shard", "$(JOB_COMPLETION_INDEX)/8"]
    # $(VAR) expands only from variables declared in the container's env.
    assert "JOB_COMPLETION_INDEX" in env_of(c)
    data = next(v for v in spec["volumes"] if v["name"] == "data")
    assert "emptyDir" in data  # shards never share one SQLite sync state


# --- monitoring ----------------------------------------------------------------------------------


def test_servicemonitor_scrapes_the_service_metrics(all_docs):
    sm = one(all_docs, "ServiceMonitor")
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert sm["spec"]["endpoints"][0]["port"] == "http"
    assert sm["spec"]["endpoints"][0]["path"] == "/metrics"
    assert sm["spec"]["selector"]["matchLabels"] == one(all_docs, "Service", FULLNAME)["spec"]["selector"]


def test_grafana_dashboard_is_labelled_for_the_sidecar_and_has_the_panels(all_docs):
    cm = one(all_docs, "ConfigMap", f"{FULLNAME}-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(cm["data"]["onprem-rag.json"])
    titles = {p["title"] for p in dashboard["panels"]}
    assert titles >= {
        "Request rate",
        "Request latency",
        "Time to first token",
        "Retrieval latency",
        "Chat backend failovers",
    }
    for panel in dashboard["panels"]:
        assert panel["targets"] and all(t["expr"].strip() for t in panel["targets"])


# --- Open WebUI ----------------------------------------------------------------------------------


def test_open_webui_talks_to_the_service_not_to_an_llm(all_docs):
    dep = one(all_docs, "Deployment", f"{FULLNAME}-webui")
    (c,) = pod_spec(dep)["containers"]
    env = env_of(c)
    assert env["OPENAI_API_BASE_URL"]["value"] == f"http://{FULLNAME}.{NS}.svc.cluster.local:8000/v1"
    assert env["ENABLE_OLLAMA_API"]["value"] == "false"
    assert env["ENABLE_FORWARD_USER_INFO_HEADERS"]["value"] == "true"
    assert env["FORWARD_USER_INFO_HEADER_JWT_SECRET"]["valueFrom"]["secretKeyRef"] == {
        "name": "webui-jwt",
        "key": "jwt-secret",
    }
    for switch in ("ENABLE_TITLE_GENERATION", "ENABLE_TAGS_GENERATION", "ENABLE_FOLLOW_UP_GENERATION"):
        assert env[switch]["value"] == "false"
    svc = one(all_docs, "Service", f"{FULLNAME}-webui")
    assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]


def test_open_webui_will_not_forward_users_unsigned(helm):
    proc = run_helm(
        helm,
        "template",
        RELEASE,
        str(CHART),
        "--set",
        "openWebUI.enabled=true",
        "--set",
        "openWebUI.webuiSecret.existingSecret=w",
    )
    assert proc.returncode != 0
    assert "openWebUI.jwtSecret.existingSecret is required" in proc.stderr


# --- KServe --------------------------------------------------------------------------------------


def test_kserve_serves_the_llm_and_the_service_calls_its_predictor(all_docs):
    isvc = one(all_docs, "InferenceService", f"{FULLNAME}-llm")
    name = isvc["metadata"]["name"]
    model = isvc["spec"]["predictor"]["model"]
    assert model["modelFormat"]["name"] == "huggingface"
    assert model["storageUri"] == "pvc://models/qwen2.5-7b-instruct"
    assert model["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert "--model_name=qwen2.5-7b-instruct" in model["args"]
    data = config_map(all_docs)
    # RawDeployment (the default mode): the predictor's own Service.
    host = f"{name}-predictor.{NS}.svc.cluster.local"
    assert data["RAG_CHAT__URL"] == f"kserve+http://{host}/openai/v1?model=qwen2.5-7b-instruct"


def test_without_kserve_the_chat_url_is_the_configured_one(default_docs):
    data = one(default_docs, "ConfigMap", f"{FULLNAME}-config")["data"]
    assert data["RAG_CHAT__URL"] == yaml.safe_load((CHART / "values.yaml").read_text())["config"]["chat"]["url"]


# --- the installer -------------------------------------------------------------------------------


def test_helm_installer_is_idempotent(helm):
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "install_helm.sh")], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert str(ROOT / proc.stdout.strip()) == helm
    assert proc.stderr == ""  # nothing fetched the second time
