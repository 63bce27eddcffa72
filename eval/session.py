"""One evaluation run as the CLI (and a Katib trial) starts it: load cases, ingest if asked, run every target."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.progress import Progress

from rag.config import Settings
from rag.errors import InvalidRequest


@dataclass(frozen=True)
class RunRequest:
    """What ``rag eval run`` was asked to do (its options, minus gates and trackers)."""

    targets: tuple[str, ...]
    folder: Path
    dataset: Path | None = None
    squad: Path | None = None
    beir: Path | None = None
    ingest: bool = False
    retrieval: bool = False
    concurrency: int = 4
    retries: int = 2
    seed: int = 0
    judge: str | None = None
    prices: Path | None = None
    limit: int | None = None


def load_data(dataset: Path | None, squad: Path | None, beir: Path | None) -> Any:
    """The cases (and corpus) of exactly one of a case file, a SQuAD file or a BEIR folder, and a label."""
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


async def run_eval(settings: Settings, request: RunRequest, bar: Progress) -> Any:
    """Prepare the run folder, ingest the imported corpus when asked (always for memory://), run the cases."""
    from eval.corpus import ingest_corpus
    from eval.judge import Judge
    from eval.prices import load_prices
    from eval.runner import DatasetInfo, RunConfig, Runner, RunOptions, dataset_hash, prepare_folder, safe_settings
    from eval.service import is_service_target
    from rag.pipeline import Pipeline
    from rag.registry import make_chat, make_embedder, make_reranker, make_store

    imported, label = load_data(request.dataset, request.squad, request.beir)
    cases = list(imported.cases)
    if not cases:
        raise InvalidRequest(f"{label}: no cases")
    limit, seed = request.limit, request.seed
    if limit is not None and limit < len(cases):
        cases = sorted(random.Random(seed).sample(cases, limit), key=lambda c: c.id)
        label = f"{label} (sample of {limit}, seed {seed})"
    local = request.retrieval or not all(is_service_target(t) for t in request.targets)
    table = load_prices(request.prices)
    config = RunConfig(
        name=request.folder.name,
        mode="retrieval" if request.retrieval else "generate",
        targets=list(request.targets),
        dataset=DatasetInfo(label=label, sha256=dataset_hash(cases), cases=len(cases)),
        k=settings.retrieval.k,
        seed=seed,
        concurrency=request.concurrency,
        retries=request.retries,
        judge=request.judge,
        prices=table,
        settings=safe_settings(settings),
        created=time.time(),
    )
    options = RunOptions(
        targets=request.targets,
        mode=config.mode,
        concurrency=request.concurrency,
        retries=request.retries,
        seed=seed,
        prices=table,
    )
    prepare_folder(request.folder, config)
    store, embedder = make_store(settings), make_embedder(settings)
    # The configured reranker (retrieval.rerank_url) takes part as it does in the service.
    pipeline = Pipeline(settings, store, embedder, make_chat(settings, "extractive://"), make_reranker(settings))
    grader = Judge(make_chat(settings, request.judge)) if request.judge else None
    try:
        runner = Runner(pipeline, cases, options, request.folder, judge=grader)
        todo, done = runner.pending()
        corpus = imported.corpus
        if todo and local and (request.ingest or settings.store.url.startswith("memory:")):
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
