"""Embedded stores serve one process at a time: the per-directory lock, with real second processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from rag.config import Settings, StoreSettings
from rag.errors import CollectionNotFound
from rag.registry import make_store
from rag.seams import VectorStore
from rag.stores.lock import lock_path
from rag.types import EmbedderInfo

REPO = Path(__file__).resolve().parents[2]
INFO = EmbedderInfo(id="hash-8", dim=8)

# Opens a store in its own process: prints "opened", or the refusal and exits 3; "hold" keeps it open.
_OPEN = """
import asyncio, sys, time
from rag.config import Settings, StoreSettings
from rag.errors import RagError
from rag.registry import make_store
from rag.types import EmbedderInfo

async def main(url, collection, data_dir, hold):
    store = make_store(Settings(data_dir=data_dir, store=StoreSettings(url=url, collection=collection)))
    try:
        await store.open(EmbedderInfo("hash-8", 8), create=True)
    except RagError as e:
        print(type(e).__name__, e.message, flush=True)
        sys.exit(3)
    print("opened", flush=True)
    if hold:
        time.sleep(600)
    await store.close()

asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "hold"))
"""

URLS = {"chroma": "chroma://{tmp}/chroma", "milvus+lite": "milvus+lite://{tmp}/rag.db"}


def _url(kind: str, tmp: Path) -> str:
    return URLS[kind].format(tmp=tmp)


def _store(url: str, tmp: Path, collection: str = "docs") -> VectorStore:
    return make_store(Settings(data_dir=tmp / "data", store=StoreSettings(url=url, collection=collection)))


def _other_process(url: str, tmp: Path, collection: str = "docs") -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-c", _OPEN, url, collection, str(tmp / "other-data"), "once"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=REPO)


@pytest.mark.parametrize("kind", list(URLS))
async def test_a_second_process_is_refused_naming_the_holder_and_what_to_do(tmp_path: Path, kind: str) -> None:
    url = _url(kind, tmp_path)
    store = _store(url, tmp_path)
    await store.open(INFO, create=True)
    try:
        refused = _other_process(url, tmp_path)
        assert refused.returncode == 3, refused.stderr[-2000:]
        message = refused.stdout
        assert message.startswith("StoreLocked ")
        assert "in use by another process" in message
        assert f"pid {os.getpid()} " in message and "pytest" in message  # who holds it: this test process
        assert "stop that process" in message and "chroma+http://" in message and "milvus://" in message
        holder = json.loads(lock_path(Path(url.split("://", 1)[1])).read_text())
        assert holder["pid"] == os.getpid()
    finally:
        await store.close()
    again = _other_process(url, tmp_path)
    assert again.returncode == 0 and again.stdout.strip() == "opened", again.stdout + again.stderr[-2000:]


@pytest.mark.parametrize("kind", list(URLS))
async def test_store_objects_of_one_process_share_one_lock_until_the_last_one_closes(tmp_path: Path, kind: str) -> None:
    url = _url(kind, tmp_path)
    # One store per collection on one path, as the service opens one per profile or collection version.
    first, second = _store(url, tmp_path, "one"), _store(url, tmp_path, "two")
    await first.open(INFO, create=True)
    await second.open(INFO, create=True)
    await first.close()
    refused = _other_process(url, tmp_path, "one")
    assert refused.returncode == 3 and refused.stdout.startswith("StoreLocked ")  # the second still holds it
    assert await second.count() == 0  # and still works
    await second.close()
    assert _other_process(url, tmp_path, "one").returncode == 0


@pytest.mark.parametrize("kind", list(URLS))
async def test_the_lock_goes_with_a_killed_holder(tmp_path: Path, kind: str) -> None:
    url = _url(kind, tmp_path)
    cmd = [sys.executable, "-c", _OPEN, url, "docs", str(tmp_path / "holder-data"), "hold"]
    holder = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=REPO)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "opened"
        refused = _other_process(url, tmp_path)
        assert refused.returncode == 3 and f"pid {holder.pid} " in refused.stdout
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    # The lock file is still there; the kernel dropped the dead process's lock, so nothing is stale.
    assert lock_path(Path(url.split("://", 1)[1])).exists()
    store = _store(url, tmp_path)
    await store.open(INFO, create=True)
    await store.close()


async def test_a_store_that_fails_to_open_keeps_no_lock(tmp_path: Path) -> None:
    url = _url("chroma", tmp_path)
    reader = _store(url, tmp_path)
    with pytest.raises(CollectionNotFound):
        await reader.open(INFO, create=False)  # a service started before anything was ingested
    created = _other_process(url, tmp_path)  # so an ingest can create the collection meanwhile
    assert created.returncode == 0, created.stdout + created.stderr[-2000:]
    await reader.open(INFO, create=False)
    assert await reader.count() == 0
    await reader.close()


# Holds a lock, forks; the child tries the same path and exits; then another process tries.
_FORK = """
import os, subprocess, sys
from pathlib import Path
from rag.errors import StoreLocked
from rag.stores import lock

target = Path(sys.argv[1])
lock.acquire(target, "test store")
child = os.fork()
if child == 0:
    try:
        lock.acquire(target, "test store")
        os._exit(1)
    except StoreLocked as e:
        os._exit(0 if f"pid {os.getppid()} " in e.message else 2)
_, status = os.waitpid(child, 0)
other = subprocess.run([sys.executable, "-c", sys.argv[2], str(target)], capture_output=True, text=True)
print(os.waitstatus_to_exitcode(status), other.returncode, "StoreLocked" in other.stderr)
"""
_TRY = "import sys; from pathlib import Path; from rag.stores import lock; lock.acquire(Path(sys.argv[1]), 'x')"


def test_a_forked_child_is_another_process_and_its_exit_leaves_the_parent_holding(tmp_path: Path) -> None:
    target = tmp_path / "store"
    target.mkdir()
    done = subprocess.run([sys.executable, "-c", _FORK, str(target), _TRY], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["0", "1", "True"]  # child refused naming the parent; still held after it
