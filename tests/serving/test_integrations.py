"""LangChain and LlamaIndex retrievers against a real uvicorn server, with the caller's API key."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rag.errors import RagError
from rag.integrations.langchain import RagServiceRetriever as LangChainRetriever
from rag.integrations.llamaindex import RagServiceRetriever as LlamaIndexRetriever
from serving.identity import hash_key
from tests.serving.conftest import REPO, RagServer
from tests.serving.test_failover import DOCS, SEED, _server_env, _wait_ready, free_port

ACCESS = {"keys": [{"name": "hr", "sha256": hash_key("hr-key"), "groups": ["hr"]},
                   {"name": "pub", "sha256": hash_key("pub-key")}]}  # fmt: skip


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    tmp: Path = tmp_path_factory.mktemp("integrations")
    access = tmp / "access.json"
    access.write_text(json.dumps(ACCESS))
    env = _server_env(tmp, f"chroma://{tmp}/chroma", "extractive://", "hash://", {"RAG_AUTH__ACCESS_FILE": str(access)})
    seeded = subprocess.run([sys.executable, "-c", SEED, json.dumps(DOCS)], env=env, cwd=REPO,
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert seeded.returncode == 0, seeded.stderr
    port = free_port()
    cmd = [sys.executable, "-m", "uvicorn", "--factory", "serving.app:create_app", "--host", "127.0.0.1"]
    log_path = tmp / "server.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([*cmd, "--port", str(port)], env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    srv = RagServer(port=port, env=env, process=proc, log_path=log_path, data_dir=tmp)
    _wait_ready(srv)
    yield srv
    srv.stop()


def test_langchain_retriever_returns_documents_within_the_callers_groups(server: RagServer) -> None:
    hr = LangChainRetriever(base_url=server.base_url, api_key="hr-key", k=5)
    docs = hr.invoke("salary bands GPU engineers")
    assert "h1" in {d.id for d in docs}
    assert docs[0].metadata["source"].startswith("file:///")
    public = LangChainRetriever(base_url=server.base_url, api_key="pub-key", k=5)
    assert "h1" not in {d.id for d in public.invoke("salary bands GPU engineers")}


async def test_langchain_retriever_async(server: RagServer) -> None:
    docs = await LangChainRetriever(base_url=server.base_url, api_key="hr-key").ainvoke("salary bands")
    assert "h1" in {d.id for d in docs}


def test_llamaindex_retriever_returns_scored_nodes_within_the_callers_groups(server: RagServer) -> None:
    nodes = LlamaIndexRetriever(server.base_url, api_key="hr-key", k=5).retrieve("salary bands GPU engineers")
    assert "h1" in {n.node.node_id for n in nodes}
    assert all(isinstance(n.score, float) for n in nodes)
    public = LlamaIndexRetriever(server.base_url, api_key="pub-key").retrieve("salary bands GPU engineers")
    assert "h1" not in {n.node.node_id for n in public}


async def test_llamaindex_retriever_async(server: RagServer) -> None:
    nodes = await LlamaIndexRetriever(server.base_url, api_key="hr-key").aretrieve("salary bands")
    assert "h1" in {n.node.node_id for n in nodes}


def test_a_wrong_key_is_an_error_not_an_empty_result(server: RagServer) -> None:
    with pytest.raises(RagError, match="401"):
        LangChainRetriever(base_url=server.base_url, api_key="wrong").invoke("salary")
