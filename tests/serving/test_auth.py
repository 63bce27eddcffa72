"""Identity and access in process: API keys, Open WebUI's signed token, scopes, rate limit, limits, metrics."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from serving.app import create_app
from serving.identity import JWT_HEADER, hash_key
from serving.metrics import JsonFormatter, RequestIdFilter
from tests.serving.conftest import MODEL, make_settings, seeded_pipeline
from tests.serving.doubles import ScriptedChat

CHAT = "/v1/chat/completions"
SECRET = "webui-shared-secret-for-tests-0123456789"
ACCESS: dict[str, Any] = {
    "keys": [
        {"name": "hr-bot", "sha256": hash_key("hr-key"), "groups": ["hr"]},
        {"name": "pub-bot", "sha256": hash_key("pub-key")},
        {"name": "searcher", "sha256": hash_key("search-key"), "groups": ["hr"], "scopes": ["search"]},
        {"name": "ops", "sha256": hash_key("admin-key"), "scopes": ["admin"]},
        {"name": "slow", "sha256": hash_key("slow-key"), "rate_per_minute": 2},
    ],
    "users": {"by_domain": {"hr.lab.org": ["hr"]}, "by_user": {"u-42": ["hr"]}, "by_role": {"auditor": ["hr"]}},
}

Client = Callable[..., Awaitable[httpx.AsyncClient]]


@pytest.fixture
async def make_client(tmp_path: Path) -> AsyncIterator[Client]:
    """Factory: an in-process app with the given auth/limits settings, over the seeded documents."""
    stack: list[Any] = []

    async def make(*, access: dict[str, Any] | None = ACCESS, **overrides: Any) -> httpx.AsyncClient:
        auth: dict[str, Any] = {"openwebui_jwt_secret": SECRET, **overrides.pop("auth", {})}
        if access is not None:
            path = tmp_path / f"access-{len(stack)}.json"
            path.write_text(json.dumps(access))
            auth["access_file"] = str(path)
        settings = make_settings(tmp_path, auth=auth, **overrides)
        app = create_app(settings, pipeline=await seeded_pipeline(settings, ScriptedChat()))
        lifespan = app.router.lifespan_context(app)
        await lifespan.__aenter__()
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
        stack.append((lifespan, client))
        return client

    yield make
    for lifespan, client in reversed(stack):
        await client.aclose()
        await lifespan.__aexit__(None, None, None)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def user_token(secret: str = SECRET, **claims: Any) -> dict[str, str]:
    now = int(time.time())
    body = {"sub": "u-1", "email": "x@lab.org", "name": "X", "role": "user", "iss": "open-webui", "iat": now}
    body["exp"] = now + 300
    body.update(claims)
    return {JWT_HEADER: jwt.encode(body, secret, algorithm="HS256")}


async def hit_ids(client: httpx.AsyncClient, headers: dict[str, str]) -> set[str]:
    r = await client.post("/v1/search", json={"query": "GPU salary cluster budget", "k": 10}, headers=headers)
    assert r.status_code == 200, r.text
    return {h["id"] for h in r.json()["data"]}


async def test_api_key_groups_decide_what_a_caller_can_read(make_client: Client) -> None:
    client = await make_client()
    assert "s1" in await hit_ids(client, bearer("hr-key"))
    assert "s1" not in await hit_ids(client, bearer("pub-key"))
    assert "a1" in await hit_ids(client, bearer("pub-key"))  # public is always readable


async def test_missing_or_wrong_credentials_are_401_when_auth_is_required(make_client: Client) -> None:
    client = await make_client(auth={"required": True})
    for headers in ({}, bearer("nope"), {"Authorization": "Basic abc"}):
        r = await client.post("/v1/search", json={"query": "GPU"}, headers=headers)
        assert r.status_code == 401, r.text
        assert r.json()["error"]["type"] == "authentication_error"
    assert (await client.get("/v1/models")).status_code == 401
    assert (await client.get("/v1/models", headers=bearer("pub-key"))).status_code == 200
    assert (await client.get("/healthz")).status_code == 200  # probes need no key


async def test_anonymous_callers_read_public_only_when_auth_is_optional(make_client: Client) -> None:
    client = await make_client()
    ids = await hit_ids(client, {})
    assert ids and "s1" not in ids
    # A key that is listed nowhere is refused even when anonymous access is allowed: no silent downgrade.
    assert (await client.post("/v1/search", json={"query": "GPU"}, headers=bearer("typo"))).status_code == 401


async def test_a_key_without_the_scope_gets_403(make_client: Client) -> None:
    client = await make_client()
    assert "s1" in await hit_ids(client, bearer("search-key"))
    r = await client.post(CHAT, json={"model": MODEL, "messages": [{"role": "user", "content": "GPU?"}]},
                          headers=bearer("search-key"))  # fmt: skip
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "insufficient_scope"


async def test_deleting_documents_needs_the_admin_scope(make_client: Client) -> None:
    client = await make_client()
    params = {"source": "file:///hr/salaries.md"}
    assert (await client.delete("/v1/sources", params=params, headers=bearer("hr-key"))).status_code == 403
    assert (await client.delete("/v1/sources", params=params)).status_code == 403
    r = await client.delete("/v1/sources", params=params, headers=bearer("admin-key"))
    assert r.status_code == 200, r.text
    assert r.json()["deleted"] == 1
    assert "s1" not in await hit_ids(client, bearer("hr-key"))


async def test_open_webui_token_maps_users_to_groups_by_domain_user_and_role(make_client: Client) -> None:
    client = await make_client()
    assert "s1" in await hit_ids(client, user_token(email="kim@HR.lab.org"))
    assert "s1" in await hit_ids(client, user_token(sub="u-42"))
    assert "s1" in await hit_ids(client, user_token(role="auditor"))
    assert "s1" not in await hit_ids(client, user_token())
    # With Open WebUI's own API key as well, the signed user decides the groups.
    assert "s1" not in await hit_ids(client, {**bearer("hr-key"), **user_token()})


@pytest.mark.parametrize(
    "headers",
    [
        user_token(secret="another-secret-another-secret-0000"),
        user_token(exp=int(time.time()) - 3600),
        user_token(iss="someone-else"),
        {JWT_HEADER: jwt.encode({"sub": "u-42", "iss": "open-webui"}, SECRET, algorithm="HS256")},  # no exp
        {JWT_HEADER: "not-a-token"},
    ],
    ids=["wrong-secret", "expired", "wrong-issuer", "no-expiry", "garbage"],
)
async def test_invalid_open_webui_tokens_are_401(make_client: Client, headers: dict[str, str]) -> None:
    client = await make_client()
    r = await client.post("/v1/search", json={"query": "GPU"}, headers=headers)
    assert r.status_code == 401, r.text
    assert "Open WebUI user token" in r.json()["error"]["message"]


async def test_unsigned_token_algorithm_none_is_refused(make_client: Client) -> None:
    client = await make_client()
    forged = jwt.encode({"sub": "u-42", "iss": "open-webui", "iat": 0, "exp": 2**31}, key=None, algorithm="none")
    r = await client.post("/v1/search", json={"query": "GPU"}, headers={JWT_HEADER: forged})
    assert r.status_code == 401


async def test_plain_open_webui_headers_are_refused_unless_trusted(make_client: Client) -> None:
    forged = {
        "X-OpenWebUI-User-Id": "u-42",
        "X-OpenWebUI-User-Email": "boss@hr.lab.org",
        "X-OpenWebUI-User-Role": "auditor",
    }
    client = await make_client()
    r = await client.post("/v1/search", json={"query": "GPU"}, headers=forged)
    assert r.status_code == 401 and r.json()["error"]["code"] == "user_headers_untrusted"
    trusting = await make_client(auth={"trust_openwebui_headers": True})
    assert "s1" in await hit_ids(trusting, forged)


async def test_rate_limit_answers_429_with_retry_after(make_client: Client) -> None:
    client = await make_client()
    codes = [(await client.post("/v1/search", json={"query": "GPU"}, headers=bearer("slow-key"))) for _ in range(3)]
    assert [r.status_code for r in codes] == [200, 200, 429]
    assert int(codes[2].headers["Retry-After"]) >= 1
    assert codes[2].json()["error"]["type"] == "rate_limit_error"
    # Other callers are not affected.
    assert (await client.post("/v1/search", json={"query": "GPU"}, headers=bearer("pub-key"))).status_code == 200


async def test_too_many_messages_or_tokens_are_400(make_client: Client) -> None:
    client = await make_client(limits={"max_messages": 3, "max_input_tokens": 50})
    many = [{"role": "user", "content": "hi"}] * 4
    r = await client.post(CHAT, json={"model": MODEL, "messages": many})
    assert r.status_code == 400 and r.json()["error"]["code"] == "too_many_messages"
    long = [{"role": "user", "content": "word " * 100}]
    r = await client.post(CHAT, json={"model": MODEL, "messages": long})
    assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"


async def test_metrics_count_requests_ttft_retrieval_and_answers(make_client: Client) -> None:
    client = await make_client()
    body = {"model": MODEL, "messages": [{"role": "user", "content": "How many GPUs?"}]}
    assert (await client.post(CHAT, json=body)).status_code == 200
    assert (await client.post(CHAT, json={**body, "stream": True})).status_code == 200
    assert (await client.post("/v1/search", json={"query": "x"}, headers=bearer("bad"))).status_code == 401
    r = await client.get("/metrics")
    assert r.status_code == 200
    text = r.text
    assert 'rag_requests_total{model="rag",route="/v1/chat/completions",status="200"} 2.0' in text
    assert 'rag_requests_total{model="",route="/v1/search",status="401"} 1.0' in text
    assert "rag_time_to_first_token_seconds_count 2.0" in text
    assert "rag_retrieval_duration_seconds_count 2.0" in text
    assert 'rag_request_duration_seconds_count{route="/v1/chat/completions"} 2.0' in text
    assert "rag_answers_total 2.0" in text
    assert 'rag_tokens_total{kind="completion"}' in text
    for name in ("rag_chat_failovers_total", "rag_empty_retrievals_total", "rag_uncited_answers_total"):
        assert f"# TYPE {name}" in text


def test_json_log_lines_carry_the_request_id() -> None:
    from serving.metrics import REQUEST_ID

    token = REQUEST_ID.set("req-123")
    try:
        record = logging.LogRecord("serving.x", logging.INFO, __file__, 1, "hello %s", ("world",), None)
        record.route = "/v1/search"
        RequestIdFilter().filter(record)
    finally:
        REQUEST_ID.reset(token)
    line = json.loads(JsonFormatter().format(record))
    assert line["msg"] == "hello world"
    assert line["request_id"] == "req-123"
    assert line["route"] == "/v1/search"
    assert line["level"] == "INFO"


def test_rag_keys_new_prints_an_entry_that_authenticates_the_key_it_made(tmp_path: Path) -> None:
    import yaml
    from typer.testing import CliRunner

    from onprem_rag.cli import app
    from serving.identity import AccessFile

    made = CliRunner().invoke(app, ["keys", "new", "ci-bot", "-g", "eng", "-s", "search"])
    assert made.exit_code == 0, made.output
    key = made.stderr.rsplit(": ", 1)[1].strip()
    entries = yaml.safe_load(made.stdout)
    assert entries[0]["name"] == "ci-bot" and key not in made.stdout
    access_file = tmp_path / "access.yaml"
    access_file.write_text("keys:\n" + made.stdout)
    principal = AccessFile(access_file).get().keys[hash_key(key)]
    assert principal.id == "key:ci-bot" and "eng" in principal.groups and principal.scopes == {"search"}
    hashed = CliRunner().invoke(app, ["keys", "hash"], input=key + "\n")
    assert hashed.stdout.strip() == hash_key(key)
