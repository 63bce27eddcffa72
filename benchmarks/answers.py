"""Answer-level benchmark: does the answer contain the gold answer, and does it cite the gold passage?

Each question is answered twice with the default settings: through retrieval (``Pipeline.prepare`` over a
memory store holding the whole corpus, one chunk per BEIR document, embeddings from the retrieval benchmark's
cache) and as an *oracle* (retrieval skipped: the gold passage is the only source of the ``ChatRequest``).
The difference is what retrieval costs at the answer level.

    .venv/bin/python benchmarks/answers.py --data /work/shared/data --limit 100
    .venv/bin/python benchmarks/answers.py --data /work/shared/data --gguf --max-tokens 96 \
        --limit xquad_en=50,allganize_ko_rag=20

Per set and mode: ``gold cited`` is the share of answers whose citations include a gold passage,
``gold retrieved`` the share where a gold passage is among the sources given to the answerer; ``F1`` is
SQuAD token F1 (English) or KorQuAD character F1 (Korean) from ``eval.metrics``; ``contains`` (English, short
SQuAD spans) is the share of answers that contain a gold answer after SQuAD normalisation; ``correct & cited``
is contains (English) or F1 >= 0.5 (Korean, long free-form references) together with a gold citation.
The answerer is the extractive one (no model); ``--chat URL`` uses another backend (e.g. a llama.cpp server).
``--gguf`` starts ``python -m llama_cpp.server`` with the bundled Gemma 3 270M (extra ``local-llm``, one thread)
and answers through it over HTTP. llama-cpp-python's ``gemma`` chat format drops system messages, and the
system message is where the sources are, so with ``--gguf`` the chat URL sets ``fold_system=true`` (the system
prompt starts the user turn, as Gemma's own chat template does; the embedded ``llamacpp://`` backend does this
by default for that format); ``--system-as-sent`` leaves it off, to measure what a dropped system role costs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from retrieval import CachedEmbedder, LoadedSet, chunks_of, load_own, load_set  # noqa: E402

from benchmarks.common import add_data_options, check_data_options, command, now, write_page  # noqa: E402
from benchmarks.common import machine as machine_info  # noqa: E402
from eval.dataset import Case  # noqa: E402
from eval.metrics import answer_f1, normalize_squad  # noqa: E402
from rag.config import ChatSettings, Settings, StoreSettings  # noqa: E402
from rag.errors import UpstreamError  # noqa: E402
from rag.lang import detect_lang  # noqa: E402
from rag.pipeline import Answer, Pipeline, Prepared  # noqa: E402
from rag.prompt import build_messages  # noqa: E402
from rag.registry import make_chat, make_embedder, make_store  # noqa: E402
from rag.types import ChatRequest, GenParams, Message, ScoredChunk  # noqa: E402

SETS = ("xquad_en", "allganize_ko_rag")
WHAT = """\
What is measured: each sampled question is answered twice with the default settings, through retrieval
(`Pipeline.prepare` over a memory store of the whole corpus, k = 5) and as an oracle (the gold passage the
only source), so the difference is what retrieval costs at the answer level. `gold cited`: the answer cites a
gold passage; `gold retrieved`: a gold passage is among the sources; `F1`: SQuAD token F1 (English) or KorQuAD
character F1 (Korean); `contains`: the normalised answer contains a gold answer (English); `correct & cited`:
contains (English) or F1 ≥ 0.5 (Korean) together with a gold citation.
"""
KO_CORRECT_F1 = 0.5
COLS = ("gold retrieved", "gold cited", "contains", "F1", "correct & cited", "s/answer")
GGUF_ALIAS = "gemma3-270m"


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


async def run_set(
    ds: LoadedSet, limit: int, seed: int, chat_url: str, max_tokens: int, log: list[dict]
) -> dict[str, dict[str, float]]:
    settings = Settings(
        store=StoreSettings(url="memory://", collection=f"answers_{ds.name}"),
        chat=ChatSettings(url=chat_url, max_tokens=max_tokens, timeout_s=600.0),
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
            start = time.perf_counter()
            try:
                ans = await generate(pipe, prepared)
            except UpstreamError as e:  # counted as an empty answer, the error kept in the answer log
                ans = Answer(text="", citations=(), retrieved=prepared.retrieved, backend="", finish_reason=str(e))
            seconds = time.perf_counter() - start
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
                    "s/answer": seconds,
                }
            )
            log.append(
                {
                    "set": ds.name,
                    "mode": mode,
                    "question": case.question,
                    "gold": list(case.answers),
                    "gold sources": sorted(gold),
                    "answer": ans.text,
                    "cited": [c.hit.chunk.source for c in ans.citations],
                    "finish": ans.finish_reason,
                }
                | {k: round(v, 3) for k, v in rows[mode][-1].items()}
            )
    await store.close()
    return {
        m: {k: round(float(np.mean([r[k] for r in rs])), 3) for k in rs[0]} | {"n": len(rs)} for m, rs in rows.items()
    }


def markdown(results: dict[str, dict[str, dict[str, float]]], answerer: str) -> str:
    cols = COLS
    lines = ["| set | answerer | sources | n | " + " | ".join(cols) + " |", "|---|---|---|---|" + "---|" * len(cols)]
    for name, modes in results.items():
        for mode, m in modes.items():
            vals = ["n/a" if m[c] != m[c] else f"{m[c]:.2f}" if c == "s/answer" else f"{m[c]:.3f}" for c in cols]
            label = "retrieval (k=5)" if mode == "retrieved" else "oracle: gold passage only"
            lines.append(f"| {name} | {answerer} | {label} | {int(m['n'])} | " + " | ".join(vals) + " |")
    return "\n".join(lines)


def limits(text: str, sets: Sequence[str]) -> dict[str, int]:
    """``50`` (every set) or ``xquad_en=50,allganize_ko_rag=20`` (sets not named keep 100)."""
    if "=" not in text:
        return dict.fromkeys(sets, int(text))
    named = {k.strip(): int(v) for k, _, v in (p.partition("=") for p in text.split(",") if p.strip())}
    return {s: named.get(s, 100) for s in sets}


@contextmanager
def llama_server(n_ctx: int, threads: int) -> Iterator[str]:
    """``python -m llama_cpp.server`` with the bundled Gemma 3 270M on loopback; yields its chat URL.

    The GGUF has no chat template: ``--chat_format gemma`` (llama-2's fallback makes this base model stop at
    once). The log goes to a file; llama.cpp writes more than a pipe buffer holds.
    """
    from rag.chat.llamacpp import bundled_gemma_path
    from tests.procs import free_port, stop, wait_until_ok

    port = free_port()
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(bundled_gemma_path()), "--host", "127.0.0.1",
           "--port", str(port), "--n_ctx", str(n_ctx), "--n_threads", str(threads), "--chat_format", "gemma",
           "--model_alias", GGUF_ALIAS]  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        log_path = Path(tmp) / "llama-server.log"
        with log_path.open("wb") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
            try:
                wait_until_ok(f"http://127.0.0.1:{port}/v1/models", proc, log_path, timeout_s=120)
                yield f"openai+http://127.0.0.1:{port}/v1?model={GGUF_ALIAS}"
            finally:
                stop(proc)


@contextmanager
def given(url: str) -> Iterator[str]:
    """A chat URL that needs no server started."""
    yield url


def machine() -> str:
    """CPU model, core count and Python version, for the report."""
    info = Path("/proc/cpuinfo")
    lines = info.read_text().splitlines() if info.exists() else []
    names = [ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")]
    cpu = names[0] if names else platform.processor() or platform.machine()
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


async def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data", help="folder of the shared data sets")
    ap.add_argument("--limit", default="100", help="questions per set: '50' or 'xquad_en=50,allganize_ko_rag=20'")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sets", default=",".join(SETS))
    ap.add_argument("--chat", default="extractive://", help="chat backend URL (default: extractive answerer)")
    ap.add_argument("--gguf", action="store_true", help="answer with the bundled Gemma 3 270M via llama_cpp.server")
    ap.add_argument("--system-as-sent", action="store_true", help="with --gguf: keep the system message as is")
    ap.add_argument("--max-tokens", type=int, default=512, help="answer length limit (chat.max_tokens)")
    ap.add_argument("--n-ctx", type=int, default=8192, help="with --gguf: llama.cpp context (Korean prompts ~4k)")
    ap.add_argument("--threads", type=int, default=1, help="with --gguf: llama.cpp threads")
    ap.add_argument("--cache", type=Path, default=REPO / "benchmarks" / ".cache")
    ap.add_argument("--out", type=Path, default=Path("bench-results"))
    add_data_options(
        ap,
        corpus="your documents (any format ingestion reads) instead of the shared sets; needs --questions",
        questions="your eval cases: gold answers and gold sources naming files of --corpus",
    )
    args = ap.parse_args(argv)
    check_data_options(args)
    if args.corpus is not None and args.questions is None:
        raise SystemExit("--corpus needs --questions (answers are scored against gold answers and sources)")
    start = time.perf_counter()
    embedder = make_embedder(Settings())
    if args.corpus is not None:
        loaded = [await load_own(args.corpus, args.questions, args.cache, embedder, "minilm")]
    else:
        loaded = [
            await load_set(name, args.data, args.cache, embedder, "minilm") for name in args.sets.split(",") if name
        ]
    sets = [ds.name for ds in loaded]
    per_set = limits(args.limit, sets)
    fold = args.gguf and not args.system_as_sent
    if args.gguf:
        answerer = f"{GGUF_ALIAS} Q4_K_M" + ("" if fold else " (system message as sent)")
        tag = "gguf" if fold else "gguf-as-sent"
    elif args.chat.startswith("extractive"):
        answerer, tag = "extractive", "extractive"
    else:
        answerer, tag = args.chat, "chat"
    results, log = {}, []
    with llama_server(args.n_ctx, args.threads) if args.gguf else given(args.chat) as chat_url:
        if fold:  # the chat backend's fold_system option (rag.chat.wire_messages)
            chat_url += "&fold_system=true"
        for ds in loaded:
            results[ds.name] = await run_set(ds, per_set[ds.name], args.seed, chat_url, args.max_tokens, log)
    wall = time.perf_counter() - start
    md = markdown(results, answerer)
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {"answerer": answerer, "argv": sys.argv[1:], "max_tokens": args.max_tokens, "wall_s": round(wall, 1)}
    meta["machine"] = machine()
    (args.out / f"answers-{tag}.json").write_text(json.dumps(meta | {"results": results}, indent=2))
    (args.out / f"answers-{tag}.md").write_text(md + "\n")
    with (args.out / f"answers-{tag}-answers.jsonl").open("w") as f:
        for row in log:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    run = {"machine": machine_info(), "command": command(), "date": now(), "wall_s": wall}
    shown = {"answerer": answerer, "sets": ", ".join(f"{n} ({per_set[n]} questions)" for n in sets),
             "seed": args.seed, "chat.max_tokens": args.max_tokens, "retrieval": "defaults, k = 5"}  # fmt: skip
    print(write_page(args.page, title="Benchmark: answers", what=WHAT, run=run, settings=shown, body=md))


if __name__ == "__main__":
    asyncio.run(main())
