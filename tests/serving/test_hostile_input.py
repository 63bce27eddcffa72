"""Property-based: text that is not valid Unicode and integers out of range, in every field of every route.

Each generated request must get a 4xx OpenAI error envelope (400 naming the field, for bodies) and
never a 5xx; the error renderer itself must render any message. The app runs in process over the
real memory store, hashing embedder and extractive answerer; a real uvicorn process gets the same
hand-picked cases through its own URL and JSON decoding, and real Chroma and Milvus Lite stores get
the page bounds.
"""

from __future__ import annotations

import copy
import json
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from rag.config import Settings
from rag.errors import InvalidRequest, NotFound, RagError
from rag.registry import make_chat, make_embedder, make_store
from rag.types import PAGE_MAX, Chunk, Filter
from serving.app import create_app
from serving.errors import error_response
from serving.wire import MAX_INT32, MAX_INT64, MIN_INT64
from tests.serving.conftest import MODEL, STORE_URLS, RagServer, make_settings, seeded_pipeline

CHAT = "/v1/chat/completions"
EXAMPLES = 60
HYPOTHESIS = settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

# A valid body per route; the tests break one field at a time.
BODIES: dict[str, dict[str, Any]] = {
    CHAT: {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": [{"type": "text", "text": "How many GPUs?"}], "name": "alice"},
        ],
        "stop": ["\n\n"],
        "user": "u-1",
        "stream_options": {"include_usage": True},
        "metadata": {"team": "ml"},
    },
    "/v1/embeddings": {"model": MODEL, "input": ["gpu budget", "cluster"], "user": "u-1"},
    "/v1/search": {"query": "gpu", "model": MODEL, "filters": {"source": ["file:///docs/budget.pdf"], "title": "B"}},
}


