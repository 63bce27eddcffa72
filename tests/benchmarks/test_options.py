"""Every benchmark script measures a team's own data: ``--corpus DIR`` and ``--questions FILE`` (eval cases).

The scripts run as real processes on a tiny folder; the options' checks give clear errors, and a folder of
mixed formats becomes the documents ingestion would make, with the questions' gold sources mapped onto them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = sorted(p for p in (ROOT / "benchmarks").glob("*.py") if p.name != "common.py")
NO_QUESTIONS = {
    "parse_limits.py",
    "reads.py",
    "docsites.py",
    "hwp_parsers.py",
}  # they measure reading and parsing: no question has a use there


def run(*argv: str | Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False"}
    cmd = [sys.executable, *map(str, argv)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=timeout, check=False)


@pytest.fixture()
def own(tmp_path: Path) -> tuple[Path, Path]:
    docs = tmp_path / "docs"
    (docs / "ops").mkdir(parents=True)
    (docs / "ops" / "backups.md").write_text("# Backups\n\nBackups run nightly at 02:00 UTC.\n", encoding="utf-8")
    (docs / "gpu.txt").write_text("GPU quota requests go to the platform team.\n", encoding="utf-8")
    (docs / "백업.html").write_text(
        "<html><head><title>백업 안내</title></head><body><p>백업은 매일 밤 실행됩니다.</p></body></html>",
        encoding="utf-8",
    )
    cases = tmp_path / "cases.jsonl"
    rows = [
        {"id": "q1", "question": "When do backups run?", "answers": ["02:00 UTC"], "sources": ["ops/backups.md"]},
        {"id": "q2", "question": "Who takes GPU quota requests?", "sources": [f"file://{docs}/gpu.txt"]},
    ]
    cases.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return docs, cases


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_every_benchmark_takes_corpus_questions_and_page(script: Path) -> None:
    shown = run(script, "--help", timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert "--corpus" in shown.stdout and "--page" in shown.stdout
    assert ("--questions" in shown.stdout) == (script.name not in NO_QUESTIONS)


def test_a_corpus_that_is_not_a_folder_is_refused_with_the_reason(tmp_path: Path) -> None:
    out = run(ROOT / "benchmarks" / "batching.py", "--corpus", tmp_path / "missing")
    assert out.returncode != 0 and "--corpus" in out.stderr and "not a folder" in out.stderr


def test_a_question_file_that_does_not_load_is_refused_with_its_line(own: tuple[Path, Path], tmp_path: Path) -> None:
    docs, _ = own
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "q1"}\n', encoding="utf-8")  # no question
    out = run(ROOT / "benchmarks" / "retrieval.py", "--corpus", docs, "--questions", bad)
    assert out.returncode != 0 and "--questions" in out.stderr and "bad.jsonl" in out.stderr


def test_quality_benchmarks_of_a_corpus_need_its_questions(own: tuple[Path, Path]) -> None:
    docs, _ = own
    out = run(ROOT / "benchmarks" / "retrieval.py", "--corpus", docs)
    assert out.returncode != 0 and "--corpus needs --questions" in out.stderr


def test_a_folder_becomes_the_parsed_documents_and_gold_sources_name_them(own: tuple[Path, Path]) -> None:
    sys.path.insert(0, str(ROOT))
    from benchmarks.common import corpus_set

    docs, cases = own
    imported = corpus_set(docs, cases)
    by_id = {d.id: d for d in imported.corpus}
    assert set(by_id) == {"ops/backups.md", "gpu.txt", "백업.html"}
    assert "02:00" in by_id["ops/backups.md"].text and by_id["백업.html"].title == "백업 안내"
    assert [c.sources for c in imported.cases] == [("ops/backups.md",), ("gpu.txt",)]


def test_batching_measures_a_teams_corpus_and_questions_and_writes_its_page(
    own: tuple[Path, Path], tmp_path: Path
) -> None:
    docs, cases = own
    out_json, page = tmp_path / "batching.json", tmp_path / "pages" / "batching.md"
    done = run(ROOT / "benchmarks" / "batching.py", "--corpus", docs, "--questions", cases, "--rounds", "1",
               "--backend", "torch", "--out", out_json, "--page", page)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out_json.read_text(encoding="utf-8"))
    assert set(result["results"]) == {"docs", "questions of cases.jsonl"}
    assert result["results"]["questions of cases.jsonl"]["chunks"] == 2
    text = page.read_text(encoding="utf-8")
    for part in ("# Benchmark: embedding batches", "**Machine:**", "**Command:**", "**Date:**", "**Settings:**"):
        assert part in text
    assert "--corpus" in text  # the command as run
