"""The fakes speak the real wire formats: checked with the official openai and ollama clients."""

from __future__ import annotations

import httpx
import ollama
import openai
import pytest

from tests.fakes import FakeOllamaServer, FakeOpenAIServer


def test_openai_fake_non_stream_and_stream_parse_with_the_official_client(fake_openai: FakeOpenAIServer):
    client = openai.OpenAI(api_key="x", base_url=fake_openai.base_url, max_retries=0)
    assert [m.id for m in client.models.list()] == ["fake-chat", "fake-embed"]
    done = client.chat.completions.create(model="fake-chat", messages=[{"role": "user", "content": "hi there"}])
    assert done.choices[0].message.content == "Echo: hi there"
    assert done.choices[0].finish_reason == "stop" and done.usage is not None and done.usage.total_tokens == 5
    chunks = list(
        client.chat.completions.create(
            model="fake-chat",
            messages=[{"role": "user", "content": "hi there"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Echo: hi there"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    plain = list(
        client.chat.completions.create(model="fake-chat", messages=[{"role": "user", "content": "x"}], stream=True)
    )
    assert all(c.usage is None for c in plain)


def test_openai_fake_stream_ends_with_done_and_errors_use_the_envelope(fake_openai: FakeOpenAIServer):
    body = {"model": "fake-chat", "messages": [{"role": "user", "content": "a"}], "stream": True}
    r = httpx.post(fake_openai.base_url + "/chat/completions", json=body)
    assert r.headers["content-type"].startswith("text/event-stream")
    assert r.text.rstrip().endswith("data: [DONE]")
    r = httpx.post(fake_openai.base_url + "/chat/completions", json={**body, "model": "nope"})
    assert r.status_code == 404 and set(r.json()["error"]) == {"message", "type", "param", "code"}


def test_openai_fake_embeddings_in_float_and_base64(fake_openai: FakeOpenAIServer):
    client = openai.OpenAI(api_key="x", base_url=fake_openai.base_url, max_retries=0)
    as_float = client.embeddings.create(model="fake-embed", input=["a b", "c"], encoding_format="float")
    as_b64 = client.embeddings.create(model="fake-embed", input=["a b", "c"])
    assert [len(d.embedding) for d in as_float.data] == [16, 16]
    assert as_b64.data[0].embedding == pytest.approx(as_float.data[0].embedding, abs=1e-6)


def test_ollama_fake_parses_with_the_official_client(fake_ollama: FakeOllamaServer):
    client = ollama.Client(host=fake_ollama.host)
    assert [m.model for m in client.list().models] == ["llama3.2:latest", "nomic-embed-text:latest"]
    done = client.chat(model="llama3.2", messages=[{"role": "user", "content": "hello there"}])
    assert done.message.content == "Echo: hello there" and done.done and done.eval_count == 3
    parts = list(client.chat(model="llama3.2", messages=[{"role": "user", "content": "hello there"}], stream=True))
    assert [p.done for p in parts] == [False, False, False, True]
    assert parts[-1].done_reason == "stop" and parts[-1].prompt_eval_count == 2
    assert len(client.embed(model="nomic-embed-text", input=["a", "b"]).embeddings) == 2
    with pytest.raises(ollama.ResponseError) as info:
        client.chat(model="nope", messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 404 and info.value.error == "model 'nope' not found"


def test_ollama_fake_streams_ndjson(fake_ollama: FakeOllamaServer):
    r = httpx.post(
        fake_ollama.host + "/api/chat", json={"model": "llama3.2", "messages": [{"role": "user", "content": "x"}]}
    )
    assert r.headers["content-type"].startswith("application/x-ndjson")
    lines = r.text.strip().split("\n")
    assert len(lines) == 3 and '"done": true' in lines[-1]
    assert httpx.get(fake_ollama.host + "/").text == "Ollama is running"
