"""The Argo WorkflowTemplate and CronWorkflow validate against Argo's JSON schema and wire up as intended."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import jsonschema
import pytest

from tests.deploy.conftest import ROOT
from tests.deploy.manifests import CRON_WORKFLOW, WORKFLOW_TEMPLATE, load

SCHEMA = json.loads((ROOT / "tests/deploy/schemas/argo-workflows.schema.json").read_text())


def strict(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with unknown keys refused wherever a definition lists its properties (like kubeconform -strict).

    Argo's schema leaves ``additionalProperties`` open, so a misspelt field would pass; maps
    (``additionalProperties`` given) and free-form objects keep their definition.
    """
    out = copy.deepcopy(schema)
    for definition in out["definitions"].values():
        if definition.get("type") == "object" and "properties" in definition:
            definition.setdefault("additionalProperties", False)
    return out


STRICT = strict(SCHEMA)


def validator(kind: str) -> jsonschema.protocols.Validator:
    ref = {"$ref": f"#/definitions/io.argoproj.workflow.v1alpha1.{kind}", "definitions": STRICT["definitions"]}
    return jsonschema.Draft202012Validator(ref)


@pytest.mark.parametrize(("path", "kind"), [(WORKFLOW_TEMPLATE, "WorkflowTemplate"), (CRON_WORKFLOW, "CronWorkflow")])
def test_object_validates_against_the_upstream_argo_schema(path, kind):
    obj = load(path)
    assert obj["kind"] == kind and obj["apiVersion"] == "argoproj.io/v1alpha1"
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator(kind).iter_errors(obj)]
    assert errors == []


def test_the_strict_schema_refuses_a_misspelt_field_and_a_wrong_type():
    obj = load(WORKFLOW_TEMPLATE)
    obj["spec"]["templates"][0]["container"]["comand"] = ["rag"]
    obj["spec"]["templates"][0]["retryStrategy"]["limit"] = ["2"]
    messages = [e.message for e in validator("WorkflowTemplate").iter_errors(obj)]
    assert any("'comand' was unexpected" in m for m in messages)
    assert any("is not of type 'string'" in m for m in messages)


def test_cron_workflow_uses_argo_4_schedules_and_submits_the_template():
    cron = load(CRON_WORKFLOW)["spec"]
    assert "schedule" not in cron and cron["schedules"] == ["0 2 * * *"]
    assert cron["concurrencyPolicy"] == "Forbid"
    assert cron["workflowSpec"]["workflowTemplateRef"]["name"] == load(WORKFLOW_TEMPLATE)["metadata"]["name"]


def _templates() -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in load(WORKFLOW_TEMPLATE)["spec"]["templates"]}


def test_every_parameter_used_is_declared():
    spec = load(WORKFLOW_TEMPLATE)["spec"]
    declared = {p["name"] for p in spec["arguments"]["parameters"]}
    text = json.dumps(spec)
    assert set(re.findall(r"\{\{workflow\.parameters\.([\w-]+)\}\}", text)) == declared
    for name, template in _templates().items():
        inputs = {p["name"] for p in template.get("inputs", {}).get("parameters", [])}
        assert set(re.findall(r"\{\{inputs\.parameters\.([\w-]+)\}\}", json.dumps(template))) <= inputs, name


def test_shards_fan_out_then_eval_then_a_gate_whose_failure_fails_the_workflow():
    templates = _templates()
    steps = templates[load(WORKFLOW_TEMPLATE)["spec"]["entrypoint"]]["steps"]
    ingest, run, gate = steps
    assert {s["template"] for s in ingest} == {"ingest-shard-nas", "ingest-shard-s3"}
    for s in ingest:
        assert s["withSequence"] == {"count": "{{workflow.parameters.shards}}"}
        assert s["arguments"]["parameters"] == [{"name": "index", "value": "{{item}}"}]
        command = templates[s["template"]]["container"]["command"]
        assert command[-2:] == ["--shard", "{{inputs.parameters.index}}/{{workflow.parameters.shards}}"]
    # NAS or S3: exactly one of the two runs, by whether a docs PVC is given.
    assert sorted(s["when"] for s in ingest) == [
        "'{{workflow.parameters.docs-pvc}}' != ''",
        "'{{workflow.parameters.docs-pvc}}' == ''",
    ]
    assert [s["template"] for s in run] == ["eval-run"] and [s["template"] for s in gate] == ["eval-gate"]
    # No step may continue past a failure: a failed gate (exit 3) fails the workflow.
    assert all("continueOn" not in s for group in steps for s in group)
    gate_command = templates["eval-gate"]["container"]["command"]
    assert gate_command[:3] == ["rag", "eval", "report"] and "--min" in gate_command
    out = templates["eval-run"]["container"]["command"]
    assert out[out.index("--out") + 1] == gate_command[3] == "/runs/{{workflow.name}}"


def test_each_shard_has_its_own_state_volume_and_the_documents_are_read_only():
    templates = _templates()
    for name in ("ingest-shard-nas", "ingest-shard-s3"):
        volumes = {v["name"]: v for v in templates[name]["volumes"]}
        claim = volumes["state"]["persistentVolumeClaim"]["claimName"]
        assert claim == "{{workflow.parameters.state-pvc-prefix}}-{{inputs.parameters.index}}"
        mounts = {m["name"]: m for m in templates[name]["container"]["volumeMounts"]}
        assert mounts["state"]["mountPath"] == "/var/lib/rag"
    nas = templates["ingest-shard-nas"]
    assert {m["name"]: m for m in nas["container"]["volumeMounts"]}["docs"]["readOnly"] is True
    assert "docs" not in {v["name"] for v in templates["ingest-shard-s3"]["volumes"]}
