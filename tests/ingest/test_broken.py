"""The broken-files corpus (scripts/make_broken_docs.py): every bad file reported with its reason,
every good file beside them ingested, nothing already stored lost."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ingest.worker import ingest_source
from rag.config import Settings
from rag.embedders.hashing import HashingEmbedder
from rag.stores.memory import MemoryStore
from tests.ingest.conftest import DOCS

ROOT = Path(__file__).resolve().parents[2]
RAG = Path(sys.executable).parent / "rag"


def _make_broken(dest: Path) -> dict[str, dict[str, str]]:
    spec = importlib.util.spec_from_file_location("make_broken_docs", ROOT / "scripts" / "make_broken_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make(dest, large_mb=0.6)


def _outcomes(report: dict[str, Any], root: Path) -> dict[str, tuple[str, str]]:
    prefix = root.resolve().as_uri() + "/"
    seen: dict[str, tuple[str, str]] = {}
    for outcome in ("failed", "skipped", "warning"):
        for entry in report["warnings" if outcome == "warning" else outcome]:
            if entry["source"].startswith(prefix):
                from urllib.parse import unquote

                seen[unquote(entry["source"][len(prefix) :])] = (outcome, entry["reason"])
    return seen


def _expected(manifest: dict[str, dict[str, str]], as_root: bool) -> dict[str, dict[str, str]]:
    out = {}
    for name, want in manifest.items():
        outcome = want.get("root_outcome", want["outcome"]) if as_root else want["outcome"]
        out[name] = {"outcome": outcome, "reason": want["reason"]}
    return out


def _check(report: dict[str, Any], broken: Path, expected: dict[str, dict[str, str]]) -> None:
    got = _outcomes(report, broken)
    for name, want in expected.items():
        if want["outcome"] == "ok":
            assert name not in got, f"{name!r} should have ingested cleanly, got {got.get(name)}"
            continue
        assert name in got, f"{name!r} not reported (expected {want['outcome']})"
        outcome, reason = got[name]
        assert outcome == want["outcome"], f"{name!r}: {outcome} ({reason}), expected {want['outcome']}"
        assert re.search(want["reason"], reason), f"{name!r}: reason {reason!r} does not match {want['reason']!r}"
    assert set(got) <= set(expected), f"unexpected reports: {set(got) - set(expected)}"


async def test_broken_files_are_reported_and_good_ones_beside_them_ingested(settings: Settings, corpus: Path) -> None:
    settings = settings.model_copy(update={"ingest": settings.ingest.model_copy(update={"max_file_mb": 0.5})})
    store, embedder = MemoryStore("docs"), HashingEmbedder(64)
    first = await ingest_source(settings, store, embedder, str(corpus))
    assert first.failed == ()
    before = dict(store._opened().chunks)

    broken = corpus / "broken"
    manifest = _make_broken(broken)
    report = await ingest_source(settings, store, embedder, str(corpus))
    _check(report.to_dict(), broken, _expected(manifest, as_root=os.geteuid() == 0))

    after = store._opened().chunks
    assert set(before) <= set(after), "chunks stored before the broken files arrived were lost"
    sources = {c.source for c in after.values()}
    for name, want in _expected(manifest, os.geteuid() == 0).items():
        uri = (broken / name).resolve().as_uri() if not (broken / name).is_symlink() else (broken / name).as_uri()
        if want["outcome"] in ("ok", "warning"):
            assert uri in sources, f"{name!r} was not ingested"
    # Every chunk of the good files carries every field.
    for chunk in after.values():
        assert chunk.text.strip() and chunk.source and chunk.title and chunk.groups and chunk.doc_hash
        assert chunk.lang and chunk.content_hash and chunk.ingested_at > 0


def _without_dac_override() -> None:
    """In the child before exec: drop the capabilities that let root read any file.

    Tests run as root, and root ignores permission bits. Dropping CAP_DAC_OVERRIDE and
    CAP_DAC_READ_SEARCH from the bounding set makes the exec'd process a root that chmod 000 stops.
    """
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


@pytest.mark.skipif(sys.platform != "linux", reason="capabilities are Linux-only")
def test_cli_reports_reasons_and_exits_1_also_for_a_file_it_may_not_read(tmp_path: Path) -> None:
    as_root = os.geteuid() == 0
    base = tmp_path
    docs = base / "docs"
    shutil.copytree(DOCS, docs)
    manifest = _make_broken(docs / "broken")
    data = base / "data"
    data.mkdir()
    env = {
        **os.environ,
        "HOME": str(base),
        "RAG_DATA_DIR": str(data),
        "RAG_STORE__URL": f"chroma://{data}/chroma",
        "RAG_EMBED__URL": "hash://?dim=64",
        "RAG_INGEST__MAX_FILE_MB": "0.5",
    }
    report_file = data / "report.json"
    proc = subprocess.run(
        [str(RAG), "ingest", str(docs), "--report", str(report_file)],
        env=env, cwd=base, capture_output=True, text=True, timeout=120,
        preexec_fn=_without_dac_override if as_root else None,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    report = json.loads(report_file.read_text(encoding="utf-8"))
    _check(report, docs / "broken", _expected(manifest, as_root=False))
    assert "truncated PDF" in proc.stderr and "locked.md" in proc.stderr
    assert report["added"] >= 12 + 6  # the sample corpus and the good files among the broken ones
