"""Script-based language detection: enough to route Korean vs English and to answer in kind."""

from __future__ import annotations


def hangul_ratio(text: str) -> float:
    """Share of letters in ``text`` that are Hangul syllables or jamo."""
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return 0.0
    hangul = sum(
        1 for c in letters if "\uac00" <= c <= "\ud7a3" or "\u1100" <= c <= "\u11ff" or "\u3130" <= c <= "\u318f"
    )
    return hangul / len(letters)


def detect_lang(text: str) -> str:
    """``"ko"`` when Hangul makes up a fifth or more of the letters, else ``"en"``."""
    return "ko" if hangul_ratio(text) >= 0.2 else "en"
