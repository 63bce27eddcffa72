"""The MCP server: tools ``search`` and ``ask``, and the collection's documents as resources.

Served as streamable HTTP at ``/mcp`` on the service (:func:`mount`) and over stdio by ``rag mcp``
(:func:`run_stdio`). Both identify the caller with the service's :class:`Authenticator` (API key or
Open WebUI's forwarded identity; on stdio, the key the process was started with) and run the same
``Pipeline.search`` / ``Pipeline.prepare`` as the HTTP routes with the caller's ``Filter(groups=...)``,
so the ACL is part of every store query. Scopes: ``search`` for the search tool and the resources,
``chat`` for ask. A failed tool call is an MCP tool error carrying the HTTP API's message.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import mcp_types as types
import numpy as np
from fastapi import FastAPI
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPError
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from rag.config import Settings
from rag.errors import Forbidden, InvalidRequest, NotFound, RagError, UpstreamTimeout, UpstreamUnavailable
from rag.pipeline import Pipeline
from rag.types import Filter, GenParams, Message
from serving import chat
from serving.errors import describe_validation, translate
from serving.identity import Authenticator, Principal, acl_filter
from serving.metrics import Metrics
from serving.profiles import pick
from serving.routes import search_filter, search_hit
from serving.wire import SearchHit, SearchRequest, SourceRef, WireRequest

log = logging.getLogger(__name__)

PATH = "/mcp"
# Documents listed per resources/list page: each costs one ACL-filtered store query.
RESOURCE_PAGE = 100
# A resource read returns at most this many chunks (Milvus caps one search at 16384 results).
MAX_READ_CHUNKS = 16384
RESOURCE_NOT_FOUND = -32002
# JSON-RPC's implementation-defined server error range; MCP names no code for refused credentials.
AUTH_ERROR = -32001
LOOPBACK = ("127.0.0.1", "localhost", "::1")


class AskArgs(WireRequest):
    """Arguments of the ``ask`` tool."""

    model_config = ConfigDict(extra="forbid")

    question: str = Field(min_length=1, description="The question, answered from the documents the caller may read.")
    model: str | None = Field(None, description="A model id from /v1/models: answers from that profile's collection.")


class SearchResult(BaseModel):
    """What the ``search`` tool returns."""

    query: str
    hits: list[SearchHit]


class AskResult(BaseModel):
    """What the ``ask`` tool returns: the answer with ``[n]`` markers and the sources they cite."""

    answer: str
    sources: list[SourceRef]
    model: str


@dataclass(frozen=True)
class ToolSpec:
    """One tool: its arguments, its result and the scope it needs."""

    name: str
    scope: str
    args: type[WireRequest]
    result: type[BaseModel]
    description: str

    def tool(self) -> types.Tool:
        """The MCP description of this tool."""
        return types.Tool(
            name=self.name,
            description=self.description,
            input_schema=self.args.model_json_schema(),
            output_schema=self.result.model_json_schema(),
        )


TOOLS = {
    "search": ToolSpec(
        "search",
        "search",
        SearchRequest,
        SearchResult,
        "Search the documents the caller may read: scored passages, best first, each with its id, text, "
        "source URI, title, section and page. 'filters' narrows by source, title, section, page or lang.",
    ),
    "ask": ToolSpec(
        "ask",
        "chat",
        AskArgs,
        AskResult,
        "Answer a question from the documents the caller may read: the answer cites passages as [n], "
        "and 'sources' lists each cited passage with its source URI, title, section and page.",
    ),
}


@dataclass
class McpContext:
    """What the handlers need: the pipelines, how to identify the caller, and where to count."""

    pipelines: Callable[[], Mapping[str, Pipeline]]  # by model id, the default first
    authenticator: Authenticator
    settings: Settings
    metrics: Metrics | None = None
    # stdio: the fixed credentials of the process; None on HTTP, where each request carries its own.
    fixed_headers: Mapping[str, str] | None = None

    def caller(self, ctx: Any, scope: str | None, *, limited: bool = True) -> Principal:
        """The authenticated caller of this MCP request, holding ``scope``; rate-limited when ``limited``."""
        request = getattr(ctx, "request", None)
        if self.fixed_headers is not None:
            headers: Mapping[str, str] = self.fixed_headers
            client = "stdio"
        elif request is not None:
            headers, client = request.headers, (request.client.host if request.client else "")
        else:  # pragma: no cover - the HTTP transport always attaches the request
            raise RuntimeError("an MCP request over HTTP without its HTTP request")
        principal = self.authenticator.identify(headers)
        if not principal.allows(scope):
            raise Forbidden(f"this caller lacks the '{scope}' scope", code="insufficient_scope")
        if limited:
            self.authenticator.limit(principal, client)
        return principal

    def pipeline(self, model: str | None) -> Pipeline:
        """The default pipeline, or the profile named ``model``."""
        pipelines = self.pipelines()
        return pick(pipelines, model) if model is not None else next(iter(pipelines.values()))


def _request_id(ctx: Any) -> str | None:
    """The HTTP request id (the one in the service log), if this MCP request came over HTTP."""
    state = getattr(getattr(ctx, "request", None), "state", None)
    return getattr(state, "request_id", None)


def _message(exc: BaseException, ctx: Any) -> tuple[int, str]:
    """Status and message the HTTP API would send for ``exc`` (a 5xx without internals, logged, as there)."""
    status, body, _ = translate(exc, _request_id(ctx))
    return status, str(body["error"]["message"])


def _mcp_error(exc: BaseException, ctx: Any) -> MCPError:
    status, message = _message(exc, ctx)
    code = RESOURCE_NOT_FOUND if isinstance(exc, NotFound) else types.INVALID_PARAMS
    return MCPError(types.INTERNAL_ERROR if status >= 500 else code, message)


def _validated(spec: ToolSpec, arguments: Mapping[str, Any] | None) -> Any:
    try:
        return spec.args.model_validate(dict(arguments or {}))
    except ValidationError as e:
        message, param = describe_validation(e.errors())
        raise InvalidRequest(message, param=param) from e


def _where(section: str, page: int | None) -> str:
    parts = [section] if section else []
    if page is not None:
        parts.append(f"p. {page}")
    return f" ({', '.join(parts)})" if parts else ""


async def _search(mc: McpContext, args: SearchRequest, caller: Principal) -> tuple[str, BaseModel]:
    pipeline = mc.pipeline(args.model)
    started = time.perf_counter()
    hits = await pipeline.search(args.query, args.k, search_filter(args.filters, caller.groups))
    if mc.metrics is not None:
        mc.metrics.retrieval.observe(time.perf_counter() - started)
    result = SearchResult(query=args.query, hits=[search_hit(h) for h in hits])
    lines = [
        f"[{i}] {h.title or h.source}{_where(h.section, h.page)} score {h.score:.3f} id {h.id}\n"
        f"source: {h.source}\n{h.text}"
        for i, h in enumerate(result.hits, 1)
    ]
    return "\n\n".join(lines) or "No passage the caller may read matches the query.", result


async def _ask(mc: McpContext, args: AskArgs, caller: Principal) -> tuple[str, BaseModel]:
    pipeline = mc.pipeline(args.model)
    messages = (Message(role="user", content=args.question),)
    limits = mc.settings.limits
    chat.check_size(messages, limits.max_messages, limits.max_input_tokens)
    started = time.perf_counter()
    deadline = asyncio.get_running_loop().time() + limits.request_timeout_s
    try:
        async with asyncio.timeout_at(deadline):
            events = await chat.events_for(pipeline, messages, GenParams(), acl_filter(caller.groups))
    except TimeoutError as e:
        raise UpstreamTimeout("the request took longer than limits.request_timeout_s allows") from e
    if mc.metrics is not None:
        events = chat.observed(events, mc.metrics, started, deadline)
    model = pipeline.settings.server.model_name
    async with asyncio.timeout_at(deadline):
        completion = chat.complete(await chat.final_answer(events), model, messages)
    answer = completion.choices[0].message.content or ""
    result = AskResult(answer=answer, sources=completion.sources or [], model=model)
    cited = [f"[{s.n}] {s.title}{_where(s.section, s.page)}: {s.source}" for s in result.sources]
    return answer + ("\n\nSources:\n" + "\n".join(cited) if cited else ""), result


_RUN: dict[str, Callable[[McpContext, Any, Principal], Awaitable[tuple[str, BaseModel]]]] = {
    "search": _search,
    "ask": _ask,
}


def _neutral(pipeline: Pipeline) -> np.ndarray:
    """A query vector equally near every chunk: listing by filter through the seam's filtered search."""
    dim = pipeline.embedder.info.dim
    return np.full(dim, dim**-0.5, dtype=np.float32)


