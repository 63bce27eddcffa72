"""Rules every object the chart renders must follow, checked over every profile, as a short and as
a 53-character release, in a namespace other than default."""

from __future__ import annotations

import json
import os
import re
import typing
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import annotated_types
import pytest
import yaml
from pydantic import BaseModel

from rag.config import Settings
from tests.charts.render import (
    CHART,
    LONG_RELEASE,
    NS,
    PROFILES,
    RELEASE,
    SECRET_ENV,
    Doc,
    component,
    config_map,
    containers,
    env_name,
    env_of,
    is_secret,
    isvc_containers,
    of_kind,
    quantity,
    rag_containers,
    settings_paths,
    template,
)


@pytest.fixture(scope="module")
def everything(helm: str, rendered: dict[str, list[Doc]]) -> dict[str, list[Doc]]:
    """Each profile as release t and as a 53-character release name."""
    out = {f"{name}/{RELEASE}": docs for name, docs in rendered.items()}
    for name, args in PROFILES.items():
        out[f"{name}/long"] = template(helm, *args, release=LONG_RELEASE)
    return out


def each_container(everything: dict[str, list[Doc]]) -> typing.Iterator[tuple[str, Doc, Doc, Doc]]:
    for render, docs in everything.items():
        for workload, spec, c in containers(docs):
            yield render, workload, spec, c


# --- resources, probes, security -----------------------------------------------------------------


def test_every_container_requests_and_limits_cpu_and_memory(everything):
    seen = 0
    for render, docs in everything.items():
        serving = [
            ("InferenceService", d["metadata"]["name"], c)
            for d in of_kind(docs, "InferenceService")
            for c in isvc_containers(d)
        ]
        workloads = [(w["kind"], w["metadata"]["name"], c) for w, _, c in containers(docs)]
        for kind, name, c in workloads + serving:
            res = c.get("resources", {})
            where = f"{render}: {kind} {name} container {c.get('name', 'model')}"
            for part in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(res.get(part, {})), f"{where}: {part} {res.get(part)}"
            for name_ in ("cpu", "memory"):
                assert quantity(res["requests"][name_]) <= quantity(res["limits"][name_]), where
            seen += 1
    assert seen > 10


def test_every_long_running_container_has_liveness_and_readiness_probes(everything):
    for render, workload, _, c in each_container(everything):
        if workload["kind"] in ("Deployment", "StatefulSet"):
            for probe in ("livenessProbe", "readinessProbe"):
                assert probe in c, f"{render}: {workload['metadata']['name']}/{c['name']} has no {probe}"


def test_every_pod_runs_non_root_with_no_privileges_on_a_read_only_root(everything):
    for render, workload, spec, c in each_container(everything):
        where = f"{render}: {workload['kind']} {workload['metadata']['name']}/{c['name']}"
        pod, own = spec.get("securityContext", {}), c.get("securityContext", {})
        assert own.get("runAsNonRoot", pod.get("runAsNonRoot")) is True, where
        assert own.get("runAsUser", pod.get("runAsUser", 1)) != 0, where
        assert own.get("seccompProfile", pod.get("seccompProfile")) == {"type": "RuntimeDefault"}, where
        assert own.get("allowPrivilegeEscalation") is False, where
        assert own.get("capabilities", {}).get("drop") == ["ALL"], where
        # Possible everywhere in this chart: each writable path is a volume.
        assert own.get("readOnlyRootFilesystem") is True, where
        assert spec.get("automountServiceAccountToken") is False, where


# --- namespaces, names ---------------------------------------------------------------------------


