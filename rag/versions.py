"""Collection versions: the pointer from a stable name to its live version, and readers that follow it.

A *stable name* (``settings.store.collection``, e.g. ``docs``) points at one version collection
(``docs__v2``). The pointer is a small JSON document written atomically (temporary file, fsync,
``os.replace``) beside an embedded store (``<chroma dir>-versions/``, ``<milvus-lite file>.versions/``)
or under ``data_dir/versions/`` for servers and memory stores. It records, per version, the embedder
URL and chunking it was built with (a version may use another model) and whether it is ``ready``:
only a finished build can be switched to, so readers never see a half-built index. On Milvus the
stable name is also kept as a native alias (``alter_alias``) so other Milvus clients follow it.

Readers built by :func:`open_backends` follow the pointer on every call (a ``stat`` of the file): a
query is embedded by the live version's embedder and searched in that same version, even if the
pointer moves between the two steps (a context variable carries the version from one to the other).

Building, switching and dropping versions (which also touch ingestion's sync state) live in
``ingest.versions``.
"""

from __future__ import annotations

import contextlib
import contextvars
import fcntl
import hashlib
import json
import logging
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rag.config import Settings
from rag.errors import ConfigError
from rag.registry import make_embedder, make_store
from rag.seams import Embedder, LocalFiles, TermCoverage, VectorStore
from rag.types import Chunk, EmbedderInfo, Filter, ScoredChunk

log = logging.getLogger(__name__)

SEPARATOR = "__"
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_]{0,62}$")


def collection_of(stable: str, version: str) -> str:
    """The collection holding one version: ``docs`` + ``v2`` -> ``docs__v2``."""
    if not _VERSION.match(version):
        raise ConfigError(f"version names are letters, digits and '_' (at most 63), got {version!r}")
    return f"{stable}{SEPARATOR}{version}"


def pointer_path(settings: Settings) -> Path:
    """Where the versions document of the configured stable name lives.

    Beside the store's own files when it keeps them on this machine (the adapter says where), else under
    ``data_dir/versions/<hash of the store URL>/``.
    """
    name = re.sub(r"[^A-Za-z0-9._-]", "_", settings.store.collection)
    store = make_store(settings)
    folder = store.local_dir("versions") if isinstance(store, LocalFiles) else None
    if folder is None:
        tag = hashlib.blake2b(settings.store.url.encode(), digest_size=4).hexdigest()
        folder = settings.data_dir / "versions" / tag
    return folder / f"{name}.json"


@dataclass(frozen=True)
class Version:
    """One version of a collection."""

    name: str
    collection: str
    embed_url: str
    chunk_size: int
    chunk_overlap: int
    state: str  # building | ready | failed
    created: float
    finished: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return dict(self.__dict__)


class Pointer:
    """The versions document of one stable name: ``{"live": name | null, "versions": {name: {...}}}``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._doc: dict[str, Any] = {"live": None, "versions": {}}

    def exists(self) -> bool:
        """Whether any version was ever recorded."""
        return self.path.exists()

    def read(self) -> dict[str, Any]:
        """The current document (re-read only when the file changed: one stat per call)."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return {"live": None, "versions": {}}
        stamp = (st.st_mtime_ns, st.st_ino)
        if stamp != self._stamp:
            self._doc = json.loads(self.path.read_text(encoding="utf-8"))
            self._stamp = stamp
        return self._doc

    def live(self) -> Version | None:
        """The version readers use, or None (no switch yet: the plain collection is live)."""
        doc = self.read()
        name = doc.get("live")
        return _version(name, doc["versions"][name]) if name else None

    def versions(self) -> list[Version]:
        """Every recorded version, oldest first."""
        doc = self.read()
        return sorted((_version(n, v) for n, v in doc["versions"].items()), key=lambda v: v.created)

    def get(self, name: str) -> Version | None:
        """One version by name."""
        raw = self.read()["versions"].get(name)
        return _version(name, raw) if raw else None

    @contextlib.contextmanager
    def update(self) -> Iterator[dict[str, Any]]:
        """Read-modify-write under an exclusive lock; the new document replaces the old atomically."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._stamp = None
            doc = json.loads(json.dumps(self.read()))
            yield doc
            tmp = self.path.with_suffix(f".tmp{os.getpid()}")
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(doc, f, indent=2, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
            self._stamp = None


def _version(name: str, raw: dict[str, Any]) -> Version:
    fields = {k: raw[k] for k in Version.__dataclass_fields__ if k in raw and k != "name"}
    return Version(name=name, **fields)


def version_settings(settings: Settings, version: Version) -> Settings:
    """Settings that read and write one version: its collection, embedder and chunking."""
    return settings.model_copy(
        update={
            "store": settings.store.model_copy(update={"collection": version.collection}),
            "embed": settings.embed.model_copy(update={"url": version.embed_url}),
            "ingest": settings.ingest.model_copy(
                update={"chunk_size": version.chunk_size, "chunk_overlap": version.chunk_overlap}
            ),
        }
    )


def live_settings(settings: Settings) -> Settings:
    """The configured settings, redirected to the live version when the stable name points at one."""
    live = Pointer(pointer_path(settings)).live()
    return settings if live is None else version_settings(settings, live)


# ---------------------------------------------------------------- readers that follow the pointer

_USED: contextvars.ContextVar[str | None] = contextvars.ContextVar("rag_version_used", default=None)


class _Follower:
    """Resolves the live version on each call and keeps one opened (store, embedder) pair per version."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pointer = Pointer(pointer_path(settings))
        self._pairs: dict[str, tuple[VectorStore, Embedder]] = {}
        self._opened: set[str] = set()
        self.key, vs = self._resolve()
        self._pair(self.key, vs)

    def _resolve(self) -> tuple[str, Settings]:
        live = self.pointer.live()
        if live is None:
            return self.settings.store.collection, self.settings
        return live.collection, version_settings(self.settings, live)

    def _pair(self, key: str, vs: Settings) -> tuple[VectorStore, Embedder]:
        pair = self._pairs.get(key)
        if pair is None:
            pair = self._pairs[key] = (make_store(vs), make_embedder(vs))
        return pair

    @property
    def embedder(self) -> Embedder:
        return self._pairs[self.key][1]

    async def current(self, key: str | None = None) -> tuple[str, VectorStore, Embedder]:
        """The pair of ``key`` (a version used earlier in this request) or of the live version."""
        if key is None or key not in self._pairs:
            key, vs = self._resolve()
            if key != self.key:
                log.info("collection %s now points at %s", self.settings.store.collection, key)
            self._pair(key, vs)
            self.key = key
        store, embedder = self._pairs[key]
        if key not in self._opened:
            await store.open(embedder.info, create=False)
            self._opened.add(key)
        return key, store, embedder

    async def close_stores(self) -> None:
        for store, _ in self._pairs.values():
            await store.close()
        self._opened.clear()

    async def close_embedders(self) -> None:
        for _, embedder in self._pairs.values():
            await embedder.close()


