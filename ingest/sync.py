"""Sync state: per collection, which chunk ids each source document has in the store.

The protocol that makes a killed run safe to repeat:

1. ``begin(source, ids)`` records the chunk ids about to be written as *pending* (committed),
   added to any ids still pending from an earlier interrupted write.
2. The chunks are upserted into the store; old ids that are not among the new ones are deleted.
3. ``finish(source, ...)`` makes the pending ids current and clears pending (committed).

A row that still has pending ids after a crash is re-processed on the next run, and everything in
``ids ∪ pending`` that the new chunking does not produce is deleted, so no orphans survive and the
deterministic ids make the repeated upsert a no-op for duplicates.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from rag.stores.common import EMBEDDED_DEFAULTS, store_location

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS docs (
    source   TEXT PRIMARY KEY,
    doc_hash TEXT NOT NULL,
    recipe   TEXT NOT NULL,
    ids      TEXT NOT NULL,
    pending  TEXT
);
"""


@dataclass(frozen=True)
class DocState:
    """What the store holds for one source document (``pending`` is non-empty after an interrupted write)."""

    source: str
    doc_hash: str
    recipe: str
    ids: tuple[str, ...]
    pending: tuple[str, ...] | None = None

    def all_ids(self) -> set[str]:
        """Every id that may be in the store for this document."""
        return set(self.ids) | set(self.pending or ())


def state_path(data_dir: Path, store_url: str, collection: str, suffix: str = "") -> Path:
    """State file of one collection in one store: ``<data_dir>/sync/<collection>-<location hash>[-suffix].sqlite3``.

    Keyed by the store's resolved location (:func:`rag.stores.common.store_location`: the real absolute
    path of an embedded store, a server's normalised URL), not by the URL as written, so two stores never
    share a state and a run from another working directory finds the same one. ``suffix`` separates the
    states of shards (``shard0of4``), which must never share a file.
    """
    stem = _stem(store_location(store_url, data_dir), collection)
    _adopt_legacy(data_dir / "sync", stem, [_stem(url, collection) for url in _legacy_keys(store_url, data_dir)])
    extra = f"-{suffix}" if suffix else ""
    return data_dir / "sync" / f"{stem}{extra}.sqlite3"


def state_files(data_dir: Path, store_url: str, collection: str) -> list[Path]:
    """Every file of a collection's sync state in one store: the state itself, each shard's, their journals."""
    base = state_path(data_dir, store_url, collection)
    return _files_of(base.parent, base.name.removesuffix(".sqlite3"))


