"""The Katib Experiment: valid for the kubeflow-katib models, a search space rag.config accepts, and a trial
that, run the way Katib runs it, prints the metric lines its objective and StdOut collector expect."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from eval.runner import parse_variant
from rag.config import IngestSettings, RetrievalSettings, Settings
from rag.registry import make_reranker
from rag.rerank import HttpReranker
from tests.deploy.conftest import DEPLOY_PYTHON, ROOT, clean_env, needs_deploy_venv, run
from tests.deploy.manifests import EXPERIMENT, WORKFLOW_TEMPLATE, load
from tests.fakes._serve import ServerThread
from tests.fakes.rerank_server import FakeRerankServer

# Katib v1beta1's enumerations (pkg/apis/controller/...: ObjectiveType, ParameterType, CollectorKind) and
# the suggestion algorithms of its default configuration.
OBJECTIVE_TYPES = {"minimize", "maximize"}
PARAMETER_TYPES = {"int", "double", "categorical", "discrete"}
COLLECTOR_KINDS = {"StdOut", "File", "TensorFlowEvent", "PrometheusMetric", "Custom", "None"}
ALGORITHMS = {"random", "grid", "hyperband", "bayesianoptimization", "tpe", "multivariate-tpe", "cmaes", "sobol"}
# Katib's default StdOut filter (pkg/metricscollector/v1beta1/common: DefaultFilter).
KATIB_DEFAULT_FILTER = r"([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)"
BEIR_TINY = ROOT / "tests/eval/data/beir_tiny"


def spec() -> dict[str, Any]:
    return load(EXPERIMENT)["spec"]


def trial_container() -> dict[str, Any]:
    template = spec()["trialTemplate"]
    (container,) = template["trialSpec"]["spec"]["template"]["spec"]["containers"]
    assert container["name"] == template["primaryContainerName"]
    return container


def assign(obj: Any, values: dict[str, str]) -> Any:
    """What Katib's trial controller does: replace ``${trialParameters.NAME}`` throughout the trial spec."""
    text = json.dumps(obj)
    for name, value in values.items():
        text = text.replace(f"${{trialParameters.{name}}}", value)
    assert "${trialParameters." not in text, "a trial parameter was left unassigned"
    return json.loads(text)


def expand(env: list[dict[str, str]]) -> dict[str, str]:
    """Kubernetes' ``$(VAR)`` expansion of env values: a reference to an earlier variable is replaced."""
    out: dict[str, str] = {}
    for item in env:
        out[item["name"]] = re.sub(r"\$\(([\w.-]+)\)", lambda m: out.get(m.group(1), m.group(0)), item["value"])
    return out


@needs_deploy_venv
def test_experiment_round_trips_through_the_kubeflow_katib_and_kubernetes_models(tmp_path: Path):
    r = run([str(DEPLOY_PYTHON), "-m", "tests.deploy.sdk_check", "katib", str(EXPERIMENT)], clean_env(tmp_path))
    assert json.loads(r.stdout) == {"problems": []}, r.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text(EXPERIMENT.read_text().replace("primaryContainerName:", "primaryContainer:"))
    r = run([str(DEPLOY_PYTHON), "-m", "tests.deploy.sdk_check", "katib", str(bad)], clean_env(tmp_path))
    assert r.returncode == 1 and "primaryContainer: not a field of the model" in r.stdout


def test_objective_algorithm_and_collector_are_ones_katib_knows():
    s = spec()
    assert load(EXPERIMENT)["apiVersion"] == "kubeflow.org/v1beta1"
    assert s["objective"]["type"] in OBJECTIVE_TYPES
    assert s["algorithm"]["algorithmName"] in ALGORITHMS
    assert s["metricsCollectorSpec"]["collector"]["kind"] == "StdOut" in COLLECTOR_KINDS
    assert s["metricsCollectorSpec"]["source"]["filter"]["metricsFormat"] == [KATIB_DEFAULT_FILTER]
    assert all(p["parameterType"] in PARAMETER_TYPES for p in s["parameters"])
    assert s["parallelTrialCount"] <= s["maxTrialCount"]


def test_every_trial_parameter_is_declared_and_refers_to_a_search_parameter():
    template = spec()["trialTemplate"]
    declared = {t["name"]: t["reference"] for t in template["trialParameters"]}
    used = set(re.findall(r"\$\{trialParameters\.(\w+)\}", json.dumps(template["trialSpec"])))
    assert used == set(declared)
    assert set(declared.values()) == {p["name"] for p in spec()["parameters"]}


def _bounds() -> list[tuple[str, dict[str, Any]]]:
    """(setting path, one assignment per end of its feasible range) for every numeric parameter."""
    template = spec()["trialTemplate"]
    what = {t["reference"]: t["description"].removeprefix("sets ") for t in template["trialParameters"]}
    out = []
    for p in spec()["parameters"]:
        if p["parameterType"] in ("int", "double"):
            cast = int if p["parameterType"] == "int" else float
            for end in ("min", "max"):
                out.append((what[p["name"]], {"value": cast(p["feasibleSpace"][end]), "name": p["name"]}))
    return out


