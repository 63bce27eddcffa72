"""Optional rerankers: a local cross-encoder (``st:///path``) or a ``/rerank`` endpoint (TEI, KServe/vLLM).

No reranker model ships with the offline install; point ``RAG_RETRIEVAL__RERANK_URL`` at a local
cross-encoder directory (e.g. a downloaded ``BAAI/bge-reranker-v2-m3``) or at a served endpoint.

Endpoint wire formats (chosen by path):

``.../v1/rerank`` (vLLM, KServe's ``/openai/v1/rerank``, Cohere/Jina style)
    request ``{"model", "query", "documents": [...]}``, response ``{"results": [{"index", "relevance_score"}]}``
``.../rerank`` (Hugging Face TEI)
    request ``{"query", "texts": [...], "raw_scores": false}``, response ``[{"index", "score"}, ...]``
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import httpx

from rag.errors import ConfigError, UpstreamError, UpstreamTimeout, UpstreamUnavailable

if TYPE_CHECKING:
    from rag.config import Settings
    from rag.registry import BackendURL


class CrossEncoderReranker:
    """A local sentence-transformers CrossEncoder (never downloaded)."""

    def __init__(self, path: Path) -> None:
        if not path.is_dir():
            raise ConfigError(f"reranker model directory not found: {path} (no reranker ships offline)")
        from sentence_transformers import CrossEncoder

        self._model: Any = CrossEncoder(str(path), device="cpu", local_files_only=True)
        self._lock = threading.Lock()

    def _predict(self, query: str, texts: Sequence[str]) -> list[float]:
        with self._lock:
            return [float(s) for s in self._model.predict([(query, t) for t in texts], show_progress_bar=False)]

    async def rerank(self, query: str, texts: Sequence[str]) -> list[float]:
        """Cross-encoder scores in a worker thread."""
        return await asyncio.to_thread(self._predict, query, texts) if texts else []

    async def close(self) -> None:
        """Nothing to release."""


class HttpReranker:
    """A ``/rerank`` endpoint: TEI's format, or the Cohere-style one of vLLM/KServe under ``/v1/rerank``."""

    def __init__(self, url: str, *, model: str = "", api_key: str = "", timeout_s: float = 30.0) -> None:
        self.url = url
        self.cohere_style = urlsplit(url).path.rstrip("/").endswith("/v1/rerank")
        self.model = model
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(timeout=timeout_s, headers=headers)

    async def rerank(self, query: str, texts: Sequence[str]) -> list[float]:
        """Scores from the endpoint, put back in the order of ``texts``."""
        if not texts:
            return []
        if self.cohere_style:
            body: dict[str, Any] = {"query": query, "documents": list(texts)}
            if self.model:
                body["model"] = self.model
        else:
            body = {"query": query, "texts": list(texts), "raw_scores": False}
        try:
            resp = await self._client.post(self.url, json=body)
        except httpx.ConnectError as e:
            raise UpstreamUnavailable(f"cannot reach the reranker at {self.url}: {e}") from e
        except httpx.TimeoutException as e:
            raise UpstreamTimeout(f"the reranker at {self.url} did not answer in time") from e
        if resp.status_code != 200:
            raise UpstreamError(f"the reranker at {self.url} answered {resp.status_code}: {resp.text[:300]}")
        try:
            data = resp.json()
            rows = data["results"] if isinstance(data, dict) else data
            scores = [0.0] * len(texts)
            seen = set()
            for row in rows:
                i = int(row["index"])
                scores[i] = float(row.get("relevance_score", row.get("score")))
                seen.add(i)
        except (ValueError, KeyError, TypeError, IndexError) as e:
            raise UpstreamError(f"the reranker at {self.url} sent an unexpected body: {resp.text[:300]}") from e
        if len(seen) != len(texts):
            raise UpstreamError(f"the reranker at {self.url} scored {len(seen)} of {len(texts)} passages")
        return scores

    async def close(self) -> None:
        """Close the HTTP client."""
        await self._client.aclose()


def from_url(url: BackendURL, settings: Settings) -> CrossEncoderReranker | HttpReranker:
    """``st:///path/to/cross-encoder`` or ``http(s)://host/rerank`` (``?model=x``)."""
    if url.scheme == "st":
        parts = urlsplit(url.raw)
        return CrossEncoderReranker(Path(parts.netloc + parts.path))
    parts = urlsplit(url.raw)
    model = parse_qs(parts.query).get("model", [""])[0]
    plain = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    return HttpReranker(plain, model=model, timeout_s=settings.chat.timeout_s)
