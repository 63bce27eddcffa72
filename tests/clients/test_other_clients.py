"""LlamaIndex's OpenAILike, the official Node SDK and curl against a real ``rag serve``."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from tests.clients.conftest import QUESTION, REPO, clients_venv, run_client
from tests.serving.conftest import MODEL, RagServer

pytestmark = pytest.mark.slow
HERE = REPO / "tests" / "clients"


def test_llamaindex_openai_like_answers_in_completion_and_chat_mode(extractive: RagServer) -> None:
    venv = clients_venv()
    got = run_client([str(venv / "bin" / "python"), str(HERE / "llamaindex_client.py"), extractive.base_url, QUESTION])
    for mode in ("complete", "chat"):
        assert "64 GPUs" in got[mode] and "[1]" in got[mode], mode
    for mode in ("stream_complete", "stream_chat"):
        assert len(got[mode]) > 3 and "64 GPUs" in "".join(got[mode]), mode
    assert "".join(got["stream_complete"]) == got["complete"]


def test_the_node_sdk_parses_every_response_and_error(extractive: RagServer) -> None:
    node_dir = clients_venv() / "node"
    script = (HERE / "node_client.mjs").read_text()
    node = shutil.which("node")
    assert node is not None, "Node 20 or newer is needed on PATH"
    got = run_client(
        [node, "--input-type=module"],
        stdin=script,
        cwd=node_dir,
        RAG_BASE_URL=extractive.base_url,
        RAG_QUESTION=QUESTION,
    )
    assert "64 GPUs" in got["chat"] and got["chat_sources"] >= 1
    assert got["stream"] == got["chat"] and got["stream_finish"] == "stop" and got["stream_sources"] >= 1
    assert got["helper"] == got["chat"] and got["helper_usage"] > 0
    assert "64 GPUs" in got["completion"]
    assert got["error"] == {
        "status": 400,
        "code": "unsupported_parameter",
        "param": "response_format",
        "isBadRequest": True,
    }


def _curl(server: RagServer, path: str, body: dict[str, object]) -> str:
    done = subprocess.run(
        ["curl", "-sS", "-N", "--fail-with-body", f"{server.base_url}{path}",
         "-H", "Content-Type: application/json", "-H", "Authorization: Bearer x", "-d", json.dumps(body)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr + done.stdout
    return done.stdout


@pytest.mark.parametrize("path", ["/chat/completions", "/completions"])
def test_curl_reads_a_well_formed_sse_stream(extractive: RagServer, path: str) -> None:
    question: dict[str, object] = (
        {"messages": [{"role": "user", "content": QUESTION}]} if path == "/chat/completions" else {"prompt": QUESTION}
    )
    raw = _curl(
        extractive, path, {"model": MODEL, "stream": True, "stream_options": {"include_usage": True}, **question}
    )
    events = [e for e in raw.split("\n\n") if e.strip()]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-1]]
    *answer, usage = chunks
    assert all(len(c["choices"]) == 1 for c in answer)
    assert usage["choices"] == [] and usage["usage"]["total_tokens"] > 0
    key = "delta" if path == "/chat/completions" else None
    text = "".join((c["choices"][0]["delta"].get("content") or "") if key else c["choices"][0]["text"] for c in answer)
    assert "64 GPUs" in text
