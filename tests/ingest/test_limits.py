"""Bounded parsing with real hostile files and a real parser process: zip bombs, huge XML, a 50 MB text file,
a parse past its time limit, a parser out of memory and one killed from outside. Each is reported as a failure
of that file naming its limit, the files beside it are ingested, and the chunks stored for it before are kept."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from ingest.worker import IngestReport, ingest_source
from rag.config import Settings
from rag.embedders.hashing import HashingEmbedder
from rag.stores.memory import MemoryStore
from tests.ingest.children import sandbox_children

ROOT = Path(__file__).resolve().parents[2]
GOOD_MD = "# Backups\n\nBackups run nightly at 02:00 and are kept for thirty days.\n"


def _builders() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_broken_docs", ROOT / "scripts" / "make_broken_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


broken = _builders()


def _with(settings: Settings, **ingest: Any) -> Settings:
    return settings.model_copy(update={"ingest": settings.ingest.model_copy(update=ingest)})


def _failed(report: IngestReport, path: Path) -> str:
    reasons = dict(report.failed)
    assert path.as_uri() in reasons, f"{path.name} not reported as failed: {report.failed}"
    return reasons[path.as_uri()]


def _sources(store: MemoryStore) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for chunk in store._opened().chunks.values():
        out.setdefault(chunk.source, set()).add(chunk.id)
    return out


def _good_files(folder: Path) -> list[Path]:
    """A small Markdown file (parsed in the worker) and a CSV and a DOCX (parsed in the parser process)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = [folder / "z-good.md", folder / "z-quotas.csv", folder / "z-report.docx"]
    files[0].write_text(GOOD_MD, encoding="utf-8")
    files[1].write_text("team,gpu hours\nvision,1200\nnlp,900\n", encoding="utf-8")
    files[2].write_bytes(broken._docx_with({}))
    return files


async def test_a_2_gib_zip_bomb_docx_and_a_docx_with_200_mib_of_xml_are_refused_before_inflating(
    settings: Settings, tmp_path: Path
) -> None:
    docs = tmp_path / "docs"
    good = _good_files(docs)
    bomb, xml = docs / "bomb.docx", docs / "huge-xml.docx"
    bomb.write_bytes(broken.bomb_docx(2048))  # 2.2 MB on disk
    xml.write_bytes(broken.xml_docx(200))  # 0.8 MB on disk
    store = MemoryStore("docs")
    report = await ingest_source(settings, store, HashingEmbedder(64), str(docs))
    assert "package unpacks to 2048.8 MiB, above the 256 MiB limit (max_unpacked_mb)" in _failed(report, bomb)
    assert "document.xml inflates" in _failed(report, xml) and "(max_zip_ratio)" in _failed(report, xml)
    assert report.added == len(good) and set(_sources(store)) == {p.as_uri() for p in good}


async def test_a_package_over_the_unpacked_limit_at_a_plausible_ratio_is_refused(
    settings: Settings, tmp_path: Path
) -> None:
    docs = tmp_path / "docs"
    good = _good_files(docs)
    varied = docs / "long.docx"
    varied.write_bytes(broken.xml_docx(6, varied=True))  # compresses about 10:1: only the size gives it away
    report = await ingest_source(
        _with(settings, max_unpacked_mb=4), MemoryStore("docs"), HashingEmbedder(64), str(docs)
    )
    assert "above the 4 MiB limit (max_unpacked_mb)" in _failed(report, varied)
    assert report.added == len(good)


