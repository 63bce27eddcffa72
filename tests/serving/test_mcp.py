"""MCP: the SDK's own clients against a real ``rag serve`` process (streamable HTTP) and ``rag mcp`` (stdio).

The documents: two public ones and one only the ``hr`` group may read (a ``.rag-acl.yaml`` folder).
Every test that checks a refusal also checks that an allowed caller does get the thing refused, so
none passes by finding nothing at all.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import httpx2
import jwt
import pytest
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from serving.identity import JWT_HEADER, hash_key
from tests.serving.conftest import REPO, RagServer, _ingest, _server_env

pytestmark = pytest.mark.slow

SECRET = "webui-shared-secret-for-mcp-tests-0123456789"
ACCESS: dict[str, Any] = {
    "keys": [
        {"name": "hr-bot", "sha256": hash_key("hr-key"), "groups": ["hr"]},
        {"name": "pub-bot", "sha256": hash_key("pub-key")},
        {"name": "embedder", "sha256": hash_key("embed-key"), "scopes": ["embed"]},
        {"name": "searcher", "sha256": hash_key("search-key"), "groups": ["hr"], "scopes": ["search"]},
        {"name": "slow", "sha256": hash_key("slow-key"), "rate_per_minute": 2},
    ],
    "users": {"by_domain": {"hr.lab.org": ["hr"]}},
}
CLUSTER = """# Cluster guide

## Hardware

The research cluster has 64 GPUs in the north hall. Each node has 8 GPUs and 1 TB of memory.

## Jobs

Jobs are submitted with the queue command. A job may run for at most 48 hours.
"""
BUDGET = "# Budget\n\nThe GPU budget is reviewed every quarter by the infrastructure committee.\n"
SALARIES = "# Salaries\n\nSalary bands for GPU engineers are confidential: band seven pays the most.\n"
SECRET_WORDS = ("Salaries", "band seven", "confidential")  # none of them in a query or question
QUERY = "GPU salary bands cluster budget"


@pytest.fixture(scope="module")
def docs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("docs")
    (folder / "cluster.md").write_text(CLUSTER)
    (folder / "budget.md").write_text(BUDGET)
    (folder / "hr").mkdir()
    (folder / "hr" / ".rag-acl.yaml").write_text("groups: [hr]\n")
    (folder / "hr" / "salaries.md").write_text(SALARIES)
    return folder


@pytest.fixture(scope="module")
def access_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("auth") / "access.json"
    path.write_text(json.dumps(ACCESS))
    return path


def auth_env(access_file: Path) -> dict[str, str]:
    return {
        "RAG_AUTH__ACCESS_FILE": str(access_file),
        "RAG_AUTH__REQUIRED": "true",
        "RAG_AUTH__OPENWEBUI_JWT_SECRET": SECRET,
    }


@pytest.fixture(scope="module")
def server(start_rag_server: Callable[..., RagServer], store_url: str, docs: Path, access_file: Path) -> RagServer:
    return start_rag_server(store_url, docs=docs, env=auth_env(access_file))


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def user_token(email: str) -> dict[str, str]:
    now = int(time.time())
    claims = {"sub": email, "email": email, "role": "user", "iss": "open-webui", "iat": now, "exp": now + 300}
    return {JWT_HEADER: jwt.encode(claims, SECRET, algorithm="HS256")}


@asynccontextmanager
async def http_session(server: RagServer, headers: dict[str, str]) -> AsyncIterator[ClientSession]:
    """An initialized MCP session over streamable HTTP, sending ``headers`` with every request."""
    async with (
        httpx2.AsyncClient(headers=headers, timeout=60) as client,
        streamable_http_client(f"{server.url}/mcp", http_client=client) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


def mcp_error(exc: BaseException) -> MCPError:
    """The MCPError inside the task groups the SDK's client raises it through."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    assert isinstance(exc, MCPError), repr(exc)
    return exc


