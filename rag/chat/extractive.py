"""The no-LLM answerer: quotes the source sentences that best match the question, each with its ``[n]``.

It makes the offline default useful without a model: deterministic, instant, and never says
anything the documents do not. Sentences are scored against the question lexically: IDF-weighted
overlap of word tokens plus Hangul/CJK character bigrams (so Korean sentences need no morphological
analysis, ``휴가는`` still meeting ``휴가를``), with stopwords and verb endings ignored; a Korean question's
bigrams are those of its content morphemes (``rag.lexical.tokens.question_terms``). Only question terms
some sentence holds weigh in the coverage a sentence needs, and a sentence's score falls mildly with its
source's rank (the retriever's order is evidence too). The weights were chosen on the dev halves of the
refusal benchmark (docs/benchmarks/refusal.md).
``extractive://`` takes no parameters. It honours ``stop`` (the answer ends before the first stop
sequence) and ``max_tokens`` (counted in words, the unit of its usage figures; ``finish_reason``
is ``length`` when the answer is cut); ``seed`` changes nothing, as the answer is deterministic.
"""

from __future__ import annotations

import asyncio
import html
import math
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rag.lang import detect_lang
from rag.lexical.tokens import question_terms, sentence_terms
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
# A quoted sentence must cover at least this share of the question's (IDF-weighted) terms.
MIN_COVERAGE = 0.15
# Sentences sharing more than this share of their terms count as near-duplicates.
DUPLICATE_JACCARD = 0.7
BIGRAM_WEIGHT = 0.5
# A sentence of the n-th source scores 1 / (1 + RANK_PRIOR * (n - 1)) of what the same sentence would first.
RANK_PRIOR = 0.2


_SPACES = re.compile(r"\s+")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([,.;:!?)\]])")
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
class Piece:
    """One quotable unit of a passage, cleaned to plain text: a sentence, a table row, or a code block."""

    text: str
    code: bool = False
    # Cut off at the chunk's start (mid-sentence), or a list-item stub: never quoted.
    stub: bool = False


@dataclass(frozen=True)
class Sentence:
    """One candidate sentence: its text, the 1-based source it came from, and its terms."""

    text: str
    source: int
    position: int
    words: frozenset[str]
    bigrams: frozenset[str]
    code: bool = False


_FENCE = re.compile(r"^\s*(```|~~~)")
_HTML_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_HTML_NAMES = (
    "a|abbr|article|aside|audio|b|blockquote|br|button|caption|center|cite|code|col|colgroup|dd|del|details|div|"
    "dl|dt|em|figcaption|figure|font|footer|h[1-6]|header|hr|i|iframe|img|input|ins|kbd|label|li|link|main|mark|"
    "meta|nav|ol|p|path|picture|pre|q|s|samp|script|section|small|source|span|strong|style|sub|summary|sup|svg|"
    "table|tbody|td|tfoot|th|thead|time|tr|tt|u|ul|var|video|wbr"
)
# Only real HTML tag names: ``<namespace>`` in a path or ``<T>`` in a signature is text, not markup.
_HTML_TAG = re.compile(rf"</?(?:{_HTML_NAMES})(?:\s[^<>]*)?/?>", re.IGNORECASE)
_MD_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_MD_LINK = re.compile(r"\[([^\]]+)\](?:\([^)]*\)|\[[^\]]*\])")
_HEADING_ATTR = re.compile(r"\s*\{#[^}]*\}")
_STRONG = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1")
_EMPHASIS = re.compile(
    r"(?<![\w*\\])\*(?=[^\s*])(.+?)(?<=[^\s*])\*(?![\w*])|(?<![\w\\])_(?=[^\s_])(.+?)(?<=[^\s_])_(?!\w)"
)
_STRIKE = re.compile(r"~~(?=\S)(.+?)(?<=\S)~~")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1")
_GENERIC_HEADER = re.compile(r"^column \d+$", re.IGNORECASE)
# Code-like prose lines: JSON/YAML/shell/program text that slipped outside a fence.
_CODE_LINE = re.compile(
    r"^\s*(?:[{}\[\]]|\"[^\"]+\"\s*:|\$ |>>> |(?:def|class|import|from|return|const|let|var|function)\s|#!|//)"
    r"|[;{]\s*$|\)\s*\{|=>|\b\w+\([^)]*\)\s*;"
    # A YAML line: a lower-case key without spaces and at most one value token ("apiVersion: v1", "spec:").
    r"|^\s*-?\s*[a-z][A-Za-z0-9_.-]*:(?:\s+[^\s;]+)?\s*$"
)
_CODE_CHARS = frozenset('{}[]()<>=;"`$|\\')
# Questions that ask for code, a command or a configuration snippet.
_ASKS_CODE = re.compile(
    r"\b(code|command|commands|cli|snippet|example|examples|syntax|script|shell|terminal|install|"
    r"yaml|json|manifest|config file|kubectl|helm|pip|curl|function|decorator|import)\b"
    r"|코드|명령|예제|예시|스크립트|설치",
    re.IGNORECASE,
)


