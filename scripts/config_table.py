"""Print the Markdown table of every RAG_* setting, generated from rag.config.Settings.

The README's configuration table is this output; tests/test_docs.py keeps them in sync.
"""

from __future__ import annotations

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


if __name__ == "__main__":
    print(table())
