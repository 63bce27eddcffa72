"""Backends chosen by URL scheme, one closed table per seam, imported lazily.

Adding a backend: one module, one row here, one extra in pyproject.toml, one contract-test
parameter, one README row. An unknown scheme fails at start-up with the list of known ones.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from rag.errors import ConfigError, MissingExtra

if TYPE_CHECKING:
    from rag.config import Settings
    from rag.seams import ChatBackend, Embedder, Reranker, VectorStore


@dataclass(frozen=True)
class BackendURL:
    """A parsed backend URL: ``scheme://host:port/path?key=value``."""

    raw: str
    scheme: str
    host: str
    port: int | None
    path: str
    query: dict[str, str]

    @property
    def transport(self) -> str:
        """The ``http``/``https`` part of ``vendor+http``; empty when the scheme has none."""
        return self.scheme.partition("+")[2]

    def http_base(self, default_port: int | None = None) -> str:
        """``http(s)://host:port/path`` for schemes that wrap an HTTP endpoint."""
        proto = self.transport if self.transport in ("http", "https") else "http"
        port = self.port or default_port
        netloc = f"{self.host}:{port}" if port else self.host
        return f"{proto}://{netloc}{self.path}".rstrip("/")


def parse_url(raw: str) -> BackendURL:
    """Split a backend URL; secrets in it (user:password@) are refused."""
    parts = urlsplit(raw)
    if not parts.scheme:
        raise ConfigError(f"backend URL needs a scheme (like 'chroma:///path'): {raw!r}")
    if parts.username or parts.password:
        raise ConfigError(f"credentials do not belong in a backend URL; use the api_key setting: {parts.scheme}://...")
    try:
        port = parts.port
    except ValueError as e:
        raise ConfigError(f"bad port in backend URL {raw!r}") from e
    return BackendURL(
        raw=raw,
        scheme=parts.scheme.lower(),
        host=parts.hostname or "",
        port=port,
        path=parts.path,
        query=dict(parse_qsl(parts.query)),
    )


@dataclass(frozen=True)
class Entry:
    """One row of a backend table: where the factory lives and which extra installs its SDK."""

    target: str
    extra: str
    description: str


STORES: dict[str, Entry] = {
    "memory": Entry("rag.stores.memory:from_url", "core", "in-memory brute force (tests, recall oracle)"),
    "chroma": Entry("rag.stores.chroma:from_url", "chroma", "Chroma embedded, chroma:///path/to/dir"),
    "chroma+http": Entry("rag.stores.chroma:from_url", "chroma", "Chroma server, chroma+http://host:8000"),
    "chroma+https": Entry("rag.stores.chroma:from_url", "chroma", "Chroma server over TLS"),
    "milvus+lite": Entry("rag.stores.milvus:from_url", "milvus", "Milvus Lite, milvus+lite:///path/rag.db"),
    "milvus": Entry("rag.stores.milvus:from_url", "milvus", "Milvus server, milvus://host:19530"),
    "milvus+https": Entry("rag.stores.milvus:from_url", "milvus", "Milvus server over TLS"),
}

EMBEDDERS: dict[str, Entry] = {
    "st": Entry("rag.embedders.st:from_url", "core", "sentence-transformers; st://all-MiniLM-L6-v2 is bundled"),
    "hash": Entry("rag.embedders.hashing:from_url", "core", "feature hashing, no model (tests only)"),
    "openai": Entry("rag.embedders.openai:from_url", "core", "OpenAI API, openai://?model=text-embedding-3-small"),
    "openai+http": Entry("rag.embedders.openai:from_url", "core", "any OpenAI-compatible /v1/embeddings"),
    "openai+https": Entry("rag.embedders.openai:from_url", "core", "any OpenAI-compatible /v1/embeddings, TLS"),
    "kserve+http": Entry("rag.embedders.openai:from_url", "core", "KServe predictor, .../openai/v1?model=x"),
    "kserve+https": Entry("rag.embedders.openai:from_url", "core", "KServe predictor over TLS"),
    "ollama": Entry("rag.embedders.ollama:from_url", "core", "Ollama native API, ollama://host:11434?model=x"),
}

