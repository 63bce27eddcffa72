"""The BM25 index for stores without a native one (memory, Chroma): token-id postings in memory, rows in SQLite.

Ranking keeps in memory only what it reads: each chunk's token ids and counts as numpy postings
(:mod:`rag.lexical.postings`, scored exactly as one bm25s index over all chunks), its filter fields as small
codes (:mod:`rag.lexical.columns`), its id and two fingerprints. Texts and metadata live in one SQLite file
(:mod:`rag.lexical.file`), written per upsert/delete batch in one transaction and read for the top-k hits only.
The filter is applied *before* ranking (an ACL never cuts a top-k afterwards), with ``rag.types.matches``
semantics, its mask cached per filter until the next change.

A file built with another tokeniser is emptied and rebuilt by the store; an unreadable one is set aside as
``<name>.corrupt`` and rebuilt; the JSON file of earlier versions (``<name>.json``, format 3) is converted once.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from itertools import chain, islice
from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import RagError
from rag.lexical.columns import Columns
from rag.lexical.file import SCHEMA, IndexFile, chunk_of, decode, decode_many, encode
from rag.lexical.fusion import fuse_lexical
from rag.lexical.postings import Postings
from rag.lexical.tokens import (
    bigram_tokens,
    hangul_fusion,
    has_hangul,
    lexical_text,
    make_batch_tokenizer,
    make_tokenizer,
)
from rag.types import Chunk, Filter, ScoredChunk, matches_nothing

log = logging.getLogger(__name__)

# BM25 parameters used by every backend (bm25s, Milvus index params). b chosen on the benchmark's dev half
# of every set (docs/benchmarks/retrieval.md): 0.6 over 0.4 lifts Korean and HotpotQA, costs XQuAD/MuSiQue little.
BM25_K1 = 0.9
BM25_B = 0.6
# Token format: 2: kiwi leaves text without Hangul to the bigram tokeniser; 3: kiwi adds noun compounds.
_FORMAT = 3
_LEGACY_FORMAT = 3  # the JSON file this version converts
# Filter masks kept per index (one per distinct caller ACL / filter, oldest dropped first).
_MASK_CACHE = 64
_LOAD_BATCH = 10_000
# The meta entry in which a store records the state of its own index that this file matches (see synced()).
_SYNCED = "synced"
_META_FIELDS = tuple(
    f.name for f in dataclasses.fields(Chunk) if f.name != "text"
)  # rows turned into filter columns at a time while loading


def _fingerprint(chunk: Chunk) -> int:
    """Hash of every field but the text (what ``stale`` compares), stable within this process."""
    return hash(tuple(getattr(chunk, name) for name in _META_FIELDS))


def _joined(pages: list[tuple[np.ndarray, ...]]) -> tuple[np.ndarray, ...]:
    """Pages of (slots, sizes, tokens, counts) as one."""
    if not pages:
        return (np.zeros(0, np.int64),) * 4
    return tuple(np.concatenate([p[i] for p in pages]) for i in range(4))


def _bigrams(texts: list[str], kiwi: list[list[str]]) -> list[list[str]]:
    """Bigram tokens of texts given their kiwi tokens: kiwi reads a text without Hangul as ``bigram`` does."""
    return [(bigram_tokens(t) or [""]) if has_hangul(t) else k for t, k in zip(texts, kiwi, strict=True)]


def _grown(arr: np.ndarray, n: int) -> np.ndarray:
    if n <= len(arr):
        return arr
    out = np.zeros(max(n, 2 * len(arr), 1024), arr.dtype)
    out[: len(arr)] = arr
    return out


class LexicalIndex:
    """BM25 over chunks (see the module docstring); ``path=None`` keeps the rows in an in-memory SQLite."""

    def __init__(self, tokenizer: str, path: Path | None = None) -> None:
        self.tokenizer_name = tokenizer
        self.tokenize = make_tokenizer(tokenizer)
        self.tokenize_many = make_batch_tokenizer(tokenizer)
        self.path = path
        self._fuses = tokenizer == "kiwi"  # bigram rankings are fused in for Korean queries (hangul_fusion)
        self._file = IndexFile(path)
        self._lock = threading.RLock()
        self._checked = False  # the file's format and tokeniser were checked
        self._forget()

    def _forget(self) -> None:
        """Empty the in-memory part (the file is left alone)."""
        self._slot: dict[str, int] = {}
        self._ids: list[str | None] = []  # by slot; None once deleted (slots keep first-write order)
        self._tok_fp = np.zeros(0, np.int64)
        self._meta_fp = np.zeros(0, np.int64)
        self._postings = Postings(BM25_K1, BM25_B)
        self._bigrams = Postings(BM25_K1, BM25_B) if self._fuses else None  # Korean queries fuse them in
        self._columns = Columns()
        self._masks: dict[tuple[Any, ...], np.ndarray] = {}

    def __len__(self) -> int:
        return len(self._slot)

    def ids(self) -> set[str]:
        """Ids of every indexed chunk."""
        return set(self._slot)

    # --- the file ----------------------------------------------------------------------------------

    def _meta(self) -> dict[str, str]:
        return {"schema": str(SCHEMA), "format": str(_FORMAT), "tokenizer": self.tokenizer_name}

    def _open(self) -> bool:
        """Connect and check the file; False when it held nothing usable (new, other build, or set aside)."""
        if self._checked:
            return True
        try:
            found = self._file.meta()
            found.pop(_SYNCED, None)
            usable = found == self._meta()
            if not usable:
                if found:
                    log.info("lexical index %s was built differently (%s); rebuilding it", self.path, found)
                self._file.reset(self._meta())
        except sqlite3.DatabaseError as e:
            self._set_aside(e)
            self._file.reset(self._meta())
            usable = False
        self._checked = True
        return usable

    def synced(self) -> str | None:
        """The token a store last recorded with :meth:`set_synced`, or None (never, or cleared since)."""
        with self._lock:
            try:
                if not self._open():
                    return None
                return self._file.meta().get(_SYNCED)
            except sqlite3.Error as e:
                raise self._failed("reading", e) from e

    def set_synced(self, token: str | None) -> None:
        """Record that the file matches the store's state ``token`` (None: it may not, from here on).

        The store clears it before it changes anything and records a new token once the index and the
        store hold the same chunks again, so a crash in between leaves it cleared and the next open
        reconciles the two; a file emptied or rebuilt (another tokeniser, unreadable) loses it too.
        """
        with self._lock:
            try:
                self._open()
                self._file.set_meta(_SYNCED, token)
            except sqlite3.Error as e:
                raise self._failed("writing", e) from e

    def _failed(self, what: str, e: sqlite3.Error) -> RagError:
        return RagError(f"lexical index {self.path or '(in memory)'}: {what} failed: {e}")

    # --- changes -----------------------------------------------------------------------------------

    def upsert(self, chunks: Sequence[Chunk]) -> None:
        """Index or re-index chunks by id (one transaction per call)."""
        batch = list({c.id: c for c in chunks}.values())
        if not batch:
            return
        texts = [lexical_text(c) for c in batch]
        # An empty token list scores nothing; the empty token stands in for it, as bm25s does.
        toks = [tokens or [""] for tokens in self.tokenize_many(texts)]
        bigrams = _bigrams(texts, toks) if self._fuses else None
        with self._lock:
            self._open()
            known = [c.id for c in batch if c.id in self._slot]
            try:
                with self._file.transaction() as db:
                    vocab = self._file.token_ids(db, chain(*toks, *(bigrams or [])), add=True)
                    enc = [encode(np.array([vocab[t] for t in d], np.int32)) for d in toks]
                    benc = [encode(np.array([vocab[t] for t in d], np.int32)) for d in bigrams] if bigrams else None
                    old = self._file.blobs(db, known) if known else {}
                    rows = [
                        (c, e[0], benc[i][0] if benc else None) for i, (c, e) in enumerate(zip(batch, enc, strict=True))
                    ]
                    self._file.write(db, rows)
            except sqlite3.Error as e:
                raise self._failed("writing", e) from e
            self._unindex(known, old)
            slots = [self._take_slot(c.id) for c in batch]
            self._postings.add(slots, [(u, n) for _, u, n in enc])
            if self._bigrams is not None and benc is not None:
                self._bigrams.add(slots, [(u, n) for _, u, n in benc])
            self._columns.put(slots, batch)
            self._tok_fp[slots] = [hash(tokens) for _, tokens, _ in rows]
            self._meta_fp[slots] = [_fingerprint(c) for c in batch]
            self._masks.clear()

    def delete(self, ids: Iterable[str]) -> None:
        """Forget chunks by id; unknown ids are ignored."""
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return
        with self._lock:
            self._open()
            known = [i for i in wanted if i in self._slot]
            try:
                with self._file.transaction() as db:
                    old = self._file.blobs(db, known) if known else {}
                    self._file.delete(db, wanted)
            except sqlite3.Error as e:
                raise self._failed("deleting", e) from e
            self._unindex(known, old)
            for i in known:
                self._ids[self._slot.pop(i)] = None
            self._masks.clear()

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            try:
                self._file.reset(self._meta())
            except sqlite3.Error as e:
                raise self._failed("clearing", e) from e
            self._checked = True
            self._forget()

    def _take_slot(self, chunk_id: str) -> int:
        slot = self._slot.get(chunk_id)
        if slot is None:
            slot = self._slot[chunk_id] = len(self._ids)
            self._ids.append(chunk_id)
            self._tok_fp = _grown(self._tok_fp, len(self._ids))
            self._meta_fp = _grown(self._meta_fp, len(self._ids))
        return slot

    def _unindex(self, ids: Sequence[str], old: dict[str, tuple[bytes, bytes | None]]) -> None:
        """Take chunks out of the postings; their old token ids come from the file when the row is the one indexed."""
        if not ids:
            return
        slots = [self._slot[i] for i in ids]
        rows = [old.get(i) for i in ids]
        # Another process may have rewritten a row since: then its tokens are not the ones counted here.
        same = [r is not None and hash(r[0]) == self._tok_fp[s] for r, s in zip(rows, slots, strict=True)]
        self._postings.remove(slots, [decode(r[0])[0] if ok and r else None for r, ok in zip(rows, same, strict=True)])
        if self._bigrams is not None:
            self._bigrams.remove(
                slots,
                [decode(r[1])[0] if ok and r and r[1] is not None else None for r, ok in zip(rows, same, strict=True)],
            )

    # --- search ------------------------------------------------------------------------------------

    def search(self, query: str, k: int, flt: Filter | None = None) -> list[ScoredChunk]:
        """Top-k chunks by BM25 among those the filter admits; chunks sharing no token are left out."""
        tokens = self.tokenize(query)
        if not tokens or matches_nothing(flt):
            return []
        with self._lock:
            if not self._slot:
                return []
            try:
                self._open()
                rankings = [self._ranked(self._postings, tokens, k, flt)]
                if self._bigrams is not None and hangul_fusion(self.tokenizer_name, query):
                    rankings.append(self._ranked(self._bigrams, bigram_tokens(query), k, flt))
                found = self._file.chunks([self._ids[s] or "" for r in rankings for s, _ in r])
            except sqlite3.Error as e:
                raise self._failed("searching", e) from e
        # A row another process deleted since is left out, as the store no longer has it either.
        scored = [
            [ScoredChunk(found[i], score) for s, score in r if (i := self._ids[s] or "") in found] for r in rankings
        ]
        return scored[0] if len(scored) == 1 else fuse_lexical(scored, k)

    def coverage(self, query_tokens: Sequence[str], chunks: Sequence[Chunk]) -> dict[str, float]:
        """Share of the distinct ``query_tokens`` (this index's tokeniser) each chunk holds, by chunk id.

        Read from the token ids stored for the chunk, so nothing is analysed again (the relevance gate's
        test, :func:`rag.lexical.tokens.coverage`, without its cost). A chunk the index does not hold with
        this very text (absent, or since rewritten by another process) is left out.
        """
        wanted = set(query_tokens)
        if not chunks:
            return {}
        with self._lock:
            try:
                self._open()
                vocab = self._file.token_ids(self._file.connect(), wanted, add=False) if wanted else {}
                rows = self._file.texts_and_tokens([c.id for c in chunks])
            except sqlite3.Error as e:
                raise self._failed("reading tokens", e) from e
        ids = np.fromiter(vocab.values(), np.int32, count=len(vocab))
        out: dict[str, float] = {}
        for c in chunks:
            row = rows.get(c.id)
            if row is not None and row[:3] == (c.title, c.section, c.text):
                held = np.isin(ids, decode(row[3])[0], assume_unique=True).sum() if len(ids) else 0
                out[c.id] = int(held) / len(wanted) if wanted else 0.0
        return out

    def _mask(self, flt: Filter, n: int) -> np.ndarray:
        """Which slots the filter admits; cached per filter until the next change (callers' ACLs repeat)."""
        key = (flt.groups, flt.sources, tuple(sorted(flt.where.items())), flt.exclude_sources)
        mask = self._masks.get(key)
        if mask is None or len(mask) != n:
            mask = self._columns.mask(flt, n)
            if len(self._masks) >= _MASK_CACHE:
                self._masks.pop(next(iter(self._masks)))
            self._masks[key] = mask
        return mask

    def _ranked(self, postings: Postings, tokens: list[str], k: int, flt: Filter | None) -> list[tuple[int, float]]:
        """(slot, score) of the top-k, ties in first-write order (as bm25s over the chunks in that order)."""
        vocab = self._file.token_ids(self._file.connect(), tokens, add=False)
        ids = [vocab[t] for t in tokens if t in vocab]
        if not ids:
            return []
        n = len(self._ids)
        scores = postings.scores(ids, n).astype(np.float64)
        if flt is not None:
            scores = np.where(self._mask(flt, n), scores, 0.0)
        cand = np.flatnonzero(scores > 0)
        got = scores[cand]
        if len(cand) > k:
            # Everything tied with the k-th best stays, so the stable sort breaks ties exactly as a full sort.
            kth = got[np.argpartition(-got, k - 1)[k - 1]]
            keep = got >= kth
            cand, got = cand[keep], got[keep]
        top = np.argsort(-got, kind="stable")[:k]
        return [(int(cand[i]), float(got[i])) for i in top]

    # --- persistence -------------------------------------------------------------------------------

    def save(self) -> None:
        """Changes are committed as they happen; this folds the write-ahead log back into the file."""
        if self.path is None or not self._checked:
            return
        with self._lock:
            try:
                self._file.connect().execute("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.Error as e:
                log.warning("checkpointing lexical index %s failed: %s", self.path, e)

    def close(self) -> None:
        """Close the file (the in-memory index stays; the next change or search opens it again)."""
        if self.path is None:
            return  # the in-memory tables are all there is
        with self._lock:
            self._file.close()
            self._checked = False

    def remove(self) -> None:
        """Forget everything and delete the file."""
        with self._lock:
            self._file.remove()
            self._checked = False
            self._forget()
            legacy = self._legacy()
            if legacy is not None:
                legacy.unlink(missing_ok=True)

    def _legacy(self) -> Path | None:
        """The JSON file of earlier versions beside this one, if it exists."""
        if self.path is None or self.path.suffix == ".json":
            return None
        legacy = self.path.with_suffix(".json")
        return legacy if legacy.is_file() else None

    def _set_aside(self, error: Exception) -> None:
        """Move an unreadable file out of the way (the store then rebuilds the index), saying so."""
        aside = self._file.set_aside()
        log.warning(
            "lexical index %s is unreadable (%s); set aside as %s, rebuilding it from the store",
            self.path,
            error,
            aside,
        )

    def load(self) -> bool:
        """Read the file (converting a legacy JSON one); False when there was nothing usable, so the store rebuilds."""
        if self.path is None:
            return False
        legacy = self._legacy()
        if not self.path.is_file() and legacy is None:
            return False
        with self._lock:
            self._checked = False
            self._forget()
            usable = self._open()
            try:
                if legacy is not None:
                    if not usable or self._file.connect().execute("SELECT 1 FROM chunks LIMIT 1").fetchone() is None:
                        usable = self._migrate(legacy)
                    legacy.unlink(missing_ok=True)
                if usable:
                    self._read()
            except sqlite3.DatabaseError as e:
                self._set_aside(e)
                self._checked = False
                self._forget()
                self._open()
                return False
        if usable:
            log.info("loaded lexical index of %d chunks from %s", len(self._slot), self.path)
        return usable

    def _read(self) -> None:
        """Every row's token ids, bigram ids and filter fields into memory (not the texts), a page at a time.

        The bigram postings are read in the same pass (one scan of the file), so no Korean query pays for them.
        """
        pages: list[tuple[np.ndarray, ...]] = []
        bigram_pages: list[tuple[np.ndarray, ...]] = []
        rows = self._file.rows()
        while page := list(islice(rows, _LOAD_BATCH)):
            slots = self._place([chunk_of(row) for row in page])
            blobs = [row[12] for row in page]
            self._tok_fp[slots] = [hash(b) for b in blobs]
            pages.append((np.asarray(slots, np.int64), *decode_many(blobs)))
            if self._bigrams is not None:
                mine = [(s, row[13]) for s, row in zip(slots, page, strict=True) if row[13] is not None]
                bigram_pages.append((np.array([s for s, _ in mine], np.int64), *decode_many([b for _, b in mine])))
        self._postings.load(*_joined(pages))
        if self._bigrams is not None:
            self._bigrams.load(*_joined(bigram_pages))

    def _place(self, chunks: list[Chunk]) -> list[int]:
        slots = [self._take_slot(c.id) for c in chunks]
        self._columns.put(slots, chunks)
        self._meta_fp[slots] = [_fingerprint(c) for c in chunks]
        return slots

    def _migrate(self, legacy: Path) -> bool:
        """Convert the JSON file of earlier versions (its tokens as they are); False when it is not usable."""
        try:
            payload = json.loads(legacy.read_text(encoding="utf-8"))
            if payload.get("format") != _LEGACY_FORMAT or payload.get("tokenizer") != self.tokenizer_name:
                log.info("lexical index %s was built differently; rebuilding it", legacy)
                return False
            docs: dict[str, tuple[Chunk, list[str]]] = {}
            for row in payload["docs"]:
                raw = dict(row["chunk"])
                raw["groups"] = tuple(raw.get("groups") or ())
                chunk = Chunk(**raw)
                docs[chunk.id] = (chunk, [str(t) for t in row["tokens"]])
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.warning("lexical index %s is unreadable (%s); rebuilding it from the store", legacy, e)
            return False
        with self._file.transaction() as db:
            for start in range(0, len(docs), _LOAD_BATCH):
                part = list(docs.values())[start : start + _LOAD_BATCH]
                toks = [t or [""] for _, t in part]
                bigrams = _bigrams([lexical_text(c) for c, _ in part], toks) if self._fuses else None
                vocab = self._file.token_ids(db, chain(*toks, *(bigrams or [])), add=True)
                rows = [
                    (
                        c,
                        encode(np.array([vocab[t] for t in toks[i]], np.int32))[0],
                        encode(np.array([vocab[t] for t in bigrams[i]], np.int32))[0] if bigrams else None,
                    )
                    for i, (c, _) in enumerate(part)
                ]
                self._file.write(db, rows)
        log.info("converted lexical index %s (%d chunks) to %s", legacy, len(docs), self.path)
        return True

    # --- reconciliation with the store -------------------------------------------------------------

    def stale(self, stored: Iterable[Chunk]) -> list[str]:
        """Ids of stored chunks (read without their text) that the index lacks or holds with other metadata.

        Chunk ids come from the text, so a same-id chunk differs only in its metadata: groups changed
        without re-embedding, a new title or section (which the index reads too), a newer mtime.
        """
        out = []
        for chunk in stored:
            slot = self._slot.get(chunk.id)
            if slot is None or self._meta_fp[slot] != _fingerprint(chunk):
                out.append(chunk.id)
        return out

    def missing_and_extra(self, store_ids: Iterable[str]) -> tuple[list[str], list[str]]:
        """Ids the store has and the index lacks, and ids the index has that the store no longer holds."""
        have = set(store_ids)
        mine = set(self._slot)
        return sorted(have - mine), sorted(mine - have)
