"""Plain functions every store adapter shares: filter checks, chunk <-> metadata, embedder records."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import numpy as np

from rag.errors import CollectionNotFound, EmbedderMismatch, InvalidRequest
from rag.types import Chunk, EmbedderInfo

if TYPE_CHECKING:
    from rag.registry import BackendURL

log = logging.getLogger(__name__)

T = TypeVar("T")

# Metadata keys as stored beside the vector (id and text are kept apart by every backend).
META_FIELDS = (
    "source",
    "title",
    "section",
    "page",
    "index",
    "groups",
    "content_hash",
    "doc_hash",
    "lang",
    "mtime",
    "ingested_at",
)

MetaValue = str | int | float | list[str]


def validate_k(k: int) -> None:
    """A search must ask for at least one result."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise InvalidRequest(f"k must be a positive integer, got {k!r}", param="k")


def validate_batch(chunks: Sequence[Chunk], vectors: np.ndarray, dim: int) -> np.ndarray:
    """Check that vectors match chunks one-to-one and the collection's dimension; returns float32 rows."""
    arr = np.asarray(vectors, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[0] != len(chunks):
        raise InvalidRequest(f"expected {len(chunks)} vectors of dimension {dim}, got an array of shape {arr.shape}")
    if arr.shape[1] != dim:
        raise InvalidRequest(f"vectors have dimension {arr.shape[1]}, the collection expects {dim}")
    ids = [c.id for c in chunks]
    if len(set(ids)) != len(ids):
        raise InvalidRequest("the same chunk id appears twice in one upsert")
    return arr


def validate_query(vector: np.ndarray, dim: int) -> np.ndarray:
    """Check a query vector's shape; returns it as float32 of shape (dim,)."""
    arr = np.asarray(vector, dtype=np.float32).reshape(-1)
    if arr.shape[0] != dim:
        raise InvalidRequest(f"query vector has dimension {arr.shape[0]}, the collection expects {dim}")
    return arr


def to_metadata(chunk: Chunk) -> dict[str, MetaValue]:
    """Chunk fields other than id and text; ``page`` is left out when None."""
    meta: dict[str, MetaValue] = {
        "source": chunk.source,
        "title": chunk.title,
        "section": chunk.section,
        "index": int(chunk.index),
        "groups": list(chunk.groups),
        "content_hash": chunk.content_hash,
        "doc_hash": chunk.doc_hash,
        "lang": chunk.lang,
        "mtime": float(chunk.mtime),
        "ingested_at": float(chunk.ingested_at),
    }
    if chunk.page is not None:
        meta["page"] = int(chunk.page)
    return meta


def from_metadata(chunk_id: str, text: str, meta: Mapping[str, Any]) -> Chunk:
    """Rebuild a Chunk from what ``to_metadata`` stored (missing keys take the defaults)."""
    page = meta.get("page")
    return Chunk(
        id=chunk_id,
        text=text,
        source=str(meta.get("source", "")),
        title=str(meta.get("title", "")),
        section=str(meta.get("section", "")),
        page=None if page is None else int(page),
        index=int(meta.get("index", 0)),
        groups=tuple(str(g) for g in (meta.get("groups") or ())),
        content_hash=str(meta.get("content_hash", "")),
        doc_hash=str(meta.get("doc_hash", "")),
        lang=str(meta.get("lang", "")),
        mtime=float(meta.get("mtime", 0.0)),
        ingested_at=float(meta.get("ingested_at", 0.0)),
    )


def check_embedder(collection: str, recorded_id: str | None, recorded_dim: int | None, info: EmbedderInfo) -> None:
    """Refuse to open a collection built by another embedder (or by something that recorded none).

    An embedder that can follow (``auto`` backend) switches to the precision the collection recorded
    (``MODEL`` fp32, ``MODEL+bf16``) and is accepted then; any other difference is refused.
    """
    if recorded_id == info.id and recorded_dim == info.dim:
        return
    if recorded_id and recorded_dim == info.dim and info.follow is not None:
        followed = info.follow(recorded_id)
        if followed is not None and followed.id == recorded_id and followed.dim == recorded_dim:
            log.info("collection %s: embedder follows its recorded identity %s", collection, recorded_id)
            return
    built = f"'{recorded_id}' (dim {recorded_dim})" if recorded_id else "an unknown embedder (none recorded)"
    raise EmbedderMismatch(
        f"collection '{collection}' was built with embedder {built}, but embedder '{info.id}' (dim {info.dim}) "
        f"is configured; use the original embedder, or re-ingest into a new collection"
    )


def not_found(collection: str, where: str) -> CollectionNotFound:
    """The error for opening a collection that does not exist yet."""
    return CollectionNotFound(
        f"collection '{collection}' does not exist in {where}; run `rag ingest` to create it", param="collection"
    )


# Embedded stores: what a bare ``scheme://`` (no path) means, inside data_dir.
EMBEDDED_DEFAULTS = {"chroma": "chroma", "milvus+lite": "milvus.db"}
# Store servers: the port a URL without one means.
SERVER_PORTS = {"chroma+http": 8000, "chroma+https": 443, "milvus": 19530, "milvus+https": 443}


def local_path(url: BackendURL, data_dir: Path) -> Path:
    """The absolute path of an embedded store URL.

    A bare ``chroma://`` (``milvus+lite://``) is ``<data_dir>/chroma`` (``<data_dir>/milvus.db``); a
    written path means what it says: absolute (``chroma:///var/lib/rag/chroma``) or relative to the
    working directory (``chroma://.rag/chroma`` = ``./.rag/chroma``).
    """
    parts = urlsplit(url.raw)
    # BackendURL.host is lower-cased by urlsplit; the raw netloc keeps the case of a relative path.
    written = parts.netloc + parts.path
    path = Path(written) if written else data_dir / EMBEDDED_DEFAULTS.get(url.scheme, url.scheme)
    return path.absolute()


def store_location(store_url: str, data_dir: Path) -> str:
    """Where a store's data really is: the real absolute path of an embedded store, a server's normalised URL.

    Two URLs naming one store give one location (``chroma://`` with data_dir ``/d`` and ``chroma:///d/chroma``;
    ``milvus://m`` and ``milvus://m:19530``), and two stores never share one, whatever the working directory.
    """
    from rag.registry import parse_url

    url = parse_url(store_url)
    if url.scheme in EMBEDDED_DEFAULTS:
        return f"{url.scheme}://{os.path.realpath(local_path(url, data_dir))}"
    if url.scheme in SERVER_PORTS:
        query = "&".join(f"{k}={v}" for k, v in sorted(url.query.items()))
        where = f"{url.scheme}://{url.host or 'localhost'}:{url.port or SERVER_PORTS[url.scheme]}{url.path.rstrip('/')}"
        return where + (f"?{query}" if query else "")
    return store_url  # memory://: lives in one process, named by its URL


def batched(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """Consecutive slices of at most ``size`` items."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
