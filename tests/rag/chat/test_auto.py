"""resolve_auto: Ollama when it answers and has a model, else the extractive answerer."""

from __future__ import annotations

import logging

import pytest

from rag.chat.auto import auto_model, resolve_auto
from rag.chat.extractive import ExtractiveChat
from rag.chat.ollama import OllamaChat
from rag.config import Settings
from rag.types import ChatRequest, Message
from tests.fakes import FakeOllamaServer


async def test_answering_ollama_is_used_with_its_first_model(fake_ollama: FakeOllamaServer, caplog):
    caplog.set_level(logging.INFO, logger="rag.chat.auto")
    chat = await resolve_auto(Settings(chat={"url": "auto"}), probe_url=fake_ollama.host)
    assert isinstance(chat, OllamaChat) and chat.model == "llama3.2:latest"
    deltas = [d async for d in chat.stream(ChatRequest(messages=(Message("user", "ping"),)))]
    await chat.close()
    assert "".join(d.text for d in deltas) == "Echo: ping"
    assert "Ollama at" in caplog.text


async def test_configured_model_is_preferred_and_missing_one_falls_back(fake_ollama: FakeOllamaServer):
    chat = await resolve_auto(Settings(chat={"url": "auto?model=nomic-embed-text"}), probe_url=fake_ollama.host)
    assert isinstance(chat, OllamaChat) and chat.model == "nomic-embed-text:latest"
    await chat.close()
    fallback = await resolve_auto(Settings(chat={"url": "auto?model=qwen3"}), probe_url=fake_ollama.host)
    assert isinstance(fallback, ExtractiveChat)


async def test_ollama_without_models_falls_back_to_extractive():
    with FakeOllamaServer(models=()) as empty:
        chat = await resolve_auto(Settings(chat={"url": "auto"}), probe_url=empty.host)
    assert isinstance(chat, ExtractiveChat)


async def test_nothing_listening_means_extractive(closed_port: int, caplog):
    caplog.set_level(logging.INFO, logger="rag.chat.auto")
    chat = await resolve_auto(Settings(chat={"url": "auto"}), probe_url=f"http://127.0.0.1:{closed_port}")
    assert isinstance(chat, ExtractiveChat)
    assert "extractive (no Ollama" in caplog.text


@pytest.mark.parametrize(
    ("url", "model"), [("auto", None), ("auto?model=llama3.2", "llama3.2"), ("auto://?model=qwen3:4b", "qwen3:4b")]
)
def test_auto_url_may_name_a_model(url: str, model: str | None):
    assert auto_model(url) == model
