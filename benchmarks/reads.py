"""Folder reads: the checked, link-refusing read of ``FolderLoader.fetch_many`` against a plain ``read_bytes``.

Usage:
    python benchmarks/reads.py --out bench-results/reads.json
    python benchmarks/reads.py --docs /path/to/folder --out bench-results/reads.json

The corpus is ``--docs`` (any folder) or, without it, ``--files`` generated Markdown files of about
``--kb`` KiB each, spread over ``--folders`` folders. Both ways read the same listed items in the
groups ingestion reads ahead (``ingest.worker._read_ahead``: up to 32 files / 4 MiB per worker-thread
call), interleaved over ``--rounds`` rounds with the page cache warm (a no-change re-sync reads every
file). Reported: median seconds per pass and the ratio checked / plain; the listing is timed too.

- ``plain``: ``Path.read_bytes()`` of each file, one worker-thread call per group (what a read that
  follows links costs);
- ``checked``: ``FolderLoader.fetch_many`` (folder descriptors walked with ``O_NOFOLLOW``, an ``lstat``
  and an ``fstat`` per file checked against the listing).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

# Run as `python benchmarks/reads.py`, this file's folder comes first on sys.path and its ingest.py
# would hide the `ingest` package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ingest.loaders import FolderLoader, path_of  # noqa: E402
from ingest.source import Item  # noqa: E402
from ingest.worker import _AHEAD_BYTES, _AHEAD_FILES  # noqa: E402


def write_corpus(dest: Path, files: int, folders: int, kb: float) -> Path:
    """``files`` Markdown files of about ``kb`` KiB, round-robin over ``folders`` nested two deep."""
    line = "Backups run nightly at 02:00 and are kept for thirty days.\n"
    body = line * max(1, int(kb * 1024 / len(line)))
    for i in range(files):
        path = dest / f"team-{i % folders:03d}" / "notes" / f"n{i:06d}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"# Note {i}\n\n{body}", encoding="utf-8")
    return dest


def groups(items: Sequence[Item]) -> list[list[Item]]:
    """The read-ahead groups of ingestion."""
    out: list[list[Item]] = []
    group: list[Item] = []
    size = 0
    for item in items:
        if group and (len(group) >= _AHEAD_FILES or size + item.size > _AHEAD_BYTES):
            out.append(group)
            group, size = [], 0
        group.append(item)
        size += item.size
    return out + ([group] if group else [])


async def plain(batches: list[list[Item]]) -> int:
    n = 0
    for batch in batches:
        data = await asyncio.to_thread(lambda b=batch: [path_of(i.uri).read_bytes() for i in b])
        n += sum(map(len, data))
    return n


async def checked(loader: FolderLoader, batches: list[list[Item]]) -> int:
    n = 0
    for batch in batches:
        for got in await loader.fetch_many(batch):
            if isinstance(got, OSError):
                raise got
            n += len(got)
    return n


async def run(root: Path, rounds: int) -> dict[str, object]:
    loader = FolderLoader(str(root))
    started = time.perf_counter()
    items = [i async for i in loader.items()]
    listing_s = time.perf_counter() - started
    readable = [i for i in items if not i.skip and not i.error]
    batches = groups(readable)
    times: dict[str, list[float]] = {"plain": [], "checked": []}
    await plain(batches)  # warm the page cache and the thread pool
    for _ in range(rounds):
        for name in ("plain", "checked") if _ % 2 == 0 else ("checked", "plain"):
            started = time.perf_counter()
            n = await (plain(batches) if name == "plain" else checked(loader, batches))
            times[name].append(time.perf_counter() - started)
    median = {k: statistics.median(v) for k, v in times.items()}
    return {
        "files": len(readable),
        "bytes": n,
        "groups": len(batches),
        "listing_s": round(listing_s, 4),
        "plain_s": round(median["plain"], 4),
        "checked_s": round(median["checked"], 4),
        "checked_over_plain": round(median["checked"] / median["plain"], 3),
        "rounds": rounds,
    }


WHAT = """\
What is measured: reading every listed file of a folder the way ingestion does, in its read-ahead groups:
the checked, link-refusing `FolderLoader.fetch_many` against a plain `Path.read_bytes`, interleaved over the
rounds with the page cache warm (what a no-change re-sync reads); medians and their ratio; the listing too.
"""


def main() -> None:
    from benchmarks.common import add_data_options, check_data_options, command, machine, now, write_page

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=Path, help="a folder to read (default: a generated corpus)")
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--folders", type=int, default=50)
    parser.add_argument("--kb", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path("bench-results/reads.json"))
    add_data_options(parser, corpus="a folder to read (the same as --docs)", questions=None)
    args = parser.parse_args()
    check_data_options(args)
    folder = args.corpus or args.docs
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = folder or write_corpus(Path(tmp) / "corpus", args.files, args.folders, args.kb)
        result = asyncio.run(run(root, args.rounds))
    corpus = str(folder) if folder else f"{args.files} files x {args.kb} KiB in {args.folders} folders"
    run_info = {"machine": machine(), "command": command(), "date": now(), "wall_s": time.perf_counter() - started}
    result.update(run_info)
    result["corpus"] = corpus
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))
    body = (
        "| files | MiB | read-ahead groups | listing s | plain s | checked s | checked / plain |\n"
        "|---|---|---|---|---|---|---|\n"
        f"| {result['files']} | {result['bytes'] / 2**20:.1f} | {result['groups']} | {result['listing_s']} "
        f"| {result['plain_s']} | {result['checked_s']} | {result['checked_over_plain']} |"
    )
    shown = {"corpus": corpus, "rounds": args.rounds}
    write_page(args.page, title="Benchmark: folder reads", what=WHAT, run=run_info, settings=shown, body=body)


if __name__ == "__main__":
    main()
