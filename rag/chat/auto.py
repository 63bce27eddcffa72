"""``RAG_CHAT__URL=auto``: a local Ollama when one answers, else the extractive answerer.

``auto?model=llama3.2`` names the Ollama model to use; plain ``auto`` takes the first model the
server lists. Without a reachable server or without any pulled model the answer is extractive,
so an offline install still answers (by quoting) instead of failing.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlencode, urlsplit

from rag.chat.extractive import ExtractiveChat
from rag.errors import ConfigError

if TYPE_CHECKING:
    from rag.config import Settings
    from rag.seams import ChatBackend

log = logging.getLogger(__name__)

OLLAMA_PROBE_URL = "http://127.0.0.1:11434"
PROBE_TIMEOUT_S = 0.5


def auto_model(url_text: str) -> str | None:
    """The ``?model=`` of an ``auto`` chat URL (``auto``, ``auto?model=x``, ``auto://?model=x``)."""
    parts = urlsplit(url_text)
    base = (parts.scheme or parts.path).lower()
    if base != "auto":
        raise ConfigError(f"not an 'auto' chat URL: {url_text!r}")
    return dict(parse_qsl(parts.query)).get("model") or None


def _same_model(wanted: str, listed: str) -> bool:
    def full(name: str) -> str:
        return name if ":" in name else name + ":latest"

    return full(wanted) == full(listed)


async def _ollama_models(probe_url: str) -> list[str] | str:
    """The models an Ollama server lists, or why it could not be asked."""
    import httpx

    try:
        async with httpx.AsyncClient(timeout=PROBE_TIMEOUT_S) as client:
            r = await client.get(probe_url.rstrip("/") + "/api/tags")
            r.raise_for_status()
            body = r.json()
    except (httpx.HTTPError, ValueError) as e:
        return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
    entries = body.get("models") if isinstance(body, dict) else None
    if not isinstance(entries, list):
        return "the answer to /api/tags is not Ollama's"
    return [str(m.get("model") or m.get("name")) for m in entries if isinstance(m, dict)]


async def resolve_auto(settings: Settings, probe_url: str = OLLAMA_PROBE_URL) -> ChatBackend:
    """Ollama at ``probe_url`` if it answers within half a second and has the model, else extractive."""
    from rag.chat.ollama import from_url as ollama_from_url
    from rag.registry import parse_url

    wanted = auto_model(settings.chat.url)
    found = await _ollama_models(probe_url)
    if isinstance(found, str):
        log.info("chat backend: extractive (no Ollama at %s: %s)", probe_url, found)
        return ExtractiveChat.for_settings(settings)
    if not found:
        log.info("chat backend: extractive (Ollama at %s has no models pulled)", probe_url)
        return ExtractiveChat.for_settings(settings)
    if wanted is None:
        model = found[0]
    else:
        match = next((m for m in found if _same_model(wanted, m)), None)
        if match is None:
            log.warning(
                "chat backend: extractive (Ollama at %s has no model %r; it has %s; run: ollama pull %s)",
                probe_url,
                wanted,
                ", ".join(found),
                wanted,
            )
            return ExtractiveChat.for_settings(settings)
        model = match
    split = urlsplit(probe_url)
    chat = ollama_from_url(parse_url(f"ollama://{split.netloc}?{urlencode({'model': model})}"), settings)
    how = "configured" if wanted else "first listed"
    log.info("chat backend: Ollama at %s, model %s (%s)", probe_url, model, how)
    return chat
