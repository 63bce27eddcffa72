"""Every rendered object is valid for every Kubernetes version the chart claims, and every custom
resource matches its upstream CRD schema.

Core kinds: kubernetes-validate's offline schemas (strict: unknown fields are errors), from the
floor of Chart.yaml's kubeVersion to the newest version kubernetes-validate ships. Custom resources
(InferenceService, ServiceMonitor): their `spec` against the CRD's openAPIV3Schema with jsonschema,
closed the way the API server prunes: a field the schema does not name is an error here, since
the cluster would drop it silently.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from packaging.version import Version

from tests.charts.render import CHART, LONG_RELEASE, PROFILES, Doc, load_all, template

SCHEMAS = Path(__file__).parent / "schemas"
CRDS = {
    ("serving.kserve.io/v1beta1", "InferenceService"): "kserve-inferenceservice.crd.yaml",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "prometheus-servicemonitor.crd.yaml",
}


# More renders than the profiles: the other KServe mode and runtimes, the worker beside a bulk Job.
def _sets(*assignments: str) -> tuple[str, ...]:
    return tuple(arg for a in assignments for arg in ("--set", a))


EXTRA_RENDERS: dict[str, tuple[str, ...]] = {
    "knative-tei": (
        "-f",
        PROFILES["prod"][1],
        *_sets(
            "kserve.deploymentMode=Knative",
            "kserve.embedder.runtime=tei",
            "kserve.reranker.runtime=huggingface",
            "ingest.cron.enabled=false",
            "ingest.worker.enabled=true",
            "ingest.bulk.enabled=true",
        ),
    ),
}


def claimed_versions() -> list[str]:
    """Minor versions from Chart.yaml's kubeVersion floor to the newest kubernetes-validate knows."""
    claim = yaml.safe_load((CHART / "Chart.yaml").read_text())["kubeVersion"]
    floor = re.match(r">=\s*(\d+\.\d+)", claim)
    assert floor, f"kubeVersion {claim!r} has no >= floor"
    shipped = sorted(
        {kubernetes_validate.utils.major_minor(v) for v in kubernetes_validate.utils.all_versions()}, key=Version
    )
    versions = [v for v in shipped if Version(v) >= Version(floor.group(1))]
    assert versions and versions[0] == floor.group(1), f"kubernetes-validate has no schemas for {floor.group(1)}"
    return versions


KUBE_VERSIONS = claimed_versions()


def renders(helm: str, kube_version: str | None = None, long_names: bool = True) -> dict[str, list[Doc]]:
    """Every profile and extra render, also as a 53-character release."""
    args = ("--kube-version", f"{kube_version}.0") if kube_version else ()
    out: dict[str, list[Doc]] = {}
    for name, extra in {**PROFILES, **EXTRA_RENDERS}.items():
        out[name] = template(helm, *args, *extra)
        if long_names:
            out[f"{name}-long"] = template(helm, *args, *extra, release=LONG_RELEASE)
    return out


@pytest.fixture(scope="module", autouse=True)
def _schemas_are_parsed_once() -> Iterator[None]:
    """kubernetes-validate parses a 1.2 MB definitions file on every call: memoise it for this module."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(kubernetes_validate.utils, "schema_contents", cache(kubernetes_validate.utils.schema_contents))
        yield


def unique(docs_by_render: dict[str, list[Doc]]) -> dict[str, tuple[str, Doc]]:
    """Distinct objects across renders, keyed by content, with the render that produced each first."""
    seen: dict[str, tuple[str, Doc]] = {}
    for name, docs in docs_by_render.items():
        for d in docs:
            seen.setdefault(json.dumps(d, sort_keys=True), (name, d))
    return seen


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_every_core_object_is_valid_for_each_claimed_kubernetes_version(helm, version):
    errors = []
    checked = 0
    # Names do not change validity here (the schemas check no lengths): long names are tested elsewhere.
    for render, d in unique(renders(helm, version, long_names=False)).values():
        if (d["apiVersion"], d["kind"]) in CRDS:
            continue
        try:
            kubernetes_validate.validate(d, version, strict=True)
            checked += 1
        except kubernetes_validate.ValidationError as e:
            where = ".".join(str(p) for p in e.path)
            errors.append(f"{render}: {d['kind']} {d['metadata']['name']}: {where}: {e.message[:300]}")
        except kubernetes_validate.SchemaNotFoundError as e:
            errors.append(f"{render}: {e.message}")
    assert not errors, "\n".join(errors)
    assert checked >= 20


def closed(schema: Any) -> Any:
    """The schema with additionalProperties false wherever it names properties and keeps no unknown fields."""
    if isinstance(schema, list):
        return [closed(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: closed(v) for k, v in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@cache
def crd_spec_schema(api_version: str, kind: str) -> dict[str, Any]:
    """The closed openAPIV3Schema of a CRD version's spec."""
    group, version = api_version.split("/")
    (crd,) = load_all((SCHEMAS / CRDS[(api_version, kind)]).read_text())
    assert crd["spec"]["group"] == group and crd["spec"]["names"]["kind"] == kind
    (served,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    return closed(served["schema"]["openAPIV3Schema"]["properties"]["spec"])


def test_every_custom_resource_spec_matches_its_upstream_crd_schema(helm):
    checked: dict[str, int] = {}
    errors = []
    for render, d in unique(renders(helm)).values():
        key = (d["apiVersion"], d["kind"])
        if key not in CRDS:
            continue
        validator = jsonschema.Draft7Validator(crd_spec_schema(*key))
        for e in validator.iter_errors(d["spec"]):
            errors.append(
                f"{render}: {d['kind']} {d['metadata']['name']}: spec.{'.'.join(map(str, e.path))}: {e.message[:300]}"
            )
        checked[d["kind"]] = checked.get(d["kind"], 0) + 1
    assert not errors, "\n".join(errors)
    assert checked.get("InferenceService", 0) >= 6 and checked.get("ServiceMonitor", 0) >= 2, checked


def test_the_closed_crd_schema_catches_a_misplaced_field():
    # The check above could not fail if closing the schema did nothing.
    spec = {"predictor": {"model": {"modelFormat": {"name": "huggingface"}, "storageUri": "pvc://m", "gpus": 1}}}
    errors = list(
        jsonschema.Draft7Validator(crd_spec_schema("serving.kserve.io/v1beta1", "InferenceService")).iter_errors(spec)
    )
    assert any("gpus" in e.message for e in errors)
