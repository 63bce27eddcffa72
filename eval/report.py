"""From a run folder's items to ``summary.json``, ``report.md`` and ``report.html`` (plots beside them).

Per target and metric: the mean with a percentile bootstrap interval; per metric, each target against the
first (the baseline) with a paired permutation test on the cases both answered. Items are ordered by case
and target before anything is computed, and every resampling is seeded, so a resumed run reports exactly
what an uninterrupted one does. Gates (``--min f1=0.6``, ``--max total_ms_p95=2000``) and Katib's
``name=value`` lines read the same per-target values.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from eval.runner import CONFIG_FILE, ITEMS_FILE, DatasetInfo, ItemLog, ItemRecord, RunConfig, load_config
from eval.scoring import quality_metric_names
from eval.stats import bootstrap_ci, paired_compare
from rag.errors import InvalidRequest

SUMMARY_FILE = "summary.json"
CONFIDENCE = 0.95
ALPHA = 0.05
BOOTSTRAP_RESAMPLES = 2000
PERMUTATION_RESAMPLES = 5000


class MetricStat(BaseModel):
    """A metric's mean over the cases it applies to, with its bootstrap interval."""

    mean: float
    low: float
    high: float
    n: int


class Distribution(BaseModel):
    """Summary of a latency distribution, milliseconds."""

    mean: float
    p50: float
    p90: float
    p95: float
    max: float
    n: int


class PairStat(BaseModel):
    """A target against the baseline on one metric; positive ``diff`` means the target scores higher."""

    metric: str
    n: int
    wins: int
    ties: int
    losses: int
    diff: float
    low: float
    high: float
    p_value: float
    wilcoxon_p: float
    significant: bool


class GroupSummary(BaseModel):
    """One target's metrics on the cases of one tag or one language."""

    items: int
    errors: int
    metrics: dict[str, MetricStat] = Field(default_factory=dict)


class TargetSummary(BaseModel):
    """Everything measured for one target."""

    target: str
    items: int
    errors: int
    metrics: dict[str, MetricStat] = Field(default_factory=dict)
    ttft_ms: Distribution | None = None
    total_ms: Distribution | None = None
    retrieval_ms: Distribution | None = None
    score_ms: Distribution | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_total: float | None = None
    cost_per_item: float | None = None
    # Breakdowns: the same metrics on the cases of each tag (``domain:law``) and each language (``ko``).
    by_tag: dict[str, GroupSummary] = Field(default_factory=dict)
    by_lang: dict[str, GroupSummary] = Field(default_factory=dict)


class Summary(BaseModel):
    """``summary.json``."""

    run: str
    mode: str
    dataset: DatasetInfo
    k: int
    judge: str | None
    judge_prompt_version: str | None
    currency: str
    confidence: float = CONFIDENCE
    expected_items: int
    complete: bool
    baseline: str
    targets: list[TargetSummary]
    comparisons: dict[str, list[PairStat]] = Field(default_factory=dict)

    def target(self, name: str) -> TargetSummary:
        """The summary of one target."""
        for t in self.targets:
            if t.target == name:
                return t
        raise InvalidRequest(f"no target {name!r} in run {self.run}")


def _distribution(values: Sequence[float]) -> Distribution | None:
    if not values:
        return None
    a = np.asarray(values, dtype=np.float64)
    p50, p90, p95 = (float(x) for x in np.percentile(a, [50, 90, 95]))
    return Distribution(mean=float(a.mean()), p50=p50, p90=p90, p95=p95, max=float(a.max()), n=int(a.size))


def ordered_items(config: RunConfig, records: Sequence[ItemRecord]) -> dict[str, dict[str, ItemRecord]]:
    """Items by target then case id, targets in run order; a duplicate keeps the first record."""
    out: dict[str, dict[str, ItemRecord]] = {t: {} for t in config.targets}
    for r in records:
        if r.target in out:
            out[r.target].setdefault(r.case_id, r)
    return {t: dict(sorted(items.items())) for t, items in out.items()}


def metric_names(k: int, by_target: dict[str, dict[str, ItemRecord]]) -> list[str]:
    """Metrics present in any item, the known ones in report order first."""
    present = {m for items in by_target.values() for r in items.values() for m in r.metrics}
    known = [m for m in quality_metric_names(k) if m in present]
    return known + sorted(present - set(known))


