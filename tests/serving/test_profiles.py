"""RAG profiles: one model per collection × chat backend on /v1/models, each answering from its own documents."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import httpx
import openai
import pytest

from rag.config import ServerSettings
from tests.fakes.openai_server import FakeOpenAIServer
from tests.serving.conftest import MODEL, RagServer, _ingest, _server_env

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def backend() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as server:
        yield server


@pytest.fixture(scope="module")
def server(
    start_rag_server: Callable[..., RagServer], tmp_path_factory: pytest.TempPathFactory, backend: FakeOpenAIServer
) -> RagServer:
    root = tmp_path_factory.mktemp("profiles")
    public, hr = root / "public", root / "hr"
    public.mkdir()
    hr.mkdir()
    (public / "cluster.md").write_text("# Cluster\n\nThe research cluster has 64 GPUs in the north hall.\n")
    (hr / "leave.md").write_text("# Leave\n\nEvery employee has 25 days of paid leave a year.\n")
    store_url = f"chroma://{root}/chroma"
    _ingest(_server_env(root, store_url, "extractive://", "hash://", {"RAG_STORE__COLLECTION": "hr-docs"}), hr)
    chat = f"openai+http://{backend.base_url.removeprefix('http://')}?model=fake-chat"
    profiles = [{"name": "hr-assistant", "collection": "hr-docs", "chat_url": chat}]
    return start_rag_server(store_url, docs=public, env={"RAG_SERVER__PROFILES": json.dumps(profiles)})


def test_models_lists_one_model_per_profile(server: RagServer) -> None:
    models = {m.id: m.model_extra["rag"] for m in server.openai().models.list().data if m.model_extra}
    assert set(models) == {MODEL, "hr-assistant"}
    assert models[MODEL]["collection"] == "docs" and models[MODEL]["chat_backend"].startswith("extractive")
    assert models["hr-assistant"]["collection"] == "hr-docs" and "openai" in models["hr-assistant"]["chat_backend"]
    assert server.openai().models.retrieve("hr-assistant").id == "hr-assistant"


def test_each_model_answers_from_its_own_collection_and_backend(server: RagServer, backend: FakeOpenAIServer) -> None:
    client = server.openai()
    default = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "How many GPUs?"}])
    assert "64" in (default.choices[0].message.content or "")
    sources = (default.model_extra or {})["sources"]
    assert sources and all(s["source"].endswith("cluster.md") for s in sources)
    backend.reset()
    stream = client.chat.completions.create(
        model="hr-assistant", stream=True, messages=[{"role": "user", "content": "How many days of paid leave?"}]
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text.startswith("Echo:")  # the fake backend answered, not the extractive default
    prompt = json.dumps(backend.requests[-1])
    assert "25 days of paid leave" in prompt and "64 GPUs" not in prompt


def test_search_takes_a_model_and_unknown_models_are_404(server: RagServer) -> None:
    hits = httpx.post(f"{server.url}/v1/search", json={"query": "paid leave days", "model": "hr-assistant"}).json()
    assert hits["data"] and all(h["source"].endswith("leave.md") for h in hits["data"])
    with pytest.raises(openai.NotFoundError, match="hr-assistant"):
        server.openai().chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])


def test_profile_names_must_be_unique() -> None:
    with pytest.raises(ValueError, match="rag"):
        ServerSettings(profiles=[{"name": "rag"}])  # type: ignore[list-item]
