"""Milvus BM25 ranks exactly as the in-process bm25s index: same k1/b, same tokens, Korean fusion alike."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag.lexical.index import BM25_B, BM25_K1, LexicalIndex
from rag.registry import make_store
from rag.types import EmbedderInfo
from tests.contract.conftest import make_chunk, settings_for, unit_vectors

DIM = 16
INFO = EmbedderInfo(id="hash-16", dim=DIM)

TEXTS = [
    "GPU jobs on the cluster may run for at most 72 hours; GPU quotas are per team.",
    "The cafeteria opens at eight in the morning and closes at three.",
    "Cluster maintenance happens on the first Monday of the month, GPU nodes included, all day long.",
    "Vacation requests go to your team lead two weeks ahead.",
    "지방은행이 시중은행으로 전환하려면 금융위원회의 인가를 받아야 합니다.",
    "시중 은행의 인가 요건은 은행법 제8조에 있습니다.",
    "인터넷은행 신 청서는 별도 양식으로 냅니다.",
]
QUERIES = ["GPU cluster jobs", "cafeteria morning", "team vacation", "시중은행 전환 인가", "인터넷은행 신청서"]


@pytest.fixture
async def milvus(tmp_path: Path):
    store = make_store(settings_for(f"milvus+lite://{tmp_path}/milvus/rag.db", "bm25"))
    await store.open(INFO, create=True)
    chunks = [make_chunk(t, index=i) for i, t in enumerate(TEXTS)]
    await store.upsert(chunks, unit_vectors(len(chunks), DIM, seed=3))
    try:
        yield store, chunks
    finally:
        await store.close()


async def test_milvus_lite_keeps_the_configured_bm25_parameters(milvus):
    store, _ = milvus
    for field in ("text_sparse", "bigram_sparse"):
        desc = store._client.describe_index(store.name, field)
        assert desc["params"] == {"bm25_k1": BM25_K1, "bm25_b": BM25_B}, desc


async def test_milvus_bm25_ranks_and_scores_like_the_in_process_index(milvus):
    store, chunks = milvus
    index = LexicalIndex("kiwi")
    index.upsert(chunks)
    for query in QUERIES:
        ours = index.search(query, 5)
        theirs = await store.search_text(query, 5)
        assert [h.chunk.id for h in theirs] == [h.chunk.id for h in ours], query
        # One BM25 ranking: Milvus keeps the (k1 + 1) factor that bm25s (Lucene) leaves out. Korean: both fuse.
        factor = BM25_K1 + 1 if query.isascii() else 1.0
        expected = [h.score * factor for h in ours]
        assert [h.score for h in theirs] == pytest.approx(expected, rel=1e-4), query