def _metric_stats(config: RunConfig, ok: Sequence[ItemRecord], names: Sequence[str]) -> dict[str, MetricStat]:
    metrics: dict[str, MetricStat] = {}
    for name in names:
        values = [r.metrics[name] for r in ok if name in r.metrics]
        if values:
            ci = bootstrap_ci(values, n_resamples=BOOTSTRAP_RESAMPLES, confidence=CONFIDENCE, seed=config.seed)
            metrics[name] = MetricStat(mean=ci.mean, low=ci.low, high=ci.high, n=ci.n)
    return metrics


def _groups(config: RunConfig, items: Sequence[ItemRecord], names: Sequence[str], key: str) -> dict[str, GroupSummary]:
    """Per-tag (``key="tags"``) or per-language (``key="lang"``) summaries, groups sorted by name."""
    members: dict[str, list[ItemRecord]] = {}
    for r in items:
        labels = r.tags if key == "tags" else ([r.lang] if r.lang else [])
        for label in labels:
            members.setdefault(label, []).append(r)
    out: dict[str, GroupSummary] = {}
    for label in sorted(members):
        group = members[label]
        ok = [r for r in group if r.error is None]
        stats = _metric_stats(config, ok, names)
        out[label] = GroupSummary(items=len(group), errors=len(group) - len(ok), metrics=stats)
    return out


def _target_summary(config: RunConfig, target: str, items: dict[str, ItemRecord], names: list[str]) -> TargetSummary:
    ok = [r for r in items.values() if r.error is None]
    metrics = _metric_stats(config, ok, names)
    costs = [r.cost for r in ok]
    known_cost = bool(ok) and all(c is not None for c in costs)
    cost_total = float(sum(c for c in costs if c is not None)) if known_cost else None
    return TargetSummary(
        target=target,
        items=len(items),
        errors=len(items) - len(ok),
        metrics=metrics,
        ttft_ms=_distribution([r.ttft_ms for r in ok if r.ttft_ms is not None]),
        total_ms=_distribution([r.total_ms for r in ok if r.total_ms is not None]),
        retrieval_ms=_distribution([r.retrieval_ms for r in ok]),
        score_ms=_distribution([r.score_ms for r in ok if r.score_ms > 0]),
        prompt_tokens=sum(r.prompt_tokens for r in ok),
        completion_tokens=sum(r.completion_tokens for r in ok),
        cost_total=cost_total,
        cost_per_item=cost_total / len(ok) if cost_total is not None else None,
        by_tag=_groups(config, list(items.values()), names, "tags"),
        by_lang=_groups(config, list(items.values()), names, "lang"),
    )


def pair_stats(
    base: dict[str, ItemRecord], other: dict[str, ItemRecord], names: Sequence[str], seed: int = 0
) -> list[PairStat]:
    """Paired comparison of ``other`` against ``base`` per metric, on the cases both scored (by case id)."""
    out: list[PairStat] = []
    for name in names:
        ids = [
            i
            for i, r in base.items()
            if r.error is None
            and name in r.metrics
            and i in other
            and other[i].error is None
            and name in other[i].metrics
        ]
        if len(ids) < 2:  # a paired test needs two cases at least
            continue
        c = paired_compare(
            [base[i].metrics[name] for i in ids],
            [other[i].metrics[name] for i in ids],
            n_resamples=PERMUTATION_RESAMPLES,
            seed=seed,
            confidence=CONFIDENCE,
        )
        out.append(
            PairStat(
                metric=name,
                n=c.n,
                wins=c.wins,
                ties=c.ties,
                losses=c.losses,
                diff=c.mean_diff.mean,
                low=c.mean_diff.low,
                high=c.mean_diff.high,
                p_value=c.p_value,
                wilcoxon_p=c.wilcoxon_p,
                significant=c.p_value < ALPHA,
            )
        )
    return out


