"""Markdown and HTML reports of a summary, with PNG plots beside them (embedded in the HTML).

Plots: per-metric bars with their confidence intervals, per-target latency distributions, and cost per
question against a quality metric. matplotlib (the ``eval`` extra) draws them off-screen (Agg).
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eval.report import Summary, TargetSummary
from eval.runner import ITEMS_FILE, ItemLog, load_config
from rag.errors import MissingExtra

PLOT_FILES = {"metrics": "metrics.png", "latency": "latency.png", "cost": "cost_quality.png"}
QUALITY_PREFERENCE = ("f1", "similarity", "faithfulness", "rouge_l", "em")


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as e:
        raise MissingExtra("matplotlib", "eval") from e
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def short_label(target: str, width: int = 40) -> str:
    """A target URL shortened for plot legends and table columns."""
    return target if len(target) <= width else target[: width - 1] + "…"


def headline_metric(summary: Summary) -> str | None:
    """The quality metric for cost-vs-quality: F1 if measured, else the first available."""
    measured = [m for t in summary.targets for m in t.metrics]
    for name in QUALITY_PREFERENCE:
        if name in measured:
            return name
    return measured[0] if measured else None


def _metrics_plot(plt: Any, summary: Summary, path: Path) -> None:
    names = list(dict.fromkeys(m for t in summary.targets for m in t.metrics))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(names) * max(1, len(summary.targets)) ** 0.5 + 2), 4.2))
    width = 0.8 / max(1, len(summary.targets))
    for i, t in enumerate(summary.targets):
        xs = [j + (i - (len(summary.targets) - 1) / 2) * width for j in range(len(names))]
        stats = [t.metrics.get(n) for n in names]
        means = [s.mean if s else 0.0 for s in stats]
        err_low = [s.mean - s.low if s else 0.0 for s in stats]
        err_high = [s.high - s.mean if s else 0.0 for s in stats]
        ax.bar(xs, means, width, yerr=[err_low, err_high], capsize=3, label=short_label(t.target))
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=35, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(f"mean ({int(summary.confidence * 100)}% bootstrap CI)")
    ax.set_title("Quality by metric")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def _latency_plot(
    plt: Any, summary: Summary, latencies: dict[str, tuple[list[float], list[float]]], path: Path
) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    labels = [short_label(t.target, 25) for t in summary.targets]
    for ax, idx, title in ((axes[0], 0, "time to first token"), (axes[1], 1, "total generation time")):
        data = [latencies.get(t.target, ([], []))[idx] or [0.0] for t in summary.targets]
        ax.boxplot(data, showfliers=True)
        ax.set_xticks(range(1, len(labels) + 1))
        ax.set_xticklabels(labels, rotation=20, ha="right", fontsize=8)
        ax.set_ylabel("ms")
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _cost_plot(plt: Any, summary: Summary, metric: str | None, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for t in summary.targets:
        stat = t.metrics.get(metric) if metric else None
        if stat is None:
            continue
        x = t.cost_per_item if t.cost_per_item is not None else 0.0
        ax.errorbar([x], [stat.mean], yerr=[[stat.mean - stat.low], [stat.high - stat.mean]], fmt="o", capsize=4)
        note = "" if t.cost_per_item is not None else " (no price)"
        ax.annotate(
            short_label(t.target, 30) + note, (x, stat.mean), fontsize=8, xytext=(5, 5), textcoords="offset points"
        )
    ax.set_xlabel(f"cost per question ({summary.currency})")
    ax.set_ylabel(metric or "quality")
    ax.set_title("Cost vs quality")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def draw_plots(folder: Path, summary: Summary) -> dict[str, Path]:
    """Draw every plot into the run folder; returns their paths by kind."""
    plt = _pyplot()
    config = load_config(folder)
    latencies: dict[str, tuple[list[float], list[float]]] = {t: ([], []) for t in config.targets}
    for r in ItemLog(folder / ITEMS_FILE).read():
        if r.error is None and r.target in latencies:
            if r.ttft_ms is not None:
                latencies[r.target][0].append(r.ttft_ms)
            if r.total_ms is not None:
                latencies[r.target][1].append(r.total_ms)
    paths = {kind: folder / name for kind, name in PLOT_FILES.items()}
    _metrics_plot(plt, summary, paths["metrics"])
    _latency_plot(plt, summary, latencies, paths["latency"])
    _cost_plot(plt, summary, headline_metric(summary), paths["cost"])
    return paths


# --- tables ------------------------------------------------------------------------------------------------


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def metric_rows(summary: Summary) -> tuple[list[str], list[list[str]]]:
    """Header and rows: one row per metric, one column per target (``mean [low, high]``)."""
    names = list(dict.fromkeys(m for t in summary.targets for m in t.metrics))
    header = ["metric", *(short_label(t.target) for t in summary.targets)]
    rows = []
    for name in names:
        row = [name]
        for t in summary.targets:
            s = t.metrics.get(name)
            row.append(f"{s.mean:.3f} [{s.low:.3f}, {s.high:.3f}] (n={s.n})" if s else "–")
        rows.append(row)
    return header, rows


BREAKDOWN_METRICS = ("f1", "rouge_l", "similarity", "refusal", "faithfulness", "relevance")


def breakdown_rows(summary: Summary) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the per-language and per-tag breakdown (no rows when there is one group only).

    Metrics shown: hit@k and the answer metrics; for Korean, F1 and ROUGE-L count characters (KorQuAD).
    """
    header = ["group", "metric", *(short_label(t.target) for t in summary.targets)]
    shown = (f"hit@{summary.k}", *BREAKDOWN_METRICS)
    groups: list[tuple[str, str]] = []
    for kind, attr in (("lang", "by_lang"), ("tag", "by_tag")):
        labels = dict.fromkeys(label for t in summary.targets for label in getattr(t, attr))
        groups += [(f"{kind}:{label}" if kind == "lang" else label, attr) for label in labels]
    if len(groups) < 2:
        return header, []
    rows = []
    for label, attr in groups:
        key = label.removeprefix("lang:") if attr == "by_lang" else label
        per_target = [getattr(t, attr).get(key) for t in summary.targets]
        for name in shown:
            if not any(g is not None and name in g.metrics for g in per_target):
                continue
            row = [label, name]
            for g in per_target:
                s = g.metrics.get(name) if g is not None else None
                row.append(f"{s.mean:.3f} [{s.low:.3f}, {s.high:.3f}] (n={s.n})" if s else "–")
            rows.append(row)
    return header, rows