def structured(result: Any) -> dict[str, Any]:
    assert not result.is_error, result.content
    assert isinstance(result.structured_content, dict)
    return result.structured_content


def error_text(result: Any) -> str:
    assert result.is_error, result.structured_content
    return " ".join(c.text for c in result.content)


def leaks(text: str) -> list[str]:
    return [w for w in SECRET_WORDS if w.lower() in text.lower()]


async def everything_seen(session: ClientSession) -> str:
    """All text a caller can get through every tool and resource: search, ask, resource list and reads."""
    seen: list[str] = []
    found = await session.call_tool("search", {"query": QUERY, "k": 20})
    seen.append(json.dumps(structured(found)))
    seen.extend(c.text for c in found.content)
    asked = await session.call_tool("ask", {"question": "What are the salary bands of GPU engineers?"})
    seen.append(json.dumps(structured(asked)))
    seen.extend(c.text for c in asked.content)
    listed = await session.list_resources()
    for resource in listed.resources:
        seen.append(f"{resource.uri} {resource.name} {resource.title}")
        read = await session.read_resource(resource.uri)
        seen.extend(getattr(c, "text", "") for c in read.contents)
    return "\n".join(seen)


def salaries_uri(docs: Path) -> str:
    return (docs / "hr" / "salaries.md").resolve().as_uri()


# --------------------------------------------------------------------------------------------------
# Streamable HTTP at /mcp on `rag serve`
# --------------------------------------------------------------------------------------------------


async def test_lists_the_tools_and_the_documents_the_caller_may_read(server: RagServer, docs: Path) -> None:
    async with http_session(server, bearer("hr-key")) as session:
        tools = {t.name: t for t in (await session.list_tools()).tools}
        resources = {r.uri: r for r in (await session.list_resources()).resources}
    assert set(tools) == {"search", "ask"}
    assert tools["search"].input_schema["required"] == ["query"]
    assert set(resources) == {(docs / n).resolve().as_uri() for n in ("cluster.md", "budget.md", "hr/salaries.md")}
    assert resources[(docs / "cluster.md").resolve().as_uri()].name == "Cluster guide"


async def test_search_returns_scored_chunks_with_their_sources(server: RagServer, docs: Path) -> None:
    async with http_session(server, bearer("pub-key")) as session:
        result = await session.call_tool("search", {"query": "How long may a job run on the cluster?", "k": 3})
    hits = structured(result)["hits"]
    assert any("48 hours" in h["text"] for h in hits)
    top = hits[0]
    assert set(top) >= {"id", "score", "text", "source", "title", "section", "page"}
    assert top["source"] == (docs / "cluster.md").resolve().as_uri() and top["title"] == "Cluster guide"
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    assert "Cluster guide" in result.content[0].text and top["id"] in result.content[0].text


async def test_ask_answers_with_numbered_citations_of_the_sources(server: RagServer, docs: Path) -> None:
    async with http_session(server, bearer("pub-key")) as session:
        result = await session.call_tool("ask", {"question": "How long may a job run?"})
    body = structured(result)
    assert "48 hours" in body["answer"] and "[1]" in body["answer"]
    cited = {s["n"]: s for s in body["sources"]}
    assert cited[1]["source"] == (docs / "cluster.md").resolve().as_uri()
    assert cited[1]["title"] == "Cluster guide" and cited[1]["id"]
    assert "Sources:" in result.content[0].text and cited[1]["source"] in result.content[0].text


async def test_a_document_resource_reads_as_its_chunks_in_order(server: RagServer, docs: Path) -> None:
    uri = (docs / "cluster.md").resolve().as_uri()
    async with http_session(server, bearer("pub-key")) as session:
        read = await session.read_resource(uri)
    text = read.contents[0].text  # type: ignore[union-attr]
    assert read.contents[0].uri == uri
    assert text.index("64 GPUs") < text.index("queue command") < text.index("48 hours")


