"""The compiled Kubeflow pipeline loads with kfp, parses strictly, and runs ingest shards, eval and gate in order."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rag.config import Settings
from tests.deploy.conftest import DEPLOY_PYTHON, clean_env, needs_deploy_venv, run
from tests.deploy.manifests import PIPELINE, load_all


def spec() -> dict[str, Any]:
    return load_all(PIPELINE)[0]


def executors() -> dict[str, Any]:
    return load_all(PIPELINE)[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


@needs_deploy_venv
def test_pipeline_loads_with_kfp_and_its_platform_spec_parses_strictly(tmp_path: Path):
    r = run([str(DEPLOY_PYTHON), "-m", "tests.deploy.sdk_check", "kfp", str(PIPELINE)], clean_env(tmp_path))
    assert json.loads(r.stdout) == {"problems": []}, r.stderr
    assert r.returncode == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text(PIPELINE.read_text().replace("emptyDirMounts:", "emptyDirMount:"))
    r = run([str(DEPLOY_PYTHON), "-m", "tests.deploy.sdk_check", "kfp", str(bad)], clean_env(tmp_path))
    assert r.returncode == 1 and "emptyDirMount" in r.stdout


def test_shards_fan_out_then_eval_then_gate():
    s = spec()
    assert s["sdkVersion"].startswith("kfp-2.")
    root = s["root"]["dag"]["tasks"]
    assert root["eval-run"]["dependentTasks"] == ["condition-branches-1"]
    assert root["eval-gate"]["dependentTasks"] == ["eval-run"]
    params = s["root"]["inputDefinitions"]["parameters"]
    assert params["shards"]["defaultValue"] == ["0/4", "1/4", "2/4", "3/4"]
    # Both branches (NAS PVC or S3) loop over the shard specs and run one ingest per item.
    for_loops = [name for name in s["components"] if name.startswith("comp-for-loop")]
    assert len(for_loops) == 2
    for name in for_loops:
        (task,) = s["components"][name]["dag"]["tasks"].values()
        assert task["inputs"]["parameters"]["shard"]["componentInputParameter"].endswith("loop-item")
    gate = s["deploymentSpec"]["executors"]["exec-eval-gate"]["container"]["command"]
    assert gate[:3] == ["rag", "eval", "report"] and gate[gate.index("--min") + 1] == "{{$.inputs.parameters['gate']}}"


def test_no_task_is_cached_so_a_rerun_ingests_what_changed():
    tasks = [t for c in spec()["components"].values() for t in c.get("dag", {}).get("tasks", {}).values()]
    tasks += list(spec()["root"]["dag"]["tasks"].values())
    containers = [t for t in tasks if t["componentRef"]["name"].startswith(("comp-ingest", "comp-eval"))]
    assert len(containers) == 4
    assert all(not t.get("cachingOptions", {}).get("enableCache") for t in containers)


def test_settings_come_from_the_chart_configmap_and_an_optional_secret_key_by_key():
    keys = {f"RAG_{name.upper()}" for name in ("data_dir", "log_level")}
    for section in ("store", "embed", "chat", "retrieval", "ingest"):
        model = type(getattr(Settings(), section))
        keys |= {f"RAG_{section.upper()}__{f.upper()}" for f in model.model_fields}
    for name, executor in executors().items():
        (cm,) = executor["configMapAsEnv"]
        (secret,) = executor["secretAsEnv"]
        plain = {k["configMapKey"] for k in cm["keyToEnv"]}
        hidden = {k["secretKey"] for k in secret["keyToEnv"]}
        assert plain | hidden == keys and not plain & hidden, name
        assert {"RAG_STORE__API_KEY", "RAG_INGEST__S3_SECRET_ACCESS_KEY"} <= hidden
        assert all(k["configMapKey"] == k["envVar"] for k in cm["keyToEnv"])
        assert executor["securityContext"]["runAsNonRoot"] is True


def test_ingest_mounts_the_shared_state_volume_and_the_documents_only_on_the_pvc_branch():
    ex = executors()
    mounts = {name: [m["mountPath"] for m in e.get("pvcMount", [])] for name, e in ex.items()}
    assert sorted(mounts["exec-ingest-shard"]) == ["/data/docs", "/var/lib/rag"]
    assert mounts["exec-ingest-shard-2"] == ["/var/lib/rag"]
    assert mounts["exec-eval-run"] == mounts["exec-eval-gate"] == ["/runs"]
    assert ex["exec-eval-run"]["configMapAsVolume"][0]["mountPath"] == "/cases"
