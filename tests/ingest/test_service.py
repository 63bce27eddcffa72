"""Worker mode: `rag worker` as a real process, its health and metrics endpoints, graceful SIGTERM."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from ingest.service import failure_reason
from ingest.worker import ingest_source
from rag.config import Settings
from rag.embedders.hashing import HashingEmbedder
from rag.stores.memory import MemoryStore
from tests.ingest.conftest import DOCS
from tests.procs import free_port

RAG = Path(sys.executable).parent / "rag"


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.split(" ")[0] == name:
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in metrics")


def _wait(url: str, status: int = 200, timeout: float = 60) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            r = httpx.get(url, timeout=2)
            if r.status_code == status:
                return r
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} never answered {status}")


def test_worker_syncs_on_interval_serves_health_and_metrics_and_stops_on_sigterm(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    shutil.copytree(DOCS, docs)
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4 truncated")
    port = free_port()
    env = {
        **os.environ,
        "RAG_DATA_DIR": str(tmp_path / "data"),
        "RAG_STORE__URL": f"chroma://{tmp_path}/data/chroma",
        "RAG_EMBED__URL": "hash://?dim=64",
    }
    proc = subprocess.Popen(
        [str(RAG), "worker", str(docs), "--interval", "1", "--watch", "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        _wait(f"{base}/healthz")
        _wait(f"{base}/readyz")
        text = httpx.get(f"{base}/metrics").text
        assert _metric(text, 'rag_ingest_documents_total{status="added"}') == 12
        assert _metric(text, 'rag_ingest_failures_total{reason="damaged"}') >= 1
        assert _metric(text, "rag_ingest_last_success_timestamp_seconds") > 0
        assert _metric(text, "rag_ingest_lag_seconds") >= 0
        (docs / "new.md").write_text("# New\n\nA new document arrives.\n")
        deadline = time.monotonic() + 30
        while _metric(httpx.get(f"{base}/metrics").text, 'rag_ingest_documents_total{status="added"}') < 13:
            assert time.monotonic() < deadline, "the new document was never picked up"
            time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_stop_request_finishes_the_batch_in_flight_and_a_rerun_completes(
    settings: Settings, corpus: Path
) -> None:
    space: dict = {}
    embedder = HashingEmbedder(64)
    stop = asyncio.Event()
    seen: list[str] = []

    def progress(status: str, source: str) -> None:
        seen.append(status)
        if len(seen) == 3:
            stop.set()

    report = await ingest_source(
        settings, MemoryStore("docs", space), embedder, str(corpus), progress=progress, stop=stop
    )
    assert report.interrupted and 3 <= report.added < 12 and report.deleted == 0
    rest = await ingest_source(settings, MemoryStore("docs", space), embedder, str(corpus))
    assert rest.added + report.added == 12 and rest.unchanged == report.added and not rest.interrupted


def test_failure_reasons_map_to_a_small_label_set() -> None:
    assert failure_reason("truncated PDF (no %%EOF marker at the end)") == "damaged"
    assert failure_reason("encrypted PDF (a password is needed to read it)") == "encrypted"
    assert failure_reason("file is 2.0 MiB, above the 1 MiB limit (max_file_mb)") == "too_large"
    assert failure_reason("cannot read: Permission denied") == "unreadable"
    assert failure_reason("something new") == "other"
