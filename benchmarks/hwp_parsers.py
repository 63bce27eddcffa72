"""HWP/HWPX parsers side by side on a folder of real documents: what each extracts, and how long it takes.

Usage:
    python benchmarks/hwp_parsers.py --corpus ../shared/data/hwp_samples --out bench-results/hwp_parsers.json

For every ``.hwp``/``.hwpx`` file under ``--corpus`` (recursively) it runs, in this one process and interleaved
file by file, ``--repeat`` times each:

- ``ingest``: the project's parser as ingestion runs it (``ingest.sandbox.parse_bounded`` with the default
  limits): outcome (sections, or the failure's reason), characters, headings (sections with a path), Markdown
  tables;
- ``unhwp``: unhwp's own Markdown rendering (``unhwp.parse_bytes(...).markdown``), the library under ``ingest``;
- ``hwp-hwpx-parser``: its text with Markdown tables and footnotes (``Reader(...).extract_text_with_notes()``),
  when the package is installed (it is not a dependency of the project).

Times are medians of the repeats, in milliseconds, and ratios to ``ingest`` on the same file. Writes the JSON
(machine, command, settings, every file) and a Markdown table beside it (``.md``).
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import add_data_options, check_data_options, command, machine, now, write_page  # noqa: E402
from ingest.formats import ParseError  # noqa: E402
from ingest.sandbox import ParseLimits, parse_bounded  # noqa: E402
from rag.config import IngestSettings  # noqa: E402

_RULE = re.compile(r"^\| *:?-{3,}", re.MULTILINE)


def _tables(text: str) -> int:
    """Markdown tables in a text (their header rule lines)."""
    return len(_RULE.findall(text))


def _ingest(path: Path, data: bytes) -> dict[str, Any]:
    try:
        parsed = parse_bounded(path.name, data, ParseLimits.from_settings(IngestSettings()))
    except ParseError as e:
        return {"outcome": f"failed: {e}"}
    text = "\n".join(s.text for s in parsed.sections)
    return {
        "outcome": f"{len(parsed.sections)} sections",
        "chars": len(text),
        "headings": len({s.section for s in parsed.sections if s.section}),
        "tables": _tables(text),
        "head": text[:160],
    }


def _unhwp(path: Path, data: bytes) -> dict[str, Any]:
    import unhwp

    try:
        with unhwp.parse_bytes(data) as result:
            text = result.markdown
    except unhwp.UnhwpError as e:
        return {"outcome": f"failed: {e}"}
    return {"outcome": "ok", "chars": len(text.strip()), "tables": _tables(text), "head": text.strip()[:160]}


def _hwp_hwpx_parser(path: Path, data: bytes) -> dict[str, Any]:
    from hwp_hwpx_parser import Reader

    with tempfile.TemporaryDirectory() as tmp:  # it reads paths only
        copy = Path(tmp) / path.name
        copy.write_bytes(data)
        try:
            with Reader(copy) as reader:
                result = reader.extract_text_with_notes()
                encrypted = reader.is_encrypted
        except Exception as e:  # a pure-Python parser: anything can come out of a damaged file
            return {"outcome": f"failed: {type(e).__name__}: {e}"}
    text = result.text.strip()
    return {"outcome": "ok" + (" (is_encrypted)" if encrypted else ""), "chars": len(text),
            "tables": _tables(text), "footnotes": len(result.footnotes), "head": text[:160]}  # fmt: skip


def _timed(fn: Callable[[Path, bytes], dict[str, Any]], path: Path, data: bytes, repeat: int) -> dict[str, Any]:
    times, out = [], {}
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn(path, data)
        times.append((time.perf_counter() - start) * 1000)
    return {**out, "ms": round(statistics.median(times), 2)}


def main() -> None:
    """Run the comparison and write the JSON and Markdown results."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_data_options(ap, corpus="folder of .hwp/.hwpx files (searched recursively)", questions=None)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path("bench-results/hwp_parsers.json"))
    args = ap.parse_args()
    if args.corpus is None:
        raise SystemExit("--corpus: give the folder of HWP/HWPX files")
    check_data_options(args)
    parsers: dict[str, Callable[[Path, bytes], dict[str, Any]]] = {"ingest": _ingest, "unhwp": _unhwp}
    try:
        import hwp_hwpx_parser  # noqa: F401

        parsers["hwp-hwpx-parser"] = _hwp_hwpx_parser
    except ImportError:
        print("hwp-hwpx-parser not installed: left out", file=sys.stderr)
    files = sorted(p for p in args.corpus.rglob("*") if p.suffix.lower() in (".hwp", ".hwpx") and p.is_file())
    rows = []
    for path in files:
        data = path.read_bytes()
        row: dict[str, Any] = {"file": str(path.relative_to(args.corpus)), "bytes": len(data)}
        for name, fn in parsers.items():
            row[name] = _timed(fn, path, data, args.repeat)
        rows.append(row)
    import unhwp

    result = {
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": _cpus()},
        "command": " ".join(sys.argv),
        "settings": {"repeat": args.repeat, "limits": "IngestSettings() defaults", "unhwp": unhwp.__version__},
        "files": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    lines = [
        f"Machine: {result['machine']['platform']}, {result['machine']['cpus']} CPUs. Command: `{result['command']}`.",
        "",
        "| file | " + " | ".join(f"{n}: outcome | chars | tables | ms" for n in parsers) + " | unhwp / ingest time |",
        "|---|" + "---|---|---|---|" * len(parsers) + "---|",
    ]
    for row in rows:
        cells = [f"{row[n]['outcome'][:90]} | {row[n].get('chars', '')} | {row[n].get('tables', '')} | {row[n]['ms']}"
                 for n in parsers]  # fmt: skip
        ratio = row["unhwp"]["ms"] / max(row["ingest"]["ms"], 1e-6)
        lines.append(f"| {row['file']} | " + " | ".join(cells) + f" | {ratio:.2f} |")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    if args.page:
        run = {"machine": machine(), "command": command(), "date": now()}
        what = (
            "Every HWP/HWPX file of a folder read by the project's parser (as ingestion runs it, with the default "
            "limits) and by the libraries beside it, interleaved file by file; outcome, characters, Markdown "
            "tables and the median time of the repeats."
        )
        write_page(args.page, title="Benchmark: HWP and HWPX parsing", what=what, run=run,
                   settings=result["settings"], body="\n".join(lines[2:]))  # fmt: skip
    print("\n".join(lines))


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 0


if __name__ == "__main__":
    main()
