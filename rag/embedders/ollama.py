"""Embeddings from an Ollama server's native ``/api/embed``.

``ollama://host:11434?model=nomic-embed-text`` (empty host: 127.0.0.1, empty port: 11434).
``?dim=`` states the vector size; without it one probe request discovers it when first needed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from rag.chat.ollama import convert_ollama_error, make_ollama_client, ollama_host
from rag.embedders.openai import PROBE_TEXT, batches, unit_rows
from rag.errors import ConfigError, UpstreamError
from rag.types import EmbedderInfo

if TYPE_CHECKING:
    from rag.config import Settings
    from rag.registry import BackendURL

log = logging.getLogger(__name__)


class OllamaEmbedder:
    """Embeds through ``ollama.AsyncClient(host).embed(model, input)``, batched, with prefixes."""

    def __init__(
        self,
        client: Any,
        model: str,
        *,
        host: str,
        dim: int | None = None,
        batch_size: int = 64,
        query_prefix: str = "",
        document_prefix: str = "",
        timeout_s: float | None = None,
    ) -> None:
        self._client = client
        self._model = model
        self._host = host
        self._dim = dim
        self._batch_size = batch_size
        self._query_prefix = query_prefix
        self._document_prefix = document_prefix
        self._timeout_s = timeout_s

    @property
    def info(self) -> EmbedderInfo:
        """``ollama:<model>`` and the dimension (probed once, blocking, if not yet known)."""
        if self._dim is None:
            self._dim = self._probe_dim()
        return EmbedderInfo(id=f"ollama:{self._model}", dim=self._dim)

    def _probe_dim(self) -> int:
        import ollama

        log.info("probing the dimension of %s at %s (set ?dim= to skip)", self._model, self._host)
        try:
            with ollama.Client(host=self._host, timeout=self._timeout_s) as client:
                resp = client.embed(model=self._model, input=[PROBE_TEXT])
        except Exception as e:
            err = convert_ollama_error(e, host=self._host, model=self._model)
            if err is None:
                raise
            raise err from e
        return len(resp.embeddings[0])

    async def _embed(self, texts: Sequence[str]) -> np.ndarray:
        out = []
        for batch in batches(texts, self._batch_size):
            try:
                resp = await self._client.embed(model=self._model, input=batch)
            except Exception as e:
                err = convert_ollama_error(e, host=self._host, model=self._model)
                if err is None:
                    raise
                raise err from e
            if len(resp.embeddings) != len(batch):
                raise UpstreamError(f"Ollama {self._host} returned {len(resp.embeddings)} vectors for {len(batch)}")
            matrix = unit_rows(resp.embeddings, self._dim, f"Ollama {self._host}")
            self._dim = matrix.shape[1]
            out.append(matrix)
        if not out:
            return np.zeros((0, self.info.dim), dtype=np.float32)
        return np.concatenate(out)

    async def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """Embed passages (with the document prefix), batched."""
        return await self._embed([self._document_prefix + t for t in texts])

    async def embed_query(self, text: str) -> np.ndarray:
        """Embed one query (with the query prefix)."""
        vectors = await self._embed([self._query_prefix + text])
        return vectors[0]

    async def close(self) -> None:
        """Close the HTTP connection pool."""
        await self._client.close()


def from_url(url: BackendURL, settings: Settings) -> OllamaEmbedder:
    """``ollama://host:11434?model=nomic-embed-text`` (``?dim=`` optional)."""
    model = url.query.get("model", "").strip()
    if not model:
        raise ConfigError(
            f"embedder URL {url.raw!r} needs a model, like ollama://127.0.0.1:11434?model=nomic-embed-text"
        )
    try:
        dim = int(url.query["dim"]) if "dim" in url.query else None
    except ValueError as e:
        raise ConfigError(f"?dim= must be an integer in {url.raw!r}") from e
    host = ollama_host(url)
    return OllamaEmbedder(
        make_ollama_client(host, settings.embed.timeout_s),
        model,
        host=host,
        dim=dim,
        batch_size=settings.embed.batch_size,
        query_prefix=settings.embed.query_prefix,
        document_prefix=settings.embed.document_prefix,
        timeout_s=settings.embed.timeout_s,
    )
