"""Embedding inference backends (embed.backend): same vectors as torch fp32, within the quality bar."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rag.embedders.st import SentenceTransformerEmbedder, bundled_minilm_path
from rag.errors import ConfigError

DOCS = Path(__file__).resolve().parents[2] / "examples" / "docs"


@pytest.fixture(scope="module")
def texts() -> list[str]:
    out = []
    for path in sorted(DOCS.rglob("*.md")):
        text = path.read_text(encoding="utf-8")
        out.extend(text[i : i + 600] for i in range(0, len(text), 600))
    return out[:40]


@pytest.fixture(scope="module")
def reference(texts: list[str]) -> np.ndarray:
    return SentenceTransformerEmbedder(bundled_minilm_path(), "m").encode(texts)


@pytest.mark.parametrize(("backend", "mean_cos", "min_cos"), [("torch-bf16", 0.999, 0.995), ("onnx-int8", 0.985, 0.95)])
def test_backend_matches_fp32(
    backend: str,
    mean_cos: float,
    min_cos: float,
    texts: list[str],
    reference: np.ndarray,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    cache = tmp_path_factory.mktemp("models")
    emb = SentenceTransformerEmbedder(bundled_minilm_path(), "m", backend=backend, cache_dir=cache)
    vectors = emb.encode(texts)
    assert vectors.shape == reference.shape and vectors.dtype == np.float32
    cos = (vectors * reference).sum(1)
    assert cos.mean() >= mean_cos and cos.min() >= min_cos
    if backend.startswith("onnx"):
        assert list(cache.rglob("model-int8.onnx"))  # exported once, cached
        again = SentenceTransformerEmbedder(bundled_minilm_path(), "m", backend=backend, cache_dir=cache)
        # Dynamic int8 quantises activations per batch, so another batch gives slightly different vectors.
        assert ((again.encode(texts[:3]) * vectors[:3]).sum(1) > 0.97).all()


def test_unknown_backend_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="onnx-int8"):
        SentenceTransformerEmbedder(bundled_minilm_path(), "m", backend="tensorrt")