def string_paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """The path of every string value in a JSON value."""
    if isinstance(value, str):
        yield path
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from string_paths(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from string_paths(item, (*path, i))


def dotted(path: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in path)


def put(body: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    """A copy of ``body`` with ``value`` at ``path``."""
    out = copy.deepcopy(body)
    node: Any = out
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return out


FIELDS = [(route, path) for route, body in BODIES.items() for path in string_paths(body)]

plain_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
# A surrogate between non-surrogates stays lone after JSON decoding (a pair would combine).
lone_surrogate = st.builds(
    lambda a, s, b: a + s + b, plain_text, st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), plain_text
)


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    """The app in process (lifespan running), over the seeded documents."""
    import asyncio

    cfg = make_settings(Path(tempfile.mkdtemp(prefix="rag-hostile-")))
    pipeline = asyncio.run(seeded_pipeline(cfg, make_chat(cfg, "extractive://")))  # type: ignore[arg-type]
    with TestClient(create_app(cfg, pipeline=pipeline), raise_server_exceptions=False) as test_client:
        yield test_client


def post_json(client: TestClient, route: str, body: Any) -> httpx.Response:
    """POST ``body`` as JSON text; lone surrogates go out as ``\\udXXX`` escapes, as any JSON encoder writes them."""
    text = json.dumps(body, ensure_ascii=True)
    return client.post(route, content=text, headers={"Content-Type": "application/json"})


def assert_envelope(response: httpx.Response, status: int, param: str | None = None) -> dict[str, Any]:
    """The response is the OpenAI error envelope with ``status`` (and ``param``, when given)."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    error["message"].encode("utf-8")
    if param is not None:
        assert error["param"] == param, error
    return error  # type: ignore[no-any-return]


def test_every_request_body_field_is_covered() -> None:
    covered = {(route, dotted(path)) for route, path in FIELDS}
    assert (CHAT, "messages.1.content.0.text") in covered
    assert (CHAT, "metadata.team") in covered  # an unknown field: accepted, but still checked
    assert ("/v1/search", "filters.source.0") in covered
    assert len(FIELDS) >= 15


@HYPOTHESIS
@given(field=st.sampled_from(FIELDS), text=lone_surrogate)
def test_a_lone_surrogate_in_any_body_field_is_400_naming_the_field(
    client: TestClient, field: tuple[str, tuple[Any, ...]], text: str
) -> None:
    route, path = field
    response = post_json(client, route, put(BODIES[route], path, text))
    error = assert_envelope(response, 400, dotted(path))
    assert "not valid Unicode" in error["message"]


@HYPOTHESIS
@given(route=st.sampled_from(sorted(BODIES)), key=lone_surrogate, nested=st.booleans())
def test_a_lone_surrogate_in_a_key_is_400(client: TestClient, route: str, key: str, nested: bool) -> None:
    body = copy.deepcopy(BODIES[route])
    if nested and route == "/v1/search":
        body["filters"][key] = "x"
    elif nested:
        body["stream_options" if route == CHAT else "extra"] = {key: 1}
    else:
        body[key] = 1
    assert_envelope(post_json(client, route, body), 400)


# (route, field, valid range): every integer field of the request bodies.
INT_FIELDS: list[tuple[str, tuple[Any, ...], int, int]] = [
    (CHAT, ("max_tokens",), 1, MAX_INT32),
    (CHAT, ("max_completion_tokens",), 1, MAX_INT32),
    (CHAT, ("seed",), MIN_INT64, MAX_INT64),
    (CHAT, ("n",), 1, 1),
    (CHAT, ("temperature",), 0, 2),
    (CHAT, ("top_p",), 1, 1),
    ("/v1/embeddings", ("dimensions",), 1, MAX_INT32),
    ("/v1/search", ("k",), 1, 100),
    ("/v1/search", ("filters", "page"), 1, PAGE_MAX),
]


@HYPOTHESIS
@given(
    field=st.sampled_from(INT_FIELDS),
    below=st.booleans(),
    distance=st.one_of(st.integers(1, 10), st.integers(2**31, 2**70), st.integers(10**30, 10**300)),
)
def test_an_integer_out_of_range_in_any_field_is_400_naming_it(
    client: TestClient, field: tuple[str, tuple[Any, ...], int, int], below: bool, distance: int
) -> None:
    route, path, low, high = field
    value = low - distance if below else high + distance
    response = post_json(client, route, put(BODIES[route], path, value))
    assert_envelope(response, 400, dotted(path))


@HYPOTHESIS
@given(field=st.sampled_from(INT_FIELDS), at_low=st.booleans())
def test_integers_at_the_bounds_are_never_a_server_error(
    client: TestClient, field: tuple[str, tuple[Any, ...], int, int], at_low: bool
) -> None:
    route, path, low, high = field
    response = post_json(client, route, put(BODIES[route], path, low if at_low else high))
    assert response.status_code < 500, response.text


# Every route, with a query parameter whose percent-escapes spell no UTF-8 (a lone surrogate in CESU-8).
ROUTES = [
    ("GET", "/v1/models"),
    ("GET", "/v1/models/rag"),
    ("POST", CHAT),
    ("POST", "/v1/embeddings"),
    ("POST", "/v1/search"),
    ("DELETE", "/v1/sources"),
    ("GET", "/metrics"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/"),
]
bad_escapes = st.builds(
    lambda high, low: f"%ED%{high:02X}%{low:02X}", st.integers(0xA0, 0xBF), st.integers(0x80, 0xBF)
) | st.sampled_from(["%FF", "%C0%AF", "%E2%82", "%80"])


@HYPOTHESIS
@given(route=st.sampled_from(ROUTES), escape=bad_escapes, name=st.sampled_from(["source", "model", "x"]))
def test_a_query_parameter_that_is_not_utf8_is_400_on_every_route(
    client: TestClient, route: tuple[str, str], escape: str, name: str
) -> None:
    method, path = route
    response = client.request(method, f"{path}?{name}=a{escape}b")
    assert_envelope(response, 400, name)


@HYPOTHESIS
@given(escape=bad_escapes)
def test_a_path_that_is_not_utf8_is_400(client: TestClient, escape: str) -> None:
    assert_envelope(client.get(f"/v1/models/rag{escape}"), 400)


@HYPOTHESIS
@given(
    message=st.text(max_size=40),
    param=st.one_of(st.none(), st.text(max_size=10)),
    status=st.sampled_from([400, 404, 502]),
)
def test_the_error_renderer_renders_any_text(message: str, param: str | None, status: int) -> None:
    exc = InvalidRequest(message, param=param) if status == 400 else RagError(message, param=param)
    exc.status = status
    response = error_response(exc)
    assert response.status_code == status
    body = json.loads(bytes(response.body).decode("utf-8"))
    assert set(body["error"]) == {"message", "type", "param", "code"}


@HYPOTHESIS
@given(text=lone_surrogate)
def test_an_error_quoting_a_lone_surrogate_still_renders(text: str) -> None:
    response = error_response(NotFound(f"the model '{text}' does not exist", param="model"))
    assert response.status_code == 404
    message = json.loads(bytes(response.body).decode("utf-8"))["error"]["message"]
    assert message.startswith("the model '") and message.endswith("' does not exist")


# ----------------------------------------------------------------------------------- real components


@pytest.mark.slow
def test_a_real_server_refuses_bad_unicode_in_bodies_and_urls_with_400(
    start_rag_server: Callable[..., RagServer], tmp_path: Path
) -> None:
    (tmp_path / "cluster.md").write_text("# Cluster\n\nThe research cluster has 64 GPUs in the north hall.\n")
    server = start_rag_server(docs=tmp_path)
    bodies = [
        (CHAT, b'{"model": "\\ud800", "messages": [{"role": "user", "content": "hi"}]}', "model"),
        (CHAT, b'{"model": "rag", "messages": [{"role": "user", "content": "a\\udfffb"}]}', "messages.0.content"),
        ("/v1/embeddings", b'{"model": "rag", "input": ["ok", "\\ud83d"]}', "input.1"),
        ("/v1/search", b'{"query": "gpu", "filters": {"source": "\\udc00"}}', "filters.source"),
        ("/v1/search", b'{"query": "gpu", "filters": {"page": 9223372036854775808}}', "filters.page"),
        ("/v1/search", b'{"query": "gpu", "filters": {"page": -1}}', "filters.page"),
        ("/v1/search", b'{"query": "\xed\xa0\x80"}', "query"),
    ]
    with server.http() as client:
        for route, body, param in bodies:
            response = client.post(route, content=body, headers={"Content-Type": "application/json"})
            assert_envelope(response, 400, param)
        assert_envelope(client.delete("/v1/sources?source=%ED%A0%80"), 400, "source")
        assert_envelope(client.get("/v1/models/%ED%A0%80"), 400)
        assert client.get("/healthz").status_code == 200
    assert "Traceback" not in server.log()


@pytest.mark.parametrize("url", STORE_URLS, ids=["chroma", "milvus-lite"])
async def test_real_stores_refuse_pages_out_of_range_and_never_match_a_missing_page(url: str, tmp_path: Path) -> None:
    store_settings = {"url": url.format(data_dir=tmp_path), "collection": "docs"}
    cfg = Settings(data_dir=tmp_path, store=store_settings, embed={"url": "hash://"})  # type: ignore[arg-type]
    store, embedder = make_store(cfg), make_embedder(cfg)
    await store.open(embedder.info, create=True)
    try:
        chunks = [Chunk(id="none", text="gpu notes", source="s1"), Chunk(id="p3", text="gpu page", source="s2", page=3)]
        await store.upsert(chunks, np.asarray(await embedder.embed_documents([c.text for c in chunks])))
        query = await embedder.embed_query("gpu")
        assert [h.chunk.id for h in await store.search(query, 5, Filter(where={"page": 3}))] == ["p3"]
        assert await store.search(query, 5, Filter(where={"page": PAGE_MAX})) == []
        for page in (-1, 0, PAGE_MAX + 1, 2**100):
            with pytest.raises(InvalidRequest, match="page number from 1"):
                await store.search(query, 5, Filter(where={"page": page}))
            with pytest.raises(InvalidRequest, match="page number from 1"):
                await store.count(Filter(where={"page": page}))
    finally:
        await store.close()
