"""The VectorStore contract: one suite, run against every backend (see conftest.BACKENDS)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from rag.errors import CollectionNotFound, EmbedderMismatch, InvalidRequest, UpstreamUnavailable
from rag.registry import make_store
from rag.seams import VectorStore
from rag.stores.memory import MemoryStore
from rag.types import Chunk, EmbedderInfo, Filter
from tests.contract.conftest import EMBEDDED, StoreFactory, free_port, make_chunk, settings_for, store_url, unit_vectors

DIM = 16
INFO = EmbedderInfo(id="hash-16", dim=DIM)


async def opened(new_store: StoreFactory, info: EmbedderInfo = INFO, *, create: bool = True) -> VectorStore:
    store = new_store()
    await store.open(info, create=create)
    return store


def corpus(n: int, *, seed: int = 1, groups: tuple[str, ...] = ("public",), source: str = "file:///docs/a.md"):
    vectors = unit_vectors(n, DIM, seed)
    chunks = [make_chunk(f"passage number {i}", source=source, index=i, groups=groups) for i in range(n)]
    return chunks, vectors


# --- 1. open, embedder record, missing collection -------------------------------------------------


async def test_open_with_create_records_embedder_and_reopening_with_same_embedder_works(new_store):
    store = await opened(new_store)
    chunks, vectors = corpus(3)
    await store.upsert(chunks, vectors)
    await store.close()
    again = await opened(new_store, create=False)
    assert await again.count() == 3


async def test_open_with_different_embedder_id_raises_mismatch_naming_both(new_store):
    store = await opened(new_store)
    await store.close()
    with pytest.raises(EmbedderMismatch) as err:
        await opened(new_store, EmbedderInfo(id="st-minilm", dim=DIM))
    assert "hash-16" in str(err.value) and "st-minilm" in str(err.value)
    assert err.value.status == 409


async def test_open_with_different_dimension_raises_mismatch_naming_both(new_store):
    store = await opened(new_store)
    await store.close()
    with pytest.raises(EmbedderMismatch) as err:
        await opened(new_store, EmbedderInfo(id="hash-16", dim=32), create=False)
    assert "16" in str(err.value) and "32" in str(err.value)


async def test_open_without_create_on_missing_collection_raises_not_found_pointing_to_ingest(new_store):
    with pytest.raises(CollectionNotFound) as err:
        await opened(new_store, create=False)
    assert "rag ingest" in str(err.value)
    assert err.value.status == 404


# --- 2. idempotent upsert -------------------------------------------------------------------------


async def test_upserting_the_same_chunks_twice_leaves_the_count_unchanged(new_store):
    store = await opened(new_store)
    chunks, vectors = corpus(20)
    await store.upsert(chunks, vectors)
    await store.upsert(chunks, vectors)
    assert await store.count() == 20


async def test_upserting_changed_text_for_an_id_replaces_the_chunk(new_store):
    store = await opened(new_store)
    chunks, vectors = corpus(5)
    await store.upsert(chunks, vectors)
    changed = replace(chunks[2], text="rewritten passage", title="New title")
    new_vec = unit_vectors(1, DIM, seed=99)
    await store.upsert([changed], new_vec)
    assert await store.count() == 5
    assert await store.get([changed.id]) == [changed]
    top = await store.search(new_vec[0], k=1)
    assert top[0].chunk == changed


# --- 3. delete --------------------------------------------------------------------------------------


async def test_delete_removes_given_ids_and_ignores_unknown_ones(new_store):
    store = await opened(new_store)
    chunks, vectors = corpus(6)
    await store.upsert(chunks, vectors)
    await store.delete([chunks[0].id, chunks[1].id, "no-such-id"])
    await store.delete([])
    assert await store.count() == 4
    assert await store.get([chunks[0].id, chunks[2].id]) == [chunks[2]]


async def test_delete_sources_removes_every_chunk_of_those_sources_and_returns_the_count(new_store):
    store = await opened(new_store)
    a, va = corpus(4, source="file:///a.md")
    b, vb = corpus(3, seed=2, source="file:///b.md")
    c, vc = corpus(2, seed=3, source="file:///c.md")
    await store.upsert(a + b + c, np.vstack([va, vb, vc]))
    assert await store.delete_sources(["file:///a.md", "file:///c.md", "file:///unknown.md"]) == 6
    assert await store.sources() == {"file:///b.md": 3}
    assert await store.delete_sources(["file:///a.md"]) == 0


# --- 4. search results ------------------------------------------------------------------------------


async def test_search_round_trips_every_chunk_field(new_store):
    store = await opened(new_store)
    full = Chunk(
        id="0123456789abcdef0123456789abcdef",
        text='Ünïcode "quoted" text \\ with a backslash,\nand a newline.',
        source='file:///docs/weird "name" \\ dir/ünï.md',
        title="A title",
        section="2.1 Section",
        page=7,
        index=12,
        groups=("a", "b"),
        content_hash="c" * 64,
        doc_hash="d" * 64,
        lang="de",
        mtime=1712345678.25,
        ingested_at=1712399999.5,
    )
    no_page = replace(full, id="fedcba9876543210fedcba9876543210", page=None, index=0, groups=("public",))
    no_groups = replace(full, id="00000000000000000000000000000000", groups=(), title="", lang="")
    vectors = unit_vectors(3, DIM, seed=5)
    await store.upsert([full, no_page, no_groups], vectors)
    for chunk, vec in zip([full, no_page, no_groups], vectors, strict=True):
        top = await store.search(vec, k=1)
        assert top[0].chunk == chunk
        assert isinstance(top[0].chunk.groups, tuple)
    assert (await store.get([no_page.id]))[0].page is None


async def test_search_scores_are_cosine_similarity_sorted_descending_and_k_respected(new_store):
    store = await opened(new_store)
    chunks, vectors = corpus(30)
    await store.upsert(chunks, vectors)
    query = vectors[7]
    hits = await store.search(query, k=5)
    assert len(hits) == 5
    assert hits[0].chunk.id == chunks[7].id
    assert hits[0].score == pytest.approx(1.0, abs=1e-3)
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
    by_id = {c.id: v for c, v in zip(chunks, vectors, strict=True)}
    for hit in hits:
        assert hit.score == pytest.approx(float(by_id[hit.chunk.id] @ query), abs=1e-3)
    # An unnormalised query gives the same cosine scores.
    scaled = await store.search(query * 3.0, k=5)
    assert [h.chunk.id for h in scaled] == [h.chunk.id for h in hits]
    assert len(await store.search(query, k=100)) == 30


async def test_search_on_an_empty_collection_returns_nothing(new_store):
    store = await opened(new_store)
    assert await store.search(unit_vectors(1, DIM, seed=1)[0], k=3) == []
    assert await store.search(unit_vectors(1, DIM, seed=1)[0], k=3, flt=Filter(groups=("public",))) == []


# --- 5. filters -------------------------------------------------------------------------------------


async def test_group_filter_matches_a_chunk_sharing_any_group_with_the_caller(new_store):
    store = await opened(new_store)
    chunk = make_chunk("team notes", groups=("a", "b"))
    vec = unit_vectors(1, DIM, seed=3)
    await store.upsert([chunk], vec)
    assert [h.chunk.id for h in await store.search(vec[0], 5, Filter(groups=("b", "z")))] == [chunk.id]
    assert [h.chunk.id for h in await store.search(vec[0], 5, Filter(groups=("a",)))] == [chunk.id]
    assert await store.search(vec[0], 5, Filter(groups=("z",))) == []


async def test_empty_groups_filter_matches_nothing(new_store):
    store = await opened(new_store)
    chunks, vectors = corpus(5)
    await store.upsert(chunks, vectors)
    assert await store.search(vectors[0], 5, Filter(groups=())) == []
    assert await store.count(Filter(groups=())) == 0


async def test_sources_filter_keeps_only_the_named_sources(new_store):
    store = await opened(new_store)
    a, va = corpus(4, source="file:///a.md")
    b, vb = corpus(4, seed=2, source='file:///b "x".md')
    await store.upsert(a + b, np.vstack([va, vb]))
    hits = await store.search(va[0], 10, Filter(sources=('file:///b "x".md',)))
    assert {h.chunk.source for h in hits} == {'file:///b "x".md'} and len(hits) == 4
    assert await store.count(Filter(sources=("file:///a.md", 'file:///b "x".md'))) == 8


async def test_exclude_sources_leaves_the_named_documents_out(new_store):
    store = await opened(new_store)
    a, va = corpus(4, source="file:///a.md")
    b, vb = corpus(4, seed=2, source='file:///b "x".md')
    c, vc = corpus(4, seed=3, source="file:///c.md")
    await store.upsert(a + b + c, np.vstack([va, vb, vc]))
    hits = await store.search(va[0], 12, Filter(exclude_sources=("file:///a.md", 'file:///b "x".md')))
    assert {h.chunk.source for h in hits} == {"file:///c.md"} and len(hits) == 4
    assert await store.count(Filter(exclude_sources=("file:///a.md",))) == 8
    both = Filter(groups=("public",), sources=("file:///a.md", "file:///c.md"), exclude_sources=("file:///a.md",))
    assert await store.count(both) == 4


async def test_where_filter_on_title_and_page(new_store):
    store = await opened(new_store)
    chunks = [
        make_chunk("one", index=0, title="Guide", page=1),
        make_chunk("two", index=1, title="Guide", page=2),
        make_chunk("three", index=2, title="Other", page=2),
        make_chunk("four", index=3, title="Guide", page=None),
    ]
    vectors = unit_vectors(4, DIM, seed=4)
    await store.upsert(chunks, vectors)
    hits = await store.search(vectors[0], 10, Filter(where={"title": "Guide", "page": 2}))
    assert [h.chunk.text for h in hits] == ["two"]
    assert await store.count(Filter(where={"title": "Guide"})) == 3
    assert await store.count(Filter(where={"page": 2})) == 2


async def test_unknown_where_field_raises_invalid_request_naming_allowed_fields(new_store):
    store = await opened(new_store)
    chunks, vectors = corpus(2)
    await store.upsert(chunks, vectors)
    with pytest.raises(InvalidRequest) as err:
        await store.search(vectors[0], 5, Filter(where={"author": "x"}))
    assert "author" in str(err.value) and "title" in str(err.value) and err.value.status == 400
    with pytest.raises(InvalidRequest):
        await store.count(Filter(where={"text": "x"}))


async def test_acl_filter_is_applied_inside_the_query_not_after_top_k(new_store):
    store = await opened(new_store)
    query = unit_vectors(1, DIM, seed=10)[0]
    noise = unit_vectors(300, DIM, seed=11) * 0.2
    near = query + noise
    near /= np.linalg.norm(near, axis=1, keepdims=True)
    others = [make_chunk(f"secret {i}", index=i, groups=("other",)) for i in range(300)]
    mine = make_chunk("the allowed one", index=999, groups=("mine",))
    far = unit_vectors(1, DIM, seed=12)
    await store.upsert([*others, mine], np.vstack([near, far]))
    hits = await store.search(query, k=2, flt=Filter(groups=("mine", "nobody")))
    assert [h.chunk.id for h in hits] == [mine.id]


# --- 6. count, sources, get -------------------------------------------------------------------------


async def test_count_with_and_without_filter(new_store):
    store = await opened(new_store)
    assert await store.count() == 0
    pub, vp = corpus(7)
    priv, vq = corpus(3, seed=2, groups=("hr",), source="file:///hr.md")
    await store.upsert(pub + priv, np.vstack([vp, vq]))
    assert await store.count() == 10
    assert await store.count(Filter(groups=("hr",))) == 3
    assert await store.count(Filter(groups=("hr", "public"))) == 10
    assert await store.count(Filter(groups=("public",), sources=("file:///hr.md",))) == 0


async def test_sources_maps_each_source_to_its_chunk_count(new_store):
    store = await opened(new_store)
    assert await store.sources() == {}
    a, va = corpus(4, source="file:///a.md")
    b, vb = corpus(2, seed=2, source="https://wiki/b")
    await store.upsert(a + b, np.vstack([va, vb]))
    assert await store.sources() == {"file:///a.md": 4, "https://wiki/b": 2}


async def test_get_returns_chunks_in_the_order_asked_and_skips_missing_ids(new_store):
    store = await opened(new_store)
    chunks, vectors = corpus(5)
    await store.upsert(chunks, vectors)
    got = await store.get([chunks[3].id, "missing", chunks[0].id])
    assert got == [chunks[3], chunks[0]]
    assert await store.get([]) == []


# --- 7. recall against the brute-force oracle -------------------------------------------------------


async def test_recall_at_10_against_brute_force_is_at_least_095_with_and_without_group_filter(new_store):
    n, dim, n_queries, k = 2000, 64, 50, 10
    info = EmbedderInfo(id="random-64", dim=dim)
    vectors = unit_vectors(n, dim, seed=42)
    chunks = [make_chunk(f"doc {i}", index=i, groups=(f"g{i % 5}",)) for i in range(n)]
    queries = unit_vectors(n_queries, dim, seed=43)
    store = await opened(new_store, info)
    oracle = MemoryStore("oracle")
    await oracle.open(info, create=True)
    await asyncio.gather(store.upsert(chunks, vectors), oracle.upsert(chunks, vectors))
    for flt in (None, Filter(groups=("g1", "g3"))):
        found = total = 0
        for q in queries:
            truth = {h.chunk.id for h in await oracle.search(q, k, flt)}
            got = {h.chunk.id for h in await store.search(q, k, flt)}
            found += len(truth & got)
            total += len(truth)
        assert found / total >= 0.95, f"recall@{k} {found / total:.3f} with filter {flt}"


# --- 8. unreachable servers -------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["chroma+http", "milvus"])
async def test_unreachable_server_raises_upstream_unavailable_with_a_clear_message(scheme):
    port = free_port()
    store = make_store(settings_for(f"{scheme}://127.0.0.1:{port}", "docs", timeout_s=2.0))
    with pytest.raises(UpstreamUnavailable) as err:
        await store.open(INFO, create=True)
    assert f"127.0.0.1:{port}" in str(err.value)
    assert err.value.status == 503
    assert isinstance(err.value.__cause__, Exception)
    await store.close()


# --- 9. persistence ---------------------------------------------------------------------------------

_REOPEN = """
import asyncio, json, sys
from rag.registry import make_store
from rag.types import EmbedderInfo
from tests.contract.conftest import settings_for