def asks_for_code(question: str) -> bool:
    """Whether a question asks for code, a command or a configuration snippet."""
    return bool(_ASKS_CODE.search(question))


def clean_inline(text: str) -> str:
    """Plain text of one line: HTML tags, comments and entities, Markdown links, images, emphasis, code spans gone."""
    spans: list[str] = []

    def keep(m: re.Match[str]) -> str:
        spans.append(m.group(2).strip())
        return f"\x00{len(spans) - 1}\x00"

    # Code spans are set aside first, so their content keeps its underscores, stars and angle brackets.
    text = _CODE_SPAN.sub(keep, text)
    text = _HTML_COMMENT.sub(" ", text)
    text = _HTML_TAG.sub(" ", text)
    text = _MD_IMAGE.sub(r"\1", text)
    text = _MD_LINK.sub(r"\1", text)
    text = _HEADING_ATTR.sub("", text)
    for _ in range(2):  # nested emphasis: ***x***, **_x_**
        text = _STRONG.sub(r"\2", text)
        text = _EMPHASIS.sub(lambda m: m.group(1) or m.group(2), text)
        text = _STRIKE.sub(r"\1", text)
    text = html.unescape(text)
    text = re.sub("\x00(\\d+)\x00", lambda m: spans[int(m.group(1))], text)
    return _SPACE_BEFORE_PUNCT.sub(r"\1", _SPACES.sub(" ", text)).strip()


def looks_like_code(text: str) -> bool:
    """Whether a line reads as code or data (JSON, YAML keys, shell, program text) rather than prose."""
    stripped = text.strip()
    if not stripped:
        return False
    if _CODE_LINE.search(stripped):
        return True
    symbols = sum(1 for c in stripped if c in _CODE_CHARS)
    return symbols / len(stripped) > 0.12


def table_row(cells: Sequence[tuple[str, str]]) -> str:
    """A table row as a sentence: ``Scope: cluster-scoped`` for two cells, ``h: v; h: v`` otherwise.

    ``cells`` are (header, value) pairs; a generic header (``column 2``, what ingestion writes for a table
    without one) or an empty one is left out, so a key/value row reads as ``key: value``.
    """
    pairs = [(clean_inline(h), clean_inline(v)) for h, v in cells]
    pairs = [(h, v) for h, v in pairs if v]
    if not pairs:
        return ""
    named = [(h, v) for h, v in pairs if h and not _GENERIC_HEADER.match(h)]
    if len(named) < len(pairs):
        values = [v for _, v in pairs]
        if len(values) == 2:
            return f"{values[0].rstrip(':')}: {values[1]}"
        return "; ".join(f"{h}: {v}" if h and not _GENERIC_HEADER.match(h) else v for h, v in pairs)
    return "; ".join(f"{h}: {v}" for h, v in pairs)


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


_PLAIN_PIPE_ROW = re.compile(r"^[^|`]+(?: \| [^|`]*)+$")
_TABLE_RULE = re.compile(r"^\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?$")
_MIN_WORDS = 3


def _is_stub(text: str) -> bool:
    """A list-item stub or a lead-in: too few words to state anything, or ending in a colon."""
    if text.rstrip().endswith(":"):
        return True
    words = re.findall(r"\w+", text)
    return len(words) < (2 if any("\uac00" <= c <= "\ud7a3" for c in text) else _MIN_WORDS)


def _starts_mid_sentence(text: str) -> bool:
    """Whether a chunk opens inside a sentence (a lower-case word or closing punctuation first)."""
    first = text.lstrip()[:1]
    return bool(first) and (first.islower() or first in ",;:)]}.!?")


