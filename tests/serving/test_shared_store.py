"""The service and other processes on one embedded store: refused cleanly, never a broken service.

Real processes throughout: ``uvicorn`` serving the app, the ``rag`` command line (ingest, ask, worker),
on embedded Chroma and on Milvus Lite. An embedded store serves one process at a time, so whichever
opens it first holds it; a second process is refused with a message naming the holder, and the holder
keeps answering. The hashing embedder (process safety, not meaning, is under test); Korean queries
go to BM25 alone, as they do with the bundled English-only MiniLM.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from rag.config import Settings
from rag.registry import make_embedder, make_store
from rag.types import Chunk
from tests.procs import free_port, stop
from tests.serving.conftest import REPO, RagServer, _server_env

pytestmark = pytest.mark.slow  # a dozen real processes

RAG = Path(sys.executable).parent / "rag"
ENV = {"RAG_RETRIEVAL__DENSE_LANGUAGES": '["en"]'}

EN = ("How long may a GPU job run in the batch queue?", "gpu-cluster-policy.md")
KO = ("체크포인트는 얼마나 자주 저장하나요?", "gpu-usage-ko.md")
NEW_EN = ("Where is the blue widget stored?", "widgets.md")
NEW_KO = ("파란색 부품은 어디에 보관하나요?", "warehouse-ko.md")


@pytest.fixture(scope="module")
def docs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("docs")
    for name in ("gpu-cluster-policy.md", "gpu-usage-ko.md", "oncall-runbook.md", "nas-storage-guide.md"):
        shutil.copy(REPO / "examples" / "docs" / name, root / name)
    return root


@pytest.fixture(scope="module")
def new_docs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("new-docs")
    (root / "widgets.md").write_text(
        "# Warehouse widgets\n\nThe blue widget is stored in bin 42 of the north warehouse.\n", encoding="utf-8"
    )
    (root / "warehouse-ko.md").write_text(
        "# 창고 안내\n\n파란색 부품은 북쪽 창고 42번 선반에 보관합니다.\n", encoding="utf-8"
    )
    return root


def _search(server: RagServer, query: str) -> list[dict[str, Any]]:
    with server.http() as client:
        r = client.post("/v1/search", json={"query": query, "k": 3})
    assert r.status_code == 200, r.text
    return r.json()["data"]  # type: ignore[no-any-return]


def _top(server: RagServer, query: str) -> str:
    hits = _search(server, query)
    return str(hits[0]["source"]).rsplit("/", 1)[-1] if hits else ""


def _get(server: RagServer, path: str) -> httpx.Response:
    with server.http() as client:
        return client.get(path)


def _rag(env: dict[str, str], *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """The real command line, with a server's settings."""
    return subprocess.run([str(RAG), *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)


def _assert_refused(done: subprocess.CompletedProcess[str], holder_pid: int) -> None:
    assert done.returncode == 3, (done.returncode, done.stdout[-1000:], done.stderr[-2000:])
    message = " ".join(done.stderr.split())  # rich wraps long lines
    assert "store_locked" in message and "is in use by another process" in message
    assert f"pid {holder_pid} " in message
    assert "stop that process" in message and "chroma+http://" in message and "milvus://" in message


@pytest.fixture(scope="module")
def server(start_rag_server: Callable[..., RagServer], store_url: str, docs: Path) -> RagServer:
    srv = start_rag_server(store_url, docs=docs, env=ENV)
    # The service opens its store on first use; a readiness probe is that first use.
    r = _get(srv, "/readyz")
    assert r.status_code == 200, r.text
    return srv


def test_an_ingest_while_serving_is_refused_naming_the_service_which_keeps_answering(
    server: RagServer, new_docs: Path
) -> None:
    before = {q: _search(server, q) for q, _ in (EN, KO)}
    assert _top(server, EN[0]) == EN[1] and _top(server, KO[0]) == KO[1]

    refused = _rag(server.env, "ingest", str(new_docs))
    _assert_refused(refused, server.process.pid)
    assert "uvicorn" in " ".join(refused.stderr.split())  # the holder's command line

    # Unaffected: the same dense and Korean (BM25-only) answers, nothing half-written, still ready.
    assert {q: _search(server, q) for q, _ in (EN, KO)} == before
    assert _top(server, NEW_EN[0]) != NEW_EN[1] and _top(server, NEW_KO[0]) != NEW_KO[1]
    assert _get(server, "/readyz").status_code == 200


def test_ask_and_worker_are_refused_the_same_way(server: RagServer, new_docs: Path) -> None:
    _assert_refused(_rag(server.env, "ask", EN[0]), server.process.pid)
    port = str(free_port())
    worker = _rag(server.env, "worker", str(new_docs), "--interval", "3600", "--port", port)
    _assert_refused(worker, server.process.pid)
    assert _top(server, EN[0]) == EN[1]


def test_a_second_service_on_the_same_store_is_not_ready_and_says_why(
    server: RagServer, start_rag_server: Callable[..., RagServer]
) -> None:
    second = start_rag_server(server.env["RAG_STORE__URL"], env=ENV)
    ready = _get(second, "/readyz")
    assert ready.status_code == 503
    # Callers learn what kind of failure; the holder (pid, command) is on the service's log line, not in the body.
    reasons = " ".join(ready.json()["reasons"])
    assert "is in use by another process" in reasons and str(server.process.pid) not in reasons
    assert f"pid {server.process.pid} " in second.log()
    with second.http() as client:
        r = client.post("/v1/search", json={"query": EN[0]})
    assert r.status_code == 503 and r.json()["error"]["code"] == "store_locked"
    second.stop()
    assert _top(server, EN[0]) == EN[1]  # the first one never noticed


def test_once_the_service_is_killed_an_ingest_runs_and_a_new_service_sees_its_chunks(
    server: RagServer, new_docs: Path, start_rag_server: Callable[..., RagServer]
) -> None:
    server.process.kill()  # SIGKILL: no clean close; the kernel drops the lock with the process
    server.process.wait(timeout=30)
    done = _rag(server.env, "ingest", str(new_docs))
    assert done.returncode == 0, done.stderr[-2000:]
    fresh = start_rag_server(server.env["RAG_STORE__URL"], env=ENV)
    assert _get(fresh, "/readyz").status_code == 200
    for query, source in (EN, KO, NEW_EN, NEW_KO):
        assert _top(fresh, query) == source, (query, _search(fresh, query))


def _wait_status(url: str, status: int, proc: subprocess.Popen[str], timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        try:
            if httpx.get(url, timeout=2).status_code == status:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} never answered {status}")


def test_a_service_started_while_a_worker_holds_the_store_answers_503_then_recovers_by_itself(
    start_rag_server: Callable[..., RagServer], tmp_path: Path, docs: Path
) -> None:
    data = tmp_path / "data"
    url = f"chroma://{data}/chroma"
    env = _server_env(data, url, "extractive://", "hash://", ENV)
    port = free_port()
    worker = subprocess.Popen(
        [str(RAG), "worker", str(docs), "--interval", "3600", "--port", str(port)],
        env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        _wait_status(f"http://127.0.0.1:{port}/readyz", 200, worker)  # its first sync is done
        service = start_rag_server(url, env=ENV)
        ready = _get(service, "/readyz")
        assert ready.status_code == 503 and "in use by another process" in " ".join(ready.json()["reasons"])
        with service.http() as client:
            r = client.post("/v1/search", json={"query": EN[0]})
        assert r.status_code == 503 and r.json()["error"]["code"] == "store_locked"
        assert "in use by another process" in r.json()["error"]["message"]
        assert f"pid {worker.pid} " in service.log() and "rag worker" in service.log()
    finally:
        stop(worker)  # type: ignore[arg-type]
    assert worker.returncode == 0
    # No restart: the next request opens the store the worker let go of.
    assert _get(service, "/readyz").status_code == 200
    assert _top(service, EN[0]) == EN[1] and _top(service, KO[0]) == KO[1]


def test_readyz_fails_when_the_store_cannot_answer_a_query_though_it_can_count(
    start_rag_server: Callable[..., RagServer], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    url = f"chroma://{data}/chroma"
    settings = Settings(data_dir=data, store={"url": url}, embed={"url": "hash://"})  # type: ignore[arg-type]
    _seed(settings, 1200)  # Chroma persists its HNSW files every 1000 writes
    # Damage the vector index: its id map goes missing (a disk error, a bad copy); the metadata is intact.
    pickles = list((data / "chroma").glob("*/index_metadata.pickle"))
    assert len(pickles) == 1
    pickles[0].unlink()
    service = start_rag_server(url, env=ENV)
    ready = _get(service, "/readyz")
    assert ready.status_code == 503, ready.text
    assert any(
        reason.startswith("store: ") and "answered with an error" in reason for reason in ready.json()["reasons"]
    )
    assert "Chroma at" in service.log() and "Chroma at" not in ready.text
    with service.http() as client:
        assert client.post("/v1/search", json={"query": "note seven"}).status_code == 502  # what callers see


def _seed(settings: Settings, n: int) -> None:
    async def go() -> None:
        store, embedder = make_store(settings), make_embedder(settings)
        await store.open(embedder.info, create=True)
        try:
            chunks = [
                Chunk(id=f"n{i}", text=f"note {i} about topic {i % 10}", source=f"file:///n/{i}.md") for i in range(n)
            ]
            await store.upsert(chunks, await embedder.embed_documents([c.text for c in chunks]))
            assert await store.count() == n
        finally:
            await store.close()

    asyncio.run(go())
