"""End to end, as a user runs it: ``rag ingest`` the sample docs, ``rag serve``, ask with ``openai``.

Real processes on loopback, the real bundled MiniLM embedder, the extractive answerer, once per
embedded store (Chroma, Milvus Lite).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from openai import OpenAI

from tests.procs import free_port

REPO = Path(__file__).resolve().parents[2]
RAG = str(Path(sys.executable).with_name("rag"))
DOCS = REPO / "examples" / "docs"
# Two real ingests with the bundled model and two service processes: minutes on a small machine.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=["chroma", "milvus+lite"])
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    data = tmp_path_factory.mktemp(request.param.replace("+", "_"))
    store = f"chroma://{data}/chroma" if request.param == "chroma" else f"milvus+lite://{data}/rag.db"
    port = free_port()
    env = {
        **os.environ,
        "RAG_DATA_DIR": str(data),
        "RAG_STORE__URL": store,
        "RAG_EMBED__URL": "st://all-MiniLM-L6-v2",
        "RAG_CHAT__URL": "extractive://",
        "RAG_SERVER__PORT": str(port),
    }
    ingest = subprocess.run(
        [RAG, "ingest", str(DOCS), "--report", str(data / "report.json")],
        env=env, cwd=data, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert ingest.returncode == 0, ingest.stderr
    report = json.loads((data / "report.json").read_text())
    assert report["added"] == 12 and not report["failed"]
    log = open(data / "serve.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([RAG, "serve"], env=env, cwd=data, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, (data / "serve.log").read_text()
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "server did not become ready"
            time.sleep(0.3)
        yield {"base": base, "store": request.param, "log": str(data / "serve.log")}
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def client(served: dict[str, str]) -> OpenAI:
    return OpenAI(base_url=served["base"] + "/v1", api_key="unused", max_retries=0)


def test_the_rag_model_is_listed(served):
    ids = [m.id for m in client(served).models.list()]
    assert ids == ["rag"]


def test_a_non_streaming_answer_cites_the_expected_source(served):
    question = "How quickly must a data subject's deletion request be completed?"
    reply = client(served).chat.completions.create(model="rag", messages=[{"role": "user", "content": question}])
    text = reply.choices[0].message.content or ""
    assert "14 days" in text and "[1]" in text
    sources = reply.model_extra["sources"]
    assert sources[0]["source"].endswith("data-retention-policy.pdf")
    assert sources[0]["page"] is not None
    assert reply.choices[0].finish_reason == "stop"


def test_a_streamed_answer_parses_in_the_openai_client_and_carries_source_events(served):
    stream = client(served).chat.completions.create(
        model="rag",
        messages=[{"role": "user", "content": "What is the quota of a home directory on the NAS?"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text, events, finish, usage = "", [], None, None
    for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
        if (chunk.model_extra or {}).get("event"):
            events.append(chunk.model_extra["event"])
        usage = chunk.usage or usage
    assert "200 GiB" in text
    assert finish == "stop" and usage is not None and usage.total_tokens > 0
    names = [e["data"]["source"]["id"] for e in events if e["type"] == "source"]
    assert any(n.endswith("nas-storage-guide.md") for n in names)


def test_a_korean_question_gets_a_korean_answer_from_the_korean_document(served):
    reply = client(served).chat.completions.create(
        model="rag", messages=[{"role": "user", "content": "1년 이상 근무한 직원의 연차는 며칠인가요?"}]
    )
    text = reply.choices[0].message.content or ""
    assert "15일" in text
    assert any(s["source"].endswith("work-and-leave-ko.txt") for s in reply.model_extra["sources"])


def test_an_anonymous_caller_never_sees_the_restricted_runbook(served):
    http = httpx.Client(base_url=served["base"], timeout=30)
    hits = http.post("/v1/search", json={"query": "incident escalation phone tree", "k": 20}).json()
    assert hits["data"], hits
    assert not any("/restricted/" in h["source"] for h in hits["data"])
    reply = client(served).chat.completions.create(
        model="rag", messages=[{"role": "user", "content": "Who is called when a SEV1 incident escalates?"}]
    )
    assert not any("/restricted/" in s["source"] for s in reply.model_extra["sources"])


def test_a_question_with_no_relevant_documents_says_so(served):
    reply = client(served).chat.completions.create(
        model="rag", messages=[{"role": "user", "content": "What is the airspeed velocity of an unladen swallow?"}]
    )
    assert "could not find" in (reply.choices[0].message.content or "")
    assert reply.model_extra["sources"] == []


def test_the_web_console_is_served(served):
    page = httpx.get(served["base"] + "/", timeout=10)
    assert page.status_code == 200 and "<html" in page.text.lower()