async def test_a_50_mb_text_file_is_reported_and_the_file_beside_it_ingested(
    settings: Settings, tmp_path: Path
) -> None:
    docs = tmp_path / "docs"
    good = _good_files(docs)
    big = docs / "dump.txt"
    line = b"Backups run nightly at 02:00 and are kept for thirty days in the archive.\n"
    big.write_bytes(line * (50_000_000 // len(line)))  # under max_file_mb (50 MiB)
    report = await ingest_source(settings, MemoryStore("docs"), HashingEmbedder(64), str(docs))
    assert "extracted text is 47.7 MiB, above the 20 MiB limit (max_text_mb)" in _failed(report, big)
    assert report.added == len(good)


async def test_a_parse_past_its_time_limit_is_stopped_the_next_file_parsed_and_stored_chunks_kept(
    settings: Settings, tmp_path: Path
) -> None:
    docs = tmp_path / "docs"
    good = _good_files(docs)
    slow = docs / "a-slow.pdf"
    slow.write_bytes(broken.stream_pdf(0, "Backups run nightly"))
    store, embedder = MemoryStore("docs"), HashingEmbedder(64)
    settings = _with(settings, parse_timeout_s=1.0)
    first = await ingest_source(settings, store, embedder, str(docs))
    assert first.failed == () and first.added == len(good) + 1
    before = _sources(store)[slow.as_uri()]

    # 64 MiB of spaces in the content stream: pypdf reads them for far longer than a second.
    slow.write_bytes(broken.stream_pdf(64, "Backups run nightly"))
    (docs / "z-quotas.csv").write_text("team,gpu hours\nvision,1300\n", encoding="utf-8")  # after it, in the child
    report = await ingest_source(settings, store, embedder, str(docs))
    assert "longer than the 1 s limit (parse_timeout_s)" in _failed(report, slow)
    assert report.updated == 1 and len(report.failed) == 1  # the CSV, parsed by a fresh parser process
    assert _sources(store)[slow.as_uri()] == before


async def test_a_deeply_nested_html_page_is_stopped_at_the_time_limit_and_a_small_page_beside_it_stored(
    settings: Settings, tmp_path: Path
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    nested = docs / "a-nested.html"
    nested.write_bytes(b"<ul><li>" * (64 * 1024 // 8))  # BeautifulSoup's work grows with the nesting squared
    (docs / "b-small.html").write_text("<h1>Badges</h1><p>Badges open the lab.</p>", encoding="utf-8")
    store = MemoryStore("docs")
    report = await ingest_source(_with(settings, parse_timeout_s=1.0), store, HashingEmbedder(64), str(docs))
    assert "longer than the 1 s limit (parse_timeout_s)" in _failed(report, nested)
    assert report.added == 1 and "Badges open the lab." in " ".join(c.text for c in store._opened().chunks.values())
    assert sandbox_children() == []


async def test_a_parser_out_of_memory_is_reported_and_replaced(settings: Settings, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    good = _good_files(docs)
    heavy = docs / "a-heavy.docx"
    heavy.write_bytes(broken.xml_docx(20, varied=True))  # python-docx builds a tree many times its 20 MiB of XML
    junk = docs / "b-junk.docx"
    junk.write_bytes(b"PK\x03\x04 not a zip at all")
    settings = _with(settings, parse_memory_mb=100, max_zip_ratio=1000, max_unpacked_mb=1024)
    # The worker itself is large (a model loaded): its parser process is measured on its own, not from the
    # size it was started at, so the files after the heavy one parse under the same cap, and a file that
    # fails for another reason keeps its own.
    ballast = bytearray(b"\x01") * (400 * 1024 * 1024)
    report = await ingest_source(settings, MemoryStore("docs"), HashingEmbedder(64), str(docs))
    assert "parsing needs more than the 100 MiB memory limit (parse_memory_mb)" in _failed(report, heavy)
    assert _failed(report, junk).startswith("unreadable DOCX")
    assert report.added == len(good) and len(ballast)


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the parser process through /proc")
async def test_a_parser_process_killed_mid_parse_fails_only_that_file_and_keeps_its_chunks(
    settings: Settings, tmp_path: Path
) -> None:
    docs = tmp_path / "docs"
    good = _good_files(docs)
    victim = docs / "a-victim.pdf"
    victim.write_bytes(broken.stream_pdf(0, "Backups run nightly"))
    store, embedder = MemoryStore("docs"), HashingEmbedder(64)
    assert (await ingest_source(settings, store, embedder, str(docs))).added == len(good) + 1
    before = _sources(store)[victim.as_uri()]

    victim.write_bytes(broken.stream_pdf(64, "Backups run nightly"))  # minutes of parsing
    (docs / "z-quotas.csv").write_text("team,gpu hours\nvision,1300\n", encoding="utf-8")
    run = asyncio.create_task(ingest_source(settings, store, embedder, str(docs)))
    killed = None
    deadline = time.monotonic() + 120
    while killed is None and time.monotonic() < deadline and not run.done():
        await asyncio.sleep(0.1)
        for pid in sandbox_children():
            if _cpu_s(pid) > 1.5:  # past start-up and the pypdf import: inside the PDF's content stream
                os.kill(pid, signal.SIGKILL)
                killed = pid
    report = await run
    assert killed is not None, "the parser process was not seen busy"
    assert "the parser process was killed by SIGKILL while parsing this file" in _failed(report, victim)
    assert report.updated == 1 and len(report.failed) == 1  # the CSV after it, in a new parser process
    assert _sources(store)[victim.as_uri()] == before
    assert sandbox_children() == []  # the run's end stopped the replacement too
