"""The no-LLM answerer: quotes the source sentences that best match the question, each with its ``[n]``.

It makes the offline default useful without a model: deterministic, instant, and never says
anything the documents do not. Sentences are scored against the question lexically: IDF-weighted
overlap of word tokens plus Hangul/CJK character bigrams (so Korean works without a morphological
analyser, ``휴가는`` still meeting ``휴가를``), with stopwords and verb endings ignored.
``extractive://`` takes no parameters. It honours ``stop`` (the answer ends before the first stop
sequence) and ``max_tokens`` (counted in words, the unit of its usage figures; ``finish_reason``
is ``length`` when the answer is cut); ``seed`` changes nothing, as the answer is deterministic.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rag.lang import detect_lang
from rag.lexical.tokens import sentence_terms
from rag.types import ChatRequest, Delta, ScoredChunk, Usage

if TYPE_CHECKING:
    from rag.config import Settings
    from rag.registry import BackendURL

NOT_FOUND = {
    "en": "I could not find this in the available documents.",
    "ko": "제공된 문서에서 답을 찾을 수 없습니다.",
}
MAX_SENTENCES = 3
# A further sentence must score at least this share of the best one.
RELATIVE_FLOOR = 0.5
# The best sentence must cover at least this share of the question's (IDF-weighted) terms.
MIN_COVERAGE = 0.15
# Sentences sharing more than this share of their terms count as near-duplicates.
DUPLICATE_JACCARD = 0.7
BIGRAM_WEIGHT = 0.5


_HEADING = re.compile(r"^\s*(#{1,6}\s+|={3,}|-{3,}\s*$)")
# "header: value; header: value" lines, the form ingestion gives table rows (Markdown, XLSX, CSV).
_TABLE_ROW = re.compile(r"^[^:;]{1,60}: [^;]*(?:; [^:;]{1,60}: [^;]*)+$")
_BULLET = re.compile(r"^\s*(?:[-*+•·▪◦‣]|\(?\d{1,3}[.)]|\(?[a-zA-Z가-힣][.)])\s+")
# A sentence ends at . ! ? or their full-width forms, followed by space, unless the dot closes an
# abbreviation or an initial; Korean sentences end the same way ("...합니다. 다음...").
_SENT_END = re.compile(r"(?<=[.!?。！？])[\"')\]’”]*\s+")
_ABBREVIATIONS = frozenset(
    [
        "e.g",
        "i.e",
        "etc",
        "vs",
        "mr",
        "mrs",
        "ms",
        "dr",
        "prof",
        "no",
        "fig",
        "cf",
        "approx",
        "inc",
        "ltd",
        "st",
        "jr",
        "sr",
    ]
)


@dataclass(frozen=True)
class Sentence:
    """One candidate sentence: its text, the 1-based source it came from, and its terms."""

    text: str
    source: int
    position: int
    words: frozenset[str]
    bigrams: frozenset[str]


def _is_heading(line: str, next_line: str | None) -> bool:
    if _HEADING.match(line):
        return True
    # A setext heading: the line under it is === or ---.
    return next_line is not None and re.fullmatch(r"\s*(=+|-+)\s*", next_line) is not None and bool(line.strip())


def _split_paragraph(text: str) -> list[str]:
    """Split running text at sentence ends, keeping abbreviations and initials together."""
    out: list[str] = []
    start = 0
    for m in _SENT_END.finditer(text):
        before = text[start : m.start()].rstrip("\"')]’”")
        last = before.split()[-1].lower().rstrip(".!?。！？") if before.split() else ""
        if before.endswith(".") and (last in _ABBREVIATIONS or (len(last) == 1 and last.isalpha())):
            continue
        out.append(text[start : m.start()].strip())
        start = m.end()
    out.append(text[start:].strip())
    return [s for s in out if s]


def split_sentences(text: str) -> list[str]:
    """Sentences of a passage; headings are dropped, each bullet line stands alone, lines wrap."""
    lines = text.splitlines()
    sentences: list[str] = []
    paragraph: list[str] = []

    def flush() -> None:
        if paragraph:
            sentences.extend(_split_paragraph(" ".join(paragraph)))
            paragraph.clear()

    for i, line in enumerate(lines):
        nxt = lines[i + 1] if i + 1 < len(lines) else None
        stripped = line.strip()
        if not stripped or re.fullmatch(r"(=+|-+|\*+|_+)", stripped) or _is_heading(line, nxt):
            flush()
        elif _BULLET.match(line):
            flush()
            paragraph.append(_BULLET.sub("", line, count=1).strip())
            flush()
        elif _TABLE_ROW.match(stripped):
            # A table row as ingestion writes it ("Queue: batch; Max run time: 72 hours"): one line, one fact.
            flush()
            sentences.append(stripped)
        elif stripped.startswith("|"):
            flush()
            cells = [c.strip() for c in stripped.strip("|").split("|") if c.strip(" -:")]
            if cells:
                sentences.append(" | ".join(cells))
        else:
            paragraph.append(stripped)
    flush()
    return sentences


def candidates(sources: Sequence[ScoredChunk]) -> list[Sentence]:
    """Every sentence of every source, numbered by source position (1-based)."""
    out = []
    for n, hit in enumerate(sources, start=1):
        for pos, text in enumerate(split_sentences(hit.chunk.text)):
            words, bigrams = sentence_terms(text)
            if words or bigrams:
                out.append(Sentence(text, n, pos, words, bigrams))
    return out


def _idf(df: int, n: int) -> float:
    return math.log(1.0 + (n - df + 0.5) / (df + 0.5))


def select(question: str, sentences: Sequence[Sentence]) -> list[Sentence]:
    """The best 1-3 non-duplicate sentences for the question, best first; empty when none fits."""
    q_words, q_bigrams = sentence_terms(question)
    if not sentences or not (q_words or q_bigrams):
        return []
    n = len(sentences)
    weight: dict[tuple[str, str], float] = {}
    for kind, feats, scale in (("w", q_words, 1.0), ("b", q_bigrams, BIGRAM_WEIGHT)):
        for f in feats:
            df = sum(1 for s in sentences if f in (s.words if kind == "w" else s.bigrams))
            weight[(kind, f)] = scale * _idf(df, n)
    total = sum(weight.values())
    scored: list[tuple[float, Sentence]] = []
    for s in sentences:
        matched = sum(w for (kind, f), w in weight.items() if f in (s.words if kind == "w" else s.bigrams))
        if matched <= 0:
            continue
        coverage = matched / total
        # A mild length penalty: long sentences match more terms by chance.
        size = len(s.words) + len(s.bigrams) / 2
        scored.append((coverage / max(1.0, size / 12) ** 0.3, s))
    if not scored:
        return []
    scored.sort(key=lambda x: (-x[0], x[1].source, x[1].position))
    best_score, best = scored[0]
    best_coverage = (
        sum(w for (kind, f), w in weight.items() if f in (best.words if kind == "w" else best.bigrams)) / total
    )
    if best_coverage < MIN_COVERAGE:
        return []
    chosen = [best]
    for score, s in scored[1:]:
        if len(chosen) == MAX_SENTENCES or score < RELATIVE_FLOOR * best_score:
            break
        if not any(_similar(s, c) for c in chosen):
            chosen.append(s)
    return chosen


def _similar(a: Sentence, b: Sentence) -> bool:
    fa, fb = a.words | a.bigrams, b.words | b.bigrams
    union = fa | fb
    return bool(union) and len(fa & fb) / len(union) > DUPLICATE_JACCARD


def cite(sentence: Sentence) -> str:
    """The sentence with its marker before the closing punctuation: ``... 30 days [1].``."""
    text = sentence.text.rstrip()
    m = re.search(r"[.!?。！？]+[\"')\]’”]*$", text)
    if m:
        return f"{text[: m.start()].rstrip()} [{sentence.source}]{text[m.start() :]}"
    return f"{text} [{sentence.source}]"


def limit(text: str, max_tokens: int | None, stop: Sequence[str]) -> tuple[str, str]:
    """``text`` cut before the first stop sequence and to ``max_tokens`` words, with the finish reason."""
    cuts = [i for i in (text.find(s) for s in stop if s) if i >= 0]
    if cuts:
        text = text[: min(cuts)]
    words = text.split(" ")
    if max_tokens is not None and len([w for w in words if w]) > max_tokens:
        kept: list[str] = []
        count = 0
        for w in words:
            if w:
                if count == max_tokens:
                    break
                count += 1
            kept.append(w)
        return " ".join(kept).rstrip(), "length"
    return text, "stop"


def answer(question: str, sources: Sequence[ScoredChunk]) -> str:
    """The whole extractive answer (or the 'could not find' sentence in the question's language)."""
    chosen = select(question, candidates(sources))
    if not chosen:
        return NOT_FOUND[detect_lang(question)]
    return " ".join(cite(s) for s in chosen)


class ExtractiveChat:
    """Answers by quoting the best-matching source sentences with their ``[n]`` markers; no model."""

    @property
    def name(self) -> str:
        """``extractive://``."""
        return "extractive://"

    async def stream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        """Stream the extractive answer word by word; the last delta says ``stop`` (or ``length`` when cut)."""
        question = request.question or next((m.content for m in reversed(request.messages) if m.role == "user"), "")
        text, finish = limit(answer(question, request.sources), request.params.max_tokens, request.params.stop)
        words = text.split(" ") if text else []
        for i, word in enumerate(words):
            yield Delta(text=word if i == len(words) - 1 else word + " ")
            await asyncio.sleep(0)
        prompt = sum(len(m.content.split()) for m in request.messages) or len(question.split())
        yield Delta(finish_reason=finish, usage=Usage(prompt_tokens=prompt, completion_tokens=len(text.split())))

    async def health(self) -> bool:
        """Always healthy: nothing to reach."""
        return True

    async def close(self) -> None:
        """Nothing to release."""


def from_url(url: BackendURL, settings: Settings) -> ExtractiveChat:
    """``extractive://``."""
    return ExtractiveChat()
