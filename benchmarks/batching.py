"""Embedding batch plans: encode rate by batch size and padded-token budget (chooses ``embed.batch_tokens``).

Usage:
    python benchmarks/batching.py --data /work/shared/data --out bench-results/batching.json
    python benchmarks/batching.py --corpus ~/our-docs --questions our-cases.jsonl

The chunks are exactly what ingestion makes of the sample handbook (examples/docs: English and Korean) and of the
first ``--docs`` HotpotQA BEIR passages (chunk size 300 / overlap 40 MiniLM tokens, capped at the model's 254),
or of ``--corpus DIR``; ``--questions FILE`` adds the questions of an eval case file as one more workload (what
a query embeds). Each plan is cut by ``ingest.worker.plan_batches`` from the token counts, as ingestion does, and
every batch is one ``encode`` call of the bundled all-MiniLM-L6-v2 (``--backend``, default: the default
settings' ``auto``); plans are interleaved over ``--rounds`` rounds and the median chunks/s is reported.
``budget 0`` is plain length-sorted batches of 64.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from benchmarks.common import (  # noqa: E402
    add_data_options,
    check_data_options,
    command,
    load_questions,
    machine,
    now,
    write_page,
)

WHAT = """\
What is measured: the encode rate (chunks/s) of the bundled MiniLM embedder over the chunks ingestion makes,
cut into batches by `ingest.worker.plan_batches` (length-sorted; at most `batch size` texts and `token budget`
padded tokens per call), one `encode` call per batch, every plan interleaved within each round; medians over
the rounds. It is what chooses the default `embed.batch_tokens`.
"""
PLANS = [(64, 0), (64, 8192), (64, 4096), (64, 3072), (64, 2048), (64, 1536), (64, 1024), (16, 0), (8, 0)]


def ingest_benchmark() -> Any:
    """benchmarks/ingest.py as a module (its corpus writer and chunk texts); a plain import of ``ingest``
    would find the package of that name."""
    spec = importlib.util.spec_from_file_location("ingest_benchmark", Path(__file__).with_name("ingest.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data", help="shared data folder")
    parser.add_argument("--out", type=Path, default=Path("bench-results/batching.json"))
    parser.add_argument("--docs", type=int, default=500, help="HotpotQA passages")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backend", default="auto", help="st:// inference backend (default: auto, the default)")
    add_data_options(
        parser,
        corpus="chunk this folder (any format ingestion reads) instead of the handbook and HotpotQA",
        questions="also encode the questions of this eval case file (the query workload)",
    )
    args = parser.parse_args()
    check_data_options(args, questions_need_corpus=False)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from ingest.chunking import Chunker
    from ingest.worker import plan_batches
    from rag.config import Settings
    from rag.embedders.st import SentenceTransformerEmbedder, bundled_minilm_path

    started = time.perf_counter()
    embedder = SentenceTransformerEmbedder(
        bundled_minilm_path(),
        "all-MiniLM-L6-v2",
        backend=args.backend,
        cache_dir=Path(tempfile.gettempdir()) / "rag-models",
    )
    bench = ingest_benchmark()
    settings = Settings(ingest={"chunk_size": bench.CHUNK_SIZE, "chunk_overlap": bench.CHUNK_OVERLAP})
    with tempfile.TemporaryDirectory() as tmp:
        if args.corpus is not None:
            folders = [(args.corpus.name, args.corpus)]
        else:
            hotpot = bench.write_beir(args.data / bench.HOTPOT / "corpus.jsonl", Path(tmp) / "hotpot", args.docs)
            folders = [("examples/docs", REPO / "examples" / "docs"), (f"hotpotqa {args.docs}", hotpot)]
        corpora = {name: asyncio.run(bench.chunk_texts(settings, embedder, str(path))) for name, path in folders}
    if args.questions is not None:
        corpora[f"questions of {args.questions.name}"] = [c.question for c in load_questions(args.questions)]
    chunker = Chunker(settings.ingest.chunk_size, settings.ingest.chunk_overlap, embedder)
    embedder.encode(["warm-up"] * 64)
    results: dict[str, Any] = {}
    for name, texts in corpora.items():
        lengths = chunker.input_lengths(texts)
        rates: dict[str, list[float]] = {}
        for _ in range(args.rounds):
            for size, budget in PLANS:
                plan = plan_batches(lengths, size, budget)
                t = time.perf_counter()
                for batch in plan:
                    embedder.encode([texts[i] for i in batch])
                rates.setdefault(f"{size}/{budget}", []).append(len(texts) / (time.perf_counter() - t))
        results[name] = {
            "chunks": len(texts),
            "tokens": sum(lengths),
            "chunks_per_s": {k: round(statistics.median(v), 1) for k, v in rates.items()},
        }
        print(name, results[name], f"load {os.getloadavg()[0]:.1f}", flush=True)
    lines = ["| batch size / token budget | " + " | ".join(f"{n} ({r['chunks']} chunks)" for n, r in results.items())
             + " |", "|---|" + "---|" * len(results)]  # fmt: skip
    for size, budget in PLANS:
        key = f"{size}/{budget}"
        lines.append(f"| {size} / {budget or 'none'} | " + " | ".join(
            f"{r['chunks_per_s'][key]:.1f}" for r in results.values()) + " |")  # fmt: skip
    md = "\n".join(lines) + "\n"
    wall = time.perf_counter() - started
    run = {"machine": machine(), "command": command(), "date": now(), "wall_s": wall}
    shown = {"backend": f"{embedder.backend} ({embedder.backend_reason})", "rounds": args.rounds,
             "chunk size / overlap": f"{bench.CHUNK_SIZE} / {bench.CHUNK_OVERLAP} MiniLM tokens",
             "load average at end": f"{os.getloadavg()[0]:.1f}"}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    out = {"backend": embedder.backend, "results": results} | run
    args.out.write_text(json.dumps(out, indent=2), encoding="utf-8")
    page = write_page(args.page, title="Benchmark: embedding batches", what=WHAT, run=run, settings=shown, body=md)
    args.out.with_suffix(".md").write_text(page, encoding="utf-8")
    print(page)


if __name__ == "__main__":
    main()