CHATS: dict[str, Entry] = {
    "extractive": Entry("rag.chat.extractive:from_url", "core", "no LLM: cites the most relevant sentences"),
    "openai": Entry("rag.chat.openai:from_url", "core", "OpenAI API, openai://?model=gpt-4o-mini"),
    "openai+http": Entry("rag.chat.openai:from_url", "core", "any OpenAI-compatible server (vLLM, llama.cpp)"),
    "openai+https": Entry("rag.chat.openai:from_url", "core", "any OpenAI-compatible server over TLS"),
    "kserve+http": Entry("rag.chat.openai:from_url", "core", "KServe predictor, .../openai/v1?model=x"),
    "kserve+https": Entry("rag.chat.openai:from_url", "core", "KServe predictor over TLS"),
    "ollama": Entry("rag.chat.ollama:from_url", "core", "Ollama native API, ollama://host:11434?model=x"),
    "llamacpp": Entry("rag.chat.llamacpp:from_url", "local-llm", "embedded llama.cpp, llamacpp:///model.gguf"),
}

RERANKERS: dict[str, Entry] = {
    "st": Entry("rag.rerank:from_url", "core", "local cross-encoder directory, st:///path/to/model (never downloaded)"),
    "http": Entry("rag.rerank:from_url", "core", "TEI /rerank, or vLLM/KServe /v1/rerank (?model=x)"),
    "https": Entry("rag.rerank:from_url", "core", "a rerank endpoint over TLS"),
}

# 'auto' is resolved at start-up (rag.chat.auto), not a backend of its own.
CHAT_AUTO = "auto"


def is_auto(url: str) -> bool:
    """True for ``auto`` and ``auto?model=x`` (Ollama if it answers, else extractive)."""
    return url.partition("?")[0] == CHAT_AUTO


def entry(table: dict[str, Entry], seam: str, raw: str) -> tuple[BackendURL, Entry]:
    """The parsed URL and its table row; an unknown scheme fails listing the known ones."""
    return _entry(table, seam, raw)


def _entry(table: dict[str, Entry], seam: str, raw: str) -> tuple[BackendURL, Entry]:
    url = parse_url(raw)
    entry = table.get(url.scheme)
    if entry is None:
        known = ", ".join(sorted(table))
        raise ConfigError(f"unknown {seam} scheme '{url.scheme}' in {raw!r}; known schemes: {known}")
    return url, entry


def _build(entry: Entry, url: BackendURL, settings: Settings) -> Any:
    return build(entry, url, settings)


def build(entry: Entry, *args: Any) -> Any:
    """Import the adapter module and call its factory with ``args``; a missing SDK names the extra to install."""
    module_name, _, attr = entry.target.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
        return factory(*args)
    except ModuleNotFoundError as e:
        missing = e.name or "?"
        if missing.split(".")[0] in ("rag", "ingest", "serving", "eval", "ui"):
            raise
        raise MissingExtra(missing, entry.extra) from e


def validate_urls(settings: Settings) -> None:
    """Fail at start-up on any unknown scheme, before anything is imported or connected."""
    _entry(STORES, "vector store", settings.store.url)
    _entry(EMBEDDERS, "embedder", settings.embed.url)
    if not is_auto(settings.chat.url):
        _entry(CHATS, "chat backend", settings.chat.url)
    if settings.retrieval.rerank_url:
        _entry(RERANKERS, "reranker", settings.retrieval.rerank_url)


def make_store(settings: Settings) -> VectorStore:
    """Build the configured vector store (not yet opened)."""
    url, entry = _entry(STORES, "vector store", settings.store.url)
    return _build(entry, url, settings)  # type: ignore[no-any-return]


def make_embedder(settings: Settings) -> Embedder:
    """Build the configured embedder."""
    url, entry = _entry(EMBEDDERS, "embedder", settings.embed.url)
    return _build(entry, url, settings)  # type: ignore[no-any-return]


def make_chat(settings: Settings, url_text: str | None = None) -> ChatBackend:
    """Build a chat backend from a URL (default: the configured one; 'auto' is not accepted here)."""
    url, entry = _entry(CHATS, "chat backend", url_text or settings.chat.url)
    return _build(entry, url, settings)  # type: ignore[no-any-return]


def make_reranker(settings: Settings) -> Reranker | None:
    """Build the configured reranker, or None when ``retrieval.rerank_url`` is empty."""
    if not settings.retrieval.rerank_url:
        return None
    url, entry = _entry(RERANKERS, "reranker", settings.retrieval.rerank_url)
    return _build(entry, url, settings)  # type: ignore[no-any-return]
