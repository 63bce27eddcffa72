"""HTTP routes: thin wrappers that convert between the wire models and the pipeline."""

from __future__ import annotations

import asyncio
import base64
import logging
import sqlite3
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ingest.sync import forget_sources
from rag import chain
from rag.config import Settings
from rag.errors import InvalidRequest, NotFound, RagError, UpstreamTimeout
from rag.pipeline import Answer, Pipeline
from rag.types import FILTERABLE_FIELDS, PUBLIC_GROUP, Delta, Filter, GenParams, Message, ScoredChunk, validate_filter
from rag.versions import live_settings
from serving import chat, completions
from serving.errors import public_reason
from serving.identity import Principal, acl_filter, require
from serving.metrics import Metrics
from serving.profiles import pick
from serving.wire import (
    ChatCompletion,
    ChatCompletionRequest,
    Completion,
    CompletionRequest,
    DeleteResponse,
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
# The metrics' model label for a request naming no model we serve: labels take validated values only,
# so callers cannot grow /metrics by inventing model names.
UNKNOWN_MODEL = "unknown"
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 401, 403, 404, 413, 429, 500, 502, 503, 504)
}

router = APIRouter()

# Dependencies are ``async def``: FastAPI runs a plain ``def`` dependency in a worker thread, a
# thread hop per dependency per request (measured: most of the per-request overhead on 2 cores).


async def get_pipeline(request: Request) -> Pipeline:
    """The pipeline built by the app's lifespan."""
    return request.app.state.pipeline  # type: ignore[no-any-return]


async def get_metrics(request: Request) -> Metrics:
    """The app's metrics."""
    return request.app.state.metrics  # type: ignore[no-any-return]


async def get_settings(request: Request) -> Settings:
    """The app's settings."""
    return request.app.state.settings  # type: ignore[no-any-return]