def test_every_object_lands_in_the_release_namespace_and_every_chart_url_names_it(everything):
    url = re.compile(r"([a-z0-9-]+)\.([a-z0-9-]+)\.svc\.cluster\.local")
    for render, docs in everything.items():
        own = {d["metadata"]["name"] for d in docs if d["kind"] in ("Service", "InferenceService")}
        own |= {f"{n}-predictor" for n in own}
        for d in docs:
            assert d["metadata"]["namespace"] == NS, f"{render}: {d['kind']} {d['metadata']['name']}"
            for host, namespace in url.findall(yaml.safe_dump(d, width=10_000)):
                if host in own:
                    assert namespace == NS, f"{render}: {d['kind']} {d['metadata']['name']} calls {host}.{namespace}"
        for sm in of_kind(docs, "ServiceMonitor"):
            assert sm["spec"]["namespaceSelector"]["matchNames"] == [NS]


DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")  # RFC 1035: Services
DNS_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def name_limit(d: Doc) -> int:
    """How long a name of this object may be, counting what Kubernetes and KServe append to it."""
    kind = d["kind"]
    if kind in ("CronJob", "StatefulSet"):
        return 52  # Jobs get -<11 digits>; the controller-revision-hash label adds -<10>
    if kind == "InferenceService":
        return 45  # -predictor, and Knative revision names
    if kind == "Job" and d["spec"].get("completionMode") == "Indexed":
        return 63 - len(f"-{d['spec']['completions'] - 1}")  # pod hostnames <job>-<index>
    return 63


def test_every_name_and_label_fits_its_kinds_limit(everything):
    for render, docs in everything.items():
        names: dict[str, set[str]] = {}
        for d in docs:
            name, kind = d["metadata"]["name"], d["kind"]
            where = f"{render}: {kind} {name} ({len(name)})"
            assert len(name) <= name_limit(d), where
            assert (DNS_LABEL if kind in ("Service", "InferenceService") else DNS_NAME).match(name), where
            assert name not in names.setdefault(kind, set()), f"{where}: two of one name"
            names[kind].add(name)
            labels = dict(d["metadata"].get("labels", {}))
            if d["kind"] in ("Deployment", "StatefulSet", "Job", "CronJob"):
                spec = d["spec"]["jobTemplate"]["spec"] if kind == "CronJob" else d["spec"]
                labels.update(spec["template"]["metadata"].get("labels", {}))
            for key, value in labels.items():
                assert len(str(value)) <= 63, f"{where}: label {key}={value}"


def test_long_release_names_are_shortened_with_a_hash_so_they_never_collide(helm):
    # Two 53-character releases that differ only at the end.
    a, b = LONG_RELEASE, LONG_RELEASE[:-1] + "2"
    names = {}
    for release in (a, b):
        docs = template(helm, *PROFILES["all"], release=release)
        names[release] = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert not names[a] & names[b]
    cron = next(n for k, n in names[a] if k == "CronJob")
    assert cron.endswith("-ingest") and len(cron) <= 52


# --- secrets -------------------------------------------------------------------------------------


SECRET_LIKE = re.compile(r"(PASSWORD|SECRET|TOKEN|API_KEY|ACCESS_KEY|ACCESS_KEY_ID|DATABASE_URL|REDIS_URL)$")


def test_no_configmap_holds_a_secret_and_no_secret_is_rendered(everything):
    for render, docs in everything.items():
        assert not of_kind(docs, "Secret"), f"{render}: the chart renders no Secret"
        for cm in of_kind(docs, "ConfigMap"):
            for key in cm.get("data", {}):
                assert key not in SECRET_ENV and not SECRET_LIKE.search(key), (
                    f"{render}: {cm['metadata']['name']}: {key}"
                )
        for _, workload, _, c in ((r, w, s, c) for r, w, s, c in each_container({render: docs})):
            for e in c.get("env", []):
                if SECRET_LIKE.search(e["name"]) or e["name"] in SECRET_ENV:
                    assert "value" not in e, f"{render}: {workload['metadata']['name']}: {e['name']} is a plain value"


# --- every setting from values -------------------------------------------------------------------


def bounds(field: Any) -> dict[str, float]:
    out: dict[str, float] = {}
    for m in field.metadata:
        for attr in ("ge", "gt", "le", "lt"):
            if isinstance(m, getattr(annotated_types, attr.capitalize())):
                out[attr] = getattr(m, attr)
    return out


