"""Crash safety under real process death: `rag ingest` SIGKILLed at many random points, then rerun,
ends with exactly the store an uninterrupted run builds (same chunk ids, no duplicates, no orphans)."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from ingest.sync import SyncState, state_path

RAG = Path(sys.executable).parent / "rag"
WORDS = ("backup", "quota", "GPU", "cluster", "storage", "policy", "retention", "node", "queue", "job", "백업", "정책")
KILLS = 12


def _write_corpus(root: Path, version: str) -> None:
    """Version "a" or "b" of a 90-document corpus: b edits a third, deletes some, adds some, relabels a folder."""
    if root.exists():
        shutil.rmtree(root)
    rng = random.Random(7)
    for i in range(60):
        if version == "b" and i % 7 == 0:
            continue  # deleted in b
        folder = root / ("team" if i % 4 == 0 else "general")
        folder.mkdir(parents=True, exist_ok=True)
        sections = []
        for s in range(3):
            words = " ".join(rng.choice(WORDS) for _ in range(120))
            edit = " revised" if version == "b" and i % 3 == 0 and s == 1 else ""
            sections.append(f"## Part {s}{edit}\n\n{words}.")
        (folder / f"doc-{i:03d}.md").write_text(f"# Document {i}\n\n" + "\n\n".join(sections), encoding="utf-8")
    if version == "b":
        for i in range(60, 68):
            (root / "general" / f"doc-{i:03d}.md").write_text(f"# New {i}\n\nnew text {i} " * 50, encoding="utf-8")
        (root / "team" / ".rag-acl.yaml").write_text("groups: [team]\n", encoding="utf-8")


def _env(data: Path) -> dict[str, str]:
    return {
        **os.environ,
        "RAG_DATA_DIR": str(data),
        "RAG_STORE__URL": f"chroma://{data}/chroma",
        "RAG_EMBED__URL": "hash://?dim=64",
        "RAG_EMBED__BATCH_SIZE": "16",
        "RAG_INGEST__CHUNK_SIZE": "64",
        "RAG_INGEST__CHUNK_OVERLAP": "8",
    }


def _ingest(source: Path, data: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(RAG), "ingest", str(source)], env=_env(data), capture_output=True, text=True, timeout=120
    )


def _snapshot(data: Path) -> dict[str, tuple[Any, ...]]:
    import chromadb

    client = chromadb.PersistentClient(path=str(data / "chroma"))
    got = client.get_collection("docs").get(include=["metadatas", "documents"])
    ids = got["ids"]
    assert len(ids) == len(set(ids)), "duplicate chunk ids in the store"
    return {
        i: (m["source"], m["index"], tuple(m.get("groups") or ()), m["content_hash"], d)
        for i, m, d in zip(ids, got["metadatas"], got["documents"], strict=True)
    }


@pytest.mark.slow
def test_sigkill_at_random_points_then_rerun_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    source = tmp_path / "docs"
    _write_corpus(source, "b")
    ref_data = tmp_path / "ref"
    started = time.monotonic()
    proc = _ingest(source, ref_data)
    full = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    expected = _snapshot(ref_data)
    assert len(expected) > 300

    data = tmp_path / "data"
    rng = random.Random(int(os.environ.get("RAG_TEST_SEED", "20240601")))
    killed_mid_run = attempts = 0
    finished_s: list[float] = []  # runs that ended before their kill: their length bounds the next kill time
    while killed_mid_run < KILLS and attempts < 3 * KILLS:
        # Alternate between the two versions so that every run has real work: adds, edits, deletes, relabels.
        _write_corpus(source, "a" if attempts % 2 == 0 else "b")
        attempts += 1
        started = time.monotonic()
        child = subprocess.Popen(
            [str(RAG), "ingest", str(source)], env=_env(data), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        # Incremental runs are shorter than the first full one, and a loaded machine stretches them all:
        # kill at a random point before the shortest run seen so far ended, so kills land inside runs.
        try:
            child.wait(timeout=rng.uniform(0.1, min(finished_s, default=full)))
            finished_s.append(time.monotonic() - started)
        except subprocess.TimeoutExpired:
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=60)
            killed_mid_run += 1
    assert killed_mid_run >= KILLS // 2, "the kills should mostly land inside a run"

    _write_corpus(source, "b")
    proc = _ingest(source, data)
    assert proc.returncode == 0, proc.stderr
    assert _snapshot(data) == expected

    # The sync state agrees with the store: nothing pending, ids per document as stored.
    state = SyncState(state_path(data, f"chroma://{data}/chroma", "docs"))
    try:
        docs = state.under(source.resolve().as_uri())
        assert all(d.pending is None for d in docs)
        assert sorted(i for d in docs for i in d.ids) == sorted(expected)
    finally:
        state.close()

    # And one more run has nothing to do.
    proc = subprocess.run(
        [str(RAG), "ingest", str(source), "--report", str(tmp_path / "r.json")],
        env=_env(data), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    import json

    report = json.loads((tmp_path / "r.json").read_text())
    assert report["chunks_embedded"] == report["chunks_added"] == report["chunks_deleted"] == 0
    assert report["unchanged"] == len(docs)
