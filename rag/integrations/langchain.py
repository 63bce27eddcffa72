"""A LangChain retriever over the service: ``RagServiceRetriever(base_url=..., api_key=...)``."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from rag.errors import MissingExtra
from rag.integrations.client import asearch, metadata, search

try:
    from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
    from langchain_core.documents import Document
    from langchain_core.retrievers import BaseRetriever
except ImportError as e:  # pragma: no cover - depends on the installed extras
    raise MissingExtra("langchain-core", "integrations") from e


class RagServiceRetriever(BaseRetriever):
    """Documents from ``POST /v1/search``, filtered by the caller's groups on the server."""

    base_url: str
    api_key: str | None = None
    k: int | None = None
    filters: dict[str, Any] = Field(default_factory=dict)
    headers: dict[str, str] = Field(default_factory=dict)
    timeout_s: float = 30.0

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        hits = search(self.base_url, query, k=self.k, filters=self.filters, api_key=self.api_key,
                      headers=self.headers, timeout_s=self.timeout_s)  # fmt: skip
        return [Document(page_content=h["text"], metadata=metadata(h), id=h["id"]) for h in hits]

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun
    ) -> list[Document]:
        hits = await asearch(self.base_url, query, k=self.k, filters=self.filters, api_key=self.api_key,
                             headers=self.headers, timeout_s=self.timeout_s)  # fmt: skip
        return [Document(page_content=h["text"], metadata=metadata(h), id=h["id"]) for h in hits]
