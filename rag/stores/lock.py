"""One process at a time on an embedded store: an exclusive ``flock`` on a file next to it.

Chroma's embedded mode and Milvus Lite are not safe for several processes. A second Chroma process
that writes leaves the first one's in-memory HNSW index out of step with the shared sqlite metadata
(every filtered query then fails with "Error finding id" until a restart), and two processes that
persist the same HNSW segment, or replay Chroma's write log into it, can corrupt the directory.
Milvus Lite locks its data directory itself, with a message that names no holder.

So the first process to open an embedded store holds ``<store>.lock`` beside it until it closes the
store or exits; the kernel drops the lock of a process that dies, so a crash leaves no stale lock.
Any other process is refused with :class:`rag.errors.StoreLocked`, naming the holder (pid, host,
command, since when) and what to do. Store objects of one process that open the same path (one per
profile or collection version) share one lock, counted.

The lock file holds the holder's identity as JSON. ``filelock`` is not used: it truncates the file on
every attempt to lock it, which would erase that record.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shlex
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag.errors import StoreLocked, UpstreamUnavailable

log = logging.getLogger(__name__)

SERVER_STORES = "a store server: chroma+http://HOST:8000 (`chroma run --path DIR`) or milvus://HOST:19530"


@dataclass
class _Held:
    fd: int
    users: int


_HELD: dict[str, _Held] = {}
_GUARD = threading.Lock()


def _forget_in_child() -> None:
    # A forked child is another process: it must not release (or count on) the parent's lock, and the
    # guard may have been taken by a parent thread at the moment of the fork.
    global _GUARD
    _GUARD = threading.Lock()
    for held in _HELD.values():
        with contextlib.suppress(OSError):
            os.close(held.fd)
    _HELD.clear()


os.register_at_fork(after_in_child=_forget_in_child)


def lock_path(target: Path) -> Path:
    """The lock file of a store directory or file: ``<name>.lock`` beside it."""
    real = Path(os.path.realpath(target))
    return real.parent / f"{real.name}.lock"


def acquire(target: Path, kind: str) -> None:
    """Hold the lock of ``target`` for this process (counted: every acquire needs one :func:`release`).

    Raises:
        StoreLocked: another process holds it.
        UpstreamUnavailable: the lock file cannot be made or locked (read-only or lock-less filesystem).
    """
    path = lock_path(target)
    with _GUARD:
        held = _HELD.get(str(path))
        if held is not None:
            held.users += 1
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise UpstreamUnavailable(f"cannot create the lock file {path} of {kind} {target}: {e}") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fd)
            os.close(fd)
            raise StoreLocked(refusal(kind, target, path, holder)) from None
        except OSError as e:
            os.close(fd)
            raise UpstreamUnavailable(
                f"cannot lock {path} ({e}): {kind} {target} needs a filesystem with flock (a local disk) "
                "so that no second process opens it"
            ) from e
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(_me()).encode(), 0)
        _HELD[str(path)] = _Held(fd, 1)
    log.info("holding %s for %s %s", path, kind, target)


def release(target: Path) -> None:
    """Give back one :func:`acquire`; the lock is dropped with the last one."""
    path = lock_path(target)
    with _GUARD:
        held = _HELD.get(str(path))
        if held is None:
            return
        held.users -= 1
        if held.users > 0:
            return
        del _HELD[str(path)]
        try:
            os.ftruncate(held.fd, 0)
            fcntl.flock(held.fd, fcntl.LOCK_UN)
        finally:
            os.close(held.fd)
    log.info("released %s", path)


def refusal(kind: str, target: Path, path: Path, holder: dict[str, Any] | None) -> str:
    """The message for a process refused a store another one holds: who holds it and what to do."""
    if holder:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(holder.get("since", 0))))
        who = f"pid {holder.get('pid')} on {holder.get('host')}, since {since}: {holder.get('command')}"
    else:
        who = f"its lock file {path} names no holder"
    return (
        f"{kind} {target} is in use by another process ({who}). An embedded store serves one process at "
        f"a time: stop that process and run this again, or, to run the service and ingestion together, use "
        f"{SERVER_STORES}"
    )


def _me() -> dict[str, Any]:
    command = shlex.join(getattr(sys, "orig_argv", sys.argv))
    return {"pid": os.getpid(), "host": socket.gethostname(), "command": command[:300], "since": time.time()}


def _read(fd: int) -> dict[str, Any] | None:
    """The holder recorded in a lock file (None while it is being written, or if it is not ours)."""
    try:
        value = json.loads(os.pread(fd, 4096, 0).decode("utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None
