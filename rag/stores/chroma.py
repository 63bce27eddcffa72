"""Chroma adapter: embedded (``chroma:///dir``) or a Chroma server (``chroma+http://host:8000``)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import re
import secrets
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from rag.errors import ConfigError, RagError, UpstreamError, UpstreamTimeout, UpstreamUnavailable
from rag.lexical.index import LexicalIndex
from rag.stores import lock
from rag.stores.common import (
    batched,
    check_embedder,
    from_metadata,
    local_path,
    not_found,
    to_metadata,
    validate_batch,
    validate_k,
    validate_query,
)
from rag.types import Chunk, EmbedderInfo, Filter, ScoredChunk, matches, matches_nothing, validate_filter

if TYPE_CHECKING:
    from rag.config import Settings
    from rag.registry import BackendURL

log = logging.getLogger(__name__)

T = TypeVar("T")

_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]{1,510}[a-zA-Z0-9]$")
_EMBEDDER_ID = "rag_embedder_id"
_EMBEDDER_DIM = "rag_embedder_dim"
# A token every writer to a Chroma server sets in the collection's metadata after each write; a client
# whose last reconciliation saw another token reconciles its lexical index by id (see ChromaStore).
_MARKER = "rag_change"
# Beyond the defaults (ef_search 100) so small and filtered collections lose no recall.
_HNSW = {"space": "cosine", "ef_construction": 200, "ef_search": 200, "max_neighbors": 32}
# Ids per get(ids=...) call; well under Chroma's batch limit.
_PAGE = 1000
# Rows per page of a whole-collection get() scan: each call costs about 0.18 s whatever its offset (100k
# chunks, embedded), so 10,000-row pages scan 100k chunks' metadata in 7 s where 1,000-row pages take 20 s.
_SCAN_PAGE = 10_000
# Extra lexical candidates read so that hits dropped by the freshness check rarely shorten the top-k.
_VERIFY_MARGIN = 10
# A filtered dense search first asks for this many times k nearest chunks with no ``where`` and filters them
# here: Chroma evaluates a ``where`` over every chunk it admits before the vector search (250 ms at 100k
# chunks for an ACL that admits them all, 60 ms for one admitting 1 %; 12 ms unfiltered). When fewer than k
# pass, the filter is narrow: the search is asked again with the ``where``, and that filter goes straight
# to it for the next ``_NARROW_S`` seconds.
_OVERFETCH = 3
_NARROW_S = 60.0
_NARROW_MAX = 256


def _similarity(distance: float) -> float:
    """Chroma's cosine distance (1 - cos) as a similarity, higher is better."""
    return 1.0 - float(distance)


def _where(flt: Filter | None) -> dict[str, Any] | None:
    """The Chroma ``where`` document for a filter (None when it restricts nothing)."""
    if flt is None:
        return None
    clauses: list[dict[str, Any]] = []
    if flt.groups is not None:
        ors = [{"groups": {"$contains": g}} for g in flt.groups]
        clauses.append(ors[0] if len(ors) == 1 else {"$or": ors})
    if flt.sources is not None:
        clauses.append({"source": {"$in": list(flt.sources)}})
    if flt.exclude_sources:
        clauses.append({"source": {"$nin": list(flt.exclude_sources)}})
    clauses.extend({key: {"$eq": value}} for key, value in flt.where.items())
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def _metadata(chunk: Chunk) -> dict[str, Any]:
    """Chroma refuses empty lists, so a chunk without groups simply has no ``groups`` key."""
    meta: dict[str, Any] = dict(to_metadata(chunk))
    if not meta["groups"]:
        del meta["groups"]
    return meta


