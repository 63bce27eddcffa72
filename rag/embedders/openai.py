"""Embeddings from any OpenAI-protocol ``/v1/embeddings`` endpoint.

- ``openai://?model=text-embedding-3-small``: the OpenAI API (needs ``RAG_EMBED__API_KEY``).
- ``openai+http(s)://host:port/v1?model=x``: any OpenAI-compatible server (vLLM, TEI, llama.cpp).
- ``kserve+http(s)://isvc.ns.svc/openai/v1?model=x``: a KServe predictor.

``?dim=`` states the vector size; without it one probe request discovers it the first time the
size is needed (``info`` before any embedding: that probe blocks briefly, once).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from rag.errors import ConfigError, UpstreamError
from rag.openai_client import (
    PLACEHOLDER_KEY,
    convert_openai_error,
    make_async_client,
    openai_base_url,
    require_model,
)
from rag.types import EmbedderInfo

if TYPE_CHECKING:
    from rag.config import Settings
    from rag.registry import BackendURL

log = logging.getLogger(__name__)

PROBE_TEXT = "dimension probe"


def unit_rows(rows: Sequence[Sequence[float]], dim: int | None, endpoint: str) -> np.ndarray:
    """Rows as an L2-normalised float32 matrix, checked against the expected dimension."""
    matrix = np.asarray(rows, dtype=np.float32)
    if matrix.ndim != 2 or (dim is not None and matrix.shape[1] != dim):
        got = matrix.shape[1] if matrix.ndim == 2 else "ragged"
        raise UpstreamError(f"{endpoint} returned vectors of dimension {got}, expected {dim}")
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms == 0, 1.0, norms)


def batches(texts: Sequence[str], size: int) -> list[list[str]]:
    """``texts`` in consecutive lists of at most ``size``; empty strings become a space (APIs refuse '')."""
    clean = [t if t else " " for t in texts]
    return [clean[i : i + size] for i in range(0, len(clean), size)]


class OpenAIEmbedder:
    """Embeds through ``openai.AsyncOpenAI().embeddings.create``, batched, with query/document prefixes."""

    def __init__(
        self,
        client: Any,
        model: str,
        *,
        endpoint: str,
        dim: int | None = None,
        batch_size: int = 64,
        query_prefix: str = "",
        document_prefix: str = "",
        sync_client: Any = None,
    ) -> None:
        self._client = client
        self._sync_client = sync_client
        self._model = model
        self._endpoint = endpoint
        self._dim = dim
        self._batch_size = batch_size
        self._query_prefix = query_prefix
        self._document_prefix = document_prefix

    @property
    def info(self) -> EmbedderInfo:
        """``openai:<model>`` and the dimension (probed once, blocking, if not yet known)."""
        if self._dim is None:
            self._dim = self._probe_dim()
        return EmbedderInfo(id=f"openai:{self._model}", dim=self._dim)

    def _probe_dim(self) -> int:
        if self._sync_client is None:
            raise ConfigError(f"the dimension of {self._model!r} is unknown: give ?dim= in the embedder URL")
        log.info("probing the dimension of %s at %s (set ?dim= to skip)", self._model, self._endpoint)
        try:
            resp = self._sync_client.embeddings.create(model=self._model, input=[PROBE_TEXT], encoding_format="float")
        except Exception as e:
            err = convert_openai_error(e, endpoint=self._endpoint, model=self._model)
            if err is None:
                raise
            raise err from e
        return len(resp.data[0].embedding)

    async def _embed(self, texts: Sequence[str]) -> np.ndarray:
        out = []
        for batch in batches(texts, self._batch_size):
            try:
                resp = await self._client.embeddings.create(model=self._model, input=batch, encoding_format="float")
            except Exception as e:
                err = convert_openai_error(e, endpoint=self._endpoint, model=self._model)
                if err is None:
                    raise
                raise err from e
            rows = [d.embedding for d in sorted(resp.data, key=lambda d: d.index)]
            if len(rows) != len(batch):
                raise UpstreamError(f"{self._endpoint} returned {len(rows)} vectors for {len(batch)} texts")
            matrix = unit_rows(rows, self._dim, self._endpoint)
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
        """Close the HTTP connection pools."""
        await self._client.close()
        if self._sync_client is not None:
            await asyncio.to_thread(self._sync_client.close)


def from_url(url: BackendURL, settings: Settings) -> OpenAIEmbedder:
    """``openai://?model=``, ``openai+http(s)://host/v1?model=``, ``kserve+http(s)://host/openai/v1?model=``."""
    import openai

    model = require_model(url, "openai+http://host:8000/v1?model=NAME")
    try:
        dim = int(url.query["dim"]) if "dim" in url.query else None
    except ValueError as e:
        raise ConfigError(f"?dim= must be an integer in {url.raw!r}") from e
    key = settings.embed.api_key.get_secret_value() if settings.embed.api_key else None
    client = make_async_client(url, key, settings.embed.timeout_s)
    sync_client = None
    if dim is None:
        sync_client = openai.OpenAI(
            api_key=key or PLACEHOLDER_KEY,
            base_url=openai_base_url(url),
            timeout=settings.embed.timeout_s,
            max_retries=client.max_retries,
        )
    return OpenAIEmbedder(
        client,
        model,
        endpoint=openai_base_url(url),
        dim=dim,
        batch_size=settings.embed.batch_size,
        query_prefix=settings.embed.query_prefix,
        document_prefix=settings.embed.document_prefix,
        sync_client=sync_client,
    )
