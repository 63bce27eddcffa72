"""What a parser yields: sections of text under a title, or a ``ParseError`` saying why not."""

from __future__ import annotations

from dataclasses import dataclass

SECTION_SEP = " > "


class ParseError(Exception):
    """A file could not be turned into text; the message says why."""


class NeedsOcr(ParseError):
    """A file needs OCR, which is switched off or not installed: the worker reports it skipped, not failed."""


@dataclass(frozen=True)
class Section:
    """A run of text under one heading path (or on one page)."""

    text: str
    section: str = ""
    page: int | None = None


@dataclass(frozen=True)
class Parsed:
    """What a parser extracts: a title (empty if the format gives none) and sections in order."""

    title: str
    sections: tuple[Section, ...]
    warnings: tuple[str, ...] = ()  # repairs a person may want to know about (mixed encodings)
