"""The lexical index's SQLite file: one row per chunk (its fields, text and token ids), a shared vocabulary.

Written per batch in one transaction (O(change), atomic, crash-safe in WAL mode); several processes may write
the same file (service replicas sharing ``data_dir``): SQLite's locking orders them, ``BEGIN IMMEDIATE`` takes
the write lock before reading what a batch replaces, and token ids are assigned inside that transaction, so
every process agrees on them. Start-up reads what ranking and filtering need (fields and token ids, not the
texts); a hit's text is read for the top-k only. ``path=None`` keeps the same tables in memory.

Tokens are stored as ids into ``vocab``: a blob of little-endian int32, the document's distinct token ids then
their counts.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from rag.types import Chunk

SCHEMA = 1
_PART = 500  # ids per IN (...) list, well under SQLite's variable limit

_TABLES = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS vocab (id INTEGER PRIMARY KEY, token TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS chunks (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    source TEXT NOT NULL, title TEXT NOT NULL, section TEXT NOT NULL, page INTEGER, idx INTEGER NOT NULL,
    groups TEXT NOT NULL, content_hash TEXT NOT NULL, doc_hash TEXT NOT NULL, lang TEXT NOT NULL,
    mtime REAL NOT NULL, ingested_at REAL NOT NULL,
    text TEXT NOT NULL,
    tokens BLOB NOT NULL,
    bigrams BLOB
);
"""
_FIELDS = "id, source, title, section, page, idx, groups, content_hash, doc_hash, lang, mtime, ingested_at"
_UPSERT = (
    f"INSERT INTO chunks ({_FIELDS}, text, tokens, bigrams) VALUES ({', '.join('?' * 15)}) "
    "ON CONFLICT(id) DO UPDATE SET "
    + ", ".join(f"{f} = excluded.{f}" for f in [*_FIELDS.split(", ")[1:], "text", "tokens", "bigrams"])
)


def encode(ids: np.ndarray) -> tuple[bytes, np.ndarray, np.ndarray]:
    """A document's token ids as its blob, distinct ids and counts."""
    uniq, counts = np.unique(ids, return_counts=True)
    uniq, counts = uniq.astype("<i4"), counts.astype("<i4")
    return np.concatenate([uniq, counts]).tobytes(), uniq, counts


