"""Optional logging of a run's summary to MLflow and TensorBoard (the ``eval-tracking`` extra).

Both packages are imported only when asked for (``--mlflow URI`` / ``--tensorboard DIR``); a missing one is
a :class:`MissingExtra` naming the extra. What is logged, per target:

* the values the gates and Katib see (metric means, latency percentiles, cost per item, error rate), under
  Katib-safe names (``hit_at_5``, ``ttft_ms_p95``);
* the per-language and per-tag breakdowns as ``lang_ko/f1``, ``tag_domain_law/hit_at_5``;
* MLflow: one MLflow run per target (named ``<run>/<target>``) with the run's settings as parameters and
  ``summary.json`` and the reports as artifacts; TensorBoard: one event folder per target
  (``DIR/<run>/t<i>``) with scalars at step 0 and the target URL as text.

MLflow 3 refuses a plain-file store unless ``MLFLOW_ALLOW_FILE_STORE`` is set; for a ``file:`` URI (or a
plain path) it is set here, since a local folder is the natural store for a laptop or CI run.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from eval.report import SUMMARY_FILE, GroupSummary, Summary, TargetSummary, gate_values, katib_name
from rag.config import set_library_environment
from rag.errors import MissingExtra

EXTRA = "eval-tracking"
REPORT_FILES = ("summary.json", "report.md", "report.html", "config.json")


def _slug(text: str) -> str:
    return re.sub(r"[^\w.-]+", "_", text).strip("_") or "x"


def _group_values(prefix: str, groups: dict[str, GroupSummary]) -> dict[str, float]:
    out: dict[str, float] = {}
    for label, group in groups.items():
        for name, stat in group.metrics.items():
            out[f"{prefix}_{_slug(label)}/{katib_name(name)}"] = stat.mean
    return out


def target_values(t: TargetSummary) -> dict[str, float]:
    """Every scalar logged for one target."""
    values = {katib_name(name): value for name, value in gate_values(t).items()}
    values["items"] = float(t.items)
    values["errors"] = float(t.errors)
    if t.score_ms is not None:
        values["score_ms_mean"] = t.score_ms.mean
    values.update(_group_values("lang", t.by_lang))
    values.update(_group_values("tag", t.by_tag))
    return values


def run_params(summary: Summary, t: TargetSummary) -> dict[str, str]:
    """MLflow parameters of one target's run."""
    return {
        "target": t.target,
        "mode": summary.mode,
        "dataset": summary.dataset.label[:250],
        "dataset_sha256": summary.dataset.sha256,
        "cases": str(summary.dataset.cases),
        "k": str(summary.k),
        "judge": summary.judge or "none",
        "baseline": summary.baseline,
    }


def log_mlflow(uri: str, summary: Summary, folder: Path, experiment: str = "rag-eval") -> list[str]:
    """Log each target as one MLflow run under ``experiment``; returns the MLflow run ids."""
    if uri.startswith("file:") or "://" not in uri:
        set_library_environment(MLFLOW_ALLOW_FILE_STORE="true")
    try:
        from mlflow.tracking import MlflowClient
    except ImportError as e:
        raise MissingExtra("mlflow", EXTRA) from e
    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found is not None else client.create_experiment(experiment)
    ids: list[str] = []
    now = int(time.time() * 1000)
    for t in summary.targets:
        run = client.create_run(experiment_id, run_name=f"{summary.run}/{t.target}"[:250], tags={"rag.eval": "1"})
        run_id = run.info.run_id
        from mlflow.entities import Metric, Param

        params = [Param(k, v) for k, v in run_params(summary, t).items()]
        metrics = [Metric(k, float(v), now, 0) for k, v in target_values(t).items()]
        client.log_batch(run_id, metrics=metrics, params=params)
        for name in REPORT_FILES:
            if (folder / name).is_file():
                client.log_artifact(run_id, str(folder / name))
        client.set_terminated(run_id)
        ids.append(run_id)
    return ids


def log_tensorboard(logdir: Path, summary: Summary) -> list[Path]:
    """Write one TensorBoard event folder per target (``logdir/<run>/t<i>``); returns the folders."""
    try:
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.compat.proto.summary_pb2 import Summary as TbSummary
        from tensorboard.summary.writer.event_file_writer import EventFileWriter
    except ImportError as e:
        raise MissingExtra("tensorboard", EXTRA) from e
    from tensorboard.plugins.text.summary_v2 import text_pb

    folders: list[Path] = []
    for i, t in enumerate(summary.targets, 1):
        folder = Path(logdir) / _slug(summary.run) / f"t{i}"
        folder.mkdir(parents=True, exist_ok=True)
        writer = EventFileWriter(str(folder))
        wall = time.time()
        values = [TbSummary.Value(tag=k, simple_value=float(v)) for k, v in target_values(t).items()]
        writer.add_event(Event(wall_time=wall, step=0, summary=TbSummary(value=values)))
        writer.add_event(Event(wall_time=wall, step=0, summary=text_pb("target", t.target)))
        writer.close()
        folders.append(folder)
    return folders


def log_summary(
    summary: Summary,
    folder: Path,
    mlflow_uri: str | None = None,
    tensorboard_dir: Path | None = None,
    experiment: str = "rag-eval",
) -> dict[str, Any]:
    """Log to whichever trackers are given; returns what was written (MLflow run ids, TensorBoard folders)."""
    out: dict[str, Any] = {}
    if not (folder / SUMMARY_FILE).is_file():  # artifacts are read from the folder
        from eval.report import write_summary

        write_summary(folder, summary)
    if mlflow_uri:
        out["mlflow"] = log_mlflow(mlflow_uri, summary, folder, experiment)
    if tensorboard_dir is not None:
        out["tensorboard"] = log_tensorboard(tensorboard_dir, summary)
    return out
