"""Fixtures for the ingestion tests: settings on a temp dir, an in-memory store, the hashing embedder."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from rag.config import Settings
from rag.embedders.hashing import HashingEmbedder
from rag.stores.memory import MemoryStore

DOCS = Path(__file__).resolve().parents[2] / "examples" / "docs"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        store={"url": "memory://", "collection": "docs"},
        embed={"url": "hash://", "batch_size": 8},
    )


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore("docs")


@pytest.fixture
def embedder() -> HashingEmbedder:
    return HashingEmbedder(64)


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """A writable copy of the sample corpus."""
    dest = tmp_path / "docs"
    shutil.copytree(DOCS, dest)
    return dest
