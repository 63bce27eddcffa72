"""The LLM judge: robust parsing of its scores, and a run judged through the fake OpenAI API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from eval.dataset import from_squad
from eval.judge import PROMPT_VERSION, Judge, judge_messages, parse_verdict
from eval.runner import ItemLog, Runner, RunOptions
from rag.config import load
from rag.registry import make_chat
from tests.eval.conftest import XQUAD, fake_target
from tests.eval.test_runner import _pipeline
from tests.fakes import FakeOpenAIServer, openai_server


@pytest.mark.parametrize(
    ("reply", "faithfulness", "relevance"),
    [
        ('{"faithfulness": 5, "relevance": 3}', 1.0, 0.5),
        ('Sure! ```json\n{"Faithfulness": "4", "relevance": 1}\n```', 0.75, 0.0),
        ("Faithfulness: 2\nRelevance: 5/5", 0.25, 1.0),
        ("**faithfulness score** - 3, **relevance** = 4", 0.5, 0.75),
        ('{"faithfulness": 7, "relevance": 2}', None, 0.25),
        ("I cannot grade this.", None, None),
    ],
)
def test_judge_scores_are_parsed_robustly_and_rescaled(
    reply: str, faithfulness: float | None, relevance: float | None
) -> None:
    verdict = parse_verdict(reply)
    assert (verdict.faithfulness, verdict.relevance) == (faithfulness, relevance)


def test_the_prompt_carries_question_sources_and_answer() -> None:
    system, user = judge_messages("Who won?", "The Broncos [1].", ["The Broncos won.", "x" * 5000])
    assert system.role == "system" and PROMPT_VERSION == "judge-v1"
    assert "Who won?" in user.content and "[1] The Broncos won." in user.content and "[2] xxx" in user.content
    assert len(user.content) < 3000  # long sources are cut


@pytest.fixture
def judge_reply(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fake OpenAI server answers judge prompts with a judge's reply, streamed word by word."""
    original = openai_server.canned_reply

    def reply(messages: list[dict[str, Any]]) -> list[str]:
        if "Grade the ANSWER" in str(messages[-1].get("content")):
            return ['{"faithfulness": ', "4, ", '"relevance": ', "5}"]
        return original(messages)

    monkeypatch.setattr(openai_server, "canned_reply", reply)


async def test_judge_through_the_fake_openai_api(
    eval_env: dict[str, str], fake_openai: FakeOpenAIServer, judge_reply: None
) -> None:
    judge = Judge(make_chat(load(), fake_target(fake_openai.base_url)))
    try:
        verdict = await judge.grade("Who won?", "The Broncos.", ["The Broncos won Super Bowl 50."])
    finally:
        await judge.close()
    assert (verdict.faithfulness, verdict.relevance) == (0.75, 1.0)
    sent = fake_openai.requests[-1]
    assert sent["temperature"] == 0.0 and sent["messages"][0]["role"] == "system"


async def test_a_judged_run_records_faithfulness_and_relevance(
    eval_env: dict[str, str], fake_openai: FakeOpenAIServer, judge_reply: None, tmp_path: Path
) -> None:
    pipeline = await _pipeline()
    judge = Judge(make_chat(load(), fake_target(fake_openai.base_url)))
    try:
        await Runner(pipeline, from_squad(XQUAD).cases, RunOptions(targets=("extractive://",)), tmp_path, judge).run()
    finally:
        await judge.close()
        await pipeline.close()
    records = ItemLog(tmp_path / "items.jsonl").read()
    assert len(records) == 7
    assert all(r.metrics["faithfulness"] == 0.75 and r.metrics["relevance"] == 1.0 for r in records)
    assert all(r.judge_error is None for r in records)


# --- synthetic questions ---------------------------------------------------------------------------------


def test_synth_pairs_are_parsed_and_checked_against_their_passage() -> None:
    from eval.synth import parse_pair, support

    assert parse_pair("Q: Who won?\nA: The Broncos\nmore") == ("Who won?", "The Broncos")
    assert parse_pair("no pair here") is None
    assert support("Pittsburgh Steelers", "The Broncos defeated the Pittsburgh Steelers.") == 1.0
    assert support("the Dallas Cowboys", "The Broncos defeated the Pittsburgh Steelers.") == 0.0


def test_synth_command_writes_deduplicated_answerable_cases(
    eval_env: dict[str, str], fake_openai: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from eval.dataset import load_cases
    from tests.eval.test_cli import invoke

    def reply(messages: list[dict[str, Any]]) -> list[str]:
        passage = str(messages[-1]["content"])
        if "Broncos" in passage:
            return ["Q: Who lost in the divisional round?\n", "A: Pittsburgh Steelers"]
        if "Tesla" in passage:
            return ["Q: Who lost in the divisional round?\n", "A: Pittsburgh Steelers"]  # unsupported here
        return ["I cannot write a question."]

    monkeypatch.setattr(openai_server, "canned_reply", reply)
    out = tmp_path / "synth.jsonl"
    code, _, err = invoke("synth", "--squad", str(XQUAD), "-g", fake_target(fake_openai.base_url), "--out", str(out))
    assert code == 0, err
    cases = load_cases(out)
    assert [(c.question, c.answers, c.sources) for c in cases] == [
        ("Who lost in the divisional round?", ("Pittsburgh Steelers",), ("Super_Bowl_50#0",))
    ]
    assert "1 cases written" in err and "3 passages" in err
