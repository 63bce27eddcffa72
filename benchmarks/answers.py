"""Answer-level benchmark: does the answer contain the gold answer, and does it cite the gold passage?

Each question is answered twice with the default settings: through retrieval (``Pipeline.prepare`` over a
memory store holding the whole corpus, one chunk per BEIR document, embeddings from the retrieval benchmark's
cache) and as an *oracle* (retrieval skipped: the gold passage is the only source of the ``ChatRequest``).
The difference is what retrieval costs at the answer level.

    .venv/bin/python benchmarks/answers.py --data /work/shared/data --limit 100

Per set and mode: ``gold cited`` is the share of answers whose citations include a gold passage,
``gold retrieved`` the share where a gold passage is among the sources given to the answerer; ``F1`` is
SQuAD token F1 (English) or KorQuAD character F1 (Korean) from ``eval.metrics``; ``contains`` (English, short
SQuAD spans) is the share of answers that contain a gold answer after SQuAD normalisation; ``correct & cited``
is contains (English) or F1 >= 0.5 (Korean, long free-form references) together with a gold citation.
The answerer is the extractive one (no model); ``--chat URL`` uses another backend (e.g. a llama.cpp server).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from retrieval import CachedEmbedder, LoadedSet, chunks_of, load_set  # noqa: E402

from eval.dataset import Case  # noqa: E402
from eval.metrics import answer_f1, normalize_squad  # noqa: E402
from rag.config import ChatSettings, Settings, StoreSettings  # noqa: E402
from rag.lang import detect_lang  # noqa: E402
from rag.pipeline import Answer, Pipeline, Prepared  # noqa: E402
from rag.prompt import build_messages  # noqa: E402
from rag.registry import make_chat, make_embedder, make_store  # noqa: E402
from rag.types import ChatRequest, GenParams, Message, ScoredChunk  # noqa: E402

SETS = ("xquad_en", "allganize_ko_rag")
KO_CORRECT_F1 = 0.5


class StrippedEmbedder(CachedEmbedder):
    """Cached query vectors looked up by the stripped question (the pipeline strips what it searches)."""

    async def embed_query(self, text: str) -> np.ndarray:
        return self.queries[text.strip()]


def contains(answer: str, golds: Sequence[str]) -> bool:
    """A normalised gold answer occurs in the normalised answer (SQuAD normalisation)."""
    text = f" {normalize_squad(answer)} "
    return any(f" {normalize_squad(g)} " in text for g in golds if normalize_squad(g))


async def generate(pipe: Pipeline, prepared: Prepared) -> Answer:
    async for event in pipe.stream(prepared):
        if isinstance(event, Answer):
            return event
    raise AssertionError("no answer")


def oracle(pipe: Pipeline, case: Case, gold: Sequence[ScoredChunk]) -> Prepared:
    """The request Pipeline.prepare would build, with the gold passages as the only sources."""
    lang = detect_lang(case.question)
    params = GenParams(max_tokens=pipe.settings.chat.max_tokens, temperature=pipe.settings.chat.temperature)
    hits = tuple(gold)
    request = ChatRequest(
        messages=build_messages(case.question, (), hits, lang), sources=hits, question=case.question, params=params
    )
    return Prepared(request=request, retrieved=hits, retrieval_ms=0.0, search_query=case.question)


async def run_set(ds: LoadedSet, limit: int, seed: int, chat_url: str) -> dict[str, dict[str, float]]:
    settings = Settings(
        store=StoreSettings(url="memory://", collection=f"answers_{ds.name}"), chat=ChatSettings(url=chat_url)
    )
    store = make_store(settings)
    embedder = StrippedEmbedder({c.question.strip(): q for c, q in zip(ds.cases, ds.queries, strict=True)})
    await store.open(embedder.info, create=True)
    chunks = chunks_of(ds.docs)
    for start in range(0, len(chunks), 500):
        await store.upsert(chunks[start : start + 500], ds.vectors[start : start + 500])
    by_source = {c.source: c for c in chunks}
    pipe = Pipeline(settings, store, embedder, make_chat(settings))  # type: ignore[arg-type]
    cases = [c for c in ds.cases if c.answers and c.sources]
    cases = random.Random(seed).sample(cases, min(limit, len(cases)))
    rows: dict[str, list[dict[str, float]]] = {"retrieved": [], "oracle": []}
    for case in cases:
        gold = set(case.sources)
        ko = detect_lang(case.question) == "ko"
        for mode in rows:
            if mode == "oracle":
                prepared = oracle(pipe, case, [ScoredChunk(by_source[s], 1.0) for s in case.sources if s in by_source])
            else:
                prepared = await pipe.prepare([Message(role="user", content=case.question)])
            ans = await generate(pipe, prepared)
            f1 = answer_f1(ans.text, case.answers, "ko" if ko else "en")
            cited = any(c.hit.chunk.source in gold for c in ans.citations)
            has = contains(ans.text, case.answers)
            correct = (f1 >= KO_CORRECT_F1) if ko else has
            rows[mode].append(
                {
                    "gold retrieved": float(any(h.chunk.source in gold for h in prepared.retrieved)),
                    "gold cited": float(cited),
                    "contains": float(has) if not ko else float("nan"),
                    "F1": f1,
                    "correct & cited": float(correct and cited),
                }
            )
    await store.close()
    return {
        m: {k: round(float(np.mean([r[k] for r in rs])), 3) for k in rs[0]} | {"n": len(rs)} for m, rs in rows.items()
    }


def markdown(results: dict[str, dict[str, dict[str, float]]], answerer: str) -> str:
    cols = ("gold retrieved", "gold cited", "contains", "F1", "correct & cited")
    lines = ["| set | answerer | sources | n | " + " | ".join(cols) + " |", "|---|---|---|---|" + "---|" * len(cols)]
    for name, modes in results.items():
        for mode, m in modes.items():
            vals = ["n/a" if m[c] != m[c] else f"{m[c]:.3f}" for c in cols]
            label = "retrieval (k=5)" if mode == "retrieved" else "oracle: gold passage only"
            lines.append(f"| {name} | {answerer} | {label} | {int(m['n'])} | " + " | ".join(vals) + " |")
    return "\n".join(lines)


async def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--limit", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sets", default=",".join(SETS))
    ap.add_argument("--chat", default="extractive://", help="chat backend URL (default: extractive answerer)")
    ap.add_argument("--cache", type=Path, default=REPO / "benchmarks" / ".cache")
    ap.add_argument("--out", type=Path, default=Path("bench-results"))
    args = ap.parse_args(argv)
    start = time.perf_counter()
    embedder = None
    results = {}
    for name in [s for s in args.sets.split(",") if s]:
        if embedder is None:
            embedder = make_embedder(Settings())
        ds = await load_set(name, args.data, args.cache, embedder, "minilm")
        results[name] = await run_set(ds, args.limit, args.seed, args.chat)
    answerer = "extractive" if args.chat.startswith("extractive") else args.chat
    md = markdown(results, answerer)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "answers.json").write_text(
        json.dumps({"results": results, "wall_s": time.perf_counter() - start}, indent=2)
    )
    (args.out / "answers.md").write_text(md + "\n")
    print(md)
    print(f"wall {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    asyncio.run(main())
