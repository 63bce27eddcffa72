"""BM25 over token-id postings in compact numpy arrays, updated in place and scored exactly as bm25s scores.

bm25s (the ``lucene`` variant) precomputes ``float32(idf * tf / (tf + k1 * (1 - b + b * dl / avgdl)))`` for every
(document, token) pair, so one changed chunk changes every weight (N and avgdl move) and costs a full rebuild.
Here the postings keep only the term counts; weights are computed at query time for the query's tokens from the
current N, avgdl and document frequencies, with the same float64 arithmetic and the same float32 rounding and
summation order as bm25s, so the scores are bit-for-bit those of one bm25s index over all live chunks.

Postings sit in a large immutable *base* (CSR by token, built at load or by a merge) and a small *delta* of recent
batches (rebuilt after a change, O(delta)); a replaced or deleted chunk's base postings are masked by its slot's
version, and the two are merged when the delta grows past a fraction of the base.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# The delta is merged into the base once it holds this many postings and more than 1/_MERGE_RATIO of the base.
_MERGE_MIN = 1_000_000
_MERGE_RATIO = 16
# Pending postings folded into the delta even without a search (about 12 bytes each).
_PENDING_MAX = 2_000_000
_DEAD = -1  # slot version of a chunk not (or no longer) indexed
_BASE = 0  # slot version of a chunk whose postings are in the base
_DELTA = 1  # ... in the delta; pending batches count up from 2


@dataclass
class _CSR:
    """Postings grouped by token: ``slots[indptr[t]:indptr[t + 1]]`` hold token ``t`` ``tf`` times."""

    indptr: np.ndarray
    slots: np.ndarray
    tf: np.ndarray

    @staticmethod
    def build(tokens: np.ndarray, slots: np.ndarray, tf: np.ndarray) -> _CSR:
        """Group (token, slot, count) triples by token (in any order within a token: a slot holds it once).

        A stable sort: the triples arrive document by document, each document's tokens ascending, and those runs
        make timsort 3x faster than numpy's default introsort; a radix sort when the ids fit 16 bits.
        """
        keys = tokens.astype(np.uint16) if len(tokens) and int(tokens.max()) < 1 << 16 else tokens
        order = np.argsort(keys, kind="stable")
        counts = np.bincount(tokens, minlength=1)
        indptr = np.zeros(len(counts) + 1, np.int64)
        np.cumsum(counts, out=indptr[1:])
        return _CSR(indptr, slots[order].astype(np.int32), tf[order].astype(np.float32))

    def __len__(self) -> int:
        return len(self.slots)

    def triples(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(token, slot, count) of every posting."""
        tokens = np.repeat(np.arange(len(self.indptr) - 1, dtype=np.int32), np.diff(self.indptr))
        return tokens, self.slots, self.tf

    def of(self, token: int) -> tuple[np.ndarray, np.ndarray]:
        """Slots holding ``token`` and their counts (empty for a token this CSR never saw)."""
        if token + 1 >= len(self.indptr):
            return self.slots[:0], self.tf[:0]
        a, b = self.indptr[token], self.indptr[token + 1]
        return self.slots[a:b], self.tf[a:b]


_EMPTY = _CSR(np.zeros(1, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float32))


def _grown(arr: np.ndarray, n: int, fill: int) -> np.ndarray:
    """``arr`` with room for index ``n - 1`` (capacity doubled), new entries ``fill``."""
    if n <= len(arr):
        return arr
    out = np.full(max(n, 2 * len(arr), 1024), fill, arr.dtype)
    out[: len(arr)] = arr
    return out


