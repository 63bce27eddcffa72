"""Operators see who asked what: JSON access lines from a real ``rag serve``, and token problems with reasons.

The process tests start the real command (``python -m onprem_rag serve``) and parse every line it
writes to stderr as JSON.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from openai import OpenAI

from serving.app import create_app
from serving.identity import JWT_HEADER, hash_key
from tests.procs import stop
from tests.serving.conftest import Served, make_settings, seeded_pipeline, start_serve
from tests.serving.doubles import ScriptedChat

SECRET = "logging-test-secret-0123456789abcdef"
KEY = "rag-ci-key-for-the-logging-test"
ACCESS = {
    "keys": [{"name": "ci-bot", "sha256": hash_key(KEY), "groups": ["eng"]}],
    # Upper case in the file, lower case in the token: e-mails match case-insensitively.
    "users": {"by_user": {"Ann.Lee@Lab.org": ["hr"]}},
}


def user_token(secret: str = SECRET, **claims: Any) -> str:
    now = int(time.time())
    body = {"sub": "u-7", "email": "ann.lee@lab.org", "name": "Ann", "role": "user", "iss": "open-webui"}
    body.update({"iat": now, "exp": now + 300, **claims})
    return jwt.encode(body, secret, algorithm="HS256")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("serve")
    docs = tmp / "docs"
    docs.mkdir()
    (docs / "cluster.md").write_text("# Cluster\n\nThe research cluster has 64 GPUs in the north hall.\n")
    access = tmp / "access.json"
    access.write_text(json.dumps(ACCESS))
    env = {"RAG_AUTH__ACCESS_FILE": str(access), "RAG_AUTH__OPENWEBUI_JWT_SECRET": SECRET}
    server = start_serve(tmp, docs=docs, env=env)
    yield server
    stop(server.process)


QUESTION = [{"role": "user", "content": "How many GPUs does the cluster have?"}]


@pytest.mark.slow
def test_every_stderr_line_of_rag_serve_is_json_and_a_chat_names_its_caller(served: Served) -> None:
    client = OpenAI(base_url=f"{served.url}/v1", api_key=KEY, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(model="rag", messages=QUESTION)
    line = served.access(raw.headers["x-request-id"])
    assert line["principal"] == "ci-bot" and line["principal_kind"] == "key"
    assert line["route"] == "/v1/chat/completions" and line["status"] == 200
    assert line["model"] == "rag" and line["backend"].startswith("extractive")
    assert line["duration_ms"] > 0 and line["ttft_ms"] > 0
    assert line["duration_ms"] >= line["ttft_ms"]
    # uvicorn's own start-up lines are JSON too (the whole stderr parsed above).
    assert any(x["logger"].startswith("uvicorn") for x in served.lines())
    client.close()


@pytest.mark.slow
def test_a_streamed_chat_of_an_open_webui_user_logs_the_users_email(served: Served) -> None:
    headers = {JWT_HEADER: user_token(), "X-Request-Id": "stream-req-1"}
    with httpx.stream(
        "POST", f"{served.url}/v1/chat/completions", json={"model": "rag", "messages": QUESTION, "stream": True},
        headers=headers, timeout=60,
    ) as r:  # fmt: skip
        assert r.status_code == 200
        body = r.read().decode()
    assert body.rstrip().endswith("data: [DONE]")
    line = served.access("stream-req-1")
    assert line["principal"] == "ann.lee@lab.org" and line["principal_kind"] == "user"
    assert line["status"] == 200 and line["ttft_ms"] > 0 and line["duration_ms"] >= line["ttft_ms"]


@pytest.mark.slow
def test_a_token_with_a_bad_signature_is_a_401_whose_reason_is_logged(served: Served) -> None:
    headers = {JWT_HEADER: user_token(secret="not-the-shared-secret-000000000000"), "X-Request-Id": "bad-sig-1"}
    r = httpx.post(f"{served.url}/v1/chat/completions", json={"model": "rag", "messages": QUESTION}, headers=headers)
    assert r.status_code == 401
    error = r.json()["error"]
    assert error["code"] == "user_token_bad_signature"
    assert "RAG_AUTH__OPENWEBUI_JWT_SECRET" in error["message"] and SECRET not in error["message"]
    line = served.access("bad-sig-1")
    assert line["status"] == 401 and line["level"] == "WARNING"
    assert "bad signature" in line["auth_error"]


# --- token problems, in process -------------------------------------------------------------------


async def call(
    tmp_path: Path, headers: dict[str, str], secret: str | None = SECRET, path: str = "/v1/search"
) -> httpx.Response:
    access = tmp_path / "access.json"
    access.write_text(json.dumps(ACCESS))
    auth: dict[str, Any] = {"access_file": str(access), "openwebui_jwt_secret": secret}
    settings = make_settings(tmp_path, auth=auth)
    app = create_app(settings, pipeline=await seeded_pipeline(settings, ScriptedChat()))
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        if path == "/v1/search":
            return await client.post(path, json={"query": "salary GPU", "k": 10}, headers=headers)
        return await client.get(path, headers=headers)


OTHER_SECRET = "some-other-secret-0000000000000000"


@pytest.mark.parametrize(
    ("claims", "code", "says"),
    [
        ({"secret": OTHER_SECRET}, "user_token_bad_signature", "must be the same value"),
        ({"exp": -3600}, "user_token_expired", "clocks"),
        ({"iss": "someone-else"}, "user_token_wrong_issuer", "wrong issuer"),
        ({"iat": 3600, "nbf": 3600}, "user_token_not_yet_valid", "future"),
        (None, "user_token_invalid", "not valid"),
    ],
    ids=["bad-signature", "expired", "wrong-issuer", "issued-in-the-future", "garbage"],
)
async def test_each_token_problem_is_a_401_saying_what_to_fix(
    tmp_path: Path, claims: dict[str, Any] | None, code: str, says: str
) -> None:
    # Tokens are made here, not at collection: times are relative to now.
    if claims is None:
        token = "not-a-token"
    else:
        now = int(time.time())
        times = {k: now + v for k, v in claims.items() if k in ("exp", "iat", "nbf")}
        other = {k: v for k, v in claims.items() if k not in times and k != "secret"}
        token = user_token(secret=claims.get("secret", SECRET), **times, **other)
    r = await call(tmp_path, {JWT_HEADER: token})
    assert r.status_code == 401, r.text
    error = r.json()["error"]
    assert error["code"] == code and says in error["message"], error
    assert SECRET not in error["message"]


async def test_a_signed_user_token_without_a_secret_here_is_a_401_naming_the_setting(tmp_path: Path) -> None:
    r = await call(tmp_path, {JWT_HEADER: user_token()}, secret=None)
    assert r.status_code == 401
    error = r.json()["error"]
    assert error["code"] == "user_token_unverifiable"
    assert (
        "RAG_AUTH__OPENWEBUI_JWT_SECRET" in error["message"]
        and "FORWARD_USER_INFO_HEADER_JWT_SECRET" in error["message"]
    )


async def test_plain_identity_headers_without_a_secret_are_a_401_not_anonymous(tmp_path: Path) -> None:
    r = await call(tmp_path, {"X-OpenWebUI-User-Email": "ann.lee@lab.org", "X-OpenWebUI-User-Id": "u-7"}, secret=None)
    assert r.status_code == 401 and r.json()["error"]["code"] == "user_headers_untrusted"


async def test_the_model_list_is_given_despite_a_bad_token_so_the_chat_shows_the_reason(tmp_path: Path) -> None:
    # Open WebUI lists models with the user's token; a 401 there would only show "Model '' was not found".
    bad = {JWT_HEADER: user_token(secret=OTHER_SECRET)}
    r = await call(tmp_path, bad, path="/v1/models")
    assert r.status_code == 200 and [m["id"] for m in r.json()["data"]] == ["rag"]
    # A wrong API key still gets no list.
    assert (await call(tmp_path, {"Authorization": "Bearer wrong"}, path="/v1/models")).status_code == 401


@pytest.mark.parametrize("email", ["ann.lee@lab.org", "ANN.LEE@LAB.ORG", "Ann.Lee@lab.org"])
async def test_by_user_rules_match_e_mail_addresses_case_insensitively(tmp_path: Path, email: str) -> None:
    r = await call(tmp_path, {JWT_HEADER: user_token(email=email)})
    assert r.status_code == 200, r.text
    assert "s1" in {h["id"] for h in r.json()["data"]}  # the hr-only passage