def summarize(folder: Path) -> Summary:
    """Compute the summary of a run folder from its config and items."""
    config = load_config(folder)
    by_target = ordered_items(config, ItemLog(folder / ITEMS_FILE).read())
    names = metric_names(config.k, by_target)
    targets = [_target_summary(config, t, items, names) for t, items in by_target.items()]
    baseline = config.targets[0]
    comparisons = {t: pair_stats(by_target[baseline], by_target[t], names, config.seed) for t in config.targets[1:]}
    expected = config.dataset.cases * len(config.targets)
    return Summary(
        run=config.name,
        mode=config.mode,
        dataset=config.dataset,
        k=config.k,
        judge=config.judge,
        judge_prompt_version=config.judge_prompt_version if config.judge else None,
        currency=config.prices.currency,
        expected_items=expected,
        complete=sum(t.items for t in targets) == expected,
        baseline=baseline,
        targets=targets,
        comparisons=comparisons,
    )


def load_summary(folder: Path) -> Summary:
    """The summary of a run: read ``summary.json`` if present, else computed."""
    path = folder / SUMMARY_FILE
    if path.is_file():
        return Summary.model_validate_json(path.read_text(encoding="utf-8"))
    if not (folder / CONFIG_FILE).is_file():
        raise InvalidRequest(f"{folder} is not a run folder (no {CONFIG_FILE})")
    return summarize(folder)


def write_summary(folder: Path, summary: Summary) -> Path:
    """Write ``summary.json`` atomically."""
    path = folder / SUMMARY_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(summary.model_dump_json(indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


# --- gates and Katib ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Threshold:
    """``metric=value`` from ``--min`` (at least) or ``--max`` (at most)."""

    metric: str
    value: float
    kind: str  # "min" or "max"


@dataclass(frozen=True)
class GateFailure:
    """A target that misses a threshold (``actual`` None: the metric was not measured for it)."""

    target: str
    threshold: Threshold
    actual: float | None


def parse_threshold(text: str, kind: str) -> Threshold:
    """``f1=0.6`` → Threshold."""
    name, sep, value = text.partition("=")
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not sep or not name.strip() or math.isnan(number):
        raise InvalidRequest(f"--{kind} {text!r}: expected METRIC=NUMBER, like f1=0.6")
    return Threshold(name.strip(), number, kind)


def gate_values(t: TargetSummary) -> dict[str, float]:
    """The values gates and Katib see for one target: metric means, latency percentiles, cost, error rate."""
    values = {name: stat.mean for name, stat in t.metrics.items()}
    for field_name in ("ttft_ms", "total_ms"):
        dist: Distribution | None = getattr(t, field_name)
        if dist is not None:
            values[f"{field_name}_p50"] = dist.p50
            values[f"{field_name}_p95"] = dist.p95
    if t.cost_per_item is not None:
        values["cost_per_item"] = t.cost_per_item
    values["error_rate"] = t.errors / t.items if t.items else 1.0
    return values


def check_gates(summary: Summary, thresholds: Sequence[Threshold]) -> list[GateFailure]:
    """Every (target, threshold) that fails; an unknown metric name is an error, not a pass."""
    known = {"ttft_ms_p50", "ttft_ms_p95", "total_ms_p50", "total_ms_p95", "cost_per_item", "error_rate"}
    known |= {*quality_metric_names(summary.k)}
    failures: list[GateFailure] = []
    for th in thresholds:
        if th.metric not in known:
            raise InvalidRequest(f"unknown metric {th.metric!r} in a gate; known: {', '.join(sorted(known))}")
        for t in summary.targets:
            actual = gate_values(t).get(th.metric)
            ok = actual is not None and (actual >= th.value if th.kind == "min" else actual <= th.value)
            if not ok:
                failures.append(GateFailure(t.target, th, actual))
    return failures


def katib_name(name: str) -> str:
    """A metric name Katib's default ``name=value`` collector accepts (letters, digits, ``_``, ``-``)."""
    return re.sub(r"[^\w-]", "_", name.replace("@", "_at_"))


def katib_lines(summary: Summary) -> list[str]:
    """``name=value`` lines; with several targets each name is prefixed by the target's position (t1_, t2_)."""
    lines: list[str] = []
    several = len(summary.targets) > 1
    for i, t in enumerate(summary.targets, 1):
        prefix = f"t{i}_" if several else ""
        for name, value in gate_values(t).items():
            lines.append(f"{prefix}{katib_name(name)}={value:.6g}")
    return lines