PipelineDep = Annotated[Pipeline, Depends(get_pipeline)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
CallerDep = Annotated[Principal, Depends(require(None))]
ChatCallerDep = Annotated[Principal, Depends(require("chat"))]
SearchCallerDep = Annotated[Principal, Depends(require("search"))]
EmbedCallerDep = Annotated[Principal, Depends(require("embed"))]
AdminDep = Annotated[Principal, Depends(require("admin"))]


def get_pipelines(request: Request) -> dict[str, Pipeline]:
    """Every profile's pipeline by model id, the default first."""
    return request.app.state.pipelines  # type: ignore[no-any-return]


def _model_card(request: Request, pipeline: Pipeline) -> ModelCard:
    return ModelCard(
        id=pipeline.settings.server.model_name,
        created=request.app.state.started_at,
        rag=RagModelInfo(
            chat_backend=pipeline.chat.name, collection=pipeline.store.name, embedder=pipeline.embedder.info.id
        ),
    )


@router.get("/v1/models", response_model=ModelList, tags=["openai"])
async def list_models(request: Request, caller: CallerDep) -> ModelList:
    """One model per RAG profile (with our ``rag`` extension: collection, chat backend, embedder)."""
    return ModelList(data=[_model_card(request, p) for p in get_pipelines(request).values()])


@router.get("/v1/models/{model_id:path}", response_model=ModelCard, responses=_ERRORS, tags=["openai"])
async def get_model(model_id: str, request: Request, caller: CallerDep) -> ModelCard:
    """One model by id."""
    return _model_card(request, pick(get_pipelines(request), model_id))


@router.post(
    "/v1/chat/completions",
    response_model=ChatCompletion,
    responses={**_ERRORS, 200: {"content": {"text/event-stream": {}}}},
    tags=["openai"],
)
async def chat_completions(
    body: ChatCompletionRequest,
    request: Request,
    caller: ChatCallerDep,
    metrics: MetricsDep,
    settings: SettingsDep,
) -> Response:
    """Answer from the documents the caller may read, citing them; streamed as SSE when asked."""
    request.state.model = UNKNOWN_MODEL
    pipeline = pick(get_pipelines(request), body.model)
    request.state.model = pipeline.settings.server.model_name
    messages = chat.to_messages(body)
    run = await _generate(request, pipeline, messages, chat.to_params(body), caller, metrics, settings, body.stream)
    if isinstance(run, tuple):
        first, events, backend = run
        stream = chat.stream_sse(first, events, body.model, messages, body.wants_usage(), _request_id(request))
        return _sse_response(stream, backend)
    completion = chat.complete(run, body.model, messages)
    return JSONResponse(chat.completion_json(completion), headers={BACKEND_HEADER: request.state.backend})


@router.post(
    "/v1/completions",
    response_model=Completion,
    responses={**_ERRORS, 200: {"content": {"text/event-stream": {}}}},
    tags=["openai"],
)
async def legacy_completions(
    body: CompletionRequest,
    request: Request,
    caller: ChatCallerDep,
    metrics: MetricsDep,
    settings: SettingsDep,
) -> Response:
    """Legacy completions: the prompt is answered as a question, with citations (same ACL as chat)."""
    request.state.model = UNKNOWN_MODEL
    pipeline = pick(get_pipelines(request), body.model)
    request.state.model = pipeline.settings.server.model_name
    messages = completions.to_messages(body)
    run = await _generate(
        request, pipeline, messages, completions.to_params(body), caller, metrics, settings, body.stream
    )
    if isinstance(run, tuple):
        first, events, backend = run
        stream = completions.stream_sse(first, events, body.model, messages, body.wants_usage(), _request_id(request))
        return _sse_response(stream, backend)
    result = completions.complete(run, body.model, messages)
    return JSONResponse(result, headers={BACKEND_HEADER: request.state.backend})


def _request_id(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


def _sse_response(stream: AsyncIterator[bytes], backend: str) -> StreamingResponse:
    headers = {BACKEND_HEADER: backend, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream, media_type="text/event-stream", headers=headers)


async def _generate(
    request: Request,
    pipeline: Pipeline,
    messages: tuple[Message, ...],
    params: GenParams,
    caller: Principal,
    metrics: Metrics,
    settings: Settings,
    stream: bool,
) -> Answer | tuple[Delta | Answer, chat.Events, str]:
    """Retrieve and generate under the request deadline.

    Non-streaming: the final answer. Streaming: the first event (taken before answering, so a backend
    that fails at once still gets a status and the chain can still fail over), the rest, and the
    backend that answered.
    """
    limits = settings.limits
    chat.check_size(messages, limits.max_messages, limits.max_input_tokens)
    started = time.perf_counter()
    deadline = asyncio.get_running_loop().time() + limits.request_timeout_s
    with chain.trace() as route:
        try:
            async with asyncio.timeout_at(deadline):
                raw = await chat.events_for(pipeline, messages, params, acl_filter(caller.groups))
        except TimeoutError as e:
            raise UpstreamTimeout("the request took longer than limits.request_timeout_s allows") from e
        events = chat.observed(raw, metrics, started, deadline)
        if not stream:
            answer = await chat.final_answer(events)
        else:
            first = await anext(events)
    backend = route.backend or pipeline.chat.name
    request.state.backend = backend
    return answer if not stream else (first, events, backend)


@router.post("/v1/embeddings", response_model=EmbeddingResponse, responses=_ERRORS, tags=["openai"])
async def embeddings(
    body: EmbeddingRequest, request: Request, pipeline: PipelineDep, caller: EmbedCallerDep
) -> EmbeddingResponse:
    """Embed texts with the collection's embedder (as passages)."""
    request.state.model = UNKNOWN_MODEL
    pipeline = get_pipelines(request).get(body.model, pipeline)
    info = pipeline.embedder.info
    if body.model not in (pipeline.settings.server.model_name, info.id):
        raise NotFound(
            f"the model '{body.model}' does not exist; use '{pipeline.settings.server.model_name}' or '{info.id}'",
            param="model",
            code="model_not_found",
        )
    request.state.model = body.model
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
    flt = Filter(groups=acl_filter(groups).groups, sources=sources, where=where)
    try:  # before the query is embedded, and naming the field as the caller sent it
        validate_filter(flt)
    except InvalidRequest as e:
        raise InvalidRequest(e.message, param=(e.param or "").replace("where.", "filters.", 1) or "filters") from e
    return flt


def search_hit(h: ScoredChunk) -> SearchHit:
    """One scored chunk as the search API (and the MCP search tool) returns it."""
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
async def search(
    body: SearchRequest, request: Request, pipeline: PipelineDep, caller: SearchCallerDep, metrics: MetricsDep
) -> SearchResponse:
    """Scored chunks for a query, best first, without generation (``model`` picks a profile's collection)."""
    if body.model is not None:
        request.state.model = UNKNOWN_MODEL
        pipeline = pick(get_pipelines(request), body.model)
        request.state.model = body.model
    started = time.perf_counter()
    hits = await pipeline.search(body.query, body.k, search_filter(body.filters, caller.groups))
    metrics.retrieval.observe(time.perf_counter() - started)
    return SearchResponse(query=body.query, data=[search_hit(h) for h in hits])


@router.delete("/v1/sources", response_model=DeleteResponse, responses=_ERRORS, tags=["rag"])
async def delete_sources(
    pipeline: PipelineDep, caller: AdminDep, source: Annotated[list[str], Query(min_length=1)]
) -> DeleteResponse:
    """Remove every chunk of the given source documents (needs the ``admin`` scope).

    The ingester's sync state forgets them too, so the next ``rag ingest`` adds back any that are
    still in the source (delete them there to keep them out).
    """
    await pipeline.ensure_open()
    deleted = await pipeline.store.delete_sources(source)
    try:
        forgotten = await asyncio.to_thread(_forget, pipeline.settings, source)
    except (OSError, sqlite3.Error) as e:
        raise RagError(
            f"deleted {deleted} chunks of {len(source)} source(s), but the sync state was not updated ({e}); "
            "repeat the request, or the next ingest may skip them"
        ) from e
    log.info(
        "%s deleted %d chunks of %d source(s), forgot %d sync record(s)", caller.id, deleted, len(source), forgotten
    )
    return DeleteResponse(deleted=deleted, sources=source)


def _forget(settings: Settings, sources: list[str]) -> int:
    """Forget the sources in the sync state the ingester keeps for the live collection (its version, if any)."""
    live = live_settings(settings)
    return forget_sources(live.data_dir, live.store.url, live.store.collection, sources)


@router.get("/metrics", tags=["ops"], response_class=Response, responses={200: {"content": {"text/plain": {}}}})
async def prometheus_metrics(metrics: MetricsDep, settings: SettingsDep) -> Response:
    """Prometheus metrics in the text exposition format."""
    if not settings.telemetry.metrics:
        raise NotFound("metrics are switched off (telemetry.metrics)")
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/healthz", tags=["ops"])
async def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get("/readyz", tags=["ops"], responses={503: {"description": "not ready, with reasons"}})
async def readyz(pipeline: PipelineDep) -> JSONResponse:
    """Ready when the store answers a real query (vector and lexical) and the chat backend is healthy.

    The reasons say what kind of failure (like every 5xx body, no paths or addresses); the log has the detail.
    """
    reasons: list[str] = []

    async def probe_store() -> None:
        # A real query, as a caller's would run: count() can answer while searches fail (a vector index
        # out of step with the metadata, a damaged segment), and the ACL filter takes the filtered path.
        dim = pipeline.embedder.info.dim
        flt = acl_filter((PUBLIC_GROUP,))
        await pipeline.store.search(np.full(dim, dim**-0.5, dtype=np.float32), 1, flt)
        await pipeline.store.search_text("readiness probe", 1, flt)

    try:
        await pipeline.ensure_open()
        await asyncio.wait_for(probe_store(), timeout=5.0)
    except RagError as e:
        log.warning("not ready: the store failed a query (%s %s): %s", e.status, e.code, e.message)
        reasons.append(f"store: {public_reason(e.status, e.code)}")
    except TimeoutError:
        reasons.append("store: no answer within 5 s")
    try:
        if not await asyncio.wait_for(pipeline.chat.health(), timeout=5.0):
            log.warning("not ready: chat backend %s failed its health check", pipeline.chat.name)
            reasons.append("chat backend: not healthy")
    except (RagError, TimeoutError) as e:
        log.warning("not ready: chat backend %s: %s", pipeline.chat.name, getattr(e, "message", None) or "timed out")
        reasons.append("chat backend: health check failed or timed out")
    if reasons:
        return JSONResponse({"status": "not ready", "reasons": reasons}, status_code=503)
    return JSONResponse({"status": "ready"})
