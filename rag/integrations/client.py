"""The small HTTP client both framework retrievers share: ``POST /v1/search`` with the caller's credentials."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from rag.errors import RagError, UpstreamUnavailable


def _request(base_url: str, query: str, k: int | None, filters: Mapping[str, Any] | None,
             api_key: str | None, headers: Mapping[str, str] | None) -> dict[str, Any]:  # fmt: skip
    body: dict[str, Any] = {"query": query, "filters": dict(filters or {})}
    if k is not None:
        body["k"] = k
    hdrs = dict(headers or {})
    if api_key:
        hdrs["Authorization"] = f"Bearer {api_key}"
    return {"url": base_url.rstrip("/") + "/search", "json": body, "headers": hdrs}


def _hits(response: httpx.Response) -> list[dict[str, Any]]:
    if response.status_code != 200:
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text[:200]
        err = RagError(f"search failed ({response.status_code}): {message}")
        err.status = response.status_code
        raise err
    return list(response.json()["data"])


def search(base_url: str, query: str, *, k: int | None = None, filters: Mapping[str, Any] | None = None,
           api_key: str | None = None, headers: Mapping[str, str] | None = None,
           timeout_s: float = 30.0) -> list[dict[str, Any]]:  # fmt: skip
    """Hits for ``query`` from the service at ``base_url`` (``http://host:8000/v1``), best first."""
    try:
        r = httpx.post(**_request(base_url, query, k, filters, api_key, headers), timeout=timeout_s)
    except httpx.TransportError as e:
        raise UpstreamUnavailable(f"the RAG service at {base_url} cannot be reached: {e}") from e
    return _hits(r)


async def asearch(base_url: str, query: str, *, k: int | None = None, filters: Mapping[str, Any] | None = None,
                  api_key: str | None = None, headers: Mapping[str, str] | None = None,
                  timeout_s: float = 30.0) -> list[dict[str, Any]]:  # fmt: skip
    """Async :func:`search`."""
    try:
        async with httpx.AsyncClient(timeout=timeout_s) as client:
            r = await client.post(**_request(base_url, query, k, filters, api_key, headers))
    except httpx.TransportError as e:
        raise UpstreamUnavailable(f"the RAG service at {base_url} cannot be reached: {e}") from e
    return _hits(r)


def metadata(hit: Mapping[str, Any]) -> dict[str, Any]:
    """The hit's citation fields as document metadata."""
    keys = ("id", "source", "title", "section", "page", "index", "lang", "score")
    return {k: hit[k] for k in keys if hit.get(k) not in (None, "")}
