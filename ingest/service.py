"""Worker mode: sync a source on an interval (or on file changes), with health and Prometheus metrics.

``rag worker SOURCE`` runs ``ingest_source`` again and again until SIGTERM/SIGINT; a stop request
lets the document batch in flight finish, so a rolling restart never leaves pending writes behind
(and if the pod is killed anyway, the sync protocol repairs it on the next run).

HTTP (a small threaded server, no framework): ``/healthz`` answers 200 while the process runs,
``/readyz`` 200 once a sync has completed (the collection is usable), ``/metrics`` Prometheus text.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from ingest.loaders import path_of
from ingest.worker import IngestReport, ingest_source
from rag.config import Settings
from rag.errors import RagError
from rag.seams import Embedder, VectorStore

log = logging.getLogger(__name__)

# Reason text -> a small, fixed label set (a label per distinct message would explode the series).
_REASONS = (
    ("above the", "too_large"),
    ("ACL", "acl"),
    ("symbolic link", "link"),
    ("not a regular file", "special_file"),
    ("cannot read", "unreadable"),
    ("cannot list", "unreadable"),
    ("cannot stat", "unreadable"),
    ("encrypted", "encrypted"),
    ("binary", "binary"),
    ("undecodable", "encoding"),
    ("invalid", "encoding"),
    ("no text", "empty"),
    ("empty", "empty"),
    ("truncated", "damaged"),
    ("unreadable", "damaged"),
    ("not a PDF", "damaged"),
    ("parser error", "parser_bug"),
)


def failure_reason(reason: str) -> str:
    """The metric label for a failure reason."""
    return next((label for needle, label in _REASONS if needle in reason), "other")


class WorkerMetrics:
    """The worker's Prometheus series, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.documents = Counter(
            "rag_ingest_documents", "Documents processed, by outcome.", ["status"], registry=self.registry
        )
        self.failures = Counter(
            "rag_ingest_failures", "Documents or runs that failed, by reason.", ["reason"], registry=self.registry
        )
        self.chunks = Counter("rag_ingest_chunks_embedded", "Chunks embedded.", registry=self.registry)
        self.runs = Counter("rag_ingest_runs", "Sync runs, by result.", ["result"], registry=self.registry)
        self.last_success = Gauge(
            "rag_ingest_last_success_timestamp_seconds", "When the last successful sync finished.",
            registry=self.registry,
        )  # fmt: skip
        self.duration = Gauge("rag_ingest_run_duration_seconds", "Length of the last sync.", registry=self.registry)
        lag = Gauge(
            "rag_ingest_lag_seconds",
            "Seconds since the start of the last successful sync (changes made after it may be missing).",
            registry=self.registry,
        )
        self.synced_from = 0.0
        lag.set_function(lambda: time.time() - self.synced_from if self.synced_from else float("nan"))
        self.ready = False

    def observe(self, report: IngestReport, started: float) -> None:
        """Count one finished run."""
        for status in ("added", "updated", "regrouped", "deleted", "unchanged"):
            self.documents.labels(status).inc(getattr(report, status))
        self.documents.labels("skipped").inc(len(report.skipped))
        self.documents.labels("failed").inc(len(report.failed))
        for _, reason in report.failed:
            self.failures.labels(failure_reason(reason)).inc()
        self.chunks.inc(report.chunks_embedded)
        self.duration.set(report.seconds)
        if report.interrupted:
            self.runs.labels("interrupted").inc()
            return
        self.runs.labels("partial" if report.failed else "ok").inc()
        self.last_success.set(time.time())
        self.synced_from = started
        self.ready = True


def start_http(metrics: WorkerMetrics, host: str, port: int) -> ThreadingHTTPServer:
    """Serve /healthz, /readyz and /metrics from a daemon thread; returns the server (its port may be 0 -> real)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics":
                self._send(200, generate_latest(metrics.registry), CONTENT_TYPE_LATEST)
            elif self.path == "/healthz":
                self._send(200, b"ok\n")
            elif self.path == "/readyz":
                self._send(200, b"ready\n") if metrics.ready else self._send(503, b"no sync has completed yet\n")
            else:
                self._send(404, b"not found\n")

        def _send(self, status: int, body: bytes, ctype: str = "text/plain; charset=utf-8") -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("http: " + format, *args)

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="worker-http", daemon=True).start()
    return server


async def _changes(source: str, changed: asyncio.Event, stop: asyncio.Event) -> None:
    """Set ``changed`` whenever files under a local source change (watchfiles, debounced)."""
    from watchfiles import awatch

    async for _ in awatch(path_of(source), stop_event=stop, debounce=2000, recursive=True):
        changed.set()


async def run_worker(
    settings: Settings,
    store: VectorStore,
    embedder: Embedder,
    source: str,
    *,
    interval_s: float,
    watch: bool = False,
    host: str = "127.0.0.1",
    port: int = 9108,
    shard: tuple[int, int] | None = None,
) -> WorkerMetrics:
    """Sync until SIGTERM or SIGINT; returns the metrics."""
    stop, changed = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    metrics = WorkerMetrics()
    server = start_http(metrics, host, port)
    log.info("worker metrics on http://%s:%d/metrics", host, server.server_address[1])
    watcher = asyncio.create_task(_changes(source, changed, stop)) if watch and "://" not in source else None
    try:
        while not stop.is_set():
            started = time.time()
            changed.clear()
            try:
                report = await ingest_source(settings, store, embedder, source, shard=shard, stop=stop)
                metrics.observe(report, started)
            except RagError as e:  # a store or source outage: report, wait, try again
                log.error("sync failed: %s", e.message)
                metrics.runs.labels("error").inc()
                metrics.failures.labels("run_" + type(e).__name__).inc()
            waits = [asyncio.create_task(stop.wait()), asyncio.create_task(changed.wait())]
            await asyncio.wait(waits, timeout=interval_s, return_when=asyncio.FIRST_COMPLETED)
            for task in waits:
                task.cancel()
    finally:
        if watcher is not None:
            stop.set()
            watcher.cancel()
        server.shutdown()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    log.info("worker stopped")
    return metrics
