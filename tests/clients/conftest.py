"""Real clients against real ``rag serve`` processes: one with the extractive answerer, one in front of
the fake OpenAI-compatible model server (JSON mode, tools), one with a failover chain of both.

The third-party clients that cannot share the project's virtualenv (LlamaIndex's OpenAILike, the Node
SDK) live in ``.venv-clients`` (``scripts/install_clients.sh``); without it those tests fail, naming
the script.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import FakeOpenAIServer
from tests.serving.conftest import REPO, RagServer, start_rag_server  # noqa: F401  (fixture)
from tests.serving.test_server_process import BUDGET, CLUSTER

CLIENTS_VENV = REPO / ".venv-clients"
QUESTION = "How many GPUs does the cluster have?"


@pytest.fixture(scope="module")
def docs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two Markdown documents: the cluster guide and the budget note."""
    folder = tmp_path_factory.mktemp("docs")
    (folder / "cluster.md").write_text(CLUSTER)
    (folder / "budget.md").write_text(BUDGET)
    return folder


@pytest.fixture(scope="module")
def model_server() -> Iterator[FakeOpenAIServer]:
    """The fake OpenAI-compatible model server (model ``fake-chat``) the LLM-backed services call."""
    with FakeOpenAIServer() as server:
        yield server


@pytest.fixture(scope="module")
def extractive(start_rag_server: Callable[..., RagServer], docs: Path) -> RagServer:  # noqa: F811
    """``rag serve`` with the default extractive answerer."""
    return start_rag_server(docs=docs)


@pytest.fixture(scope="module")
def llm(start_rag_server: Callable[..., RagServer], docs: Path, model_server: FakeOpenAIServer) -> RagServer:  # noqa: F811
    """``rag serve`` in front of the fake OpenAI-compatible model server."""
    return start_rag_server(docs=docs, chat_url=f"openai+{model_server.base_url}?model=fake-chat")


@pytest.fixture(scope="module")
def chained(start_rag_server: Callable[..., RagServer], docs: Path, model_server: FakeOpenAIServer) -> RagServer:  # noqa: F811
    """``rag serve`` with the extractive answerer first and the model server as its fallback."""
    fallback = json.dumps([f"openai+{model_server.base_url}?model=fake-chat"])
    return start_rag_server(docs=docs, env={"RAG_CHAIN__FALLBACK_URLS": fallback})


def clients_venv() -> Path:
    """``.venv-clients``, or a failure naming the script that makes it."""
    if not (CLIENTS_VENV / ".installed").is_file():
        pytest.fail("the third-party clients are not installed: run scripts/install_clients.sh")
    return CLIENTS_VENV


def run_client(cmd: list[str], *, stdin: str | None = None, cwd: Path | None = None, **env: str) -> Any:
    """Run a client script; its last stdout line is JSON, returned parsed."""
    done = subprocess.run(
        cmd,
        input=stdin,
        cwd=cwd or REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, f"{cmd[0]} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return json.loads(done.stdout.strip().splitlines()[-1])
