"""The chart's workloads besides the service: Chroma, the ingest worker, the eval Job, ingest
sources, the service's Ingress and NetworkPolicy, and Job fields that depend on the Kubernetes version."""

from __future__ import annotations

import pytest

from tests.charts.render import (
    CHART,
    FULLNAME,
    NS,
    component,
    config_map,
    env_of,
    of_kind,
    one,
    pod_spec,
    run_helm,
    template,
    template_error,
)

DOCS_PVC = ("--set", "ingest.documents.type=pvc", "--set", "ingest.documents.existingClaim=docs")


# --- Chroma --------------------------------------------------------------------------------------


def test_chroma_runs_as_a_statefulset_on_its_own_claim_and_the_store_points_at_it(helm):
    docs = template(helm, "--set", "chroma.enabled=true")
    sts = one(docs, "StatefulSet", f"{FULLNAME}-chroma")
    assert sts["spec"]["replicas"] == 1
    (c,) = pod_spec(sts)["containers"]
    assert c["command"] == ["chroma", "run", "--path", "/data", "--host", "0.0.0.0", "--port", "8000"]
    assert c["image"] == "registry.local/onprem-rag/onprem-rag:0.1.0"  # chromadb is in the app image
    assert {"name": "data", "mountPath": "/data"} in c["volumeMounts"]
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    assert claim["spec"]["resources"]["requests"]["storage"] == "10Gi"
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"] == {"path": "/api/v2/heartbeat", "port": "http"}
    assert env_of(c)["ANONYMIZED_TELEMETRY"]["value"] == "False"
    svc = one(docs, "Service", f"{FULLNAME}-chroma")
    assert svc["spec"]["selector"] == sts["spec"]["selector"]["matchLabels"]
    assert sts["spec"]["serviceName"] == svc["metadata"]["name"]
    assert config_map(docs)["RAG_STORE__URL"] == f"chroma+http://{FULLNAME}-chroma.{NS}.svc.cluster.local:8000"


def test_chroma_can_run_its_own_image(helm):
    docs = template(
        helm,
        "--set",
        "chroma.enabled=true",
        "--set",
        "chroma.image.repository=chromadb/chroma",
        "--set",
        "chroma.image.tag=1.5.0",
    )
    (c,) = pod_spec(one(docs, "StatefulSet"))["containers"]
    assert c["image"] == "chromadb/chroma:1.5.0"


def test_only_this_releases_pods_reach_chroma_and_the_service_may_reach_it(helm):
    docs = template(helm, "--set", "chroma.enabled=true")
    policy = component(docs, "NetworkPolicy", "chroma")
    (rule,) = policy["spec"]["ingress"]
    assert rule["from"] == [
        {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "onprem-rag", "app.kubernetes.io/instance": "t"}}}
    ]
    egress = component(docs, "NetworkPolicy", "server")["spec"]["egress"]
    to_chroma = [
        r
        for r in egress
        if r["to"][0].get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component") == "chroma"
    ]
    assert to_chroma and to_chroma[0]["ports"] == [{"port": 8000, "protocol": "TCP"}]


# --- the worker ----------------------------------------------------------------------------------


def test_worker_keeps_the_source_in_sync_and_serves_metrics(helm):
    docs = template(
        helm,
        "--set",
        "ingest.worker.enabled=true",
        "--set",
        "ingest.worker.watch=true",
        "--set",
        "ingest.worker.intervalSeconds=120",
        "--set",
        "serviceMonitor.enabled=true",
        *DOCS_PVC,
    )
    dep = one(docs, "Deployment", f"{FULLNAME}-worker")
    assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"] == {"type": "Recreate"}
    (c,) = pod_spec(dep)["containers"]
    assert c["command"] + c["args"] == [
        "rag",
        "worker",
        "/data/docs",
        "--interval",
        "120",
        "--host",
        "0.0.0.0",
        "--port",
        "9108",
        "--watch",
    ]
    assert c["ports"] == [{"name": "metrics", "containerPort": 9108, "protocol": "TCP"}]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert {"name": "documents", "mountPath": "/data/docs", "readOnly": True} in c["volumeMounts"]
    svc = one(docs, "Service", f"{FULLNAME}-worker")
    assert svc["spec"]["ports"] == [{"name": "metrics", "port": 9108, "targetPort": "metrics", "protocol": "TCP"}]
    assert svc["spec"]["publishNotReadyAddresses"] is True  # scraped during the first sync too
    sm = one(docs, "ServiceMonitor", f"{FULLNAME}-worker")
    assert sm["spec"]["selector"]["matchLabels"] == svc["spec"]["selector"]
    assert sm["spec"]["endpoints"][0]["port"] == "metrics"