def pieces(text: str) -> list[Piece]:
    """Quotable units of a passage: prose split into sentences, each bullet and table row alone, code kept whole.

    Headings are dropped, wrapped lines are joined, markup is removed; a first sentence that starts
    mid-sentence (the chunk boundary cut it) and list-item stubs are marked ``stub``.
    """
    lines = text.splitlines()
    out: list[Piece] = []
    paragraph: list[str] = []
    code: list[str] = []
    header: list[str] = []
    in_fence = False

    def flush() -> None:
        if paragraph:
            joined = " ".join(paragraph)
            first = not out
            for i, sentence in enumerate(_split_paragraph(clean_inline(joined))):
                cut = i == 0 and first and _starts_mid_sentence(joined)
                is_code = looks_like_code(sentence)
                out.append(Piece(sentence, code=is_code, stub=cut or (not is_code and _is_stub(sentence))))
            paragraph.clear()

    loose = False  # the previous line was a code line outside a fence
    row_run = False  # the previous line was an "a | b" table row
    for i, line in enumerate(lines):
        nxt = lines[i + 1] if i + 1 < len(lines) else None
        stripped = line.strip()
        was_loose, loose = loose, False
        was_row, row_run = row_run, False
        if _FENCE.match(line):
            flush()
            if in_fence and code:
                out.append(Piece("\n".join(code).strip("\n"), code=True))
            code.clear()
            in_fence = not in_fence
        elif in_fence:
            code.append(line.rstrip())
        elif (
            not stripped
            or re.fullmatch(r"(=+|-+|\*+|_+)", stripped)
            or _is_heading(line, nxt)
            or _TABLE_RULE.match(stripped)
        ):
            flush()
        elif stripped.startswith("|"):
            flush()
            cells = [c.strip() for c in stripped.strip("|").split("|")]
            if nxt is not None and _TABLE_RULE.match(nxt.strip()):
                header = cells  # the header row names the columns; it states nothing itself
                continue
            named = [(header[j] if j < len(header) else "", c) for j, c in enumerate(cells)]
            row = table_row(named)
            if row:
                out.append(Piece(row))
        elif _PLAIN_PIPE_ROW.match(stripped):
            # "a | b | c" rows (DOCX and PPTX tables): the first row of a run names the columns.
            flush()
            cells = [c.strip() for c in stripped.split(" | ")]
            if not was_row:
                header = cells
            else:
                row = table_row([(header[j] if j < len(header) else "", c) for j, c in enumerate(cells)])
                if row:
                    out.append(Piece(row))
            row_run = True
        elif _TABLE_ROW.match(stripped):
            # A table row as ingestion writes it ("Queue: batch; Max run time: 72 hours"): one line, one fact.
            flush()
            pairs = [tuple(cell.split(": ", 1)) if ": " in cell else ("", cell) for cell in stripped.split("; ")]
            row = table_row([(p[0], p[-1]) for p in pairs])
            if row:
                out.append(Piece(row))
        elif _BULLET.match(line):
            flush()
            item = clean_inline(_BULLET.sub("", line, count=1).strip())
            if item:
                out.append(Piece(item, code=looks_like_code(item), stub=_is_stub(item)))
        elif looks_like_code(stripped):
            flush()
            if out and out[-1].code and was_loose:
                out[-1] = Piece(f"{out[-1].text}\n{line.rstrip()}", code=True)  # consecutive code lines: one block
            else:
                out.append(Piece(line.rstrip(), code=True))
            loose = True
            continue
        else:
            paragraph.append(stripped)
    flush()
    if code:  # an unclosed fence (the chunk ends inside it)
        out.append(Piece("\n".join(code).strip("\n"), code=True))
    return out


def split_sentences(text: str) -> list[str]:
    """Plain-text sentences of a passage (code blocks and stubs left out); see :func:`pieces`."""
    return [p.text for p in pieces(text) if not p.code and not p.stub]


def candidates(sources: Sequence[ScoredChunk], with_code: bool = False) -> list[Sentence]:
    """Every quotable sentence of every source, numbered by source position (1-based); code only if asked."""
    out = []
    for n, hit in enumerate(sources, start=1):
        for pos, piece in enumerate(pieces(hit.chunk.text)):
            if piece.stub or (piece.code and not with_code):
                continue
            words, bigrams = sentence_terms(piece.text)
            if words or bigrams:
                out.append(Sentence(piece.text, n, pos, words, bigrams, piece.code))
    return out


