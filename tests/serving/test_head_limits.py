"""Request heads are bounded: real ``rag serve`` and ``uvicorn`` processes spoken to over raw sockets.

``rag serve`` (and uvicorn given ``--http serving.protocol:HeaderLimitedProtocol``) refuses a head
over ``server.max_header_kb`` / ``server.max_headers`` with 431 while parsing it, so a 64 MB header
is never read whole; under uvicorn's own protocols the app still answers 431 once the head is read.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import jwt
import pytest

from serving.identity import JWT_HEADER, MAX_JWT_BYTES
from tests.procs import free_port
from tests.serving.conftest import REPO, RagServer, _server_env, _wait_ready, make_settings, seeded_pipeline
from tests.serving.doubles import ScriptedChat

pytestmark = pytest.mark.slow

LIMITS = {"RAG_SERVER__MAX_HEADER_KB": "8", "RAG_SERVER__MAX_HEADERS": "20"}
HUGE = 64 * 1024 * 1024
SECRET = "webui-shared-secret-for-tests-0123456789"

RAG_SERVE = [sys.executable, "-m", "onprem_rag", "serve", "--host", "127.0.0.1", "--port", "{port}"]
UVICORN = [sys.executable, "-m", "uvicorn", "--factory", "serving.app:create_app", "--host", "127.0.0.1"]
UVICORN += ["--port", "{port}", "--log-level", "warning"]
UVICORN_BOUNDED = [*UVICORN, "--http", "serving.protocol:HeaderLimitedProtocol"]


@pytest.fixture(scope="module")
def launch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[list[str]], RagServer]]:
    """Factory: start a service process from an argv template (``{port}`` filled in); all stopped afterwards."""
    servers: list[RagServer] = []

    def start(argv: list[str]) -> RagServer:
        data_dir = tmp_path_factory.mktemp("rag-data")
        env = _server_env(data_dir, "memory://", "extractive://", "hash://", LIMITS)
        port = free_port()
        log_path = data_dir / "server.log"
        with log_path.open("wb") as log_file:
            cmd = [a.format(port=port) for a in argv]
            process = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=log_file, stderr=subprocess.STDOUT)
        server = RagServer(port=port, env=env, process=process, log_path=log_path, data_dir=data_dir)
        servers.append(server)
        _wait_ready(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def rag_serve(launch: Callable[[list[str]], RagServer]) -> RagServer:
    return launch(RAG_SERVE)


@pytest.fixture(scope="module")
def uvicorn_bounded(launch: Callable[[list[str]], RagServer]) -> RagServer:
    return launch(UVICORN_BOUNDED)


@pytest.fixture(scope="module")
def uvicorn_plain(launch: Callable[[list[str]], RagServer]) -> RagServer:
    return launch(UVICORN)


def raw_request(port: int, extra_head: bytes, chunk: int = 64 * 1024) -> tuple[int, bytes]:
    """Send ``GET /healthz`` with ``extra_head`` header lines; returns (bytes sent, response)."""
    data = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" + extra_head + b"\r\n"
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        try:
            while sent < len(data):
                sent += sock.send(data[sent : sent + chunk])
        except OSError:
            pass  # the server answered and closed the connection before the head was sent whole
        response = b""
        try:
            while block := sock.recv(65536):
                response += block
        except OSError:
            pass
    return sent, response


def status_and_body(response: bytes) -> tuple[int, bytes]:
    """The status code and body of a raw HTTP/1.1 response."""
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def header_of(size: int) -> bytes:
    """One header line whose value makes the line ``size`` bytes long."""
    return b"X-Padding: " + b"a" * (size - 13) + b"\r\n"


@pytest.mark.parametrize("which", ["rag_serve", "uvicorn_bounded"])
def test_a_64_mb_header_is_refused_with_431_before_it_is_read_whole(which: str, request: pytest.FixtureRequest) -> None:
    server: RagServer = request.getfixturevalue(which)
    sent, response = raw_request(server.port, b"X-Big: " + b"a" * HUGE + b"\r\n")
    status, body = status_and_body(response)
    assert status == 431
    error = json.loads(body)["error"]
    assert error["code"] == "request_header_too_large"
    assert "8 KiB" in error["message"]
    # The server refused while the header was still arriving: most of it was never accepted.
    assert sent < HUGE // 4
    assert "refused a request head" in server.log()
    with server.http() as client:
        assert client.get("/healthz").status_code == 200


@pytest.mark.parametrize("which", ["rag_serve", "uvicorn_bounded", "uvicorn_plain"])
def test_heads_over_the_limits_are_431_and_heads_within_them_are_served(
    which: str, request: pytest.FixtureRequest
) -> None:
    server: RagServer = request.getfixturevalue(which)
    _, response = raw_request(server.port, header_of(7 * 1024))
    assert status_and_body(response)[0] == 200
    _, response = raw_request(server.port, header_of(9 * 1024))
    status, body = status_and_body(response)
    assert status == 431
    assert json.loads(body)["error"]["code"] == "request_header_too_large"
    many = b"".join(b"X-Field-%d: v\r\n" % i for i in range(25))
    _, response = raw_request(server.port, many)
    status, body = status_and_body(response)
    assert status == 431
    assert "more than 20 request header fields" in json.loads(body)["error"]["message"]
    few = b"".join(b"X-Field-%d: v\r\n" % i for i in range(15))
    assert status_and_body(raw_request(server.port, few)[1])[0] == 200


def test_a_head_split_over_many_small_writes_is_counted_whole(rag_serve: RagServer) -> None:
    _, response = raw_request(rag_serve.port, header_of(12 * 1024), chunk=512)
    assert status_and_body(response)[0] == 431


async def test_an_oversized_open_webui_token_is_refused_before_it_is_decoded(tmp_path: Path) -> None:
    import httpx

    from serving.app import create_app

    settings = make_settings(tmp_path, auth={"openwebui_jwt_secret": SECRET})
    app = create_app(settings, pipeline=await seeded_pipeline(settings, ScriptedChat()))
    now = int(time.time())
    claims = {"sub": "u-1", "email": "a@lab.org", "iss": "open-webui", "iat": now, "exp": now + 300}
    small = jwt.encode(claims, SECRET, algorithm="HS256")
    # Validly signed: only its size can be the reason for refusing it.
    big = jwt.encode({**claims, "pad": "x" * MAX_JWT_BYTES}, SECRET, algorithm="HS256")
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            assert (await client.get("/v1/models", headers={JWT_HEADER: small})).status_code == 200
            response = await client.get("/v1/models", headers={JWT_HEADER: big})
    assert response.status_code == 401
    assert f"longer than {MAX_JWT_BYTES} bytes" in response.json()["error"]["message"]
