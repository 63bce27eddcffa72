"""Shared set-up for eval runs: an in-memory store, the hashing embedder, the XQuAD excerpt."""

from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
XQUAD = DATA / "xquad_en_excerpt.json"


@pytest.fixture
def eval_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    """RAG_* settings for a fast run: memory:// store, hash:// embedder, every retrieved chunk kept, k=2."""
    env = {
        "RAG_STORE__URL": "memory://",
        "RAG_EMBED__URL": "hash://?dim=256",
        "RAG_RETRIEVAL__MIN_SCORE": "0",
        "RAG_RETRIEVAL__K": "2",
        "RAG_DATA_DIR": str(tmp_path / ".rag"),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("RAG_CONFIG_FILE", raising=False)
    return env


def fake_target(base_url: str) -> str:
    """The chat URL of the fake OpenAI server's chat model."""
    return f"openai+{base_url}?model=fake-chat"
