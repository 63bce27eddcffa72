"""Refusal benchmark: are questions the corpus cannot answer refused, and answerable ones still answered?

Unanswerable questions are made by asking one shared set's questions against another set's corpus
(XQuAD against the Allganize corpus and the sample handbook, HotpotQA against the handbook, Allganize's
Korean questions against XQuAD and the handbook); answerable ones are each set's questions against its own
corpus. Every question goes through the default path (``Pipeline.answer``: hybrid retrieval, the relevance
gate, the extractive answerer) over a memory store: BEIR corpora one chunk per document with the retrieval
benchmark's cached MiniLM vectors, the handbook ingested by the worker with the bundled MiniLM.

Thresholds are chosen on the dev halves only (the retrieval benchmark's SHA-256 split of query ids). The
gate has two routes: a question searched dense + BM25 passes a chunk on ``min_score`` or
``min_lexical_coverage``; one searched by BM25 alone (Korean with MiniLM) on ``min_lexical_coverage_alone``.
The routes share no threshold, so each is tuned on its own questions: for each grid point the gate is
replayed on the recorded candidates of every dev question (per language: the share of cross-corpus
questions where nothing passes, and of in-corpus questions keeping a gold passage among the first k that
pass); the shipped point and ``--check-points`` points of the replay's trade-off curves that meet the goals
there are then answered end to end on dev, and each route keeps the point meeting the most of its goals
(>= 95 % cross-corpus refused, >= 95 % in-corpus answered citing gold, per language), then falling the least
short of them in total. The figures reported are the held-out halves, answered end to end with the settings
given (``--min-score`` / ``--min-lexical-coverage`` / ``--min-lexical-coverage-alone``, default: the shipped
defaults).

    .venv/bin/python benchmarks/refusal.py --data /work/shared/data --out bench-results
    .venv/bin/python benchmarks/refusal.py --data /work/shared/data --limit 200 --out /tmp/refusal
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.append(str(REPO / "benchmarks"))  # after the repo: benchmarks/ingest.py must not shadow ingest/

from retrieval import LoadedSet, chunks_of, dev_ids, load_set  # noqa: E402

from benchmarks.common import add_data_options, check_data_options, load_questions, write_outputs  # noqa: E402
from eval.dataset import Case  # noqa: E402
from eval.metrics import is_refusal  # noqa: E402
from rag.config import ChatSettings, RetrievalSettings, Settings, StoreSettings  # noqa: E402
from rag.lang import detect_lang  # noqa: E402
from rag.lexical.tokens import coverage  # noqa: E402
from rag.pipeline import Pipeline  # noqa: E402
from rag.registry import make_chat, make_embedder, make_store  # noqa: E402
from rag.retrieval import route  # noqa: E402
from rag.seams import Embedder, VectorStore  # noqa: E402
from rag.types import EmbedderInfo, Message  # noqa: E402

log = logging.getLogger("benchmarks.refusal")

QUESTION_SETS = ("xquad_en", "hotpotqa", "allganize_ko_rag")
HANDBOOK = "handbook"
IN_CORPUS = (("xquad_en", "xquad_en"), ("hotpotqa", "hotpotqa"), ("allganize_ko_rag", "allganize_ko_rag"))
CROSS_CORPUS = (
    ("xquad_en", "allganize_ko_rag"),
    ("xquad_en", HANDBOOK),
    ("hotpotqa", HANDBOOK),
    ("allganize_ko_rag", "xquad_en"),
    ("allganize_ko_rag", HANDBOOK),
)
OWN = "your questions"
GOAL = 0.95
MIN_SCORES = tuple(round(0.2 + 0.02 * i, 2) for i in range(26))  # 0.20 .. 0.70
COVERAGES = tuple(round(0.3 + 0.05 * i, 2) for i in range(15))  # 0.30 .. 1.00
ALONE_COVERAGES = tuple(round(0.1 + 0.05 * i, 2) for i in range(19))  # 0.10 .. 1.00
ALONE = "min_lexical_coverage_alone"
PARAMS = ("min_score", "min_lexical_coverage", ALONE)
Point = tuple[float, float, float]


class LookupEmbedder:
    """The bundled embedder, with the benchmark questions' vectors served from the retrieval cache."""

    def __init__(self, real: Embedder, queries: dict[str, np.ndarray]) -> None:
        self.real = real
        self.queries = queries

    @property
    def info(self) -> EmbedderInfo:
        """The bundled model's identity."""
        return self.real.info

    async def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """Documents go to the real model."""
        return await self.real.embed_documents(texts)

    async def embed_query(self, text: str) -> np.ndarray:
        """A cached question vector, else the real model's."""
        hit = self.queries.get(text.strip())
        return hit if hit is not None else await self.real.embed_query(text)

    async def close(self) -> None:
        """Nothing to release (the real embedder is closed by the caller)."""


