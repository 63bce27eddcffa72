"""``rag eval``: run evaluations, write reports, compare runs, generate questions.

Mounted by the ``rag`` app (``app.add_typer(eval_app, name="eval")``); also runs alone as
``python -m eval.cli``. Project errors become a one-line message and an exit code here, and only here.
Exit codes: 0 ok, 2 usage or configuration, 3 a backend failed or a quality gate (``--min``/``--max``) failed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from rag.config import Settings, load
from rag.errors import ConfigError, InvalidRequest, RagError

eval_app = typer.Typer(
    help="Evaluate retrieval and answers against model targets; report, gate and compare runs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)
log = logging.getLogger("eval.cli")

T = TypeVar("T")
EXIT_CONFIG, EXIT_BACKEND, EXIT_GATE = 2, 3, 3
HEADLINE = ("f1", "em", "similarity", "faithfulness", "relevance", "refusal")

# Options of the parent ``rag`` callback, read from the click context when mounted.
_ROOT_OVERRIDES = {
    "store": "RAG_STORE__URL",
    "collection": "RAG_STORE__COLLECTION",
    "embed": "RAG_EMBED__URL",
    "chat": "RAG_CHAT__URL",
}


def _fail(e: RagError) -> typer.Exit:
    if isinstance(e, ConfigError):
        err.print(f"[bold red]configuration error:[/] {e.message}")
        return typer.Exit(EXIT_CONFIG)
    err.print(f"[bold red]error ({e.status} {e.code or e.type}):[/] {e.message}")
    return typer.Exit(EXIT_BACKEND if e.status >= 500 else EXIT_CONFIG)


def _run(coro_fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
    try:
        return asyncio.run(coro_fn())
    except RagError as e:
        raise _fail(e) from None
    except KeyboardInterrupt:
        err.print("interrupted; run the same command again to resume")
        raise typer.Exit(130) from None


def _settings(ctx: typer.Context, collection: str | None = None) -> Settings:
    """Settings from the parent ``rag`` options (when mounted), this command's options and RAG_* variables."""
    root = ctx.find_root().params
    for name, env in _ROOT_OVERRIDES.items():
        if root.get(name) is not None:
            os.environ[env] = str(root[name])
    if collection is not None:
        os.environ["RAG_STORE__COLLECTION"] = collection
    try:
        return load(root.get("config"))
    except ConfigError as e:
        raise _fail(e) from None


@eval_app.callback()
def _options(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log at DEBUG level.")] = False) -> None:
    """Evaluate retrieval and answers against model targets."""
    level = "DEBUG" if verbose else os.environ.get("RAG_LOG_LEVEL", "WARNING")
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=False,
    )


def _load_data(dataset: Path | None, squad: Path | None, beir: Path | None) -> Any:
    from eval.dataset import Imported, from_beir, from_squad, load_cases

    given = [p for p in (dataset, squad, beir) if p is not None]
    if len(given) != 1:
        raise InvalidRequest("give exactly one of --dataset FILE, --squad FILE, --beir DIR")
    if dataset is not None:
        return Imported(cases=tuple(load_cases(dataset)), corpus=()), str(dataset)
    if squad is not None:
        return from_squad(squad), f"squad:{squad}"
    assert beir is not None
    return from_beir(beir), f"beir:{beir}"


def _print_summary(summary: Any) -> None:
    from eval.render import metric_rows, operations_rows

    for title, (header, rows) in (("Quality", metric_rows(summary)), ("Operations", operations_rows(summary))):
        table = Table(title=title)
        for h in header:
            table.add_column(h)
        for r in rows:
            table.add_row(*r)
        out.print(table)
    for target, pairs in summary.comparisons.items():
        shown = [p for p in pairs if p.metric in HEADLINE or p.metric.startswith("hit@")]
        for p in shown:
            mark = " (significant)" if p.significant else ""
            out.print(
                f"  {target} vs {summary.baseline}: {p.metric} {p.diff:+.3f} "
                f"[{p.low:+.3f}, {p.high:+.3f}] w/t/l {p.wins}/{p.ties}/{p.losses} p={p.p_value:.3g}{mark}"
            )


