"""The seams: one small Protocol per pluggable role. Adapters satisfy them by shape.

All seams are async. Adapters around synchronous SDKs run the blocking call in a worker thread
(``asyncio.to_thread``) so the service's event loop never blocks.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from rag.types import ChatRequest, Chunk, Delta, EmbedderInfo, Filter, ScoredChunk


@runtime_checkable
class Embedder(Protocol):
    """Turns text into unit-length vectors; queries and documents may be embedded differently."""

    @property
    def info(self) -> EmbedderInfo:
        """Identity and dimension, recorded by every collection this embedder builds."""
        ...

    async def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """Embed passages; returns a float32 array of shape (len(texts), dim)."""
        ...

    async def embed_query(self, text: str) -> np.ndarray:
        """Embed one search query; returns a float32 vector of shape (dim,)."""
        ...

    async def close(self) -> None:
        """Release connections and models."""
        ...


@runtime_checkable
class VectorStore(Protocol):
    """One collection of chunks in a vector database."""

    @property
    def name(self) -> str:
        """Collection name."""
        ...

    async def open(self, embedder: EmbedderInfo, *, create: bool) -> None:
        """Open the collection, creating it if asked.

        Raises:
            CollectionNotFound: it does not exist and ``create`` is false.
            EmbedderMismatch: it was built by a different embedder.
            UpstreamUnavailable: the store cannot be reached.
        """
        ...

    async def upsert(self, chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        """Insert or replace chunks by id (idempotent)."""
        ...

    async def delete(self, ids: Sequence[str]) -> None:
        """Remove chunks by id; unknown ids are ignored."""
        ...

    async def delete_sources(self, sources: Sequence[str]) -> int:
        """Remove every chunk of the given source documents; returns how many were removed."""
        ...

    async def search(self, vector: np.ndarray, k: int, flt: Filter | None = None) -> list[ScoredChunk]:
        """Nearest chunks by cosine similarity (higher is better), filtered inside the store."""
        ...

    async def search_text(self, text: str, k: int, flt: Filter | None = None) -> list[ScoredChunk]:
        """Lexical (BM25) top-k for a query text, filtered inside the store; chunks sharing no term are left out.

        Scores are BM25 (higher is better, not comparable to cosine). Stores with a native BM25 use it
        (Milvus); the others keep a :class:`rag.lexical.index.LexicalIndex` in sync with upsert and delete.
        """
        ...

    async def get(self, ids: Sequence[str]) -> list[Chunk]:
        """Fetch chunks by id (missing ids are skipped)."""
        ...

    async def count(self, flt: Filter | None = None) -> int:
        """Number of chunks matching the filter."""
        ...

    async def sources(self) -> dict[str, int]:
        """Every source document in the collection with its chunk count."""
        ...

    async def close(self) -> None:
        """Release connections and files."""
        ...


@runtime_checkable
class Reranker(Protocol):
    """Scores (query, passage) pairs; higher is more relevant."""

    async def rerank(self, query: str, texts: Sequence[str]) -> list[float]:
        """One score per text, in the order given."""
        ...

    async def close(self) -> None:
        """Release connections and models."""
        ...


@runtime_checkable
class ChatBackend(Protocol):
    """Generates an answer, always as a stream of deltas."""

    @property
    def name(self) -> str:
        """A stable label such as ``openai+http://host/v1?model=x``, reported to callers."""
        ...

    def stream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        """Generate; the last delta carries ``finish_reason`` (and usage when known)."""
        ...

    async def health(self) -> bool:
        """Cheap reachability check, used for start-up choice and readiness."""
        ...

    async def close(self) -> None:
        """Release connections and models."""
        ...


# ------------------------------------------------------------------------------------------------
# Optional capabilities: what some adapters offer beyond their seam. Callers test for them with
# ``isinstance`` (the protocols are runtime-checkable) and fall back or refuse where one is missing.


@runtime_checkable
class Featured(Protocol):
    """A chat backend that can honour some optional request features (``response_format``, ``tools``, ``logprobs``).

    A backend without this protocol has none of them: a request needing one is refused, never degraded.
    """

    @property
    def features(self) -> frozenset[str]:
        """The :data:`rag.types.Feature` names this backend passes on to its model."""
        ...


@runtime_checkable
class LocalFiles(Protocol):
    """A store that may keep its data in files on this machine; rag's own files about it go beside them."""

    def local_dir(self, kind: str) -> Path | None:
        """A folder beside the store's files for rag's ``kind`` of files (``versions``), or None (a server)."""
        ...


@runtime_checkable
class GroupUpdater(Protocol):
    """A store that can change the ACL groups of stored chunks in place, keeping their vectors."""

    async def set_groups(self, ids: Sequence[str], groups: Sequence[str]) -> None:
        """Replace the groups of the given chunks (unknown ids are ignored)."""
        ...


@runtime_checkable
class Droppable(Protocol):
    """A store that can delete its whole collection (collection versions drop old versions)."""

    async def drop(self) -> None:
        """Delete the collection and whatever the adapter keeps beside it."""
        ...


@runtime_checkable
class Aliasing(Protocol):
    """A store with native collection aliases (Milvus), so other clients follow a version switch too."""

    async def set_alias(self, alias: str, collection: str) -> None:
        """Point ``alias`` at ``collection`` atomically."""
        ...


@runtime_checkable
class TermCoverage(Protocol):
    """A store that keeps each chunk's analysed tokens (memory and Chroma's BM25 index, Milvus's ``lex`` field).

    The relevance gate reads a chunk's share of the query's terms from it instead of analysing the chunk again.
    """

    async def term_coverage(
        self, tokenizer: str, query_tokens: Sequence[str], chunks: Sequence[Chunk]
    ) -> dict[str, float]:
        """Share of the distinct ``query_tokens`` each chunk holds, by chunk id.

        Only chunks the index holds with this very text are answered; none where the index analyses with
        another ``tokenizer``.
        """
        ...


@runtime_checkable
class LocalCompute(Protocol):
    """An embedder that computes in this process; ``cpu_bound`` when on this machine's CPU."""

    @property
    def cpu_bound(self) -> bool:
        """True when encoding keeps this machine's cores busy (ingestion then does not overlap other work)."""
        ...


@runtime_checkable
class Tokenized(Protocol):
    """An embedder whose tokenizer is known, so chunks are sized in the model's own tokens."""

    @property
    def tokenizer(self) -> Any:
        """A Hugging Face tokenizer (``tokenize``; callable on a batch)."""
        ...

    @property
    def max_tokens(self) -> int:
        """Longest input the model reads; longer text is truncated."""
        ...