def test_worker_and_cronjob_together_are_refused(helm):
    err = template_error(helm, "--set", "ingest.worker.enabled=true", "--set", "ingest.cron.enabled=true", *DOCS_PVC)
    assert "would race on its sync state" in err


# --- ingest sources ------------------------------------------------------------------------------


def test_a_path_source_without_a_documents_volume_fails_to_render(helm):
    # The CronJob once ingested /data/docs with nothing mounted there.
    for workload in ("cron", "worker", "bulk"):
        err = template_error(helm, "--set", f"ingest.{workload}.enabled=true")
        assert "ingest.source /data/docs is a path, but no documents volume is mounted" in err


def test_a_path_source_outside_the_documents_volume_fails_to_render(helm):
    err = template_error(helm, "--set", "ingest.cron.enabled=true", "--set", "ingest.source=/srv/docs", *DOCS_PVC)
    assert "outside the documents volume mounted at ingest.documents.mountPath /data/docs" in err


def test_an_s3_source_needs_no_documents_volume(helm):
    docs = template(helm, "--set", "ingest.cron.enabled=true", "--set", "ingest.source=s3://handbooks/2026/")
    (c,) = pod_spec(one(docs, "CronJob"))["containers"]
    assert c["args"] == ["s3://handbooks/2026/"]
    assert "documents" not in {v["name"] for v in pod_spec(one(docs, "CronJob"))["volumes"]}


def test_the_default_install_renders_no_ingest_job(default_docs):
    assert not of_kind(default_docs, "CronJob") and not of_kind(default_docs, "Job")


# --- Job fields by Kubernetes version ------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "per_index"), [("1.25.0", False), ("1.28.9", False), ("1.29.0", True), ("1.33.1", True)]
)
def test_per_shard_retries_only_where_the_cluster_has_them(helm, version, per_index):
    docs = template(helm, "--kube-version", version, "--set", "ingest.bulk.enabled=true", *DOCS_PVC)
    spec = one(docs, "Job")["spec"]
    if per_index:
        assert spec["backoffLimitPerIndex"] == 2 and "backoffLimit" not in spec
    else:
        assert spec["backoffLimit"] == 4 and "backoffLimitPerIndex" not in spec


def test_helm_refuses_a_cluster_older_than_the_chart_claims(helm):
    proc = run_helm(helm, "template", "t", str(CHART), "--kube-version", "1.24.0")
    assert proc.returncode != 0 and "kubeVersion" in proc.stderr


# --- eval ----------------------------------------------------------------------------------------


def test_eval_job_runs_the_cases_against_this_releases_service(all_docs):
    job = component(all_docs, "Job", "eval")
    assert job["metadata"]["name"] == f"{FULLNAME}-eval-nightly-7"
    assert job["spec"]["backoffLimit"] == 0
    spec = pod_spec(job)
    (c,) = spec["containers"]
    assert c["command"] == ["rag", "eval"]
    assert c["args"] == [
        "run",
        "--dataset",
        "/data/eval/cases.jsonl",
        "--out",
        "/runs/nightly-7",
        "--target",
        f"http://{FULLNAME}.{NS}.svc.cluster.local:8000/v1?model=rag",
        "--limit",
        "50",
        "--min",
        "recall_at_k=0.6",
    ]
    key = env_of(c)["RAG_EVAL_SERVICE_API_KEY"]["valueFrom"]["secretKeyRef"]
    assert key == {"name": "eval-key", "key": "api-key"}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["dataset"]["configMap"] == {"name": "rag-eval-cases"}
    assert volumes["runs"]["persistentVolumeClaim"] == {"claimName": "rag-eval-runs"}
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    assert mounts["dataset"]["readOnly"] is True and mounts["runs"]["mountPath"] == "/runs"


