"""One measurement of the scale benchmark, in a process of its own (so its memory is the store's alone).

``python -m benchmarks.scaling.measure MODE STORE SPEC OUT``: MODE ``ingest`` writes the corpus of ``SPEC``
(the size's ``spec.json``) into the store; ``search`` opens it in a fresh process and times dense, lexical
and hybrid searches under each ACL selectivity (the memory store, which keeps nothing on disk, does both in
one process). STORE ``lexical`` measures the BM25 index on its own: ``ingest`` builds and saves it,
``search`` loads it and searches. The result is JSON in ``OUT``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from benchmarks.scaling import corpus  # noqa: E402
from rag.types import EmbedderInfo, ScoredChunk  # noqa: E402

BATCH = 1000  # chunks per upsert call (the ingest worker writes a few embedding batches at a time)
WARM = 5  # untimed queries before each timed kind


# --- process memory -------------------------------------------------------------------------------


def _status(pid: int) -> dict[str, int]:
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssFile"):
                out[key] = int(value.split()[0])
    except OSError:
        pass
    return out


def _tree(pid: int) -> list[int]:
    """The process and all its descendants (Milvus Lite runs its server as a child process)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                todo += [int(c) for c in task.read_text().split()]
    return out


def memory_mb() -> dict[str, float]:
    """Resident memory of this process and its children, MiB: now, the peak, and the file-backed part."""
    parts = [_status(p) for p in _tree(__import__("os").getpid())]
    return {
        "rss_mb": sum(s.get("VmRSS", 0) for s in parts) / 1024,
        "peak_mb": sum(s.get("VmHWM", 0) for s in parts) / 1024,
        "file_mb": sum(s.get("RssFile", 0) for s in parts) / 1024,
    }


def disk_mb(paths: Sequence[Path]) -> float:
    """Bytes under the paths, MiB."""
    total = 0
    for path in paths:
        if path.is_file():
            total += path.stat().st_size
        elif path.is_dir():
            total += sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return total / 2**20


# --- the query side -------------------------------------------------------------------------------


class TableEmbedder:
    """Query vectors looked up by text: the corpus's vectors were made beforehand (generated, or MiniLM).

    A benchmark stand-in for the embedder, so hybrid timings hold retrieval alone; the embedder's own cost is
    measured apart (``embed_query`` of MiniLM, in the 10k run and the service run).
    """

    def __init__(self, info: EmbedderInfo, table: dict[str, np.ndarray]) -> None:
        self._info = info
        self._table = table

    @property
    def info(self) -> EmbedderInfo:
        """The identity the collection recorded."""
        return self._info

    async def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """Not used: documents come with their vectors."""
        raise NotImplementedError("the scale benchmark's documents come with their vectors")

    async def embed_query(self, text: str) -> np.ndarray:
        """The query's precomputed vector."""
        return self._table[text]

    async def close(self) -> None:
        """Nothing to release."""


def pct(values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) of values, by nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def summary_ms(seconds: Sequence[float], rounds: Sequence[Sequence[float]]) -> dict[str, Any]:
    """p50/p99 over every timed call, and the spread of the per-round medians, milliseconds."""
    medians = [statistics.median(r) * 1000 for r in rounds if r]
    return {
        "p50_ms": round(pct(seconds, 0.5) * 1000, 3),
        "p99_ms": round(pct(seconds, 0.99) * 1000, 3),
        "round_p50_ms": [round(m, 3) for m in medians],
        "calls": len(seconds),
    }


def settings_for(spec: dict[str, Any], store: str) -> Any:
    """The project's default settings with this size's store URL and data folder."""
    from rag.config import load

    return load(data_dir=spec["stores"][store]["data_dir"], store={"url": spec["stores"][store]["url"]})


def open_store(spec: dict[str, Any], store: str) -> Any:
    """The configured store (not opened)."""
    from rag.registry import make_store

    return make_store(settings_for(spec, store))


def info_of(spec: dict[str, Any]) -> EmbedderInfo:
    """The embedder identity the collections record (the bundled model's, so the service opens them)."""
    return EmbedderInfo(id=spec["embedder_id"], dim=spec["dim"])


def pool_of(spec: dict[str, Any]) -> corpus.Pool:
    """The sentence pool this size's texts are generated from."""
    return corpus.Pool.from_json(json.loads(Path(spec["pool"]).read_text(encoding="utf-8")))


async def ingest(spec: dict[str, Any], store: Any) -> dict[str, Any]:
    """Write every chunk with its vector, BATCH at a time; upsert and close (flush, index save) timed apart."""
    n, pool = spec["n"], pool_of(spec)
    vectors = np.load(spec["vectors"], mmap_mode="r")
    await store.open(info_of(spec), create=True)
    batch: list[Any] = []
    upsert_s = 0.0
    done = 0
    for chunk in corpus.chunks(pool, n, spec["seed"]):
        batch.append(chunk)
        if len(batch) == BATCH or done + len(batch) == n:
            arr = np.array(vectors[done : done + len(batch)])
            t = time.perf_counter()
            await store.upsert(batch, arr)
            upsert_s += time.perf_counter() - t
            done += len(batch)
            batch = []
            if done % (20 * BATCH) == 0:
                print(f"  {done}/{n} chunks", file=sys.stderr, flush=True)
    del vectors
    return {"chunks": done, "upsert_s": round(upsert_s, 2), "chunks_per_s": round(done / upsert_s, 1)}


