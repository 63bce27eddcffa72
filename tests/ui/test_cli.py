"""The ``rag`` command line as a user meets it: real subprocesses, clear messages, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

RAG = str(Path(sys.executable).with_name("rag"))
REPO = Path(__file__).resolve().parents[2]


def rag(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    full_env.update({"RAG_EMBED__URL": "hash://", "RAG_CHAT__URL": "extractive://", **(env or {})})
    return subprocess.run([RAG, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=180)


def test_unknown_store_scheme_is_one_clear_line_and_exit_code_2(tmp_path):
    r = rag("--store", "postgres://db/x", "ask", "hello?", cwd=tmp_path)
    assert r.returncode == 2
    assert "unknown vector store scheme 'postgres'" in r.stderr
    assert "Traceback" not in r.stderr + r.stdout


def test_asking_before_anything_was_ingested_says_to_run_ingest(tmp_path):
    r = rag("ask", "How long may a GPU job run?", cwd=tmp_path)
    assert r.returncode == 2
    assert "rag ingest" in r.stderr
    assert "Traceback" not in r.stderr + r.stdout


def test_ingest_then_ask_answers_with_citations_and_json(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "vpn.md").write_text("# VPN\n\nThe VPN gateway is vpn.example.org and needs a hardware key.\n")
    r = rag("ingest", str(docs), "--report", "r.json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "r.json").read_text())["added"] == 1
    r = rag("ask", "--json", "What is the VPN gateway?", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert "vpn.example.org" in out["answer"] and "[1]" in out["answer"]
    assert out["sources"][0]["source"].endswith("vpn.md")


def test_ingest_with_a_broken_file_reports_it_keeps_the_rest_and_exits_1(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "good.md").write_text("# Good\n\nThe lab opens at 08:00.\n")
    (docs / "broken.pdf").write_bytes(b"%PDF-1.7\n1 0 obj <<")
    r = rag("ingest", str(docs), "--report", "r.json", cwd=tmp_path)
    assert r.returncode == 1
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["added"] == 1
    assert [f["source"].rsplit("/", 1)[-1] for f in report["failed"]] == ["broken.pdf"]
    assert "broken.pdf" in r.stderr


def test_a_missing_source_folder_is_a_clear_error(tmp_path):
    r = rag("ingest", str(tmp_path / "nope"), cwd=tmp_path)
    assert r.returncode == 2
    assert "nope" in r.stderr and "Traceback" not in r.stderr


def test_an_embedder_change_is_refused_with_both_names(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# A\n\nAlpha.\n")
    assert rag("ingest", str(docs), cwd=tmp_path).returncode == 0
    r = rag("--embed", "hash://?dim=128", "ingest", str(docs), cwd=tmp_path)
    assert r.returncode == 2
    assert "hash-256" in r.stderr and "hash-128" in r.stderr


@pytest.mark.parametrize("command", ["backends", "config"])
def test_informational_commands_run(tmp_path, command):
    r = rag(command, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip()


def test_the_eval_commands_are_mounted_under_rag_eval(tmp_path):
    r = rag("eval", "--help", cwd=tmp_path)
    assert r.returncode == 0
    for command in ("run", "report", "compare", "synth"):
        assert command in r.stdout