@dataclass(frozen=True)
class Tracking:
    """Where to log a run's summary besides its folder."""

    mlflow: str | None = None
    tensorboard: Path | None = None
    experiment: str = "rag-eval"


MlflowOpt = Annotated[
    str | None, typer.Option("--mlflow", help="Log to MLflow at this tracking URI (file:///path, http://host:5000).")
]
TensorboardOpt = Annotated[Path | None, typer.Option("--tensorboard", help="Write TensorBoard events under DIR.")]
ExperimentOpt = Annotated[str, typer.Option(help="MLflow experiment name.")]


def _finish(
    folder: Path,
    mins: list[str] | None,
    maxs: list[str] | None,
    katib: bool,
    report: bool = True,
    tracking: Tracking | None = None,
) -> None:
    """Summarise, write reports, log to trackers, print, apply gates; raises typer.Exit(3) when a gate fails."""
    from eval.report import check_gates, katib_lines, parse_threshold, summarize, write_summary

    try:
        thresholds = [parse_threshold(t, "min") for t in mins or []] + [parse_threshold(t, "max") for t in maxs or []]
        summary = summarize(folder)
        write_summary(folder, summary)
        files = {}
        if report:
            from eval.render import write_reports

            files = write_reports(folder, summary)
        failures = check_gates(summary, thresholds)
        logged: dict[str, Any] = {}
        if tracking is not None and (tracking.mlflow or tracking.tensorboard):
            from eval.tracking import log_summary

            logged = log_summary(summary, folder, tracking.mlflow, tracking.tensorboard, tracking.experiment)
    except RagError as e:
        raise _fail(e) from None
    _print_summary(summary)
    if logged.get("mlflow"):
        err.print(f"[dim]MLflow runs: {', '.join(logged['mlflow'])} ({tracking.mlflow if tracking else ''})[/]")
    if logged.get("tensorboard"):
        err.print(f"[dim]TensorBoard: {' '.join(str(p) for p in logged['tensorboard'])}[/]")
    if not summary.complete:
        err.print(f"[yellow]the run is incomplete ({summary.expected_items} items expected); run it again to resume[/]")
    for t in summary.targets:
        if t.errors:
            err.print(f"[yellow]{t.target}: {t.errors} of {t.items} items failed (see items.jsonl 'error')[/]")
    if files:
        err.print(f"[dim]report: {files['html']}  {files['markdown']}  summary: {folder / 'summary.json'}[/]")
    if katib:
        for line in katib_lines(summary):
            out.print(line, highlight=False, soft_wrap=True)
    if failures:
        for f in failures:
            actual = "not measured" if f.actual is None else f"{f.actual:.4g}"
            op = ">=" if f.threshold.kind == "min" else "<="
            err.print(
                f"[bold red]gate failed:[/] {f.target}: {f.threshold.metric} {actual}, needs {op} {f.threshold.value:g}"
            )
        raise typer.Exit(EXIT_GATE)


