"""Evaluation metrics: retrieval, answer overlap, citations, refusals, cost.

Pure functions; every score (cost aside) is a float in [0, 1], so scores average and bootstrap alike. Retrieval and
citation metrics compare ids (a chunk's ``source`` against a case's ``sources``); a metric that needs gold
ids or reference answers raises ``ValueError`` when there are none, since a silent 0 or 1 would skew the
mean: unanswerable cases are scored by :func:`refusal_correct` instead.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Callable, Iterable, Sequence

from rag.types import Usage

CHAR_LANGS = frozenset({"ko"})

# --- retrieval -------------------------------------------------------------------------------------------


def _top_k(ranked: Sequence[str], k: int) -> list[str]:
    # Several chunks of one document map to the same id; only its best rank counts.
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    return list(dict.fromkeys(ranked))[:k]


def _gold_set(gold: Iterable[str]) -> frozenset[str]:
    gold_set = frozenset(gold)
    if not gold_set:
        raise ValueError("no gold ids: retrieval and citation metrics are undefined for this case")
    return gold_set


def hit_at_k(ranked: Sequence[str], gold: Iterable[str], k: int) -> float:
    """1.0 if any gold id is in the top k, else 0.0 (success@k, as in TREC / BEIR)."""
    gold_set = _gold_set(gold)
    return 1.0 if any(i in gold_set for i in _top_k(ranked, k)) else 0.0


def recall_at_k(ranked: Sequence[str], gold: Iterable[str], k: int) -> float:
    """Share of gold ids in the top k (pytrec_eval ``recall_k``, as reported by BEIR; not capped at k)."""
    gold_set = _gold_set(gold)
    return sum(1 for i in _top_k(ranked, k) if i in gold_set) / len(gold_set)


def mrr_at_k(ranked: Sequence[str], gold: Iterable[str], k: int) -> float:
    """Reciprocal rank of the first gold id in the top k, else 0.0 (Voorhees, TREC-8 QA track, 1999)."""
    gold_set = _gold_set(gold)
    for rank, i in enumerate(_top_k(ranked, k), 1):
        if i in gold_set:
            return 1.0 / rank
    return 0.0


def ndcg_at_k(ranked: Sequence[str], gold: Iterable[str], k: int) -> float:
    """Binary-relevance nDCG@k with a log2(rank + 1) discount (Järvelin & Kekäläinen 2002; BEIR's ``ndcg_cut``).

    The ideal ranking puts ``min(len(gold), k)`` gold ids first.
    """
    gold_set = _gold_set(gold)
    dcg = sum(1.0 / math.log2(rank + 1) for rank, i in enumerate(_top_k(ranked, k), 1) if i in gold_set)
    ideal = sum(1.0 / math.log2(rank + 1) for rank in range(1, min(len(gold_set), k) + 1))
    return dcg / ideal


# --- answers ---------------------------------------------------------------------------------------------

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
# KorQuAD v1 replaces these with a space before dropping ASCII punctuation.
_KORQUAD_SYMBOLS = re.compile("['\"《》<>〈〉()‘’]")


def normalize_squad(text: str) -> str:
    """SQuAD v1.1 ``normalize_answer``: lower-case, drop ASCII punctuation, drop a/an/the, collapse spaces."""
    text = "".join(c for c in text.lower() if c not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def normalize_korquad(text: str) -> str:
    """KorQuAD v1 ``normalize_answer``: quotes and CJK brackets to spaces, lower-case, drop punctuation, collapse.

    Unlike SQuAD it keeps articles.
    """
    text = _KORQUAD_SYMBOLS.sub(" ", text).lower()
    return " ".join("".join(c for c in text if c not in _PUNCTUATION).split())


def _require(references: Sequence[str]) -> Sequence[str]:
    if not references:
        raise ValueError("no reference answers: answer metrics are undefined for this case")
    return references


def _overlap_f1(pred: Sequence[str], ref: Sequence[str]) -> float:
    same = sum((Counter(pred) & Counter(ref)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


def _squad_tokens(text: str) -> list[str]:
    return normalize_squad(text).split()


def _korquad_chars(text: str) -> list[str]:
    # KorQuAD v1 f1_score: the characters of the normalised tokens, whitespace removed.
    return [c for token in normalize_korquad(text).split() for c in token]


def _best(score: Callable[[str], float], references: Sequence[str]) -> float:
    return max(score(ref) for ref in _require(references))


def exact_match(prediction: str, references: Sequence[str], lang: str = "en") -> float:
    """1.0 if the normalised prediction equals a normalised reference (SQuAD v1.1; KorQuAD v1 for Korean)."""
    normalize = normalize_korquad if lang in CHAR_LANGS else normalize_squad
    pred = normalize(prediction)
    return _best(lambda ref: float(pred == normalize(ref)), references)


def token_f1(prediction: str, references: Sequence[str]) -> float:
    """SQuAD v1.1 token F1: bag-of-tokens overlap after normalisation, max over references."""
    pred = _squad_tokens(prediction)
    return _best(lambda ref: _overlap_f1(pred, _squad_tokens(ref)), references)


def char_f1(prediction: str, references: Sequence[str]) -> float:
    """KorQuAD v1 F1: bag-of-characters overlap after KorQuAD normalisation, spaces removed, max over references."""
    pred = _korquad_chars(prediction)
    return _best(lambda ref: _overlap_f1(pred, _korquad_chars(ref)), references)


def answer_f1(prediction: str, references: Sequence[str], lang: str) -> float:
    """Character F1 (KorQuAD) for Korean, token F1 (SQuAD) otherwise."""
    return char_f1(prediction, references) if lang in CHAR_LANGS else token_f1(prediction, references)


def _lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    if len(a) < len(b):
        a, b = b, a
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b, 1):
            current.append(previous[j - 1] + 1 if x == y else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def rouge_l(prediction: str, references: Sequence[str], lang: str = "en") -> float:
    """ROUGE-L F1 (Lin 2004, LCS-based, beta = 1 as in google-research ``rouge-score``), max over references.

    Units are SQuAD-normalised tokens, or for Korean KorQuAD-normalised characters, so ROUGE-L and F1 see the
    same text; unlike ``rouge-score`` this drops articles (and keeps non-ASCII letters, which it deletes).
    """
    units = _korquad_chars if lang in CHAR_LANGS else _squad_tokens
    pred = units(prediction)

    def score(ref: str) -> float:
        ref_units = units(ref)
        lcs = _lcs_length(pred, ref_units)
        if lcs == 0:
            return 0.0
        precision, recall = lcs / len(pred), lcs / len(ref_units)
        return 2 * precision * recall / (precision + recall)

    return _best(score, references)


# --- citations -------------------------------------------------------------------------------------------


def citation_precision(cited: Iterable[str], gold: Iterable[str]) -> float:
    """Share of distinct cited source ids that are gold; 0.0 when nothing is cited (set precision)."""
    gold_set = _gold_set(gold)
    cited_set = set(cited)
    return len(cited_set & gold_set) / len(cited_set) if cited_set else 0.0


def citation_recall(cited: Iterable[str], gold: Iterable[str]) -> float:
    """Share of gold source ids that are cited (set recall)."""
    gold_set = _gold_set(gold)
    return len(set(cited) & gold_set) / len(gold_set)


# --- refusals --------------------------------------------------------------------------------------------

# Phrases matched as lower-cased substrings. The English ones cover rag.prompt's instruction ("say that you
# could not find it in the available documents") and common model paraphrases.
REFUSAL_PHRASES: tuple[str, ...] = (
    "could not find",
    "couldn't find",
    "cannot find",
    "can't find",
    "unable to find",
    "don't know",
    "do not know",
    "not in the documents",
    "not in the available documents",
    "not in the provided",
    "no information",
    "not enough information",
    "cannot answer",
    "can't answer",
    "unable to answer",
    "do not contain",
    "does not contain",
    "doesn't contain",
    "don't contain",
    "not mentioned",
    "찾을 수 없",
    "알 수 없",
    "모르겠",
    "정보가 없",
    "정보는 없",
    "답변할 수 없",
    "답할 수 없",
    "나와 있지 않",
    "포함되어 있지 않",
    "언급되어 있지 않",
    "확인할 수 없",
)


def is_refusal(answer_text: str) -> bool:
    """True if the answer contains one of :data:`REFUSAL_PHRASES` (case- and apostrophe-insensitive)."""
    text = " ".join(answer_text.lower().replace("\u2019", "'").split())
    return any(phrase in text for phrase in REFUSAL_PHRASES)


def refusal_correct(answer_text: str, unanswerable: bool) -> float:
    """1.0 if the answer refuses exactly when the case is unanswerable, by phrase matching.

    Limits: only English and Korean; a refusal in other words ("the sources are silent on this") counts as
    an answer, and an answer that quotes or hedges with a listed phrase ("I could not find the year, but the
    team was ...") counts as a refusal. Use it as a cheap screen and an LLM judge where it matters.
    """
    return 1.0 if is_refusal(answer_text) == unanswerable else 0.0


# --- cost ------------------------------------------------------------------------------------------------


def cost(usage: Usage, price_per_1m_in: float, price_per_1m_out: float) -> float:
    """Price of one call from its token usage and per-million-token prices (in the prices' currency)."""
    if price_per_1m_in < 0 or price_per_1m_out < 0:
        raise ValueError("prices cannot be negative")
    return (usage.prompt_tokens * price_per_1m_in + usage.completion_tokens * price_per_1m_out) / 1_000_000
