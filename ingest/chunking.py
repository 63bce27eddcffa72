"""Structure-aware chunking: each section (or page) is split on its own, sized in embedder tokens.

The splitting is LangChain's recursive character splitter (paragraphs, lines, sentences, clauses, words,
characters; pieces merged up to the size with an overlap), done here as a stream: each piece's tokens are
counted once, in batched tokenizer calls, and no text longer than a piece of a chunk is ever tokenized as a
whole, so time and memory are linear in the text (a 10 MB section no longer builds a token list of the
whole section, which cost 150 MB per MB of text, nor re-tokenizes each piece four or five times). For any
text whose pieces hold fewer than ``_CHARS_PER_TOKEN`` characters per token the chunks are exactly
LangChain's.

Code fences (CommonMark's rule: a line of three or more backticks or tildes, indented at most three spaces,
closed by a line of at least as many of the same mark) are never cut: the text between fences is split as
above, each fenced block is one piece, or, when longer than a chunk, is cut at line boundaries with its
opening fence (language included) repeated and a closing fence added in every part. Pieces are then packed
in order up to the size. A chunk without a letter or digit (a stray ``---``, an empty fence) is dropped.
"""

from __future__ import annotations

import logging
import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ingest.formats import PARSER_VERSION
from ingest.loaders import Document
from rag.ids import chunk_id, content_hash
from rag.seams import Tokenized
from rag.types import Chunk

log = logging.getLogger(__name__)

# Paragraphs, lines, then sentence ends (". " also ends Korean "...니다. " sentences; full-width
# marks for CJK), then clauses, words, characters. Separators stay at the end of their piece.
SEPARATORS = ["\n\n", "\n", ". ", "? ", "! ", "。", "．", "？", "！", "; ", ", ", "、", " ", ""]

# Rough token estimate when the embedder has no tokenizer: a Hangul/CJK character, a word or a
# punctuation mark each count as one token (WordPiece splits Korean at least this finely).
_APPROX_TOKEN = re.compile(
    r"[\uac00-\ud7a3\u3040-\u30ff\u4e00-\u9fff]|[^\W\uac00-\ud7a3\u3040-\u30ff\u4e00-\u9fff]+|[^\w\s]"
)

# [CLS] and [SEP] (or their equivalents) take two places of the model's input.
SPECIAL_TOKENS = 2

# A text longer than this many characters per token of the chunk size is taken to exceed the size without
# being counted (a word piece covers at most about 100 characters: WordPiece makes a longer word one [UNK]).
_CHARS_PER_TOKEN = 100
# Characters per batched tokenizer call (bounds the token lists alive at once).
_BATCH_CHARS = 64 * 1024

# CommonMark fence lines: the indent, the marker run, and what follows (a backtick fence's info has no backtick).
_FENCE_OPEN = re.compile(r"( {0,3})(`{3,}(?=[^`]*\Z)|~{3,})(.*)\Z")


def has_word(text: str) -> bool:
    """Whether a text holds a letter or a digit (a chunk without one carries no meaning to retrieve)."""
    return any(ch.isalnum() for ch in text)


def fence_blocks(lines: list[str]) -> list[tuple[int, int, bool]]:
    """``(first, end, closed)`` line ranges of the fenced code blocks; an unclosed one runs to the end."""
    blocks: list[tuple[int, int, bool]] = []
    n = 0
    while n < len(lines):
        opening = _FENCE_OPEN.match(lines[n])
        if not opening:
            n += 1
            continue
        marker = opening.group(2)
        end = n + 1
        while end < len(lines):
            closing = lines[end]
            body = closing.lstrip(" ")
            if len(closing) - len(body) <= 3 and body.rstrip(" \t").strip(marker[0]) == "":
                run = len(body.rstrip(" \t"))
                if run >= len(marker):
                    break
            end += 1
        blocks.append((n, min(end + 1, len(lines)), end < len(lines)))
        n = end + 1
    return blocks


def approx_tokens(text: str) -> int:
    """Token estimate used when no tokenizer is available."""
    return len(_APPROX_TOKEN.findall(text))


