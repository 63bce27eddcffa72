"""Refusal benchmark: are questions the corpus cannot answer refused, and answerable ones still answered?

Unanswerable questions are made by asking one shared set's questions against another set's corpus
(XQuAD against the Allganize corpus and the sample handbook, HotpotQA against the handbook, Allganize's
Korean questions against XQuAD and the handbook); answerable ones are each set's questions against its own
corpus. Every question goes through the default path (``Pipeline.answer``: hybrid retrieval, the relevance
gate, the extractive answerer) over a memory store: BEIR corpora one chunk per document with the retrieval
benchmark's cached MiniLM vectors, the handbook ingested by the worker with the bundled MiniLM.

Thresholds are chosen on the dev halves only (the retrieval benchmark's SHA-256 split of query ids): for
each grid point of ``min_score`` x ``min_lexical_coverage`` the gate is replayed on the recorded candidates
of every dev question (for English and Korean: the share of cross-corpus questions where nothing passes,
and of in-corpus questions keeping a gold passage among the first k that pass); the shipped point and the
``--check-points`` points of the replay's trade-off curve that meet the goals there are then answered end
to end on dev, and the point kept meets the most of the four goals (>= 95 % cross-corpus refused, >= 95 %
in-corpus answered citing gold, per language), then falls the least short of them in total. The figures
reported are the held-out halves, answered end to end with the settings given (``--min-score`` /
``--min-lexical-coverage``, default: the shipped defaults).

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
    return Record(case, pair, answerable, detect_lang(case.question), dev, sims, covs, gold)


def replay(rec: Record, min_score: float, min_cov: float, k: int) -> tuple[bool, bool]:
    """(anything relevant, a gold passage among the first ``k`` relevant) at these thresholds."""
    passing = [g for s, c, g in zip(rec.sims, rec.covs, rec.gold, strict=True) if s >= min_score or c >= min_cov]
    return bool(passing), any(passing[:k])


def sweep(records: Sequence[Record], k: int) -> list[dict[str, float]]:
    """For every grid point and language: the share of cross-corpus refused and in-corpus kept with gold."""
    rows = []
    for ms in MIN_SCORES:
        for mc in COVERAGES:
            row: dict[str, float] = {"min_score": ms, "min_lexical_coverage": mc}
            for lang in ("en", "ko"):
                cross = [not replay(r, ms, mc, k)[0] for r in records if not r.answerable and r.lang == lang]
                inside = [replay(r, ms, mc, k)[1] for r in records if r.answerable and r.lang == lang]
                row[f"{lang} refused"] = float(np.mean(cross)) if cross else float("nan")
                row[f"{lang} gold kept"] = float(np.mean(inside)) if inside else float("nan")
            rows.append(row)
    return rows


def _worst(row: dict[str, float]) -> float:
    rates = [row[f"{lang} {m}"] for lang in ("en", "ko") for m in ("refused", "gold kept")]
    return min(r for r in rates if r == r)  # NaN (a language without questions) left out


def _choice_key(row: dict[str, float]) -> tuple[bool, float, float, float]:
    return _worst(row) >= GOAL, _worst(row), -row["min_score"], -row["min_lexical_coverage"]


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
    return sum(v >= GOAL for v in rates), -sum(max(0.0, GOAL - v) for v in rates), min(rates)


def shortlist(rows: Sequence[dict[str, float]], shipped: tuple[float, float], n: int) -> list[tuple[float, float]]:
    """The shipped point and up to ``n`` points of the replay's trade-off curve meeting the goals there
    (else the ``n`` best by ``choose``'s order), spread evenly along the curve."""
    curve = frontier(rows)
    good = [r for r in curve if _worst(r) >= GOAL] or sorted(rows, key=_choice_key, reverse=True)[:n]
    step = max(1, len(good) / n) if n else len(good) + 1
    picked = [good[int(i * step)] for i in range(min(n, len(good)))]
    return list(dict.fromkeys([shipped, *((r["min_score"], r["min_lexical_coverage"]) for r in picked)]))


async def answer_all(
    pipe: Pipeline, cases: Sequence[tuple[Case, bool]], pair: str, answerable: bool
) -> list[dict[str, object]]:
    """Answer each question end to end; note whether it was refused and whether a gold passage is cited."""
    out = []
    for case, dev in cases:
        ans = await pipe.answer([Message("user", case.question)])
        cited = [c.hit.chunk.source for c in ans.citations]
        out.append(
            {
                "pair": pair,
                "answerable": answerable,
                "lang": detect_lang(case.question),
                "dev": dev,
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
        f"k {meta['k']}, max_chunks_per_source {meta['max_chunks_per_source']}; goal: >= {GOAL:.0%} of "
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
        "Two steps, both on the dev halves only. The gate is replayed on the recorded candidates of every dev "
        f"question for each grid point (below); the shipped point and up to {meta['check_points']} points of the "
        "replay's trade-off curve meeting the goals there are then answered end to end, and the point kept is "
        "the one meeting the most goals, then falling the least short of them in total. "
        f"Kept: **min_score {chosen['min_score']}, min_lexical_coverage "
        f"{chosen['min_lexical_coverage']}** (best by the replay alone: min_score {best['min_score']}, "
        f"min_lexical_coverage {best['min_lexical_coverage']}).",
        "",
        "| min_score | min_lexical_coverage | en refused | en answered with gold cited | ko refused "
        "| ko answered with gold cited |",
        "|---|---|---|---|---|---|",
    ]
    for row in checked:
        lines.append(
            f"| {row['min_score']} | {row['min_lexical_coverage']} | {row['en refused']:.3f} | "
            f"{row['en answered with gold cited']:.3f} | {row['ko refused']:.3f} | "
            f"{row['ko answered with gold cited']:.3f} |"
        )
    lines += [
        "",
        "## Gate replay on the dev halves",
        "",
        "The gate replayed on the recorded candidates of each dev question (retrieval only, no answerer): "
        "refused = nothing passes; gold kept = a gold passage among the first k passing candidates. The grid "
        "points not beaten on all four rates by another:",
        "",
        "| min_score | min_lexical_coverage | en refused | en gold kept | ko refused | ko gold kept |",
        "|---|---|---|---|---|---|",
    ]
    curve = result["curve"]
    assert isinstance(curve, list)
    for row in curve:
        lines.append(
            f"| {row['min_score']} | {row['min_lexical_coverage']} | {row['en refused']:.3f} | "
            f"{row['en gold kept']:.3f} | {row['ko refused']:.3f} | {row['ko gold kept']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def frontier(rows: Sequence[dict[str, float]]) -> list[dict[str, float]]:
    """Grid points not beaten on all four rates by another one (the trade-off curve), by min_score."""
    names = ("en refused", "en gold kept", "ko refused", "ko gold kept")
    keys = [k for k in names if rows and rows[0][k] == rows[0][k]]  # a language not measured (NaN) left out
    out = []
    for r in rows:
        beaten = any(all(o[k] >= r[k] for k in keys) and any(o[k] > r[k] for k in keys) for o in rows)
        if not beaten:
            out.append(r)
    return sorted(out, key=lambda r: (r["min_score"], r["min_lexical_coverage"]))


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
    args = ap.parse_args(argv)
    check_data_options(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    start = time.perf_counter()
    defaults = RetrievalSettings()
    overrides = {
        k: v
        for k, v in (("min_score", args.min_score), ("min_lexical_coverage", args.min_lexical_coverage))
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
        curve = sweep(records, retrieval.k)
        given = (retrieval.min_score, retrieval.min_lexical_coverage)
        checked = []
        for ms, mc in shortlist(curve, given, args.check_points):
            if (ms, mc) == given:
                dev_answers = [a for a in answers if a["dev"]]
            else:
                point = retrieval.model_copy(update={"min_score": ms, "min_lexical_coverage": mc})
                alt = {name: pipeline(store, embedder, point) for name, store in stores.items()}
                dev_answers = []
                for qset, corpus, answerable in measured:
                    marked = [(c, True) for c in cases[qset] if c.id in devs[qset]]
                    dev_answers += await answer_all(alt[corpus], marked, f"{qset} -> {corpus}", answerable)
            checked.append({"min_score": ms, "min_lexical_coverage": mc, **e2e_rates(rates(dev_answers, dev=True))})
            log.info("dev end to end at min_score %s, min_lexical_coverage %s: %s", ms, mc, checked[-1])
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
            "k": retrieval.k,
            "max_chunks_per_source": retrieval.max_chunks_per_source,
            "check_points": args.check_points,
        },
        "held_out": rates(answers, dev=False),
        "dev": rates(answers, dev=True),
        "replay_best": choose(curve),
        "checked": checked,
        "chosen": max(checked, key=e2e_key),
        "curve": frontier(curve),
        "answers": answers,
    }
    page = markdown(result)
    write_outputs(args.out, "refusal", json.dumps(result, indent=2, ensure_ascii=False), page, args.page)
    print(page)


if __name__ == "__main__":
    asyncio.run(main())
