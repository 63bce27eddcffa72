"""OllamaChat against the fake Ollama server (tests/fakes/ollama_server.py)."""

from __future__ import annotations

import json

import pytest

from rag.chat.ollama import OllamaChat
from rag.config import Settings
from rag.errors import ConfigError, InvalidRequest, UpstreamError, UpstreamUnavailable
from rag.registry import make_chat
from rag.types import ChatRequest, GenParams, Message
from tests.fakes import FakeOllamaServer


def chat_for(url: str) -> OllamaChat:
    backend = make_chat(Settings(chat={"url": "auto", "timeout_s": 5, "max_tokens": 100}), url)
    assert isinstance(backend, OllamaChat)
    return backend


def ask(text: str, **params: object) -> ChatRequest:
    return ChatRequest(messages=(Message("user", text),), params=GenParams(**params))


async def test_streams_pieces_and_reports_token_counts_from_the_done_message(fake_ollama: FakeOllamaServer):
    chat = chat_for(f"ollama://127.0.0.1:{fake_ollama.port}?model=llama3.2")
    deltas = [d async for d in chat.stream(ask("how do I reset my password"))]
    await chat.close()
    assert "".join(d.text for d in deltas) == "Echo: how do I reset my password"
    assert len([d for d in deltas if d.text]) == 7
    assert deltas[-1].finish_reason == "stop"
    assert deltas[-1].usage is not None
    assert (deltas[-1].usage.prompt_tokens, deltas[-1].usage.completion_tokens) == (6, 7)


async def test_gen_params_become_ollama_options(fake_ollama: FakeOllamaServer):
    chat = chat_for(f"ollama://127.0.0.1:{fake_ollama.port}?model=llama3.2&num_ctx=8192")
    request = ask("a b c d e f", temperature=0.3, top_p=0.8, max_tokens=3, stop=("zzz",), seed=42)
    deltas = [d async for d in chat.stream(request)]
    await chat.close()
    sent = fake_ollama.requests[-1]
    assert sent["stream"] is True and sent["model"] == "llama3.2"
    assert sent["options"] == {
        "temperature": 0.3,
        "top_p": 0.8,
        "num_predict": 3,
        "stop": ["zzz"],
        "seed": 42,
        "num_ctx": 8192,
    }
    assert deltas[-1].finish_reason == "length"


async def test_unknown_model_is_a_clear_upstream_error(fake_ollama: FakeOllamaServer):
    chat = chat_for(f"ollama://127.0.0.1:{fake_ollama.port}?model=mistral")
    with pytest.raises(UpstreamError, match=r"'mistral' not found.*ollama pull mistral") as info:
        [d async for d in chat.stream(ask("hi"))]
    assert info.value.code == "model_not_found"
    assert not await chat.health()
    await chat.close()


async def test_server_error_is_an_upstream_error(fake_ollama: FakeOllamaServer):
    fake_ollama.fail_next(1, status=500, message="out of memory")
    chat = chat_for(f"ollama://127.0.0.1:{fake_ollama.port}?model=llama3.2")
    with pytest.raises(UpstreamError, match="out of memory"):
        [d async for d in chat.stream(ask("hi"))]
    await chat.close()


async def test_connection_refused_is_upstream_unavailable(closed_port: int):
    chat = chat_for(f"ollama://127.0.0.1:{closed_port}?model=llama3.2")
    with pytest.raises(UpstreamUnavailable, match=str(closed_port)):
        [d async for d in chat.stream(ask("hi"))]
    assert not await chat.health()
    await chat.close()


async def test_health_needs_the_server_and_the_model(fake_ollama: FakeOllamaServer):
    chat = chat_for(f"ollama://127.0.0.1:{fake_ollama.port}?model=llama3.2")
    assert await chat.health()
    await chat.close()


def test_missing_model_fails_at_construction():
    with pytest.raises(ConfigError, match="needs a model"):
        make_chat(Settings(), "ollama://127.0.0.1:11434")


async def test_response_format_becomes_ollama_format_json_or_the_schema(fake_ollama: FakeOllamaServer):
    chat = chat_for(f"ollama://127.0.0.1:{fake_ollama.port}?model=llama3.2")
    schema = {"type": "object", "properties": {"gpus": {"type": "integer"}}}
    json_mode = [d async for d in chat.stream(ask("count", response_format={"type": "json_object"}))]
    with_schema = [
        d
        async for d in chat.stream(
            ask("count", response_format={"type": "json_schema", "json_schema": {"name": "n", "schema": schema}})
        )
    ]
    await chat.close()
    assert [r["format"] for r in fake_ollama.requests] == ["json", schema]
    assert json.loads("".join(d.text for d in json_mode)) == {"answer": "Echo: count"}
    assert json.loads("".join(d.text for d in with_schema)) == {"gpus": 1}


async def test_ollama_tool_calls_come_back_as_openai_tool_call_pieces(fake_ollama: FakeOllamaServer):
    chat = chat_for(f"ollama://127.0.0.1:{fake_ollama.port}?model=llama3.2")
    tool = {"type": "function", "function": {"name": "find", "parameters": {"type": "object",
            "properties": {"q": {"type": "string"}}}}}  # fmt: skip
    deltas = [d async for d in chat.stream(ask("find the node", tools=(tool,)))]
    await chat.close()
    assert fake_ollama.requests[-1]["tools"] == [tool]
    [piece] = [p for d in deltas for p in d.tool_calls]
    assert (piece.index, piece.name, json.loads(piece.arguments)) == (0, "find", {"q": "find the node"})
    assert piece.id and piece.id.startswith("call_")
    assert deltas[-1].finish_reason == "tool_calls"


async def test_a_forced_tool_choice_is_refused_as_ollama_cannot_force_one(fake_ollama: FakeOllamaServer):
    chat = chat_for(f"ollama://127.0.0.1:{fake_ollama.port}?model=llama3.2")
    tool = {"type": "function", "function": {"name": "find"}}
    with pytest.raises(InvalidRequest) as caught:
        [d async for d in chat.stream(ask("x", tools=(tool,), tool_choice="required"))]
    await chat.close()
    assert caught.value.param == "tool_choice"
    assert fake_ollama.requests == []


async def test_an_agents_tool_turns_reach_ollama_in_its_own_form(fake_ollama: FakeOllamaServer):
    chat = chat_for(f"ollama://127.0.0.1:{fake_ollama.port}?model=llama3.2")
    call = {"id": "call_1", "type": "function", "function": {"name": "find", "arguments": '{"q": "x"}'}}
    request = ChatRequest(
        messages=(
            Message("user", "find x"),
            Message("assistant", "", tool_calls=(call,)),
            Message("tool", "found", tool_call_id="call_1"),
        )
    )
    text = "".join([d.text async for d in chat.stream(request)])
    await chat.close()
    sent = fake_ollama.requests[-1]["messages"]
    assert sent[1]["tool_calls"] == [{"function": {"name": "find", "arguments": {"q": "x"}}}]
    assert (sent[2]["role"], sent[2]["tool_name"]) == ("tool", "find")
    assert text.startswith("Echo:")
