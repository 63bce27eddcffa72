"""``DELETE /v1/sources`` and re-ingestion: the next ``rag ingest`` restores a deleted document.

Real processes throughout: a Chroma server, a uvicorn process serving it, and the ``rag`` command
line ingesting into it (plainly, in shards, and into the live version of a versioned collection),
the service and the command line sharing one data dir, as the ingester and the service do on one
volume. (An embedded Chroma store cannot be written by one process while another serves it.)
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ingest.sync import SyncState, forget_sources, state_path
from serving.identity import hash_key
from tests.procs import free_port, stop
from tests.serving.conftest import REPO, RagServer, _server_env
from tests.serving.test_failover import start_chroma

pytestmark = pytest.mark.slow

ADMIN = {"Authorization": "Bearer admin-key"}
DOCS = {
    "cluster.md": "# Cluster\n\nThe research cluster has 64 GPUs in the north hall.\n",
    "budget.md": "# Budget\n\nThe GPU budget is reviewed every quarter by the infrastructure committee.\n",
    "queue.md": "# Queue\n\nJobs are submitted with the queue command and run for at most 48 hours.\n",
}


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    for name, text in DOCS.items():
        (folder / name).write_text(text)
    return folder


@pytest.fixture(scope="module")
def chroma_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A ``chroma run`` process for the module (each test uses its own collection)."""
    port = free_port()
    process = start_chroma(tmp_path_factory.mktemp("chroma-server"), port)
    yield f"chroma+http://127.0.0.1:{port}"
    stop(process)


@pytest.fixture
def env(tmp_path: Path, chroma_url: str) -> dict[str, str]:
    """The settings the service and the command line share: data dir, store and collection, an admin key."""
    access = tmp_path / "access.yaml"
    access.write_text(f"keys:\n  - name: ops\n    sha256: {hash_key('admin-key')}\n    scopes: [admin]\n")
    extra = {"RAG_AUTH__ACCESS_FILE": str(access), "RAG_STORE__COLLECTION": f"docs-{uuid.uuid4().hex[:8]}"}
    return _server_env(tmp_path / "data", chroma_url, "extractive://", "hash://", extra)


@pytest.fixture
def serve(start_rag_server: Callable[..., RagServer], env: dict[str, str]) -> Callable[[], RagServer]:
    """Start the service over ``env`` (documents are ingested by the test)."""
    keep = ("RAG_DATA_DIR", "RAG_STORE__URL", "RAG_STORE__COLLECTION", "RAG_AUTH__ACCESS_FILE")
    return lambda: start_rag_server(env={k: env[k] for k in keep})


def rag(env: dict[str, str], *args: str) -> dict[str, Any]:
    """Run the ``rag`` command line with the shared settings; returns its JSON report (``ingest`` only)."""
    report = Path(env["RAG_DATA_DIR"]).parent / "report.json"
    report.unlink(missing_ok=True)
    wants_report = args[0] == "ingest"
    cmd = [sys.executable, "-m", "onprem_rag", *args, *(["--report", str(report)] if wants_report else [])]
    done = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{cmd}:\n{done.stdout}\n{done.stderr}"
    return json.loads(report.read_text()) if wants_report else {}


def sources_found(server: RagServer, query: str) -> set[str]:
    with server.http() as client:
        response = client.post("/v1/search", json={"query": query, "k": 10})
    assert response.status_code == 200, response.text
    return {hit["source"] for hit in response.json()["data"]}


def delete(server: RagServer, *sources: str) -> int:
    with server.http() as client:
        response = client.delete("/v1/sources", params=[("source", s) for s in sources], headers=ADMIN)
    assert response.status_code == 200, response.text
    return int(response.json()["deleted"])


def test_a_deleted_document_comes_back_with_the_next_ingest(
    serve: Callable[[], RagServer], env: dict[str, str], docs: Path
) -> None:
    server = serve()
    first = rag(env, "ingest", str(docs))
    assert first["added"] == 3
    cluster = (docs / "cluster.md").resolve().as_uri()
    assert cluster in sources_found(server, "GPUs north hall")

    assert delete(server, cluster) >= 1
    assert cluster not in sources_found(server, "GPUs north hall")

    again = rag(env, "ingest", str(docs))
    assert (again["added"], again["unchanged"]) == (1, 2)
    assert cluster in sources_found(server, "GPUs north hall")
    assert rag(env, "ingest", str(docs))["unchanged"] == 3


def test_every_shard_forgets_a_deleted_document(
    serve: Callable[[], RagServer], env: dict[str, str], docs: Path
) -> None:
    server = serve()
    for shard in ("0/2", "1/2"):
        rag(env, "ingest", str(docs), "--shard", shard)
    shard_files = sorted((Path(env["RAG_DATA_DIR"]) / "sync").glob("*-shard*of2.sqlite3"))
    assert len(shard_files) == 2
    every = [(docs / name).resolve().as_uri() for name in DOCS]
    assert delete(server, *every) >= 3
    assert sources_found(server, "GPUs budget queue") == set()

    restored = sum(rag(env, "ingest", str(docs), "--shard", shard)["added"] for shard in ("0/2", "1/2"))
    assert restored == 3
    assert sources_found(server, "GPUs budget queue") == set(every)


def test_the_live_version_of_a_versioned_collection_forgets_a_deleted_document(
    serve: Callable[[], RagServer], env: dict[str, str], docs: Path
) -> None:
    rag(env, "collection", "build", str(docs), "--version", "v2")
    rag(env, "collection", "switch", "v2")
    server = serve()
    budget = (docs / "budget.md").resolve().as_uri()
    assert budget in sources_found(server, "GPU budget quarter")
    assert delete(server, budget) >= 1
    assert budget not in sources_found(server, "GPU budget quarter")

    again = rag(env, "ingest", str(docs))  # `rag ingest` writes into the live version, <collection>__v2
    assert (again["added"], again["unchanged"]) == (1, 2)
    assert budget in sources_found(server, "GPU budget quarter")


def test_forgetting_touches_only_the_named_sources_and_creates_no_state(tmp_path: Path) -> None:
    url = f"chroma://{tmp_path}/chroma"
    assert forget_sources(tmp_path, url, "docs", ["file:///a.md"]) == 0
    assert not (tmp_path / "sync").exists()
    plain = SyncState(state_path(tmp_path, url, "docs"))
    shard = SyncState(state_path(tmp_path, url, "docs", "shard1of3"))
    other = SyncState(state_path(tmp_path, url, "docs-other"))
    for state in (plain, shard, other):
        for source in ("file:///a.md", "file:///b.md"):
            state.begin(source, [f"{source}#0"])
            state.finish(source, [f"{source}#0"], doc_hash="h", recipe="r")
    assert forget_sources(tmp_path, url, "docs", ["file:///a.md", "file:///never.md"]) == 2
    assert plain.get("file:///a.md") is None and shard.get("file:///a.md") is None
    assert plain.get("file:///b.md") is not None and shard.get("file:///b.md") is not None
    assert other.get("file:///a.md") is not None
    for state in (plain, shard, other):
        state.close()
