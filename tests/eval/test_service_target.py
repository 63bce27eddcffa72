"""A running service as the target: a real ``uvicorn`` process over ingested documents, reached over HTTP.

The service retrieves by itself; the run scores its ``/v1/search`` ranking, the sources its answer cites
(the same ids as the non-streaming ``sources`` field), and measures TTFT on the stream.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from eval.service import ServiceTarget, is_service_target
from rag.errors import InvalidRequest
from tests.eval.test_cli import invoke, summary_of
from tests.serving.conftest import RagServer, start_rag_server  # noqa: F401 - the fixture

DOCS = Path(__file__).resolve().parents[2] / "examples" / "docs"
QUESTIONS = {
    "gpu": "How long may a GPU job run on the cluster?",
    "nas": "How much NAS storage quota does a project get?",
    "jupyter": "How do I start a JupyterHub server?",
}


@pytest.fixture(scope="module")
def server(start_rag_server, tmp_path_factory: pytest.TempPathFactory) -> RagServer:  # noqa: F811
    docs = tmp_path_factory.mktemp("docs")
    for name in ("gpu-cluster-policy.md", "nas-storage-guide.md", "jupyterhub-guide.md"):
        shutil.copy(DOCS / name, docs / name)
    return start_rag_server(docs=docs)  # type: ignore[no-any-return]


def _cases(server: RagServer, path: Path) -> dict[str, str]:
    """A case file whose gold source is the service's top search hit's document; returns question ids → source."""
    gold: dict[str, str] = {}
    with server.http() as client:
        for cid, question in QUESTIONS.items():
            hits = client.post("/v1/search", json={"query": question, "k": 1}).json()["data"]
            gold[cid] = hits[0]["source"]
    lines = [
        json.dumps({"id": cid, "question": q, "answers": ["x"], "sources": [gold[cid]], "tags": [f"topic:{cid}"]})
        for cid, q in QUESTIONS.items()
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return gold


def test_service_target_urls() -> None:
    assert is_service_target("http://127.0.0.1:8000/v1?model=rag")
    assert is_service_target("service+https://rag.example/v1")
    assert not is_service_target("openai+http://127.0.0.1:8000/v1?model=x")
    assert not is_service_target("extractive://")
    target = ServiceTarget("service+http://h:1/v1?model=m&stream=0")
    assert (target.base_url, target.model, target.stream) == ("http://h:1/v1", "m", False)
    with pytest.raises(InvalidRequest):
        ServiceTarget("http://h:1/v1?stream=maybe")


def test_run_against_a_real_service_process(
    server: RagServer, eval_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The local store is never opened for a service target: point it somewhere that does not exist.
    monkeypatch.setenv("RAG_STORE__URL", f"chroma://{tmp_path / 'absent'}")
    cases = tmp_path / "cases.jsonl"
    gold = _cases(server, cases)
    streamed, plain = f"{server.base_url}?model=rag", f"service+{server.base_url}?model=rag&stream=0"
    run = tmp_path / "svc"
    code, _, err = invoke("run", "--dataset", str(cases), "-t", streamed, "-t", plain, "--out", str(run))
    assert code == 0, err
    assert not (tmp_path / "absent").exists()
    items = [json.loads(line) for line in (run / "items.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(items) == 6 and not any(i["error"] for i in items)
    by = {(i["target"], i["case_id"]): i for i in items}
    client = server.openai()
    for cid, question in QUESTIONS.items():
        s, p = by[(streamed, cid)], by[(plain, cid)]
        assert s["retrieved"][0] == gold[cid] and s["metrics"]["hit@2"] == 1.0
        assert s["tags"] == [f"topic:{cid}"] and s["lang"] == "en"
        # The cited ids are the ones the non-streaming response lists in its sources extension.
        reply = client.chat.completions.create(model="rag", messages=[{"role": "user", "content": question}])
        listed = list(dict.fromkeys(src["source"] for src in reply.model_extra["sources"]))
        assert s["cited"] == listed == p["cited"] and listed
        assert s["answer"] == p["answer"] == reply.choices[0].message.content
        assert 0 < s["ttft_ms"] <= s["total_ms"] and p["ttft_ms"] is None
        assert s["prompt_tokens"] > 0 and s["completion_tokens"] > 0
    summary = summary_of(run)
    assert summary.target(streamed).ttft_ms is not None and summary.target(plain).ttft_ms is None
    assert set(summary.target(streamed).by_tag) == {f"topic:{c}" for c in QUESTIONS}
    assert summary.target(streamed).metrics["citation_recall"].mean > 0


def test_a_service_error_is_recorded_per_item(server: RagServer, eval_env: dict[str, str], tmp_path: Path) -> None:
    cases = tmp_path / "cases.jsonl"
    _cases(server, cases)
    wrong = f"{server.base_url}?model=not-served"
    code, _, err = invoke("run", "--dataset", str(cases), "-t", wrong, "--out", str(tmp_path / "r"), "--limit", "2")
    assert code == 0, err
    items = [json.loads(line) for line in (tmp_path / "r" / "items.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(items) == 2
    assert all(i["error"].startswith("404 model_not_found") and i["attempts"] == 1 for i in items)
