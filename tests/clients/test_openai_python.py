"""The official Python SDK against a real ``rag serve``: the loops and helpers people actually write."""

from __future__ import annotations

import json

import openai
import pytest
from pydantic import BaseModel

from tests.clients.conftest import QUESTION
from tests.fakes import FakeOpenAIServer
from tests.serving.conftest import MODEL, RagServer

pytestmark = pytest.mark.slow

ASK = [{"role": "user", "content": QUESTION}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "lookup_node",
        "description": "Look up a cluster node",
        "parameters": {"type": "object", "properties": {"node": {"type": "string"}}, "required": ["node"]},
    },
}


class GpuCount(BaseModel):
    answer: str
    gpus: int


@pytest.mark.parametrize("include_usage", [False, True], ids=["plain", "include_usage"])
def test_the_naive_stream_loop_reads_choices_0_of_every_chunk(extractive: RagServer, include_usage: bool) -> None:
    options = {"stream_options": {"include_usage": True}} if include_usage else {}
    stream = extractive.openai().chat.completions.create(model=MODEL, messages=ASK, stream=True, **options)  # type: ignore[call-overload]
    chunks = list(stream)
    body = chunks[:-1] if include_usage else chunks
    # The loop from the SDK's README: it raises IndexError on any chunk without a choice.
    text = "".join(chunk.choices[0].delta.content or "" for chunk in body)
    assert "64 GPUs" in text and "[1]" in text
    finish = [c for c in body if c.choices[0].finish_reason]
    assert [c.choices[0].finish_reason for c in finish] == ["stop"]
    assert finish[0].model_extra is not None
    assert finish[0].model_extra["sources"][0]["source"].endswith("cluster.md")
    if include_usage:
        assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0
    else:
        assert all(c.usage is None for c in chunks)


def test_the_stream_helper_accumulates_the_answer(extractive: RagServer) -> None:
    with extractive.openai().chat.completions.stream(model=MODEL, messages=ASK) as stream:  # type: ignore[arg-type]
        deltas = [e.delta for e in stream if e.type == "content.delta"]
        final = stream.get_final_completion()
    assert "".join(deltas) == final.choices[0].message.content
    assert "64 GPUs" in (final.choices[0].message.content or "")
    assert final.choices[0].finish_reason == "stop"


def test_max_tokens_cuts_the_extractive_answer_with_finish_reason_length(extractive: RagServer) -> None:
    client = extractive.openai()
    full = client.chat.completions.create(model=MODEL, messages=ASK)  # type: ignore[arg-type]
    assert full.usage is not None and full.usage.completion_tokens > 5
    cut = client.chat.completions.create(model=MODEL, messages=ASK, max_completion_tokens=5)  # type: ignore[arg-type]
    assert cut.choices[0].finish_reason == "length"
    assert cut.usage is not None and cut.usage.completion_tokens <= 5
    assert (full.choices[0].message.content or "").startswith(cut.choices[0].message.content or "-")
    old_name = client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=5)  # type: ignore[arg-type]
    assert old_name.choices[0].message.content == cut.choices[0].message.content


def test_stop_ends_the_extractive_answer_before_the_stop_sequence(extractive: RagServer) -> None:
    answer = extractive.openai().chat.completions.create(model=MODEL, messages=ASK, stop=["GPUs"], seed=7)  # type: ignore[arg-type]
    text = answer.choices[0].message.content or ""
    assert "GPUs" not in text and text.strip()
    assert answer.choices[0].finish_reason == "stop"


@pytest.mark.parametrize(
    ("param", "extra"),
    [
        ("response_format", {"response_format": {"type": "json_object"}}),
        ("tools", {"tools": [WEATHER_TOOL], "tool_choice": "required"}),
        ("logprobs", {"logprobs": True}),
    ],
)
def test_the_extractive_backend_refuses_what_it_cannot_honour_as_a_400_naming_it(
    extractive: RagServer, param: str, extra: dict[str, object]
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        extractive.openai().chat.completions.create(model=MODEL, messages=ASK, **extra)  # type: ignore[call-overload]
    assert caught.value.status_code == 400
    assert caught.value.param == param
    assert caught.value.code == "unsupported_parameter"


def test_optional_tools_are_answered_in_text_by_a_backend_without_tools(extractive: RagServer) -> None:
    # tool_choice auto (what Open WebUI sends with its built-in tools): the model may answer without a call.
    answer = extractive.openai().chat.completions.create(model=MODEL, messages=ASK, tools=[WEATHER_TOOL])  # type: ignore[arg-type]
    assert answer.choices[0].finish_reason == "stop" and answer.choices[0].message.tool_calls is None
    assert "64 GPUs" in (answer.choices[0].message.content or "")


def test_errors_arrive_as_sdk_exceptions_with_a_code(extractive: RagServer) -> None:
    client = extractive.openai()
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="no-such-model", messages=ASK)  # type: ignore[arg-type]
    assert missing.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model=MODEL, messages=[])
    assert bad.value.code == "invalid_request" and bad.value.param == "messages"
    with pytest.raises(openai.BadRequestError) as two:
        client.chat.completions.create(model=MODEL, messages=ASK, n=2)  # type: ignore[arg-type]
    assert two.value.code == "invalid_request" and two.value.param == "n"