class _Merge:
    """LangChain's ``_merge_splits``, one split at a time.

    Splits are joined up to ``size`` tokens; the last ``overlap`` tokens' worth of splits is carried into
    the next chunk (separators are kept in the splits, so they are joined with nothing between).
    """

    def __init__(self, size: int, overlap: int) -> None:
        self._size, self._overlap = size, overlap
        self._current: deque[tuple[str, int]] = deque()
        self._total = 0

    def add(self, split: str, tokens: int) -> Iterator[str]:
        """Take one split; yields a chunk when this split does not fit beside the current ones."""
        if self._total + tokens > self._size and self._current:
            chunk = "".join(s for s, _ in self._current).strip()
            if chunk:
                yield chunk
            while self._total > self._overlap or (self._total + tokens > self._size and self._total > 0):
                self._total -= self._current.popleft()[1]
        self._current.append((split, tokens))
        self._total += tokens

    def finish(self) -> Iterator[str]:
        """The last chunk of a run of splits."""
        chunk = "".join(s for s, _ in self._current).strip()
        if chunk:
            yield chunk


def _pieces(text: str, separator: str) -> Iterator[str]:
    """``text`` cut after each ``separator`` (kept at the end of its piece); characters for ""."""
    if not separator:
        yield from text
        return
    start = 0
    while (at := text.find(separator, start)) != -1:
        yield text[start : at + len(separator)]
        start = at + len(separator)
    if start < len(text):
        yield text[start:]