@eval_app.command("run")
def run_command(
    ctx: typer.Context,
    target: Annotated[
        list[str],
        typer.Option(
            "--target",
            "-t",
            help="Chat backend URL to evaluate (repeat), or a running service: http://host:8000/v1?model=rag.",
        ),
    ],
    dataset: Annotated[Path | None, typer.Option(help="Case file (.jsonl/.yaml).")] = None,
    squad: Annotated[Path | None, typer.Option(help="SQuAD/KorQuAD v1 JSON file (cases and corpus).")] = None,
    beir: Annotated[Path | None, typer.Option(help="BEIR folder (corpus.jsonl, queries.jsonl, qrels).")] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Run folder (default runs/eval-<time>).")] = None,
    collection: Annotated[str | None, typer.Option(help="Collection to retrieve from.")] = None,
    ingest: Annotated[bool, typer.Option(help="Ingest the imported corpus first (always for memory://).")] = False,
    retrieval: Annotated[
        bool,
        typer.Option("--retrieval", help="Evaluate retrieval settings (targets like k=10,rrf_k=20,min_score=0.3)."),
    ] = False,
    concurrency: Annotated[int, typer.Option(min=1, help="Items generated at once.")] = 4,
    retries: Annotated[int, typer.Option(min=0, help="Retries of a failed generation (429/5xx).")] = 2,
    seed: Annotated[int, typer.Option(help="Seed for order, sampling and resampling.")] = 0,
    judge: Annotated[str | None, typer.Option(help="Chat URL of the judge model (faithfulness, relevance).")] = None,
    prices: Annotated[Path | None, typer.Option(help="Price table (YAML/JSON) for costs.")] = None,
    min_: Annotated[list[str] | None, typer.Option("--min", help="Gate: METRIC=VALUE each target must reach.")] = None,
    max_: Annotated[list[str] | None, typer.Option("--max", help="Gate: METRIC=VALUE no target may exceed.")] = None,
    katib: Annotated[bool, typer.Option(help="Print name=value lines for Katib.")] = False,
    limit: Annotated[int | None, typer.Option(min=1, help="Evaluate a seeded sample of N cases.")] = None,
    mlflow: MlflowOpt = None,
    tensorboard: TensorboardOpt = None,
    experiment: ExperimentOpt = "rag-eval",
) -> None:
    """Run cases against every target; resumable (run the same command again to continue).

    A target is a chat backend URL (retrieval runs here, once per case, shared by every target) or a running
    onprem-rag service (http://host:port/v1?model=rag: the service retrieves; its cited sources and
    /v1/search results are scored, TTFT is measured by streaming).

    Examples:
      rag eval run --squad dev.json --ingest -t extractive:// -t 'openai+http://gpu:8000/v1?model=ft' --out runs/ft

      rag eval run --dataset cases.jsonl -t 'openai://?model=gpt-4o-mini' --min f1=0.5 --max total_ms_p95=3000

      rag eval run --dataset cases.jsonl -t 'http://rag.internal:8000/v1?model=rag' --limit 50

      rag eval run --beir data/ko --ingest -t extractive:// --mlflow file:///srv/mlruns --tensorboard runs/tb

      rag eval run --squad dev.json --retrieval -t k=3 -t k=10 -t k=5,min_score=0.3
    """
    settings = _settings(ctx, collection)
    folder = out_dir or Path("runs") / time.strftime("eval-%Y%m%d-%H%M%S")

    async def go() -> Any:
        from eval.corpus import ingest_corpus
        from eval.judge import Judge
        from eval.prices import load_prices
        from eval.runner import DatasetInfo, RunConfig, Runner, RunOptions, dataset_hash, prepare_folder, safe_settings
        from eval.service import is_service_target
        from rag.pipeline import Pipeline
        from rag.registry import make_chat, make_embedder, make_store
        from rag.rerank import make_reranker

        imported, label = _load_data(dataset, squad, beir)
        cases = list(imported.cases)
        if not cases:
            raise InvalidRequest(f"{label}: no cases")
        if limit is not None and limit < len(cases):
            cases = sorted(random.Random(seed).sample(cases, limit), key=lambda c: c.id)
            label = f"{label} (sample of {limit}, seed {seed})"
        local = retrieval or not all(is_service_target(t) for t in target)
        table = load_prices(prices)
        config = RunConfig(
            name=folder.name,
            mode="retrieval" if retrieval else "generate",
            targets=list(target),
            dataset=DatasetInfo(label=label, sha256=dataset_hash(cases), cases=len(cases)),
            k=settings.retrieval.k,
            seed=seed,
            concurrency=concurrency,
            retries=retries,
            judge=judge,
            prices=table,
            settings=safe_settings(settings),
            created=time.time(),
        )
        options = RunOptions(
            targets=tuple(target),
            mode=config.mode,
            concurrency=concurrency,
            retries=retries,
            seed=seed,
            prices=table,
        )
        prepare_folder(folder, config)
        store, embedder = make_store(settings), make_embedder(settings)
        # The configured reranker (retrieval.rerank_url) takes part as it does in the service.
        reranker = make_reranker(settings.retrieval.rerank_url, timeout_s=settings.chat.timeout_s)
        pipeline = Pipeline(settings, store, embedder, make_chat(settings, "extractive://"), reranker)
        grader = Judge(make_chat(settings, judge)) if judge else None
        try:
            with _progress() as bar:
                runner = Runner(pipeline, cases, options, folder, judge=grader)
                todo, done = runner.pending()
                corpus = imported.corpus
                if todo and local and (ingest or settings.store.url.startswith("memory:")):
                    if not corpus:
                        raise InvalidRequest("nothing to ingest: --ingest needs --squad or --beir")
                    task = bar.add_task("ingest", total=None)
                    await ingest_corpus(settings, store, embedder, corpus, lambda n: bar.update(task, completed=n))
                task = bar.add_task("evaluate", total=len(todo) + done, completed=done)
                runner.on_item = lambda _record: bar.advance(task)
                return await runner.run()
        finally:
            if grader is not None:
                await grader.close()
            await pipeline.close()

    outcome = _run(go)
    err.print(
        f"[dim]{folder}: {outcome.ran} items run, {outcome.skipped} already done, {outcome.failed} failed, "
        f"{outcome.seconds:.1f}s[/]"
    )
    _finish(folder, min_, max_, katib, tracking=Tracking(mlflow, tensorboard, experiment))