async def main():
    store = make_store(settings_for(sys.argv[1], sys.argv[2]))
    await store.open(EmbedderInfo(id="hash-16", dim=16), create=False)
    hits = await store.search(json.loads(sys.argv[3]), k=1)
    print(json.dumps({"count": await store.count(), "sources": await store.sources(), "top": hits[0].chunk.id}))
    await store.close()

asyncio.run(main())
"""


@pytest.mark.parametrize("backend", EMBEDDED, indirect=True)
async def test_embedded_store_keeps_its_data_after_close_and_reopen_in_another_process(
    backend, tmp_path: Path, request: pytest.FixtureRequest
):
    url = store_url(backend, tmp_path, request)
    store = make_store(settings_for(url, "persisted"))
    await store.open(INFO, create=True)
    chunks, vectors = corpus(12)
    await store.upsert(chunks, vectors)
    await store.close()
    proc = subprocess.run(
        [sys.executable, "-c", _REOPEN, url, "persisted", json.dumps(vectors[4].tolist())],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).parents[2],
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"count": 12, "sources": {"file:///docs/a.md": 12}, "top": chunks[4].id}
    # And in this process too, after the other one has gone.
    again = make_store(settings_for(url, "persisted"))
    await again.open(INFO, create=False)
    assert await again.get([chunks[0].id]) == [chunks[0]]
    await again.close()


# --- adapter limits ---------------------------------------------------------------------------------


async def test_milvus_refuses_a_text_longer_than_its_field_instead_of_cutting_it(tmp_path: Path):
    store = make_store(settings_for(f"milvus+lite://{tmp_path}/rag.db", "docs"))
    await store.open(INFO, create=True)
    try:
        long = make_chunk("é" * 40000)
        with pytest.raises(InvalidRequest) as err:
            await store.upsert([long], unit_vectors(1, DIM, seed=1))
        assert "text" in str(err.value) and "65535" in str(err.value)
        assert await store.count() == 0
    finally:
        await store.close()


async def test_upsert_with_vectors_of_the_wrong_dimension_raises_invalid_request(new_store):
    store = await opened(new_store)
    chunks, _ = corpus(2)
    with pytest.raises(InvalidRequest):
        await store.upsert(chunks, unit_vectors(2, DIM + 1, seed=1))


async def test_search_with_k_below_one_raises_invalid_request(new_store):
    store = await opened(new_store)
    chunks, vectors = corpus(2)
    await store.upsert(chunks, vectors)
    with pytest.raises(InvalidRequest):
        await store.search(vectors[0], k=0)


async def test_memory_stores_share_data_by_name_and_are_private_without_one():
    named = [make_store(settings_for("memory://?name=contract-shared", "docs")) for _ in range(2)]
    private = [make_store(settings_for("memory://", "docs")) for _ in range(2)]
    chunks, vectors = corpus(3)
    await named[0].open(INFO, create=True)
    await named[0].upsert(chunks, vectors)
    await named[1].open(INFO, create=False)
    assert await named[1].count() == 3
    await private[0].open(INFO, create=True)
    await private[0].upsert(chunks, vectors)
    with pytest.raises(CollectionNotFound):
        await private[1].open(INFO, create=False)