@dataclass
class Record:
    """What the gate sees for one question on one corpus: per candidate, dense similarity, coverage, gold."""

    case: Case
    pair: str
    answerable: bool
    lang: str
    dev: bool
    sims: list[float]  # -1 where the candidate was not in the dense ranking (or dense was not run)
    covs: list[float]
    gold: list[bool]
    dense: bool  # searched dense + BM25 (else BM25 alone: only coverage counts)


async def beir_store(ds: LoadedSet, embedder: Embedder) -> VectorStore:
    """A memory store holding one chunk per BEIR document, with the cached vectors."""
    settings = Settings(store=StoreSettings(url="memory://", collection=f"refusal_{ds.name}"))
    store = make_store(settings)
    await store.open(embedder.info, create=True)
    chunks = chunks_of(ds.docs)
    for start in range(0, len(chunks), 500):
        await store.upsert(chunks[start : start + 500], ds.vectors[start : start + 500])
    return store


async def handbook_store(folder: Path, embedder: Embedder, workdir: Path) -> VectorStore:
    """The sample handbook ingested by the worker (parsing, chunking, MiniLM) into a memory store."""
    from ingest.worker import ingest_source

    settings = Settings(store=StoreSettings(url="memory://", collection="refusal_handbook"), data_dir=workdir)
    store = make_store(settings)
    await store.open(embedder.info, create=True)
    report = await ingest_source(settings, store, embedder, str(folder))
    if report.failed:
        raise SystemExit(f"handbook ingestion failed: {report.failed}")
    return store


def pipeline(store: VectorStore, embedder: Embedder, retrieval: RetrievalSettings) -> Pipeline:
    """The default pipeline (extractive answerer) over an opened store, with the given retrieval settings."""
    settings = Settings(
        store=StoreSettings(url="memory://", collection=store.name),
        retrieval=retrieval,
        chat=ChatSettings(url="extractive://"),
    )
    return Pipeline(settings, store, embedder, make_chat(settings))


def is_gold(source: str, case: Case) -> bool:
    """Whether a chunk's source is one of the case's gold sources: the same id, or (a team's questions) a
    ``file://`` URI ending in the path the question names."""
    return any(source == g or source.endswith("/" + g.removeprefix("file://").lstrip("/")) for g in case.sources)


async def record(pipe: Pipeline, case: Case, pair: str, answerable: bool, dev: bool, cache: dict) -> Record:
    """The gate's inputs for one question: the candidates ``Retriever.search`` would scan, as it scans them."""
    retriever = pipe.retriever
    cfg = pipe.settings.retrieval
    pool = max(cfg.k * 3, cfg.k)
    ranked = await retriever.rank(case.question.strip(), None, max(pool, cfg.candidates))
    sims, covs, gold = [], [], []
    for hit in ranked.hits[: max(4 * pool, 20)]:
        key = (pipe.store.name, hit.chunk.id)
        if key not in cache:
            cache[key] = retriever.chunk_tokens(hit.chunk)
        sims.append(ranked.dense.get(hit.chunk.id, -1.0))
        covs.append(coverage(ranked.query_tokens, cache[key]))
        gold.append(is_gold(hit.chunk.source, case))
    dense = ranked.route.dense_weight > 0
    return Record(case, pair, answerable, detect_lang(case.question), dev, sims, covs, gold, dense)