async def _list_resources(mc: McpContext, caller: Principal, cursor: str | None) -> types.ListResourcesResult:
    pipeline = mc.pipeline(None)
    await pipeline.ensure_open()
    try:
        offset = int(cursor or 0)
    except ValueError as e:
        raise InvalidRequest(f"the cursor {cursor!r} is not one this server gave") from e
    sources = sorted(await pipeline.store.sources())
    page = sources[offset : offset + RESOURCE_PAGE]
    vector = _neutral(pipeline)
    resources = []
    for source in page:
        # The ACL is part of the query: a document the caller may not read gives no hit and is not listed.
        found = await pipeline.store.search(vector, 1, Filter(groups=caller.groups, sources=(source,)))
        if found:
            title = found[0].chunk.title or source
            resources.append(types.Resource(uri=source, name=title, title=title, mime_type="text/plain"))
    more = offset + RESOURCE_PAGE < len(sources)
    return types.ListResourcesResult(resources=resources, next_cursor=str(offset + RESOURCE_PAGE) if more else None)


async def _read_resource(mc: McpContext, caller: Principal, uri: str) -> types.ReadResourceResult:
    pipeline = mc.pipeline(None)
    await pipeline.ensure_open()
    flt = Filter(groups=caller.groups, sources=(uri,))
    n = await pipeline.store.count(flt)
    if n == 0:  # the same answer for a document that does not exist and one the caller may not read
        raise NotFound(f"no document '{uri}' that this caller may read", param="uri")
    hits = await pipeline.store.search(_neutral(pipeline), min(n, MAX_READ_CHUNKS), flt)
    chunks = sorted((h.chunk for h in hits), key=lambda c: c.index)
    text = "\n\n".join(c.text for c in chunks)
    if len(chunks) < n:
        log.warning("resource %s: read %d of its %d chunks", uri, len(chunks), n)
        text += f"\n\n[{n - len(chunks)} more passages not shown]"
    return types.ReadResourceResult(contents=[types.TextResourceContents(uri=uri, mime_type="text/plain", text=text)])