async def timed_searches(spec: dict[str, Any], store: Any, settings: Any, rounds: int) -> dict[str, Any]:
    """Dense (depth = candidates), lexical (same depth) and hybrid (``Retriever.search``, k 10) per selectivity.

    Rounds alternate the kinds query by query; recall needs the dense top-10, taken in the first round.
    """
    from rag.retrieval import Retriever, route

    queries, qvec = corpus.spec_queries(spec)
    table = {q["text"]: qvec[i] for i, q in enumerate(queries)}
    retriever = Retriever(store, TableEmbedder(info_of(spec), table), settings.retrieval)
    depth, k = settings.retrieval.candidates, 10
    plans = [route(q["text"], settings.retrieval, retriever.dense_langs) for q in queries]
    out: dict[str, Any] = {}
    top10: dict[str, list[list[str]]] = {}
    for sel, flt in corpus.SELECTIVITIES.items():
        times: dict[str, list[list[float]]] = {kind: [] for kind in ("dense", "lexical", "hybrid", "calls")}
        for i in range(min(WARM, len(queries))):
            await store.search(qvec[i], depth, flt)
            await store.search_text(queries[i]["text"], depth, flt)
            await retriever.search(queries[i]["text"], k, flt)
        ids10: list[list[str]] = []
        for r in range(rounds):
            row: dict[str, list[float]] = {kind: [] for kind in times}
            for i, q in enumerate(queries):
                t = time.perf_counter()
                await store.search(qvec[i], depth, flt)
                dense = time.perf_counter() - t
                t = time.perf_counter()
                await store.search_text(q["text"], depth, flt)
                lexical = time.perf_counter() - t
                t = time.perf_counter()
                await retriever.search(q["text"], k, flt)
                hybrid = time.perf_counter() - t
                row["dense"].append(dense)
                row["lexical"].append(lexical)
                row["hybrid"].append(hybrid)
                # What this query's hybrid retrieval asks of the store: a Korean query skips dense.
                plan = plans[i]
                row["calls"].append(dense * (plan.dense_weight > 0) + lexical * (plan.lexical_weight > 0))
                if r == 0:
                    hits: list[ScoredChunk] = await store.search(qvec[i], k, flt)
                    ids10.append([h.chunk.id for h in hits])
            for kind in times:
                times[kind].append(row[kind])
        flat = {kind: [x for r in rows for x in r] for kind, rows in times.items()}
        out[str(sel)] = {kind: summary_ms(flat[kind], times[kind]) for kind in ("dense", "lexical", "hybrid")}
        out[str(sel)]["store_calls"] = summary_ms(flat["calls"], times["calls"])
        ratios = [
            statistics.median(h) / statistics.median(c) for h, c in zip(times["hybrid"], times["calls"], strict=False)
        ]
        out[str(sel)]["hybrid_over_store_calls"] = round(statistics.median(ratios), 3)
        top10[str(sel)] = ids10
    return {"searches": out, "top10": top10, "queries": len(queries), "rounds": rounds, "depth": depth}


def index_params(store: Any) -> dict[str, Any]:
    """The vector index the adapter configures, and what the store reports of it."""
    name = type(store).__name__
    if name == "MemoryStore":
        return {"type": "exact (brute force, numpy)", "params": {}}
    if name == "ChromaStore":
        from rag.stores import chroma

        return {"type": "HNSW (hnswlib, Chroma)", "params": dict(chroma._HNSW)}
    if name == "MilvusStore":
        from rag.stores import milvus

        out: dict[str, Any] = {
            "type": "HNSW (as configured)",
            "params": {"M": 16, "efConstruction": 200, "ef": milvus._EF},
        }
        client = getattr(store, "_client", None)
        if client is not None:
            try:
                out["reported"] = client.describe_index(store.name, "vector")
            except Exception as e:  # a report only; the measurement stands without it
                out["reported"] = f"describe_index failed: {e}"
        return out
    return {"type": name, "params": {}}


def warm_libraries(tokenizer: str) -> None:
    """Load what every size loads alike (SDKs, the Korean analyser, bm25s) before the baseline is read.

    So the memory figures hold the data, not the libraries (Kiwi alone is about 300 MB).
    """
    import importlib

    from rag.lexical.tokens import make_tokenizer

    for module in ("bm25s", "chromadb", "pymilvus", "milvus_lite"):
        with contextlib.suppress(ModuleNotFoundError):
            importlib.import_module(module)
    make_tokenizer(tokenizer)("한국어 문장을 나눕니다 and English words")
    gc.collect()