def replay(rec: Record, min_score: float, min_cov: float, k: int) -> tuple[bool, bool]:
    """(anything relevant, a gold passage among the first ``k`` relevant) at these thresholds; ``min_cov`` is
    the coverage of the record's route (``min_lexical_coverage`` or ``min_lexical_coverage_alone``)."""
    passing = [g for s, c, g in zip(rec.sims, rec.covs, rec.gold, strict=True) if s >= min_score or c >= min_cov]
    return bool(passing), any(passing[:k])


def _rates(records: Sequence[Record], ms: float, mc: float, k: int) -> dict[str, float]:
    row: dict[str, float] = {}
    for lang in ("en", "ko"):
        cross = [not replay(r, ms, mc, k)[0] for r in records if not r.answerable and r.lang == lang]
        inside = [replay(r, ms, mc, k)[1] for r in records if r.answerable and r.lang == lang]
        row[f"{lang} refused"] = float(np.mean(cross)) if cross else float("nan")
        row[f"{lang} gold kept"] = float(np.mean(inside)) if inside else float("nan")
    return row


def sweep(records: Sequence[Record], k: int) -> tuple[list[dict[str, float]], list[dict[str, float]]]:
    """Per route, for every grid point and language: the share of cross-corpus refused and in-corpus kept
    with gold. Dense + BM25 questions over ``min_score`` x ``min_lexical_coverage``; BM25-alone questions
    over ``min_lexical_coverage_alone``."""
    dense = [r for r in records if r.dense]
    alone = [r for r in records if not r.dense]
    dense_rows = [
        {"min_score": ms, "min_lexical_coverage": mc, **_rates(dense, ms, mc, k)}
        for ms in MIN_SCORES
        for mc in COVERAGES
    ]
    alone_rows = [{ALONE: ma, **_rates(alone, 2.0, ma, k)} for ma in ALONE_COVERAGES]
    return dense_rows, alone_rows


def _params(row: dict[str, float]) -> list[str]:
    return [p for p in PARAMS if p in row]


def _worst(row: dict[str, float]) -> float:
    rates = [row[f"{lang} {m}"] for lang in ("en", "ko") for m in ("refused", "gold kept")]
    known = [r for r in rates if r == r]  # NaN (a language without questions on this route) left out
    return min(known) if known else float("nan")


def _choice_key(row: dict[str, float]) -> tuple[bool, float, float, float]:
    lowest = -row.get("min_score", 0.0), -row.get("min_lexical_coverage", row.get(ALONE, 0.0))
    worst = _worst(row)
    return worst >= GOAL, worst if worst == worst else -1.0, *lowest


def choose(rows: Sequence[dict[str, float]]) -> dict[str, float]:
    """The grid point meeting both goals in both languages with the widest margin, else the best worst case."""
    return max(rows, key=_choice_key)


def e2e_rates(dev: dict[str, dict[str, float]]) -> dict[str, float]:
    """The four goal rates, end to end: per language, cross-corpus refused and in-corpus answered citing gold."""
    out = {}
    for lang in ("en", "ko"):
        cross, inside = dev.get(f"cross-corpus {lang}"), dev.get(f"in-corpus {lang}")
        out[f"{lang} refused"] = cross["refused"] if cross else float("nan")
        out[f"{lang} answered with gold cited"] = inside["answered with gold cited"] if inside else float("nan")
    return out


def e2e_key(point: dict[str, float]) -> tuple[int, float, float]:
    """Goals met, then the smallest total shortfall from the goals, then the worst rate (end to end on dev)."""
    rates = [v for k, v in point.items() if k.startswith(("en ", "ko ")) and v == v]
    if not rates:
        return 0, 0.0, 0.0
    return sum(v >= GOAL for v in rates), -sum(max(0.0, GOAL - v) for v in rates), min(rates)


def _picks(rows: Sequence[dict[str, float]], n: int) -> list[dict[str, float]]:
    """Up to ``n`` points of the rows' trade-off curve meeting the goals (else the ``n`` best by ``choose``'s
    order), spread evenly along the curve."""
    if not rows or all(_worst(r) != _worst(r) for r in rows):
        return []  # no question took this route
    good = [r for r in frontier(rows) if _worst(r) >= GOAL] or sorted(rows, key=_choice_key, reverse=True)[:n]
    step = max(1, len(good) / n) if n else len(good) + 1
    return [good[int(i * step)] for i in range(min(n, len(good)))]


