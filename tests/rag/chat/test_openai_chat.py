"""OpenAIChat against the fake OpenAI API (tests/fakes/openai_server.py)."""

from __future__ import annotations

import json

import pytest

from rag.chat.openai import OpenAIChat
from rag.config import Settings
from rag.errors import ConfigError, UpstreamError, UpstreamTimeout, UpstreamUnavailable
from rag.registry import make_chat
from rag.types import ChatRequest, Delta, GenParams, Message
from tests.fakes import FakeOpenAIServer


def settings(**chat: object) -> Settings:
    return Settings(chat={"url": "auto", "timeout_s": 5, **chat})


def ask(text: str, **params: object) -> ChatRequest:
    return ChatRequest(
        messages=(Message("system", "Answer briefly."), Message("user", text)), params=GenParams(**params)
    )


async def collect(chat: OpenAIChat, request: ChatRequest) -> list[Delta]:
    return [d async for d in chat.stream(request)]


def chat_for(url: str, **chat: object) -> OpenAIChat:
    backend = make_chat(settings(**chat), url)
    assert isinstance(backend, OpenAIChat)
    return backend


async def test_streams_the_answer_in_pieces_and_ends_with_finish_reason_and_usage(fake_openai: FakeOpenAIServer):
    chat = chat_for(f"openai+http://127.0.0.1:{fake_openai.port}/v1?model=fake-chat")
    deltas = await collect(chat, ask("what is retrieval augmented generation"))
    await chat.close()
    assert "".join(d.text for d in deltas) == "Echo: what is retrieval augmented generation"
    assert len([d for d in deltas if d.text]) == 6
    last = deltas[-1]
    assert last.finish_reason == "stop" and last.text == ""
    assert last.usage is not None and last.usage.prompt_tokens == 7 and last.usage.completion_tokens == 6
    assert all(d.finish_reason is None for d in deltas[:-1])


async def test_gen_params_reach_the_server_and_max_tokens_reports_length(fake_openai: FakeOpenAIServer):
    chat = chat_for(f"openai+http://127.0.0.1:{fake_openai.port}/v1?model=fake-chat")
    deltas = await collect(chat, ask("one two three four five", temperature=0.7, top_p=0.9, max_tokens=3, seed=7))
    await chat.close()
    sent = fake_openai.requests[-1]
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert (sent["temperature"], sent["top_p"], sent["max_tokens"], sent["seed"]) == (0.7, 0.9, 3, 7)
    assert "stop" not in sent
    assert "".join(d.text for d in deltas) == "Echo: one two "
    assert deltas[-1].finish_reason == "length"


async def test_stop_sequences_are_sent_and_defaults_come_from_settings(fake_openai: FakeOpenAIServer):
    chat = chat_for(f"openai+http://127.0.0.1:{fake_openai.port}/v1?model=fake-chat", max_tokens=64, temperature=0.2)
    deltas = await collect(chat, ask("alpha beta gamma", stop=("gamma",)))
    await chat.close()
    sent = fake_openai.requests[-1]
    assert sent["stop"] == ["gamma"] and sent["max_tokens"] == 64 and sent["temperature"] == 0.2
    assert "".join(d.text for d in deltas) == "Echo: alpha beta "


async def test_kserve_url_defaults_to_the_openai_v1_prefix():
    with FakeOpenAIServer(prefix="/openai/v1") as kserve:
        for url in (
            f"kserve+http://127.0.0.1:{kserve.port}?model=fake-chat",
            f"kserve+http://127.0.0.1:{kserve.port}/openai/v1?model=fake-chat",
        ):
            chat = chat_for(url)
            deltas = await collect(chat, ask("hello kserve"))
            assert await chat.health()
            await chat.close()
            assert "".join(d.text for d in deltas) == "Echo: hello kserve"


async def test_api_key_from_settings_is_sent_as_bearer_token():
    with FakeOpenAIServer(api_key="sk-test-123") as server:
        good = chat_for(f"openai+http://127.0.0.1:{server.port}/v1?model=fake-chat", api_key="sk-test-123")
        assert "".join([d.text async for d in good.stream(ask("hi"))]) == "Echo: hi"
        bad = chat_for(f"openai+http://127.0.0.1:{server.port}/v1?model=fake-chat&retries=0", api_key="wrong")
        with pytest.raises(UpstreamError, match="401"):
            await collect(bad, ask("hi"))
        await good.close()
        await bad.close()


async def test_unknown_model_is_an_upstream_error_naming_the_model(fake_openai: FakeOpenAIServer):
    chat = chat_for(f"openai+http://127.0.0.1:{fake_openai.port}/v1?model=no-such-model")
    with pytest.raises(UpstreamError, match="no-such-model") as info:
        await collect(chat, ask("hi"))
    await chat.close()
    assert info.value.code == "model_not_found" and info.value.status == 502
    assert info.value.__cause__ is not None


