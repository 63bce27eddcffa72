"""The bundled MiniLM embedder, real model, fully offline."""

from __future__ import annotations

import numpy as np
import pytest

from rag.config import load
from rag.embedders.st import SentenceTransformerEmbedder
from rag.errors import ConfigError
from rag.registry import make_embedder


@pytest.fixture(scope="module")
def minilm() -> SentenceTransformerEmbedder:
    embedder = make_embedder(load(embed={"url": "st://all-MiniLM-L6-v2"}))
    assert isinstance(embedder, SentenceTransformerEmbedder)
    return embedder


def test_similarities_match_the_published_sentence_transformers_example(minilm):
    # The model card's example: similarity matrix [[1, 0.6660, 0.1046], [0.6660, 1, 0.1411], ...].
    v = minilm.encode(["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."])
    sims = v @ v.T
    assert sims[0, 1] == pytest.approx(0.6660, abs=0.001)
    assert sims[0, 2] == pytest.approx(0.1046, abs=0.001)
    assert sims[1, 2] == pytest.approx(0.1411, abs=0.001)


def test_vectors_are_unit_length_float32_with_the_recorded_dimension(minilm):
    v = minilm.encode(["one", "two three"])
    assert v.dtype == np.float32 and v.shape == (2, 384)
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert minilm.info.id.partition("+")[0] == "sentence-transformers/all-MiniLM-L6-v2" and minilm.info.dim == 384


async def test_query_and_document_prefixes_change_the_embedding():
    settings = load(embed={"url": "st://all-MiniLM-L6-v2", "query_prefix": "query: "})
    plain = make_embedder(load(embed={"url": "st://all-MiniLM-L6-v2"}))
    prefixed = make_embedder(settings)
    q1 = await plain.embed_query("gpu quota")
    q2 = await prefixed.embed_query("gpu quota")
    d2 = await prefixed.embed_documents(["gpu quota"])
    assert not np.allclose(q1, q2)
    assert np.allclose(q1, d2[0], atol=1e-6)


def test_an_unknown_model_name_is_refused_instead_of_downloaded():
    with pytest.raises(ConfigError, match="never downloaded"):
        make_embedder(load(embed={"url": "st://BAAI/bge-m3"}))


def test_a_missing_model_directory_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        make_embedder(load(embed={"url": f"st://{tmp_path}/nope"}))
