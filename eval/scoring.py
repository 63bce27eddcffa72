"""Per-item scores: which metrics apply to a case, computed from its answer, citations and retrieval.

Metric names are fixed strings (retrieval ones carry their cutoff: ``hit@5``). A metric that is undefined
for a case (no gold sources, no reference answer) is left out of the item, not scored 0 or 1.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from eval.dataset import Case
from eval.metrics import (
    answer_f1,
    citation_precision,
    citation_recall,
    exact_match,
    hit_at_k,
    mrr_at_k,
    ndcg_at_k,
    recall_at_k,
    refusal_correct,
    rouge_l,
)
from rag.seams import Embedder

# Citation markers are the pipeline's, not the answer's words; they must not cost EM or F1.
_MARKER = re.compile(r"\s*\[\d+(?:\s*,\s*\d+)*\]")

ANSWER_METRICS = ("em", "f1", "rouge_l", "similarity")
CITATION_METRICS = ("citation_precision", "citation_recall")
JUDGE_METRICS = ("faithfulness", "relevance")
LATENCY_FIELDS = ("ttft_ms", "total_ms")


def retrieval_metric_names(k: int) -> tuple[str, ...]:
    """The retrieval metrics at cutoff k."""
    return (f"hit@{k}", f"recall@{k}", f"mrr@{k}", f"ndcg@{k}")


def quality_metric_names(k: int) -> tuple[str, ...]:
    """Every higher-is-better metric, in report order."""
    return (*retrieval_metric_names(k), *ANSWER_METRICS, *CITATION_METRICS, "refusal", *JUDGE_METRICS)


def strip_markers(text: str) -> str:
    """The answer without its ``[n]`` citation markers."""
    return " ".join(_MARKER.sub("", text).split())


def retrieval_scores(case: Case, retrieved: Sequence[str], k: int) -> dict[str, float]:
    """hit, recall, MRR and nDCG at k against the case's gold sources (nothing when it has none)."""
    if not case.sources:
        return {}
    names = retrieval_metric_names(k)
    return {
        names[0]: hit_at_k(retrieved, case.sources, k),
        names[1]: recall_at_k(retrieved, case.sources, k),
        names[2]: mrr_at_k(retrieved, case.sources, k),
        names[3]: ndcg_at_k(retrieved, case.sources, k),
    }


def answer_scores(case: Case, answer: str, cited: Sequence[str]) -> dict[str, float]:
    """Answer, citation and refusal scores (similarity is added separately: it needs the embedder)."""
    text = strip_markers(answer)
    scores = {"refusal": refusal_correct(text, case.unanswerable)}
    if case.answers and not case.unanswerable:
        scores["em"] = exact_match(text, case.answers, case.lang)
        scores["f1"] = answer_f1(text, case.answers, case.lang)
        scores["rouge_l"] = rouge_l(text, case.answers, case.lang)
    if case.sources and not case.unanswerable:
        scores["citation_precision"] = citation_precision(cited, case.sources)
        scores["citation_recall"] = citation_recall(cited, case.sources)
    return scores


async def similarity(embedder: Embedder, answer: str, references: Sequence[str]) -> float:
    """Cosine similarity of the answer's embedding to the closest reference's (embeddings are unit length)."""
    vectors = await embedder.embed_documents([strip_markers(answer) or answer, *references])
    sims = np.asarray(vectors[1:]) @ np.asarray(vectors[0])
    return float(np.clip(sims.max(), -1.0, 1.0))
