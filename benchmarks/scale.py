"""Scale: ingest rate, search latency, recall, memory and disk of each store from 10k to 1M chunks.

``.venv/bin/python benchmarks/scale.py [--sizes 10k,100k,1m] [--stores memory,milvus,chroma]`` builds a
synthetic corpus per size (``benchmarks/scaling/corpus.py``: sentences of the public sets, Korean and
English, chunk lengths like real ones; MiniLM vectors up to ``--real-max`` chunks, clustered generated unit
vectors beyond), writes it into each store in a process of its own, then opens it in a fresh process and
times dense, lexical and hybrid search (the project's ``Retriever``) under ACL filters admitting 1 %, 10 %
and 100 % of the chunks, in alternating rounds. Recall@10 of each store's dense top-10 is taken against the
in-memory store's brute force (the oracle; numpy's exact search, the same computation, where the memory
store was not run at that size). The BM25 index kept beside the memory and Chroma stores is measured on its
own too (build, save, load, memory, queries). ``--service``: at the largest size, the real service
(``rag serve``'s uvicorn app) over the default store, against the same retrieval in process and the store
calls it makes (``benchmarks/scaling/service.py``).

``--merge`` keeps the results of an earlier run's JSON for the sizes and stores not run again, so sizes can
be run one at a time. ``--resume`` reuses ``--work``'s corpus and finished measurements; with a smaller
``--queries`` than the size was prepared with, the measurements still to make use the first that many.
Every figure is reported with the machine, command and settings, per size and per million chunks.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.scaling import corpus  # noqa: E402

STORES = {
    "memory": "memory://",
    "milvus": "milvus+lite://{dir}/milvus/rag.db",
    "chroma": "chroma://{dir}/chroma/chroma",
}
ORDER = ("memory", "lexical", "milvus", "chroma")
MEMORY_BUDGET_MB = 6000  # the memory store runs at a size only if its measured memory scales to fit this


def parse_size(text: str) -> int:
    """``10k``, ``1m``, ``2500``: a chunk count."""
    t = text.strip().lower()
    mult = {"k": 1_000, "m": 1_000_000}.get(t[-1:], 1)
    return int(float(t[:-1] if mult > 1 else t) * mult)


def label(n: int) -> str:
    """A chunk count as the page writes it (10k, 1m)."""
    if n % 1_000_000 == 0:
        return f"{n // 1_000_000}m"
    if n % 1000 == 0:
        return f"{n // 1000}k"
    return str(n)


def env() -> dict[str, str]:
    """The workers' environment: this tree first on the path, offline, no telemetry, only project settings."""
    out = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    out.update(
        {
            "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p),
            "HF_HUB_OFFLINE": "1",
            "ANONYMIZED_TELEMETRY": "False",
            "TOKENIZERS_PARALLELISM": "false",
            "RAG_LOG_LEVEL": "WARNING",
        }
    )
    return out


def embedder_identity() -> tuple[str, int, Any]:
    """The default embedder's identity (what the collections record, so the service opens them) and itself."""
    from rag.config import load
    from rag.registry import make_embedder

    embedder = make_embedder(load())
    return embedder.info.id, embedder.info.dim, embedder


async def real_vectors(embedder: Any, pool: corpus.Pool, n: int, seed: int, path: Path) -> dict[str, Any]:
    """MiniLM vectors of every chunk text, written to ``path``; returns the embedding rate."""
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, corpus.DIM))
    batch: list[str] = []
    done = 0
    t = time.perf_counter()
    for _, text in corpus.texts(pool, n, seed):
        batch.append(text)
        if len(batch) == 512 or done + len(batch) == n:
            out[done : done + len(batch)] = await embedder.embed_documents(batch)
            done += len(batch)
            batch = []
    out.flush()
    del out
    seconds = time.perf_counter() - t
    return {"chunks": n, "seconds": round(seconds, 1), "chunks_per_s": round(n / seconds, 1)}