def operations_rows(summary: Summary) -> tuple[list[str], list[list[str]]]:
    """Header and rows of items, errors, latency, tokens and cost per target."""
    header = [
        "target",
        "items",
        "errors",
        "retrieval p50 ms",
        "TTFT p50 ms",
        "total p50 ms",
        "total p95 ms",
        "scoring p50 ms",
        "tokens in/out",
        "cost",
    ]
    rows = []
    for t in summary.targets:
        rows.append(
            [
                short_label(t.target),
                str(t.items),
                str(t.errors),
                _fmt(t.retrieval_ms.p50 if t.retrieval_ms else None, 0),
                _fmt(t.ttft_ms.p50 if t.ttft_ms else None, 0),
                _fmt(t.total_ms.p50 if t.total_ms else None, 0),
                _fmt(t.total_ms.p95 if t.total_ms else None, 0),
                _fmt(t.score_ms.p50 if t.score_ms else None, 1),
                f"{t.prompt_tokens}/{t.completion_tokens}",
                _fmt(t.cost_total, 4) + (f" {summary.currency}" if t.cost_total is not None else ""),
            ]
        )
    return header, rows


def comparison_rows(summary: Summary, target: str) -> tuple[list[str], list[list[str]]]:
    """Header and rows of one target against the baseline."""
    header = ["metric", "n", "win/tie/loss", "diff [CI]", "p (permutation)", "p (Wilcoxon)", ""]
    rows = []
    for p in summary.comparisons.get(target, []):
        rows.append(
            [
                p.metric,
                str(p.n),
                f"{p.wins}/{p.ties}/{p.losses}",
                f"{p.diff:+.3f} [{p.low:+.3f}, {p.high:+.3f}]",
                f"{p.p_value:.3g}",
                f"{p.wilcoxon_p:.3g}",
                "significant" if p.significant else "",
            ]
        )
    return header, rows


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(header), line(["---"] * len(header)), *(line(r) for r in rows)])


