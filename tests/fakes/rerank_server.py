"""A protocol-faithful fake of a reranking endpoint: TEI's ``POST /rerank`` and vLLM/KServe's ``POST /v1/rerank``.

TEI: request ``{"query", "texts", "raw_scores"?, "return_text"?}``, response a list of
``{"index", "score"}`` sorted by score, best first. vLLM (Cohere/Jina style, served by KServe under
``/openai/v1/rerank``): request ``{"model", "query", "documents", "top_n"?}``, response
``{"id", "model", "usage", "results": [{"index", "document": {"text"}, "relevance_score"}]}``.
Scores here are word overlap between query and text (deterministic, no model).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tests.fakes._serve import FailureModes


def overlap(query: str, text: str) -> float:
    """Share of the query's words found in the text."""
    q = set(query.lower().split())
    return len(q & set(text.lower().split())) / len(q) if q else 0.0


class FakeRerankServer(FailureModes):
    """Both rerank wire formats on one app; records the bodies it received."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[dict[str, Any]] = []
        self.app = FastAPI()
        self.app.post("/rerank")(self._tei)
        self.app.post("/v1/rerank")(self._vllm)

    async def _tei(self, request: Request) -> Any:
        body = await request.json()
        self.requests.append(body)
        if (f := self.take_failure()) is not None:
            return JSONResponse({"error": f.message, "error_type": "Backend"}, status_code=f.status)
        texts = body["texts"]
        scored = [{"index": i, "score": overlap(body["query"], t)} for i, t in enumerate(texts)]
        return sorted(scored, key=lambda r: -r["score"])

    async def _vllm(self, request: Request) -> Any:
        body = await request.json()
        self.requests.append(body)
        if (f := self.take_failure()) is not None:
            return JSONResponse({"object": "error", "message": f.message, "code": f.status}, status_code=f.status)
        docs = body["documents"]
        results = [
            {"index": i, "document": {"text": d}, "relevance_score": overlap(body["query"], d)}
            for i, d in enumerate(docs)
        ]
        results.sort(key=lambda r: -r["relevance_score"])
        top_n = body.get("top_n") or len(results)
        return {
            "id": "rerank-fake",
            "model": body.get("model", "fake-reranker"),
            "usage": {"total_tokens": sum(len(d.split()) for d in docs)},
            "results": results[:top_n],
        }
