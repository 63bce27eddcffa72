"""Collection version lifecycle: build a version beside the live one, switch to it, drop an old one.

The pointer and the readers that follow it are ``rag.versions``; what is here also touches ingestion's
sync state (a build ingests, a drop removes the version's sync state, every shard's included).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ingest.sync import state_files
from ingest.worker import IngestReport, Progress, ingest_source
from rag.config import Settings
from rag.errors import ConfigError, InvalidRequest
from rag.registry import make_embedder, make_store
from rag.seams import Aliasing, Droppable
from rag.versions import Pointer, Version, collection_of, pointer_path, version_settings


def begin_build(settings: Settings, name: str, embed_url: str | None) -> Version:
    """Record a new version as ``building`` (never visible to readers) and return it."""
    stable = settings.store.collection
    version = Version(
        name=name,
        collection=collection_of(stable, name),
        embed_url=embed_url or settings.embed.url,
        chunk_size=settings.ingest.chunk_size,
        chunk_overlap=settings.ingest.chunk_overlap,
        state="building",
        created=time.time(),
    )
    pointer = Pointer(pointer_path(settings))
    with pointer.update() as doc:
        old = doc["versions"].get(name)
        if old is not None and doc.get("live") == name:
            raise InvalidRequest(f"version {name!r} is live; build into a new version name")
        if old is not None and (old["embed_url"], old["chunk_size"], old["chunk_overlap"]) != (
            version.embed_url,
            version.chunk_size,
            version.chunk_overlap,
        ):
            raise InvalidRequest(f"version {name!r} exists with another embedder or chunking; drop it first")
        doc["versions"][name] = version.to_dict() | ({"created": old["created"]} if old else {})
    return version


def finish_build(settings: Settings, name: str, *, ok: bool) -> None:
    """Mark a build ready (switchable) or failed."""
    with Pointer(pointer_path(settings)).update() as doc:
        doc["versions"][name]["state"] = "ready" if ok else "failed"
        doc["versions"][name]["finished"] = time.time()


async def switch(settings: Settings, name: str) -> Version:
    """Make a ready version live (one atomic replace of the pointer; Milvus: also its native alias)."""
    pointer = Pointer(pointer_path(settings))
    version = pointer.get(name)
    if version is None:
        known = ", ".join(v.name for v in pointer.versions()) or "none"
        raise InvalidRequest(f"no version {name!r} of '{settings.store.collection}' (known: {known})")
    if version.state != "ready":
        raise InvalidRequest(f"version {name!r} is {version.state}, not ready: finish `rag collection build` first")
    store = make_store(version_settings(settings, version))
    if isinstance(store, Aliasing):
        await store.set_alias(settings.store.collection, version.collection)
        await store.close()
    with pointer.update() as doc:
        doc["live"] = name
    return version


async def drop(settings: Settings, name: str) -> Version:
    """Delete a version that is not live: its collection, sync state and record."""
    pointer = Pointer(pointer_path(settings))
    version = pointer.get(name)
    if version is None:
        raise InvalidRequest(f"no version {name!r} of '{settings.store.collection}'")
    if pointer.read().get("live") == name:
        raise InvalidRequest(f"version {name!r} is live; switch to another version before dropping it")
    vs = version_settings(settings, version)
    store = make_store(vs)
    if not isinstance(store, Droppable):
        raise ConfigError(f"store {settings.store.url} cannot drop collections")
    await store.drop()
    for path in state_files(settings.data_dir, settings.store.url, version.collection):
        path.unlink(missing_ok=True)
    with pointer.update() as doc:
        doc["versions"].pop(name, None)
    return version


async def build(
    settings: Settings,
    source: str,
    name: str,
    embed_url: str | None = None,
    *,
    progress: Progress | None = None,
    total: Callable[[int], None] | None = None,
) -> IngestReport:
    """Ingest ``source`` into a new version (``<collection>__<name>``); readers keep the live one until a switch.

    The version is ``building`` meanwhile and ``ready`` once the run finished (``failed`` if it stopped early
    or raised), so a half-built version can never be switched to.
    """
    version = begin_build(settings, name, embed_url)
    vs = version_settings(settings, version)
    ok = False
    embedder, store = make_embedder(vs), make_store(vs)
    try:
        report = await ingest_source(vs, store, embedder, source, progress=progress, total=total)
        ok = not report.interrupted
        return report
    finally:
        await store.close()
        await embedder.close()
        finish_build(settings, name, ok=ok)
