"""Rerankers against a protocol-faithful fake /rerank server (TEI and vLLM/KServe formats)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from rag.config import RetrievalSettings, Settings
from rag.embedders.hashing import HashingEmbedder
from rag.errors import ConfigError, UpstreamError, UpstreamUnavailable
from rag.registry import make_reranker
from rag.rerank import HttpReranker
from rag.retrieval import Retriever
from rag.stores.memory import MemoryStore
from rag.types import Chunk
from tests.contract.conftest import free_port
from tests.fakes._serve import ServerThread
from tests.fakes.rerank_server import FakeRerankServer


def reranker_for(url: str):  # type: ignore[no-untyped-def]
    return make_reranker(Settings(retrieval={"rerank_url": url}))


TEXTS = ["the cafeteria opens at eight", "gpu jobs run for 72 hours on the cluster", "gpu cluster"]


@pytest.fixture(scope="module")
def fake() -> Iterator[tuple[FakeRerankServer, str]]:
    server = FakeRerankServer()
    with ServerThread(server.app) as thread:
        yield server, thread.root


@pytest.mark.parametrize("path", ["/rerank", "/v1/rerank"])
async def test_scores_come_back_in_the_order_of_the_texts(fake, path: str):
    server, root = fake
    reranker = reranker_for(f"{root}{path}?model=bge-reranker")
    assert isinstance(reranker, HttpReranker)
    scores = await reranker.rerank("gpu jobs hours", TEXTS)
    await reranker.close()
    assert scores[1] > scores[2] > scores[0]
    body = server.requests[-1]
    if path == "/rerank":
        assert body["texts"] == TEXTS and "documents" not in body
    else:
        assert body["documents"] == TEXTS and body["model"] == "bge-reranker"


async def test_an_upstream_error_becomes_upstream_error(fake):
    server, root = fake
    server.fail_next(status=503, message="model loading")
    reranker = HttpReranker(f"{root}/rerank")
    with pytest.raises(UpstreamError, match="503"):
        await reranker.rerank("q", ["a"])
    await reranker.close()


async def test_an_unreachable_reranker_is_upstream_unavailable():
    reranker = HttpReranker(f"http://127.0.0.1:{free_port()}/rerank", timeout_s=2)
    with pytest.raises(UpstreamUnavailable):
        await reranker.rerank("q", ["a"])
    await reranker.close()


def test_reranker_urls_are_checked():
    assert reranker_for("") is None
    with pytest.raises(ConfigError, match="no reranker ships"):
        reranker_for("st:///nonexistent/cross-encoder")
    with pytest.raises(ConfigError, match="unknown reranker scheme 'ftp'"):
        reranker_for("ftp://x/rerank")


async def test_retriever_reorders_fused_candidates_by_the_reranker(fake):
    _, root = fake
    embedder = HashingEmbedder(32)
    store = MemoryStore("docs")
    await store.open(embedder.info, create=True)
    chunks = [Chunk(id=f"c{i}", text=t, source=f"s{i}", index=i) for i, t in enumerate(TEXTS)]
    await store.upsert(chunks, await embedder.embed_documents(TEXTS))
    reranker = reranker_for(f"{root}/rerank")
    retriever = Retriever(store, embedder, RetrievalSettings(min_score=0.0), reranker)
    hits = await retriever.search("gpu jobs hours", 2)
    assert [h.chunk.id for h in hits] == ["c1", "c2"]
    assert hits[0].score == 1.0
    await reranker.close()  # type: ignore[union-attr]
