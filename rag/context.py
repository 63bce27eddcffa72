"""Context assembly (dedupe, MMR, neighbour chunks, token budget) and follow-up question rewriting."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace

from rag.lexical.tokens import bigram_tokens
from rag.types import Chunk, Message, ScoredChunk

# Follow-up markers: a question that leans on the previous turn for its subject.
_FOLLOWUP_EN = re.compile(
    r"\b(it|its|they|them|their|this|that|these|those|he|she|his|her|there|then|same|also|"
    r"what about|how about|and the|why not|more)\b",
    re.IGNORECASE,
)
_FOLLOWUP_KO = re.compile(
    r"(그것|그거|그건|이것|이거|이건|저것|저건|거기|그곳|그럼|그러면|그렇다면|그분|그들|그때|그리고|^그\s|^또\s)"
)
_SHORT_WORDS = 5


def estimate_tokens(text: str) -> int:
    """Rough token count: about 4 characters per token for ASCII, 1.5 for other scripts (Hangul)."""
    ascii_chars = sum(1 for c in text if c.isascii())
    return int(ascii_chars / 4 + (len(text) - ascii_chars) / 1.5) + 1


def similarity(a: Chunk, b: Chunk) -> float:
    """Jaccard similarity of two chunks' terms (words, Hangul bigrams)."""
    ta, tb = set(bigram_tokens(a.text)), set(bigram_tokens(b.text))
    if not ta or not tb:
        return 1.0 if a.text.strip() == b.text.strip() else 0.0
    return len(ta & tb) / len(ta | tb)


def select(hits: Sequence[ScoredChunk], k: int, dedupe: float = 0.8, mmr_lambda: float = 1.0) -> list[ScoredChunk]:
    """Up to ``k`` hits: near-duplicates of a better hit dropped; with ``mmr_lambda < 1``, MMR order.

    MMR picks, at each step, the hit maximising ``lambda * score - (1 - lambda) * max similarity to
    those already picked``, with scores scaled to [0, 1] by the best one.
    """
    pool = list(hits)
    chosen: list[ScoredChunk] = []
    top = max((h.score for h in pool), default=0.0) or 1.0
    while pool and len(chosen) < k:
        best_i, best_value = -1, float("-inf")
        for i, hit in enumerate(pool):
            sims = [similarity(hit.chunk, c.chunk) for c in chosen]
            if sims and max(sims) >= dedupe:
                continue
            value = hit.score / top
            if mmr_lambda < 1.0:
                value = mmr_lambda * value - (1 - mmr_lambda) * max(sims, default=0.0)
            if value > best_value:
                best_i, best_value = i, value
            if mmr_lambda >= 1.0:
                break  # relevance order: the first non-duplicate is the pick
        if best_i < 0:
            break
        chosen.append(pool.pop(best_i))
    return chosen


def cap_per_source(hits: Sequence[ScoredChunk], k: int, per_source: int) -> list[ScoredChunk]:
    """Up to ``k`` hits with at most ``per_source`` chunks of one document while other documents have hits.

    One huge file (a generated API reference) can own most candidates and so the whole top-k; the cap
    gives the other matching documents their place. It relaxes when few documents match: the slots
    the capped pass leaves empty are filled with the best remaining hits, after the capped ones
    (``per_source`` 0 = no cap).
    """
    if per_source <= 0:
        return list(hits[:k])
    chosen: list[ScoredChunk] = []
    rest: list[ScoredChunk] = []
    counts: Counter[str] = Counter()
    for hit in hits:
        if len(chosen) == k:
            break
        if counts[hit.chunk.source] < per_source:
            counts[hit.chunk.source] += 1
            chosen.append(hit)
        else:
            rest.append(hit)
    return chosen + rest[: k - len(chosen)]


def with_neighbors(hit: ScoredChunk, same_source: Sequence[Chunk], n: int) -> ScoredChunk:
    """The hit with up to ``n`` adjacent chunks of its document on each side merged into its text, in order."""
    if n <= 0:
        return hit
    idx = hit.chunk.index
    near = sorted(
        (c for c in same_source if c.source == hit.chunk.source and 0 < abs(c.index - idx) <= n),
        key=lambda c: c.index,
    )
    if not near:
        return hit
    before = [c.text.strip() for c in near if c.index < idx]
    after = [c.text.strip() for c in near if c.index > idx]
    text = "\n".join([*before, hit.chunk.text.strip(), *after])
    return replace(hit, chunk=replace(hit.chunk, text=text))


def fit_budget(hits: Sequence[ScoredChunk], max_tokens: int) -> list[ScoredChunk]:
    """Hits in order while they fit the token budget; the first is cut to fit if it alone is too long."""
    out: list[ScoredChunk] = []
    used = 0
    for hit in hits:
        cost = estimate_tokens(hit.chunk.text)
        if used + cost > max_tokens:
            if not out:
                keep = max(1, int(len(hit.chunk.text) * max_tokens / cost))
                out.append(replace(hit, chunk=replace(hit.chunk, text=hit.chunk.text[:keep])))
            break
        out.append(hit)
        used += cost
    return out


def is_followup(question: str) -> bool:
    """Whether a question probably needs the previous turn to be understood (short, or anaphoric)."""
    words = question.split()
    if len(words) <= _SHORT_WORDS - (1 if any("\uac00" <= c <= "\ud7a3" for c in question) else 0):
        return True
    return bool(_FOLLOWUP_EN.search(question) or _FOLLOWUP_KO.search(question))


def standalone_heuristic(question: str, history: Sequence[Message]) -> str:
    """A search query for a follow-up without an LLM: the previous user question prepended to this one."""
    previous = [m.content.strip() for m in history if m.role == "user" and m.content.strip()]
    if not previous or not is_followup(question):
        return question
    return f"{previous[-1]} {question}"


REWRITE_PROMPT = """Rewrite the user's last question as one standalone search query that can be understood \
without the conversation. Keep the question's language. Output only the rewritten question.

Conversation:
{history}

Last question: {question}
Standalone question:"""


def rewrite_messages(question: str, history: Sequence[Message]) -> tuple[Message, ...]:
    """The prompt asking an LLM for a standalone version of a follow-up question."""
    turns = "\n".join(f"{m.role}: {m.content.strip()[:1000]}" for m in history[-6:] if m.role in ("user", "assistant"))
    return (Message("user", REWRITE_PROMPT.format(history=turns, question=question)),)