def decode(blob: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Distinct token ids and their counts from a blob."""
    arr = np.frombuffer(blob, "<i4")
    half = len(arr) // 2
    return arr[:half], arr[half:]


def decode_many(blobs: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Several documents' blobs at once: their sizes (distinct tokens), token ids and counts laid end to end."""
    arr = np.frombuffer(b"".join(blobs), "<i4")
    sizes = np.fromiter((len(b) // 8 for b in blobs), np.int64, count=len(blobs))
    starts = np.repeat(np.cumsum(2 * sizes) - 2 * sizes, sizes)
    within = np.arange(int(sizes.sum())) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    return sizes, arr[starts + within], arr[starts + within + np.repeat(sizes, sizes)]


def chunk_of(row: Sequence[Any], text: str = "") -> Chunk:
    """A chunk from the ``_FIELDS`` columns of a row."""
    cid, source, title, section, page, idx, groups, chash, dhash, lang, mtime, ingested = row[:12]
    return Chunk(
        id=cid,
        text=text,
        source=source,
        title=title,
        section=section,
        page=page,
        index=idx,
        groups=tuple(json.loads(groups)),
        content_hash=chash,
        doc_hash=dhash,
        lang=lang,
        mtime=mtime,
        ingested_at=ingested,
    )


def _fields(c: Chunk) -> tuple[Any, ...]:
    groups = json.dumps(list(c.groups), ensure_ascii=False)
    return (c.id, c.source, c.title, c.section, c.page, c.index, groups, c.content_hash, c.doc_hash, c.lang)


class IndexFile:
    """The SQLite tables of one lexical index (see the module docstring); not thread-safe on its own."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None

    def connect(self) -> sqlite3.Connection:
        """The open connection, creating the file and its tables on first use.

        Raises:
            sqlite3.DatabaseError: the file is not a readable SQLite database.
        """
        if self._db is None:
            if self.path is None:
                db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                # Autocommit mode (isolation_level=None): transactions are explicit, see transaction().
                db = sqlite3.connect(self.path, timeout=60.0, check_same_thread=False, isolation_level=None)
            try:
                if self.path is not None:
                    db.execute("PRAGMA journal_mode=WAL")
                    db.execute(
                        "PRAGMA synchronous=NORMAL"
                    )  # WAL: a crash loses at most the last commits, never the file
                db.executescript(_TABLES)
            except BaseException:
                db.close()
                raise
            self._db = db
        return self._db

    def close(self) -> None:
        """Close the connection (the next use opens it again)."""
        if self._db is not None:
            self._db.close()
            self._db = None

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, holding SQLite's write lock from its start; rolled back on any error."""
        db = self.connect()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def meta(self) -> dict[str, str]:
        """The file's ``meta`` table (format, tokenizer, and the store's ``synced`` token when one is recorded)."""
        return dict(self.connect().execute("SELECT key, value FROM meta").fetchall())

    def set_meta(self, key: str, value: str | None) -> None:
        """Record one ``meta`` entry (None removes it), in a transaction of its own."""
        with self.transaction() as db:
            if value is None:
                db.execute("DELETE FROM meta WHERE key = ?", (key,))
            else:
                db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def token_ids(self, db: sqlite3.Connection, tokens: Iterable[str], add: bool) -> dict[str, int]:
        """Ids of tokens, inside a transaction; ``add`` assigns ids to new ones, otherwise unknown ones are left out."""
        wanted = list(set(tokens))
        if add:
            db.executemany("INSERT OR IGNORE INTO vocab (token) VALUES (?)", [(t,) for t in wanted])
        out: dict[str, int] = {}
        for start in range(0, len(wanted), _PART):
            part = wanted[start : start + _PART]
            sql = f"SELECT token, id FROM vocab WHERE token IN ({', '.join('?' * len(part))})"
            out.update(db.execute(sql, part).fetchall())
        return out

    def blobs(self, db: sqlite3.Connection, ids: Sequence[str]) -> dict[str, tuple[bytes, bytes | None]]:
        """The token and bigram blobs of the chunks among ``ids`` that the file holds."""
        out: dict[str, tuple[bytes, bytes | None]] = {}
        for start in range(0, len(ids), _PART):
            part = list(ids[start : start + _PART])
            sql = f"SELECT id, tokens, bigrams FROM chunks WHERE id IN ({', '.join('?' * len(part))})"
            out.update((i, (t, b)) for i, t, b in db.execute(sql, part))
        return out

    def texts_and_tokens(self, ids: Sequence[str]) -> dict[str, tuple[str, str, str, bytes]]:
        """The title, section, text and token blob of the chunks among ``ids`` that the file holds."""
        db = self.connect()
        out: dict[str, tuple[str, str, str, bytes]] = {}
        for start in range(0, len(ids), _PART):
            part = list(ids[start : start + _PART])
            sql = f"SELECT id, title, section, text, tokens FROM chunks WHERE id IN ({', '.join('?' * len(part))})"
            out.update((row[0], row[1:]) for row in db.execute(sql, part))
        return out

    def write(self, db: sqlite3.Connection, rows: Sequence[tuple[Chunk, bytes, bytes | None]]) -> None:
        """Upsert chunks with their token blobs (a replaced chunk keeps its row, hence its place)."""
        db.executemany(
            _UPSERT, [(*_fields(c), c.mtime, c.ingested_at, c.text, tokens, bigrams) for c, tokens, bigrams in rows]
        )

    def delete(self, db: sqlite3.Connection, ids: Sequence[str]) -> None:
        """Delete chunks by id."""
        db.executemany("DELETE FROM chunks WHERE id = ?", [(i,) for i in ids])

    def rows(self) -> Iterator[tuple[Any, ...]]:
        """Every chunk's fields, token blob and bigram blob, in the order the chunks were first written (no text)."""
        yield from self.connect().execute(f"SELECT {_FIELDS}, tokens, bigrams FROM chunks ORDER BY seq")

    def chunks(self, ids: Sequence[str]) -> dict[str, Chunk]:
        """Whole chunks (with text) by id; ids the file lacks are left out."""
        db = self.connect()
        out: dict[str, Chunk] = {}
        for start in range(0, len(ids), _PART):
            part = list(ids[start : start + _PART])
            sql = f"SELECT {_FIELDS}, text FROM chunks WHERE id IN ({', '.join('?' * len(part))})"
            for row in db.execute(sql, part):
                out[row[0]] = chunk_of(row, row[12])
        return out

    def reset(self, meta: dict[str, str]) -> None:
        """Empty every table and record new ``meta`` (another tokeniser or format)."""
        with self.transaction() as db:
            db.execute("DELETE FROM chunks")
            db.execute("DELETE FROM vocab")
            db.execute("DELETE FROM meta")
            db.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", list(meta.items()))

    def remove(self) -> None:
        """Close and delete the file with its WAL and shared-memory files."""
        self.close()
        if self.path is not None:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)

    def set_aside(self) -> Path | None:
        """Close and rename an unreadable file to ``<name>.corrupt`` (kept for inspection); returns the new path."""
        self.close()
        if self.path is None or not self.path.exists():
            return None
        aside = self.path.with_name(self.path.name + ".corrupt")
        self.path.replace(aside)
        for suffix in ("-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)
        return aside