async def test_no_restricted_chunk_reaches_a_caller_outside_its_group(server: RagServer, docs: Path) -> None:
    async with http_session(server, bearer("hr-key")) as session:
        allowed = await everything_seen(session)
    assert leaks(allowed), "the hr caller should see the restricted document (else this test proves nothing)"
    for headers in (bearer("pub-key"), user_token("someone@lab.org")):
        async with http_session(server, headers) as session:
            seen = await everything_seen(session)
            assert "GPU" in seen  # it did get the public documents
            assert leaks(seen) == [], f"{headers.keys()} saw {leaks(seen)}"
            with pytest.raises(MCPError) as refused:
                await session.read_resource(salaries_uri(docs))
            with pytest.raises(MCPError) as missing:
                await session.read_resource((docs / "nothing-here.md").resolve().as_uri())
        # A restricted document and one that does not exist are refused alike: its existence does not leak.
        assert refused.value.message.replace(salaries_uri(docs), "X") == missing.value.message.replace(
            (docs / "nothing-here.md").resolve().as_uri(), "X"
        )
        assert "may read" in refused.value.message


async def test_open_webui_forwarded_identity_maps_to_groups(server: RagServer, docs: Path) -> None:
    async with http_session(server, user_token("ann@hr.lab.org")) as session:
        resources = {r.uri for r in (await session.list_resources()).resources}
        read = await session.read_resource(salaries_uri(docs))
    assert salaries_uri(docs) in resources
    assert "band seven" in read.contents[0].text  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "credentials are required"),
        (bearer("not-a-key"), "the API key is not valid"),
        (user_token("x@lab.org") | {JWT_HEADER: "forged.token.value"}, "user token is not valid"),
    ],
    ids=["no-credentials", "bad-key", "forged-token"],
)
async def test_callers_without_valid_credentials_are_refused_with_401(
    server: RagServer, headers: dict[str, str], message: str
) -> None:
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25",
            "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}  # fmt: skip
    accept = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    r = httpx.post(f"{server.url}/mcp", json=init, headers=accept | headers, timeout=30)
    assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "Bearer"
    error = r.json()["error"]
    assert message in error["message"] and error["data"]["type"] == "authentication_error"
    with pytest.raises(Exception) as failed:  # the SDK's client cannot even initialize, and says why
        async with http_session(server, headers):
            pass
    assert message in str(mcp_error(failed.value))


@pytest.mark.parametrize(
    ("header", "status"),
    [({"Host": "rag.evil.example"}, 421), ({"Origin": "http://rag.evil.example"}, 403)],
    ids=["host", "origin"],
)
def test_a_loopback_service_refuses_requests_from_other_hosts_and_origins(
    server: RagServer, header: dict[str, str], status: int
) -> None:
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25",
            "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}  # fmt: skip
    accept = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    ok = httpx.post(f"{server.url}/mcp", json=init, headers=accept | bearer("pub-key"), timeout=30)
    assert ok.status_code == 200, ok.text
    refused = httpx.post(f"{server.url}/mcp", json=init, headers=accept | bearer("pub-key") | header, timeout=30)
    assert refused.status_code == status


async def test_scopes_apply_as_on_the_http_api(server: RagServer) -> None:
    async with http_session(server, bearer("embed-key")) as session:
        assert (await session.list_tools()).tools == []
        assert "lacks the 'search' scope" in error_text(await session.call_tool("search", {"query": "GPU"}))
        assert "lacks the 'chat' scope" in error_text(await session.call_tool("ask", {"question": "GPU?"}))
        with pytest.raises(MCPError, match="lacks the 'search' scope"):
            await session.list_resources()
    async with http_session(server, bearer("search-key")) as session:
        assert [t.name for t in (await session.list_tools()).tools] == ["search"]
        assert structured(await session.call_tool("search", {"query": "GPU"}))["hits"]
        assert "lacks the 'chat' scope" in error_text(await session.call_tool("ask", {"question": "GPU?"}))


