"""Suite-wide set-up: offline, no telemetry, and in CI a skipped test is a failure."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest

from tests.fakes import FakeOllamaServer, FakeOpenAIServer

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True)
def _environment_is_restored_after_each_test() -> Iterator[None]:
    """Code under test (CLI entry points) may set RAG_* variables; none may leak into the next test."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """In CI (CI=true) a skip hides a backend that did not run: report it as a failure instead."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI", "").lower() in ("1", "true", "yes") and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, which counts as a failure: {report.longrepr}"


# --- fakes: Ollama and OpenAI API fakes -----------------------------------------------------------


@pytest.fixture(scope="session")
def _fake_openai_session() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as server:
        yield server


@pytest.fixture(scope="session")
def _fake_ollama_session() -> Iterator[FakeOllamaServer]:
    with FakeOllamaServer() as server:
        yield server


@pytest.fixture
def fake_openai(_fake_openai_session: FakeOpenAIServer) -> FakeOpenAIServer:
    """The fake OpenAI API (models ``fake-chat``, ``fake-embed``), reset: no recorded requests or failures."""
    _fake_openai_session.reset()
    return _fake_openai_session


@pytest.fixture
def fake_ollama(_fake_ollama_session: FakeOllamaServer) -> FakeOllamaServer:
    """The fake Ollama server (``llama3.2:latest``, ``nomic-embed-text:latest``), reset."""
    _fake_ollama_session.reset()
    return _fake_ollama_session


@pytest.fixture
def closed_port() -> int:
    """A loopback port with nothing listening (connections are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- end of fakes section -------------------------------------------------------------------------
