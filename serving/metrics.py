"""Prometheus metrics and the access log: one middleware sees every request, streaming included.

Metric names are the ones the Grafana dashboard in ``charts/onprem-rag/dashboards`` queries. Each
app has its own registry, so several apps (tests) in one process do not collide.
"""

from __future__ import annotations

import json
import logging
import time
from contextvars import ContextVar
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)
access_log = logging.getLogger("serving.access")

# The current request id, for every log line written while the request is handled.
REQUEST_ID: ContextVar[str | None] = ContextVar("rag_request_id", default=None)
# Timings of the current request that only the handler sees (time to first token), for its access line.
REQUEST_TIMINGS: ContextVar[dict[str, float] | None] = ContextVar("rag_request_timings", default=None)

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_FAST = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
# Routes with a fixed set of paths; anything else is counted as "other" (no label explosion).
_KNOWN_PREFIXES = ("/v1/", "/healthz", "/readyz", "/metrics", "/openapi.json", "/docs")


class FirstTokenHistogram:
    """The time-to-first-token histogram; each observation is also kept for the request's access line."""

    def __init__(self, histogram: Histogram) -> None:
        self.histogram = histogram

    def observe(self, seconds: float) -> None:
        """Record the time to the first answer token of the current request."""
        self.histogram.observe(seconds)
        timings = REQUEST_TIMINGS.get()
        if timings is not None:
            timings.setdefault("ttft_ms", round(seconds * 1000, 2))


class Metrics:
    """Every metric the service exports, in its own registry."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter(
            "rag_requests_total", "HTTP requests by route, model and status.", ["route", "model", "status"], registry=r
        )
        self.duration = Histogram(
            "rag_request_duration_seconds", "Request latency to the last byte.", ["route"], buckets=_LATENCY, registry=r
        )
        self.in_flight = Gauge("rag_requests_in_flight", "Requests being handled.", registry=r)
        self.ttft = FirstTokenHistogram(
            Histogram(
                "rag_time_to_first_token_seconds",
                "Request start to the first answer token.",
                buckets=_LATENCY,
                registry=r,
            )
        )
        self.retrieval = Histogram(
            "rag_retrieval_duration_seconds", "Embedding plus vector search per question.", buckets=_FAST, registry=r
        )
        self.backend = Histogram(
            "rag_chat_backend_seconds",
            "Chat backend time to first output (ok) or to failure (error).",
            ["backend", "outcome"],
            buckets=_LATENCY,
            registry=r,
        )
        self.failovers = Counter(
            "rag_chat_failovers_total", "Fail-overs between chat backends.", ["from_backend", "to_backend"], registry=r
        )
        self.tokens = Counter("rag_tokens_total", "Tokens by kind (prompt, completion).", ["kind"], registry=r)
        self.answers = Counter("rag_answers_total", "Retrieval-augmented answers given.", registry=r)
        self.empty_retrievals = Counter(
            "rag_empty_retrievals_total", "Questions for which nothing above min_score was found.", registry=r
        )
        self.uncited = Counter("rag_uncited_answers_total", "Answers that cite no source.", registry=r)

    def failover(self, from_backend: str, to_backend: str) -> None:
        """Count a fail-over (the chain's listener)."""
        self.failovers.labels(from_backend, to_backend).inc()

    def attempt(self, backend: str, outcome: str, seconds: float) -> None:
        """Time one backend attempt (the chain's listener)."""
        self.backend.labels(backend, outcome).observe(seconds)


def route_label(scope: Scope) -> str:
    """The matched route's path template, or ``other``."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    raw = scope.get("path", "")
    return raw if raw in ("/healthz", "/readyz", "/metrics") else "other"


class MetricsMiddleware:
    """Counts and times each request until its last byte and writes one access-log line."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Observe the request."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500
        done = False
        m = self.metrics
        m.in_flight.inc()
        timings: dict[str, float] = {}
        token = REQUEST_TIMINGS.set(timings)

        def finish() -> None:
            nonlocal done
            if done:
                return
            done = True
            m.in_flight.dec()
            elapsed = time.perf_counter() - start
            state = scope.get("state", {})
            route = route_label(scope)
            model = str(state.get("model") or "")
            m.requests.labels(route, model, str(status)).inc()
            m.duration.labels(route).observe(elapsed)
            access_log.log(
                logging.WARNING if status in (401, 403) else logging.INFO,
                "%s %s %d",
                scope.get("method"),
                scope.get("path"),
                status,
                extra=access_fields(scope, status, elapsed, timings),
            )

        async def observe(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                finish()

        try:
            await self.app(scope, receive, observe)
        finally:
            finish()
            REQUEST_TIMINGS.reset(token)


def access_fields(scope: Scope, status: int, elapsed_s: float, timings: dict[str, float]) -> dict[str, Any]:
    """The fields of one access line: who asked (e-mail or key name), what, with which backend, how it went."""
    state = scope.get("state", {})
    return {
        "request_id": state.get("request_id"),
        "method": scope.get("method"),
        "path": scope.get("path"),
        "route": route_label(scope),
        "status": status,
        "duration_ms": round(elapsed_s * 1000, 2),
        "ttft_ms": timings.get("ttft_ms"),
        "model": state.get("model") or None,
        "backend": state.get("backend"),
        "principal": state.get("principal"),
        "principal_kind": state.get("principal_kind"),
        "auth_error": state.get("auth_error"),
    }


class RequestIdFilter(logging.Filter):
    """Adds the current request id to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Attach ``request_id``."""
        if not hasattr(record, "request_id"):
            record.request_id = REQUEST_ID.get()
        return True


# uvicorn adds ``color_message`` (its message with terminal colours) to its records: not for a log file.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "color_message"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id and any ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        """Render the record."""
        out: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and value is not None:
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def configure_logging(level: str, fmt: str) -> None:
    """Log to stderr as JSON (or text), with request ids; only when nothing configured logging yet."""
    root = logging.getLogger()
    if root.handlers:
        for handler in root.handlers:
            if not any(isinstance(f, RequestIdFilter) for f in handler.filters):
                handler.addFilter(RequestIdFilter())
        return
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.captureWarnings(True)  # library warnings become log lines in the same format
