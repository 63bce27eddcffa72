"""The BM25 index for stores without a native one (memory, Chroma): bm25s over the chunks, persisted to one file.

It holds each chunk with its tokens, is updated by the store's upsert/delete, is rebuilt lazily on the first
search after a change, filters with the same semantics as the in-memory store *before* ranking (an ACL never
cuts a top-k afterwards), and persists to one JSON file written atomically.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
from collections.abc import Iterable, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from rag.lexical.fusion import fuse_lexical
from rag.lexical.tokens import bigram_tokens, hangul_fusion, lexical_text, make_tokenizer
from rag.types import Chunk, Filter, ScoredChunk, matches, matches_nothing

log = logging.getLogger(__name__)

# BM25 parameters used by every backend (bm25s, Milvus index params). b chosen on the benchmark's dev half
# of every set (docs/benchmarks/retrieval.md): 0.6 over 0.4 lifts Korean and HotpotQA, costs XQuAD/MuSiQue little.
BM25_K1 = 0.9
BM25_B = 0.6
_FORMAT = 3  # 2: kiwi leaves text without Hangul to the bigram tokeniser; 3: kiwi adds noun compounds
# Filter masks kept per index (one per distinct caller ACL / filter, oldest dropped first).
_MASK_CACHE = 64


class LexicalIndex:
    """BM25 over chunks held in this process (bm25s), optionally persisted to one JSON file."""

    def __init__(self, tokenizer: str, path: Path | None = None) -> None:
        self.tokenizer_name = tokenizer
        self.tokenize = make_tokenizer(tokenizer)
        self.path = path
        self._docs: dict[str, tuple[Chunk, list[str]]] = {}
        self._model: Any = None
        self._bigram: Any = None  # built on the first Korean query of a kiwi index (see hangul_fusion)
        self._order: list[str] = []
        self._dirty = False
        self._masks: dict[tuple[Any, ...], np.ndarray] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._docs)

    def ids(self) -> set[str]:
        """Ids of every indexed chunk."""
        return set(self._docs)

    def upsert(self, chunks: Sequence[Chunk]) -> None:
        """Index or re-index chunks by id."""
        with self._lock:
            for c in chunks:
                self._docs[c.id] = (c, self.tokenize(lexical_text(c)))
            self._changed()

    def delete(self, ids: Iterable[str]) -> None:
        """Forget chunks by id; unknown ids are ignored."""
        with self._lock:
            for i in ids:
                self._docs.pop(i, None)
            self._changed()

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._docs.clear()
            self._changed()

    def _changed(self) -> None:
        self._model = None
        self._bigram = None
        self._masks.clear()
        self._dirty = True

    def _mask(self, flt: Filter, order: list[str]) -> np.ndarray:
        """Which indexed chunks the filter admits; cached per filter until the next change (callers' ACLs repeat)."""
        key = (flt.groups, flt.sources, tuple(sorted(flt.where.items())))
        mask = self._masks.get(key)
        if mask is None:
            docs = self._docs
            mask = np.fromiter((matches(docs[i][0], flt) for i in order), dtype=bool, count=len(order))
            if len(self._masks) >= _MASK_CACHE:
                self._masks.pop(next(iter(self._masks)))
            self._masks[key] = mask
        return mask

    def _built(self) -> tuple[Any, list[str]]:
        if self._model is None:
            import bm25s

            # bm25s sets its own logger to DEBUG, which would print through any root handler.
            logging.getLogger("bm25s").setLevel(logging.WARNING)
            order = list(self._docs)
            model = bm25s.BM25(k1=BM25_K1, b=BM25_B)
            if order:
                # An empty token list would break bm25s; the empty token it adds scores nothing.
                model.index([self._docs[i][1] or [""] for i in order], show_progress=False)
            self._model, self._order, self._bigram = model, order, None
        return self._model, self._order

    def _bigram_built(self, order: list[str]) -> Any:
        """BM25 over character bigrams of the same chunks in the same order (not persisted: cheap to derive)."""
        if self._bigram is None:
            import bm25s

            model = bm25s.BM25(k1=BM25_K1, b=BM25_B)
            model.index([bigram_tokens(lexical_text(self._docs[i][0])) or [""] for i in order], show_progress=False)
            self._bigram = model
        return self._bigram

    def search(self, query: str, k: int, flt: Filter | None = None) -> list[ScoredChunk]:
        """Top-k chunks by BM25 among those the filter admits; chunks sharing no token are left out."""
        tokens = self.tokenize(query)
        if not tokens or matches_nothing(flt):
            return []
        with self._lock:
            model, order = self._built()
            if not order:
                return []
            hits = self._ranked(model, order, tokens, k, flt)
            if hangul_fusion(self.tokenizer_name, query):
                bigrams = self._ranked(self._bigram_built(order), order, bigram_tokens(query), k, flt)
                hits = fuse_lexical([hits, bigrams], k)
            return hits

    def _ranked(self, model: Any, order: list[str], tokens: list[str], k: int, flt: Filter | None) -> list[ScoredChunk]:
        ids = model.get_tokens_ids(tokens)
        if not ids:
            return []
        scores = np.asarray(model.get_scores_from_ids(ids), dtype=np.float64)
        if flt is not None:
            scores = np.where(self._mask(flt, order), scores, 0.0)
        n = int((scores > 0).sum())
        if n == 0:
            return []
        top = np.argsort(-scores, kind="stable")[: min(k, n)]
        return [ScoredChunk(self._docs[order[i]][0], float(scores[i])) for i in top]

    # --- persistence -------------------------------------------------------------------------------

    def save(self) -> None:
        """Write the index to its file (atomically) if it changed since the last save."""
        if self.path is None or not self._dirty:
            return
        with self._lock:
            payload = {
                "format": _FORMAT,
                "tokenizer": self.tokenizer_name,
                "docs": [{"chunk": asdict(c), "tokens": t} for c, t in self._docs.values()],
            }
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # A unique temporary name: store objects of one process (or service replicas sharing data_dir)
            # may save the same index at once; each replace installs one whole file.
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f"{self.path.name}.", suffix=".tmp")
            try:
                os.fchmod(fd, 0o644)  # as a plainly written file, not mkstemp's owner-only mode
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    json.dump(payload, f, ensure_ascii=False)
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            self._dirty = False
        log.info("saved lexical index of %d chunks to %s", len(self._docs), self.path)

    def load(self) -> bool:
        """Read the file if it exists and was built with this tokeniser; False when there was nothing usable."""
        if self.path is None or not self.path.is_file():
            return False
        try:
            payload = json.loads(self.path.read_text(encoding="utf-8"))
            if payload.get("format") != _FORMAT or payload.get("tokenizer") != self.tokenizer_name:
                log.info("lexical index %s was built differently; rebuilding it", self.path)
                return False
            docs = {}
            for row in payload["docs"]:
                raw = dict(row["chunk"])
                raw["groups"] = tuple(raw.get("groups") or ())
                chunk = Chunk(**raw)
                docs[chunk.id] = (chunk, [str(t) for t in row["tokens"]])
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.warning("lexical index %s is unreadable (%s); rebuilding it from the store", self.path, e)
            return False
        with self._lock:
            self._docs = docs
            self._model = None
            self._bigram = None
            self._masks.clear()
            self._dirty = False
        return True

    def stale(self, stored: Iterable[Chunk]) -> list[str]:
        """Ids of stored chunks (read without their text) that the index lacks or holds with other metadata.

        Chunk ids come from the text, so a same-id chunk differs only in its metadata: groups changed
        without re-embedding, a new title or section (which the index reads too), a newer mtime.
        """
        out = []
        for chunk in stored:
            mine = self._docs.get(chunk.id)
            if mine is None or replace(mine[0], text="") != replace(chunk, text=""):
                out.append(chunk.id)
        return out

    def missing_and_extra(self, store_ids: Iterable[str]) -> tuple[list[str], list[str]]:
        """Ids the store has and the index lacks, and ids the index has that the store no longer holds."""
        have = set(store_ids)
        mine = set(self._docs)
        return sorted(have - mine), sorted(mine - have)