async def real_query_vectors(embedder: Any, texts: list[str]) -> tuple[np.ndarray, dict[str, Any]]:
    """MiniLM query vectors, each timed (the embedder's share of a real query)."""
    rows, times = [], []
    for text in texts[:5]:
        await embedder.embed_query(text)
    for text in texts:
        t = time.perf_counter()
        rows.append(await embedder.embed_query(text))
        times.append(time.perf_counter() - t)
    from benchmarks.scaling.measure import pct

    return np.stack(rows).astype(np.float32), {"p50_ms": round(pct(times, 0.5) * 1000, 2),
                                               "p99_ms": round(pct(times, 0.99) * 1000, 2)}  # fmt: skip


def prepare(size_dir: Path, n: int, pool: corpus.Pool, args: argparse.Namespace, ident: tuple[str, int, Any]) -> dict:
    """Write one size's spec: pool, vectors, queries and query vectors, store locations."""
    size_dir.mkdir(parents=True, exist_ok=True)
    (size_dir / "pool.json").write_text(json.dumps(pool.to_json(), ensure_ascii=False), encoding="utf-8")
    vectors = size_dir / "vectors.npy"
    real = n <= args.real_max
    t = time.perf_counter()
    queries = corpus.query_texts(pool, n, args.seed, args.queries)
    if args.questions is not None:
        from benchmarks.common import load_questions

        asked = [c.question for c in load_questions(args.questions)][: args.queries]
        queries = [(queries[i % len(queries)][0], q) for i, q in enumerate(asked)]
    info: dict[str, Any] = {"vectors": "MiniLM (the bundled embedder)" if real else "generated, clustered"}
    if real:
        embedder = ident[2]
        info["embed_documents"] = asyncio.run(real_vectors(embedder, pool, n, args.seed, vectors))
        qvec, info["embed_query"] = asyncio.run(real_query_vectors(embedder, [q for _, q in queries]))
    else:
        cluster = corpus.generated_vectors(n, args.seed, vectors)
        centres = np.load(vectors.with_suffix(".centres.npy"))
        qvec = corpus.generated_query_vectors(args.seed, centres, [int(cluster[i]) for i, _ in queries])
        info["centres"] = len(centres)
        info["noise_norm"] = corpus.NOISE
    np.save(size_dir / "query_vectors.npy", qvec)
    rows = [{"from_chunk": i, "text": q} for i, q in queries]
    (size_dir / "queries.json").write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    info["prepare_s"] = round(time.perf_counter() - t, 1)
    stores: dict[str, Any] = {}
    for name in ORDER:
        folder = size_dir / name
        url = STORES.get(name, "").format(dir=size_dir)
        stores[name] = {"url": url, "data_dir": str(folder), "paths": [str(folder)]}
    spec = {
        "n": n,
        "seed": args.seed,
        "dim": ident[1],
        "embedder_id": ident[0],
        "pool": str(size_dir / "pool.json"),
        "vectors": str(vectors),
        "queries": str(size_dir / "queries.json"),
        "query_vectors": str(size_dir / "query_vectors.npy"),
        "stores": stores,
        "corpus": info,
    }
    (size_dir / "spec.json").write_text(json.dumps(spec, indent=1), encoding="utf-8")
    return spec


def worker(mode: str, name: str, size_dir: Path, rounds: int, timeout_s: float, resume: bool = False) -> dict[str, Any]:
    """One measurement in its own process; its JSON result (or the error it died of).

    ``resume``: a result an interrupted run already wrote for this measurement is taken as it is.
    """
    out = size_dir / f"{name}.{mode}.json"
    if resume and out.is_file():
        return json.loads(out.read_text(encoding="utf-8"))  # type: ignore[no-any-return]
    out.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "benchmarks.scaling.measure", mode, name, str(size_dir / "spec.json"), str(out),
           str(rounds)]  # fmt: skip
    t = time.perf_counter()
    try:
        done = subprocess.run(cmd, cwd=REPO, env=env(), timeout=timeout_s, stderr=subprocess.PIPE, text=True)
    except subprocess.TimeoutExpired:
        return {"error": f"{mode} did not finish in {timeout_s:.0f} s"}
    if done.returncode != 0 or not out.is_file():
        return {"error": f"{mode} exited {done.returncode}: {done.stderr[-1500:]}"}
    result = json.loads(out.read_text(encoding="utf-8"))
    result["process_wall_s"] = round(time.perf_counter() - t, 1)
    out.write_text(json.dumps(result), encoding="utf-8")
    return result


