"""Rendering the chart with helm and reading what it rendered; shared by the chart tests.

No cluster here: `helm template` renders, PyYAML parses. helm comes from scripts/install_helm.sh.
"""

from __future__ import annotations

import subprocess
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, SecretStr

from rag.config import Settings

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "onprem-rag"
HERE = Path(__file__).parent
VALUES_ALL = HERE / "values-all.yaml"
VALUES_DEV = CHART / "values-dev.yaml"
VALUES_PROD = CHART / "values-prod.yaml"
NS = "rag-test"
RELEASE = "t"
FULLNAME = f"{RELEASE}-onprem-rag"
# Helm's longest release name.
LONG_RELEASE = "research-platform-knowledge-assistant-production-eu01"
assert len(LONG_RELEASE) == 53

# Every way the tests install the chart: helm arguments per name.
PROFILES: dict[str, tuple[str, ...]] = {
    "default": (),
    "all": ("-f", str(VALUES_ALL)),
    "dev": ("-f", str(VALUES_DEV)),
    "prod": ("-f", str(VALUES_PROD)),
}

Doc = dict[str, Any]


def run_helm(helm: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run helm in the repository root."""
    return subprocess.run([helm, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def template(helm: str, *args: str, release: str = RELEASE, namespace: str = NS) -> list[Doc]:
    """Render the chart; the parsed objects."""
    proc = run_helm(helm, "template", release, str(CHART), "--namespace", namespace, *args)
    assert proc.returncode == 0, proc.stderr
    return load_all(proc.stdout)


# libyaml's parser where PyYAML was built with it: the KServe CRD is 2 MB of YAML.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_all(text: str) -> list[Doc]:
    """The non-empty documents of a YAML stream."""
    return [doc for doc in yaml.load_all(text, Loader=_LOADER) if doc]


def template_error(helm: str, *args: str) -> str:
    """Render the chart expecting helm to refuse; its error output."""
    proc = run_helm(helm, "template", RELEASE, str(CHART), "--namespace", NS, *args)
    assert proc.returncode != 0, f"helm rendered what it should refuse: {args}"
    return proc.stderr


def one(docs: list[Doc], kind: str, name: str | None = None) -> Doc:
    """The only object of a kind (and name)."""
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {[d['metadata']['name'] for d in found]}"
    return found[0]


def of_kind(docs: list[Doc], kind: str) -> list[Doc]:
    """All objects of one kind."""
    return [d for d in docs if d["kind"] == kind]


def component(docs: list[Doc], kind: str, name: str) -> Doc:
    """The one object of a kind labelled app.kubernetes.io/component=name."""
    found = [d for d in of_kind(docs, kind) if d["metadata"]["labels"].get("app.kubernetes.io/component") == name]
    assert len(found) == 1, f"expected one {kind} of component {name}, found {len(found)}"
    return found[0]


WORKLOADS = ("Deployment", "StatefulSet", "Job", "CronJob")


def pod_spec(obj: Doc) -> Doc:
    """The pod spec inside a workload."""
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return obj["spec"]["template"]["spec"]


def containers(docs: list[Doc]) -> Iterator[tuple[Doc, Doc, Doc]]:
    """(workload, pod spec, container) for every container of every workload."""
    for d in docs:
        if d["kind"] in WORKLOADS:
            spec = pod_spec(d)
            for c in spec.get("initContainers", []) + spec["containers"]:
                yield d, spec, c


def env_of(container: Doc) -> dict[str, Doc]:
    """A container's env entries by name."""
    return {e["name"]: e for e in container.get("env", [])}


def rag_containers(docs: list[Doc]) -> Iterator[Doc]:
    """Containers that run `rag` (service, ingest, worker, eval), not Open WebUI or Chroma."""
    for _, _, c in containers(docs):
        if c.get("command", [None])[0] == "rag":
            yield c


def config_map(docs: list[Doc]) -> dict[str, str]:
    """The RAG_* ConfigMap's data (the ConfigMap named <fullname>-config, whatever the release)."""
    (found,) = [d for d in of_kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("-config")]
    return found["data"]


# --- rag.config.Settings as key paths ------------------------------------------------------------


def settings_paths(model: type[BaseModel] = Settings, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    """Every leaf setting as its key path, mapped to its pydantic field."""
    paths: dict[tuple[str, ...], Any] = {}
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            paths.update(settings_paths(ann, (*prefix, name)))
        else:
            paths[(*prefix, name)] = field
    return paths


def is_secret(field: Any) -> bool:
    """Whether a settings field holds a key (SecretStr)."""
    ann = field.annotation
    return ann is SecretStr or SecretStr in typing.get_args(ann)


def env_name(path: tuple[str, ...]) -> str:
    """The RAG_* variable of a settings key path."""
    return "RAG_" + "__".join(path).upper()


VALID_ENV = {env_name(p) for p in settings_paths()}
SECRET_ENV = {env_name(p) for p, f in settings_paths().items() if is_secret(f)}


def values_paths(tree: dict[str, Any], prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    """Leaf key paths of a values tree; a secret reference (a map with existingSecret) is a leaf."""
    paths: set[tuple[str, ...]] = set()
    for key, value in tree.items():
        if isinstance(value, dict) and "existingSecret" not in value:
            paths |= values_paths(value, (*prefix, key))
        else:
            paths.add((*prefix, key))
    return paths


# --- Kubernetes quantities -----------------------------------------------------------------------

_SUFFIXES = {
    "m": 1e-3,
    "": 1.0,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}


def quantity(value: str | int | float) -> float:
    """A Kubernetes resource quantity ("500m", "2", "24Gi") as a number."""
    text = str(value)
    number = text.rstrip("kKMGTimu")
    suffix = text[len(number) :]
    assert suffix in _SUFFIXES, f"not a quantity this test knows: {value!r}"
    return float(number) * _SUFFIXES[suffix]


def isvc_containers(isvc: Doc) -> list[Doc]:
    """The serving containers of an InferenceService's predictor (model spec or custom containers)."""
    predictor = isvc["spec"]["predictor"]
    return [predictor["model"]] if "model" in predictor else list(predictor["containers"])