def test_eval_job_takes_other_targets_and_a_dataset_claim(helm):
    docs = template(
        helm,
        "--set",
        "eval.enabled=true",
        "--set",
        "eval.dataset.existingClaim=eval-data",
        "--set",
        "eval.dataset.format=squad",
        "--set",
        "eval.dataset.file=korquad/dev.json",
        "--set-json",
        'eval.targets=["extractive://","kserve+http://llm-predictor.models.svc.cluster.local/openai/v1?model=x"]',
    )
    (c,) = pod_spec(one(docs, "Job"))["containers"]
    assert c["args"][:3] == ["run", "--squad", "/data/eval/korquad/dev.json"]
    assert c["args"].count("--target") == 2 and "extractive://" in c["args"]
    volumes = {v["name"]: v for v in pod_spec(one(docs, "Job"))["volumes"]}
    assert volumes["dataset"]["persistentVolumeClaim"] == {"claimName": "eval-data", "readOnly": True}
    assert "emptyDir" in volumes["runs"]


def test_eval_without_a_dataset_is_refused(helm):
    assert "eval.dataset.configMap or eval.dataset.existingClaim" in template_error(helm, "--set", "eval.enabled=true")


# --- the service's Ingress and NetworkPolicy -----------------------------------------------------


def test_the_service_gets_an_ingress_that_does_not_buffer_streams(all_docs):
    ing = one(all_docs, "Ingress", FULLNAME)
    (rule,) = ing["spec"]["rules"]
    assert rule["host"] == "rag.lab.internal"
    assert rule["http"]["paths"][0]["backend"]["service"] == {"name": FULLNAME, "port": {"number": 8000}}
    assert ing["spec"]["tls"] == [{"hosts": ["rag.lab.internal"], "secretName": "rag-tls"}]
    assert ing["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"


def test_an_ingress_without_a_host_is_refused(helm):
    assert "ingress.host is required" in template_error(helm, "--set", "ingress.enabled=true")


def test_the_service_is_reached_only_from_open_webui_eval_the_ingress_controller_and_prometheus(default_docs):
    policy = component(default_docs, "NetworkPolicy", "server")
    spec = policy["spec"]
    assert spec["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "server"
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    (rule,) = spec["ingress"]
    sources = rule["from"]
    components = [
        p["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for p in sources if "namespaceSelector" not in p
    ]
    assert components == ["webui", "eval"]
    namespaces = [
        p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
        for p in sources
        if "namespaceSelector" in p
    ]
    assert namespaces == ["ingress-nginx", "monitoring"]
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]


def test_the_service_talks_only_to_dns_the_store_and_the_predictors(default_docs, all_docs):
    egress = component(default_docs, "NetworkPolicy", "server")["spec"]["egress"]
    dns, store, predictors = egress
    assert {(p["port"], p["protocol"]) for p in dns["ports"]} == {(53, "UDP"), (53, "TCP")}
    assert dns["to"][0]["podSelector"] == {"matchLabels": {"k8s-app": "kube-dns"}}
    assert store["to"] == [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "milvus"}}}]
    assert store["ports"] == [{"port": 19530, "protocol": "TCP"}]
    assert predictors["to"][0]["podSelector"]["matchExpressions"] == [
        {"key": "serving.kserve.io/inferenceservice", "operator": "Exists"}
    ]
    assert predictors["ports"] == [{"port": 8080, "protocol": "TCP"}]
    # Anything else is added on purpose, as whole rules.
    extra = component(all_docs, "NetworkPolicy", "server")["spec"]["egress"][3:]
    assert extra == [{"to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}], "ports": [{"port": 443, "protocol": "TCP"}]}]


def test_an_empty_peer_list_that_would_open_egress_to_everyone_is_refused(helm):
    assert "at least 1" in template_error(helm, "--set-json", "networkPolicy.store.peers=[]")
