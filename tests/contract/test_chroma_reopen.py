"""Embedded Chroma: a clean reopen trusts the lexical file without scanning the collection; anything else reconciles.

The scan reads every chunk's metadata (minutes at a million chunks), so the store records, in the lexical
file, the change marker of the collection it last matched; these tests check that the shortcut is taken only
when it is safe: after a clean close, never after a crash mid-write, a failed write or a write by a program
that does not keep the marker.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from rag.registry import make_store
from rag.types import EmbedderInfo, Filter
from tests.contract.conftest import make_chunk, settings_for, unit_vectors

DIM = 16
INFO = EmbedderInfo(id="hash-16", dim=DIM)
TEXTS = [
    "GPU jobs on the cluster may run for at most 72 hours.",
    "The cafeteria opens at eight in the morning.",
    "연구실 출입은 사원증으로 합니다.",
]


async def _filled(url: str) -> list:
    store = make_store(settings_for(url, "docs"))
    await store.open(INFO, create=True)
    chunks = [make_chunk(t, index=i) for i, t in enumerate(TEXTS)]
    await store.upsert(chunks, unit_vectors(len(chunks), DIM, seed=1))
    await store.close()
    return chunks


async def _open_counting_scans(url: str, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, list[dict[str, Any]]]:
    """Open the store with its collection's get() recorded (the class is patched before open runs)."""
    import chromadb.api.models.Collection as module

    calls: list[dict[str, Any]] = []
    real = module.Collection.get

    def get(self: Any, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("ids") is None and not args:
            calls.append(kwargs)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(module.Collection, "get", get)
    store = make_store(settings_for(url, "docs"))
    await store.open(INFO, create=False)
    return store, calls


async def test_a_clean_reopen_reads_no_page_of_the_collection_and_searches_as_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    url = f"chroma://{tmp_path}/chroma"
    chunks = await _filled(url)
    store, scans = await _open_counting_scans(url, monkeypatch)
    try:
        assert scans == []
        assert (await store.search_text("cafeteria", 1))[0].chunk == chunks[1]
        assert (await store.search_text("사원증", 1))[0].chunk == chunks[2]
    finally:
        await store.close()


async def test_a_reopen_after_writes_that_all_succeeded_also_skips_the_scan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    url = f"chroma://{tmp_path}/chroma"
    chunks = await _filled(url)
    store = make_store(settings_for(url, "docs"))
    await store.open(INFO, create=False)
    moved = replace(chunks[0], groups=("hr",))
    await store.upsert([moved], unit_vectors(1, DIM, seed=2))
    await store.delete([chunks[1].id])
    await store.close()
    again, scans = await _open_counting_scans(url, monkeypatch)
    try:
        assert scans == []
        assert (await again.search_text("GPU cluster", 1, Filter(groups=("hr",))))[0].chunk == moved
        assert await again.search_text("cafeteria", 3) == []
    finally:
        await again.close()


_CRASH = """
import asyncio, os, sys
from dataclasses import replace
from rag.lexical.index import LexicalIndex
from rag.registry import make_store
from rag.types import EmbedderInfo
from tests.contract.conftest import make_chunk, settings_for, unit_vectors

async def main():
    store = make_store(settings_for(sys.argv[1], "docs"))
    await store.open(EmbedderInfo(id="hash-16", dim=16), create=False)
    chunk = make_chunk(sys.argv[2], index=0)
    # The process dies after Chroma took the write and before its lexical half landed.
    LexicalIndex.upsert = lambda self, chunks: None
    await store.upsert([replace(chunk, groups=("hr",))], unit_vectors(1, 16, seed=3))
    os._exit(0)  # no close: as a kill would leave it

asyncio.run(main())
"""


async def test_a_crash_mid_write_makes_the_next_open_reconcile_even_when_the_count_is_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    url = f"chroma://{tmp_path}/chroma"
    chunks = await _filled(url)
    # Same id, new groups: as many chunks as before, so only the marker protocol can tell.
    subprocess.run([sys.executable, "-c", textwrap.dedent(_CRASH), url, TEXTS[0]], check=True, timeout=120)
    store, scans = await _open_counting_scans(url, monkeypatch)
    try:
        assert scans, "the open after a crash did not reconcile"
        hits = await store.search_text("GPU cluster", 1, Filter(groups=("hr",)))
        assert hits and hits[0].chunk.id == chunks[0].id and hits[0].chunk.groups == ("hr",)
    finally:
        await store.close()


async def test_a_program_writing_to_the_collection_directly_is_caught_by_the_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    url = f"chroma://{tmp_path}/chroma"
    await _filled(url)
    extra = make_chunk("Only the other program wrote the word zeppelin.", index=9)
    client = chromadb.PersistentClient(str(tmp_path / "chroma"), settings=ChromaSettings(anonymized_telemetry=False))
    col = client.get_collection("docs", embedding_function=None)
    col.add(
        ids=[extra.id],
        embeddings=unit_vectors(1, DIM, seed=4),
        documents=[extra.text],
        metadatas=[{"source": extra.source, "index": 9, "groups": ["public"]}],
    )
    client.close()
    store, scans = await _open_counting_scans(url, monkeypatch)
    try:
        assert scans
        assert [h.chunk.id for h in await store.search_text("zeppelin", 3)] == [extra.id]
    finally:
        await store.close()


async def test_a_failed_write_leaves_the_file_unsynced_so_the_next_open_reconciles(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from rag.errors import RagError

    url = f"chroma://{tmp_path}/chroma"
    chunks = await _filled(url)
    store = make_store(settings_for(url, "docs"))
    await store.open(INFO, create=False)
    collection = type(store._opened())  # type: ignore[attr-defined]

    def refuse(self: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    # New groups under the same id: the lexical half lands, Chroma refuses; the count stays the same, so only
    # the failed write's record keeps the next open from trusting the file.
    with monkeypatch.context() as patch:
        patch.setattr(collection, "upsert", refuse)
        with pytest.raises(RagError, match="disk full"):
            await store.upsert([replace(chunks[1], groups=("hr",))], unit_vectors(1, DIM, seed=6))
    await store.close()
    again, scans = await _open_counting_scans(url, monkeypatch)
    try:
        assert scans
        assert (await again.search_text("cafeteria", 1, Filter(groups=("public",))))[0].chunk == chunks[1]
    finally:
        await again.close()


async def test_scans_read_every_page_of_a_collection_larger_than_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import rag.stores.chroma as chroma

    monkeypatch.setattr(chroma, "_SCAN_PAGE", 2)
    url = f"chroma://{tmp_path}/chroma"
    chunks = [make_chunk(f"Note {word} about the cluster.", index=i) for i, word in enumerate("abcde")]
    store = make_store(settings_for(url, "docs"))
    await store.open(INFO, create=True)
    await store.upsert(chunks, unit_vectors(len(chunks), DIM, seed=8))
    assert await store.sources() == {chunks[0].source: 5}
    assert await store.count(Filter(groups=("public",))) == 5
    await store.close()
    for suffix in ("", "-wal", "-shm"):  # the lexical file is lost: open rebuilds it from every page
        Path(f"{tmp_path / 'chroma-lexical' / 'docs.sqlite3'}{suffix}").unlink(missing_ok=True)
    again = make_store(settings_for(url, "docs"))
    await again.open(INFO, create=False)
    try:
        assert again._lex.ids() == {c.id for c in chunks}  # type: ignore[attr-defined]
    finally:
        await again.close()