async def test_tool_calls_count_against_the_callers_rate_limit(server: RagServer) -> None:
    async with http_session(server, bearer("slow-key")) as session:
        for _ in range(2):
            assert structured(await session.call_tool("search", {"query": "GPU"}))["hits"]
        refused = error_text(await session.call_tool("search", {"query": "GPU"}))
    assert "rate limit of 2 requests per minute exceeded for key:slow" in refused


@pytest.mark.parametrize(
    ("tool", "arguments", "message"),
    [
        ("search", {}, "query: is required"),
        ("search", {"query": "GPU", "k": 0}, "k: Input should be greater than or equal to 1"),
        ("search", {"query": "GPU", "filters": {"owner": "x"}}, "unknown filter field(s) owner"),
        ("search", {"query": "GPU", "colour": "red"}, "colour: Extra inputs are not permitted"),
        ("search", {"query": "!!!"}, "query is empty or has no letters or digits"),
        ("ask", {"question": "GPU?", "model": "gpt-9"}, "the model 'gpt-9' does not exist"),
        ("ask", {"question": ""}, "question: String should have at least 1 character"),
        ("delete_everything", {}, "no tool 'delete_everything'"),
    ],
)
async def test_a_bad_argument_is_a_tool_error_with_the_http_apis_message(
    server: RagServer, tool: str, arguments: dict[str, Any], message: str
) -> None:
    async with http_session(server, bearer("hr-key")) as session:
        assert message in error_text(await session.call_tool(tool, arguments))
        assert structured(await session.call_tool("search", {"query": "GPU"}))["hits"]  # the session still works


# --------------------------------------------------------------------------------------------------
# stdio: `rag mcp`
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stdio_env(tmp_path_factory: pytest.TempPathFactory, docs: Path, access_file: Path) -> dict[str, str]:
    """Its own data dir: an embedded store serves one process at a time."""
    data_dir = tmp_path_factory.mktemp("rag-stdio")
    env = _server_env(data_dir, f"chroma://{data_dir}/chroma", "extractive://", "hash://", auth_env(access_file))
    _ingest(env, docs)
    return env


@asynccontextmanager
async def stdio_session(env: dict[str, str], api_key: str | None) -> AsyncIterator[ClientSession]:
    """An initialized MCP session with a ``rag mcp`` child process started with ``api_key``."""
    extra = {"RAG_MCP_API_KEY": api_key} if api_key else {}
    params = StdioServerParameters(command=sys.executable, args=["-m", "onprem_rag", "mcp"], env=env | extra, cwd=REPO)
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        yield session


async def test_stdio_serves_the_same_tools_and_acl_as_the_key_it_was_given(stdio_env: dict[str, str]) -> None:
    async with stdio_session(stdio_env, "hr-key") as session:
        assert {t.name for t in (await session.list_tools()).tools} == {"search", "ask"}
        allowed = await everything_seen(session)
    assert leaks(allowed)
    async with stdio_session(stdio_env, "pub-key") as session:
        seen = await everything_seen(session)
        asked = structured(await session.call_tool("ask", {"question": "How long may a job run?"}))
    assert "GPU" in seen and leaks(seen) == []
    assert "[1]" in asked["answer"] and asked["sources"][0]["title"] == "Cluster guide"


def test_stdio_refuses_to_start_without_a_valid_key_where_auth_is_required(stdio_env: dict[str, str]) -> None:
    import subprocess

    for extra, message in (({}, "credentials are required"), ({"RAG_MCP_API_KEY": "wrong"}, "API key is not valid")):
        done = subprocess.run(
            [sys.executable, "-m", "onprem_rag", "mcp"],
            env=stdio_env | extra,
            cwd=REPO,
            input="",
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode != 0 and message in done.stderr, done.stderr
        assert done.stdout == ""  # nothing on the protocol channel
