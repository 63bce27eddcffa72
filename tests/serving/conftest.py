"""Service fixtures: an in-process app over scripted doubles, and a real uvicorn process.

Real-process API (reusable by the end-to-end tests):

* ``start_rag_server(store_url=..., docs=DIR, chat_url=..., embed_url=..., env=...)`` — a
  module-scoped factory fixture: ingests ``docs`` (if given) with ``ingest.worker.ingest_source``
  in a child process, then runs ``python -m uvicorn --factory serving.app:create_app`` on a free
  port with ``RAG_*`` variables pointing at a fresh tmp data dir; returns a :class:`RagServer`
  (``url``, ``base_url``, ``openai()``, ``http()``, ``env``, ``data_dir``, ``log()``). Every
  server it started is stopped at the end of the test module.
* ``store_url`` — parametrized over the on-disk stores (``chroma://``, ``milvus+lite://``); a
  ``memory://`` store lives inside one process, so a separate server process would never see
  documents ingested here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from openai import OpenAI

from rag.config import Settings
from rag.pipeline import Pipeline
from rag.registry import make_embedder, make_store
from rag.types import Chunk
from serving.app import create_app
from tests.procs import free_port, stop
from tests.serving.doubles import ScriptedChat

REPO = Path(__file__).resolve().parents[2]
MODEL = "rag"

# Three public passages and one that only 'hr' may read.
DOCS: tuple[Chunk, ...] = (
    Chunk(id="a1", text="The cluster has 64 GPUs in the north hall.", source="file:///docs/cluster.md",
          title="Cluster guide", section="Hardware", page=None),
    Chunk(id="a2", text="Jobs are submitted with the queue command.", source="file:///docs/cluster.md",
          title="Cluster guide", section="Jobs"),
    Chunk(id="b1", text="The GPU budget is reviewed every quarter.", source="file:///docs/budget.pdf",
          title="Budget", page=3),
    Chunk(id="s1", text="Salary bands for GPU engineers are confidential.", source="file:///hr/salaries.md",
          title="Salaries", groups=("hr",)),
)  # fmt: skip


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Settings for an in-process app: a private named memory store and the hashing embedder."""
    values: dict[str, Any] = {
        "data_dir": tmp_path,
        "store": {"url": f"memory://?name={uuid.uuid4().hex}", "collection": "docs"},
        "embed": {"url": "hash://"},
        "chat": {"url": "extractive://"},
        "retrieval": {"k": 3, "min_score": 0.0},
    }
    values.update(overrides)
    return Settings(**values)


@dataclass
class Service:
    """An in-process app with its doubles."""

    client: httpx.AsyncClient
    chat: ScriptedChat
    pipeline: Pipeline
    app: Any


async def seeded_pipeline(settings: Settings, chat: ScriptedChat, chunks: tuple[Chunk, ...] = DOCS) -> Pipeline:
    """A pipeline over the real memory store and hashing embedder, holding ``chunks``."""
    store, embedder = make_store(settings), make_embedder(settings)
    await store.open(embedder.info, create=True)
    if chunks:
        vectors = await embedder.embed_documents([c.text for c in chunks])
        await store.upsert(list(chunks), np.asarray(vectors))
    return Pipeline(settings, store, embedder, chat)


@pytest.fixture
def scripted_chat() -> ScriptedChat:
    """The chat double; tests change its script before calling."""
    return ScriptedChat()


@pytest.fixture
async def service(tmp_path: Path, scripted_chat: ScriptedChat) -> AsyncIterator[Service]:
    """The app in process, lifespan running, reached through httpx's ASGI transport."""
    settings = make_settings(tmp_path, server={"max_request_kb": 64})
    pipeline = await seeded_pipeline(settings, scripted_chat)
    app = create_app(settings, pipeline=pipeline)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield Service(client, scripted_chat, pipeline, app)


# --------------------------------------------------------------------------------------------------
# Real process
# --------------------------------------------------------------------------------------------------


