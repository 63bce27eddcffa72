"""Retrieval benchmark: dense, BM25 (each tokeniser), plain RRF and the default hybrid, side by side.

Reads the BEIR copies of the shared data sets (nothing is downloaded), indexes title + text, and writes
``retrieval.json`` and ``retrieval.md`` into ``--out``. Document embeddings are cached per set as
``.npy`` in ``--cache`` so a rerun only embeds the queries.

Each set's queries are split into two fixed halves by the SHA-256 of the query id (sorted, first half =
dev). Tuned retrieval parameters (BM25 b, title-link weight and depth, the Korean morpheme + bigram
fusion) are chosen on the dev halves only; every metric is reported on the full set and on the held-out
half, which no parameter has seen.

    .venv/bin/python benchmarks/retrieval.py --data /work/shared/data --out benchmarks/results
    .venv/bin/python benchmarks/retrieval.py --data /work/shared/data --stores memory,chroma,milvus+lite \
        --sets xquad_en
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import add_data_options, check_data_options, command, machine, now, write_page
from eval.dataset import Case, CorpusDoc, from_beir
from eval.metrics import hit_at_k, mrr_at_k, ndcg_at_k, recall_at_k
from rag.config import RetrievalSettings, Settings, StoreSettings
from rag.lexical.fusion import fuse
from rag.lexical.index import BM25_B, BM25_K1, LexicalIndex
from rag.lexical.tokens import TOKENIZERS
from rag.registry import make_embedder, make_store
from rag.retrieval import Retriever
from rag.seams import VectorStore
from rag.types import Chunk, EmbedderInfo, ScoredChunk

log = logging.getLogger("benchmarks.retrieval")

REPO = Path(__file__).resolve().parents[1]
WHAT = """\
What is measured: retrieval quality (hit@1, hit@5, recall@10, MRR@10, nDCG@10) of dense search, BM25 with
each tokeniser, plain reciprocal-rank fusion and the default hybrid, side by side on the same corpus and
questions, with the bundled MiniLM embedder. Each set's questions are split into fixed dev / held-out
halves (SHA-256 of the question id); tuned parameters are chosen on dev halves only and every metric is
reported on the full set and on the held-out half.
"""

SETS = {
    "xquad_en": "xquad_en/beir",
    "musique": "multihop_en/musique/beir",
    "hotpotqa": "multihop_en/hotpotqa/beir",
    "allganize_ko_rag": "allganize_ko_rag/beir",
}
DEPTH = 100  # candidates per ranker before fusion and for the metrics


@dataclass
class LoadedSet:
    """One data set: its cases, corpus and cached document embeddings."""

    name: str
    cases: tuple[Case, ...]
    docs: list[CorpusDoc]
    vectors: np.ndarray
    queries: np.ndarray


def doc_text(doc: CorpusDoc) -> str:
    """What gets embedded: title and text, as for the lexical index."""
    return f"{doc.title}\n{doc.text}" if doc.title else doc.text


async def embed_cached(texts: Sequence[str], path: Path, embedder: object) -> np.ndarray:
    """Embeddings of ``texts``, read from ``path`` when it holds them for exactly these texts."""
    digest = hashlib.sha256("\x00".join(texts).encode()).hexdigest()[:16]
    file = path.with_name(f"{path.stem}-{digest}.npy")
    if file.exists():
        return np.load(file)
    start = time.perf_counter()
    vectors = await embedder.embed_documents(texts)  # type: ignore[attr-defined]
    file.parent.mkdir(parents=True, exist_ok=True)
    np.save(file, vectors)
    log.info("embedded %d texts into %s in %.0f s", len(texts), file, time.perf_counter() - start)
    return vectors


async def load_set(name: str, data: Path, cache: Path, embedder: object, model: str) -> LoadedSet:
    """Cases, corpus and embeddings (queries embedded as queries, without a document prefix)."""
    imported = from_beir(data / SETS[name])
    docs = list(imported.corpus)
    vectors = await embed_cached([doc_text(d) for d in docs], cache / name / f"{model}-docs", embedder)
    qtexts = [c.question for c in imported.cases]
    queries = await embed_cached(qtexts, cache / name / f"{model}-queries", embedder)
    return LoadedSet(name, imported.cases, docs, vectors, queries)


async def load_own(corpus: Path, questions: Path, cache: Path, embedder: object, model: str) -> LoadedSet:
    """A team's own set: ``--corpus`` parsed as ingestion parses it (one unit per file), ``--questions``."""
    from benchmarks.common import corpus_set

    imported = corpus_set(corpus, questions)
    docs = list(imported.corpus)
    if not docs or not imported.cases:
        raise SystemExit(f"--corpus {corpus} / --questions {questions}: no documents or no questions to measure")
    vectors = await embed_cached([doc_text(d) for d in docs], cache / "own" / f"{model}-docs", embedder)
    queries = await embed_cached([c.question for c in imported.cases], cache / "own" / f"{model}-queries", embedder)
    return LoadedSet(corpus.name or "own", imported.cases, docs, vectors, queries)


