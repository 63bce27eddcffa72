"""Ingest an imported corpus (SQuAD paragraphs, BEIR documents) held in memory, through the ingest chunker.

Each document is stored under ``source = doc.id`` so that a case's gold ``sources`` match the retrieved
chunks' sources exactly. A document's earlier chunks are removed first, so re-ingesting is idempotent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

import numpy as np

from eval.dataset import CorpusDoc
from ingest.chunking import Chunker
from ingest.formats import Section
from ingest.loaders import Document
from rag.config import Settings
from rag.ids import content_hash
from rag.lang import detect_lang
from rag.seams import Embedder, VectorStore
from rag.types import Chunk, Filter

log = logging.getLogger(__name__)


def to_document(doc: CorpusDoc, groups: tuple[str, ...]) -> Document:
    """The ingest Document for one corpus entry: one section, title kept, language detected."""
    return Document(
        source=doc.id,
        title=doc.title,
        lang=detect_lang(doc.text),
        mtime=0.0,
        doc_hash=content_hash(f"{doc.title}\n{doc.text}"),
        sections=(Section(text=doc.text),),
        groups=groups,
    )


async def ingest_corpus(
    settings: Settings,
    store: VectorStore,
    embedder: Embedder,
    corpus: Iterable[CorpusDoc],
    progress: Callable[[int], None] | None = None,
) -> int:
    """Chunk, embed and upsert every document (the store is opened, creating the collection); returns chunks."""
    await store.open(embedder.info, create=True)
    chunker = Chunker(settings.ingest.chunk_size, settings.ingest.chunk_overlap, embedder)
    groups = tuple(settings.ingest.default_groups)
    batch_size = settings.embed.batch_size
    started, now = time.monotonic(), time.time()
    buffer: list[Chunk] = []
    total = docs = 0

    async def flush() -> None:
        nonlocal buffer, total
        if buffer:
            vectors = await embedder.embed_documents([c.text for c in buffer])
            await store.upsert(buffer, vectors)
            total += len(buffer)
            buffer = []

    for doc in corpus:
        document = to_document(doc, groups)
        await store.delete_sources([document.source])
        buffer.extend(chunker.chunks(document, ingested_at=now))
        docs += 1
        if len(buffer) >= batch_size:
            await flush()
        if progress is not None:
            progress(docs)
    await flush()
    log.info("ingested %d documents as %d chunks in %.1fs", docs, total, time.monotonic() - started)
    return total


async def sample_stored(
    store: VectorStore,
    dim: int,
    count: int,
    seed: int = 0,
    groups: tuple[str, ...] = ("public",),
    per_query: int = 10,
    max_queries: int = 200,
) -> list[Chunk]:
    """Up to ``count`` distinct chunks of an opened collection, found by searching with random unit vectors.

    The store seam has no chunk listing, so this samples through ``search``: each seeded random direction
    (and its opposite) brings back its nearest chunks. The sample is spread over the collection but not
    uniform (chunks near the centre of the embedding cloud come back less often). Only chunks readable by
    ``groups`` are returned, so restricted documents never reach the question-writing model.
    """
    rng = np.random.default_rng(seed)
    found: dict[str, Chunk] = {}
    flt = Filter(groups=groups)
    idle = 0
    for _ in range(max_queries):
        vector = rng.standard_normal(dim).astype(np.float32)
        vector /= np.linalg.norm(vector) or 1.0
        before = len(found)
        for direction in (vector, -vector):
            for hit in await store.search(direction, per_query, flt):
                found.setdefault(hit.chunk.id, hit.chunk)
        idle = idle + 1 if len(found) == before else 0
        if len(found) >= count or idle >= 20:  # enough, or the collection seems exhausted
            break
    chunks = sorted(found.values(), key=lambda c: c.id)
    return chunks[:count]
