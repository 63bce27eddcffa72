"""Collection versions: build v2 beside a live v1 (another embedder), switch, readers move over, drop v1."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ingest.versions import begin_build, drop, finish_build, switch
from ingest.worker import ingest_source
from rag.config import Settings
from rag.errors import InvalidRequest
from rag.registry import make_embedder, make_store
from rag.versions import Pointer, open_backends, pointer_path, version_settings

QUESTIONS = ["How long may a GPU job run?", "VPN access", "backup policy", "GPU 작업"]


def _settings(tmp_path: Path, store_url: str) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        store={"url": store_url, "collection": "docs"},
        embed={"url": "hash://?dim=64", "batch_size": 16},
        retrieval={"tokenizer": "word"},
    )


async def _build(settings: Settings, name: str, source: Path, embed_url: str, **ingest: int) -> None:
    if ingest:
        settings = settings.model_copy(update={"ingest": settings.ingest.model_copy(update=ingest)})
    v = begin_build(settings, name, embed_url)
    vs = version_settings(settings, v)
    store, embedder = make_store(vs), make_embedder(vs)
    await store.open(embedder.info, create=True)
    try:
        report = await ingest_source(vs, store, embedder, str(source))
    finally:
        await store.close()
    finish_build(settings, name, ok=not report.interrupted)


def _collections(settings: Settings) -> set[str]:
    url = settings.store.url
    if url.startswith("chroma://"):
        import chromadb

        client = chromadb.PersistentClient(url.removeprefix("chroma://"))
        return {c.name for c in client.list_collections()}
    if url.startswith("milvus+lite://"):
        from pymilvus import MilvusClient

        client = MilvusClient(url.removeprefix("milvus+lite://"))
        try:
            names = set(client.list_collections())
            # The stable name is a native alias of the live version (other Milvus clients follow it too).
            names.add("alias:" + client.describe_alias("docs")["collection_name"])
            return names
        finally:
            client.close()
    from rag.stores import memory

    return set(memory._NAMED[url.split("name=")[1]])


@pytest.mark.parametrize("kind", ["memory", "chroma", "milvus"])
async def test_build_switch_drop_while_searching(tmp_path: Path, corpus: Path, kind: str) -> None:
    url = {
        "memory": f"memory://?name=versions-{tmp_path.name}",
        "chroma": f"chroma://{tmp_path}/chroma",
        "milvus": f"milvus+lite://{tmp_path}/rag.db",
    }[kind]
    settings = _settings(tmp_path, url)
    await _build(settings, "v1", corpus, "hash://?dim=64")
    await switch(settings, "v1")

    store, embedder = open_backends(settings)
    await store.open(embedder.info, create=False)
    seen: list[tuple[int, int]] = []  # (query dim, hits) per search
    stop = asyncio.Event()

    async def reader() -> None:
        i = 0
        while not stop.is_set():
            vector = await embedder.embed_query(QUESTIONS[i % len(QUESTIONS)])
            hits = await store.search(vector, 3)
            seen.append((vector.shape[0], len(hits)))
            i += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(reader())
    try:
        n_v1 = await store.count()
        # v2: another embedder (dim 96) and chunking, built while v1 is live and searched.
        small = settings.ingest.model_copy(update={"chunk_size": 120, "chunk_overlap": 10})
        v2 = begin_build(settings.model_copy(update={"ingest": small}), "v2", "hash://?dim=96")
        with pytest.raises(InvalidRequest, match="building"):
            await switch(settings, "v2")  # a half-built version cannot become live
        assert embedder.info.dim == 64 and await store.count() == n_v1
        finish_build(settings, "v2", ok=False)
        await _build(settings, "v2", corpus, "hash://?dim=96", chunk_size=120, chunk_overlap=10)
        assert await store.count() == n_v1  # still v1
        before = len(seen)
        await switch(settings, "v2")
        await asyncio.sleep(0.05)
        while len(seen) < before + 5:
            await asyncio.sleep(0.01)
    finally:
        stop.set()
        await task
    assert seen and all(hits == 3 for _, hits in seen)  # never an empty or half-built index
    dims = [d for d, _ in seen]
    assert dims[0] == 64 and dims[-1] == 96 and dims == sorted(dims)  # moved over once, never back
    assert embedder.info.dim == 96
    n_v2 = await store.count()
    assert n_v2 > n_v1  # smaller chunks

    with pytest.raises(InvalidRequest, match="live"):
        await drop(settings, "v2")
    await drop(settings, "v1")
    collections = _collections(settings)
    assert v2.collection in collections and "docs__v1" not in collections
    if kind == "milvus":
        assert "alias:docs__v2" in collections
    doc = json.loads(pointer_path(settings).read_text())
    assert doc["live"] == "v2" and set(doc["versions"]) == {"v2"}
    vector = await embedder.embed_query("GPU")
    assert len(await store.search(vector, 3)) == 3
    await store.close()
    await embedder.close()


async def test_interrupted_build_is_never_live(tmp_path: Path, corpus: Path) -> None:
    settings = _settings(tmp_path, f"memory://?name=interrupted-{tmp_path.name}")
    await _build(settings, "v1", corpus, "hash://?dim=64")
    await switch(settings, "v1")
    v2 = begin_build(settings, "v2", "hash://?dim=96")
    vs = version_settings(settings, v2)
    store, embedder = make_store(vs), make_embedder(vs)
    await store.open(embedder.info, create=True)
    stopped = asyncio.Event()
    stopped.set()
    report = await ingest_source(vs, store, embedder, str(corpus), stop=stopped)
    finish_build(settings, "v2", ok=not report.interrupted)
    assert Pointer(pointer_path(settings)).get("v2").state == "failed"  # type: ignore[union-attr]
    with pytest.raises(InvalidRequest, match="failed"):
        await switch(settings, "v2")
    assert Pointer(pointer_path(settings)).live().name == "v1"  # type: ignore[union-attr]


def test_cli_build_list_switch_drop(tmp_path: Path, corpus: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from onprem_rag import cli

    monkeypatch.setenv("RAG_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("RAG_STORE__URL", f"chroma://{tmp_path}/chroma")
    monkeypatch.setenv("RAG_EMBED__URL", "hash://?dim=64")
    monkeypatch.setenv("RAG_RETRIEVAL__TOKENIZER", "word")
    runner = CliRunner()

    def rag(*args: str) -> str:
        result = runner.invoke(cli.app, list(args))
        assert result.exit_code == 0, result.output
        return result.output

    rag("collection", "build", str(corpus), "--version", "v1")
    rag("collection", "switch", "v1")
    rag("collection", "build", str(corpus), "--version", "v2", "--embed", "hash://?dim=32")
    listed = json.loads(rag("collection", "list", "--json"))
    assert listed["live"] == "v1" and [v["state"] for v in listed["versions"]] == ["ready", "ready"]
    rag("collection", "switch", "v2")
    assert "docs__v2" in rag("collection", "switch", "v2")
    rag("collection", "drop", "v1")
    listed = json.loads(rag("collection", "list", "--json"))
    assert listed["live"] == "v2" and [v["name"] for v in listed["versions"]] == ["v2"]
    # `rag ingest` writes into the live version: nothing changed, so nothing is embedded.
    assert "chunks embedded" in rag("ingest", str(corpus))
