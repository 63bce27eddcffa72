"""Structure-aware chunking: each section (or page) is split on its own, sized in embedder tokens."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from langchain_text_splitters import RecursiveCharacterTextSplitter

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


def approx_tokens(text: str) -> int:
    """Token estimate used when no tokenizer is available."""
    return len(_APPROX_TOKEN.findall(text))


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
        self._splitter = self._splitter_for(size)

    @property
    def recipe(self) -> str:
        """What decides the chunk boundaries; a change means every document must be re-chunked."""
        counter = "tokenizer" if self.length is not approx_tokens else "approx"
        return f"recursive:v1:{self.size}:{self.overlap}:{counter}:{PARSER_VERSION}"

    def lengths(self, texts: list[str]) -> list[int]:
        """Token counts of several texts (one batched tokenizer call when the embedder has a tokenizer)."""
        if self._tokenizer is not None and texts:
            return [len(ids) for ids in self._tokenizer(texts, add_special_tokens=False)["input_ids"]]
        return [self.length(t) for t in texts]

    def input_lengths(self, texts: list[str]) -> list[int]:
        """Tokens the model reads of each chunk text: what an embedding batch is padded to.

        A chunk's tokens (capped at the chunk size) plus the model's special tokens.
        """
        return [min(n, self.size) + SPECIAL_TOKENS for n in self.lengths(texts)]

    def split(self, text: str) -> list[str]:
        """Split one section's text into non-empty pieces within the size limit."""
        text = text.strip()
        if self.length(text) <= self.size:
            # What the splitter would return for text that fits (one piece), without its per-piece token counts.
            return [text] if text else []
        head, sep, body = text.partition("\n\n")
        head_len = self.length(head) if sep else self.size
        if sep and body.strip() and head_len <= self.size // 4:
            # A heading (or short lead paragraph) would become a chunk of its own; keep it with the
            # first piece of its body instead, which is then split a little smaller to make room.
            splitter = self._splitter_for(self.size - head_len - 1)
            pieces = splitter.split_text(body)
            pieces[0] = f"{head}\n\n{pieces[0]}"
        else:
            pieces = self._splitter.split_text(text)
        out: list[str] = []
        for piece in pieces:
            out.extend(self._enforce(piece.strip()))
        return [p for p in out if p.strip()]

    def _splitter_for(self, size: int) -> RecursiveCharacterTextSplitter:
        return RecursiveCharacterTextSplitter(
            separators=SEPARATORS,
            keep_separator="end",
            chunk_size=size,
            chunk_overlap=min(self.overlap, size // 2),
            length_function=self.length,
            strip_whitespace=True,
        )

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
            for text in self.split(section.text):
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