class Chunker:
    """Splits documents into chunks no longer than ``size`` tokens of the embedder."""

    def __init__(self, chunk_size: int, chunk_overlap: int, embedder: Any = None) -> None:
        tokenizer = embedder.tokenizer if isinstance(embedder, Tokenized) else None
        max_tokens = embedder.max_tokens if isinstance(embedder, Tokenized) else None
        size = chunk_size
        if isinstance(max_tokens, int) and max_tokens - SPECIAL_TOKENS < size:
            size = max_tokens - SPECIAL_TOKENS
            log.info("chunk_size %d exceeds what the embedder reads; using %d tokens", chunk_size, size)
        overlap = min(chunk_overlap, size // 2)
        if overlap != chunk_overlap:
            log.info("chunk_overlap %d is too large for chunk size %d; using %d", chunk_overlap, size, overlap)
        if tokenizer is not None:

            def count(text: str) -> int:
                return len(tokenizer.tokenize(text))

            self.length: Callable[[str], int] = count
        else:
            self.length = approx_tokens
        self._tokenizer = tokenizer if callable(tokenizer) else None
        self.size = size
        self.overlap = overlap
        self._cap = _CHARS_PER_TOKEN * size

    @property
    def recipe(self) -> str:
        """What decides the chunk boundaries; a change means every document must be re-chunked."""
        counter = "tokenizer" if self.length is not approx_tokens else "approx"
        return f"recursive:v2:{self.size}:{self.overlap}:{counter}:{PARSER_VERSION}"

    def lengths(self, texts: list[str]) -> list[int]:
        """Token counts of several texts (batched tokenizer calls when the embedder has a tokenizer)."""
        if self._tokenizer is None or not texts:
            return [self.length(t) for t in texts]
        out: list[int] = []
        for batch in _batches(texts):
            out.extend(len(ids) for ids in self._tokenizer(batch, add_special_tokens=False)["input_ids"])
        return out

    def input_lengths(self, texts: list[str]) -> list[int]:
        """Tokens the model reads of each chunk text: what an embedding batch is padded to.

        A chunk's tokens (capped at the chunk size) plus the model's special tokens.
        """
        return [min(n, self.size) + SPECIAL_TOKENS for n in self.lengths(texts)]

    def split(self, text: str) -> list[str]:
        """Split one section's text into non-empty pieces within the size limit."""
        return list(self.iter_split(text))

    def iter_split(self, text: str) -> Iterator[str]:
        """``split``, as the pieces are made: none cuts a code fence, each holds a letter or digit."""
        text = text.strip()
        if len(text) <= self._cap and self.length(text) <= self.size:
            if has_word(text):
                yield text
            return
        lines = text.split("\n") if "```" in text or "~~~" in text else []
        blocks = fence_blocks(lines) if lines else []
        pieces = self._fenced(lines, blocks) if blocks else self._plain(text)
        yield from (p for p in pieces if has_word(p))

    def _plain(self, text: str) -> Iterator[str]:
        """Text without code fences, split by the separators (a short heading kept with what follows)."""
        if len(text) <= self._cap and self.length(text) <= self.size:
            if text:
                yield text
            return
        head, sep, body = text.partition("\n\n")
        head_len = self.length(head) if sep and len(head) <= self._cap else self.size
        pieces: Iterable[str]
        if sep and body.strip() and head_len <= self.size // 4:
            # A heading (or short lead paragraph) would become a chunk of its own; keep it with the
            # first piece of its body instead, which is then split a little smaller to make room.
            size = self.size - head_len - 1
            rest = self._split(body, SEPARATORS, size, min(self.overlap, size // 2))
            pieces = (f"{head}\n\n{p}" if i == 0 else p for i, p in enumerate(rest))
        else:
            pieces = self._split(text, SEPARATORS, self.size, self.overlap)
        for batch in _batches(p.strip() for p in pieces):
            for piece, n in zip(batch, self.lengths(batch), strict=True):
                if n <= self.size:
                    if piece:
                        yield piece
                else:
                    yield from (p for p in self._enforce(piece) if p.strip())

    def _fenced(self, lines: list[str], blocks: list[tuple[int, int, bool]]) -> Iterator[str]:
        """Text with code fences: prose and fenced blocks split apart, then packed in order up to the size."""
        units = (u for u in self._units(lines, blocks) if has_word(u))
        current: list[str] = []
        total = 0
        for batch in _batches(units):
            for unit, n in zip(batch, self.lengths(batch), strict=True):
                if current and total + n > self.size:
                    yield from self._packed(current)
                    current, total = [], 0
                current.append(unit)
                total += n
        if current:
            yield from self._packed(current)

    def _packed(self, units: list[str]) -> Iterator[str]:
        # Counts of pieces joined at a blank line add up for WordPiece, but not for every tokenizer.
        joined = "\n\n".join(units)
        if len(units) == 1 or self.length(joined) <= self.size:
            yield joined
        else:
            yield from units

    def _units(self, lines: list[str], blocks: list[tuple[int, int, bool]]) -> Iterator[str]:
        """Pieces within the size: the prose between fences split, each fenced block whole or in parts."""
        at = 0
        for first, end, closed in blocks:
            lead = None
            prose = "\n".join(lines[at:first]).strip()
            for piece in self._plain(prose) if prose else ():
                if lead is not None:
                    yield lead
                lead = piece
            if lead is not None and self.length(lead) > self.size // 4:
                yield lead
                lead = None
            yield from self._code(lines[first : end - 1] if closed else lines[first:end], lead)
            at = end
        prose = "\n".join(lines[at:]).strip()
        if prose:
            yield from self._plain(prose)

    def _code(self, block: list[str], lead: str | None) -> Iterator[str]:
        """A fenced block (less its closing line) in parts cut at line boundaries, each with both fences.

        A short ``lead`` (a heading, an introducing sentence) goes in front of the first part rather than
        becoming a chunk of its own.
        """
        opening, body = block[0].lstrip(" "), block[1:]
        marker = _FENCE_OPEN.match(opening)
        closing = marker.group(2) if marker else "```"
        whole = "\n".join([opening, *body, closing])
        if len(whole) <= self._cap and self.length(whole) <= self.size:
            if lead is not None:
                yield lead  # packed with the block when both fit
            yield whole
            return
        frame = self.length(f"{opening}\n{closing}")
        if frame > self.size // 2:
            # An info string that long leaves no room for code: reopen with the bare marker.
            opening = closing
            frame = self.length(f"{opening}\n{closing}")
        budget = max(self.size - frame, 1)
        used = self.length(lead) + 1 if lead is not None else 0
        part: list[str] = []
        for batch in _batches(body):
            for line, n in zip(batch, self._line_lengths(batch), strict=True):
                if part and used + n > budget:
                    yield from self._framed(opening, part, closing, lead)
                    part, used, lead = [], 0, None
                if n > budget:
                    if lead is not None:
                        yield lead
                    for bit in self._halves(line, budget):
                        yield from self._framed(opening, [bit], closing, None)
                    used, lead = 0, None
                    continue
                part.append(line)
                used += n
        if part:
            yield from self._framed(opening, part, closing, lead)
        elif lead is not None:
            yield lead

    def _line_lengths(self, lines: list[str]) -> list[int]:
        """Token counts of code lines; lines over the character cap are not counted (they exceed any size)."""
        fresh = iter(self.lengths([t for t in lines if len(t) <= self._cap]))
        return [self._cap if len(t) > self._cap else next(fresh) for t in lines]

    def _framed(self, opening: str, part: list[str], closing: str, lead: str | None) -> Iterator[str]:
        """``part`` between the fences (after ``lead``); halved at lines while the count of the whole is over."""
        fenced = "\n".join([opening, *part, closing])
        text = f"{lead}\n\n{fenced}" if lead is not None else fenced
        if self.length(text) <= self.size or (len(part) <= 1 and lead is None):
            yield text
        elif len(part) <= 1 and lead is not None:
            yield lead
            yield fenced
        else:
            half = len(part) // 2
            yield from self._framed(opening, part[:half], closing, lead)
            yield from self._framed(opening, part[half:], closing, None)

    def _halves(self, text: str, size: int) -> list[str]:
        """A line longer than ``size`` tokens cut at whitespace (or anywhere) into parts that fit."""
        if len(text) <= 1 or (len(text) <= self._cap and self.length(text) <= size):
            return [text]
        cut = len(text) // 2
        space = text.rfind(" ", 0, cut + 1)
        if space > len(text) // 4:
            cut = space
        return self._halves(text[:cut], size) + self._halves(text[cut:], size)

    def _split(self, text: str, separators: list[str], size: int, overlap: int) -> Iterator[str]:
        """LangChain's ``RecursiveCharacterTextSplitter._split_text``, streamed.

        The first separator found in the text cuts it; runs of pieces under the size are merged, larger
        pieces are split by the separators after it.
        """
        separator, rest = "", []
        for i, candidate in enumerate(separators):
            if not candidate:
                break
            if candidate in text:
                separator, rest = candidate, separators[i + 1 :]
                break
        merge = _Merge(size, overlap)
        single: dict[str, int] = {}  # token counts of characters (the "" separator), by character
        for batch in _batches(_pieces(text, separator)):
            for piece, n in zip(batch, self._capped_lengths(batch, single), strict=True):
                if n < size:
                    yield from merge.add(piece, n)
                    continue
                yield from merge.finish()
                merge = _Merge(size, overlap)
                if rest:
                    yield from self._split(piece, rest, size, overlap)
                else:
                    yield piece
        yield from merge.finish()

    def _capped_lengths(self, texts: list[str], single: dict[str, int]) -> list[int]:
        """Token counts; texts over the character cap are not counted (they exceed any size)."""
        chars = {t for t in texts if len(t) == 1 and t not in single}
        counted = [t for t in texts if 1 < len(t) <= self._cap]
        single.update(zip(chars, self.lengths(list(chars)), strict=True))
        fresh = iter(self.lengths(counted))
        return [self._cap if len(t) > self._cap else single[t] if len(t) == 1 else next(fresh) for t in texts]

    def _enforce(self, text: str) -> list[str]:
        # Token counts of pieces do not add up exactly to the count of their concatenation, so a
        # merged piece can end a token or two over; halve such pieces at whitespace until they fit.
        if not text or self.length(text) <= self.size:
            return [text]
        cut = len(text) // 2
        space = text.rfind(" ", 0, cut + 1)
        if space > len(text) // 4:
            cut = space
        return self._enforce(text[:cut].strip()) + self._enforce(text[cut:].strip())

    def chunks(self, doc: Document, *, ingested_at: float) -> list[Chunk]:
        """All chunks of a document, with deterministic ids and every field filled."""
        out: list[Chunk] = []
        for section in doc.sections:
            for text in self.iter_split(section.text):
                index = len(out)
                text_hash = content_hash(text)
                out.append(
                    Chunk(
                        id=chunk_id(doc.source, index, text_hash),
                        text=text,
                        source=doc.source,
                        title=doc.title,
                        section=section.section,
                        page=section.page,
                        index=index,
                        groups=doc.groups,
                        content_hash=text_hash,
                        doc_hash=doc.doc_hash,
                        lang=doc.lang,
                        mtime=doc.mtime,
                        ingested_at=ingested_at,
                    )
                )
        return out


def _batches(texts: Iterable[str]) -> Iterator[list[str]]:
    """Consecutive groups of texts of about ``_BATCH_CHARS`` characters (a longer text alone)."""
    batch: list[str] = []
    chars = 0
    for text in texts:
        if batch and chars + len(text) > _BATCH_CHARS:
            yield batch
            batch, chars = [], 0
        batch.append(text)
        chars += len(text)
    if batch:
        yield batch