def exact_top10(spec: dict[str, Any]) -> dict[str, list[list[str]]]:
    """Brute-force top-10 per selectivity and query: numpy cosine over the admitted chunks (the memory store's)."""
    vectors = np.load(spec["vectors"], mmap_mode="r")
    qvec = corpus.spec_queries(spec)[1]
    n = spec["n"]
    out: dict[str, list[list[str]]] = {}
    step = {1: 100, 10: 10, 100: 1}
    for sel in corpus.SELECTIVITIES:
        rows = np.arange(0, n, step[sel])
        best = np.full((len(qvec), 10), -np.inf)
        best_ids = np.zeros((len(qvec), 10), dtype=np.int64)
        for start in range(0, len(rows), 200_000):
            part = rows[start : start + 200_000]
            scores = qvec @ np.asarray(vectors[part]).T
            both = np.concatenate([best, scores], axis=1)
            ids = np.concatenate([best_ids, np.broadcast_to(part, scores.shape)], axis=1)
            top = np.argsort(-both, axis=1, kind="stable")[:, :10]
            best = np.take_along_axis(both, top, axis=1)
            best_ids = np.take_along_axis(ids, top, axis=1)
        # Fewer admitted chunks than 10: only those (the rest of the row is padding).
        out[str(sel)] = [[f"s{int(i):08d}" for i in row[: min(10, len(rows))]] for row in best_ids]
    return out


def recall(found: dict[str, list[list[str]]], oracle: dict[str, list[list[str]]]) -> dict[str, float]:
    """Mean share of the oracle's top-10 that a store's top-10 holds, per selectivity."""
    out = {}
    for sel, rows in found.items():
        truth = oracle[sel]
        hits = [len(set(a) & set(b)) / max(1, len(b)) for a, b in zip(rows, truth, strict=True)]
        out[sel] = round(float(np.mean(hits)), 4)
    return out


def per_million(n: int, value: float) -> float:
    """A figure scaled to one million chunks (linearly)."""
    return round(value * 1_000_000 / n, 1)


def figures(name: str, n: int, ingest: dict[str, Any], search: dict[str, Any]) -> dict[str, Any]:
    """The figures of one store at one size, and the same per million chunks."""
    base = search.get("baseline", {}).get("rss_mb", 0.0)
    rss = search.get("memory_after_search", {}).get("rss_mb", 0.0) - base
    disk = ingest.get("disk_mb", 0.0)
    row: dict[str, Any] = {
        "rss_mb": round(rss, 1),
        "peak_mb": round(search.get("memory_after_search", {}).get("peak_mb", 0.0), 1),
        "disk_mb": disk,
        "per_million": {"rss_mb": per_million(n, rss), "disk_mb": per_million(n, disk)},
    }
    if "ingest" in ingest:
        row["ingest_chunks_per_s"] = ingest["ingest"]["chunks_per_s"]
        row["ingest_wall_s"] = ingest["ingest"]["wall_s"]
        row["per_million"]["ingest_s"] = per_million(n, ingest["ingest"]["upsert_s"])
    for key in ("open_s", "reconcile_open_s"):
        if key in search:
            row[key] = search[key]
    row["search"] = {
        sel: {kind: {"p50_ms": v["p50_ms"], "p99_ms": v["p99_ms"]} for kind, v in kinds.items() if isinstance(v, dict)}
        for sel, kinds in search.get("searches", {}).items()
    }
    ratios = {sel: kinds["hybrid_over_store_calls"] for sel, kinds in search.get("searches", {}).items()
              if "hybrid_over_store_calls" in kinds}  # fmt: skip
    if ratios:
        row["hybrid_over_store_calls"] = ratios
    if "index" in search:
        row["index"] = search["index"]
    if name == "lexical":
        row["ingest_chunks_per_s"] = round(n / max(ingest["upsert_s"] + ingest["build_s"], 1e-9), 1)
        row["build_s"] = round(ingest["upsert_s"] + ingest["build_s"], 2)
        row["save_s"] = ingest["save_s"]
        row["load_s"] = round(search["load_s"] + search["build_s"], 2)
        row["per_million"].update({"build_s": per_million(n, row["build_s"]), "load_s": per_million(n, row["load_s"])})
    return row