def shortlist(
    dense_rows: Sequence[dict[str, float]], alone_rows: Sequence[dict[str, float]], shipped: Point, n: int
) -> list[Point]:
    """The shipped point, then dense-route points (with the shipped ``min_lexical_coverage_alone``) and up to
    two BM25-alone points (with the shipped dense thresholds) from the replay's curves: ``n`` in all."""
    ms, mc, ma = shipped
    alone = _picks(alone_rows, min(2, n // 2))
    dense = _picks(dense_rows, n - len(alone))
    points = [(r["min_score"], r["min_lexical_coverage"], ma) for r in dense] + [(ms, mc, r[ALONE]) for r in alone]
    return list(dict.fromkeys([shipped, *points]))


def kept(checked: Sequence[dict[str, object]]) -> dict[str, float]:
    """Each route's thresholds from the checked point best on that route's questions (end to end on dev)."""

    def best(route_name: str) -> dict[str, object]:
        return max(checked, key=lambda row: e2e_key(row[route_name]))  # type: ignore[arg-type]

    dense, alone = best("dense route"), best("alone route")
    return {
        "min_score": float(dense["min_score"]),  # type: ignore[arg-type]
        "min_lexical_coverage": float(dense["min_lexical_coverage"]),  # type: ignore[arg-type]
        ALONE: float(alone[ALONE]),  # type: ignore[arg-type]
    }


async def answer_all(
    pipe: Pipeline, cases: Sequence[tuple[Case, bool]], pair: str, answerable: bool
) -> list[dict[str, object]]:
    """Answer each question end to end; note whether it was refused and whether a gold passage is cited."""
    out = []
    cfg = pipe.settings.retrieval
    for case, dev in cases:
        ans = await pipe.answer([Message("user", case.question)])
        dense = route(case.question, cfg, pipe.retriever.dense_langs).dense_weight > 0
        cited = [c.hit.chunk.source for c in ans.citations]
        out.append(
            {
                "pair": pair,
                "answerable": answerable,
                "lang": detect_lang(case.question),
                "dev": dev,
                "route": "dense" if dense else "alone",
                "id": case.id,
                "refused": is_refusal(ans.text) or not ans.citations,
                "gold cited": any(is_gold(s, case) for s in cited),
                "answer": ans.text[:300],
            }
        )
    return out


def rates(rows: Sequence[dict[str, object]], dev: bool) -> dict[str, dict[str, float]]:
    """Per pair and per language: n, refused share, answered share, answered-with-gold-cited share."""
    groups: dict[str, list[dict[str, object]]] = {}
    for r in rows:
        if r["dev"] != dev:
            continue
        kind = "in-corpus" if r["answerable"] else "cross-corpus"
        for key in (str(r["pair"]), f"{kind} {r['lang']}"):
            groups.setdefault(key, []).append(r)
    return {
        key: {
            "n": len(rs),
            "refused": round(float(np.mean([bool(r["refused"]) for r in rs])), 4),
            "answered with gold cited": round(
                float(np.mean([not r["refused"] and bool(r["gold cited"]) for r in rs])), 4
            ),
        }
        for key, rs in sorted(groups.items())
    }


def pairs(result: dict[str, object], answerable: bool) -> list[str]:
    """The question set -> corpus pairs that were measured, in order."""
    answers = result["answers"]
    assert isinstance(answers, list)
    return list(dict.fromkeys(str(a["pair"]) for a in answers if a["answerable"] == answerable))


def markdown(result: dict[str, object]) -> str:
    """The refusal page: settings, the chosen point, held-out figures, the dev trade-off curve."""
    meta = result["meta"]
    assert isinstance(meta, dict)
    held = result["held_out"]
    dev = result["dev"]
    assert isinstance(held, dict) and isinstance(dev, dict)
    lines = [
        "# Benchmark: refusal",
        "",
        f"`{meta['command']}` ({meta['date']}; {meta['machine']}; wall time {meta['wall_s']} s).",
        "",
        "Unanswerable questions: each shared set's questions asked against another set's corpus "
        "("
        + ", ".join(pairs(result, answerable=False))
        + "); answerable: "
        + ", ".join(pairs(result, answerable=True))
        + ". "
        "Every question is answered end to end by `Pipeline.answer` with the default settings (hybrid retrieval, "
        "the relevance gate, the extractive answerer) over a memory store; the handbook is `examples/docs` "
        "ingested by the worker with the bundled MiniLM. A question counts as refused when the answer is the "
        "'could not find' sentence (or cites nothing); answered with gold cited when it is not refused and a "
        "citation is a gold passage.",
        "",
        f"Settings: min_score {meta['min_score']}, min_lexical_coverage {meta['min_lexical_coverage']}, "
        f"min_lexical_coverage_alone {meta[ALONE]}, k {meta['k']}, "
        f"max_chunks_per_source {meta['max_chunks_per_source']}; goal: >= {GOAL:.0%} of "
        "cross-corpus questions refused and >= 95 % of in-corpus questions answered with the gold source cited.",
        "",
        "## Held-out halves (no threshold was chosen on these)",
        "",
        "| questions -> corpus | n | refused | answered with gold cited |",
        "|---|---|---|---|",
    ]
    for key, m in held.items():
        lines.append(f"| {key} | {m['n']} | {m['refused']:.3f} | {m['answered with gold cited']:.3f} |")
    lines += ["", "## Dev halves (where the thresholds were chosen)", ""]
    lines += ["| questions -> corpus | n | refused | answered with gold cited |", "|---|---|---|---|"]
    for key, m in dev.items():
        lines.append(f"| {key} | {m['n']} | {m['refused']:.3f} | {m['answered with gold cited']:.3f} |")
    chosen, best = result["chosen"], result["replay_best"]
    checked = result["checked"]
    assert isinstance(chosen, dict) and isinstance(best, dict) and isinstance(checked, list)
    lines += [
        "",
        "## Thresholds chosen on the dev halves",
        "",
        "Two steps, both on the dev halves only, for each of the gate's two routes: questions searched dense + "
        "BM25 (here the English ones) pass a chunk on `min_score` or `min_lexical_coverage`, questions searched "
        "by BM25 alone (here the Korean ones: MiniLM cannot read Korean) on `min_lexical_coverage_alone`. The "
        "gate is replayed on the recorded candidates of every dev question for each grid point (below); the "
        f"shipped point and up to {meta['check_points']} points of the replays' trade-off curves meeting the "
        "goals there are then answered end to end, and each route keeps the point meeting the most of its goals, "
        "then falling the least short of them in total. "
        f"Kept: **min_score {chosen['min_score']}, min_lexical_coverage {chosen['min_lexical_coverage']}, "
        f"min_lexical_coverage_alone {chosen[ALONE]}** (best by the replays alone: min_score "
        f"{best['min_score']}, min_lexical_coverage {best['min_lexical_coverage']}, min_lexical_coverage_alone "
        f"{best[ALONE]}).",
        "",
        "| min_score | min_lexical_coverage | min_lexical_coverage_alone | en refused | en answered with gold cited "
        "| ko refused | ko answered with gold cited |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in checked:
        lines.append(
            f"| {row['min_score']} | {row['min_lexical_coverage']} | {row[ALONE]} | {row['en refused']:.3f} | "
            f"{row['en answered with gold cited']:.3f} | {row['ko refused']:.3f} | "
            f"{row['ko answered with gold cited']:.3f} |"
        )
    curve, alone_curve = result["curve"], result["alone_curve"]
    assert isinstance(curve, list) and isinstance(alone_curve, list)
    lines += [
        "",
        "## Gate replay on the dev halves",
        "",
        "The gate replayed on the recorded candidates of each dev question (retrieval only, no answerer): "
        "refused = nothing passes; gold kept = a gold passage among the first k passing candidates. Questions "
        "searched dense + BM25, the grid points not beaten on all their rates by another:",
        "",
        "| min_score | min_lexical_coverage | en refused | en gold kept | ko refused | ko gold kept |",
        "|---|---|---|---|---|---|",
    ]
    for row in curve:
        lines.append(
            f"| {row['min_score']} | {row['min_lexical_coverage']} | {row['en refused']:.3f} | "
            f"{row['en gold kept']:.3f} | {row['ko refused']:.3f} | {row['ko gold kept']:.3f} |"
        )
    lines += [
        "",
        "Questions searched by BM25 alone, the same:",
        "",
        "| min_lexical_coverage_alone | en refused | en gold kept | ko refused | ko gold kept |",
        "|---|---|---|---|---|",
    ]
    for row in alone_curve:
        lines.append(
            f"| {row[ALONE]} | {row['en refused']:.3f} | {row['en gold kept']:.3f} | {row['ko refused']:.3f} | "
            f"{row['ko gold kept']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def frontier(rows: Sequence[dict[str, float]]) -> list[dict[str, float]]:
    """Grid points not beaten on all four rates by another one (the trade-off curve), by threshold."""
    names = ("en refused", "en gold kept", "ko refused", "ko gold kept")
    keys = [k for k in names if rows and rows[0][k] == rows[0][k]]  # a language not measured (NaN) left out
    out = []
    for r in rows:
        beaten = any(all(o[k] >= r[k] for k in keys) and any(o[k] > r[k] for k in keys) for o in rows)
        if not beaten:
            out.append(r)
    return sorted(out, key=lambda r: tuple(r[p] for p in _params(r)))


def sample(cases: Sequence[Case], limit: int) -> list[Case]:
    """A seeded sample of at most ``limit`` cases (all when ``limit`` is 0)."""
    usable = [c for c in cases if c.sources]
    if not limit or limit >= len(usable):
        return usable
    return random.Random(0).sample(usable, limit)


async def main(argv: Sequence[str] | None = None) -> None:
    """Parse options, record the gate's inputs, sweep on dev, answer everything, write JSON and Markdown."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="folder of the shared data sets")
    add_data_options(
        ap,
        corpus="a folder of your own documents in the place of the sample handbook: the shared sets' questions "
        "asked against it must be refused",
        questions="your questions about --corpus (eval cases): against it they must be answered citing their "
        "gold source, against the shared corpora refused",
    )
    ap.add_argument("--out", type=Path, default=Path("bench-results"), help="where refusal.json/.md go")
    ap.add_argument("--cache", type=Path, default=Path("benchmarks/.cache"), help="embedding cache folder")
    ap.add_argument("--limit", type=int, default=0, help="questions per set (seeded sample; 0 = all)")
    ap.add_argument("--skip-corpus", default="", help="corpora to leave out, comma-separated (e.g. allganize_ko_rag)")
    ap.add_argument("--check-points", type=int, default=8, help="replay points answered end to end on dev (default 8)")
    ap.add_argument("--min-score", type=float, default=None, help="gate: dense similarity (default: shipped)")
    ap.add_argument("--min-lexical-coverage", type=float, default=None, help="gate: coverage (default: shipped)")
    ap.add_argument(
        "--min-lexical-coverage-alone", type=float, default=None, help="gate: coverage, BM25 alone (default: shipped)"
    )
    args = ap.parse_args(argv)
    check_data_options(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    start = time.perf_counter()
    defaults = RetrievalSettings()
    overrides = {
        k: v
        for k, v in zip(
            PARAMS, (args.min_score, args.min_lexical_coverage, args.min_lexical_coverage_alone), strict=True
        )
        if v is not None
    }
    retrieval = defaults.model_copy(update=overrides)
    real = make_embedder(Settings())
    loaded = {name: await load_set(name, args.data, args.cache, real, "minilm") for name in QUESTION_SETS}
    queries = {c.question.strip(): q for ds in loaded.values() for c, q in zip(ds.cases, ds.queries, strict=True)}
    embedder = LookupEmbedder(real, queries)
    with tempfile.TemporaryDirectory() as tmp:
        skip = set(args.skip_corpus.split(","))
        stores = {name: await beir_store(ds, embedder) for name, ds in loaded.items() if name not in skip}
        stores[HANDBOOK] = await handbook_store(args.corpus or REPO / "examples" / "docs", embedder, Path(tmp))
        pipes = {name: pipeline(store, embedder, retrieval) for name, store in stores.items()}
        for pipe in pipes.values():
            await pipe.ensure_open()
        cases = {name: sample(ds.cases, args.limit) for name, ds in loaded.items()}
        devs = {name: dev_ids(ds.cases) for name, ds in loaded.items()}
        in_corpus, cross_corpus = list(IN_CORPUS), list(CROSS_CORPUS)
        if args.questions is not None:
            own = list(load_questions(args.questions))
            cases[OWN], devs[OWN] = sample(own, args.limit), dev_ids(own)
            in_corpus.append((OWN, HANDBOOK))
            cross_corpus += [(OWN, name) for name in loaded if name in stores]
        records: list[Record] = []
        answers: list[dict[str, object]] = []
        token_cache: dict = {}
        measured = [
            (qset, corpus, answerable)
            for pairs, answerable in ((in_corpus, True), (cross_corpus, False))
            for qset, corpus in pairs
            if corpus in stores
        ]
        for qset, corpus, answerable in measured:
            pair = f"{qset} -> {corpus}"
            t0 = time.perf_counter()
            marked = [(c, c.id in devs[qset]) for c in cases[qset]]
            for case, dev in marked:
                if dev:
                    records.append(await record(pipes[corpus], case, pair, answerable, dev, token_cache))
            answers += await answer_all(pipes[corpus], marked, pair, answerable)
            log.info("%s: %d questions in %.0f s", pair, len(marked), time.perf_counter() - t0)
        dense_rows, alone_rows = sweep(records, retrieval.k)
        given: Point = (retrieval.min_score, retrieval.min_lexical_coverage, retrieval.min_lexical_coverage_alone)
        langs = pipes[HANDBOOK].retriever.dense_langs

        def route_of(case: Case) -> str:
            return "dense" if route(case.question, retrieval, langs).dense_weight > 0 else "alone"

        shipped_dev = [a for a in answers if a["dev"]]
        checked: list[dict[str, object]] = []
        for point in shortlist(dense_rows, alone_rows, given, args.check_points):
            # A point changes one route's thresholds: only that route's questions are answered again.
            changed = {
                name for name, moved in (("dense", point[:2] != given[:2]), ("alone", point[2] != given[2])) if moved
            }
            dev_answers = [a for a in shipped_dev if a["route"] not in changed]
            if changed:
                alt_settings = retrieval.model_copy(update=dict(zip(PARAMS, point, strict=True)))
                alt = {name: pipeline(store, embedder, alt_settings) for name, store in stores.items()}
                for qset, corpus, answerable in measured:
                    marked = [(c, True) for c in cases[qset] if c.id in devs[qset] and route_of(c) in changed]
                    dev_answers += await answer_all(alt[corpus], marked, f"{qset} -> {corpus}", answerable)
            by_route = {
                f"{name} route": e2e_rates(rates([a for a in dev_answers if a["route"] == name], dev=True))
                for name in ("dense", "alone")
            }
            checked.append(
                {**dict(zip(PARAMS, point, strict=True)), **e2e_rates(rates(dev_answers, dev=True)), **by_route}
            )
            log.info("dev end to end at %s: %s", dict(zip(PARAMS, point, strict=True)), checked[-1])
        for store in stores.values():
            await store.close()
    await real.close()
    result: dict[str, object] = {
        "meta": {
            "command": "benchmarks/refusal.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "date": time.strftime("%Y-%m-%d", time.gmtime()),
            "machine": f"{os.cpu_count()} CPU cores, no GPU, {platform.machine()}, Python {platform.python_version()}",
            "wall_s": round(time.perf_counter() - start, 1),
            "min_score": retrieval.min_score,
            "min_lexical_coverage": retrieval.min_lexical_coverage,
            ALONE: retrieval.min_lexical_coverage_alone,
            "k": retrieval.k,
            "max_chunks_per_source": retrieval.max_chunks_per_source,
            "check_points": args.check_points,
        },
        "held_out": rates(answers, dev=False),
        "dev": rates(answers, dev=True),
        "replay_best": {**choose(dense_rows), ALONE: choose(alone_rows)[ALONE]},
        "checked": checked,
        "chosen": kept(checked),
        "curve": frontier(dense_rows),
        "alone_curve": frontier(alone_rows),
        "answers": answers,
    }
    page = markdown(result)
    write_outputs(args.out, "refusal", json.dumps(result, indent=2, ensure_ascii=False), page, args.page)
    print(page)


if __name__ == "__main__":
    asyncio.run(main())
