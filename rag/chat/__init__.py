"""Chat adapters, chosen by URL scheme in rag.registry."""

from __future__ import annotations

from collections.abc import Sequence

from rag.errors import ConfigError
from rag.types import Message

# llama.cpp chat formats whose template silently drops system messages (llama-cpp-python's ``gemma``).
FORMATS_WITHOUT_SYSTEM = frozenset({"gemma"})


def wire_messages(messages: Sequence[Message], *, fold_system: bool = False) -> list[dict[str, str]]:
    """Messages as the chat protocol's dicts.

    ``fold_system`` puts the system messages at the start of the first user message instead (as
    Gemma's own chat template does), for models or servers whose template drops the system role:
    the sources and the answering rules live in the system message and must reach the model.
    """
    if not fold_system:
        return [{"role": m.role, "content": m.content} for m in messages]
    system = "\n\n".join(m.content for m in messages if m.role == "system")
    out = [{"role": m.role, "content": m.content} for m in messages if m.role != "system"]
    if system:
        first_user = next((m for m in out if m["role"] == "user"), None)
        if first_user is None:
            out.insert(0, {"role": "user", "content": system})
        else:
            first_user["content"] = f"{system}\n\n{first_user['content']}"
    return out


def flag(query: dict[str, str], name: str, default: bool) -> bool:
    """A boolean backend-URL query parameter (true/false, 1/0, yes/no).

    Raises:
        ConfigError: any other value.
    """
    raw = query.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")
