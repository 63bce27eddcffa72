"""The access file: one that grants nothing is refused (start-up and reload), and with one, every bearer token counts.

An emptied or truncated access file used to be taken as "no keys", which silently dropped every
key and let any ``Authorization`` header through as anonymous.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from rag.errors import ConfigError
from serving.app import create_app
from serving.identity import JWT_HEADER, hash_key
from tests.procs import free_port
from tests.serving.conftest import MODEL, REPO, _server_env, make_settings, seeded_pipeline
from tests.serving.doubles import ScriptedChat
from ui.openwebui import openwebui_env

SECRET = "webui-shared-secret-for-tests-0123456789"
SEARCH = {"query": "salary bands for GPU engineers"}
# What an operator puts in the access file for Open WebUI: its connection key (OPENAI_API_KEY) as a
# key reading public documents only, plus the rules that give each signed-in user its groups.
WITH_OPEN_WEBUI: dict[str, Any] = {
    "keys": [
        {"name": "open-webui", "sha256": hash_key("webui-connection-key"), "scopes": ["chat", "search"]},
        {"name": "hr-bot", "sha256": hash_key("hr-key"), "groups": ["hr"]},
    ],
    "users": {"by_domain": {"hr.lab.org": ["hr"]}},
}
USERS_ONLY: dict[str, Any] = {"users": {"by_domain": {"hr.lab.org": ["hr"]}}}

Client = Callable[..., Awaitable[httpx.AsyncClient]]


@pytest.fixture
async def make_client(tmp_path: Path) -> AsyncIterator[Client]:
    """Factory: an in-process app whose access file holds ``text`` (None = no access file)."""
    stack: list[Any] = []

    async def make(text: str | None, name: str = "access.yaml") -> httpx.AsyncClient:
        auth: dict[str, Any] = {"openwebui_jwt_secret": SECRET}
        if text is not None:
            path = tmp_path / name
            path.write_text(text)
            auth["access_file"] = str(path)
        settings = make_settings(tmp_path, auth=auth)
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


def user_token(email: str) -> str:
    now = int(time.time())
    claims = {"sub": email, "email": email, "role": "user", "iss": "open-webui", "iat": now, "exp": now + 300}
    return jwt.encode(claims, SECRET, algorithm="HS256")


def sources(response: httpx.Response) -> set[str]:
    assert response.status_code == 200, response.text
    return {hit["source"] for hit in response.json()["data"]}


GRANTS_NOTHING = {
    "empty": "",
    "only whitespace": "\n  \n",
    "an empty mapping": "{}",
    "no keys": "keys: []\n",
    "empty sections": "keys:\nusers:\n",
    "empty users": "users: {}\n",
}
MALFORMED = {
    "a list": "- name: ci\n",
    "a string": "just some text\n",
    "a key that is a string": "keys: [abc]\n",
    "keys as a mapping": "keys: {name: ci}\n",
    "users as a list": "users: [hr]\n",
    "groups as a string": f"keys: [{{name: ci, sha256: {hash_key('k')}, groups: hr}}]\n",
    "a negative rate": f"keys: [{{name: ci, sha256: {hash_key('k')}, rate_per_minute: -1}}]\n",
    "one key twice": f"keys: [{{name: a, sha256: {hash_key('k')}}}, {{name: b, sha256: {hash_key('k')}}}]\n",
}


@pytest.mark.parametrize("text", GRANTS_NOTHING.values(), ids=GRANTS_NOTHING.keys())
async def test_an_access_file_that_grants_nothing_is_refused_at_start_up(make_client: Client, text: str) -> None:
    with pytest.raises(ConfigError, match="lists no keys and no users rules"):
        await make_client(text)


@pytest.mark.parametrize("text", MALFORMED.values(), ids=MALFORMED.keys())
async def test_a_malformed_access_file_is_a_configuration_error(make_client: Client, text: str) -> None:
    with pytest.raises(ConfigError, match="access"):
        await make_client(text)


@pytest.mark.parametrize("name", ["access.yaml", "access.json"])
async def test_an_emptied_access_file_keeps_the_previous_rules_on_reload(
    make_client: Client, tmp_path: Path, caplog: pytest.LogCaptureFixture, name: str
) -> None:
    client = await make_client(json.dumps(WITH_OPEN_WEBUI), name)  # JSON is YAML too
    hr = {"Authorization": "Bearer hr-key"}
    assert "file:///hr/salaries.md" in sources(await client.post("/v1/search", json=SEARCH, headers=hr))
    path = tmp_path / name
    path.write_text("")
    stamp = path.stat().st_mtime + 5
    os.utime(path, (stamp, stamp))  # a visible change even on coarse file-system clocks

    deadline = time.monotonic() + 30
    while "not reloaded" not in caplog.text:  # the file is looked at every few seconds, on a request
        assert time.monotonic() < deadline, "the emptied access file was never looked at"
        assert "file:///hr/salaries.md" in sources(await client.post("/v1/search", json=SEARCH, headers=hr))
        await asyncio.sleep(0.2)
    assert "lists no keys and no users rules" in caplog.text
    assert "file:///hr/salaries.md" in sources(await client.post("/v1/search", json=SEARCH, headers=hr))
    bogus = await client.post("/v1/search", json=SEARCH, headers={"Authorization": "Bearer made-up"})
    assert bogus.status_code == 401

    # A fixed file is taken again: the new key works, the old one no longer does.
    path.write_text(json.dumps({"keys": [{"name": "new", "sha256": hash_key("new-key"), "groups": ["hr"]}]}))
    os.utime(path, (stamp + 5, stamp + 5))
    deadline = time.monotonic() + 30
    while (await client.get("/v1/models", headers={"Authorization": "Bearer new-key"})).status_code != 200:
        assert time.monotonic() < deadline, "the fixed access file was never reloaded"
        await asyncio.sleep(0.2)
    assert (await client.post("/v1/search", json=SEARCH, headers=hr)).status_code == 401


async def test_with_an_access_file_a_bearer_token_that_is_no_key_is_401(make_client: Client) -> None:
    client = await make_client(json.dumps(USERS_ONLY), "access.json")  # users rules, no keys at all
    for token in ("x", "made-up", "Bearer"):
        response = await client.post("/v1/search", json=SEARCH, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, token
        assert response.json()["error"]["code"] == "invalid_api_key"
    assert (await client.get("/v1/models", headers={"Authorization": "Basic dTpw"})).status_code == 401
    # No Authorization header: anonymous (public documents only), or the signed user.
    assert "file:///hr/salaries.md" not in sources(await client.post("/v1/search", json=SEARCH))
    signed = {JWT_HEADER: user_token("ann@hr.lab.org")}
    assert "file:///hr/salaries.md" in sources(await client.post("/v1/search", json=SEARCH, headers=signed))
    # A signed user does not excuse a wrong key.
    wrong = {**signed, "Authorization": "Bearer x"}
    assert (await client.post("/v1/search", json=SEARCH, headers=wrong)).status_code == 401


async def test_open_webui_with_its_connection_key_in_the_access_file_serves_each_user_by_token(
    make_client: Client, tmp_path: Path
) -> None:
    client = await make_client(json.dumps(WITH_OPEN_WEBUI), "access.json")
    # Exactly what Open WebUI sends: its connection key as the bearer token, the user as a signed token.
    env = openwebui_env("http://127.0.0.1:8000/v1", tmp_path, api_key="webui-connection-key")
    bearer = f"Bearer {env['OPENAI_API_KEY']}"
    assert (await client.get("/v1/models", headers={"Authorization": bearer})).status_code == 200
    own = sources(await client.post("/v1/search", json=SEARCH, headers={"Authorization": bearer}))
    assert "file:///hr/salaries.md" not in own  # the connection key alone reads public documents
    hr_user = {"Authorization": bearer, JWT_HEADER: user_token("ann@hr.lab.org")}
    assert "file:///hr/salaries.md" in sources(await client.post("/v1/search", json=SEARCH, headers=hr_user))
    other = {"Authorization": bearer, JWT_HEADER: user_token("bob@lab.org")}
    assert "file:///hr/salaries.md" not in sources(await client.post("/v1/search", json=SEARCH, headers=other))
    chat = {"model": MODEL, "messages": [{"role": "user", "content": "GPUs?"}]}
    assert (await client.post("/v1/chat/completions", json=chat, headers=hr_user)).status_code == 200


async def test_without_an_access_file_any_bearer_token_is_anonymous(make_client: Client) -> None:
    client = await make_client(None)  # Open WebUI's default connection key 'x' keeps working here
    response = await client.post("/v1/search", json=SEARCH, headers={"Authorization": "Bearer x"})
    assert "file:///hr/salaries.md" not in sources(response)


@pytest.mark.slow
@pytest.mark.parametrize("serve", ["rag serve", "uvicorn"])
def test_a_real_server_does_not_start_with_an_emptied_access_file(serve: str, tmp_path: Path) -> None:
    access = tmp_path / "access.yaml"
    access.write_text("")
    env = _server_env(tmp_path, "memory://", "extractive://", "hash://", {"RAG_AUTH__ACCESS_FILE": str(access)})
    port = str(free_port())
    if serve == "rag serve":
        cmd = [sys.executable, "-m", "onprem_rag", "serve", "--host", "127.0.0.1", "--port", port]
    else:
        cmd = [sys.executable, "-m", "uvicorn", "--factory", "serving.app:create_app", "--port", port]
    done = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "lists no keys and no users rules" in done.stdout + done.stderr
