"""In process: optional parameters refused by a backend without them, legacy completions, error codes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.serving.conftest import MODEL, Service
from tests.serving.test_routes import CHAT, ask, sse_data

COMPLETIONS = "/v1/completions"


@pytest.mark.parametrize(
    ("param", "extra"),
    [
        ("response_format", {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}}),
        ("tools", {"tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": "required"}),
        (
            "tools",
            {
                "tools": [{"type": "function", "function": {"name": "f"}}],
                "tool_choice": {"type": "function", "function": {"name": "f"}},
            },
        ),
        ("logprobs", {"logprobs": True}),
        ("logprobs", {"top_logprobs": 2}),
    ],
)
async def test_a_backend_without_a_feature_refuses_it_before_retrieval(
    service: Service, param: str, extra: dict[str, Any]
) -> None:
    r = await service.client.post(CHAT, json=ask(**extra))
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert (error["param"], error["code"]) == (param, "unsupported_parameter")
    assert "scripted://test" in error["message"]
    assert service.chat.requests == []


async def test_plain_text_response_format_needs_no_feature(service: Service) -> None:
    r = await service.client.post(CHAT, json=ask(response_format={"type": "text"}, tool_choice="none"))
    assert r.status_code == 200, r.text


async def test_tools_the_model_may_leave_unused_are_answered_in_text(service: Service) -> None:
    # Open WebUI sends its built-in tools with every request, tool_choice unset.
    tools = [{"type": "function", "function": {"name": "search_notes", "parameters": {"type": "object"}}}]
    r = await service.client.post(CHAT, json=ask(tools=tools))
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "The answer is here [1]."


@pytest.mark.parametrize(
    "extra",
    [{"response_format": {"type": "xml"}}, {"response_format": {"type": "json_schema"}}, {"tools": [{"type": "web"}]}],
)
async def test_malformed_optional_parameters_are_400_naming_them(service: Service, extra: dict[str, Any]) -> None:
    r = await service.client.post(CHAT, json=ask(**extra))
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["param"] and error["param"].split(".")[0] in extra and error["code"] == "invalid_request"


async def test_legacy_completion_answers_the_prompt_with_sources_and_usage(service: Service) -> None:
    r = await service.client.post(COMPLETIONS, json={"model": MODEL, "prompt": ["How many GPUs?"], "max_tokens": 9})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "text_completion" and body["id"].startswith("cmpl-")
    assert body["choices"] == [
        {"text": "The answer is here [1].", "index": 0, "logprobs": None, "finish_reason": "stop"}
    ]
    assert body["usage"]["total_tokens"] > 0
    assert [s["n"] for s in body["sources"]] == [1]
    assert service.chat.requests[-1].params.max_tokens == 9
    assert service.chat.requests[-1].question == "How many GPUs?"


async def test_legacy_completion_streams_text_chunks_a_finish_with_sources_then_done(service: Service) -> None:
    r = await service.client.post(COMPLETIONS, json={"model": MODEL, "prompt": "How many GPUs?", "stream": True})
    data = sse_data(r.text)
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert all(c["object"] == "text_completion" and len(c["choices"]) == 1 for c in chunks)
    assert "".join(c["choices"][0]["text"] for c in chunks) == "The answer is here [1]."
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop" and chunks[-1]["sources"][0]["n"] == 1


@pytest.mark.parametrize(
    ("extra", "param"),
    [({"n": 2}, "n"), ({"echo": True}, "echo"), ({"logprobs": 1}, "logprobs"), ({"prompt": ["a", "b"]}, "prompt")],
)
async def test_legacy_completion_refuses_what_it_cannot_do(service: Service, extra: dict[str, Any], param: str) -> None:
    r = await service.client.post(COMPLETIONS, json={"model": MODEL, "prompt": "GPUs?", **extra})
    assert r.status_code == 400
    assert (r.json()["error"]["param"], r.json()["error"]["code"]) == (param, "invalid_request")


async def test_legacy_completion_needs_a_known_model(service: Service) -> None:
    r = await service.client.post(COMPLETIONS, json={"model": "gpt-3.5-turbo-instruct", "prompt": "GPUs?"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"


@pytest.mark.parametrize(("method", "path"), [("POST", "/v1/responses"), ("GET", "/nowhere"), ("PUT", "/v1/x/y")])
async def test_every_unknown_path_is_the_envelope_with_a_code(service: Service, method: str, path: str) -> None:
    r = await service.client.request(method, path)
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"


async def test_a_refused_question_has_a_code_not_null(service: Service) -> None:
    r = await service.client.post(CHAT, json=ask("???"))
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "invalid_request"