@eval_app.command("report")
def report_command(
    run: Annotated[Path, typer.Argument(help="Run folder.")],
    min_: Annotated[list[str] | None, typer.Option("--min", help="Gate: METRIC=VALUE each target must reach.")] = None,
    max_: Annotated[list[str] | None, typer.Option("--max", help="Gate: METRIC=VALUE no target may exceed.")] = None,
    katib: Annotated[bool, typer.Option(help="Print name=value lines for Katib.")] = False,
    mlflow: MlflowOpt = None,
    tensorboard: TensorboardOpt = None,
    experiment: ExperimentOpt = "rag-eval",
) -> None:
    """Recompute a run's summary and write its Markdown and HTML reports (optionally log it to MLflow/TensorBoard).

    Examples:
      rag eval report runs/ft --min hit@5=0.8

      rag eval report runs/ft --mlflow http://mlflow:5000 --experiment rag-nightly
    """
    _finish(run, min_, max_, katib, tracking=Tracking(mlflow, tensorboard, experiment))


@eval_app.command("compare")
def compare_command(
    run_a: Annotated[Path, typer.Argument(help="Baseline run folder.")],
    run_b: Annotated[Path, typer.Argument(help="Run folder compared against it.")],
    target_a: Annotated[str | None, typer.Option(help="Target of run A (default: its first).")] = None,
    target_b: Annotated[str | None, typer.Option(help="Target of run B (default: its first).")] = None,
) -> None:
    """Compare two runs on the cases both answered: per metric win/tie/loss, difference and significance.

    Example: rag eval compare runs/before runs/after
    """
    from eval.report import metric_names, ordered_items, pair_stats
    from eval.runner import ITEMS_FILE, ItemLog, load_config

    try:
        ca, cb = load_config(run_a), load_config(run_b)
        ta, tb = target_a or ca.targets[0], target_b or cb.targets[0]
        items_a = ordered_items(ca, ItemLog(run_a / ITEMS_FILE).read())
        items_b = ordered_items(cb, ItemLog(run_b / ITEMS_FILE).read())
        if ta not in items_a or tb not in items_b:
            raise InvalidRequest(f"unknown target: run A has {ca.targets}, run B has {cb.targets}")
        if ca.k != cb.k:
            raise InvalidRequest(f"the runs use different retrieval cutoffs (k={ca.k} and k={cb.k})")
        pairs = pair_stats(items_a[ta], items_b[tb], metric_names(ca.k, {ta: items_a[ta], tb: items_b[tb]}), ca.seed)
    except RagError as e:
        raise _fail(e) from None
    if ca.dataset.sha256 != cb.dataset.sha256:
        err.print("[yellow]the runs used different data sets; comparing the cases they share (by id)[/]")
    table = Table(title=f"{run_b} ({tb}) vs {run_a} ({ta})")
    for h in ("metric", "n", "win/tie/loss", "diff [95% CI]", "p", ""):
        table.add_column(h)
    for p in pairs:
        table.add_row(
            p.metric,
            str(p.n),
            f"{p.wins}/{p.ties}/{p.losses}",
            f"{p.diff:+.3f} [{p.low:+.3f}, {p.high:+.3f}]",
            f"{p.p_value:.3g}",
            "significant" if p.significant else "",
        )
    out.print(table)


