"""The lexical half of the VectorStore contract (search_text) and hybrid retrieval, on every backend."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from rag.config import RetrievalSettings
from rag.embedders.hashing import HashingEmbedder
from rag.errors import RagError
from rag.registry import make_store
from rag.retrieval import Retriever
from rag.seams import VectorStore
from rag.types import EmbedderInfo, Filter
from tests.contract.conftest import EMBEDDED, StoreFactory, make_chunk, settings_for, store_url, unit_vectors

DIM = 16
INFO = EmbedderInfo(id="hash-16", dim=DIM)

TEXTS = [
    "GPU jobs on the cluster may run for at most 72 hours.",
    "The cafeteria opens at eight in the morning.",
    "Vacation requests go to your team lead two weeks ahead.",
    "휴가는 팀장에게 2주 전에 신청해야 합니다.",
    "연구실 출입은 사원증으로 합니다.",
]


async def filled(new_store: StoreFactory, texts: list[str] = TEXTS, groups=("public",)) -> tuple[VectorStore, list]:
    store = new_store()
    await store.open(INFO, create=True)
    chunks = [make_chunk(t, index=i, groups=groups) for i, t in enumerate(texts)]
    await store.upsert(chunks, unit_vectors(len(chunks), DIM, seed=7))
    return store, chunks


async def test_search_text_finds_a_chunk_by_a_rare_word_with_a_positive_bm25_score(new_store):
    store, chunks = await filled(new_store)
    hits = await store.search_text("How long can a GPU job run?", 3)
    assert hits[0].chunk == chunks[0]
    assert hits[0].score > 0
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


async def test_search_text_leaves_out_chunks_sharing_no_term(new_store):
    store, _ = await filled(new_store)
    assert await store.search_text("zebrafish aquarium", 5) == []


async def test_search_text_leaves_excluded_sources_out_inside_the_query(new_store):
    store = new_store()
    await store.open(INFO, create=True)
    crowd = [make_chunk(f"quota quota quota field {i}", index=i, source="file:///ref.md") for i in range(60)]
    page = make_chunk("The GPU quota of a team is 16 GPUs.", index=0, source="file:///quota.md")
    await store.upsert([*crowd, page], unit_vectors(61, DIM, seed=3))
    assert page.id not in [h.chunk.id for h in await store.search_text("quota", 5)]
    hits = await store.search_text("quota", 5, Filter(exclude_sources=("file:///ref.md",)))
    assert [h.chunk.id for h in hits] == [page.id]


async def test_korean_query_meets_a_different_particle_through_character_bigrams(new_store):
    store, chunks = await filled(new_store)
    hits = await store.search_text("휴가를 신청하려면?", 2)
    assert hits[0].chunk == chunks[3]


async def test_lexical_acl_filter_is_applied_inside_the_query_not_after_top_k(new_store):
    store = new_store()
    await store.open(INFO, create=True)
    others = [make_chunk(f"quantum quantum quantum note {i}", index=i, groups=("other",)) for i in range(300)]
    mine = make_chunk("a long passage that mentions quantum only once among many other words here", index=999)
    mine = replace(mine, groups=("mine",))
    await store.upsert([*others, mine], unit_vectors(301, DIM, seed=3))
    hits = await store.search_text("quantum", 2, Filter(groups=("mine", "nobody")))
    assert [h.chunk.id for h in hits] == [mine.id]
    assert await store.search_text("quantum", 2, Filter(groups=())) == []


async def test_updates_and_deletes_keep_the_lexical_index_in_sync(new_store):
    store, chunks = await filled(new_store)
    changed = replace(chunks[1], text="The library opens at nine.")
    await store.upsert([changed], unit_vectors(1, DIM, seed=9))
    assert await store.search_text("cafeteria", 5) == []
    assert (await store.search_text("library", 5))[0].chunk == changed
    await store.delete([chunks[0].id])
    assert await store.search_text("GPU cluster", 5) == []
    await store.delete_sources([chunks[2].source])
    assert await store.search_text("vacation", 5) == []


async def test_unknown_filter_field_is_refused_by_search_text(new_store):
    store, _ = await filled(new_store)
    from rag.errors import InvalidRequest

    with pytest.raises(InvalidRequest):
        await store.search_text("GPU", 3, Filter(where={"author": "x"}))


async def test_hybrid_finds_a_lexical_only_match_that_dense_misses(new_store):
    store, chunks = await filled(new_store)
    # The target's vector points away from the query's, so dense alone ranks it last.
    embedder = HashingEmbedder(DIM)
    query = "cafeteria opening hours"
    qv = await embedder.embed_query(query)
    await store.upsert([chunks[1]], -qv.reshape(1, -1))
    dense = await store.search(qv, 5)
    assert dense[-1].chunk.id == chunks[1].id
    # The gate passes it on lexical coverage alone (1 of 3 terms: "opening" and "hours" are not in the text).
    retriever = Retriever(store, embedder, RetrievalSettings(min_score=0.0, min_lexical_coverage=0.3))
    hits = await retriever.search(query, 2)
    assert chunks[1].id in [h.chunk.id for h in hits]


@pytest.mark.parametrize("backend", [*EMBEDDED, "memory"], indirect=True)
async def test_lexical_index_survives_close_and_reopen(backend, tmp_path: Path, request: pytest.FixtureRequest):
    url = store_url(backend, tmp_path, request)
    if backend == "memory":
        url = "memory://?name=lexical-reopen"
    store = make_store(settings_for(url, "persisted", data_dir=tmp_path / "data"))
    await store.open(INFO, create=True)
    chunks = [make_chunk(t, index=i) for i, t in enumerate(TEXTS)]
    await store.upsert(chunks, unit_vectors(len(chunks), DIM, seed=1))
    await store.close()
    again = make_store(settings_for(url, "persisted", data_dir=tmp_path / "data"))
    await again.open(INFO, create=False)
    assert (await again.search_text("cafeteria morning", 1))[0].chunk == chunks[1]
    await again.close()


async def test_chroma_rebuilds_a_missing_lexical_index_and_picks_up_writes_of_another_client(tmp_path: Path):
    url = f"chroma://{tmp_path}/chroma"
    writer = make_store(settings_for(url, "docs"))
    await writer.open(INFO, create=True)
    chunks = [make_chunk(t, index=i) for i, t in enumerate(TEXTS)]
    await writer.upsert(chunks[:3], unit_vectors(3, DIM, seed=1))
    await writer.close()
    index_file = tmp_path / "chroma-lexical" / "docs.sqlite3"
    assert index_file.is_file()

    def lose_index() -> None:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{index_file}{suffix}").unlink(missing_ok=True)

    lose_index()
    # Another client adds chunks without this process knowing; reopening reconciles by id.
    other = make_store(settings_for(url, "docs"))
    await other.open(INFO, create=False)
    await other.upsert(chunks[3:], unit_vectors(2, DIM, seed=2))
    await other.close()
    for lost in (False, True):
        if lost:
            lose_index()
        reader = make_store(settings_for(url, "docs"))
        await reader.open(INFO, create=False)
        assert (await reader.search_text("GPU", 1))[0].chunk == chunks[0]
        assert (await reader.search_text("사원증", 1))[0].chunk == chunks[4]
        await reader.close()


async def test_a_chroma_write_that_fails_leaves_no_lexical_hit_and_the_next_open_drops_its_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    # The lexical index is written beside Chroma's own write, so it may hold a batch Chroma refused.
    url = f"chroma://{tmp_path}/chroma"
    store = make_store(settings_for(url, "docs"))
    await store.open(INFO, create=True)
    chunks = [make_chunk(t, index=i) for i, t in enumerate(TEXTS)]
    await store.upsert(chunks[:3], unit_vectors(3, DIM, seed=1))
    collection = type(store._opened())  # type: ignore[attr-defined]

    def refuse(self: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    with monkeypatch.context() as patch:
        patch.setattr(collection, "upsert", refuse)
        with pytest.raises(RagError, match="disk full"):
            await store.upsert(chunks[3:], unit_vectors(2, DIM, seed=2))
    assert await store.search_text("사원증", 5) == []  # the refused chunk is not returned
    assert (await store.search_text("GPU", 1))[0].chunk == chunks[0]
    await store.close()
    reopened = make_store(settings_for(url, "docs"))
    await reopened.open(INFO, create=False)
    assert reopened._lex.ids() == {c.id for c in chunks[:3]}  # type: ignore[attr-defined]
    assert await reopened.search_text("사원증", 5) == []
    await reopened.close()


async def test_chroma_converts_a_json_lexical_index_of_the_previous_version(tmp_path: Path, caplog):
    import json
    from dataclasses import asdict

    from rag.lexical.tokens import kiwi_tokens, lexical_text

    url = f"chroma://{tmp_path}/chroma"
    writer = make_store(settings_for(url, "docs"))
    await writer.open(INFO, create=True)
    chunks = [make_chunk(t, index=i) for i, t in enumerate(TEXTS)]
    await writer.upsert(chunks, unit_vectors(len(chunks), DIM, seed=1))
    await writer.close()
    folder = tmp_path / "chroma-lexical"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{folder / 'docs.sqlite3'}{suffix}").unlink(missing_ok=True)
    # The one JSON file earlier versions kept, with a chunk the collection does not hold: the file is read.
    extra = make_chunk("Only the old index knows the word zeppelin.", index=99)
    docs = [{"chunk": asdict(c), "tokens": kiwi_tokens(lexical_text(c))} for c in [*chunks, extra]]
    (folder / "docs.json").write_text(json.dumps({"format": 3, "tokenizer": "kiwi", "docs": docs}))
    reader = make_store(settings_for(url, "docs"))
    with caplog.at_level("INFO", logger="rag.lexical.index"):
        await reader.open(INFO, create=False)
    assert "converted lexical index" in caplog.text
    assert not (folder / "docs.json").exists()
    assert (folder / "docs.sqlite3").is_file()
    assert (await reader.search_text("cafeteria morning", 1))[0].chunk == chunks[1]
    # Reconciliation drops what the collection does not hold.
    assert await reader.search_text("zeppelin", 3) == []
    await reader.close()


@pytest.mark.parametrize("backend", ["chroma", "chroma+http"], indirect=True)
async def test_acl_change_by_another_client_is_honoured_by_lexical_search_at_once(new_store):
    reader, chunks = await filled(new_store)
    writer = new_store()
    await writer.open(INFO, create=False)
    # Same id, new groups: reconciliation by id cannot notice, the freshness check must.
    await writer.upsert([replace(chunks[0], groups=("hr",))], unit_vectors(1, DIM, seed=5))
    assert await reader.search_text("GPU cluster", 3, Filter(groups=("public",))) == []
    hits = await reader.search_text("GPU cluster", 3, Filter(groups=("hr",)))
    assert hits == [] or hits[0].chunk.groups == ("hr",)


def _legacy_milvus_collection(uri: str, name: str) -> None:
    """A collection as the first schema made it: BM25 fed from ``text`` by Milvus's analyzer, no ``lex`` field."""
    from pymilvus import DataType, Function, FunctionType, MilvusClient

    client = MilvusClient(uri)
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.VARCHAR, max_length=64, is_primary=True)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=DIM)
    schema.add_field("text", DataType.VARCHAR, max_length=65535, enable_analyzer=True)
    schema.add_field("text_sparse", DataType.SPARSE_FLOAT_VECTOR)
    for field in ("source", "title", "section", "lang", "doc_hash", "content_hash"):
        schema.add_field(field, DataType.VARCHAR, max_length=2048)
    for field in ("page", "chunk_index"):
        schema.add_field(field, DataType.INT64)
    for field in ("mtime", "ingested_at"):
        schema.add_field(field, DataType.DOUBLE)
    schema.add_field("groups", DataType.ARRAY, element_type=DataType.VARCHAR, max_capacity=256, max_length=256)
    schema.add_function(
        Function(
            name="text_bm25",
            function_type=FunctionType.BM25,
            input_field_names=["text"],
            output_field_names=["text_sparse"],
        )
    )
    index = MilvusClient.prepare_index_params()
    index.add_index("vector", index_type="HNSW", metric_type="COSINE", params={"M": 16, "efConstruction": 200})
    index.add_index("text_sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
    client.create_collection(
        name,
        schema=schema,
        index_params=index,
        consistency_level="Strong",
        properties={"rag.embedder_id": INFO.id, "rag.embedder_dim": str(DIM)},
    )
    client.close()


async def test_milvus_collection_made_before_the_lex_field_still_searches_lexically(tmp_path: Path, caplog):
    from rag.stores.milvus import _lite_acquire, _lite_release

    db = str((tmp_path / "legacy.db").resolve())
    _lite_acquire(db)
    try:
        _legacy_milvus_collection(db, "old")
    finally:
        _lite_release(db)
    store = make_store(settings_for(f"milvus+lite://{db}", "old"))
    await store.open(INFO, create=False)
    try:
        assert "predates" in caplog.text
        chunks = [make_chunk(t, index=i) for i, t in enumerate(TEXTS)]
        await store.upsert(chunks, unit_vectors(len(chunks), DIM, seed=1))
        assert (await store.search_text("cafeteria morning", 1))[0].chunk == chunks[1]
    finally:
        await store.close()


async def test_term_coverage_is_the_analysed_chunks_share_of_the_query_terms(new_store):
    from rag.lexical.tokens import coverage, lexical_text, make_tokenizer
    from rag.seams import TermCoverage

    store, chunks = await filled(new_store)
    assert isinstance(store, TermCoverage)
    tokenize = make_tokenizer("kiwi")
    for query in ["How long can a GPU job run?", "휴가 신청은 언제 하나요?", "zebrafish aquarium", "연구실 출입 방법"]:
        tokens = tokenize(query)
        got = await store.term_coverage("kiwi", tokens, chunks)
        assert got == {c.id: coverage(tokens, tokenize(lexical_text(c))) for c in chunks}, query
    assert any(v > 0 for v in (await store.term_coverage("kiwi", tokenize("휴가 신청"), chunks)).values())
    # A chunk the index holds with another text (the caller's copy is newer or older), or not at all, is
    # left to the caller; so is every chunk when the caller analyses with another tokeniser.
    edited = replace(chunks[0], text="GPU jobs on the cluster may run for at most 24 hours.")
    absent = make_chunk("Never stored.", index=99)
    got = await store.term_coverage("kiwi", tokenize("GPU jobs"), [edited, absent, chunks[1]])
    assert set(got) == {chunks[1].id}
    assert await store.term_coverage("bigram", tokenize("GPU jobs"), chunks) == {}
    assert await store.term_coverage("kiwi", [], chunks) == {c.id: 0.0 for c in chunks}
