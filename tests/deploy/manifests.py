"""The rendered files under deploy/ and the ``rag`` command lines in them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.deploy.conftest import ROOT

DEPLOY = ROOT / "deploy"
WORKFLOW_TEMPLATE = DEPLOY / "argo" / "workflowtemplate.yaml"
CRON_WORKFLOW = DEPLOY / "argo" / "cronworkflow.yaml"
PIPELINE = DEPLOY / "kubeflow" / "pipeline.yaml"
EXPERIMENT = DEPLOY / "katib" / "experiment.yaml"
RENDERED = (WORKFLOW_TEMPLATE, CRON_WORKFLOW, PIPELINE, EXPERIMENT)


def load(path: Path) -> Any:
    """The one YAML document of a file."""
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def load_all(path: Path) -> list[Any]:
    """Every YAML document of a file (the compiled pipeline has two: the spec and its platform spec)."""
    return list(yaml.safe_load_all(path.read_text(encoding="utf-8")))


def _argv(container: dict[str, Any]) -> list[str]:
    return [str(a) for a in [*container.get("command", []), *container.get("args", [])]]


def command_lines() -> list[tuple[str, list[str]]]:
    """(where, argv) of every container in the rendered files."""
    lines = []
    for t in load(WORKFLOW_TEMPLATE)["spec"]["templates"]:
        if "container" in t:
            lines.append((f"argo template {t['name']}", _argv(t["container"])))
    for name, executor in load_all(PIPELINE)[0]["deploymentSpec"]["executors"].items():
        lines.append((f"kfp executor {name}", _argv(executor["container"])))
    pod = load(EXPERIMENT)["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]
    for container in pod["containers"]:
        lines.append((f"katib trial container {container['name']}", _argv(container)))
    return lines
