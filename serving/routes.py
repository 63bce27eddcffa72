"""HTTP routes: thin wrappers that convert between the wire models and the pipeline."""

from __future__ import annotations

import asyncio
import base64
import logging
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from rag.errors import InvalidRequest, NotFound, RagError
from rag.pipeline import Pipeline
from rag.types import FILTERABLE_FIELDS, Filter, ScoredChunk
from serving import chat
from serving.identity import acl_filter, caller_groups
from serving.wire import (
    ChatCompletion,
    ChatCompletionRequest,
    EmbeddingData,
    EmbeddingRequest,
    EmbeddingResponse,
    EmbeddingUsage,
    ErrorResponse,
    ModelCard,
    ModelList,
    RagModelInfo,
    SearchHit,
    SearchRequest,
    SearchResponse,
)

log = logging.getLogger(__name__)

BACKEND_HEADER = "X-RAG-Backend"
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 404, 413, 500, 502, 503, 504)
}

router = APIRouter()


def get_pipeline(request: Request) -> Pipeline:
    """The pipeline built by the app's lifespan."""
    return request.app.state.pipeline  # type: ignore[no-any-return]


PipelineDep = Annotated[Pipeline, Depends(get_pipeline)]
GroupsDep = Annotated[tuple[str, ...], Depends(caller_groups)]


def _model_card(request: Request, pipeline: Pipeline) -> ModelCard:
    return ModelCard(
        id=pipeline.settings.server.model_name,
        created=request.app.state.started_at,
        rag=RagModelInfo(
            chat_backend=pipeline.chat.name, collection=pipeline.store.name, embedder=pipeline.embedder.info.id
        ),
    )


@router.get("/v1/models", response_model=ModelList, tags=["openai"])
async def list_models(request: Request, pipeline: PipelineDep) -> ModelList:
    """The one model this service serves (with our ``rag`` extension)."""
    return ModelList(data=[_model_card(request, pipeline)])


@router.get("/v1/models/{model_id:path}", response_model=ModelCard, responses=_ERRORS, tags=["openai"])
async def get_model(model_id: str, request: Request, pipeline: PipelineDep) -> ModelCard:
    """One model by id."""
    chat.check_model(model_id, pipeline)
    return _model_card(request, pipeline)


@router.post(
    "/v1/chat/completions",
    response_model=ChatCompletion,
    responses={**_ERRORS, 200: {"content": {"text/event-stream": {}}}},
    tags=["openai"],
)
async def chat_completions(
    body: ChatCompletionRequest, request: Request, pipeline: PipelineDep, groups: GroupsDep
) -> Response:
    """Answer from the documents the caller may read, citing them; streamed as SSE when asked."""
    chat.check_model(body.model, pipeline)
    messages = chat.to_messages(body)
    events = await chat.events_for(pipeline, messages, chat.to_params(body), acl_filter(groups))
    headers = {BACKEND_HEADER: pipeline.chat.name}
    if not body.stream:
        completion = await chat.complete(events, body.model, messages)
        return JSONResponse(completion.model_dump(mode="json"), headers=headers)
    # Take the first event before answering so a backend that fails at once still gets a status.
    first = await anext(events)
    stream = chat.stream_sse(
        first, events, body.model, messages, body.wants_usage(), getattr(request.state, "request_id", None)
    )
    headers.update({"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    return StreamingResponse(stream, media_type="text/event-stream", headers=headers)


@router.post("/v1/embeddings", response_model=EmbeddingResponse, responses=_ERRORS, tags=["openai"])
async def embeddings(body: EmbeddingRequest, pipeline: PipelineDep) -> EmbeddingResponse:
    """Embed texts with the collection's embedder (as passages)."""
    info = pipeline.embedder.info
    if body.model not in (pipeline.settings.server.model_name, info.id):
        raise NotFound(
            f"the model '{body.model}' does not exist; use '{pipeline.settings.server.model_name}' or '{info.id}'",
            param="model",
            code="model_not_found",
        )
    if body.dimensions is not None and body.dimensions != info.dim:
        raise InvalidRequest(
            f"this embedder has {info.dim} dimensions; it cannot give {body.dimensions}", param="dimensions"
        )
    texts = body.texts()
    vectors = np.asarray(await pipeline.embedder.embed_documents(texts), dtype="<f4")
    data = [
        EmbeddingData(
            index=i,
            embedding=base64.b64encode(vec.tobytes()).decode() if body.encoding_format == "base64" else vec.tolist(),
        )
        for i, vec in enumerate(vectors)
    ]
    tokens = sum(chat.estimate_tokens(t) for t in texts)
    usage = EmbeddingUsage(prompt_tokens=tokens, total_tokens=tokens)
    return EmbeddingResponse(data=data, model=body.model, usage=usage)


def search_filter(filters: dict[str, Any], groups: tuple[str, ...]) -> Filter:
    """The caller's ACL plus the requested metadata filters; an unknown field is refused."""
    unknown = sorted(set(filters) - FILTERABLE_FIELDS)
    if unknown:
        known = ", ".join(sorted(FILTERABLE_FIELDS))
        raise InvalidRequest(f"unknown filter field(s) {', '.join(unknown)}; known: {known}", param="filters")
    sources: tuple[str, ...] | None = None
    where: dict[str, str | int] = {}
    for key, value in filters.items():
        if key == "source":
            sources = (value,) if isinstance(value, str) else tuple(value)
        elif isinstance(value, list):
            raise InvalidRequest(f"filter '{key}' takes one value, not a list", param=f"filters.{key}")
        else:
            where[key] = value
    return Filter(groups=acl_filter(groups).groups, sources=sources, where=where)


def _hit(h: ScoredChunk) -> SearchHit:
    c = h.chunk
    return SearchHit(
        id=c.id,
        score=round(h.score, 6),
        text=c.text,
        source=c.source,
        title=c.title,
        section=c.section,
        page=c.page,
        index=c.index,
        lang=c.lang,
    )


@router.post("/v1/search", response_model=SearchResponse, responses=_ERRORS, tags=["rag"])
async def search(body: SearchRequest, pipeline: PipelineDep, groups: GroupsDep) -> SearchResponse:
    """Scored chunks for a query, best first, without generation."""
    hits = await pipeline.search(body.query, body.k, search_filter(body.filters, groups))
    return SearchResponse(query=body.query, data=[_hit(h) for h in hits])


@router.get("/healthz", tags=["ops"])
async def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get("/readyz", tags=["ops"], responses={503: {"description": "not ready, with reasons"}})
async def readyz(pipeline: PipelineDep) -> JSONResponse:
    """Ready when the collection opens and the chat backend answers its health check."""
    reasons: list[str] = []
    try:
        await pipeline.ensure_open()
    except RagError as e:
        reasons.append(f"store: {e.message}")
    try:
        if not await asyncio.wait_for(pipeline.chat.health(), timeout=5.0):
            reasons.append(f"chat backend {pipeline.chat.name} is not healthy")
    except (RagError, TimeoutError) as e:
        reasons.append(f"chat backend {pipeline.chat.name}: {getattr(e, 'message', None) or 'health check timed out'}")
    if reasons:
        return JSONResponse({"status": "not ready", "reasons": reasons}, status_code=503)
    return JSONResponse({"status": "ready"})
