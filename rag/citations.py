"""Citation markers: keep only ``[n]`` that point at a real source, renumbered densely, and list them.

The model cites sources by their position in the prompt ([4], [1], ...). The caller sees them
renumbered 1, 2, 3 in order of first use, so citation lists have no gaps and clients that map
the n-th marker to the n-th source (Open WebUI does) show the right one. Works on a stream: a
marker split across deltas is held back until it is complete, so markers that point at no
source never reach the caller, streaming or not.
"""

from __future__ import annotations

import re

# [1], [2, 3], [1][2]; generous with spaces, strict with content.
_MARKER = re.compile(r"\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]")
_PARTIAL = re.compile(r"\[[\d,\s]{0,16}$")


def _rewrite(match: re.Match[str], n_sources: int, cited: list[int]) -> str:
    kept: list[int] = []
    for part in match.group(1).split(","):
        n = int(part)
        if 1 <= n <= n_sources:
            if n not in cited:
                cited.append(n)
            number = cited.index(n) + 1
            if number not in kept:
                kept.append(number)
    return "".join(f"[{n}]" for n in kept)


def clean_markers(text: str, n_sources: int) -> tuple[str, list[int]]:
    """Drop markers outside 1..n_sources and renumber the rest densely.

    Returns the text and the original source numbers in order of first use, so the k-th entry is
    the source now cited as ``[k]``.
    """
    cited: list[int] = []
    out = _MARKER.sub(lambda m: _rewrite(m, n_sources, cited), text)
    return out, cited


class MarkerFilter:
    """Incremental version of :func:`clean_markers` for streamed text."""

    def __init__(self, n_sources: int) -> None:
        self._n = n_sources
        self._pending = ""
        self.cited: list[int] = []

    def feed(self, text: str) -> str:
        """Accept a delta; return what can safely be sent now."""
        buf = self._pending + text
        partial = _PARTIAL.search(buf)
        if partial:
            buf, self._pending = buf[: partial.start()], buf[partial.start() :]
        else:
            self._pending = ""
        return _MARKER.sub(lambda m: _rewrite(m, self._n, self.cited), buf)

    def flush(self) -> str:
        """Return whatever is still held back at the end of the stream."""
        buf, self._pending = self._pending, ""
        return _MARKER.sub(lambda m: _rewrite(m, self._n, self.cited), buf)
