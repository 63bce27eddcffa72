"""Open WebUI in the chart: one Secret carries user identity to both sides, it runs hardened with
its database on a volume and a stable session secret, and signed-in users see the service's models.

Open WebUI's own source (installed by scripts/install_openwebui.sh) is read to check that every
variable the chart sets is one Open WebUI reads.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.charts.render import (
    FULLNAME,
    NS,
    component,
    config_map,
    env_of,
    of_kind,
    one,
    pod_spec,
    rag_containers,
    template,
    template_error,
)
from ui.openwebui import DEFAULT_VENV

WEBUI = f"{FULLNAME}-webui"
ON = (
    "--set",
    "openWebUI.enabled=true",
    "--set",
    "openWebUI.jwtSecret.existingSecret=webui-jwt",
    "--set",
    "openWebUI.webuiSecret.existingSecret=webui-session",
)


def webui_container(docs: list[dict]) -> dict:
    (c,) = pod_spec(one(docs, "Deployment", WEBUI))["containers"]
    return c


def openwebui_source() -> Path:
    found = sorted(DEFAULT_VENV.glob("lib/python*/site-packages/open_webui"))
    if not found:
        pytest.skip("Open WebUI is not installed: run scripts/install_openwebui.sh")
    return found[0]


# --- identity: one Secret, both sides ----------------------------------------------------------


def test_one_secret_signs_users_in_open_webui_and_verifies_them_in_the_service(helm):
    # config.auth.openwebui_jwt_secret is left empty: openWebUI.jwtSecret alone wires both sides.
    docs = template(helm, *ON)
    signer = env_of(webui_container(docs))["FORWARD_USER_INFO_HEADER_JWT_SECRET"]["valueFrom"]["secretKeyRef"]
    assert signer == {"name": "webui-jwt", "key": "jwt-secret"}
    assert env_of(webui_container(docs))["ENABLE_FORWARD_USER_INFO_HEADERS"]["value"] == "true"
    (server,) = pod_spec(one(docs, "Deployment", FULLNAME))["containers"]
    verifier = env_of(server)["RAG_AUTH__OPENWEBUI_JWT_SECRET"]["valueFrom"]["secretKeyRef"]
    assert verifier == signer
    assert "RAG_AUTH__OPENWEBUI_JWT_SECRET" not in config_map(docs)


def test_forwarded_identity_without_its_secret_fails_to_render(helm):
    err = template_error(helm, "--set", "openWebUI.enabled=true", "--set", "openWebUI.webuiSecret.existingSecret=w")
    assert "openWebUI.jwtSecret.existingSecret is required when openWebUI.forwardUserInfo is true" in err


def test_a_second_different_jwt_secret_for_the_service_is_refused(helm):
    err = template_error(helm, *ON, "--set", "config.auth.openwebui_jwt_secret.existingSecret=other")
    assert "names another Secret than openWebUI.jwtSecret" in err


def test_without_forwarded_identity_neither_side_gets_a_jwt_secret(helm):
    docs = template(helm, *ON, "--set", "openWebUI.forwardUserInfo=false")
    env = env_of(webui_container(docs))
    assert env["ENABLE_FORWARD_USER_INFO_HEADERS"]["value"] == "false"
    assert "FORWARD_USER_INFO_HEADER_JWT_SECRET" not in env
    for c in rag_containers(docs):
        assert "RAG_AUTH__OPENWEBUI_JWT_SECRET" not in env_of(c)


# --- session secret, database, replicas ----------------------------------------------------------


def test_open_webui_without_a_session_secret_fails_to_render(helm):
    err = template_error(helm, "--set", "openWebUI.enabled=true", "--set", "openWebUI.jwtSecret.existingSecret=j")
    assert "openWebUI.webuiSecret.existingSecret is required" in err


def test_the_session_secret_comes_from_its_secret(helm):
    env = env_of(webui_container(template(helm, *ON)))
    assert env["WEBUI_SECRET_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "webui-session", "key": "webui-secret-key"}


def test_the_database_lives_on_a_claim_the_chart_creates_and_keeps(helm):
    docs = template(helm, *ON, "--set", "openWebUI.persistence.storageClass=ceph-rbd")
    pvc = one(docs, "PersistentVolumeClaim", WEBUI)
    assert pvc["spec"]["resources"]["requests"]["storage"] == "5Gi"
    assert pvc["spec"]["storageClassName"] == "ceph-rbd"
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    dep = one(docs, "Deployment", WEBUI)
    spec = pod_spec(dep)
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"] == {"claimName": WEBUI}
    mounts = {m["mountPath"]: m["name"] for m in webui_container(docs)["volumeMounts"]}
    assert mounts["/app/backend/data"] == "data"
    assert env_of(webui_container(docs))["DATA_DIR"]["value"] == "/app/backend/data"
    assert dep["spec"]["strategy"] == {"type": "Recreate"}  # one pod at a time on SQLite


def test_an_existing_claim_replaces_the_charts_own(helm):
    docs = template(helm, *ON, "--set", "openWebUI.persistence.existingClaim=webui-data")
    assert not of_kind(docs, "PersistentVolumeClaim")
    volumes = {v["name"]: v for v in pod_spec(one(docs, "Deployment", WEBUI))["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"] == {"claimName": "webui-data"}


def test_more_replicas_need_an_external_database_and_redis(helm):
    err = template_error(helm, *ON, "--set", "openWebUI.replicaCount=2")
    assert "needs openWebUI.databaseUrl and openWebUI.redisUrl" in err
    external = (
        *ON,
        "--set",
        "openWebUI.replicaCount=2",
        "--set",
        "openWebUI.databaseUrl.existingSecret=webui-db",
        "--set",
        "openWebUI.redisUrl.existingSecret=webui-redis",
    )
    assert "ReadWriteMany" in template_error(helm, *external)
    docs = template(helm, *external, "--set", "openWebUI.persistence.enabled=false")
    env = env_of(webui_container(docs))
    assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "webui-db", "key": "database-url"}
    assert env["REDIS_URL"]["valueFrom"]["secretKeyRef"] == {"name": "webui-redis", "key": "redis-url"}
    assert env["WEBSOCKET_MANAGER"]["value"] == "redis"
    assert "strategy" not in one(docs, "Deployment", WEBUI)["spec"]


# --- hardening -----------------------------------------------------------------------------------


def test_open_webui_runs_non_root_on_a_read_only_root_with_a_volume_for_everything_it_writes(helm):
    docs = template(helm, *ON)
    spec = pod_spec(one(docs, "Deployment", WEBUI))
    c = webui_container(docs)
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] != 0
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    mounted = {m["mountPath"] for m in c["volumeMounts"]}
    env = env_of(c)
    # Its database and uploads, the static files it copies at start, HOME (caches) and temporary files.
    for variable in ("DATA_DIR", "STATIC_DIR", "HOME", "TMPDIR"):
        assert env[variable]["value"] in mounted, variable
    assert {"/tmp", "/app/backend/data", "/app/backend/open_webui/static"} <= mounted


def test_open_webui_has_startup_liveness_and_readiness_probes(helm):
    c = webui_container(template(helm, *ON))
    assert c["startupProbe"]["httpGet"]["path"] == "/health"
    assert c["livenessProbe"]["httpGet"]["path"] == "/health"
    assert c["readinessProbe"]["httpGet"]["path"] == "/ready"


def test_open_webui_gets_an_ingress_and_knows_its_public_url(helm):
    docs = template(
        helm,
        *ON,
        "--set",
        "openWebUI.ingress.enabled=true",
        "--set",
        "openWebUI.ingress.host=chat.lab.org",
        "--set",
        "openWebUI.ingress.tlsSecret=chat-tls",
        "--set",
        "openWebUI.ingress.className=nginx",
    )
    ing = one(docs, "Ingress", WEBUI)
    assert ing["spec"]["ingressClassName"] == "nginx"
    assert ing["spec"]["tls"] == [{"hosts": ["chat.lab.org"], "secretName": "chat-tls"}]
    (rule,) = ing["spec"]["rules"]
    assert rule["host"] == "chat.lab.org"
    backend = rule["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": WEBUI, "port": {"number": 8080}}
    assert one(docs, "Service", WEBUI)["spec"]["ports"][0]["port"] == 8080
    assert env_of(webui_container(docs))["WEBUI_URL"]["value"] == "https://chat.lab.org"
    assert "openWebUI.ingress.host is required" in template_error(helm, *ON, "--set", "openWebUI.ingress.enabled=true")


def test_open_webui_is_reached_only_through_the_ingress_controller(helm):
    docs = template(helm, *ON)
    policy = component(docs, "NetworkPolicy", "webui")
    assert policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "webui"
    (rule,) = policy["spec"]["ingress"]
    assert rule["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}]
    # An empty peer list would admit everyone: no controller named means no ingress rule at all.
    docs = template(helm, *ON, "--set-json", "networkPolicy.ingressController=[]")
    assert component(docs, "NetworkPolicy", "webui")["spec"]["ingress"] == []


# --- models visible to users ---------------------------------------------------------------------


def test_signed_in_users_see_the_services_models(helm):
    env = env_of(webui_container(template(helm, *ON)))
    assert env["BYPASS_MODEL_ACCESS_CONTROL"]["value"] == "true"
    env = env_of(webui_container(template(helm, *ON, "--set", "openWebUI.modelsVisibleToAllUsers=false")))
    assert "BYPASS_MODEL_ACCESS_CONTROL" not in env


def test_open_webui_hides_models_without_access_grants_from_users_unless_bypassed():
    # The reason for BYPASS_MODEL_ACCESS_CONTROL, in Open WebUI's own model filter.
    source = (openwebui_source() / "utils" / "models.py").read_text()
    body = source[source.index("async def get_filtered_models") :].split("\nasync def ")[0]
    assert "not BYPASS_MODEL_ACCESS_CONTROL" in body
    assert "only admins can see unconfigured models" in body


def test_every_variable_the_chart_gives_open_webui_is_one_it_reads(helm):
    source = openwebui_source()
    code = "\n".join(p.read_text(errors="replace") for p in source.rglob("*.py"))
    read = set(re.findall(r"""(?:getenv|environ\.get|environ\[)\(?\s*['"]([A-Z][A-Z0-9_]+)['"]""", code))
    docs = template(
        helm,
        *ON,
        "--set",
        "openWebUI.apiKey.existingSecret=k",
        "--set",
        "openWebUI.ingress.enabled=true",
        "--set",
        "openWebUI.ingress.host=chat.lab.org",
        "--set",
        "openWebUI.replicaCount=2",
        "--set",
        "openWebUI.databaseUrl.existingSecret=db",
        "--set",
        "openWebUI.redisUrl.existingSecret=r",
        "--set",
        "openWebUI.persistence.enabled=false",
    )
    # HOME, TMPDIR and HF_HUB_OFFLINE are read by Python, SQLite and huggingface_hub, not by Open WebUI itself.
    given = set(env_of(webui_container(docs))) - {"HOME", "TMPDIR", "HF_HUB_OFFLINE"}
    assert given - read == set(), "variables Open WebUI never reads"
    assert env_of(webui_container(docs))["OPENAI_API_BASE_URL"]["value"] == (
        f"http://{FULLNAME}.{NS}.svc.cluster.local:8000/v1"
    )