def _stem(key: str, collection: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", collection)
    return f"{safe}-{hashlib.blake2b(key.encode(), digest_size=4).hexdigest()}"


def _files_of(folder: Path, stem: str) -> list[Path]:
    shard = re.compile(rf"{re.escape(stem)}(-shard\d+of\d+)?\.sqlite3(-wal|-shm)?")
    return sorted(p for p in folder.glob(f"{stem}*") if shard.fullmatch(p.name)) if folder.is_dir() else []


def _legacy_keys(store_url: str, data_dir: Path) -> list[str]:
    """URLs an older state of this store was keyed by: the URL as written, and the old default spelling."""
    keys = [store_url]
    scheme, _, rest = store_url.partition("://")
    if scheme in EMBEDDED_DEFAULTS and not rest:  # chroma:// was chroma://.rag/chroma with data_dir .rag
        keys.append(f"{scheme}://{data_dir}/{EMBEDDED_DEFAULTS[scheme]}")
    return keys


def _adopt_legacy(folder: Path, stem: str, legacy: list[str]) -> None:
    """Rename a state keyed by the store URL as written to the location-keyed name, if this store has none yet.

    Keeps an existing install's state (and so its deletion tracking) when it first runs with location keys.
    """
    if not folder.is_dir() or _files_of(folder, stem):
        return
    for old in legacy:
        if old == stem:
            continue
        files = _files_of(folder, old)
        if not files:
            continue
        for path in files:
            with contextlib.suppress(FileNotFoundError):  # another process (a shard) adopted it first
                path.rename(folder / (stem + path.name[len(old) :]))
        log.info("sync state %s is now %s (keyed by the store's location)", old, stem)
        return


def forget_sources(data_dir: Path, store_url: str, collection: str, sources: list[str]) -> int:
    """Forget documents in every sync state of a collection (the plain run's and each shard's).

    For documents deleted from the store outside ingestion (``DELETE /v1/sources``): the state
    would still call them unchanged, and every later ingest would skip them. Once forgotten, the
    next ingest adds them again if they are still in the source. Returns the state rows removed.
    """
    removed = 0
    for path in state_files(data_dir, store_url, collection):
        if path.suffix != ".sqlite3":  # the journals (-wal, -shm) belong to their database
            continue
        state = SyncState(path)
        try:
            removed += state.forget(sources)
        finally:
            state.close()
    return removed


class SyncState:
    """The sqlite-backed state file; every write is committed before the call returns."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._db.commit()

    def get(self, source: str) -> DocState | None:
        """State of one document, or None if it was never stored."""
        row = self._db.execute(
            "SELECT source, doc_hash, recipe, ids, pending FROM docs WHERE source = ?", (source,)
        ).fetchone()
        return _row(row) if row else None

    def under(self, root: str) -> list[DocState]:
        """Every document whose source is ``root`` itself or lies below it."""
        prefix = root.rstrip("/") + "/"
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        rows = self._db.execute(
            "SELECT source, doc_hash, recipe, ids, pending FROM docs WHERE source = ? OR source LIKE ? ESCAPE '\\'",
            (root, escaped + "%"),
        ).fetchall()
        return [_row(r) for r in rows]

    def count(self) -> int:
        """Number of documents recorded."""
        return int(self._db.execute("SELECT COUNT(*) FROM docs").fetchone()[0])

    def begin(self, source: str, ids: list[str]) -> None:
        """Record the ids about to be written for a document (step 1 of the protocol)."""
        self.begin_many([(source, ids)])

    def begin_many(self, docs: list[tuple[str, list[str]]]) -> None:
        """``begin`` for several documents in one transaction (one commit, one fsync)."""
        with self._db:
            for source, ids in docs:
                row = self._db.execute("SELECT pending FROM docs WHERE source = ?", (source,)).fetchone()
                # Ids still pending from an interrupted earlier write stay listed: they may be in the
                # store, and forgetting them here would leave them behind as orphans if this write dies too.
                earlier = json.loads(row[0]) if row and row[0] else []
                pending = json.dumps(sorted(set(ids) | set(earlier)))
                cur = self._db.execute("UPDATE docs SET pending = ? WHERE source = ?", (pending, source))
                if cur.rowcount == 0:
                    # A new document: nothing is current yet; the empty doc_hash marks it until finish.
                    self._db.execute(
                        "INSERT INTO docs (source, doc_hash, recipe, ids, pending) VALUES (?, '', '', '[]', ?)",
                        (source, pending),
                    )

    def finish(self, source: str, ids: list[str], *, doc_hash: str, recipe: str) -> None:
        """Make the written ids current (step 3 of the protocol)."""
        self.finish_many([(source, ids, doc_hash, recipe)])

    def finish_many(self, docs: list[tuple[str, list[str], str, str]]) -> None:
        """``finish`` for several ``(source, ids, doc_hash, recipe)`` in one transaction."""
        with self._db:
            self._db.executemany(
                "UPDATE docs SET doc_hash = ?, recipe = ?, ids = ?, pending = NULL WHERE source = ?",
                [(doc_hash, recipe, json.dumps(ids), source) for source, ids, doc_hash, recipe in docs],
            )

    def clear_pending(self, source: str) -> None:
        """Forget pending ids once they have been removed from the store; drop rows left with nothing."""
        with self._db:
            self._db.execute("UPDATE docs SET pending = NULL WHERE source = ?", (source,))
            self._db.execute("DELETE FROM docs WHERE source = ? AND doc_hash = ''", (source,))

    def remove(self, source: str) -> None:
        """Forget a document (after its chunks were deleted from the store)."""
        with self._db:
            self._db.execute("DELETE FROM docs WHERE source = ?", (source,))

    def forget(self, sources: list[str]) -> int:
        """Forget several documents at once (removed from the store by someone else); returns how many were known."""
        with self._db:
            cur = self._db.executemany("DELETE FROM docs WHERE source = ?", [(source,) for source in sources])
        return max(cur.rowcount, 0)

    def reset(self) -> None:
        """Forget everything (the store was found empty, so the state describes nothing real)."""
        with self._db:
            self._db.execute("DELETE FROM docs")

    def close(self) -> None:
        """Close the database file."""
        self._db.close()


def _row(row: tuple[str, str, str, str, str | None]) -> DocState:
    source, doc_hash, recipe, ids, pending = row
    return DocState(
        source=source,
        doc_hash=doc_hash,
        recipe=recipe,
        ids=tuple(json.loads(ids)),
        pending=tuple(json.loads(pending)) if pending is not None else None,
    )
