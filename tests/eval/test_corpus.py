"""An imported corpus is ingested the way the worker ingests: its batches, its sync state, nothing embedded twice."""

from __future__ import annotations

from pathlib import Path

from eval.corpus import ingest_corpus
from eval.dataset import CorpusDoc, from_squad
from rag.config import Settings
from rag.embedders.hashing import HashingEmbedder
from rag.stores.memory import MemoryStore
from tests.eval.conftest import XQUAD


class CountingEmbedder(HashingEmbedder):
    """The hashing embedder, counting the texts and calls it embeds (what the worker's batching decides)."""

    def __init__(self) -> None:
        super().__init__(64)
        self.texts = 0
        self.calls = 0

    async def embed_documents(self, texts):  # type: ignore[no-untyped-def]
        self.texts += len(texts)
        self.calls += 1
        return await super().embed_documents(texts)


async def test_a_corpus_ingested_again_embeds_only_what_changed(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path, store={"url": "memory://", "collection": "docs"}, embed={"url": "hash://?dim=64"}
    )
    corpus = list(from_squad(XQUAD).corpus)
    store, embedder = MemoryStore("docs"), CountingEmbedder()
    stored = await ingest_corpus(settings, store, embedder, corpus)
    assert stored == await store.count() > len(corpus) - 1
    first = embedder.texts
    assert first == stored and embedder.calls < first  # batches of several chunks, as the worker cuts them

    # Unchanged documents are skipped through the sync state; an edited one replaces its chunks.
    edited = [*corpus[:-1], CorpusDoc(corpus[-1].id, corpus[-1].title, corpus[-1].text + " An added sentence.")]
    again = await ingest_corpus(settings, store, embedder, edited)
    sources = await store.sources()
    assert embedder.texts - first == sources[corpus[-1].id] >= 1  # only the edited document's chunks
    assert again == await store.count()
    texts = [h.chunk.text for h in await store.search(await embedder.embed_query("An added sentence."), 50)]
    assert any("An added sentence." in t for t in texts)