class Postings:
    """BM25 over documents in numbered slots, each a set of token ids with counts (see the module docstring)."""

    def __init__(self, k1: float, b: float) -> None:
        self.k1, self.b = k1, b
        self._reset()

    def _reset(self) -> None:
        self.live = 0  # N: documents indexed
        self.total = 0  # sum of document lengths (tokens with repeats)
        self._dl = np.zeros(0, np.int64)  # per slot
        self._ver = np.zeros(0, np.int32)  # per slot: _DEAD, _BASE, _DELTA or the pending batch holding it
        self._df = np.zeros(0, np.int64)  # per token id: live documents holding it
        self._df_stale = False
        self._base, self._delta = _EMPTY, _EMPTY
        self._masked = {_BASE: 0, _DELTA: 0}  # slots whose postings there no longer count
        self._base_slots = 0
        self._pending: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []  # (version, tokens, slots, tf)
        self._pending_postings = 0
        self._serial = _DELTA

    def __contains__(self, slot: int) -> bool:
        return slot < len(self._ver) and self._ver[slot] != _DEAD

    def add(self, slots: Sequence[int], docs: Sequence[tuple[np.ndarray, np.ndarray]]) -> None:
        """Index documents (unique token ids, their counts) in slots that hold none."""
        if not len(slots):
            return
        sizes = np.array([len(d[0]) for d in docs], np.int64)
        tokens = np.concatenate([d[0] for d in docs])
        self.add_flat(np.asarray(slots, np.int64), sizes, tokens, np.concatenate([d[1] for d in docs]))

    def add_flat(
        self, slots: np.ndarray, sizes: np.ndarray, tokens: np.ndarray, counts: np.ndarray, fold: bool = True
    ) -> None:
        """:meth:`add` with the documents' token ids and counts laid end to end, ``sizes[i]`` for slot ``slots[i]``.

        ``fold=False`` leaves a large batch pending (the caller builds the base from it next).
        """
        if not len(slots):
            return
        self._serial += 1
        self._ver = _grown(self._ver, int(slots.max()) + 1, _DEAD)
        self._dl = _grown(self._dl, len(self._ver), 0)
        tokens, tf = tokens.astype(np.int32), counts.astype(np.float32)
        doc = np.repeat(np.arange(len(slots)), sizes)
        lens = np.bincount(doc, weights=counts, minlength=len(slots)).astype(np.int64)
        self._ver[slots] = self._serial
        self._dl[slots] = lens
        self.live += len(slots)
        self.total += int(lens.sum())
        self._df = _grown(self._df, int(tokens.max(initial=0)) + 1, 0)
        if len(tokens) * 8 > len(self._df):
            self._df += np.bincount(tokens, minlength=len(self._df))
        else:
            np.add.at(self._df, tokens, 1)
        self._pending.append((self._serial, tokens, slots[doc].astype(np.int32), tf))
        self._pending_postings += len(tokens)
        if fold and self._pending_postings > _PENDING_MAX:
            self._fold()  # a writer that never searches (the ingester) keeps compact postings too

    def remove(self, slots: Sequence[int], tokens: Sequence[np.ndarray | None]) -> None:
        """Forget documents; ``tokens`` are each one's unique token ids, or None where they are not known.

        An unknown token set (another process rewrote the row) marks the document frequencies for a recount.
        """
        for slot, toks in zip(slots, tokens, strict=True):
            if slot not in self:
                continue
            ver = int(self._ver[slot])
            if ver in self._masked:
                self._masked[ver] += 1
            self._ver[slot] = _DEAD
            self.live -= 1
            self.total -= int(self._dl[slot])
            self._dl[slot] = 0
            if toks is None:
                self._df_stale = True
            else:
                np.subtract.at(self._df, toks, 1)

    def load(self, slots: np.ndarray, sizes: np.ndarray, tokens: np.ndarray, counts: np.ndarray) -> None:
        """Replace everything by these documents (laid out as for :meth:`add_flat`), straight into the base."""
        self._reset()
        if len(slots):
            self.add_flat(slots, sizes, tokens, counts, fold=False)  # one sort, into the base
            self._fold(merge=True)

    # --- building -----------------------------------------------------------------------------------

    def _valid(self, version: int, tokens: np.ndarray, slots: np.ndarray, tf: np.ndarray) -> tuple[np.ndarray, ...]:
        keep = self._ver[slots] == version
        return tokens[keep], slots[keep], tf[keep]

    def _parts(self, base: bool) -> list[tuple[np.ndarray, ...]]:
        """The live postings of the delta and the pending batches (and of the base if asked), as triples."""
        parts = [self._valid(_BASE, *self._base.triples())] if base else []
        parts.append(self._valid(_DELTA, *self._delta.triples()))
        parts += [self._valid(v, t, s, f) for v, t, s, f in self._pending]
        return parts

    def _fold(self, merge: bool = False) -> None:
        """Pending batches into the delta (O(delta)), or everything into one base when the delta outgrew it."""
        size = len(self._delta) + self._pending_postings
        merge = merge or (size > _MERGE_MIN and size * _MERGE_RATIO > len(self._base))
        merge = merge or self._masked[_BASE] * 4 > self._base_slots
        parts = self._parts(base=merge)
        built = _CSR.build(*(np.concatenate([p[i] for p in parts]) for i in range(3)))
        if merge:
            self._base, self._delta = built, _EMPTY
            self._ver[self._ver > _BASE] = _BASE
            self._masked[_BASE] = 0
            self._base_slots = int((self._ver == _BASE).sum())
        else:
            self._delta = built
            self._ver[self._ver > _DELTA] = _DELTA
        self._masked[_DELTA] = 0
        self._pending, self._pending_postings = [], 0

    def _ready(self) -> None:
        """Fold pending batches in and recount document frequencies where a removal could not."""
        if self._df_stale:
            tokens = np.concatenate([p[0] for p in self._parts(base=True)])
            self._df = np.bincount(tokens, minlength=len(self._df)).astype(np.int64)
            self._df_stale = False
        if self._pending or self._masked[_BASE] * 4 > self._base_slots:
            self._fold()

    # --- scoring ------------------------------------------------------------------------------------

    def scores(self, query: Sequence[int], size: int) -> np.ndarray:
        """BM25 score of every slot below ``size`` for query token ids (repeats count, as in bm25s), float32."""
        self._ready()
        out = np.zeros(max(size, len(self._ver)), np.float32)
        if self.live == 0:
            return out[:size]
        avgdl = np.float64(self.total) / self.live  # what np.mean of the document lengths gives bm25s
        k1, b = self.k1, self.b
        for token in query:
            df = int(self._df[token]) if token < len(self._df) else 0
            if df <= 0:
                continue
            # bm25s stores the idf as float32, computed in Python floats.
            idf = np.float32(math.log(1 + (self.live - df + 0.5) / (df + 0.5)))
            for csr, version in ((self._base, _BASE), (self._delta, _DELTA)):
                slots, tf = csr.of(token)
                if self._masked[version] and len(slots):
                    keep = self._ver[slots] == version
                    slots, tf = slots[keep], tf[keep]
                if not len(slots):
                    continue
                tfc = tf / (k1 * ((1 - b) + b * self._dl[slots] / avgdl) + tf)
                # Slots are unique within a token, so a plain fancy-index add equals bm25s's np.add.at.
                out[slots] += (idf * tfc).astype(np.float32)
        return out[:size]
