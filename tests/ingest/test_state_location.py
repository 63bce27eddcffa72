"""State in one place: RAG_DATA_DIR holds the default store and the sync state, keyed by where the store really is.

The process tests run the real ``rag`` command from different working directories.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ingest.sync import state_files, state_path
from rag.config import Settings
from rag.registry import make_store
from rag.stores.common import store_location

RAG = str(Path(sys.executable).with_name("rag"))


def rag(*args: str, cwd: Path, data_dir: Path | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update({"RAG_EMBED__URL": "hash://", "RAG_CHAT__URL": "extractive://"})
    if data_dir is not None:
        env["RAG_DATA_DIR"] = str(data_dir)
    done = subprocess.run([RAG, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done


def ingest(docs: Path, cwd: Path, data_dir: Path | None, *store: str) -> dict[str, object]:
    report = cwd / "report.json"
    rag(*store, "ingest", str(docs), "--report", str(report), cwd=cwd, data_dir=data_dir)
    return dict(json.loads(report.read_text()))


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "vpn.md").write_text("# VPN\n\nThe VPN gateway is vpn.example.org and needs a hardware key.\n")
    return folder


@pytest.fixture
def two_dirs(tmp_path: Path) -> tuple[Path, Path]:
    a, b = tmp_path / "work-a", tmp_path / "work-b"
    a.mkdir()
    b.mkdir()
    return a, b


def test_the_default_store_lives_in_rag_data_dir_and_is_found_from_another_working_directory(
    tmp_path: Path, docs: Path, two_dirs: tuple[Path, Path]
) -> None:
    data, (a, b) = tmp_path / "state", two_dirs
    assert ingest(docs, a, data)["added"] == 1
    assert (data / "chroma").is_dir() and not (a / ".rag").exists()
    # Another working directory: the same store answers, and the same sync state says nothing changed.
    answer = json.loads(rag("ask", "--json", "What is the VPN gateway?", cwd=b, data_dir=data).stdout)
    assert "vpn.example.org" in answer["answer"]
    again = ingest(docs, b, data)
    assert again["added"] == 0 and again["unchanged"] == 1, again
    assert not (b / ".rag").exists()


def test_two_stores_written_alike_in_two_working_directories_never_share_a_sync_state(
    tmp_path: Path, docs: Path, two_dirs: tuple[Path, Path]
) -> None:
    data, (a, b) = tmp_path / "state", two_dirs
    store = ("--store", "chroma://store")  # ./store: two different stores, one shared data_dir
    assert ingest(docs, a, data, *store)["added"] == 1
    assert ingest(docs, b, data, *store)["added"] == 1
    (docs / "vpn.md").write_text("# VPN\n\nThe VPN gateway moved to vpn2.example.org last spring.\n")
    assert ingest(docs, b, data, *store)["updated"] == 1
    # With one shared state, store a would be called up to date and keep the old text.
    assert ingest(docs, a, data, *store)["updated"] == 1
    answer = json.loads(rag(*store, "ask", "--json", "What is the VPN gateway?", cwd=a, data_dir=data).stdout)
    assert "vpn2.example.org" in answer["answer"]
    assert len(list((data / "sync").glob("docs-*.sqlite3"))) == 2


def test_an_install_with_the_default_rag_folder_keeps_its_store_and_its_sync_state(tmp_path: Path, docs: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    # Written by the earlier default URL, chroma://.rag/chroma, with the default data dir .rag.
    assert ingest(docs, work, None, "--store", "chroma://.rag/chroma")["added"] == 1
    # The default (chroma:// in data_dir .rag) is the same store, and its sync state is taken over.
    again = ingest(docs, work, None)
    assert again["added"] == 0 and again["unchanged"] == 1, again
    answer = json.loads(rag("ask", "--json", "What is the VPN gateway?", cwd=work, data_dir=None).stdout)
    assert "vpn.example.org" in answer["answer"]


def test_a_sync_state_keyed_by_the_written_url_is_adopted_with_its_shards(tmp_path: Path) -> None:
    # An absolute, normalised URL is its own location (same name as before); this one is spelled otherwise.
    url = f"chroma://{tmp_path}/x/../chroma"
    folder = tmp_path / "sync"
    folder.mkdir()
    old_stem = "docs-" + hashlib.blake2b(url.encode(), digest_size=4).hexdigest()  # the URL as written
    for suffix in ("", "-shard0of2"):
        (folder / f"{old_stem}{suffix}.sqlite3").write_bytes(b"state" + suffix.encode())
    new = state_path(tmp_path, url, "docs")
    stem = new.name.removesuffix(".sqlite3")
    assert stem != old_stem
    assert [p.name for p in state_files(tmp_path, url, "docs")] == [f"{stem}-shard0of2.sqlite3", f"{stem}.sqlite3"]
    assert new.read_bytes() == b"state"
    assert not list(folder.glob(f"{old_stem}*"))


def test_store_locations_name_where_the_data_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert store_location("chroma://", tmp_path) == store_location(f"chroma:///{tmp_path}/chroma", tmp_path)
    assert store_location("milvus+lite://", tmp_path) == f"milvus+lite://{os.path.realpath(tmp_path / 'milvus.db')}"
    assert store_location("milvus://m", tmp_path) == store_location("milvus://m:19530/", tmp_path)
    assert store_location("milvus://m", tmp_path) != store_location("milvus://n", tmp_path)
    assert store_location("chroma+http://c", tmp_path) == "chroma+http://c:8000"
    monkeypatch.chdir(tmp_path)
    here = store_location("chroma://store", Path("/elsewhere"))
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    assert store_location("chroma://store", Path("/elsewhere")) != here


def test_bare_embedded_urls_put_the_stores_files_in_data_dir(tmp_path: Path) -> None:
    for url, name in (("chroma://", "chroma-versions"), ("milvus+lite://", "milvus.db.versions")):
        store = make_store(Settings(data_dir=tmp_path, store={"url": url}, embed={"url": "hash://"}))
        assert store.local_dir("versions") == tmp_path.absolute() / name  # type: ignore[attr-defined]
