"""Several clients of one Chroma server: each one's lexical index follows the others' writes, by id.

Two store objects with their own data dirs (as two service replicas, or a service and an ingester)
on a real ``chroma run`` process. Every write sets a change marker in the collection's metadata; a
lexical search checks it (here on every search: ``lexical_check_s=0``) and reconciles by chunk id.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from pathlib import Path

from rag.config import Settings, StoreSettings
from rag.registry import make_store
from rag.seams import VectorStore
from rag.types import EmbedderInfo, Filter
from tests.contract.conftest import make_chunk, unit_vectors

DIM = 16
INFO = EmbedderInfo(id="hash-16", dim=DIM)
PUBLIC = Filter(groups=("public",))


def _client(server: str, collection: str, data_dir: Path, check_s: float = 0.0) -> VectorStore:
    store = StoreSettings(url=server, collection=collection, lexical_check_s=check_s)
    return make_store(Settings(store=store, data_dir=data_dir))


async def _pair(chroma_server: str, tmp_path: Path, check_s: float = 0.0) -> tuple[VectorStore, VectorStore]:
    collection = f"c{uuid.uuid4().hex[:12]}"
    writer = _client(chroma_server, collection, tmp_path / "writer")
    await writer.open(INFO, create=True)
    reader = _client(chroma_server, collection, tmp_path / "reader", check_s)
    await reader.open(INFO, create=False)
    return writer, reader


def _ids(hits: list) -> list[str]:
    return [h.chunk.id for h in hits]


async def test_a_chunk_written_by_another_client_is_found_by_lexical_search(chroma_server: str, tmp_path: Path):
    writer, reader = await _pair(chroma_server, tmp_path)
    try:
        first = make_chunk("The cafeteria opens at eight in the morning.", index=0)
        await writer.upsert([first], unit_vectors(1, DIM, seed=1))
        assert _ids(await reader.search_text("cafeteria", 3, PUBLIC)) == [first.id]
        korean = make_chunk("연구실 출입은 사원증으로 합니다.", index=1)
        await writer.upsert([korean], unit_vectors(1, DIM, seed=2))
        assert _ids(await reader.search_text("사원증", 3, PUBLIC)) == [korean.id]
    finally:
        await writer.close()
        await reader.close()


async def test_a_delete_and_an_add_that_keep_the_count_are_both_seen(chroma_server: str, tmp_path: Path):
    writer, reader = await _pair(chroma_server, tmp_path)
    try:
        old = make_chunk("Quarterly GPU budget review notes.", index=0)
        keep = make_chunk("Jobs are submitted with the queue command.", index=1)
        await writer.upsert([old, keep], unit_vectors(2, DIM, seed=3))
        assert _ids(await reader.search_text("budget", 3, PUBLIC)) == [old.id]
        new = make_chunk("The NAS quota is two terabytes per team.", index=2)
        await writer.delete([old.id])
        await writer.upsert([new], unit_vectors(1, DIM, seed=4))
        assert await reader.count() == 2  # the chunk count alone cannot tell that anything changed
        assert _ids(await reader.search_text("quota terabytes", 3, PUBLIC)) == [new.id]
        assert await reader.search_text("budget", 3, PUBLIC) == []
    finally:
        await writer.close()
        await reader.close()


async def test_groups_changed_under_the_same_id_are_seen_both_ways(chroma_server: str, tmp_path: Path):
    writer, reader = await _pair(chroma_server, tmp_path)
    try:
        chunk = make_chunk("Salary bands for GPU engineers.", index=0, groups=("hr",))
        await writer.upsert([chunk], unit_vectors(1, DIM, seed=5))
        assert await reader.search_text("salary bands", 3, PUBLIC) == []
        # Widened to public without re-embedding: a stale local copy would still filter it out as 'hr'.
        await writer.set_groups([chunk.id], ["public"])  # type: ignore[attr-defined]
        hits = await reader.search_text("salary bands", 3, PUBLIC)
        assert _ids(hits) == [chunk.id] and hits[0].chunk.groups == ("public",)
        # And narrowed again: never returned to a caller outside the new groups.
        await writer.set_groups([chunk.id], ["hr"])  # type: ignore[attr-defined]
        assert await reader.search_text("salary bands", 3, PUBLIC) == []
        assert _ids(await reader.search_text("salary bands", 3, Filter(groups=("hr",)))) == [chunk.id]
    finally:
        await writer.close()
        await reader.close()


async def test_a_new_title_under_the_same_id_is_searchable(chroma_server: str, tmp_path: Path):
    writer, reader = await _pair(chroma_server, tmp_path)
    try:
        chunk = make_chunk("Every job names one of four queues.", index=0, title="Queues")
        vectors = unit_vectors(1, DIM, seed=6)
        await writer.upsert([chunk], vectors)
        assert await reader.search_text("scheduler handbook", 3, PUBLIC) == []
        await writer.upsert([replace(chunk, title="Scheduler handbook")], vectors)  # same text, same id
        assert _ids(await reader.search_text("scheduler handbook", 3, PUBLIC)) == [chunk.id]
    finally:
        await writer.close()
        await reader.close()


async def test_the_marker_is_checked_at_most_every_lexical_check_s(chroma_server: str, tmp_path: Path):
    writer, reader = await _pair(chroma_server, tmp_path, check_s=3600.0)
    try:
        chunk = make_chunk("The cafeteria opens at eight in the morning.", index=0)
        await writer.upsert([chunk], unit_vectors(1, DIM, seed=7))
        # Within the interval the local index is not reconciled (the documented staleness) ...
        assert await reader.search_text("cafeteria", 3, PUBLIC) == []
        # ... and opening reconciles by id at once.
        await reader.open(INFO, create=False)
        assert _ids(await reader.search_text("cafeteria", 3, PUBLIC)) == [chunk.id]
    finally:
        await writer.close()
        await reader.close()
