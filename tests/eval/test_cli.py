"""``rag eval`` end to end: full runs, reports with plots, gates, Katib lines, compare, resume after a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from eval.report import Summary
from tests.eval.conftest import XQUAD, fake_target
from tests.fakes import FakeOpenAIServer

ROOT = Path(__file__).resolve().parents[2]


def invoke(*args: str) -> tuple[int, str, str]:
    from onprem_rag.cli import app

    result = CliRunner().invoke(app, ["eval", *args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    # rich wraps long messages at the terminal width; compare them with whitespace collapsed.
    return result.exit_code, result.stdout, " ".join(result.stderr.split())


def summary_of(folder: Path) -> Summary:
    return Summary.model_validate_json((folder / "summary.json").read_text(encoding="utf-8"))


def quality(summary: Summary) -> dict[str, dict[str, tuple[float, float, float, int]]]:
    """Everything but timings: the metrics with their intervals, per target."""
    return {t.target: {m: (s.mean, s.low, s.high, s.n) for m, s in t.metrics.items()} for t in summary.targets}


def test_full_run_on_xquad_with_the_extractive_answerer_and_the_real_embedder(
    eval_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("RAG_EMBED__URL", "st://all-MiniLM-L6-v2")
    monkeypatch.setenv("RAG_RETRIEVAL__MIN_SCORE", "0.2")
    run = tmp_path / "runs" / "xquad"
    code, out, err = invoke("run", "--squad", str(XQUAD), "--target", "extractive://", "--out", str(run))
    assert code == 0, err
    summary = summary_of(run)
    assert summary.complete and summary.expected_items == 7
    t = summary.targets[0]
    assert t.items == 7 and t.errors == 0
    # MiniLM finds the right paragraph of three for every question, and the extractive answerer cites it.
    assert t.metrics["hit@2"].mean == 1.0
    assert t.metrics["citation_recall"].mean == 1.0
    assert t.metrics["refusal"].mean == 1.0
    assert 0.0 < t.metrics["f1"].mean < 0.5  # it quotes whole sentences: partial overlap with short answers
    assert "Quality" in out and "hit@2" in out


def test_two_targets_give_a_paired_comparison_and_reports_with_embedded_plots(
    eval_env: dict[str, str], fake_openai: FakeOpenAIServer, tmp_path: Path
) -> None:
    prices = tmp_path / "prices.yaml"
    prices.write_text("prices:\n  fake-chat: {input_per_1m: 1.0, output_per_1m: 2.0}\n", encoding="utf-8")
    run = tmp_path / "two"
    fake = fake_target(fake_openai.base_url)
    code, _, err = invoke(
        "run", "--squad", str(XQUAD), "-t", "extractive://", "-t", fake, "--prices", str(prices), "--out", str(run)
    )
    assert code == 0, err
    summary = summary_of(run)
    assert [t.target for t in summary.targets] == ["extractive://", fake]
    pairs = {p.metric: p for p in summary.comparisons[fake]}
    assert pairs["hit@2"].ties == 7  # same retrieval for both targets
    assert pairs["citation_recall"].losses == 7  # the fake cites nothing
    assert summary.target(fake).cost_total is not None and summary.target(fake).cost_total > 0
    for name in ("report.md", "report.html", "metrics.png", "latency.png", "cost_quality.png", "config.json"):
        assert (run / name).is_file(), name
    page = (run / "report.html").read_text(encoding="utf-8")
    assert page.count("data:image/png;base64,") == 3
    assert "significant" in page or "win/tie/loss" in page
    md = (run / "report.md").read_text(encoding="utf-8")
    assert "](metrics.png)" in md and "| hit@2 |" in md
    config = json.loads((run / "config.json").read_text(encoding="utf-8"))
    assert config["targets"] == ["extractive://", fake] and config["judge_prompt_version"]


def test_a_failed_gate_exits_4_and_katib_lines_are_printed(eval_env: dict[str, str], tmp_path: Path) -> None:
    run = tmp_path / "gate"
    code, out, _ = invoke(
        "run", "--squad", str(XQUAD), "-t", "extractive://", "--out", str(run), "--min", "hit@2=0.5", "--katib"
    )
    assert code == 0
    lines = dict(line.split("=", 1) for line in out.splitlines() if "=" in line and " " not in line)
    assert float(lines["hit_at_2"]) >= 0.5 and "error_rate" in lines
    code, _, err = invoke("report", str(run), "--min", "em=0.99", "--max", "total_ms_p95=100000")
    assert code == 4
    assert "gate failed" in err and "em" in err
    code, _, err = invoke("report", str(run), "--min", "nonsense=1")
    assert code == 2 and "unknown metric" in err


def test_compare_two_runs(eval_env: dict[str, str], fake_openai: FakeOpenAIServer, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    assert invoke("run", "--squad", str(XQUAD), "-t", "extractive://", "--out", str(a))[0] == 0
    assert invoke("run", "--squad", str(XQUAD), "-t", fake_target(fake_openai.base_url), "--out", str(b))[0] == 0
    code, out, _ = invoke("compare", str(a), str(b))
    assert code == 0
    assert "citation_recall" in out and "0/0/7" in out


def test_a_run_folder_of_another_run_is_refused(eval_env: dict[str, str], tmp_path: Path) -> None:
    run = tmp_path / "r"
    assert invoke("run", "--squad", str(XQUAD), "-t", "extractive://", "--out", str(run))[0] == 0
    code, _, err = invoke("run", "--squad", str(XQUAD), "-t", "ollama://localhost:1?model=x", "--out", str(run))
    assert code == 2 and "holds a different run" in err


def _start(run: Path, target: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "onprem_rag", "eval", "run", "--squad", str(XQUAD), "-t", "extractive://"]
    args += ["-t", target, "--concurrency", "1", "--out", str(run)]
    return subprocess.Popen(args, cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.slow
def test_resume_after_a_killed_run_reports_the_same_as_an_uninterrupted_run(
    eval_env: dict[str, str], fake_openai: FakeOpenAIServer, tmp_path: Path
) -> None:
    target = fake_target(fake_openai.base_url)
    whole = tmp_path / "whole"
    assert invoke("run", "--squad", str(XQUAD), "-t", "extractive://", "-t", target, "--out", str(whole))[0] == 0

    fake_openai.delay_s = 0.4  # slow enough to be killed half-way
    run = tmp_path / "killed"
    proc = _start(run, target, eval_env)
    items = run / "items.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if items.exists() and items.read_bytes().count(b"\n") >= 5:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    done = items.read_bytes().count(b"\n")
    assert 5 <= done < 14, "the run was not interrupted half-way"
    assert not (run / "summary.json").exists()

    fake_openai.delay_s = 0.0
    requests_before = len(fake_openai.requests)
    proc = _start(run, target, eval_env)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    assert f"{14 - done} items run, {done} already done" in " ".join(err.decode().split())
    assert len(fake_openai.requests) - requests_before <= 14 - done  # finished items were not re-asked
    lines = [json.loads(line) for line in items.read_text(encoding="utf-8").splitlines()]
    assert len({(r["case_id"], r["target"]) for r in lines}) == len(lines) == 14
    assert quality(summary_of(run)) == quality(summary_of(whole))
    assert summary_of(run).comparisons == summary_of(whole).comparisons
