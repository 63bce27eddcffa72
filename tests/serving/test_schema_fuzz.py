"""Schemathesis against /openapi.json, in process: generated requests to every route, never a 5xx.

The app runs over the real memory store, hashing embedder and extractive answerer (no rate limit),
so every generated request reaches the route's own validation.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from serving.app import create_app
from tests.serving.conftest import make_settings, seeded_pipeline

EXAMPLES_PER_OPERATION = 250  # small operations (GET /healthz) run out of inputs early


def _app():  # type: ignore[no-untyped-def]
    tmp = Path(tempfile.mkdtemp(prefix="rag-fuzz-"))
    cfg = make_settings(tmp, chat={"url": "extractive://"})
    from rag.registry import make_chat

    pipeline = asyncio.run(seeded_pipeline(cfg, make_chat(cfg, "extractive://")))  # type: ignore[arg-type]
    app = create_app(cfg, pipeline=pipeline)
    app.state.pipeline = pipeline  # what the lifespan does; schemathesis' ASGI client does not run it
    return app


schema = schemathesis.openapi.from_asgi("/openapi.json", _app())


def test_no_generated_request_to_any_route_gets_a_server_error() -> None:
    calls: dict[str, int] = {}
    for result in schema.get_all_operations():
        operation = result.ok()

        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        @given(case=operation.as_strategy())
        def no_5xx(case: schemathesis.Case) -> None:
            response = case.call()
            calls[case.operation.label] = calls.get(case.operation.label, 0) + 1
            case.validate_response(response, checks=[not_a_server_error])

        no_5xx()
    # Every operation was exercised, over a thousand requests in all.
    assert set(calls) == {r.ok().label for r in schema.get_all_operations()}, calls
    assert sum(calls.values()) >= 1000, calls
