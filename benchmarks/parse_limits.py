"""Bounded parsing: peak RSS and time against text size, and what hostile files cost, for one or two code trees.

Usage:
    python benchmarks/parse_limits.py --out bench-results/parse_limits.json
    python benchmarks/parse_limits.py --trees before=/path/to/old/checkout,after=. --kinds chunk,ingest,hostile
    python benchmarks/parse_limits.py --kinds ingest --sizes 10 --embed st://all-MiniLM-L6-v2 --out ...

Every measurement runs in a fresh process with the tree's code first on ``PYTHONPATH``; trees are interleaved
size by size, so a before/after pair ran under the same load. The parent samples the resident memory of the
child and every process under it (the parser process included) every 0.1 s and stops a run past
``--max-rss-mb`` or ``--timeout-s`` (recorded as such: the old code takes gigabytes on these inputs).
Kinds:

- ``chunk``: one plain-text file of N MiB of prose (HotpotQA passages from ``--data`` joined as paragraphs,
  else the sample handbook's text) parsed and chunked as ingestion does, 300 / 40 tokens of the bundled
  MiniLM tokenizer; RSS is measured above the process after the tokenizer is loaded;
- ``ingest``: ``ingest_source`` of a folder holding that one file into a fresh embedded Chroma, with the
  ``--embed`` embedder (``hash://`` by default: the pipeline without the model's time; chunking then counts
  approximate tokens), ``max_text_mb`` and ``max_file_mb`` raised so the file is ingested, not refused; RSS is
  measured above the process after a warm-up document (store, lexical index and parsers loaded);
- ``hostile``: ``ingest_source`` with default limits of a folder with one good file and one of: a 2.2 MB DOCX
  holding a 2 GiB member (``bomb``), a 0.8 MB DOCX with 200 MiB of XML (``xml``), a 50 MB text file (``text``):
  the outcome (the failure's reason), time and peak RSS.

Writes the JSON (machine, command, settings, every run) and a Markdown table beside it (``.md``).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

# Run as `python benchmarks/parse_limits.py`, this file's folder comes first on sys.path and its name would hide
# nothing here, but the children import the tree under test from PYTHONPATH only.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from benchmarks.common import (  # noqa: E402
    add_data_options,
    check_data_options,
    command,
    machine,
    machine_line,
    now,
    write_page,
)

WHAT = """\
What is measured: bounded parsing. Peak resident memory (the worker and its parser process) and time of
parsing and chunking, and of ingesting, one plain-text file of N MiB; and what hostile files (a zip bomb
DOCX, a DOCX of huge XML, a 50 MB text dump) cost with the default limits: the outcome (the failure's
reason), time and peak memory. Every measurement runs in a fresh process; memory is sampled every 0.1 s.
"""
HOTPOT = Path("multihop_en/hotpotqa/beir/corpus.jsonl")
MiB = 1024 * 1024
CHUNK_SIZE, CHUNK_OVERLAP = 300, 40
HOSTILE = ("bomb", "xml", "text")


def prose(data: Path, size: int) -> bytes:
    """``size`` bytes of prose: HotpotQA passages as paragraphs, repeated (else the handbook's Markdown)."""
    corpus = data / HOTPOT
    if corpus.exists():
        with corpus.open(encoding="utf-8") as f:
            paragraphs = [json.loads(line)["text"] for line in f]
    else:
        paragraphs = [p.read_text(encoding="utf-8") for p in sorted((REPO / "examples" / "docs").glob("*.md"))]
    base = "\n\n".join(paragraphs).encode("utf-8")
    out = base * (size // len(base) + 1)
    cut = out.rfind(b" ", 0, size)  # a whole word at the end, whatever the tree's decoder thinks of half ones
    return out[: cut if cut > 0 else size]


def _builders() -> Any:
    spec = importlib.util.spec_from_file_location("make_broken_docs", REPO / "scripts" / "make_broken_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- children ------------------------------------------------------------------------------------------------


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_chunk(path: Path, models: Path) -> dict[str, Any]:
    from ingest.chunking import Chunker
    from ingest.loaders import Item, parse
    from rag.embedders.st import SentenceTransformerEmbedder, bundled_minilm_path

    embedder = SentenceTransformerEmbedder(bundled_minilm_path(), "sentence-transformers/all-MiniLM-L6-v2")
    chunker = Chunker(CHUNK_SIZE, CHUNK_OVERLAP, embedder)
    chunker.chunks(parse(Item(uri="file:///warm.txt", name="warm.txt"), b"Warm up.\n"), ingested_at=0.0)
    base = _rss_mb()
    wall, cpu = time.perf_counter(), time.process_time()
    data = path.read_bytes()
    doc = parse(Item(uri=path.as_uri(), name=path.name, size=len(data)), data)
    chunks = chunker.chunks(doc, ingested_at=0.0)
    return {"chunks": len(chunks), "seconds": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu,
            "base_rss_mb": base, "peak_rss_mb": _peak_mb()}  # fmt: skip


def child_ingest(folder: Path, work: Path, embed: str, size_mb: float, defaults: bool) -> dict[str, Any]:
    from ingest.worker import ingest_source
    from rag.config import Settings
    from rag.registry import make_embedder, make_store

    ingest: dict[str, Any] = {"chunk_size": CHUNK_SIZE, "chunk_overlap": CHUNK_OVERLAP}
    if not defaults:  # the file is to be ingested, not refused: its size is what is measured
        ingest |= {"max_text_mb": max(20.0, size_mb + 1), "max_file_mb": max(50.0, size_mb + 1)}
    settings = Settings(
        data_dir=work / "state", store={"url": f"chroma://{work}/chroma"}, embed={"url": embed}, ingest=ingest
    )
    embedder = make_embedder(settings)
    if hasattr(embedder, "encode"):
        embedder.encode(["A warm-up sentence."] * 8)

    async def go() -> dict[str, Any]:
        store = make_store(settings)
        # One small document first: the store, its lexical index (and Korean analyser) and the parsers are
        # loaded before the measured run, whose RSS is taken above them.
        warm = work / "warm"
        warm.mkdir(parents=True, exist_ok=True)
        (warm / "warm.md").write_text("# Warm-up\n\nBackups run nightly. 백업은 매일 밤.\n", encoding="utf-8")
        await ingest_source(settings, store, embedder, str(warm))
        base = _rss_mb()
        wall, cpu = time.perf_counter(), time.process_time()
        report = await ingest_source(settings, store, embedder, str(folder))
        seconds, cpu_s = time.perf_counter() - wall, time.process_time() - cpu
        await store.close()
        return {"chunks": report.chunks_added, "added": report.added, "seconds": seconds, "cpu_s": cpu_s,
                "failed": [reason for _, reason in report.failed], "base_rss_mb": base,
                "peak_rss_mb": _peak_mb()}  # fmt: skip

    return asyncio.run(go())


def child_main(args: argparse.Namespace) -> None:
    kind = args.child
    if kind == "chunk":
        out = child_chunk(args.child_corpus, args.work)
    else:
        out = child_ingest(
            args.child_corpus, args.work, args.embed, args.size_mb, defaults=kind in ("hostile", "corpus")
        )
    print("RESULT " + json.dumps(out), flush=True)


# --- parent --------------------------------------------------------------------------------------------------


def _tree_rss_mb(root: int) -> float:
    """Resident memory of a process and all its descendants, MiB (from /proc)."""
    parents: dict[int, int] = {}
    rss: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            status = (entry / "status").read_text()
        except OSError:
            continue
        pid = int(entry.name)
        parents[pid] = int(stat.rsplit(")", 1)[1].split()[1])
        rss[pid] = next((int(x.split()[1]) / 1024 for x in status.splitlines() if x.startswith("VmRSS:")), 0.0)
    tree, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        for child, parent in parents.items():
            if parent == pid and child not in tree:
                tree.add(child)
                frontier.append(child)
    return sum(rss.get(p, 0.0) for p in tree)


def run_child(tree: Path, argv: list[str], limits: argparse.Namespace) -> dict[str, Any]:
    """One measurement in a fresh process of ``tree``'s code, its process tree's RSS sampled, stopped past limits."""
    env = os.environ | {"PYTHONPATH": str(tree), "HF_HUB_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False",
                        "TOKENIZERS_PARALLELISM": "false"}  # fmt: skip
    cmd = [sys.executable, str(Path(__file__).resolve()), *argv]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip
    peak, stopped = 0.0, ""
    started = time.perf_counter()
    out: list[str] = []
    err: list[str] = []
    readers = [threading.Thread(target=lambda s=s, b=b: b.extend(s), daemon=True)
               for s, b in ((proc.stdout, out), (proc.stderr, err))]  # fmt: skip
    for r in readers:
        r.start()
    while proc.poll() is None:
        peak = max(peak, _tree_rss_mb(proc.pid))
        wall = time.perf_counter() - started
        if peak > limits.max_rss_mb or wall > limits.timeout_s:
            stopped = f"stopped at {peak:.0f} MB RSS after {wall:.0f} s"
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            break
        time.sleep(0.1)
    for r in readers:
        r.join(timeout=5)
    wall = time.perf_counter() - started
    lines = [ln for ln in out if ln.startswith("RESULT ")]
    if stopped or not lines:
        return {"stopped": stopped or f"exit {proc.returncode}: {''.join(err)[-1500:]}", "tree_peak_rss_mb": peak,
                "process_wall_s": wall}  # fmt: skip
    result: dict[str, Any] = json.loads(lines[-1][len("RESULT ") :])
    return result | {"tree_peak_rss_mb": peak, "process_wall_s": wall}


def parent_main(args: argparse.Namespace) -> dict[str, Any]:
    trees = dict(pair.split("=", 1) for pair in args.trees.split(","))
    kinds = args.kinds.split(",")
    sizes = [float(s) for s in args.sizes.split(",")]
    work = Path(tempfile.mkdtemp(prefix="rag-parse-limits-"))
    runs: list[dict[str, Any]] = []
    load_start = os.getloadavg()
    started = time.perf_counter()
    try:
        files: dict[str, Path] = {}
        for size in sizes:
            folder = work / f"text-{size:g}"
            folder.mkdir()
            (folder / f"text-{size:g}mb.txt").write_bytes(prose(args.data, int(size * MiB)))
            files[f"text:{size:g}"] = folder
        if "hostile" in kinds:
            broken = _builders()
            for name, make, file in (("bomb", lambda: broken.bomb_docx(2048), "bomb.docx"),
                                     ("xml", lambda: broken.xml_docx(200), "huge-xml.docx"),
                                     ("text", lambda: prose(args.data, 50_000_000), "dump.txt")):  # fmt: skip
                if name not in args.hostile.split(","):
                    continue
                data = make()
                folder = work / f"hostile-{name}"
                folder.mkdir()
                (folder / file).write_bytes(data)
                (folder / "good.md").write_text("# Backups\n\nBackups run nightly at 02:00.\n", encoding="utf-8")
                files[f"hostile:{name}"] = folder
        plan: list[tuple[str, str, float]] = []
        for kind in kinds:
            if kind == "hostile":
                plan += [(kind, name, 50.0) for name in args.hostile.split(",")]
            else:
                plan += [(kind, f"{size:g}", size) for size in sizes]
        if args.corpus is not None:  # the team's own folder, default limits: what each file costs, what is refused
            files["corpus:own"] = args.corpus.resolve()
            plan.append(("corpus", "own", 0.0))
        for kind, case, size in plan:
            for label, tree in trees.items():
                scratch = Path(tempfile.mkdtemp(prefix="run-", dir=work))
                corpus = files[f"{kind}:{case}"] if kind in ("hostile", "corpus") else files[f"text:{case}"]
                if kind == "chunk":
                    corpus = next(corpus.iterdir())
                argv = ["--child", kind, "--child-corpus", str(corpus), "--work", str(scratch), "--embed", args.embed,
                        "--size-mb", str(size)]  # fmt: skip
                row = {"kind": kind, "case": case, "tree": label} | run_child(Path(tree).resolve(), argv, args)
                runs.append(row)
                print(json.dumps(row), flush=True)
                shutil.rmtree(scratch, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    res = {
        "command": command(),
        "date": now(),
        "machine": machine(),
        "load_average_start": load_start,
        "load_average_end": os.getloadavg(),
        "wall_s": time.perf_counter() - started,
        "settings": {
            "chunk": f"{CHUNK_SIZE}/{CHUNK_OVERLAP} MiniLM tokens",
            "embed": args.embed,
            "max_rss_mb": args.max_rss_mb,
            "timeout_s": args.timeout_s,
            "trees": trees,
        },
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2), encoding="utf-8")
    args.out.with_suffix(".md").write_text(markdown(res), encoding="utf-8")
    return res


def markdown(res: dict[str, Any]) -> str:
    """Tables of the runs: per MiB of text (chunk, ingest) and per hostile file."""
    lines = []
    per_size = [r for r in res["runs"] if r["kind"] not in ("hostile", "corpus")]
    if per_size:
        lines += ["| kind | MiB of text | tree | chunks | s | CPU s | s per MiB | peak RSS MB (tree) "
                  "| RSS above start MB | MB RSS per MiB |", "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for r in per_size:
            mb = float(r["case"])
            if "stopped" in r:
                lines.append(f"| {r['kind']} | {r['case']} | {r['tree']} | | | | | {r['tree_peak_rss_mb']:.0f} | | "
                             f"{r['stopped'][:80]} |")  # fmt: skip
                continue
            peak = max(r["peak_rss_mb"], r["tree_peak_rss_mb"])
            above = peak - r["base_rss_mb"]
            lines.append(f"| {r['kind']} | {r['case']} | {r['tree']} | {r['chunks']} | {r['seconds']:.1f} "
                         f"| {r['cpu_s']:.1f} | {r['seconds'] / mb:.2f} | {peak:.0f} | {above:.0f} "
                         f"| {above / mb:.1f} |")  # fmt: skip
        lines.append("")
    hostile = [r for r in res["runs"] if r["kind"] in ("hostile", "corpus")]
    if hostile:
        lines += ["| hostile file (or --corpus) | tree | outcome | s | peak RSS MB (tree) |", "|---|---|---|---|---|"]
        for r in hostile:
            if "stopped" in r:
                outcome = r["stopped"][:100]
            elif r["failed"]:
                outcome = "failed: " + r["failed"][0][:110]
            else:
                outcome = f"ingested ({r['chunks']} chunks)"
            seconds = r.get("seconds", r["process_wall_s"])
            lines.append(f"| {r['case']} | {r['tree']} | {outcome} | {seconds:.1f} | {r['tree_peak_rss_mb']:.0f} |")
        lines.append("")
    load = f"load average {res['load_average_start'][0]:.1f} at start, {res['load_average_end'][0]:.1f} at end"
    mach = res["machine"] if isinstance(res["machine"], str) else machine_line(res["machine"])
    lines.append(f"{mach}; {load}; wall {res['wall_s']:.0f} s")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--data", type=Path, default=REPO.parent / "shared" / "data", help="shared data folder (HotpotQA)"
    )
    add_data_options(
        parser,
        corpus="also ingest this folder with the default limits: time, peak RSS and every refusal",
        questions=None,
    )
    parser.add_argument("--out", type=Path, default=Path("bench-results/parse_limits.json"))
    parser.add_argument("--trees", default=f"this={REPO}", help="label=path,... code trees to compare")
    parser.add_argument("--kinds", default="chunk,ingest,hostile", help="chunk, ingest, hostile")
    parser.add_argument("--sizes", default="1,5,10,50", help="MiB of text for chunk and ingest")
    parser.add_argument("--embed", default="hash://?dim=384", help="embedder URL of the ingest runs")
    parser.add_argument("--hostile", default=",".join(HOSTILE), help="hostile files: bomb, xml, text")
    parser.add_argument("--max-rss-mb", type=float, default=4000, help="stop a run whose processes hold more")
    parser.add_argument("--timeout-s", type=float, default=900, help="stop a run that takes longer")
    parser.add_argument("--render", type=Path, help="only write the markdown of a saved result JSON")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-corpus", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--size-mb", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(args)
        return
    check_data_options(args)
    res = json.loads(args.render.read_text(encoding="utf-8")) if args.render else parent_main(args)
    print(write_page(args.page, title="Benchmark: parsing limits", what=WHAT, run=res, settings=res["settings"],
                     body=markdown(res)))  # fmt: skip


if __name__ == "__main__":
    main()