@eval_app.command("synth")
def synth_command(
    ctx: typer.Context,
    generator: Annotated[str, typer.Option("--generator", "-g", help="Chat URL of the model that writes questions.")],
    out_file: Annotated[Path, typer.Option("--out", help="Case file to write (.jsonl or .yaml).")],
    squad: Annotated[Path | None, typer.Option(help="SQuAD/KorQuAD file whose paragraphs to use.")] = None,
    beir: Annotated[Path | None, typer.Option(help="BEIR folder whose corpus to use.")] = None,
    collection: Annotated[
        str | None, typer.Option(help="Stored collection to sample (the default when no --squad/--beir).")
    ] = None,
    groups: Annotated[str, typer.Option(help="From a collection: only chunks these groups may read.")] = "public",
    count: Annotated[int, typer.Option(min=1, help="Cases to generate at most.")] = 50,
    seed: Annotated[int, typer.Option(help="Seed for sampling passages.")] = 0,
    min_support: Annotated[float, typer.Option(help="Share of answer tokens that must occur in the passage.")] = 0.8,
) -> None:
    """Generate questions and answers from sampled passages, deduplicated and checked against their passage.

    Passages come from a SQuAD/BEIR corpus, or from a stored collection (sampled through search with random
    directions; only chunks readable by --groups).

    Examples:
      rag eval synth --squad dev.json -g 'openai+http://gpu:8000/v1?model=x' --count 100 --out synth.jsonl

      rag eval synth --collection docs -g 'openai+http://gpu:8000/v1?model=x' --out synth.jsonl
    """
    settings = _settings(ctx, collection)

    async def go() -> Any:
        from eval.corpus import to_document
        from eval.dataset import dump_cases
        from eval.synth import Passage, synthesize
        from ingest.chunking import Chunker
        from rag.registry import make_chat, make_embedder

        if squad is None and beir is None:
            from eval.corpus import sample_stored
            from rag.registry import make_store

            store, embedder = make_store(settings), make_embedder(settings)
            try:
                await store.open(embedder.info, create=False)
                wanted = tuple(g.strip() for g in groups.split(",") if g.strip())
                # Three passages per wanted case: some are rejected as unanswerable or duplicates.
                chunks = await sample_stored(store, embedder.info.dim, 3 * count, seed, wanted)
            finally:
                await store.close()
            passages = [Passage(c.source, c.text) for c in chunks]
        else:
            imported, _ = _load_data(None, squad, beir)
            chunker = Chunker(settings.ingest.chunk_size, settings.ingest.chunk_overlap, make_embedder(settings))
            passages = [
                Passage(c.source, c.text)
                for doc in imported.corpus
                for c in chunker.chunks(to_document(doc, ("public",)), ingested_at=0.0)
            ]
        backend = make_chat(settings, generator)
        try:
            with _progress() as bar:
                task = bar.add_task("synthesize", total=len(passages))
                cases = await synthesize(
                    backend, passages, count, seed, min_support, lambda n: bar.update(task, completed=n)
                )
        finally:
            await backend.close()
        dump_cases(cases, out_file)
        return len(cases), len(passages)

    made, seen = _run(go)
    err.print(f"{made} cases written to {out_file} (from {seen} passages)")


if __name__ == "__main__":
    eval_app()
