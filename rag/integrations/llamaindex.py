"""A LlamaIndex retriever over the service: ``RagServiceRetriever(base_url, api_key=...)``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rag.errors import MissingExtra
from rag.integrations.client import asearch, metadata, search

try:
    from llama_index.core.retrievers import BaseRetriever
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
except ImportError as e:  # pragma: no cover - depends on the installed extras
    raise MissingExtra("llama-index-core", "integrations") from e


def _nodes(hits: list[dict[str, Any]]) -> list[NodeWithScore]:
    return [NodeWithScore(node=TextNode(id_=h["id"], text=h["text"], metadata=metadata(h)), score=h["score"])
            for h in hits]  # fmt: skip


class RagServiceRetriever(BaseRetriever):
    """Nodes from ``POST /v1/search``, filtered by the caller's groups on the server."""

    def __init__(self, base_url: str, *, api_key: str | None = None, k: int | None = None,
                 filters: Mapping[str, Any] | None = None, headers: Mapping[str, str] | None = None,
                 timeout_s: float = 30.0) -> None:  # fmt: skip
        super().__init__()
        self.base_url, self.api_key, self.k = base_url, api_key, k
        self.filters, self.headers, self.timeout_s = dict(filters or {}), dict(headers or {}), timeout_s

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return _nodes(search(self.base_url, query_bundle.query_str, k=self.k, filters=self.filters,
                             api_key=self.api_key, headers=self.headers, timeout_s=self.timeout_s))  # fmt: skip

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return _nodes(await asearch(self.base_url, query_bundle.query_str, k=self.k, filters=self.filters,
                                    api_key=self.api_key, headers=self.headers, timeout_s=self.timeout_s))  # fmt: skip