async def test_connection_refused_is_upstream_unavailable(closed_port: int):
    chat = chat_for(f"openai+http://127.0.0.1:{closed_port}/v1?model=x&retries=0")
    with pytest.raises(UpstreamUnavailable, match=str(closed_port)):
        await collect(chat, ask("hi"))
    assert not await chat.health()
    await chat.close()


async def test_server_error_carries_the_upstream_message(fake_openai: FakeOpenAIServer):
    fake_openai.fail_next(1, status=500, message="GPU on fire")
    chat = chat_for(f"openai+http://127.0.0.1:{fake_openai.port}/v1?model=fake-chat&retries=0")
    with pytest.raises(UpstreamError, match="GPU on fire"):
        await collect(chat, ask("hi"))
    # The failure was used up: the next request succeeds.
    assert (await collect(chat, ask("hi")))[-1].finish_reason == "stop"
    await chat.close()


async def test_slow_server_is_upstream_timeout(fake_openai: FakeOpenAIServer):
    fake_openai.delay_s = 2.0
    chat = chat_for(f"openai+http://127.0.0.1:{fake_openai.port}/v1?model=fake-chat&retries=0", timeout_s=0.3)
    with pytest.raises(UpstreamTimeout):
        await collect(chat, ask("hi"))
    await chat.close()


async def test_health_is_true_when_models_are_listed(fake_openai: FakeOpenAIServer):
    chat = chat_for(f"openai+http://127.0.0.1:{fake_openai.port}/v1?model=fake-chat")
    assert await chat.health()
    await chat.close()


def test_missing_model_or_openai_key_fails_at_construction():
    with pytest.raises(ConfigError, match="needs a model"):
        make_chat(settings(), "openai+http://127.0.0.1:8000/v1")
    with pytest.raises(ConfigError, match="API key"):
        make_chat(settings(), "openai://?model=gpt-4o-mini")
    chat = make_chat(settings(api_key="sk-x"), "openai://?model=gpt-4o-mini")
    assert chat.name == "openai://?model=gpt-4o-mini"


async def test_fold_system_sends_the_system_message_at_the_start_of_the_first_user_turn(
    fake_openai: FakeOpenAIServer,
):
    base = f"openai+http://127.0.0.1:{fake_openai.port}/v1?model=fake-chat"
    plain, folded = chat_for(base), chat_for(base + "&fold_system=true")
    await collect(plain, ask("hello"))
    assert [m["role"] for m in fake_openai.requests[-1]["messages"]] == ["system", "user"]
    await collect(folded, ask("hello"))
    await plain.close()
    await folded.close()
    assert fake_openai.requests[-1]["messages"] == [{"role": "user", "content": "Answer briefly.\n\nhello"}]
    with pytest.raises(ConfigError, match="fold_system"):
        chat_for(base + "&fold_system=maybe")


async def test_tools_are_passed_and_streamed_tool_call_pieces_come_back(fake_openai: FakeOpenAIServer):
    chat = chat_for(f"openai+http://127.0.0.1:{fake_openai.port}/v1?model=fake-chat")
    tool = {"type": "function", "function": {"name": "find", "parameters": {"type": "object",
            "properties": {"q": {"type": "string"}}}}}  # fmt: skip
    deltas = await collect(chat, ask("find it", tools=(tool,), tool_choice="required"))
    await chat.close()
    sent = fake_openai.requests[-1]
    assert (sent["tools"], sent["tool_choice"]) == ([tool], "required")
    pieces = [p for d in deltas for p in d.tool_calls]
    assert pieces[0].id and pieces[0].name == "find"
    assert json.loads("".join(p.arguments for p in pieces)) == {"q": "find it"}
    assert deltas[-1].finish_reason == "tool_calls"


async def test_response_format_and_logprobs_are_passed_through(fake_openai: FakeOpenAIServer):
    chat = chat_for(f"openai+http://127.0.0.1:{fake_openai.port}/v1?model=fake-chat")
    deltas = await collect(chat, ask("hi", response_format={"type": "json_object"}, logprobs=True, top_logprobs=1))
    await chat.close()
    sent = fake_openai.requests[-1]
    assert (sent["response_format"], sent["logprobs"], sent["top_logprobs"]) == ({"type": "json_object"}, True, 1)
    assert json.loads("".join(d.text for d in deltas)) == {"answer": "Echo: hi"}
    assert all(d.logprobs and d.logprobs["content"] for d in deltas if d.text)


def test_features_narrow_with_the_url_and_refuse_unknown_names(fake_openai: FakeOpenAIServer):
    base = f"openai+http://127.0.0.1:{fake_openai.port}/v1?model=fake-chat"
    assert chat_for(base).features == {"response_format", "tools", "logprobs"}
    assert chat_for(base + "&features=tools").features == {"tools"}
    assert chat_for(base + "&features=none").features == frozenset()
    with pytest.raises(ConfigError, match="unknown features"):
        chat_for(base + "&features=vision")
