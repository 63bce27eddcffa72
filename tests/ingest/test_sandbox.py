"""The parser process started ahead of its first document: a real child process, observed through /proc."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from ingest.sandbox import ParseLimits, Parser
from ingest.worker import ingest_source
from rag.config import Settings
from rag.embedders.hashing import HashingEmbedder
from rag.stores.memory import MemoryStore
from tests.ingest.children import sandbox_children


def _limits() -> ParseLimits:
    return ParseLimits.from_settings(Settings().ingest)


async def test_warm_starts_the_child_ahead_and_it_imports_the_expected_formats_libraries() -> None:
    parser = Parser(_limits())
    parser.expect([("notes.md", 100), ("report.docx", 5000)])
    parser.warm()
    try:
        deadline = time.monotonic() + 120
        while parser.pid is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        pid = parser.pid
        assert pid is not None and sandbox_children() == [pid]
        # python-docx's XML library is a C extension: its mapping shows the import happened, with no request sent.
        while b"lxml/etree" not in Path(f"/proc/{pid}/maps").read_bytes() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert b"lxml/etree" in Path(f"/proc/{pid}/maps").read_bytes()
        parsed = await parser.parse("t.csv", b"team,hours\nvision,12\n")
        assert "vision" in parsed.sections[0].text and parser.pid == pid  # the same child served it
    finally:
        await parser.close()
    assert sandbox_children() == []


async def test_warm_starts_nothing_when_every_expected_file_is_parsed_in_the_worker() -> None:
    parser = Parser(_limits())
    parser.expect([("a.md", 100), ("b.txt", 100), ("c.html", 16 * 1024)])
    parser.warm()
    await asyncio.sleep(0.5)
    assert parser.pid is None and sandbox_children() == []
    await parser.close()


async def test_closing_while_the_child_starts_leaves_no_process_behind() -> None:
    parser = Parser(_limits())
    parser.expect([("a.pdf", 100)])
    parser.warm()
    await asyncio.sleep(0)  # the start has begun (the process is being spawned), not finished
    await parser.close()
    assert parser.pid is None and sandbox_children() == []


async def test_a_run_of_markdown_and_html_parses_both_and_stops_its_parser_process(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a-guide.md").write_text("# Guide\n\nBackups run nightly.\n", encoding="utf-8")
    (docs / "b-page.html").write_text("<h1>Page</h1><p>Quotas reset monthly.</p>", encoding="utf-8")
    # Past 16 KiB an HTML page goes to the parser process (a small one is parsed in the worker's thread).
    filler = "".join(f"<p>Paragraph {i} of the long page.</p>" for i in range(600))
    (docs / "c-long.html").write_text(f"<h1>Long</h1>{filler}<p>Badges open the lab.</p>", encoding="utf-8")
    assert (docs / "c-long.html").stat().st_size > 16 * 1024
    started: list[int] = []
    child = Parser._child

    async def spy(self: Parser) -> object:
        proc = await child(self)
        started.append(proc.pid)
        return proc

    monkeypatch.setattr(Parser, "_child", spy)
    store = MemoryStore("docs")
    report = await ingest_source(settings, store, HashingEmbedder(64), str(docs))
    assert report.added == 3 and not report.failed
    texts = " ".join(c.text for c in store._opened().chunks.values())
    assert "Backups run nightly." in texts and "Quotas reset monthly." in texts and "Badges open the lab." in texts
    assert started and sandbox_children() == []