class ChromaStore:
    """One Chroma collection, cosine space; every SDK call runs in a worker thread.

    Embedded (``lock_dir`` set): one process at a time. Opening takes the directory's lock
    (:mod:`rag.stores.lock`) and closing gives it back, so a second process is refused with a message
    naming the holder instead of reading an index that the other process changes under it.

    Chroma has no BM25, so lexical search runs on a :class:`LexicalIndex` kept beside it: updated by
    this store's upsert/delete (committed to its SQLite file per batch), and reconciled by id with the
    collection on open (new chunks read, removed ones dropped, and chunks whose metadata changed under
    the same id, such as their groups, read again), so a missing or damaged file is rebuilt from the
    collection. On a
    Chroma server several processes write: each write sets a new change marker in the collection's
    metadata, and a lexical search checks it at most every ``check_s`` seconds and reconciles by id
    when it moved.
    """

    def __init__(
        self,
        make_client: Callable[[], Any],
        collection: str,
        where: str,
        *,
        lexical_path: Path | None = None,
        tokenizer: str = "kiwi",
        lock_dir: Path | None = None,
        check_s: float = 10.0,
    ) -> None:
        self._make_client = make_client
        self._name = collection
        self._where = where
        self._lex = LexicalIndex(tokenizer, lexical_path)
        self._lex_checked = 0.0
        self._lock_dir = lock_dir
        self._locked = False
        self._check_s = check_s
        self._meta: dict[str, Any] = {}
        self._seen: Any = None  # the change marker the lexical index was last reconciled at
        self._dirty = False  # the lexical file's synced token was cleared for a write (see _changing)
        self._write_failed = False  # a write of this session raised: the next open reconciles
        self._sync_lock: asyncio.Lock | None = None
        self._client: Any = None
        self._col: Any = None
        self._dim = 0
        self._max_batch = 1000
        self._narrow: dict[str, float] = {}  # repr(where) -> when a post-filtered search last fell short

    @property
    def name(self) -> str:
        """Collection name."""
        return self._name

    def local_dir(self, kind: str) -> Path | None:
        """Embedded: ``<chroma dir>-<kind>/`` beside the Chroma directory (never inside it: Chroma owns that tree)."""
        if self._lock_dir is None:  # a Chroma server: nothing of it on this machine
            return None
        return self._lock_dir.parent / f"{self._lock_dir.name}-{kind}"

    async def _call(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        """Run a blocking SDK call in a thread; SDK and transport errors become RagErrors here."""
        try:
            return await asyncio.to_thread(fn, *args, **kw)
        except RagError:
            raise
        except Exception as e:
            raise self._convert(e) from e

    def _convert(self, e: Exception) -> RagError:
        text = f"{type(e).__name__}: {e}"
        kind = type(e).__name__
        # A connect timeout means the server is not there; a read timeout means it is slow.
        if "Connect" in kind or "Could not connect" in str(e) or isinstance(e, ConnectionError):
            return UpstreamUnavailable(f"cannot reach Chroma at {self._where}: {e}")
        if "Timeout" in kind:
            return UpstreamTimeout(f"Chroma at {self._where} did not answer in time ({text})")
        return UpstreamError(f"Chroma at {self._where} failed: {text}")

    def _opened(self) -> Any:
        if self._col is None:
            raise RuntimeError("ChromaStore used before open()")
        return self._col

    async def _connect(self) -> Any:
        """A client; embedded, only once this process holds the directory's lock."""
        if self._lock_dir is not None and not self._locked:
            await asyncio.to_thread(lock.acquire, self._lock_dir, "Chroma store")
            self._locked = True
        self._client = await self._call(self._make_client)
        return self._client

    async def _disconnect(self) -> None:
        """Close the client (the last one of a path stops Chroma's system there), then give the lock back."""
        client, self._client, self._col = self._client, None, None
        try:
            if client is not None and hasattr(client, "close"):
                await asyncio.to_thread(client.close)
        except Exception as e:  # closing must not hide the error that brought us here
            log.warning("closing the Chroma client of %s failed: %s", self._where, e)
        finally:
            if self._locked and self._lock_dir is not None:
                self._locked = False
                await asyncio.to_thread(lock.release, self._lock_dir)

    async def open(self, embedder: EmbedderInfo, *, create: bool) -> None:
        """Connect, then get (or create) the collection and check its embedder.

        Raises:
            StoreLocked: embedded, and another process has the directory open.
        """
        from chromadb.errors import NotFoundError

        await self.close()
        try:
            client = await self._connect()
            self._max_batch = int(await self._call(client.get_max_batch_size))
            try:
                if create:
                    col = await self._call(
                        client.get_or_create_collection,
                        self._name,
                        configuration={"hnsw": dict(_HNSW)},
                        metadata={_EMBEDDER_ID: embedder.id, _EMBEDDER_DIM: embedder.dim},
                        embedding_function=None,
                    )
                else:
                    col = await self._call(client.get_collection, self._name, embedding_function=None)
            except UpstreamError as e:
                if isinstance(e.__cause__, NotFoundError):
                    raise not_found(self._name, f"Chroma at {self._where}") from e.__cause__
                raise
            meta = dict(col.metadata or {})
            dim = meta.get(_EMBEDDER_DIM)
            check_embedder(self._name, meta.get(_EMBEDDER_ID), None if dim is None else int(dim), embedder)
            self._col, self._dim, self._meta = col, embedder.dim, meta
            self._sync_lock = asyncio.Lock()
            self._dirty = self._write_failed = False
            await self._open_lexical(col, meta.get(_MARKER))
        except BaseException:
            # Not opened: keep no client, and no lock that would shut other processes out for nothing.
            await self._disconnect()
            raise
        log.info("opened Chroma collection %s at %s", self._name, self._where)

    async def _open_lexical(self, col: Any, marker: Any) -> None:
        """Load the lexical index; reconcile it with the collection unless it provably matches already.

        It matches when its file records the collection's current change marker as synced and holds as
        many chunks: embedded, this store sets a new marker when it closes after writing and records it in
        the file (cleared before the first write), so only a crash, a failed write or another program in
        between leads to the full scan. Embedded collections without a marker get one here.
        """
        loaded = await asyncio.to_thread(self._lex.load)
        synced = await asyncio.to_thread(self._lex.synced) if loaded else None
        if marker is not None and synced == marker and int(await self._call(col.count)) == len(self._lex):
            self._seen = marker
            self._lex_checked = time.monotonic()
            log.info("lexical index of %s matches the collection (%d chunks)", self._name, len(self._lex))
            return
        if marker is None and self._lock_dir is not None:
            marker = await self._new_marker()
        await self._sync_lexical(marker)
        await asyncio.to_thread(self._lex.save)

    async def _sync_lexical(self, marker: Any) -> None:
        """Reconcile the lexical index with the collection by id.

        Chunks it lacks, or holds with other metadata under the same id (new groups, say), are read
        from the collection; chunks the collection no longer has are dropped. ``marker`` is the
        change marker read before the scan, so a write during the scan still moves it past ``_seen``.
        """
        col = self._opened()
        seen: set[str] = set()
        fetch: list[str] = []
        offset = 0
        while True:
            page = await self._call(col.get, include=["metadatas"], limit=_SCAN_PAGE, offset=offset)
            stored = [from_metadata(i, "", m or {}) for i, m in zip(page["ids"], page["metadatas"], strict=True)]
            seen.update(page["ids"])
            fetch.extend(self._lex.stale(stored))
            offset += len(page["ids"])
            if len(page["ids"]) < _SCAN_PAGE:
                break
        extra = sorted(self._lex.ids() - seen)
        if extra:
            self._lex.delete(extra)
        for part in batched(fetch, self._max_batch):
            self._lex.upsert(await self.get(part))
        if fetch or extra:
            log.info("lexical index of %s: %d chunks (re)read, %d removed", self._name, len(fetch), len(extra))
        self._seen = marker
        self._lex_checked = time.monotonic()
        if marker is not None:
            await asyncio.to_thread(self._lex.set_synced, str(marker))
            self._dirty = False

    async def _refresh_lexical(self) -> None:
        """On a Chroma server, reconcile the lexical index when the change marker moved (checked every check_s)."""
        if self._lock_dir is not None or time.monotonic() - self._lex_checked < self._check_s:
            return
        assert self._sync_lock is not None
        async with self._sync_lock:
            if self._check_s and time.monotonic() - self._lex_checked < self._check_s:
                return  # another search reconciled while this one waited
            col = await self._call(self._client.get_collection, self._name, embedding_function=None)
            marker = (col.metadata or {}).get(_MARKER)
            if marker != self._seen:
                await self._sync_lexical(marker)
            self._lex_checked = time.monotonic()

    async def _mark_changed(self) -> None:
        """After a write to a Chroma server: a new change marker, so other clients reconcile.

        Never taken as seen by this client: a write by another client just before this one would
        otherwise go unnoticed here. A random token, not a counter, so two writers cannot both
        write the same next value.
        """
        if self._lock_dir is not None:
            return  # embedded: the lock keeps every other process out; close() sets the marker
        await self._new_marker()

    async def _new_marker(self) -> str:
        """Set a new change marker in the collection's metadata and return it."""
        token = f"{time.time_ns():x}-{os.getpid()}-{secrets.token_hex(4)}"
        # modify() replaces the whole metadata, so the embedder record goes with it.
        self._meta = {**self._meta, _MARKER: token}
        await self._call(self._opened().modify, metadata=dict(self._meta))
        return token

    async def _changing(self) -> None:
        """Before a write: the lexical file stops claiming to match the collection (a crash from here reconciles)."""
        if not self._dirty:
            await asyncio.to_thread(self._lex.set_synced, None)
            self._dirty = True

    async def _written(self, result: BaseException | None) -> None:
        """After a write, whether or not it failed: a server's marker moves, as part of it may have landed."""
        if result is None:
            await self._mark_changed()
            return
        self._write_failed = True
        try:
            await self._mark_changed()
        except RagError as e:  # the write's own error is the one to raise
            log.warning("could not set the change marker of %s after a failed write: %s", self._name, e)
        raise result

    async def upsert(self, chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        """Insert or replace chunks by id, in batches under Chroma's limit."""
        col = self._opened()
        arr = validate_batch(chunks, vectors, self._dim)

        async def write_vectors() -> None:
            for start in range(0, len(chunks), self._max_batch):
                part = chunks[start : start + self._max_batch]
                await self._call(
                    col.upsert,
                    ids=[c.id for c in part],
                    embeddings=arr[start : start + len(part)],
                    documents=[c.text for c in part],
                    metadatas=[_metadata(c) for c in part],
                )

        # The lexical index (its analyser, then one SQLite transaction) is written beside Chroma's own write,
        # on another core. Either may fail alone: a lexical row without its Chroma chunk is never returned (a
        # lexical hit is re-read from Chroma) and the next open reconciles the two by id.
        # Both are awaited before an error of either is raised, so no write is still running when the caller
        # goes on (or closes the store).
        await self._changing()
        lexical = asyncio.to_thread(self._lex.upsert, chunks)
        results = await asyncio.gather(write_vectors(), lexical, return_exceptions=True)
        await self._written(next((r for r in results if isinstance(r, BaseException)), None))

    async def delete(self, ids: Sequence[str]) -> None:
        """Remove chunks by id; unknown ids are ignored."""
        col = self._opened()
        await self._changing()
        try:
            for part in batched(list(ids), self._max_batch):
                await self._call(col.delete, ids=list(part))
            self._lex.delete(ids)
        except BaseException as e:
            await self._written(e)
        await self._written(None)

    async def _ids(self, where: dict[str, Any] | None) -> list[str]:
        col = self._opened()
        out: list[str] = []
        while True:
            page = await self._call(col.get, where=where, include=[], limit=_SCAN_PAGE, offset=len(out))
            out.extend(page["ids"])
            if len(page["ids"]) < _SCAN_PAGE:
                return out

    async def delete_sources(self, sources: Sequence[str]) -> int:
        """Remove every chunk of the given sources; returns how many were removed."""
        if not sources:
            return 0
        ids = await self._ids({"source": {"$in": list(sources)}})
        await self.delete(ids)
        return len(ids)

    async def search(self, vector: np.ndarray, k: int, flt: Filter | None = None) -> list[ScoredChunk]:
        """Nearest chunks by cosine similarity under the filter (applied after the search when it is broad)."""
        col = self._opened()
        validate_k(k)
        validate_filter(flt)
        query = validate_query(vector, self._dim)
        if matches_nothing(flt):
            return []
        where = _where(flt)
        key = repr(where)
        if where is not None and time.monotonic() - self._narrow.get(key, -_NARROW_S) >= _NARROW_S:
            # Nearest first with no where, then the filter here: the k nearest that pass are the k nearest
            # admitted chunks whenever k of them are among the k x _OVERFETCH nearest of all. Fewer hits
            # than asked mean a collection that small (the where costs little there) or a damaged vector
            # index, which Chroma answers unfiltered with what it can but reports under a where: the
            # where path then runs, so the damage is an error, not a short answer.
            n = k * _OVERFETCH
            hits = await self._query(col, query, n, None)
            passed = [s for s in hits if matches(s.chunk, flt)]
            if len(hits) == n and len(passed) >= k:
                self._narrow.pop(key, None)
                return passed[:k]
            self._narrow.pop(key, None)
            self._narrow[key] = time.monotonic()
            while len(self._narrow) > _NARROW_MAX:
                del self._narrow[next(iter(self._narrow))]
        return await self._query(col, query, k, where)

    async def _query(self, col: Any, query: np.ndarray, n: int, where: dict[str, Any] | None) -> list[ScoredChunk]:
        """Chroma's ``n`` nearest chunks under ``where``, best first."""
        include = ["documents", "metadatas", "distances"]
        res = await self._call(col.query, query_embeddings=[query], n_results=n, where=where, include=include)
        hits = zip(res["ids"][0], res["documents"][0], res["metadatas"][0], res["distances"][0], strict=True)
        scored = [ScoredChunk(from_metadata(i, doc, meta), _similarity(d)) for i, doc, meta, d in hits]
        return sorted(scored, key=lambda s: -s.score)

    async def search_text(self, text: str, k: int, flt: Filter | None = None) -> list[ScoredChunk]:
        """BM25 top-k from the lexical index beside the collection, filtered before ranking."""
        col = self._opened()
        validate_k(k)
        validate_filter(flt)
        await self._refresh_lexical()
        ranked = await asyncio.to_thread(self._lex.search, text, k + _VERIFY_MARGIN, flt)
        if not ranked:
            return []
        # Another client of a server may have changed a chunk's groups since the last reconciliation:
        # the hits are re-read from Chroma and filtered again, so a stale local copy never widens the ACL.
        # By id alone, then the filter here (the same semantics): Chroma evaluates a ``where`` over every
        # chunk it admits before intersecting with the ids (200 ms at 10k chunks, a 100 % ACL; 4 ms by id).
        res = await self._call(col.get, ids=[h.chunk.id for h in ranked], include=["documents", "metadatas"])
        fresh = {
            i: chunk
            for i, doc, meta in zip(res["ids"], res["documents"], res["metadatas"], strict=True)
            if matches(chunk := from_metadata(i, doc, meta), flt)
        }
        return [ScoredChunk(fresh[h.chunk.id], h.score) for h in ranked if h.chunk.id in fresh][:k]

    async def term_coverage(
        self, tokenizer: str, query_tokens: Sequence[str], chunks: Sequence[Chunk]
    ) -> dict[str, float]:
        """Each chunk's share of the query's terms, from the tokens the lexical index holds (``TermCoverage``)."""
        self._opened()
        if tokenizer != self._lex.tokenizer_name:
            return {}
        return await asyncio.to_thread(self._lex.coverage, query_tokens, chunks)

    async def get(self, ids: Sequence[str]) -> list[Chunk]:
        """Fetch chunks by id, in the order asked; missing ids are skipped."""
        col = self._opened()
        found: dict[str, Chunk] = {}
        for part in batched(list(dict.fromkeys(ids)), self._max_batch):
            res = await self._call(col.get, ids=list(part), include=["documents", "metadatas"])
            for i, doc, meta in zip(res["ids"], res["documents"], res["metadatas"], strict=True):
                found[i] = from_metadata(i, doc, meta)
        return [found[i] for i in ids if i in found]

    async def count(self, flt: Filter | None = None) -> int:
        """Number of chunks matching the filter."""
        col = self._opened()
        validate_filter(flt)
        if matches_nothing(flt):
            return 0
        where = _where(flt)
        if where is None:
            return int(await self._call(col.count))
        return len(await self._ids(where))

    async def sources(self) -> dict[str, int]:
        """Every source with its chunk count."""
        col = self._opened()
        out: dict[str, int] = {}
        offset = 0
        while True:
            page = await self._call(col.get, include=["metadatas"], limit=_SCAN_PAGE, offset=offset)
            for meta in page["metadatas"]:
                src = str((meta or {}).get("source", ""))
                out[src] = out.get(src, 0) + 1
            offset += len(page["ids"])
            if len(page["ids"]) < _SCAN_PAGE:
                return out

    async def set_groups(self, ids: Sequence[str], groups: Sequence[str]) -> None:
        """Replace the ACL groups of stored chunks without re-embedding: re-upserted with their stored vectors."""
        col = self._opened()
        for part in batched(list(dict.fromkeys(ids)), _PAGE):
            chunks = await self.get(part)
            if not chunks:
                continue
            got = await self._call(col.get, ids=[c.id for c in chunks], include=["embeddings"])
            stored = dict(zip(got["ids"], got["embeddings"], strict=True))
            vectors = np.asarray([stored[c.id] for c in chunks], dtype=np.float32)
            await self.upsert([dataclasses.replace(c, groups=tuple(groups)) for c in chunks], vectors)

    async def drop(self) -> None:
        """Delete the whole collection and its lexical index (collection versions: an old version is removed)."""
        from chromadb.errors import NotFoundError

        await self.close()
        try:
            client = await self._connect()
            await self._call(client.delete_collection, self._name)
        except UpstreamError as e:
            if not isinstance(e.__cause__, (NotFoundError, ValueError)):
                raise
        finally:
            await self._disconnect()
        self._lex.remove()

    async def close(self) -> None:
        """Save the lexical index, close the client and, embedded, give the directory's lock back.

        Embedded, after writes that all succeeded: a new change marker, recorded in the lexical file as
        synced, so the next open need not reconcile the two by a scan of the collection.
        """
        try:
            if self._col is not None:
                if self._lock_dir is not None and self._dirty and not self._write_failed:
                    await asyncio.to_thread(self._lex.set_synced, await self._new_marker())
                    self._dirty = False
                await asyncio.to_thread(self._lex.save)
        finally:
            self._lex.close()
            await self._disconnect()


def _settings() -> Any:
    from chromadb.config import Settings as ChromaSettings

    return ChromaSettings(anonymized_telemetry=False)


def from_url(url: BackendURL, settings: Settings) -> ChromaStore:
    """``chroma://`` (``<data_dir>/chroma``), ``chroma:///abs/dir``, ``chroma://relative/dir``, ``chroma+http(s)://host:port``."""
    import chromadb

    collection = settings.store.collection
    if not _NAME.match(collection):
        raise ConfigError(
            f"Chroma collection names are 3-512 characters of [a-zA-Z0-9._-], starting and ending with a "
            f"letter or digit; got {collection!r}"
        )
    if url.scheme == "chroma":
        path = local_path(url, settings.data_dir)
        if path == Path.cwd():
            raise ConfigError(f"chroma:// needs a directory, like chroma:///var/lib/rag/chroma; got {url.raw!r}")
        # The lexical index sits next to the Chroma directory, never inside it (Chroma owns that tree).
        lex = path.parent / f"{path.name}-lexical" / f"{collection}.sqlite3"
        return ChromaStore(
            lambda: chromadb.PersistentClient(str(path), settings=_settings()),
            collection,
            str(path),
            lexical_path=lex,
            tokenizer=settings.retrieval.tokenizer,
            lock_dir=path,
        )

    ssl = url.transport == "https"
    port = url.port or (443 if ssl else 8000)
    host = url.host or "localhost"
    timeout_s = settings.store.timeout_s
    headers = {}
    if settings.store.api_key is not None:
        headers["Authorization"] = f"Bearer {settings.store.api_key.get_secret_value()}"

    def connect() -> Any:
        client = chromadb.HttpClient(host=host, port=port, ssl=ssl, headers=headers, settings=_settings())
        _set_timeout(client, timeout_s)
        return client

    # A Chroma server has no BM25 either: each client process keeps a local index in data_dir, built from
    # the collection when missing and reconciled by id with it when its change marker moves (see ChromaStore).
    server = re.sub(r"[^A-Za-z0-9.-]+", "_", f"{host}_{port}")
    lex = settings.data_dir / "lexical" / server / f"{collection}.sqlite3"
    return ChromaStore(
        connect,
        collection,
        url.http_base(port),
        lexical_path=lex,
        tokenizer=settings.retrieval.tokenizer,
        check_s=settings.store.lexical_check_s,
    )


def _set_timeout(client: Any, timeout_s: float) -> None:
    """Give the HTTP session a timeout: chromadb builds its httpx client with none and offers no setting."""
    import httpx

    session = getattr(getattr(client, "_server", None), "_session", None)
    if isinstance(session, httpx.Client):
        session.timeout = httpx.Timeout(timeout_s)
    else:
        log.warning("could not set a request timeout on the Chroma HTTP client; requests may wait indefinitely")
