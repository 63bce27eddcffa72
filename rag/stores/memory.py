"""In-memory brute-force store: exact cosine over numpy. For tests, demos and as the recall oracle."""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from rag.lexical.index import LexicalIndex
from rag.stores.common import check_embedder, not_found, validate_batch, validate_k, validate_query
from rag.types import Chunk, EmbedderInfo, Filter, ScoredChunk, matches, matches_nothing, validate_filter

if TYPE_CHECKING:
    from rag.config import Settings
    from rag.registry import BackendURL

log = logging.getLogger(__name__)


@dataclass
class _Collection:
    """The data of one collection: chunks by id and their unit vectors."""

    embedder: EmbedderInfo
    lexical: LexicalIndex
    chunks: dict[str, Chunk] = field(default_factory=dict)
    vectors: dict[str, np.ndarray] = field(default_factory=dict)
    # (ids, stacked vectors), rebuilt on the first search after a change.
    matrix: tuple[list[str], np.ndarray] | None = None

    def stacked(self) -> tuple[list[str], np.ndarray]:
        """All ids and their vectors as one matrix, cached until the next change."""
        if self.matrix is None:
            ids = list(self.vectors)
            mat = np.stack([self.vectors[i] for i in ids]) if ids else np.zeros((0, self.embedder.dim), np.float32)
            self.matrix = (ids, mat)
        return self.matrix


# ``memory://?name=x`` stores in one process share their collections by name; a nameless store is private.
_NAMED: dict[str, dict[str, _Collection]] = {}
_NAMED_LOCK = threading.Lock()


class MemoryStore:
    """Exact nearest neighbours by brute force; data lives in this process only."""

    def __init__(
        self, collection: str, space: dict[str, _Collection] | None = None, *, tokenizer: str = "kiwi"
    ) -> None:
        self._name = collection
        self._tokenizer = tokenizer
        self._space: dict[str, _Collection] = {} if space is None else space
        self._col: _Collection | None = None

    @property
    def name(self) -> str:
        """Collection name."""
        return self._name

    async def open(self, embedder: EmbedderInfo, *, create: bool) -> None:
        """Open the collection, creating it if asked."""
        col = self._space.get(self._name)
        if col is None:
            if not create:
                raise not_found(self._name, "the in-memory store")
            col = self._space.setdefault(self._name, _Collection(embedder, LexicalIndex(self._tokenizer)))
            log.info("created in-memory collection %s for embedder %s", self._name, embedder.id)
        check_embedder(self._name, col.embedder.id, col.embedder.dim, embedder)
        self._col = col

    def _opened(self) -> _Collection:
        if self._col is None:
            raise RuntimeError("MemoryStore used before open()")
        return self._col

    async def upsert(self, chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        """Insert or replace chunks by id."""
        col = self._opened()
        arr = validate_batch(chunks, vectors, col.embedder.dim)
        norms = np.linalg.norm(arr, axis=1, keepdims=True)
        unit = arr / np.where(norms == 0, 1.0, norms)
        for chunk, vec in zip(chunks, unit, strict=True):
            col.chunks[chunk.id] = chunk
            col.vectors[chunk.id] = vec
        col.lexical.upsert(chunks)
        col.matrix = None

    async def delete(self, ids: Sequence[str]) -> None:
        """Remove chunks by id; unknown ids are ignored."""
        col = self._opened()
        for chunk_id in ids:
            col.chunks.pop(chunk_id, None)
            col.vectors.pop(chunk_id, None)
        col.lexical.delete(ids)
        col.matrix = None

    async def delete_sources(self, sources: Sequence[str]) -> int:
        """Remove every chunk of the given sources; returns how many were removed."""
        col = self._opened()
        wanted = set(sources)
        doomed = [cid for cid, c in col.chunks.items() if c.source in wanted]
        await self.delete(doomed)
        return len(doomed)

    async def search(self, vector: np.ndarray, k: int, flt: Filter | None = None) -> list[ScoredChunk]:
        """Exact top-k by cosine similarity among the chunks the filter admits."""
        col = self._opened()
        validate_k(k)
        validate_filter(flt)
        query = validate_query(vector, col.embedder.dim)
        if matches_nothing(flt):
            return []
        ids, mat = col.stacked()
        keep = np.array([matches(col.chunks[cid], flt) for cid in ids], dtype=bool)
        if not keep.any():
            return []
        norm = float(np.linalg.norm(query))
        scores = mat @ (query / norm if norm > 0 else query)
        scores = np.where(keep, scores, -np.inf)
        top = np.argsort(-scores, kind="stable")[: min(k, int(keep.sum()))]
        return [ScoredChunk(col.chunks[ids[i]], float(scores[i])) for i in top]

    async def search_text(self, text: str, k: int, flt: Filter | None = None) -> list[ScoredChunk]:
        """BM25 top-k (bm25s, in process) among the chunks the filter admits."""
        col = self._opened()
        validate_k(k)
        validate_filter(flt)
        return col.lexical.search(text, k, flt)

    async def term_coverage(
        self, tokenizer: str, query_tokens: Sequence[str], chunks: Sequence[Chunk]
    ) -> dict[str, float]:
        """Each chunk's share of the query's terms, from the tokens its BM25 index holds (``TermCoverage``)."""
        col = self._opened()
        return col.lexical.coverage(query_tokens, chunks) if tokenizer == self._tokenizer else {}

    async def get(self, ids: Sequence[str]) -> list[Chunk]:
        """Fetch chunks by id, in the order asked; missing ids are skipped."""
        col = self._opened()
        return [col.chunks[cid] for cid in ids if cid in col.chunks]

    async def count(self, flt: Filter | None = None) -> int:
        """Number of chunks matching the filter."""
        col = self._opened()
        validate_filter(flt)
        if matches_nothing(flt):
            return 0
        return sum(1 for c in col.chunks.values() if matches(c, flt))

    async def sources(self) -> dict[str, int]:
        """Every source with its chunk count."""
        out: dict[str, int] = {}
        for c in self._opened().chunks.values():
            out[c.source] = out.get(c.source, 0) + 1
        return out

    async def set_groups(self, ids: Sequence[str], groups: Sequence[str]) -> None:
        """Replace the ACL groups of stored chunks, keeping their vectors."""
        col = self._opened()
        known = [i for i in dict.fromkeys(ids) if i in col.chunks]
        chunks = [dataclasses.replace(col.chunks[i], groups=tuple(groups)) for i in known]
        if chunks:
            await self.upsert(chunks, np.stack([col.vectors[c.id] for c in chunks]))

    async def drop(self) -> None:
        """Delete the whole collection (collection versions: an old version is removed)."""
        self._space.pop(self._name, None)
        self._col = None

    async def close(self) -> None:
        """Forget the handle; the data stays in the process for the next open()."""
        self._col = None


def from_url(url: BackendURL, settings: Settings) -> MemoryStore:
    """``memory://`` (private to this store) or ``memory://?name=x`` (shared by name in this process)."""
    name = url.query.get("name")
    if name is None:
        return MemoryStore(settings.store.collection, tokenizer=settings.retrieval.tokenizer)
    with _NAMED_LOCK:
        space = _NAMED.setdefault(name, {})
    return MemoryStore(settings.store.collection, space, tokenizer=settings.retrieval.tokenizer)
