"""The Markdown table of every RAG_* setting, generated from rag.config.Settings.

``python scripts/config_table.py --write`` puts it into docs/configuration.md (between its markers);
tests/test_docs.py fails when the page is stale.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pydantic import BaseModel

from rag.config import Settings


def rows() -> list[tuple[str, str, str]]:
    out = []
    for name, field in Settings.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            for sub, subfield in ann.model_fields.items():
                default = subfield.get_default(call_default_factory=True)
                out.append((f"RAG_{name.upper()}__{sub.upper()}", _fmt(default), subfield.description or ""))
        else:
            out.append(
                (f"RAG_{name.upper()}", _fmt(field.get_default(call_default_factory=True)), field.description or "")
            )
    return out


def _fmt(value: object) -> str:
    if value is None or value == "":
        return "(none)"
    if isinstance(value, list):
        return ",".join(map(str, value)) or "(empty)"
    return f"`{value}`"


def table() -> str:
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    lines += [f"| `{v}` | {d} | {m} |" for v, d, m in rows()]
    return "\n".join(lines)


START, END = "<!-- settings:start -->", "<!-- settings:end -->"
PAGE = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


def page_with_table(text: str) -> str:
    """The configuration page's text with the table between its markers replaced by a fresh one."""
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    return f"{head}{START}\n{table()}\n{END}{tail}"


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        PAGE.write_text(page_with_table(PAGE.read_text(encoding="utf-8")), encoding="utf-8")
    else:
        print(table())
