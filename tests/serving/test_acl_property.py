"""Access control as a property: random ACLs, callers and questions; nothing outside a caller's groups leaks.

Every check is one HTTP request (search, chat, streamed chat) to the real app in process, over the
real memory store, hashing embedder and extractive answerer (which copies retrieved sentences into
the answer, so a leak in retrieval would show in the text). Each chunk carries a unique marker word;
a check fails if a marker of a chunk the caller may not read appears anywhere in the response
body: hit ids, answer text, ``sources``, snippets or Open WebUI's streamed ``event`` documents.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rag.pipeline import Pipeline
from rag.registry import make_chat, make_embedder, make_store
from rag.types import PUBLIC_GROUP, Chunk
from serving.app import create_app
from serving.identity import hash_key
from tests.serving.conftest import MODEL, make_settings

GROUPS = ("public", "hr", "eng", "legal", "exec")
WORDS = ("gpu", "cluster", "budget", "salary", "queue", "storage", "backup", "policy", "travel", "review", "audit")
USERS = 4
QUERIES = 22
EXAMPLES = 40

group_sets = st.frozensets(st.sampled_from(GROUPS), max_size=3)
chunk_st = st.tuples(st.lists(st.sampled_from(WORDS), min_size=3, max_size=8), group_sets)
query_st = st.lists(st.sampled_from(WORDS), min_size=1, max_size=3).map(" ".join)


def marker(i: int) -> str:
    return f"mark{i}zq"


async def run_example(tmp: Path, chunks: list[tuple[list[str], frozenset[str]]], users: list[frozenset[str]],
                      queries: list[str]) -> int:  # fmt: skip
    docs = tuple(
        Chunk(id=f"c{i}", text=f"The {' '.join(words)} {marker(i)}.", source=f"file:///d/{i}.md", title=f"Doc {i}",
              groups=tuple(sorted(groups)))
        for i, (words, groups) in enumerate(chunks)
    )  # fmt: skip
    access = {
        "keys": [{"name": f"u{u}", "sha256": hash_key(f"key-{u}"), "groups": sorted(gs)} for u, gs in enumerate(users)]
    }
    path = tmp / f"access-{uuid.uuid4().hex}.json"
    path.write_text(json.dumps(access))
    cfg = make_settings(tmp, auth={"access_file": str(path), "required": True}, retrieval={"k": 5, "min_score": 0.0})
    store, embedder = make_store(cfg), make_embedder(cfg)
    await store.open(embedder.info, create=True)
    await store.upsert(list(docs), np.asarray(await embedder.embed_documents([c.text for c in docs])))
    pipeline = Pipeline(cfg, store, embedder, make_chat(cfg, "extractive://"))
    app = create_app(cfg, pipeline=pipeline)
    checks = 0
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            for u, groups in enumerate(users):
                readable = groups | {PUBLIC_GROUP}
                forbidden = [marker(i) for i, c in enumerate(docs) if not readable & set(c.groups)]
                allowed_ids = {c.id for c in docs if readable & set(c.groups)}
                headers = {"Authorization": f"Bearer key-{u}"}
                for q in queries:
                    r = await client.post("/v1/search", json={"query": q, "k": 20}, headers=headers)
                    assert r.status_code == 200, r.text
                    assert {h["id"] for h in r.json()["data"]} <= allowed_ids
                    assert not [m for m in forbidden if m in r.text]
                    chat: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": q}]}
                    r = await client.post("/v1/chat/completions", json=chat, headers=headers)
                    assert r.status_code == 200, r.text
                    assert {s["id"] for s in r.json()["sources"]} <= allowed_ids
                    assert not [m for m in forbidden if m in r.text], (groups, r.text)
                    r = await client.post("/v1/chat/completions", json={**chat, "stream": True}, headers=headers)
                    assert r.status_code == 200, r.text
                    assert not [m for m in forbidden if m in r.text], (groups, r.text)
                    checks += 3
    await pipeline.close()
    return checks


def test_no_caller_ever_receives_text_outside_its_groups_in_over_ten_thousand_checks(tmp_path_factory) -> None:
    checks: list[int] = []

    @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(
        chunks=st.lists(chunk_st, min_size=4, max_size=14),
        users=st.lists(group_sets, min_size=USERS, max_size=USERS),
        queries=st.lists(query_st, min_size=QUERIES, max_size=QUERIES),
    )
    def no_leak(chunks, users, queries) -> None:  # type: ignore[no-untyped-def]
        tmp = tmp_path_factory.mktemp("acl", numbered=True)
        checks.append(asyncio.run(run_example(tmp, chunks, users, queries)))

    no_leak()
    # Every request was checked for leaks; the count shows the property really ran at that scale.
    assert sum(checks) >= 10_000, sum(checks)
