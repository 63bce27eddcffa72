"""What every benchmark script shares: the data options, the machine description and the page it writes.

Each script takes ``--corpus DIR`` (any folder of documents) and ``--questions FILE`` (eval cases, the
``eval/schema/case.schema.json`` format, JSONL or YAML), so a team measures its own data with the same code,
and ``--page FILE`` to write its Markdown page (``docs/benchmarks/*.md``): what is measured, then the
machine, the command, the date, the settings and the figures of this run only.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import platform
import sys
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def add_data_options(parser: argparse.ArgumentParser, *, corpus: str = "", questions: str | None = "") -> None:
    """``--corpus DIR``, ``--questions FILE`` and ``--page FILE`` with this script's meaning of each.

    ``questions=None``: the benchmark has no use for questions (file reads, parsing), so it has no such option.
    """
    parser.add_argument(
        "--corpus", type=Path, default=None, help=corpus or "a folder of your own documents instead of the bundled sets"
    )
    if questions is not None:
        parser.add_argument(
            "--questions",
            type=Path,
            default=None,
            help=questions or "your own questions (eval case file: JSONL or YAML, eval/schema/case.schema.json)",
        )
    parser.add_argument("--page", type=Path, default=None, help="also write the Markdown page here")


def check_data_options(args: argparse.Namespace, *, questions_need_corpus: bool = True) -> None:
    """Fail early, with the reason, on a corpus that is not a folder or a question file that does not load."""
    corpus, questions = getattr(args, "corpus", None), getattr(args, "questions", None)
    if corpus is not None and not Path(corpus).is_dir():
        raise SystemExit(f"--corpus {corpus}: not a folder")
    if questions is not None:
        if questions_need_corpus and corpus is None:
            raise SystemExit("--questions needs --corpus (the documents the questions are about)")
        load_questions(Path(questions))


def load_questions(path: Path) -> list[Any]:
    """The eval cases of ``path`` (``eval.dataset.load_cases``); a clear exit on a bad file."""
    from eval.dataset import load_cases

    try:
        return load_cases(path)
    except Exception as e:  # DatasetError carries the line and the field; anything else is a bad path
        raise SystemExit(f"--questions {path}: {e}") from e


def corpus_files(folder: Path, suffixes: set[str] | None = None) -> list[Path]:
    """Files under ``folder`` (of those suffixes), sorted; hidden files and folders left out."""
    out = []
    for p in sorted(folder.rglob("*")):
        hidden = any(part.startswith(".") for part in p.relative_to(folder).parts)
        if p.is_file() and not hidden and (suffixes is None or p.suffix.lower() in suffixes):
            out.append(p)
    return out


def machine() -> dict[str, Any]:
    """This machine: CPU model and flags, cores, memory, accelerator, Python and library versions."""
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                cpu = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    mem_gib = None
    with contextlib.suppress(ValueError, OSError):
        mem_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    info: dict[str, Any] = {
        "cpu": cpu or platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "memory_gib": mem_gib,
        "arch": platform.machine(),
        "python": platform.python_version(),
        "gpu": "none",
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
        info["amx"] = bool(torch.cpu._is_amx_tile_supported())
        info["avx512_bf16"] = bool(torch.cpu._is_avx512_bf16_supported())
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ModuleNotFoundError:
        pass
    for dist in ("sentence-transformers", "chromadb", "onnxruntime"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            info[dist] = metadata.version(dist)
    return info


def machine_line(m: Mapping[str, Any]) -> str:
    """One line of ``machine()``."""
    flags = ", ".join(f for f in ("amx", "avx512_bf16") if m.get(f))
    parts = [
        f"{m.get('cpu')} ({m.get('cores')} cores{', ' + flags if flags else ''})",
        f"{m.get('memory_gib')} GiB",
        f"GPU: {m.get('gpu')}",
        f"Python {m.get('python')}",
    ]
    parts += [f"{k} {m[k]}" for k in ("torch", "sentence-transformers", "chromadb", "onnxruntime") if m.get(k)]
    return ", ".join(parts)


def command() -> str:
    """The command line of this run, as typed (script path relative to the repository)."""
    script = Path(sys.argv[0]).resolve()
    try:
        shown = script.relative_to(REPO).as_posix()
    except ValueError:
        shown = script.as_posix()
    return " ".join(["python", shown, *sys.argv[1:]])


def now() -> str:
    """The date and time of the run, UTC."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def write_page(
    path: Path | None,
    *,
    title: str,
    what: str,
    run: Mapping[str, Any],
    settings: Mapping[str, Any],
    body: str,
) -> str:
    """The Markdown page of one run: what is measured, machine, command, date, settings, then the figures."""
    mach = run.get("machine")
    header = [
        f"# {title}",
        "",
        what.strip(),
        "",
        f"- **Machine:** {machine_line(mach) if isinstance(mach, Mapping) else mach}",
        f"- **Command:** `{run.get('command', '')}`",
        f"- **Date:** {run.get('date', '')}" + (f"; wall time {run['wall_s']:.0f} s" if run.get("wall_s") else ""),
        "- **Settings:** " + "; ".join(f"{k} = {v}" for k, v in settings.items()),
        "",
    ]
    text = "\n".join(header) + "\n" + body.strip() + "\n"
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return text


def write_outputs(out: Path, name: str, json_text: str, page: str, page_path: Path | None) -> None:
    """``out/NAME.json`` and ``out/NAME.md``, and the page also at ``page_path`` (``--page``) when given."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json_text)
    (out / f"{name}.md").write_text(page)
    if page_path is not None:
        page_path.parent.mkdir(parents=True, exist_ok=True)
        page_path.write_text(page)


def corpus_set(folder: Path, questions: Path | None) -> Any:
    """A team's own data set: every document of ``folder`` parsed as ingestion parses it, and its questions.

    One ``CorpusDoc`` per file (id: the path below ``folder``, title: the parsed title, text: its sections);
    gold sources of the questions are mapped onto those ids (a source may be the id, a path or ``file://``
    URI ending in it). Files that fail to parse are left out with a message on stderr.
    """
    import asyncio

    from eval.dataset import Case, CorpusDoc, Imported
    from ingest.loaders import parse
    from ingest.source import make_loader
    from rag.config import Settings

    async def read() -> list[CorpusDoc]:
        loader = make_loader(str(folder), Settings().ingest)
        docs = []
        async for item in loader.items():
            if item.skip or item.error:
                continue
            rel = item.name
            try:
                doc = parse(item, await loader.fetch(item))
            except Exception as e:  # a corrupt file is reported and left out; the others are measured
                print(f"{rel}: left out ({e})", file=sys.stderr)
                continue
            docs.append(CorpusDoc(id=rel, title=doc.title, text="\n\n".join(s.text for s in doc.sections)))
        return docs

    docs = asyncio.run(read())
    ids = [d.id for d in docs]
    cases: list[Case] = []
    for case in load_questions(questions) if questions else []:
        mapped = tuple(matching_id(src, ids) or src for src in case.sources)
        cases.append(Case(**{**case.__dict__, "sources": mapped}))
    return Imported(cases=tuple(cases), corpus=docs)


def matching_id(source: str, ids: list[str]) -> str | None:
    """The corpus id a gold source names: equal, or a path / URI ending in it."""
    if source in ids:
        return source
    tail = source.removeprefix("file://")
    return next((i for i in ids if tail.endswith("/" + i) or tail == i), None)
