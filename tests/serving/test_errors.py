"""Every failure reaches the caller as the OpenAI error envelope with the right status (never 422)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.serving.conftest import MODEL, Service

CHAT = "/v1/chat/completions"


def envelope(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"]
    return body["error"]  # type: ignore[no-any-return]


async def test_malformed_json_is_400_envelope(service: Service) -> None:
    r = await service.client.post(
        CHAT, content=b'{"model": "rag", "messages": [', headers={"content-type": "application/json"}
    )
    err = envelope(r, 400)
    assert err["type"] == "invalid_request_error"
    assert "not valid JSON" in err["message"]


async def test_missing_messages_is_400_naming_the_field(service: Service) -> None:
    err = envelope(await service.client.post(CHAT, json={"model": MODEL}), 400)
    assert err["param"] == "messages"
    assert "messages: is required" in err["message"]


async def test_empty_messages_is_400(service: Service) -> None:
    err = envelope(await service.client.post(CHAT, json={"model": MODEL, "messages": []}), 400)
    assert err["param"] == "messages"


async def test_n_other_than_one_is_400(service: Service) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "GPUs?"}], "n": 2}
    err = envelope(await service.client.post(CHAT, json=body), 400)
    assert err["param"] == "n"
    assert "n=1" in err["message"]


async def test_bad_role_and_wrong_types_are_400_not_422(service: Service) -> None:
    body = {"model": MODEL, "messages": [{"role": "wizard", "content": "hi"}], "temperature": "hot"}
    err = envelope(await service.client.post(CHAT, json=body), 400)
    assert "messages.0.role" in err["message"]
    assert "temperature" in err["message"]


async def test_image_content_part_is_refused(service: Service) -> None:
    parts = [{"type": "image_url", "image_url": {"url": "http://x/y.png"}}]
    body = {"model": MODEL, "messages": [{"role": "user", "content": parts}]}
    err = envelope(await service.client.post(CHAT, json=body), 400)
    assert "only text content parts" in err["message"]
    assert err["param"] == "messages.0.content"


async def test_unknown_model_is_404_model_not_found(service: Service) -> None:
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "GPUs?"}]}
    err = envelope(await service.client.post(CHAT, json=body), 404)
    assert err["code"] == "model_not_found"
    assert err["param"] == "model"


async def test_unknown_route_is_404_envelope(service: Service) -> None:
    err = envelope(await service.client.get("/v1/nothing-here"), 404)
    assert err["code"] == "not_found"


async def test_wrong_method_is_405_envelope(service: Service) -> None:
    err = envelope(await service.client.get(CHAT), 405)
    assert err["code"] == "method_not_allowed"


async def test_oversize_body_is_413_envelope(service: Service) -> None:
    big = "x" * (65 * 1024)
    body = {"model": MODEL, "messages": [{"role": "user", "content": big}]}
    err = envelope(await service.client.post(CHAT, json=body), 413)
    assert err["code"] == "request_too_large"


async def test_oversize_chunked_body_is_413_envelope(service: Service) -> None:
    async def chunks():  # type: ignore[no-untyped-def]
        yield b'{"model": "rag", "messages": [{"role": "user", "content": "'
        for _ in range(80):
            yield b"x" * 1024
        yield b'"}]}'

    r = await service.client.post(CHAT, content=chunks(), headers={"content-type": "application/json"})
    assert envelope(r, 413)["code"] == "request_too_large"


async def test_rag_error_keeps_its_status_type_and_param(service: Service) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "?!"}]}
    err = envelope(await service.client.post(CHAT, json=body), 400)
    assert "no letters or digits" in err["message"]


async def test_conversation_without_user_message_is_400(service: Service) -> None:
    body = {"model": MODEL, "messages": [{"role": "system", "content": "be nice"}]}
    err = envelope(await service.client.post(CHAT, json=body), 400)
    assert err["param"] == "messages"


async def test_unexpected_exception_is_500_generic_and_logged(
    service: Service, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(*args: object, **kwargs: object) -> None:
        raise ZeroDivisionError("secret internals")

    monkeypatch.setattr(service.pipeline, "search", broken)
    r = await service.client.post("/v1/search", json={"query": "GPUs"}, headers={"X-Request-Id": "req-42"})
    err = envelope(r, 500)
    assert "secret" not in err["message"]
    assert "req-42" in err["message"]
    assert r.headers["x-request-id"] == "req-42"
    assert "secret internals" in caplog.text


async def test_request_id_is_made_when_absent_and_echoed_when_given(service: Service) -> None:
    made = await service.client.get("/healthz")
    assert len(made.headers["x-request-id"]) == 32
    given = await service.client.get("/healthz", headers={"X-Request-Id": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    unsafe = await service.client.get("/healthz", headers={"X-Request-Id": "a b\tc"})
    assert unsafe.headers["x-request-id"] != "a b\tc"
