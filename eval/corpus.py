"""Ingest an imported corpus (SQuAD paragraphs, BEIR documents) held in memory, as the ingest worker does.

Each document is stored under ``source = doc.id`` so that a case's gold ``sources`` match the retrieved
chunks' sources exactly. It goes through ``ingest.worker.ingest_documents``: the worker's chunking, embedding
batches and sync state, so re-ingesting is idempotent and an unchanged document is not embedded again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

import numpy as np

from eval.dataset import CorpusDoc
from ingest.formats import Section
from ingest.loaders import Document
from ingest.worker import ingest_documents
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
    """Ingest the corpus the way the ingest worker does (the store is opened, creating the collection).

    Returns the chunks the collection holds for the corpus's documents, written now or already stored.
    """
    groups = tuple(settings.ingest.default_groups)
    documents = [to_document(doc, groups) for doc in corpus]
    report = await ingest_documents(settings, store, embedder, documents, progress=progress)
    log.info("ingested %d documents in %.1fs (%d unchanged)", len(documents), report.seconds, report.unchanged)
    stored = await store.sources()
    return sum(stored.get(d.source, 0) for d in documents)


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
