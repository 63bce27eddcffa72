"""Prompt assembly: numbered sources, answer only from them, cite as [n], answer in the user's language."""

from __future__ import annotations

from collections.abc import Sequence

from rag.types import Message, ScoredChunk

SYSTEM_PROMPT = """You answer questions for the staff of a research organisation using ONLY the numbered \
sources below.
Rules:
- Use only facts stated in the sources. If the sources do not contain the answer, say that you could not \
find it in the available documents, and nothing else.
- After every sentence that uses a source, cite it as [n], where n is the source number. Cite only \
sources you used.
- Answer in the same language as the question ({lang_name}).
- Be concise.

Sources:
{sources}"""

NO_SOURCES = "(no relevant sources were found)"
_LANG_NAMES = {"ko": "Korean", "en": "English"}


def format_source(n: int, hit: ScoredChunk) -> str:
    """One numbered source block as the model sees it."""
    c = hit.chunk
    where = " / ".join(p for p in (c.title, c.section) if p)
    if c.page is not None:
        where += f" (page {c.page})"
    return f"[{n}] {where}\n{c.text.strip()}"


def build_messages(
    question: str, history: Sequence[Message], sources: Sequence[ScoredChunk], lang: str
) -> tuple[Message, ...]:
    """System prompt with numbered sources, then the prior turns, then the question."""
    blocks = "\n\n".join(format_source(i, s) for i, s in enumerate(sources, 1)) or NO_SOURCES
    system = SYSTEM_PROMPT.format(sources=blocks, lang_name=_LANG_NAMES.get(lang, lang))
    turns = tuple(m for m in history if m.role in ("user", "assistant"))
    return (Message("system", system), *turns, Message("user", question))