def test_search_space_lies_within_the_settings_bounds():
    models = {"ingest": IngestSettings, "retrieval": RetrievalSettings}
    checked = set()
    for path, end in _bounds():
        section, field = path.split(".")
        models[section].model_validate({field: end["value"]})  # raises when out of bounds
        checked.add(path)
    assert checked == {
        "ingest.chunk_size",
        "retrieval.candidates",
        "retrieval.dense_weight",
        "retrieval.lexical_weight",
        "retrieval.rrf_k",
    }


def _values(which: str, rerank: str) -> dict[str, str]:
    """An assignment of every trial parameter: each numeric one at the ``which`` end of its range."""
    refs = {t["reference"]: t["name"] for t in spec()["trialTemplate"]["trialParameters"]}
    values = {}
    for p in spec()["parameters"]:
        values[refs[p["name"]]] = p["feasibleSpace"][which] if "list" not in p["feasibleSpace"] else rerank
    return values


@pytest.mark.parametrize("which", ["min", "max"])
def test_the_trial_setting_parses_as_an_eval_retrieval_target_and_rerank_switches_the_reranker(which: str):
    for rerank, expect in (("off", None), ("on", HttpReranker)):
        container = assign(trial_container(), _values(which, rerank))
        target = container["command"][container["command"].index("-t") + 1]
        assert parse_variant(target)["k"] == 10
        env = expand(container["env"])
        reranker = make_reranker(Settings(retrieval={"rerank_url": env["RAG_RETRIEVAL__RERANK_URL"]}))
        assert reranker is None if expect is None else isinstance(reranker, expect)
        assert env["RAG_RETRIEVAL__K"] == "10" and env["RAG_STORE__URL"] == "memory://"


@pytest.mark.slow
def test_trial_run_as_katib_runs_it_prints_the_objective_and_every_additional_metric(tmp_path: Path):
    # The pod's volumes, here: /eval holds the BEIR set, /tmp is scratch.
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "beir").symlink_to(BEIR_TINY)
    (tmp_path / "tmp").mkdir()
    container = assign(trial_container(), _values("min", "on"))
    reranker = FakeRerankServer()
    with ServerThread(reranker.app) as thread:
        env_items = [
            {**e, "value": f"{thread.root}/rerank"} if e["name"] == "RERANK_URL_on" else e for e in container["env"]
        ]
        env = {k: _local(v, tmp_path) for k, v in expand(env_items).items()}
        # Katib's webhook wraps the command in `sh -c`, joined by spaces, output into the collector's file.
        log, pid = tmp_path / "metrics.log", tmp_path / "1.pid"
        joined = " ".join(_local(a, tmp_path) for a in container["command"])
        script = f"{joined} 1>{log} 2>&1 && echo completed > {pid}"
        path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
        r = run(["sh", "-c", script], clean_env(tmp_path / "tmp", PATH=path, **env), timeout_s=600)
        output = log.read_text()
        assert r.returncode == 0, output[-3000:]
        assert pid.read_text().strip() == "completed"
        assert reranker.requests, "rerank=on did not reach the reranker"
    # Katib's collector: every NAME=VALUE match of the filter on every line, kept for the objective's names.
    pattern = re.compile(spec()["metricsCollectorSpec"]["source"]["filter"]["metricsFormat"][0])
    found: dict[str, float] = {}
    for line in output.splitlines():
        for match in pattern.finditer(line):
            if match.group(2) not in ("", "+", "-"):
                found[match.group(1)] = float(match.group(2))
    objective = spec()["objective"]
    wanted = [objective["objectiveMetricName"], *objective["additionalMetricNames"]]
    assert set(wanted) <= set(found), f"missing {set(wanted) - set(found)} in:\n{output[-2000:]}"
    assert 0 < found[objective["objectiveMetricName"]] <= 1
    assert 0 <= found["mrr_at_10"] <= 1 and found["total_ms_p95"] > 0

    # The same run folder through the Argo gate's command line: a gate it misses fails with exit code 4.
    gate = next(t for t in load(WORKFLOW_TEMPLATE)["spec"]["templates"] if t["name"] == "eval-gate")
    command = gate["container"]["command"]
    run_dir = str(tmp_path / "tmp" / "run")
    for threshold, code in (("ndcg@10=0.01", 0), ("ndcg@10=1.01", 4)):
        substitute = {"/runs/{{workflow.name}}": run_dir, "{{workflow.parameters.gate}}": threshold}
        argv = [substitute.get(a, a) for a in command]
        r = run([sys.executable, "-m", "onprem_rag", *argv[1:]], clean_env(tmp_path / "tmp"))
        assert r.returncode == code, r.stderr
        if code:
            assert "gate failed" in r.stderr


def _local(value: str, root: Path) -> str:
    """A pod path under /eval or /tmp mapped into the test's folders."""
    return re.sub(r"(?<![\w/])/(eval|tmp)(?=/|$)", lambda m: f"{root}/{m.group(1)}", value)