async def store_run(mode: str, name: str, spec: dict[str, Any], rounds: int) -> dict[str, Any]:
    """Ingest, or open and search, one store; the memory store does both."""
    settings = settings_for(spec, name)
    store = open_store(spec, name)
    warm_libraries(settings.retrieval.tokenizer)
    base = memory_mb()
    result: dict[str, Any] = {"store": name, "n": spec["n"], "baseline": base}
    paths = [Path(p) for p in spec["stores"][name]["paths"]]
    if mode == "ingest":
        t = time.perf_counter()
        result["ingest"] = await ingest(spec, store)
        if name != "memory":
            t_close = time.perf_counter()
            await store.close()
            result["ingest"]["close_s"] = round(time.perf_counter() - t_close, 2)
        result["ingest"]["wall_s"] = round(time.perf_counter() - t, 1)
        result["disk_mb"] = round(disk_mb(paths), 1)
        if name != "memory":
            result["memory_after_ingest"] = memory_mb()
            return result
    else:
        t = time.perf_counter()
        await store.open(info_of(spec), create=False)
        result["open_s"] = round(time.perf_counter() - t, 2)
    gc.collect()
    result["index"] = index_params(store)
    result["memory_open"] = memory_mb()
    t = time.perf_counter()
    result.update(await timed_searches(spec, store, settings, rounds))
    result["search_wall_s"] = round(time.perf_counter() - t, 1)
    result["memory_after_search"] = memory_mb()
    await store.close()
    if name == "chroma":
        result["reconcile_open_s"] = await reconcile_open(spec, store, settings.retrieval.tokenizer)
    return result


async def reconcile_open(spec: dict[str, Any], store: Any, tokenizer: str) -> float:
    """Seconds an open takes after a crash mid-write: the lexical file no longer claims to match, so open scans."""
    from rag.lexical.index import LexicalIndex

    lexical = LexicalIndex(tokenizer, store.local_dir("lexical") / f"{store.name}.sqlite3")
    lexical.set_synced(None)  # what a crash between the first write and the close leaves
    lexical.close()
    t = time.perf_counter()
    await store.open(info_of(spec), create=False)
    took = round(time.perf_counter() - t, 2)
    await store.close()
    return took


async def lexical_run(mode: str, spec: dict[str, Any], rounds: int) -> dict[str, Any]:
    """The BM25 index on its own: build and save (``ingest``), or load and search (``search``)."""
    from rag.config import load
    from rag.lexical.index import LexicalIndex

    tokenizer = load().retrieval.tokenizer
    path = Path(spec["stores"]["lexical"]["paths"][0]) / "index.json"
    warm_libraries(tokenizer)
    base = memory_mb()
    result: dict[str, Any] = {"store": "lexical", "n": spec["n"], "tokenizer": tokenizer, "baseline": base}
    index = LexicalIndex(tokenizer, path)
    first = corpus.SELECTIVITIES[100]
    if mode == "ingest":
        pool = pool_of(spec)
        t = time.perf_counter()
        batch = []
        for chunk in corpus.chunks(pool, spec["n"], spec["seed"]):
            batch.append(chunk)
            if len(batch) == BATCH:
                index.upsert(batch)
                batch = []
        if batch:
            index.upsert(batch)
        result["upsert_s"] = round(time.perf_counter() - t, 2)
        t = time.perf_counter()
        index.search("first search builds the index", 10, first)
        result["build_s"] = round(time.perf_counter() - t, 2)
        t = time.perf_counter()
        index.save()
        result["save_s"] = round(time.perf_counter() - t, 2)
        result["disk_mb"] = round(disk_mb([path.parent]), 1)
        result["memory_built"] = memory_mb()
        return result
    t = time.perf_counter()
    loaded = index.load()
    result["load_s"] = round(time.perf_counter() - t, 2)
    if not loaded:
        raise SystemExit(f"lexical index {path} did not load")
    t = time.perf_counter()
    index.search("first search builds the index", 10, first)
    result["build_s"] = round(time.perf_counter() - t, 2)
    gc.collect()
    result["memory_open"] = memory_mb()
    queries = corpus.spec_queries(spec)[0]
    depth = load().retrieval.candidates
    out = {}
    for sel, flt in corpus.SELECTIVITIES.items():
        for q in queries[:WARM]:
            index.search(q["text"], depth, flt)
        rows = []
        for _ in range(rounds):
            row = []
            for q in queries:
                t = time.perf_counter()
                index.search(q["text"], depth, flt)
                row.append(time.perf_counter() - t)
            rows.append(row)
        out[str(sel)] = {"lexical": summary_ms([x for r in rows for x in r], rows)}
    result["searches"] = out
    result["memory_after_search"] = memory_mb()
    return result


def main(argv: list[str]) -> None:
    """``MODE STORE SPEC OUT [ROUNDS]``."""
    mode, name, spec_path, out = argv[:4]
    rounds = int(argv[4]) if len(argv) > 4 else 3
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    started = time.perf_counter()
    if name == "lexical":
        result = asyncio.run(lexical_run(mode, spec, rounds))
    else:
        result = asyncio.run(store_run(mode, name, spec, rounds))
    result["wall_s"] = round(time.perf_counter() - started, 1)
    Path(out).write_text(json.dumps(result), encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1:])