METRICS = ("hit@1", "hit@5", "recall@10", "mrr@10", "ndcg@10")
MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2"


def dev_ids(cases: Sequence[Case]) -> frozenset[str]:
    """The dev half of a set's queries: the first half by SHA-256 of the query id (fixed, order-free)."""
    order = sorted(cases, key=lambda c: hashlib.sha256(c.id.encode()).hexdigest())
    return frozenset(c.id for c in order[: len(order) // 2])


def score_split(ranked: Sequence[Sequence[str]], cases: Sequence[Case]) -> dict[str, dict[str, float]]:
    """Metrics on the full set, on the dev half and on the held-out half."""
    dev = dev_ids(cases)
    out = {"full": score(ranked, cases)}
    for name, keep in (("dev", True), ("held_out", False)):
        pairs = [(r, c) for r, c in zip(ranked, cases, strict=True) if (c.id in dev) == keep]
        out[name] = score([r for r, _ in pairs], [c for _, c in pairs])
    return out


def score(ranked: Sequence[Sequence[str]], cases: Sequence[Case]) -> dict[str, float]:
    """Mean of each metric over the cases (eval.metrics does the arithmetic)."""
    fns: dict[str, Callable[[Sequence[str], Sequence[str]], float]] = {
        "hit@1": lambda r, g: hit_at_k(r, g, 1),
        "hit@5": lambda r, g: hit_at_k(r, g, 5),
        "recall@10": lambda r, g: recall_at_k(r, g, 10),
        "mrr@10": lambda r, g: mrr_at_k(r, g, 10),
        "ndcg@10": lambda r, g: ndcg_at_k(r, g, 10),
    }
    return {
        m: round(float(np.mean([f(r, c.sources) for r, c in zip(ranked, cases, strict=True)])), 4)
        for m, f in fns.items()
    }


def chunks_of(docs: Sequence[CorpusDoc]) -> list[Chunk]:
    """One chunk per corpus document; ``source`` is the document id the qrels name."""
    return [
        Chunk(id=hashlib.sha256(d.id.encode()).hexdigest()[:32], text=d.text, title=d.title, source=d.id) for d in docs
    ]


class CachedEmbedder:
    """Serves the cached MiniLM query vectors under the bundled model's id (the benchmark embeds nothing twice)."""

    def __init__(self, queries: dict[str, np.ndarray]) -> None:
        self.queries = queries

    @property
    def info(self) -> EmbedderInfo:
        """The bundled model's identity."""
        return EmbedderInfo(id=MINILM_ID, dim=384)

    async def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """Not used: documents come from the cache."""
        raise NotImplementedError

    async def embed_query(self, text: str) -> np.ndarray:
        """The cached vector of a benchmark question."""
        return self.queries[text]

    async def close(self) -> None:
        """Nothing to release."""


def dense_rankings(ds: LoadedSet, depth: int) -> list[list[ScoredChunk]]:
    """Exact cosine top-``depth`` per query (brute force)."""
    chunks = chunks_of(ds.docs)
    sims = ds.queries @ ds.vectors.T
    out = []
    for row in sims:
        top = np.argsort(-row, kind="stable")[:depth]
        out.append([ScoredChunk(chunks[i], float(row[i])) for i in top])
    return out


def bm25_rankings(ds: LoadedSet, tokenizer: str, depth: int) -> list[list[ScoredChunk]]:
    """BM25 top-``depth`` per query with one tokeniser (bm25s, in process)."""
    index = LexicalIndex(tokenizer)
    index.upsert(chunks_of(ds.docs))
    return [index.search(c.question, depth) for c in ds.cases]


def sources(hits: Sequence[ScoredChunk]) -> list[str]:
    """Document ids in rank order."""
    return [h.chunk.source for h in hits]


async def through_store(ds: LoadedSet, url: str, settings: RetrievalSettings, workdir: Path) -> list[list[str]]:
    """The default hybrid run through a real store backend (memory, chroma, milvus+lite)."""
    cfg = Settings(
        store=StoreSettings(url=url, collection=f"bench_{ds.name}"), retrieval=settings, data_dir=workdir / "data"
    )
    store: VectorStore = make_store(cfg)
    embedder = CachedEmbedder({c.question: q for c, q in zip(ds.cases, ds.queries, strict=True)})
    await store.open(embedder.info, create=True)
    try:
        chunks = chunks_of(ds.docs)
        for start in range(0, len(chunks), 500):
            await store.upsert(chunks[start : start + 500], ds.vectors[start : start + 500])
        retriever = Retriever(store, embedder, settings)
        # The configured candidate depth (RAG_RETRIEVAL__CANDIDATES), exactly as Pipeline.search ranks.
        return [sources((await retriever.rank(c.question)).hits) for c in ds.cases]
    finally:
        await store.close()


async def run_set(
    ds: LoadedSet, settings: RetrievalSettings, stores: Sequence[str], workdir: Path
) -> dict[str, object]:
    """Every method on one set; store parity runs when ``stores`` names backends."""
    rows: dict[str, dict[str, dict[str, float]]] = {}
    dense = dense_rankings(ds, DEPTH)
    rows["dense (MiniLM)"] = score_split([sources(r) for r in dense], ds.cases)
    lexical: dict[str, list[list[ScoredChunk]]] = {}
    for tok in TOKENIZERS:
        start = time.perf_counter()
        lexical[tok] = bm25_rankings(ds, tok, DEPTH)
        rows[f"BM25 {tok}"] = score_split([sources(r) for r in lexical[tok]], ds.cases)
        log.info("%s: BM25 %s in %.1f s", ds.name, tok, time.perf_counter() - start)
    plain = [fuse([(1.0, d), (1.0, b)], 60) for d, b in zip(dense, lexical[settings.tokenizer], strict=True)]
    rows[f"plain RRF (k=60, dense + BM25 {settings.tokenizer})"] = score_split([sources(r) for r in plain], ds.cases)
    memory = await through_store(ds, "memory://", settings, workdir)
    rows["default hybrid"] = score_split(memory, ds.cases)
    parity: dict[str, dict[str, float]] = {}
    for backend in stores:
        url = {
            "memory": "memory://",
            "chroma": f"chroma://{workdir}/chroma",
            "milvus+lite": f"milvus+lite://{workdir}/milvus/bench.db",
        }[backend]
        start = time.perf_counter()
        parity[backend] = score(await through_store(ds, url, settings, workdir), ds.cases)
        log.info("%s: default hybrid through %s in %.1f s", ds.name, backend, time.perf_counter() - start)
    held_out = len(ds.cases) - len(dev_ids(ds.cases))
    return {"queries": len(ds.cases), "held_out": held_out, "docs": len(ds.docs), "methods": rows, "stores": parity}


def markdown(results: dict[str, dict[str, object]], meta: dict[str, object]) -> str:
    """The results as Markdown tables: one per set, plus store parity when measured."""
    lines = [
        f"Machine: {meta['machine']}; embedder {MINILM_ID}; BM25 k1={BM25_K1} b={BM25_B}; title + text indexed; "
        f"wall time {meta['wall_s']} s. Held-out: the half of each set's queries no parameter was tuned on.",
        "",
    ]
    for name, res in results.items():
        lines += [f"**{name}** ({res['queries']} queries, {res['docs']} documents)", ""]
        for part, label in (("full", "full set"), ("held_out", f"held-out half ({res['held_out']} queries)")):
            lines += [f"| method, {label} | " + " | ".join(METRICS) + " |", "|---|" + "---|" * len(METRICS)]
            for method, split in res["methods"].items():  # type: ignore[attr-defined]
                m = split[part]
                lines.append(f"| {method} | " + " | ".join(f"{m[k]:.3f}" for k in METRICS) + " |")
            lines.append("")
        if res["stores"]:
            lines += ["| default hybrid through | " + " | ".join(METRICS) + " |", "|---|" + "---|" * len(METRICS)]
            for backend, m in res["stores"].items():  # type: ignore[attr-defined]
                lines.append(f"| {backend} | " + " | ".join(f"{m[k]:.3f}" for k in METRICS) + " |")
            lines.append("")
    return "\n".join(lines)


async def main(argv: Sequence[str] | None = None) -> None:
    """Parse options, run every set, write JSON and Markdown."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data", help="folder of the shared data sets")
    ap.add_argument("--out", type=Path, default=Path("bench-results"), help="where retrieval.json/.md go")
    ap.add_argument("--cache", type=Path, default=Path("benchmarks/.cache"), help="embedding cache folder")
    ap.add_argument("--sets", default=",".join(SETS), help="comma-separated subset of " + ",".join(SETS))
    ap.add_argument("--stores", default="", help="also run the default hybrid through: memory,chroma,milvus+lite")
    add_data_options(ap, corpus="your documents (any format ingestion reads) instead of the shared sets; needs "
                     "--questions", questions="your eval cases with gold sources naming files of --corpus")  # fmt: skip
    args = ap.parse_args(argv)
    check_data_options(args)
    if args.corpus is not None and args.questions is None:
        raise SystemExit("--corpus needs --questions (retrieval quality is measured against gold sources)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    start = time.perf_counter()
    settings = RetrievalSettings()
    embedder = None
    results: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        embedder = make_embedder(Settings())
        stores = [s for s in args.stores.split(",") if s]
        if args.corpus is not None:
            ds = await load_own(args.corpus, args.questions, args.cache, embedder, "minilm")
            results[ds.name] = await run_set(ds, settings, stores, Path(tmp) / "own")
        for name in [s for s in args.sets.split(",") if s] if args.corpus is None else []:
            ds = await load_set(name, args.data, args.cache, embedder, "minilm")
            results[name] = await run_set(ds, settings, stores, Path(tmp) / name)
    meta = {
        "machine": f"{os.cpu_count()} CPU cores, no GPU, {platform.machine()}, Python {platform.python_version()}",
        "wall_s": round(time.perf_counter() - start, 1),
        "settings": settings.model_dump(),
    }
    run = {"machine": machine(), "command": command(), "date": now(), "wall_s": meta["wall_s"]}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "retrieval.json").write_text(json.dumps({"meta": meta | run, "results": results}, indent=2))
    body = markdown(results, meta)
    (args.out / "retrieval.md").write_text(body + "\n")
    shown = {
        "sets": ", ".join(results),
        "stores": args.stores or "in-process indexes",
        "retrieval": "defaults (RetrievalSettings())",
        "embedder": "st://all-MiniLM-L6-v2, embed.backend = auto",
    }
    print(write_page(args.page, title="Benchmark: retrieval", what=WHAT, run=run, settings=shown, body=body))


if __name__ == "__main__":
    asyncio.run(main())
