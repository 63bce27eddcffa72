"""How parsers build sections: a heading stack that collects lines, and table rows as text."""

from __future__ import annotations

from ingest.parsed import SECTION_SEP, Section


class Sections:
    """Collects lines under a heading stack; drops sections that hold only their heading."""

    def __init__(self) -> None:
        self.stack: list[tuple[int, str]] = []
        self.heading_line = ""
        self.body: list[str] = []
        self.out: list[Section] = []

    def heading(self, level: int, text: str, line: str) -> None:
        """Start a section under a heading of ``level`` (closing deeper or equal ones)."""
        self.flush()
        while self.stack and self.stack[-1][0] >= level:
            self.stack.pop()
        self.stack.append((level, text))
        self.heading_line = line

    def add(self, line: str) -> None:
        """Add a line (or block of lines) of text to the current section."""
        self.body.append(line)

    def flush(self) -> None:
        """Close the current section; kept only if it holds more than its heading."""
        body = "\n".join(self.body).strip()
        if body:
            text = f"{self.heading_line}\n\n{body}" if self.heading_line else body
            self.out.append(Section(text=text, section=SECTION_SEP.join(t for _, t in self.stack)))
        self.heading_line, self.body = "", []


def row_lines(rows: list[list[str]]) -> list[str]:
    """Table rows as ``header: value; ...`` lines, the first non-empty row being the header.

    Each row then reads on its own wherever a chunk boundary falls.
    """
    rows = [r for r in rows if any(c.strip() for c in r)]
    if not rows:
        return []
    header = [h.strip() or f"column {i + 1}" for i, h in enumerate(rows[0])]
    lines = []
    for row in rows[1:]:
        cells = [f"{header[i] if i < len(header) else f'column {i + 1}'}: {v.strip()}" for i, v in enumerate(row)]
        lines.append("; ".join(c for c in cells if not c.endswith(": ")))
    return lines or [" | ".join(header)]  # a header-only table is still text
