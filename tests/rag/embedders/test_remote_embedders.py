"""OpenAIEmbedder and OllamaEmbedder against their fakes: batching, prefixes, unit vectors, errors."""

from __future__ import annotations

import numpy as np
import pytest

from rag.config import Settings
from rag.embedders.ollama import OllamaEmbedder
from rag.embedders.openai import OpenAIEmbedder
from rag.errors import ConfigError, UpstreamError, UpstreamUnavailable
from rag.registry import make_embedder
from tests.fakes import FakeOllamaServer, FakeOpenAIServer

TEXTS = ["alpha beta", "gamma delta", "alpha beta", "epsilon", "zeta eta theta"]


def embedder(url: str, **embed: object) -> OpenAIEmbedder | OllamaEmbedder:
    e = make_embedder(Settings(embed={"url": url, "timeout_s": 5, **embed}))
    assert isinstance(e, OpenAIEmbedder | OllamaEmbedder)
    return e


@pytest.fixture(params=["openai", "ollama"])
def remote(request, fake_openai: FakeOpenAIServer, fake_ollama: FakeOllamaServer):
    """(base URL without query, model, fake) for each remote embedder."""
    if request.param == "openai":
        return f"openai+http://127.0.0.1:{fake_openai.port}/v1", "fake-embed", fake_openai
    return f"ollama://127.0.0.1:{fake_ollama.port}", "nomic-embed-text", fake_ollama


async def test_documents_are_batched_prefixed_and_unit_length(remote):
    base, model, fake = remote
    e = embedder(f"{base}?model={model}&dim=16", batch_size=2, document_prefix="passage: ", query_prefix="query: ")
    vectors = await e.embed_documents(TEXTS)
    query = await e.embed_query("alpha beta")
    await e.close()
    assert vectors.shape == (5, 16) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.allclose(vectors[0], vectors[2])
    assert [len(r["input"]) for r in fake.requests] == [2, 2, 1, 1]
    assert fake.requests[0]["input"] == ["passage: alpha beta", "passage: gamma delta"]
    assert fake.requests[-1]["input"] == ["query: alpha beta"]
    assert query.shape == (16,) and query.dtype == np.float32


async def test_dimension_is_probed_once_when_not_given(remote):
    base, model, fake = remote
    e = embedder(f"{base}?model={model}")
    info = e.info
    assert info.dim == 16 and info.id.endswith(f":{model}")
    assert len(fake.requests) == 1
    assert e.info.dim == 16 and len(fake.requests) == 1
    await e.close()


async def test_dimension_learned_from_first_embedding_needs_no_probe(remote):
    base, model, fake = remote
    e = embedder(f"{base}?model={model}")
    await e.embed_documents(["one"])
    assert e.info.dim == 16 and len(fake.requests) == 1
    await e.close()


async def test_wrong_stated_dimension_is_an_upstream_error(remote):
    base, model, _ = remote
    e = embedder(f"{base}?model={model}&dim=8")
    with pytest.raises(UpstreamError, match="dimension 16, expected 8"):
        await e.embed_query("hello")
    await e.close()


async def test_unknown_model_is_an_upstream_error_naming_it(remote):
    base, _, _ = remote
    e = embedder(f"{base}?model=no-such-embedder&dim=16")
    with pytest.raises(UpstreamError, match="no-such-embedder") as info:
        await e.embed_query("hello")
    assert info.value.code == "model_not_found"
    await e.close()


@pytest.mark.parametrize("scheme", ["openai+http", "ollama"])
async def test_connection_refused_is_upstream_unavailable(scheme: str, closed_port: int):
    e = embedder(f"{scheme}://127.0.0.1:{closed_port}/?model=m&dim=4&retries=0")
    with pytest.raises(UpstreamUnavailable):
        await e.embed_documents(["hello"])
    with pytest.raises(UpstreamUnavailable):
        _ = embedder(f"{scheme}://127.0.0.1:{closed_port}/?model=m&retries=0").info
    await e.close()


async def test_kserve_embedder_uses_the_openai_prefix_and_reports_openai_identity():
    with FakeOpenAIServer(prefix="/openai/v1") as kserve:
        e = embedder(f"kserve+http://127.0.0.1:{kserve.port}/openai/v1?model=fake-embed")
        vectors = await e.embed_documents(["a b", "c d"])
        assert vectors.shape == (2, 16) and e.info.id == "openai:fake-embed"
        await e.close()


def test_missing_model_fails_at_construction():
    with pytest.raises(ConfigError, match="needs a model"):
        make_embedder(Settings(embed={"url": "openai+http://127.0.0.1:1/v1"}))
    with pytest.raises(ConfigError, match="needs a model"):
        make_embedder(Settings(embed={"url": "ollama://127.0.0.1:1"}))