def build_server(mc: McpContext) -> Server[Any]:
    """The MCP server over ``mc``: tools, resources, the same identity and ACL as the HTTP API."""

    async def list_tools(ctx: Any, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        try:
            caller = mc.caller(ctx, None, limited=False)
        except Exception as e:
            raise _mcp_error(e, ctx) from e
        return types.ListToolsResult(tools=[s.tool() for s in TOOLS.values() if caller.allows(s.scope)])

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        spec = TOOLS.get(params.name)
        try:
            if spec is None:
                raise NotFound(f"no tool '{params.name}'; the tools are {', '.join(TOOLS)}", param="name")
            caller = mc.caller(ctx, spec.scope)
            args = _validated(spec, params.arguments)
            text, result = await _RUN[spec.name](mc, args, caller)
        except Exception as e:
            # Tool errors, not protocol errors: the model reads the message and can correct its call.
            status, message = _message(e, ctx)
            log.info("MCP tool %s failed (%d): %s", params.name, status, message)
            return types.CallToolResult(content=[types.TextContent(text=message)], is_error=True)
        structured = result.model_dump(mode="json")
        return types.CallToolResult(content=[types.TextContent(text=text)], structured_content=structured)

    async def list_resources(ctx: Any, params: types.PaginatedRequestParams | None) -> types.ListResourcesResult:
        try:
            return await _list_resources(mc, mc.caller(ctx, "search"), params.cursor if params else None)
        except Exception as e:
            raise _mcp_error(e, ctx) from e

    async def read_resource(ctx: Any, params: types.ReadResourceRequestParams) -> types.ReadResourceResult:
        try:
            return await _read_resource(mc, mc.caller(ctx, "search"), str(params.uri))
        except Exception as e:
            raise _mcp_error(e, ctx) from e

    return Server(
        "onprem-rag",
        version="0.1.0",
        instructions="Search and ask over the documents you may read; answers cite them as [n].",
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_list_resources=list_resources,
        on_read_resource=read_resource,
    )


class AuthGate:
    """Refuses an MCP HTTP request whose credentials the service refuses (401), before MCP reads it.

    The body is a JSON-RPC error (MCP clients show its message) whose ``data`` is the HTTP API's error
    object. Each MCP request is identified again from its own headers by the handlers (scopes, rate limit).
    """

    def __init__(self, app: ASGIApp, authenticator: Authenticator) -> None:
        self.app = app
        self.authenticator = authenticator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Identify the caller; refuse it or pass the request on."""
        if scope["type"] == "http":
            state = scope.setdefault("state", {})
            try:
                state["principal"] = self.authenticator.identify(Headers(scope=scope)).id
            except RagError as e:
                status, body, headers = translate(e, state.get("request_id"))
                if status == 401:
                    headers["WWW-Authenticate"] = "Bearer"
                error = {"code": AUTH_ERROR, "message": body["error"]["message"], "data": body["error"]}
                reply = {"jsonrpc": "2.0", "id": None, "error": error}
                await JSONResponse(reply, status_code=status, headers=headers)(scope, receive, send)
                return
        await self.app(scope, receive, send)


class McpHttp:
    """The ``/mcp`` endpoint: a session manager per app lifespan, run in a task of its own.

    The SDK's manager holds an anyio task group, which must be left by the task that entered it; run
    in its own task, the app's lifespan may be entered and left from different tasks (as tests do).
    Stateless with JSON responses: any replica answers any request, there is no session to pin.
    """

    def __init__(self, server: Server[Any], settings: Settings) -> None:
        self.server = server
        self.security: TransportSecuritySettings | None = None
        if settings.server.host in LOOPBACK:  # DNS-rebinding protection where only local pages could reach it
            self.security = TransportSecuritySettings(
                enable_dns_rebinding_protection=True,
                allowed_hosts=["127.0.0.1:*", "localhost:*", "[::1]:*"],
                allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"],
            )
        self.max_body = settings.server.max_request_kb * 1024
        self.manager: StreamableHTTPSessionManager | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Hand the request to the running manager."""
        if self.manager is None:
            raise UpstreamUnavailable("the MCP endpoint is not running (the service is starting or stopping)")
        await self.manager.handle_request(scope, receive, send)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Run a fresh session manager for the duration of the block."""
        manager = StreamableHTTPSessionManager(
            app=self.server,
            json_response=True,
            stateless=True,
            security_settings=self.security,
            max_request_body_size=self.max_body,
        )
        started, stop = asyncio.Event(), asyncio.Event()

        async def run() -> None:
            async with manager.run():
                self.manager = manager
                started.set()
                await stop.wait()

        task = asyncio.create_task(run(), name="mcp-session-manager")
        waiter = asyncio.create_task(started.wait())
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if task.done():  # it failed to start: raise its error here
            await task
        try:
            yield
        finally:
            self.manager = None
            stop.set()
            await task


def mount(app: FastAPI, settings: Settings) -> Callable[[], AbstractAsyncContextManager[None]]:
    """Serve MCP at ``/mcp`` on ``app``; returns the context manager the app's lifespan must enter."""
    mc = McpContext(
        pipelines=lambda: app.state.pipelines,
        authenticator=app.state.authenticator,
        settings=settings,
        metrics=app.state.metrics,
    )
    endpoint = McpHttp(build_server(mc), settings)
    # A Route, not a Mount: the endpoint is exactly /mcp (a Mount would answer /mcp/ only, after a redirect).
    gate = AuthGate(endpoint, mc.authenticator)
    app.router.routes.append(Route(PATH, gate, methods=["GET", "POST", "DELETE"], include_in_schema=False))
    return endpoint.running


def stdio_headers(api_key: str | None) -> dict[str, str]:
    """The credentials a stdio server presents for every request: its API key, if it was given one."""
    return {"authorization": f"Bearer {api_key}"} if api_key else {}


async def run_stdio(settings: Settings, api_key: str | None) -> None:
    """Serve MCP on stdin/stdout as the caller the API key names (or anonymous), until stdin closes."""
    from mcp.server.stdio import stdio_server

    from rag.chain import build_chain
    from serving.profiles import profile_settings

    authenticator = Authenticator(settings.auth, settings.limits.rate_per_minute)
    headers = stdio_headers(api_key)
    principal = authenticator.identify(headers)  # a bad key, or none where one is required, fails at start
    log.info("MCP over stdio as %s (groups %s)", principal.id, ", ".join(principal.groups))
    pipelines: dict[str, Pipeline] = {}
    try:
        for profile in (settings, *(profile_settings(settings, p) for p in settings.server.profiles)):
            built = await Pipeline.build(profile)
            built.chat = build_chain(profile, built.chat)  # fallbacks, retries, breakers, as the service has
            pipelines[profile.server.model_name] = built
        mc = McpContext(
            pipelines=lambda: pipelines, authenticator=authenticator, settings=settings, fixed_headers=headers
        )
        server = build_server(mc)
        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options())
    finally:
        for built in pipelines.values():
            await built.close()
