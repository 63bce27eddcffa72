"""Ingestion benchmark: chunks/s of `ingest_source` vs raw SentenceTransformer.encode of the same chunks,
no-change re-sync, 1 % changed re-sync, peak memory.

Usage:
    python benchmarks/ingest.py --data examples/docs
    python benchmarks/ingest.py --beir /work/shared/data/multihop_en/hotpotqa/beir/corpus.jsonl --docs 2000

``--beir`` writes the first N passages of a BEIR corpus out as Markdown files (one per passage)
into a temporary folder and benchmarks that folder. The store is Chroma embedded on a temporary
directory, the embedder the bundled all-MiniLM-L6-v2 (or ``--embed``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Run as `python benchmarks/ingest.py`, this file's folder comes first on sys.path and its name
# would hide the `ingest` package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from ingest.chunking import Chunker  # noqa: E402
from ingest.loaders import make_loader, parse  # noqa: E402
from ingest.worker import ingest_source  # noqa: E402
from rag.config import Settings  # noqa: E402
from rag.registry import make_embedder, make_store  # noqa: E402


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


async def chunk_texts(settings: Settings, embedder: Any, source: str) -> list[str]:
    loader = make_loader(source, settings.ingest)
    chunker = Chunker(settings.ingest.chunk_size, settings.ingest.chunk_overlap, embedder)
    texts: list[str] = []
    async for item in loader.items():
        if item.skip or item.error:
            continue
        doc = parse(item, await loader.fetch(item))
        texts.extend(c.text for c in chunker.chunks(doc, ingested_at=0.0))
    return texts


async def run(data: Path, embed_url: str) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="rag-bench-"))
    try:
        corpus = work / "docs"
        shutil.copytree(data, corpus)
        settings = Settings(data_dir=work / "state", store={"url": f"chroma://{work}/chroma"}, embed={"url": embed_url})
        embedder = make_embedder(settings)
        texts = await chunk_texts(settings, embedder, str(corpus))
        encode = getattr(embedder, "encode", None)
        # Warm-up so neither side pays the first-call cost.
        await embedder.embed_documents(texts[:64])
        t = time.perf_counter()
        if encode is not None:
            encode(texts)
        raw_s = time.perf_counter() - t

        store = make_store(settings)
        await store.open(embedder.info, create=True)
        t = time.perf_counter()
        full = await ingest_source(settings, store, embedder, str(corpus))
        full_s = time.perf_counter() - t
        t = time.perf_counter()
        noop = await ingest_source(settings, store, embedder, str(corpus))
        noop_s = time.perf_counter() - t
        files = sorted(p for p in corpus.rglob("*.md"))
        changed = files[:: max(1, len(files) // max(1, len(files) // 100))][: max(1, len(files) // 100)]
        for p in changed:
            p.write_text(p.read_text(encoding="utf-8") + "\n\nEdited for the benchmark.\n", encoding="utf-8")
        t = time.perf_counter()
        one = await ingest_source(settings, store, embedder, str(corpus))
        one_s = time.perf_counter() - t
        await store.close()
        return {
            "corpus": str(data),
            "documents": full.added,
            "chunks": full.chunks_added,
            "raw_encode_s": round(raw_s, 2),
            "raw_chunks_per_s": round(len(texts) / raw_s, 1) if raw_s else None,
            "ingest_s": round(full_s, 2),
            "ingest_chunks_per_s": round(full.chunks_added / full_s, 1),
            "ingest_vs_raw": round((full.chunks_added / full_s) / (len(texts) / raw_s), 3) if raw_s else None,
            "noop_resync_s": round(noop_s, 3),
            "noop_vs_full": round(noop_s / full_s, 4),
            "noop_embedded": noop.chunks_embedded,
            "noop_added_deleted": noop.chunks_added + noop.chunks_deleted,
            "one_percent_docs_changed": len(changed),
            "one_percent_resync_s": round(one_s, 2),
            "one_percent_embedded": one.chunks_embedded,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, help="folder of documents")
    parser.add_argument("--beir", type=Path, help="BEIR corpus.jsonl to write out as files")
    parser.add_argument("--docs", type=int, default=2000, help="passages taken from --beir")
    parser.add_argument("--embed", default="st://all-MiniLM-L6-v2")
    args = parser.parse_args()
    tmp = None
    data = args.data
    if args.beir:
        tmp = Path(tempfile.mkdtemp(prefix="rag-beir-"))
        data = write_beir(args.beir, tmp / "corpus", args.docs)
    if data is None:
        parser.error("give --data or --beir")
    try:
        result = asyncio.run(run(data, args.embed))
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    result["machine"] = f"{platform.machine()} {platform.processor() or ''} python {platform.python_version()}".strip()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
