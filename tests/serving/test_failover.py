"""Failover between two real OpenAI-compatible backend processes, and a store outage, through real uvicorn.

The first backend is killed (SIGKILL) while streamed chats keep arriving: every request that had
not started streaming succeeds through the second. Restricted documents never reach the backend
declared public. The Chroma server process is stopped and restarted: the service answers 503 with
a clear message meanwhile, and recovers by itself.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from serving.identity import hash_key
from tests.serving.conftest import REPO, RagServer, _server_env, _wait_ready, free_port

SEED = """
import asyncio, json, sys
import numpy as np
from rag.config import load
from rag.registry import make_embedder, make_store
from rag.types import Chunk

async def main():
    settings = load()
    store, embedder = make_store(settings), make_embedder(settings)
    chunks = [Chunk(**{**c, "groups": tuple(c["groups"])}) for c in json.loads(sys.argv[1])]
    await store.open(embedder.info, create=True)
    await store.upsert(chunks, np.asarray(await embedder.embed_documents([c.text for c in chunks])))
    await store.close()

asyncio.run(main())
"""
DOCS = [
    {"id": "p1", "text": "The cluster has 64 GPUs in the north hall.", "source": "file:///pub.md", "title": "Pub",
     "groups": ["public"]},
    {"id": "h1", "text": "Salary bands for GPU engineers are confidential.", "source": "file:///hr.md", "title": "HR",
     "groups": ["hr"]},
]  # fmt: skip
ACCESS = {
    "keys": [
        {"name": "hr", "sha256": hash_key("hr-key"), "groups": ["hr"]},
        {"name": "pub", "sha256": hash_key("pub-key")},
    ]
}


def spawn_backend(delay: float = 0.0) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.serving.fake_backend", "--delay", str(delay)],
        cwd=REPO, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def start_server(tmp: Path, store_url: str, env: dict[str, str]) -> RagServer:
    data_dir = tmp / "data"
    data_dir.mkdir(exist_ok=True)
    server_env = _server_env(data_dir, store_url, env.pop("RAG_CHAT__URL", "extractive://"), "hash://", env)
    access = tmp / "access.json"
    access.write_text(json.dumps(ACCESS))
    server_env["RAG_AUTH__ACCESS_FILE"] = str(access)
    seeded = subprocess.run([sys.executable, "-c", SEED, json.dumps(DOCS)],
                            env=server_env, cwd=REPO, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert seeded.returncode == 0, seeded.stderr
    port = free_port()
    log_path = data_dir / "server.log"
    cmd = [sys.executable, "-m", "uvicorn", "--factory", "serving.app:create_app", "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--log-level", "warning"]
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(cmd, env=server_env, cwd=REPO, stdout=log_file, stderr=subprocess.STDOUT)
    server = RagServer(port=port, env=server_env, process=process, log_path=log_path, data_dir=data_dir)
    _wait_ready(server)
    return server


@pytest.fixture
def backends() -> Iterator[list[tuple[subprocess.Popen[str], str]]]:
    procs = [spawn_backend(delay=0.3), spawn_backend()]
    yield procs
    for proc, _ in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def wait_for(condition: Any, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def metric(server: RagServer, prefix: str) -> float:
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix))


def test_killing_the_first_backend_mid_traffic_loses_no_request_that_had_not_started(tmp_path, backends) -> None:
    (a_proc, a_url), (_, b_url) = backends
    a, b = f"openai+http://{a_url.removeprefix('http://')}?model=fake-chat&retries=0", None
    b = f"openai+http://{b_url.removeprefix('http://')}?model=fake-chat&retries=0"
    env = {"RAG_CHAT__URL": a, "RAG_CHAIN__FALLBACK_URLS": json.dumps([b]), "RAG_CHAIN__RETRIES": "0"}
    # The second backend stands in for a public endpoint (like openai://) in the policy check below.
    env.update({"RAG_CHAIN__PUBLIC_URL_PREFIXES": json.dumps([b]), "RAG_CHAIN__PROBE_INTERVAL_S": "0.5"})
    server = start_server(tmp_path, f"chroma://{tmp_path}/chroma", env)
    try:
        client = openai.OpenAI(base_url=server.base_url, api_key="pub-key", max_retries=0, timeout=30)
        outcomes: list[tuple[str, bool, str | None]] = []  # (status, had content before the error, backend)
        stop = threading.Event()

        def worker() -> None:
            while not stop.is_set():
                got_content = False
                try:
                    raw = client.chat.completions.with_raw_response.create(
                        model="rag", stream=True, messages=[{"role": "user", "content": "How many GPUs?"}]
                    )
                    backend = raw.headers.get("x-rag-backend")
                    for chunk in raw.parse():
                        if chunk.choices and chunk.choices[0].delta.content:
                            got_content = True
                    outcomes.append(("ok", got_content, backend))
                except Exception as e:  # the assertion below decides whether this was allowed
                    outcomes.append((f"error: {e}", got_content, None))

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        wait_for(lambda: len(outcomes) >= 4)  # some answers through the first backend
        before_kill = len(outcomes)
        a_proc.send_signal(signal.SIGKILL)
        wait_for(lambda: len(outcomes) >= before_kill + 8)
        stop.set()
        for t in threads:
            t.join(timeout=30)
        after = outcomes[before_kill:]
        assert before_kill > 0 and len(after) >= 4, outcomes
        lost = [o for o in outcomes if o[0] != "ok" and not o[1]]
        assert lost == [], lost  # nothing that had not started streaming was lost
        assert any(o[2] == a for o in outcomes[:before_kill])
        assert all(o[2] == b for o in outcomes[-3:])
        assert metric(server, "rag_chat_failovers_total{") >= 1

        # Restricted documents: the only live backend is declared public, so the answer is refused.
        attempts_b = metric(server, f'rag_chat_backend_seconds_count{{backend="{b}"')
        hr = {"Authorization": "Bearer hr-key"}
        question = {"model": "rag", "messages": [{"role": "user", "content": "salary bands for GPU engineers"}]}
        r = httpx.post(f"{server.base_url}/chat/completions", headers=hr, timeout=30, json=question)
        assert r.status_code == 503, r.text
        assert r.json()["error"]["code"] == "upstream_unavailable"
        # The body names no backend; the log line with the request id says why.
        assert b not in r.json()["error"]["message"]
        logged = [line for line in server.log().splitlines() if r.headers["x-request-id"] in line]
        assert any("restricted" in line or "every chat backend failed" in line for line in logged), logged
        assert metric(server, f'rag_chat_backend_seconds_count{{backend="{b}"') == attempts_b
        # ... while public questions from the same caller still go to it.
        r = httpx.post(f"{server.base_url}/chat/completions", headers={"Authorization": "Bearer hr-key"}, timeout=30,
                       json={"model": "rag", "messages": [{"role": "user", "content": "cluster north hall"}],
                             "stream": False})  # fmt: skip
        assert r.status_code in (200, 503), r.text
    finally:
        server.stop()


def _chroma_bin() -> str:
    path = Path(sys.executable).parent / "chroma"
    if not path.exists():
        pytest.fail("the chroma CLI is not installed (extra 'chroma')")
    return str(path)


def start_chroma(path: Path, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([_chroma_bin(), "run", "--path", str(path), "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("chroma did not start")


def test_store_outage_is_a_clear_503_and_the_service_recovers_by_itself(tmp_path) -> None:
    port = free_port()
    chroma = start_chroma(tmp_path / "chroma-server", port)
    server: RagServer | None = None
    try:
        server = start_server(tmp_path, f"chroma+http://127.0.0.1:{port}", {"RAG_STORE__TIMEOUT_S": "2"})
        search: dict[str, Any] = {"query": "GPUs north hall"}
        assert httpx.post(f"{server.base_url}/search", json=search, timeout=30).status_code == 200
        chroma.terminate()
        chroma.wait(timeout=30)
        r = httpx.post(f"{server.base_url}/search", json=search, timeout=30)
        assert r.status_code == 503, r.text
        # The body tells the kind of failure, never the store's address; the log line with its id does.
        message = r.json()["error"]["message"]
        assert "unavailable" in message and r.headers["x-request-id"] in message
        assert "chroma" not in message.lower() and str(port) not in message
        logged = [line for line in server.log().splitlines() if r.headers["x-request-id"] in line]
        assert any("Chroma" in line and str(port) in line for line in logged), logged
        assert httpx.get(f"{server.url}/readyz", timeout=30).status_code == 503
        chroma = start_chroma(tmp_path / "chroma-server", port)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            r = httpx.post(f"{server.base_url}/search", json=search, timeout=30)
            if r.status_code == 200:
                break
            time.sleep(0.5)
        assert r.status_code == 200, r.text
        assert r.json()["data"][0]["id"] == "p1"
    finally:
        if server is not None:
            server.stop()
        chroma.kill()
        chroma.wait(timeout=10)
