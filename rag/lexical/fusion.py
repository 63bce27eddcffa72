"""Reciprocal rank fusion: the one way rankings are combined (dense + BM25, title links, Korean BM25 + bigrams)."""

from __future__ import annotations

from collections.abc import Sequence

from rag.types import ScoredChunk

# Reciprocal-rank constant of the morpheme + bigram fusion for Korean queries (flat between 2 and 60).
LEXICAL_RRF_K = 5


def fuse(rankings: Sequence[tuple[float, Sequence[ScoredChunk]]], rrf_k: int = 60) -> list[ScoredChunk]:
    """Weighted reciprocal rank fusion: score = sum of weight / (rrf_k + rank), scaled so first everywhere is 1.

    Rankings with weight 0 are left out; rankings that returned nothing do not count in the scale, so an
    optional ranking (title links) leaves the scores alone when empty. Ties keep the order of first sight.
    """
    total: dict[str, float] = {}
    first: dict[str, ScoredChunk] = {}
    for weight, ranking in rankings:
        if weight <= 0:
            continue
        for rank, hit in enumerate(ranking, 1):
            total[hit.chunk.id] = total.get(hit.chunk.id, 0.0) + weight / (rrf_k + rank)
            first.setdefault(hit.chunk.id, hit)
    best = sum(w for w, r in rankings if w > 0 and r) / (rrf_k + 1)
    order = sorted(total, key=lambda i: -total[i])
    return [ScoredChunk(first[i].chunk, total[i] / best if best else 0.0) for i in order]


def fuse_lexical(rankings: Sequence[Sequence[ScoredChunk]], k: int) -> list[ScoredChunk]:
    """Equal-weight fusion of lexical rankings (a Korean query's morphemes and bigrams), top ``k``."""
    return fuse([(1.0, r) for r in rankings], LEXICAL_RRF_K)[:k]
