"""Diversity benchmark: does one huge generated file crowd the other documents out of the top-k?

Builds a corpus of the sample handbook (``examples/docs``) plus one generated API reference of
``--reference-mb`` (default 1.5 MiB of Markdown: anchors, field tables, JSON examples). Its sections
document the topics of the questions asked, with their content words and without the answers, so it
competes with the handbook for the same queries: the crowding the per-source cap is for. The corpus is
ingested once by the worker (parsing, chunking, the bundled MiniLM) into a memory store, and the
handbook's sample questions (``examples/questions.jsonl``) are asked with ``max_chunks_per_source`` 0
(no cap), 1, 2 and 3. Per setting: the share of the k sources that come from the big file, hit@k of the
gold document among the sources (``Pipeline.sources_for``, what the answerer is given), and end to end
with the extractive answerer, the share of answers citing the gold document and containing the gold
answer. The handbook alone is the reference row. ``--data`` adds the shared BEIR sets (one chunk per
document, cached vectors): hit@5 of ``Retriever.search`` with each cap.

    .venv/bin/python benchmarks/diversity.py --out bench-results --page docs/benchmarks/diversity.md
    .venv/bin/python benchmarks/diversity.py --data /work/shared/data --out bench-results
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.append(str(REPO / "benchmarks"))  # after the repo: benchmarks/ingest.py must not shadow ingest/

from benchmarks.common import add_data_options, check_data_options, write_outputs  # noqa: E402
from ingest.worker import ingest_source  # noqa: E402
from rag.config import ChatSettings, RetrievalSettings, Settings, StoreSettings  # noqa: E402
from rag.lexical.tokens import QUESTION_WORDS, STOPWORDS, WORD  # noqa: E402
from rag.pipeline import Pipeline  # noqa: E402
from rag.registry import make_chat, make_embedder, make_store  # noqa: E402
from rag.seams import Embedder, VectorStore  # noqa: E402
from rag.types import Message  # noqa: E402

log = logging.getLogger("benchmarks.diversity")

REFERENCE = "platform-api-reference.md"
CAPS = (0, 1, 2, 3)
KINDS = (
    "GPUJob", "BatchQueue", "TeamQuota", "NotebookServer", "PipelineRun", "InferenceService", "StorageClaim",
    "RetentionPolicy", "CheckpointPolicy", "OnCallSchedule", "NodePool", "AccessGrant",
)  # fmt: skip
NOUNS = (
    "queue", "GPU", "job", "quota", "team", "notebook", "image", "pipeline", "run", "namespace", "checkpoint",
    "retention", "storage", "home directory", "predictor", "runtime", "incident", "schedule", "maintenance window",
    "node pool", "priority", "preemption", "SDK", "version", "deletion request", "password", "server", "request",
)  # fmt: skip
VERBS = ("sets", "limits", "selects", "names", "overrides", "controls", "reports", "records", "keeps", "requests")
TYPES = ("string", "integer", "boolean", "duration", "quantity", "object", "[]string", "map[string]string")


# Question words the shared stopword lists keep (they carry no topic).
_ASKING = frozenset({"how", "many", "much", "long", "which", "what", "when", "within", "after", "does", "must"})


def topics(qs: Sequence[dict[str, str]]) -> list[list[str]]:
    """The content words of each question (what a reference documenting the same settings is written in)."""
    out = []
    for q in qs:
        words = [w for w in WORD.findall(q["question"]) if w.lower() not in STOPWORDS | QUESTION_WORDS]
        out.append([w for w in words if w.lower() not in _ASKING] or words)
    return out


def reference(size_bytes: int, terms: Sequence[Sequence[str]], seed: int = 0) -> str:
    """A generated API reference of about ``size_bytes``: sections of field entries (anchor, table, prose, JSON).

    Each section documents one topic: its fields are named and described with ``terms`` (one list of words
    per topic, the handbook questions' content words), the way a reference generated from a platform's
    schema documents the very settings its policy pages explain, but without their values. So its chunks
    compete with the handbook's for the same questions, dense and lexical alike.
    """
    rng = random.Random(seed)
    parts = ["# HARI platform API reference\n", "Generated from the platform's OpenAPI schema.\n"]
    size = sum(len(p) for p in parts)
    n = 0
    while size < size_bytes:
        kind = KINDS[n // 8 % len(KINDS)]
        words = list(terms[n // 8 % len(terms)])
        if n % 8 == 0:
            parts.append(f"\n## {kind}: {' '.join(words)} (v1beta{n // 8 % 5})\n")
        picked = rng.sample(words, min(len(words), 3))
        field = "spec." + "".join(w.title() for w in picked)[:1].lower() + "".join(w.title() for w in picked)[1:]
        text = (
            f'\n<a id="{kind.lower()}-{n}"></a>\n'
            f"**`{field}{n}`** {{#{kind.lower()}-{n}}}\n\n"
            f"| | |\n|---|---|\n| **Type** | `{rng.choice(TYPES)}` |\n"
            f"| **Scope** | {rng.choice(('Namespaced', 'Cluster'))} |\n| **Default** | `{rng.randint(1, 500)}` |\n\n"
            f"The `{field}{n}` field of a **{kind}** {rng.choice(VERBS)} the {' '.join(words)}; when it is empty "
            f"the {rng.choice(NOUNS)} of the team is used. See [{kind}](#{kind.lower()}) for the "
            f"{' '.join(picked)} rules.\n\n"
            f'```json\n{{"kind": "{kind}", "{picked[0]}": "{rng.choice(NOUNS)}", '
            f'"value": {rng.randint(1, 100)}}}\n```\n'
        )
        parts.append(text)
        size += len(text)
        n += 1
    return "".join(parts)


def questions(path: Path) -> list[dict[str, str]]:
    """The handbook's sample questions with their gold document and answer."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def ingest(folder: Path, embedder: Embedder, workdir: Path, name: str) -> VectorStore:
    """A folder ingested by the worker into a memory store."""
    settings = Settings(store=StoreSettings(url="memory://", collection=name), data_dir=workdir / name)
    store = make_store(settings)
    await store.open(embedder.info, create=True)
    start = time.perf_counter()
    report = await ingest_source(settings, store, embedder, str(folder))
    if report.failed:
        raise SystemExit(f"ingestion failed: {report.failed}")
    log.info("%s ingested in %.0f s", name, time.perf_counter() - start)
    return store


def name_of(source: str) -> str:
    """The file name of a chunk's source."""
    return source.rsplit("/", 1)[-1]


async def measure(store: VectorStore, embedder: Embedder, cap: int, qs: Sequence[dict[str, str]]) -> dict[str, float]:
    """Big-file share of the sources, hit@k of the gold document, and end-to-end cited / contains."""
    settings = Settings(
        store=StoreSettings(url="memory://", collection=store.name),
        retrieval=RetrievalSettings(max_chunks_per_source=cap),
        chat=ChatSettings(url="extractive://"),
    )
    pipe = Pipeline(settings, store, embedder, make_chat(settings))
    await pipe.ensure_open()
    share, hit, cited, contains = [], [], [], []
    for q in qs:
        sources = await pipe.sources_for(q["question"])
        names = [name_of(h.chunk.source) for h in sources]
        share.append(names.count(REFERENCE) / max(1, len(names)))
        hit.append(q["source"] in names)
        ans = await pipe.answer([Message("user", q["question"])])
        cited.append(q["source"] in {name_of(c.hit.chunk.source) for c in ans.citations})
        contains.append(q["answer"].lower() in ans.text.lower())
    return {
        "big-file share of sources": round(float(np.mean(share)), 3),
        f"hit@{settings.retrieval.k}": round(float(np.mean(hit)), 3),
        "gold cited": round(float(np.mean(cited)), 3),
        "answer contains gold": round(float(np.mean(contains)), 3),
    }


async def shared_sets(data: Path, cache: Path, real: Embedder, names: Sequence[str]) -> dict[str, dict[str, float]]:
    """hit@5 of ``Retriever.search`` on the shared BEIR sets with each cap (no cap, 1, 2, 3)."""
    from refusal import LookupEmbedder, beir_store
    from retrieval import load_set

    from eval.metrics import hit_at_k
    from rag.retrieval import Retriever

    out = {}
    for name in names:
        ds = await load_set(name, data, cache, real, "minilm")
        embedder = LookupEmbedder(real, {c.question.strip(): q for c, q in zip(ds.cases, ds.queries, strict=True)})
        store = await beir_store(ds, embedder)
        row = {}
        for cap in CAPS:
            retriever = Retriever(store, embedder, RetrievalSettings(max_chunks_per_source=cap))
            hits = [[h.chunk.source for h in await retriever.search(c.question, 5)] for c in ds.cases]
            row[f"hit@5, {cap or 'no'} cap"] = round(
                float(np.mean([hit_at_k(h, c.sources, 5) for h, c in zip(hits, ds.cases, strict=True)])), 4
            )
        await store.close()
        out[name] = row
    return out


def markdown(result: dict[str, object]) -> str:
    """The diversity page."""
    meta = result["meta"]
    rows = result["rows"]
    assert isinstance(meta, dict) and isinstance(rows, dict)
    cols = list(next(iter(rows.values())).keys())
    lines = [
        "# Benchmark: one huge file among small ones",
        "",
        f"`{meta['command']}` ({meta['date']}; {meta['machine']}; wall time {meta['wall_s']} s).",
        "",
        f"Corpus: the sample handbook (`examples/docs`, {meta['handbook_chunks']} chunks) plus one generated "
        f"API reference of {meta['reference_mb']} MiB ({meta['reference_chunks']} chunks, "
        f"{meta['reference_share']:.0%} of all chunks): sections of field entries named and described with "
        "the content words of the questions below, one topic per section and no values, the way a reference "
        "generated from a platform's schema documents the settings its policy pages explain; ingested by the "
        f"worker with the bundled MiniLM. Questions: the {meta['questions']} sample questions "
        "(`examples/questions.jsonl`). Sources are `Pipeline.sources_for` (k 5); answers the extractive answerer. "
        f"Default `max_chunks_per_source` {meta['default_cap']}.",
        "",
        "| corpus, max_chunks_per_source | " + " | ".join(cols) + " |",
        "|---|" + "---|" * len(cols),
    ]
    for label, m in rows.items():
        lines.append(f"| {label} | " + " | ".join(f"{m[c]:.3f}" for c in cols) + " |")
    shared = result.get("shared")
    if shared:
        assert isinstance(shared, dict)
        scols = list(next(iter(shared.values())).keys())
        lines += ["", "Shared sets (one chunk per document), `Retriever.search` top 5:", ""]
        lines += ["| set | " + " | ".join(scols) + " |", "|---|" + "---|" * len(scols)]
        for name, m in shared.items():
            lines.append(f"| {name} | " + " | ".join(f"{m[c]:.4f}" for c in scols) + " |")
    return "\n".join(lines) + "\n"


async def main(argv: Sequence[str] | None = None) -> None:
    """Build the corpus, measure each cap, write JSON and Markdown."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_options(
        ap,
        corpus="a folder of your own documents in the place of the sample handbook (the huge reference is added)",
        questions="questions about --corpus (eval cases; default examples/questions.jsonl with the handbook)",
    )
    ap.add_argument("--reference-mb", type=float, default=1.5, help="size of the generated reference, MiB")
    ap.add_argument("--data", type=Path, default=None, help="shared data folder: also check the BEIR sets")
    ap.add_argument("--sets", default="xquad_en,musique,hotpotqa,allganize_ko_rag", help="BEIR sets for --data")
    ap.add_argument("--cache", type=Path, default=Path("benchmarks/.cache"), help="embedding cache folder")
    ap.add_argument("--out", type=Path, default=Path("bench-results"), help="where diversity.json/.md go")
    args = ap.parse_args(argv)
    check_data_options(args, questions_need_corpus=False)
    if args.corpus is not None and args.questions is None:
        raise SystemExit("--corpus needs --questions (the questions whose answers must stay in the top 5)")
    args.corpus = args.corpus or REPO / "examples" / "docs"
    args.questions = args.questions or REPO / "examples" / "questions.jsonl"
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    start = time.perf_counter()
    embedder = make_embedder(Settings())
    qs = questions(args.questions)
    rows: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        small = await ingest(args.corpus, embedder, work, "handbook")
        rows["handbook alone, default"] = await measure(small, embedder, RetrievalSettings().max_chunks_per_source, qs)
        handbook_chunks = await small.count()
        await small.close()
        mixed_dir = work / "mixed"
        shutil.copytree(args.corpus, mixed_dir)
        (mixed_dir / REFERENCE).write_text(reference(int(args.reference_mb * 1024 * 1024), topics(qs)))
        mixed = await ingest(mixed_dir, embedder, work, "mixed")
        total = await mixed.count()
        for cap in CAPS:
            rows[f"handbook + reference, {cap or 'no cap'}"] = await measure(mixed, embedder, cap, qs)
        await mixed.close()
    names = [s for s in args.sets.split(",") if s]
    shared = await shared_sets(args.data, args.cache, embedder, names) if args.data else {}
    await embedder.close()
    result: dict[str, object] = {
        "meta": {
            "command": "benchmarks/diversity.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "date": time.strftime("%Y-%m-%d", time.gmtime()),
            "machine": f"{os.cpu_count()} CPU cores, no GPU, {platform.machine()}, Python {platform.python_version()}",
            "wall_s": round(time.perf_counter() - start, 1),
            "reference_mb": args.reference_mb,
            "handbook_chunks": handbook_chunks,
            "reference_chunks": total - handbook_chunks,
            "reference_share": (total - handbook_chunks) / total,
            "questions": len(qs),
            "default_cap": RetrievalSettings().max_chunks_per_source,
        },
        "rows": rows,
        "shared": shared,
    }
    page = markdown(result)
    write_outputs(args.out, "diversity", json.dumps(result, indent=2), page, args.page)
    print(page)


if __name__ == "__main__":
    asyncio.run(main())
