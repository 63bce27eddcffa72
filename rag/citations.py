"""Citation markers: keep only ``[n]`` that point at a real source, and list the sources cited.

Works on a stream: a marker split across deltas is held back until it is complete, so markers
that point at no source never reach the caller, streaming or not.
"""

from __future__ import annotations

import re

# [1], [2, 3], [1][2]; generous with spaces, strict with content.
_MARKER = re.compile(r"\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]")
_PARTIAL = re.compile(r"\[[\d,\s]{0,16}$")


def _rewrite(match: re.Match[str], n_sources: int, cited: list[int]) -> str:
    kept = []
    for part in match.group(1).split(","):
        n = int(part)
        if 1 <= n <= n_sources:
            kept.append(n)
            if n not in cited:
                cited.append(n)
    return "".join(f"[{n}]" for n in kept)


def clean_markers(text: str, n_sources: int) -> tuple[str, list[int]]:
    """Drop markers outside 1..n_sources; return the text and cited numbers in order of first use."""
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
