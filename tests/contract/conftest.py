"""Fixtures for the store contract suite: one parameter per backend, each on a fresh collection."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from rag.config import Settings, StoreSettings
from rag.ids import chunk_id, content_hash
from rag.registry import make_store
from rag.seams import VectorStore
from rag.types import Chunk
from tests.procs import free_port, stop

# Chroma reads this at client start-up; the tests never reach the network.
os.environ["ANONYMIZED_TELEMETRY"] = "False"

BACKENDS = ["memory", "chroma", "chroma+http", "milvus+lite"]
EMBEDDED = ["chroma", "milvus+lite"]


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``chroma run`` process for the session; its URL. Failing to start fails the tests."""
    exe = Path(sys.executable).parent / "chroma"
    if not exe.exists():
        pytest.fail(f"the chroma executable is not next to {sys.executable}; install the 'chroma' extra")
    port = free_port()
    data = tmp_path_factory.mktemp("chroma-server")
    log_path = data.parent / "chroma-server.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [str(exe), "run", "--path", str(data), "--host", "127.0.0.1", "--port", str(port)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, "ANONYMIZED_TELEMETRY": "False"},
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                pytest.fail(f"chroma server exited with {proc.returncode}: {log_path.read_text()[-2000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"chroma server did not answer its heartbeat in 30 s: {log_path.read_text()[-2000:]}")
            time.sleep(0.1)
        yield f"chroma+http://127.0.0.1:{port}"
    finally:
        stop(proc)


def store_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A fresh location for one test's store of the given backend."""
    if backend == "memory":
        return "memory://"
    if backend == "chroma":
        return f"chroma://{tmp_path}/chroma"
    if backend == "chroma+http":
        return str(request.getfixturevalue("chroma_server"))
    if backend == "milvus+lite":
        return f"milvus+lite://{tmp_path}/milvus/rag.db"
    raise AssertionError(f"unknown backend {backend}")


def settings_for(url: str, collection: str, timeout_s: float = 10.0, data_dir: Path | None = None) -> Settings:
    """Settings naming only the store (and where local state goes); everything else keeps its default."""
    store = StoreSettings(url=url, collection=collection, timeout_s=timeout_s)
    if data_dir is None:
        return Settings(store=store)
    return Settings(store=store, data_dir=data_dir)


StoreFactory = Callable[[], VectorStore]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The backend under test."""
    return str(request.param)


@pytest.fixture
async def new_store(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[StoreFactory]:
    """Builds (unopened) stores on one fresh collection; all of them are closed after the test."""
    url = store_url(backend, tmp_path, request)
    # The Chroma server is shared by the session, so every test gets its own collection.
    settings = settings_for(url, f"c{uuid.uuid4().hex[:12]}", data_dir=tmp_path / "data")
    made: list[VectorStore] = []
    shared: dict[str, VectorStore] = {}

    def factory() -> VectorStore:
        # memory:// stores are private per instance; reuse one so reopen tests see the same data.
        if backend == "memory":
            if "memory" not in shared:
                shared["memory"] = make_store(settings)
            made.append(shared["memory"])
            return shared["memory"]
        store = make_store(settings)
        made.append(store)
        return store

    yield factory
    for store in made:
        await store.close()


def unit_vectors(n: int, dim: int, seed: int) -> np.ndarray:
    """Seeded random unit vectors, float32."""
    v = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def make_chunk(
    text: str,
    *,
    source: str = "file:///docs/a.md",
    index: int = 0,
    groups: tuple[str, ...] = ("public",),
    title: str = "",
    page: int | None = None,
) -> Chunk:
    """A chunk with a deterministic id, as ingestion would build it."""
    h = content_hash(text)
    return Chunk(
        id=chunk_id(source, index, h),
        text=text,
        source=source,
        title=title,
        page=page,
        index=index,
        groups=groups,
        content_hash=h,
    )