def _idf(df: int, n: int) -> float:
    return math.log(1.0 + (n - df + 0.5) / (df + 0.5))


def select(question: str, sentences: Sequence[Sentence], morphemes: bool = True) -> list[Sentence]:
    """The best 1-3 non-duplicate sentences for the question, best first; empty when none fits.

    ``morphemes``: a Korean question's bigrams come from its content morphemes (:func:`question_terms`).
    """
    q_words, q_bigrams = question_terms(question, morphemes)
    if not sentences or not (q_words or q_bigrams):
        return []
    n = len(sentences)
    weight: dict[tuple[str, str], float] = {}
    for kind, feats, scale in (("w", q_words, 1.0), ("b", q_bigrams, BIGRAM_WEIGHT)):
        for f in feats:
            df = sum(1 for s in sentences if f in (s.words if kind == "w" else s.bigrams))
            # A term no sentence holds cannot tell sentences apart; counted, it would only make every
            # sentence's share of the question smaller ("another term for rotors": "another", "term").
            if df:
                weight[(kind, f)] = scale * _idf(df, n)
    if not weight:
        return []
    total = sum(weight.values())
    family = {kind: sum(w for (k, _), w in weight.items() if k == kind) for kind in ("w", "b")}
    scored: list[tuple[float, Sentence]] = []
    for s in sentences:
        hits = {(kind, f): w for (kind, f), w in weight.items() if f in (s.words if kind == "w" else s.bigrams)}
        matched = sum(hits.values())
        if matched <= 0:
            continue
        coverage = matched / total
        # The floor is met by words or by Hangul bigrams on their own: a Korean question's inflected words
        # ("사고는", "신고하나요") never recur as written, so they must not drown the bigrams that do match.
        own = max(sum(w for (k, _), w in hits.items() if k == kind) / family[kind] for kind in family if family[kind])
        if own < MIN_COVERAGE:
            continue  # a short sentence sharing one rare term must not outrank one that answers
        # A mild length penalty: long sentences match more terms by chance.
        size = len(s.words) + len(s.bigrams) / 2
        rank = 1 + RANK_PRIOR * (s.source - 1)
        scored.append((coverage / max(1.0, size / 12) ** 0.3 / rank, s))
    if not scored:
        return []
    scored.sort(key=lambda x: (-x[0], x[1].source, x[1].position))
    best_score, best = scored[0]
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
    """The sentence with its marker before the closing punctuation: ``... 30 days [1].``; code fenced."""
    text = sentence.text.rstrip()
    if sentence.code:
        return f"`{text}` [{sentence.source}]" if "\n" not in text else f"\n```\n{text}\n```\n[{sentence.source}]"
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


def answer(question: str, sources: Sequence[ScoredChunk], morphemes: bool = True) -> str:
    """The whole extractive answer (or the 'could not find' sentence in the question's language)."""
    chosen = select(question, candidates(sources, with_code=asks_for_code(question)), morphemes)
    if not chosen:
        return NOT_FOUND[detect_lang(question)]
    return " ".join(cite(s) for s in chosen)


class ExtractiveChat:
    """Answers by quoting the best-matching source sentences with their ``[n]`` markers; no model.

    ``morphemes``: read Korean questions with the morphological analyser (as the ``kiwi`` lexical tokenizer
    does, which loads it anyway); off, no analyser is loaded.
    """

    def __init__(self, morphemes: bool = True) -> None:
        self.morphemes = morphemes

    @classmethod
    def for_settings(cls, settings: Settings) -> ExtractiveChat:
        """The answerer for these settings: Korean morphemes where the lexical tokenizer is ``kiwi``."""
        return cls(morphemes=settings.retrieval.tokenizer == "kiwi")

    @property
    def name(self) -> str:
        """``extractive://``."""
        return "extractive://"

    async def stream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        """Stream the extractive answer word by word; the last delta says ``stop`` (or ``length`` when cut)."""
        question = request.question or next((m.content for m in reversed(request.messages) if m.role == "user"), "")
        reply = answer(question, request.sources, self.morphemes)
        text, finish = limit(reply, request.params.max_tokens, request.params.stop)
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
    return ExtractiveChat.for_settings(settings)
