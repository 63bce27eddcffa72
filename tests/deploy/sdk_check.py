"""Checks that need the platform SDKs, run in .venv-deploy: ``python -m tests.deploy.sdk_check katib|kfp FILE``.

katib: the Experiment deserialised into the kubeflow-katib models and serialised back must equal the file
(a key the models do not know, or a value of the wrong type, does not survive the round trip); its trial
spec, which Katib keeps as a raw object, the same way through the Kubernetes client's ``V1Job``.
kfp: the pipeline loads with kfp's own loader, and its platform spec parses strictly (unknown fields are
errors) into kfp-kubernetes' ``KubernetesExecutorConfig`` for every executor.
Prints one JSON object: ``{"problems": [...]}``; exits 1 when there are any.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml


class _Response:
    """What ``ApiClient.deserialize`` reads: the body as ``.data``."""

    def __init__(self, obj: Any) -> None:
        self.data = json.dumps(obj)


def _prune(obj: Any) -> Any:
    """Drop None values, the way the models serialise (and the YAML omits them)."""
    if isinstance(obj, dict):
        return {k: _prune(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list):
        return [_prune(v) for v in obj]
    return obj


def _diff(a: Any, b: Any, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            if k not in b:
                out.append(f"{path}.{k}: not a field of the model (dropped by the round trip)")
            elif k not in a:
                out.append(f"{path}.{k}: added by the model")
            else:
                out += _diff(a[k], b[k], f"{path}.{k}")
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [p for i, (x, y) in enumerate(zip(a, b, strict=True)) for p in _diff(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path}: {a!r} became {b!r}"]


def check_katib(doc: dict[str, Any]) -> list[str]:
    """Round-trip problems of an Experiment through the kubeflow-katib and Kubernetes models."""
    from kubeflow.katib.api_client import ApiClient as KatibClient
    from kubernetes.client import ApiClient as KubeClient

    katib = KatibClient()
    experiment = katib.deserialize(_Response(doc), "V1beta1Experiment")
    problems = _diff(doc, _prune(katib.sanitize_for_serialization(experiment)), "Experiment")
    trial = doc["spec"]["trialTemplate"]["trialSpec"]
    kube = KubeClient()
    job = kube.deserialize(_Response(trial), "V1Job")
    problems += _diff(trial, _prune(kube.sanitize_for_serialization(job)), "trialSpec")
    return problems


def check_kfp(path: Path) -> list[str]:
    """Problems loading a compiled pipeline and parsing its Kubernetes platform spec."""
    from google.protobuf import json_format
    from kfp import components
    from kfp.kubernetes import kubernetes_executor_config_pb2 as pb

    problems = []
    try:
        components.load_component_from_file(str(path))
    except Exception as e:  # kfp raises several types for a bad spec
        problems.append(f"kfp cannot load the pipeline: {e}")
    docs = list(yaml.safe_load_all(path.read_text()))
    executors = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"] if len(docs) > 1 else {}
    if not executors:
        problems.append("no Kubernetes platform spec")
    for name, config in executors.items():
        try:
            json_format.ParseDict(config, pb.KubernetesExecutorConfig(), ignore_unknown_fields=False)
        except json_format.ParseError as e:
            problems.append(f"{name}: {e}")
    return problems


def main() -> int:
    """Entry point."""
    kind, file = sys.argv[1], Path(sys.argv[2])
    problems = check_katib(yaml.safe_load(file.read_text())) if kind == "katib" else check_kfp(file)
    print(json.dumps({"problems": problems}))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
