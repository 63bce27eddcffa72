"""The app factory: ``uvicorn --factory serving.app:create_app``."""

from __future__ import annotations

import importlib.resources
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from rag.chain import build_chain
from rag.config import Settings, load
from rag.pipeline import Pipeline
from serving import errors, mcp
from serving.identity import Authenticator
from serving.metrics import Metrics, MetricsMiddleware, configure_logging
from serving.middleware import (
    LIMITS_KEY,
    BodyLimitMiddleware,
    HeadCheckMiddleware,
    HeaderLimits,
    RequestIdMiddleware,
)
from serving.profiles import profile_settings
from serving.routes import router

log = logging.getLogger(__name__)


def _static_dir() -> Path | None:
    """``ui/static`` as installed with the package (found as a resource, not imported as code)."""
    try:
        path = Path(str(importlib.resources.files("ui") / "static"))
    except ModuleNotFoundError:
        return None
    return path if (path / "index.html").is_file() else None


def create_app(settings: Settings | None = None, *, pipeline: Pipeline | None = None) -> FastAPI:
    """Build the service. ``pipeline``, when given (tests), is used as is and not closed by the app."""
    settings = settings or (pipeline.settings if pipeline is not None else load())
    # Under plain uvicorn nothing configures the root logger; rag.* and serving.* log through it.
    configure_logging(settings.log_level, settings.telemetry.log_format)
    metrics = Metrics()
    authenticator = Authenticator(settings.auth, settings.limits.rate_per_minute)
    head_limits = HeaderLimits.of(settings.server)

    async def build(profile: Settings) -> Pipeline:
        built = await Pipeline.build(profile)
        # Every generation goes through the chain: fallbacks, retries, breakers, bounded concurrency.
        built.chat = build_chain(profile, built.chat, on_failover=metrics.failover, on_attempt=metrics.attempt)
        return built

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        pipelines: dict[str, Pipeline] = {}
        try:
            if pipeline is None:
                pipelines[settings.server.model_name] = await build(settings)
                for profile in settings.server.profiles:
                    pipelines[profile.name] = await build(profile_settings(settings, profile))
            else:
                pipelines[settings.server.model_name] = pipeline
            app.state.pipeline = pipelines[settings.server.model_name]
            app.state.pipelines = pipelines
            async with mcp_running():
                # The lifespan state reaches the server: serving.protocol reads the head limits from it.
                yield {LIMITS_KEY: head_limits}
        finally:
            if pipeline is None:
                for built in pipelines.values():
                    await built.close()

    app = FastAPI(
        title="onprem-rag",
        summary="OpenAI-compatible retrieval-augmented chat over your own documents.",
        version="0.1.0",
        lifespan=lifespan,
        openapi_url="/openapi.json",
        strict_content_type=False,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.authenticator = authenticator
    app.state.started_at = int(time.time())
    app.include_router(router)
    mcp_running = mcp.mount(app, settings)
    _mount_ui(app)
    # Added last = outermost: the request id is set before anything else can fail.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.server.max_request_kb * 1024)
    app.add_middleware(HeadCheckMiddleware, limits=head_limits)
    errors.install(app)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(RequestIdMiddleware)
    return app


def _mount_ui(app: FastAPI) -> None:
    static = _static_dir()

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        if static is None:
            raise HTTPException(404, "the web page is not installed (ui/static/index.html is missing)")
        return FileResponse(static / "index.html", headers={"Cache-Control": "no-cache"})

    if static is not None:
        app.mount("/static", StaticFiles(directory=static), name="static")
    else:
        log.warning("ui/static not found: the web page at / is disabled")
