"""Helpers for tests that start real server processes on loopback."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_ok(url: str, proc: subprocess.Popen[bytes], log_path: Path, timeout_s: float = 60.0) -> None:
    """Poll ``url`` until it answers 200; fail with the process log if it exits or times out."""
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited: {log_path.read_text(errors='replace')[-2000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer within {timeout_s:.0f} s")
        time.sleep(0.1)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate a process, killing it if it does not exit within 10 s."""
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def llama_cpp_server(log_dir: Path) -> Iterator[int]:
    """A real ``python -m llama_cpp.server`` with the bundled Gemma 3 270M; yields its port.

    One thread: on a shared 2-core machine two spinning llama.cpp threads run 5-10x slower. The
    GGUF carries no chat template; without ``--chat_format gemma`` llama.cpp falls back to
    llama-2's and this base model ends its turn at once. The log goes to a file: llama.cpp writes
    more than a pipe buffer holds and would block on a full pipe.
    """
    from rag.chat.llamacpp import bundled_gemma_path

    port = free_port()
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(bundled_gemma_path()), "--host", "127.0.0.1",
           "--port", str(port), "--n_ctx", "2048", "--n_threads", "1", "--chat_format", "gemma",
           "--model_alias", "gemma3-270m"]  # fmt: skip
    log_path = log_dir / "llama-server.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_until_ok(f"http://127.0.0.1:{port}/v1/models", proc, log_path)
            yield port
        finally:
            stop(proc)