def _intro(summary: Summary) -> list[str]:
    judge = f"{summary.judge} (prompt {summary.judge_prompt_version})" if summary.judge else "none"
    state = "complete" if summary.complete else "INCOMPLETE (resume the run to finish it)"
    return [
        f"Data set: {summary.dataset.label} ({summary.dataset.cases} cases, sha256 {summary.dataset.sha256[:12]}); "
        f"mode: {summary.mode}; retrieval cutoff k={summary.k}; judge: {judge}; run {state}.",
        f"Intervals: {int(summary.confidence * 100)}% percentile bootstrap. Comparisons: each target against the "
        f"baseline {summary.baseline}, paired permutation test on the cases both answered.",
    ]


def markdown(summary: Summary, plots: dict[str, Path]) -> str:
    """The Markdown report (plots linked by file name)."""
    parts = [f"# Evaluation report: {summary.run}", "", *_intro(summary), "", "## Quality", ""]
    parts += [_md_table(*metric_rows(summary)), "", f"![metrics]({plots['metrics'].name})", ""]
    header, rows = breakdown_rows(summary)
    if rows:
        parts += ["## By language and tag", "", _md_table(header, rows), ""]
    parts += ["## Latency, tokens, cost", "", _md_table(*operations_rows(summary)), ""]
    parts += [f"![latency]({plots['latency'].name})", "", f"![cost vs quality]({plots['cost'].name})", ""]
    for target in summary.comparisons:
        parts += [f"## {target} vs {summary.baseline}", "", _md_table(*comparison_rows(summary, target)), ""]
    return "\n".join(parts)


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


_CSS = (
    "body{font-family:system-ui,sans-serif;margin:2em;max-width:75em}table{border-collapse:collapse;margin:1em 0}"
    "td,th{border:1px solid #ccc;padding:.3em .6em;font-size:.9em}th{background:#f4f4f4}img{max-width:100%}"
)


def html_page(summary: Summary, plots: dict[str, Path]) -> str:
    """The HTML report, self-contained (plots embedded as data URIs)."""
    e = html.escape
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{e(summary.run)}</title><style>{_CSS}</style>",
        f"</head><body><h1>Evaluation report: {e(summary.run)}</h1>",
        *(f"<p>{e(p)}</p>" for p in _intro(summary)),
        "<h2>Quality</h2>",
        _html_table(*metric_rows(summary)),
        _img(plots["metrics"], "metrics"),
    ]
    header, rows = breakdown_rows(summary)
    if rows:
        parts += ["<h2>By language and tag</h2>", _html_table(header, rows)]
    parts += [
        "<h2>Latency, tokens, cost</h2>",
        _html_table(*operations_rows(summary)),
        _img(plots["latency"], "latency"),
        _img(plots["cost"], "cost vs quality"),
    ]
    for target in summary.comparisons:
        parts += [f"<h2>{e(target)} vs {e(summary.baseline)}</h2>", _html_table(*comparison_rows(summary, target))]
    parts.append("</body></html>")
    return "\n".join(parts)


def write_reports(folder: Path, summary: Summary) -> dict[str, Path]:
    """Draw the plots and write ``report.md`` and ``report.html``; returns every file written."""
    plots = draw_plots(folder, summary)
    md, page = folder / "report.md", folder / "report.html"
    md.write_text(markdown(summary, plots) + "\n", encoding="utf-8")
    page.write_text(html_page(summary, plots) + "\n", encoding="utf-8")
    return {**plots, "markdown": md, "html": page}


def target_line(t: TargetSummary, metrics: Sequence[str]) -> str:
    """One line per target for terminal summaries."""
    shown = ", ".join(f"{m} {t.metrics[m].mean:.3f}" for m in metrics if m in t.metrics)
    return f"{t.target}: {shown}"