@dataclass
class RagServer:
    """A running ``uvicorn`` process serving the app."""

    port: int
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    log_path: Path
    data_dir: Path
    _clients: list[OpenAI] = field(default_factory=list)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI base URL (``.../v1``)."""
        return f"{self.url}/v1"

    def openai(self, **kwargs: Any) -> OpenAI:
        """The official client pointed at this server."""
        client = OpenAI(base_url=self.base_url, api_key="x", max_retries=0, timeout=60, **kwargs)
        self._clients.append(client)
        return client

    def http(self) -> httpx.Client:
        """A plain HTTP client for non-OpenAI routes (caller closes it)."""
        return httpx.Client(base_url=self.url, timeout=60)

    def log(self) -> str:
        """Everything the server printed so far."""
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL)."""
        for client in self._clients:
            client.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def _server_env(data_dir: Path, store_url: str, chat_url: str, embed_url: str, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update(
        {
            "RAG_DATA_DIR": str(data_dir),
            "RAG_STORE__URL": store_url,
            "RAG_CHAT__URL": chat_url,
            "RAG_EMBED__URL": embed_url,
            "RAG_RETRIEVAL__MIN_SCORE": "0.0",
            "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p),
        }
    )
    env.update(extra)
    return env


_INGEST = """
import asyncio, sys
from ingest.worker import ingest_source
from rag.config import load
from rag.registry import make_embedder, make_store

async def main():
    settings = load()
    store, embedder = make_store(settings), make_embedder(settings)
    try:
        report = await ingest_source(settings, store, embedder, sys.argv[1])
    finally:
        await store.close()
    print(report.to_dict())
    sys.exit(0 if report.added else 1)

asyncio.run(main())
"""


def _ingest(env: dict[str, str], docs: Path) -> None:
    """Ingest in a separate process with the server's settings, so no store handle stays open here."""
    done = subprocess.run(
        [sys.executable, "-c", _INGEST, str(docs)], env=env, cwd=REPO, capture_output=True, text=True, timeout=300
    )
    if done.returncode != 0:
        raise RuntimeError(f"ingesting {docs} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")


def _wait_ready(server: RagServer, timeout_s: float = 300.0) -> None:
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=2) as client:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                raise RuntimeError(f"server exited with {server.process.returncode}:\n{server.log()}")
            try:
                if client.get(f"{server.url}/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
    raise RuntimeError(f"server did not start within {timeout_s}s:\n{server.log()}")


@pytest.fixture(scope="module")
def start_rag_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., RagServer]]:
    """Factory: ingest ``docs`` (optional) and start uvicorn; all servers are stopped afterwards."""
    servers: list[RagServer] = []

    def start(
        store_url: str | None = None,
        *,
        docs: Path | None = None,
        chat_url: str = "extractive://",
        embed_url: str = "hash://",
        env: dict[str, str] | None = None,
    ) -> RagServer:
        data_dir = tmp_path_factory.mktemp("rag-data")
        store_url = (store_url or "chroma://{data_dir}/chroma").format(data_dir=data_dir)
        server_env = _server_env(data_dir, store_url, chat_url, embed_url, env or {})
        if docs is not None:
            _ingest(server_env, docs)
        port = free_port()
        log_path = data_dir / "server.log"
        cmd = [sys.executable, "-m", "uvicorn", "--factory", "serving.app:create_app"]
        cmd += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(cmd, env=server_env, cwd=REPO, stdout=log_file, stderr=subprocess.STDOUT)
        server = RagServer(port=port, env=server_env, process=process, log_path=log_path, data_dir=data_dir)
        servers.append(server)
        _wait_ready(server)
        return server

    yield start
    for server in servers:
        server.stop()


STORE_URLS = ["chroma://{data_dir}/chroma", "milvus+lite://{data_dir}/rag.db"]


@pytest.fixture(scope="module", params=STORE_URLS, ids=["chroma", "milvus-lite"])
def store_url(request: pytest.FixtureRequest) -> str:
    """Each on-disk store URL in turn (``{data_dir}`` is filled in by ``start_rag_server``)."""
    return str(request.param)


# --------------------------------------------------------------------------------------------------
# The real ``rag serve`` command
# --------------------------------------------------------------------------------------------------


class Served:
    """A running ``rag serve`` whose stderr is read back as JSON lines."""

    def __init__(self, url: str, stderr: Path, process: subprocess.Popen[bytes]) -> None:
        self.url, self.stderr, self.process = url, stderr, process

    def lines(self) -> list[dict[str, Any]]:
        """Every stderr line, each parsed as one JSON object (fails on any other line)."""
        text = self.stderr.read_text(errors="replace")
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def access(self, request_id: str) -> dict[str, Any]:
        """The access line of one request (waits briefly: it is written after the last byte)."""
        for _ in range(50):
            found = [x for x in self.lines() if x["logger"] == "serving.access" and x.get("request_id") == request_id]
            if found:
                assert len(found) == 1, found
                return found[0]
            time.sleep(0.1)
        raise AssertionError(f"no access line for {request_id}:\n{self.stderr.read_text()}")


def start_serve(
    tmp: Path, *, docs: Path | None = None, env: dict[str, str] | None = None, embed_url: str = "hash://"
) -> Served:
    """The real ``python -m onprem_rag serve`` over a Chroma store in ``tmp/data``, ``docs`` ingested first."""
    data_dir = tmp / "data"
    server_env = _server_env(data_dir, f"chroma://{data_dir}/chroma", "extractive://", embed_url, env or {})
    if docs is not None:
        _ingest(server_env, docs)
    port = free_port()
    stderr = tmp / "stderr.log"
    cmd = [sys.executable, "-m", "onprem_rag", "serve", "--port", str(port)]
    with stderr.open("wb") as err, (tmp / "stdout.log").open("wb") as out:
        process = subprocess.Popen(cmd, env=server_env, cwd=REPO, stdout=out, stderr=err)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300  # loading MiniLM on a busy shared machine can take minutes
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"rag serve exited: {stderr.read_text()}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return Served(url, stderr, process)
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    stop(process)
    raise RuntimeError(f"rag serve did not start: {stderr.read_text()}")