def run_size(n: int, pool: corpus.Pool, args: argparse.Namespace, ident: tuple[str, int, Any],
             previous: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """Every store at one size: prepare, ingest, search, recall; the stores' folders removed unless kept."""
    size_dir = args.work / label(n)
    if args.resume and (size_dir / "spec.json").is_file():
        spec = json.loads((size_dir / "spec.json").read_text(encoding="utf-8"))
        # A resumed size may measure fewer queries than it was prepared with: the first --queries of them.
        prepared = len(json.loads(Path(spec["queries"]).read_text(encoding="utf-8")))
        if args.queries > prepared and args.questions is None:
            raise SystemExit(
                f"--resume: {size_dir} was prepared with {prepared} queries; --queries {args.queries} asks for more"
            )
        spec["query_count"] = min(args.queries, prepared)
        (size_dir / "spec.json").write_text(json.dumps(spec, indent=1), encoding="utf-8")
    else:
        if size_dir.exists():
            shutil.rmtree(size_dir)
        print(f"== {label(n)}: preparing", flush=True)
        spec = prepare(size_dir, n, pool, args, ident)
    result: dict[str, Any] = {"n": n, "corpus": spec["corpus"], "stores": {}}
    for name in ORDER:
        if name != "lexical" and name not in args.stores:
            continue
        if name == "lexical" and not args.lexical:
            continue
        if name == "memory" and not memory_fits(n, previous):
            result["stores"][name] = {"skipped": f"memory store left out: estimated over {MEMORY_BUDGET_MB} MB"}
            continue
        print(f"== {label(n)} {name}", flush=True)
        t = time.perf_counter()
        ingest = worker("ingest", name, size_dir, args.rounds, args.timeout_s, args.resume)
        search = ingest
        if name != "memory" and "error" not in ingest:
            search = worker("search", name, size_dir, args.rounds, args.timeout_s, args.resume)
        # The processes' own wall times (a resumed measurement keeps the time it took when it ran).
        walls = [
            r.get("process_wall_s") or r.get("wall_s") for r in ([ingest] if search is ingest else [ingest, search])
        ]
        wall = sum(w for w in walls if w) or round(time.perf_counter() - t, 1)
        entry: dict[str, Any] = {"ingest": ingest, "search": search, "wall_s": round(wall, 1)}
        if "error" not in search:
            entry["figures"] = figures(name, n, ingest, search)
        result["stores"][name] = entry
        print(f"   {name}: {entry['wall_s']} s {ingest.get('error', '')}{search.get('error', '')}", flush=True)
    memory = result["stores"].get("memory", {}).get("search", {})
    oracle_name = "memory store" if "top10" in memory else "numpy exact (the memory store's computation)"
    oracle = memory["top10"] if "top10" in memory else exact_top10(spec)
    result["oracle"] = oracle_name
    for entry in result["stores"].values():
        found = entry.get("search", {}).pop("top10", None) if isinstance(entry.get("search"), dict) else None
        if found is not None and "figures" in entry:
            entry["figures"]["recall_at_10"] = recall(found, oracle)
    if not args.keep and not (args.service and n == max(args.sizes)):
        shutil.rmtree(size_dir, ignore_errors=True)
    return result


def per_million_table(sizes: dict[str, Any]) -> dict[str, Any]:
    """Per store: the per-million figures at each size, and the marginal cost per million between sizes.

    Marginal = (figure at the larger size - figure at the smaller) per million chunks added, so fixed costs
    (a Milvus Lite server, Chroma's runtime) drop out; the figure to extrapolate from.
    """
    out: dict[str, Any] = {}
    for size, data in sorted(sizes.items(), key=lambda kv: kv[1]["n"]):
        for name, entry in data["stores"].items():
            f = entry.get("figures")
            if not f:
                continue
            row = out.setdefault(name, {"sizes": {}, "marginal": {}})
            row["sizes"][size] = {
                **f["per_million"],
                "ingest_chunks_per_s": f.get("ingest_chunks_per_s"),
                "recall_at_10": f.get("recall_at_10"),
                "search": f.get("search"),
                "rss_mb_total": f["rss_mb"],
                "disk_mb_total": f["disk_mb"],
                "n": data["n"],
            }
    for row in out.values():
        pts = sorted(row["sizes"].items(), key=lambda kv: kv[1]["n"])
        for (a, fa), (b, fb) in itertools.pairwise(pts):
            added = (fb["n"] - fa["n"]) / 1_000_000
            row["marginal"][f"{a}->{b}"] = {
                "rss_mb": round((fb["rss_mb_total"] - fa["rss_mb_total"]) / added, 1),
                "disk_mb": round((fb["disk_mb_total"] - fa["disk_mb_total"]) / added, 1),
            }
    return out


def memory_fits(n: int, previous: dict[str, Any]) -> bool:
    """Whether the memory store's measured memory at a smaller size, scaled to ``n``, stays in the budget."""
    smaller = [(r["n"], r["stores"].get("memory", {}).get("figures")) for r in previous.values()]
    known = [(m, f) for m, f in smaller if f and m < n]
    if not known:
        return n <= 100_000
    m, f = max(known, key=lambda x: x[0])
    return bool(f["rss_mb"] * n / m <= MEMORY_BUDGET_MB)


if __name__ == "__main__":
    from benchmarks.common import add_data_options, check_data_options, command, machine, now
    from benchmarks.scaling.page import page_text

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10k,100k,1m", help="chunk counts, comma-separated (10k, 1m, 2500)")
    parser.add_argument("--stores", default="memory,milvus,chroma", help="stores to measure: " + ", ".join(STORES))
    parser.add_argument("--no-lexical", dest="lexical", action="store_false", help="leave out the BM25 index rows")
    parser.add_argument("--queries", type=int, default=200, help="queries per size")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds over the queries")
    parser.add_argument("--real-max", type=int, default=10_000, help="sizes up to this get MiniLM vectors")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data", help="the public data sets")
    parser.add_argument("--work", type=Path, default=None, help="where the stores are built (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the stores' folders")
    parser.add_argument("--timeout-s", type=float, default=7200, help="longest one measurement process may take")
    parser.add_argument("--service", action="store_true", help="also the service at the largest size")
    parser.add_argument(
        "--service-only", action="store_true", help="only the service, over the largest size kept in --work (--keep)"
    )
    parser.add_argument("--service-store", default="chroma", choices=["chroma", "milvus"])
    parser.add_argument(
        "--resume", action="store_true", help="reuse --work's corpus and the measurements an interrupted run finished"
    )
    parser.add_argument("--merge", action="store_true", help="keep --out's results of sizes/stores not run now")
    parser.add_argument(
        "--merge-from", type=Path, action="append", default=[], help="also take the sizes of this result JSON"
    )
    parser.add_argument("--out", type=Path, default=REPO / "bench-results" / "scale.json")
    add_data_options(
        parser,
        corpus="build the chunk texts from this folder's documents instead of the public sets",
        questions="ask these eval cases' questions instead of generated ones",
    )
    args = parser.parse_args()
    check_data_options(args, questions_need_corpus=False)
    args.sizes = sorted(parse_size(s) for s in args.sizes.split(",") if s.strip())
    args.stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    unknown = set(args.stores) - set(STORES)
    if unknown:
        raise SystemExit(f"--stores: unknown {', '.join(sorted(unknown))}; known: {', '.join(STORES)}")
    started = time.perf_counter()
    pool = corpus.folder_pool(args.corpus) if args.corpus else corpus.shared_pool(args.data)
    ident = embedder_identity()
    previous: dict[str, Any] = {}
    if args.merge and args.out.is_file():
        previous = json.loads(args.out.read_text(encoding="utf-8")).get("sizes", {})
    temp = None
    if args.work is None:
        temp = Path(tempfile.mkdtemp(prefix="rag-scale-"))
        args.work = temp
    settings = {
        "sizes": ", ".join(label(n) for n in args.sizes),
        "stores": ", ".join(args.stores),
        "queries": args.queries,
        "rounds": args.rounds,
        "MiniLM vectors up to": args.real_max,
        "pool": pool.origin,
        "Korean share": corpus.KOREAN_SHARE,
        "seed": args.seed,
        "embedder id recorded": ident[0],
        "tokenizer": "default (kiwi)",
    }
    if args.service_only:
        if args.work is None:
            raise SystemExit("--service-only needs --work (the folder a run with --keep built the stores in)")
        args.merge = args.service = args.keep = True
    earlier = json.loads(args.out.read_text(encoding="utf-8")) if args.merge and args.out.is_file() else {}
    sizes: dict[str, Any] = dict(earlier.get("sizes", {}))
    commands_before = earlier.get("commands", [earlier["command"]] if "command" in earlier else [])
    for other_path in args.merge_from:
        other = json.loads(other_path.read_text(encoding="utf-8"))
        for size, data in other.get("sizes", {}).items():
            stores = {**sizes.get(size, {}).get("stores", {}), **data["stores"]}
            sizes[size] = {**data, "stores": stores}
        commands_before += other.get("commands", [other["command"]] if "command" in other else [])
        earlier["service"] = earlier.get("service") or other.get("service")
    result: dict[str, Any] = {"service": earlier.get("service")}

    def write() -> None:
        """The JSON and the page of what is done so far (rewritten after each size)."""
        from benchmarks.common import write_outputs

        # A merged result was measured by several commands: the page names each.
        commands = [*commands_before, command()]
        settings["sizes"] = ", ".join(sorted(sizes, key=lambda k: sizes[k]["n"]))
        settings["stores"] = ", ".join(s for s in STORES if any(s in size["stores"] for size in sizes.values()))
        run = {
            "machine": machine(),
            "commands": commands,
            "command": "`, then `".join(commands),
            "date": now(),
            "wall_s": round(time.perf_counter() - started),
        }
        result.update({**run, "settings": settings, "sizes": sizes, "per_million": per_million_table(sizes)})
        page = page_text(result, args.page)
        text = json.dumps(result, indent=1, ensure_ascii=False)
        write_outputs(args.out.parent, args.out.stem, text, page, args.page)

    try:
        for n in [] if args.service_only else args.sizes:
            fresh = run_size(n, pool, args, ident, sizes)
            if args.merge and label(n) in sizes:
                kept = {k: v for k, v in sizes[label(n)]["stores"].items() if k not in fresh["stores"]}
                fresh["stores"] = {**kept, **fresh["stores"]}
            sizes[label(n)] = fresh
            write()
        if args.service:
            from benchmarks.scaling.service import service_run

            largest = max(args.sizes)
            print(f"== service at {label(largest)} ({args.service_store})", flush=True)
            t = time.perf_counter()
            try:
                result["service"] = service_run(args.work / label(largest), args.service_store, args.rounds, env())
            except (RuntimeError, OSError) as e:
                result["service"] = {"error": f"{type(e).__name__}: {e}"}
            result["service"]["wall_s"] = round(time.perf_counter() - t, 1)
            write()
            if not args.keep:
                shutil.rmtree(args.work / label(largest), ignore_errors=True)
    finally:
        if temp is not None and not args.keep:
            shutil.rmtree(temp, ignore_errors=True)
    run = {"wall_s": round(time.perf_counter() - started)}
    print(f"wrote {args.out} ({run['wall_s']} s)")
