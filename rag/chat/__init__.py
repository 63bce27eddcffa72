"""Chat adapters, chosen by URL scheme in rag.registry."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rag.errors import ConfigError, InvalidRequest
from rag.types import GenParams, Message

if TYPE_CHECKING:
    from rag.seams import ChatBackend

# llama.cpp chat formats whose template silently drops system messages (llama-cpp-python's ``gemma``).
FORMATS_WITHOUT_SYSTEM = frozenset({"gemma"})


def _wire(m: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.tool_calls:
        out["tool_calls"] = [dict(c) for c in m.tool_calls]
    if m.tool_call_id is not None:
        out["tool_call_id"] = m.tool_call_id
    return out


def wire_messages(messages: Sequence[Message], *, fold_system: bool = False) -> list[dict[str, Any]]:
    """Messages as the chat protocol's dicts.

    ``fold_system`` puts the system messages at the start of the first user message instead (as
    Gemma's own chat template does), for models or servers whose template drops the system role:
    the sources and the answering rules live in the system message and must reach the model.
    """
    if not fold_system:
        return [_wire(m) for m in messages]
    system = "\n\n".join(m.content for m in messages if m.role == "system")
    out = [_wire(m) for m in messages if m.role != "system"]
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


def features_of(backend: ChatBackend) -> frozenset[str]:
    """The optional request features a backend honours (none unless it says so)."""
    from rag.seams import Featured

    return backend.features if isinstance(backend, Featured) else frozenset()


def check_features(backend: ChatBackend, params: GenParams) -> None:
    """Refuse a request needing a feature the backend cannot honour, naming the parameter.

    Raises:
        InvalidRequest: 400 with ``param`` the first unsupported request parameter.
    """
    have = features_of(backend)
    missing = [f for f in params.features() if f not in have]
    if missing:
        names = ", ".join(missing)
        raise InvalidRequest(
            f"the chat backend {backend.name} cannot honour {names}; "
            "use a backend that supports it (see docs/service.md, chat parameters) or leave it out",
            param=missing[0],
            code="unsupported_parameter",
        )