def fits(value: float, b: dict[str, float]) -> bool:
    return (
        value >= b.get("ge", -1e18)
        and value > b.get("gt", -1e18)
        and value <= b.get("le", 1e18)
        and value < b.get("lt", 1e18)
    )


def chart_schema(path: tuple[str, ...]) -> dict[str, Any]:
    """The node of values.schema.json for config.<path>."""
    node = json.loads((CHART / "values.schema.json").read_text())["properties"]["config"]
    for key in path:
        node = node["properties"][key]
    return node


def changed(path: tuple[str, ...], field: Any) -> Any:
    """A valid value for a setting that differs from its default (a secret reference for keys)."""
    name = "-".join(path).replace("_", "-")
    ann = field.annotation
    if is_secret(field):
        return {"existingSecret": f"s-{name}", "key": "k"}
    default = field.get_default(call_default_factory=True)
    if "enum" in chart_schema(path):  # the chart may know the choices better than the type does
        return next(c for c in chart_schema(path)["enum"] if c != default)
    if ann is bool:
        return not default
    if get_origin(ann) is Literal:
        return next(c for c in get_args(ann) if c != default)
    if ann in (int, float):
        b = bounds(field)
        for candidate in (default + 1, default - 1, default / 2, default * 2):
            if candidate != default and fits(candidate, b) and (ann is float or candidate == int(candidate)):
                return int(candidate) if ann is int else float(candidate)
        raise AssertionError(f"no value for {path} within {b}")
    if get_origin(ann) is list:
        (item,) = get_args(ann)
        if isinstance(item, type) and issubclass(item, BaseModel):
            return [{"name": f"p-{name}", "collection": f"c-{name}"}]
        return [f"a-{name}", "b"]
    args = set(get_args(ann)) - {type(None)}
    if ann is Path or Path in args:
        return f"/srv/{name}"
    if ann is str or str in args:
        return f"x-{name}"
    raise AssertionError(f"test does not know how to set {path}: {ann}")


def nested(paths: dict[tuple[str, ...], Any]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for path, value in paths.items():
        node = tree
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return tree


def test_every_rag_setting_is_settable_from_values(helm, tmp_path, monkeypatch):
    # From rag.config.Settings itself: a new setting is covered without touching this test.
    fields = settings_paths()
    wanted = {path: changed(path, field) for path, field in fields.items()}
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({"config": nested(wanted)}))
    docs = template(helm, "-f", str(values))
    data = config_map(docs)
    for name in list(os.environ):
        if name.startswith("RAG_"):
            monkeypatch.delenv(name)
    for name, value in data.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    containers_ = list(rag_containers(docs))
    assert containers_
    for path, value in wanted.items():
        if is_secret(fields[path]):
            for c in containers_:
                ref = env_of(c)[env_name(path)]["valueFrom"]["secretKeyRef"]
                assert ref == {"name": value["existingSecret"], "key": "k"}, path
            continue
        got: Any = settings
        for key in path:
            got = getattr(got, key)
        if isinstance(got, list) and got and isinstance(got[0], BaseModel):
            got = [g.model_dump(exclude_none=True) for g in got]
        if isinstance(got, Path):
            got = str(got)
        assert got == value, f"{env_name(path)}: values {value!r} became {got!r}"


# --- network policy ------------------------------------------------------------------------------


def test_every_profile_restricts_the_service_with_a_network_policy(everything):
    for render, docs in everything.items():
        policy = component(docs, "NetworkPolicy", "server")
        selected = policy["spec"]["podSelector"]["matchLabels"]
        server = [
            d for d in of_kind(docs, "Deployment") if d["metadata"]["labels"]["app.kubernetes.io/component"] == "server"
        ]
        (dep,) = server
        assert selected == dep["spec"]["selector"]["matchLabels"], render
        assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