def test_structured_output_parses_into_the_pydantic_model(llm: RagServer, model_server: FakeOpenAIServer) -> None:
    completion = llm.openai().chat.completions.parse(model=MODEL, messages=ASK, response_format=GpuCount)  # type: ignore[arg-type]
    parsed = completion.choices[0].message.parsed
    assert isinstance(parsed, GpuCount) and parsed.gpus == 1 and parsed.answer.startswith("Echo:")
    sent = model_server.requests[-1]
    assert sent["response_format"]["type"] == "json_schema"
    assert sent["response_format"]["json_schema"]["name"] == "GpuCount"
    # The retrieved passages are still in the prompt the model was given.
    assert "64 GPUs" in sent["messages"][0]["content"]
    assert completion.model_extra is not None and completion.model_extra["sources"]


def test_json_mode_streams_unchanged_json(llm: RagServer) -> None:
    stream = llm.openai().chat.completions.create(
        model=MODEL,
        messages=ASK,
        response_format={"type": "json_object"},
        stream=True,  # type: ignore[arg-type]
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream)
    assert json.loads(text)["answer"].startswith("Echo:")


def test_tool_calls_come_back_in_the_openai_shape(llm: RagServer) -> None:
    client = llm.openai()
    first = client.chat.completions.create(model=MODEL, messages=ASK, tools=[WEATHER_TOOL], tool_choice="auto")  # type: ignore[arg-type]
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls or []
    assert call.type == "function" and call.function.name == "lookup_node"
    assert json.loads(call.function.arguments) == {"node": QUESTION}
    # The agent's loop: send the call and its result back; the model then answers in text.
    followup = [
        *ASK,
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "node-7 has 8 GPUs"},
    ]
    second = client.chat.completions.create(model=MODEL, messages=followup, tools=[WEATHER_TOOL])  # type: ignore[arg-type]
    assert second.choices[0].finish_reason == "stop"
    assert (second.choices[0].message.content or "").startswith("Echo:")


def test_streamed_tool_calls_accumulate_in_the_stream_helper(llm: RagServer) -> None:
    with llm.openai().chat.completions.stream(model=MODEL, messages=ASK, tools=[WEATHER_TOOL]) as stream:  # type: ignore[arg-type]
        final = stream.get_final_completion()
    [call] = final.choices[0].message.tool_calls or []
    assert call.function.name == "lookup_node"
    assert json.loads(call.function.arguments) == {"node": QUESTION}
    assert final.choices[0].finish_reason == "tool_calls"


def test_logprobs_pass_through_from_a_backend_that_has_them(llm: RagServer) -> None:
    answer = llm.openai().chat.completions.create(model=MODEL, messages=ASK, logprobs=True, top_logprobs=2)  # type: ignore[arg-type]
    logprobs = answer.choices[0].logprobs
    assert logprobs is not None and logprobs.content
    assert "".join(t.token for t in logprobs.content) == answer.choices[0].message.content
    assert all(len(t.top_logprobs) == 2 for t in logprobs.content)


def test_a_chain_sends_a_json_request_only_to_the_backend_that_honours_it(
    chained: RagServer, model_server: FakeOpenAIServer
) -> None:
    client = chained.openai()
    plain = client.chat.completions.with_raw_response.create(model=MODEL, messages=ASK)  # type: ignore[arg-type]
    assert plain.headers["x-rag-backend"].startswith("extractive")
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL,
        messages=ASK,
        response_format={"type": "json_object"},  # type: ignore[arg-type]
    )
    assert raw.headers["x-rag-backend"].startswith("openai+http")
    assert json.loads(raw.parse().choices[0].message.content or "")["answer"].startswith("Echo:")


def test_legacy_completions_answer_with_citations(extractive: RagServer) -> None:
    client = extractive.openai()
    done = client.completions.create(model=MODEL, prompt=QUESTION, max_tokens=64)
    assert done.object == "text_completion"
    assert "64 GPUs" in done.choices[0].text and "[1]" in done.choices[0].text
    assert done.usage is not None and done.usage.total_tokens > 0
    assert done.model_extra is not None and done.model_extra["sources"][0]["n"] == 1
    chunks = list(client.completions.create(model=MODEL, prompt=QUESTION, stream=True))
    assert "".join(c.choices[0].text for c in chunks) == done.choices[0].text
    assert [c.choices[0].finish_reason for c in chunks if c.choices[0].finish_reason] == ["stop"]


def test_unknown_paths_answer_with_the_error_envelope(extractive: RagServer) -> None:
    with extractive.http() as http:
        for method, path in [("POST", "/v1/engines/x/completions"), ("GET", "/nothing"), ("POST", "/v1/responses")]:
            r = http.request(method, path, json={})
            assert r.status_code == 404, (method, path, r.text)
            error = r.json()["error"]
            assert error["code"] == "not_found" and error["type"] == "invalid_request_error" and error["message"]