class VersionedEmbedder:
    """The live version's embedder; remembers (per request) which version embedded the query."""

    def __init__(self, follower: _Follower) -> None:
        self._f = follower

    @property
    def info(self) -> EmbedderInfo:
        """Delegated to the live version (see the class)."""
        return self._f.embedder.info

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f.embedder, name)

    async def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """Delegated to the live version (see the class)."""
        _, _, embedder = await self._f.current()
        return await embedder.embed_documents(texts)

    async def embed_query(self, text: str) -> np.ndarray:
        """Delegated to the live version (see the class)."""
        key, _, embedder = await self._f.current()
        _USED.set(key)
        return await embedder.embed_query(text)

    async def close(self) -> None:
        """Delegated to the live version (see the class)."""
        await self._f.close_embedders()


class VersionedStore:
    """The live version's store under the stable name; a vector search goes to the version that embedded it."""

    def __init__(self, follower: _Follower) -> None:
        self._f = follower

    @property
    def name(self) -> str:
        """Delegated to the live version (see the class)."""
        return self._f.settings.store.collection

    async def _store(self, key: str | None = None) -> VectorStore:
        return (await self._f.current(key))[1]

    async def open(self, embedder: EmbedderInfo, *, create: bool) -> None:
        """Delegated to the live version (see the class)."""
        await self._f.current()

    async def upsert(self, chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        """Delegated to the live version (see the class)."""
        await (await self._store()).upsert(chunks, vectors)

    async def delete(self, ids: Sequence[str]) -> None:
        """Delegated to the live version (see the class)."""
        await (await self._store()).delete(ids)

    async def delete_sources(self, sources: Sequence[str]) -> int:
        """Delegated to the live version (see the class)."""
        return await (await self._store()).delete_sources(sources)

    async def search(self, vector: np.ndarray, k: int, flt: Filter | None = None) -> list[ScoredChunk]:
        """Delegated to the live version (see the class)."""
        return await (await self._store(_USED.get())).search(vector, k, flt)

    async def search_text(self, text: str, k: int, flt: Filter | None = None) -> list[ScoredChunk]:
        """Delegated to the live version (see the class)."""
        return await (await self._store(_USED.get())).search_text(text, k, flt)

    async def term_coverage(
        self, tokenizer: str, query_tokens: Sequence[str], chunks: Sequence[Chunk]
    ) -> dict[str, float]:
        """Delegated to the version searched; empty where its store keeps no tokens (``TermCoverage``)."""
        store = await self._store(_USED.get())
        return await store.term_coverage(tokenizer, query_tokens, chunks) if isinstance(store, TermCoverage) else {}

    async def get(self, ids: Sequence[str]) -> list[Chunk]:
        """Delegated to the live version (see the class)."""
        return await (await self._store()).get(ids)

    async def count(self, flt: Filter | None = None) -> int:
        """Delegated to the live version (see the class)."""
        return await (await self._store()).count(flt)

    async def sources(self) -> dict[str, int]:
        """Delegated to the live version (see the class)."""
        return await (await self._store()).sources()

    async def set_groups(self, ids: Sequence[str], groups: Sequence[str]) -> None:
        """Delegated to the live version (see the class)."""
        await (await self._store()).set_groups(ids, groups)  # type: ignore[attr-defined]

    async def close(self) -> None:
        """Delegated to the live version (see the class)."""
        await self._f.close_stores()


def open_backends(settings: Settings) -> tuple[VectorStore, Embedder]:
    """Store and embedder for readers: plain ones, or, once the stable name has versions, ones following it."""
    if not Pointer(pointer_path(settings)).exists():
        return make_store(settings), make_embedder(settings)
    follower = _Follower(settings)
    return VersionedStore(follower), VersionedEmbedder(follower)
