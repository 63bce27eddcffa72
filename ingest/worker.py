"""The ingest worker: list a source, parse what changed, chunk, embed in batches, write, record state."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ingest.chunking import Chunker
from ingest.formats import NeedsOcr, Parsed, ParseError
from ingest.loaders import Document, parse
from ingest.sandbox import ParseLimits, Parser, in_process, parse_bounded
from ingest.source import BatchFetcher, Item, Loader, make_loader
from ingest.sync import DocState, SyncState, state_path
from rag.config import EmbedSettings, Settings
from rag.errors import InvalidRequest
from rag.ids import content_hash
from rag.seams import Embedder, GroupUpdater, LocalCompute, VectorStore
from rag.types import Chunk

log = logging.getLogger(__name__)

# Batches of chunks sorted by length together before embedding (bounds the chunks held in memory).
# The window starts at one batch and doubles up to this, so the model starts work on the first batch.
_WINDOW = 8
# Files read ahead per worker-thread call (a re-sync reads and hashes every file).
_AHEAD_FILES = 32
_AHEAD_BYTES = 4 * 1024 * 1024
# Embedded chunks are written to the store in groups of at least this many batch sizes.
_WRITE_BATCHES = 4

# progress(status, source): status is one of added, updated, regrouped, unchanged, deleted, skipped, failed.
Progress = Callable[[str, str], None]


def parse_shard(spec: str) -> tuple[int, int]:
    """``"i/N"`` as (i, N), with 0 <= i < N.

    Raises:
        InvalidRequest: not of that form.
    """
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", spec)
    if not match or not 0 <= int(match.group(1)) < int(match.group(2)):
        raise InvalidRequest(f"shard must be 'i/N' with 0 <= i < N, got '{spec}'", param="shard")
    return int(match.group(1)), int(match.group(2))


def shard_of(uri: str, count: int) -> int:
    """The shard (0..count-1) a document belongs to: a stable hash of its URI, the same on every machine."""
    digest = hashlib.blake2b(uri.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count


def plan_batches(lengths: Sequence[int], batch_size: int, batch_tokens: int) -> list[list[int]]:
    """Embedding batches over texts of the given token lengths: indices, longest first.

    A batch holds at most ``batch_size`` texts and, unless it is a single text, at most
    ``batch_tokens`` padded tokens (its size times its first, longest text; 0 = no limit).
    """
    batches: list[list[int]] = []
    batch: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        if batch and (len(batch) >= batch_size or 0 < batch_tokens < (len(batch) + 1) * lengths[batch[0]]):
            batches.append(batch)
            batch = []
        batch.append(i)
    if batch:
        batches.append(batch)
    return batches


@dataclass(frozen=True)
class IngestReport:
    """Outcome of one ingestion run; ``skipped`` and ``failed`` hold (source, reason) pairs."""

    source: str
    added: int = 0
    updated: int = 0
    regrouped: int = 0  # only the ACL changed: groups rewritten in place, nothing re-embedded
    deleted: int = 0
    unchanged: int = 0
    skipped: tuple[tuple[str, str], ...] = ()
    failed: tuple[tuple[str, str], ...] = ()
    warnings: tuple[tuple[str, str], ...] = ()  # ingested, but repaired (mixed encodings, damaged bytes)
    chunks_added: int = 0
    chunks_deleted: int = 0
    chunks_embedded: int = 0
    seconds: float = 0.0
    shard: str = ""  # "i/N" when only one shard of the source was processed
    interrupted: bool = False  # stopped early (SIGTERM); vanished documents were not looked for

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (pairs become ``{"source", "reason"}`` objects)."""
        out = asdict(self)
        for key in ("skipped", "failed", "warnings"):
            out[key] = [{"source": s, "reason": r} for s, r in getattr(self, key)]
        out["seconds"] = round(self.seconds, 3)
        return out


@dataclass
class _Tally:
    counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(("added", "updated", "regrouped", "deleted", "unchanged"), 0)
    )
    skipped: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[tuple[str, str]] = field(default_factory=list)
    chunks_added: int = 0
    chunks_deleted: int = 0
    chunks_embedded: int = 0

    def report(self, source: str, started: float, *, shard: str = "", interrupted: bool = False) -> IngestReport:
        """The run's report, timed from ``started`` (``time.monotonic()``)."""
        return IngestReport(
            source=source,
            **self.counts,
            skipped=tuple(self.skipped),
            failed=tuple(self.failed),
            warnings=tuple(self.warnings),
            chunks_added=self.chunks_added,
            chunks_deleted=self.chunks_deleted,
            chunks_embedded=self.chunks_embedded,
            seconds=time.monotonic() - started,
            shard=shard,
            interrupted=interrupted,
        )


@dataclass
class _Job:
    """One document being written: its new chunks, ids to remove afterwards, chunks not yet upserted."""

    source: str
    status: str
    doc_hash: str
    recipe: str
    new_ids: list[str]
    stale_ids: list[str]
    remaining: int


class _Writer:
    """Embeds chunks in batches that span documents and finishes each document once all its chunks are in.

    Overlapped: ``add`` hands full batches to a consumer task through a bounded queue, so parsing and
    chunking of the next documents run while a batch is embedded, and a batch's store write runs while
    the next one is embedded (one embed and one write in flight; order of writes kept). An embedder
    that computes on this machine's CPU (``cpu_bound``) is not overlapped: each batch is embedded (and
    any store write it completes is done) before the next is handed on, since the model already keeps
    every core busy and other work beside it costs more model time than it saves (measured in
    benchmarks/ingest.py). Pending ids are recorded (one transaction for the whole window) before any of
    its batches is queued, so the crash-safety protocol is unchanged; documents finished by one write are
    recorded in one transaction.

    Chunks are collected into a window of up to ``_WINDOW`` batches and sorted by token count before being
    cut into batches of at most ``batch_size`` chunks and ``batch_tokens`` padded tokens, so a batch holds
    chunks of similar length, the model pads little, and a batch of long chunks is smaller (less padding
    than ``SentenceTransformer.encode`` over one whole call, and a lower memory peak); a document is
    finished once all its chunks are written, whichever batches they went to.
    """

    def __init__(
        self,
        store: VectorStore,
        embedder: Embedder,
        state: SyncState,
        chunker: Chunker,
        settings: EmbedSettings,
        tally: _Tally,
        note: Progress,
    ) -> None:
        self._store, self._embedder, self._state, self._chunker = store, embedder, state, chunker
        self._batch_size, self._batch_tokens = settings.batch_size, settings.batch_tokens
        self._tally, self._note = tally, note
        self._buffer: list[tuple[Chunk, _Job]] = []
        self._jobs: list[_Job] = []  # documents in the buffer, not yet begun
        self._window = 1
        self._queue: asyncio.Queue[list[tuple[Chunk, _Job]] | None] = asyncio.Queue(maxsize=2)
        self._consumer: asyncio.Task[None] | None = None
        # A local CPU model (``cpu_bound``) gets the cores to itself: no parsing while it embeds.
        self._serial = isinstance(embedder, LocalCompute) and embedder.cpu_bound

    async def add(self, job: _Job, chunks: list[Chunk]) -> None:
        """Buffer a document's chunks; hand full batches on once a window is full."""
        if not chunks:
            self._state.begin(job.source, job.new_ids)
            await self._finish([job])
            return
        self._jobs.append(job)
        self._buffer.extend((c, job) for c in chunks)
        if len(self._buffer) >= self._batch_size * self._window:
            await self._emit()
            self._window = min(2 * self._window, _WINDOW)

    async def _emit(self) -> None:
        """Record the buffered documents' pending ids, then hand their chunks on in batches of similar length."""
        self._state.begin_many([(j.source, j.new_ids) for j in self._jobs])
        self._jobs = []
        buffer, self._buffer = self._buffer, []
        lengths = self._chunker.input_lengths([c.text for c, _ in buffer])
        for batch in plan_batches(lengths, self._batch_size, self._batch_tokens):
            await self._put([buffer[i] for i in batch])

    async def _put(self, batch: list[tuple[Chunk, _Job]] | None) -> None:
        if self._consumer is None:
            self._consumer = asyncio.create_task(self._consume())
        put = asyncio.ensure_future(self._queue.put(batch))
        await asyncio.wait({put, self._consumer}, return_when=asyncio.FIRST_COMPLETED)
        if not put.done():  # the consumer failed: its error is the run's error
            put.cancel()
            await self._consumer
        if self._serial and batch is not None:
            # The model computes on this machine's cores: parsing the next documents meanwhile would
            # only take cores from it (and stall its threads), so wait until the batch is embedded and
            # any write it completed is done.
            drained = asyncio.ensure_future(self._queue.join())
            await asyncio.wait({drained, self._consumer}, return_when=asyncio.FIRST_COMPLETED)
            if not drained.done():
                drained.cancel()
                await self._consumer

    async def _consume(self) -> None:
        writing: asyncio.Task[None] | None = None
        # Embedded chunks are written in groups of at least _WRITE_BATCHES batch sizes: a store write has
        # a fixed cost (Chroma commits each call), and token-budget batches can be small.
        done: list[tuple[Chunk, _Job]] = []
        vectors: list[np.ndarray] = []

        async def write() -> None:
            nonlocal writing
            if writing is not None:
                await writing
            writing = asyncio.create_task(self._write(list(done), np.concatenate(vectors)))
            done.clear()
            vectors.clear()
            if self._serial:
                await writing
                writing = None

        try:
            while (batch := await self._queue.get()) is not None:
                vectors.append(await self._embedder.embed_documents([c.text for c, _ in batch]))
                done.extend(batch)
                self._tally.chunks_embedded += len(batch)
                if len(done) >= _WRITE_BATCHES * self._batch_size:
                    await write()
                self._queue.task_done()
            if done:
                await write()
        finally:
            if writing is not None:
                await writing

    async def flush(self) -> None:
        """Write whatever is left and wait for the writes in flight."""
        if self._buffer:
            await self._emit()
        if self._consumer is not None:
            await self._put(None)
            consumer, self._consumer = self._consumer, None
            await consumer

    async def close(self) -> None:
        """Stop the consumer after an error in the producer (nothing more is written)."""
        if self._consumer is not None and not self._consumer.done():
            self._consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._consumer

    async def _write(self, batch: list[tuple[Chunk, _Job]], vectors: np.ndarray) -> None:
        chunks = [c for c, _ in batch]
        await self._store.upsert(chunks, vectors)
        self._tally.chunks_added += len(chunks)
        done: list[_Job] = []
        for _, job in batch:
            job.remaining -= 1
            if job.remaining == 0:
                done.append(job)
        if done:
            await self._finish(done)

    async def _finish(self, jobs: list[_Job]) -> None:
        """Delete the documents' stale chunks, then make their new ids current (one transaction)."""
        stale = [i for job in jobs for i in job.stale_ids]
        if stale:
            await self._store.delete(stale)
            self._tally.chunks_deleted += len(stale)
        self._state.finish_many([(j.source, j.new_ids, j.doc_hash, j.recipe) for j in jobs])
        for job in jobs:
            self._tally.counts[job.status] += 1
            self._note(job.status, job.source)


async def ingest_source(
    settings: Settings,
    store: VectorStore,
    embedder: Embedder,
    source: str,
    *,
    progress: Progress | None = None,
    shard: tuple[int, int] | None = None,
    stop: asyncio.Event | None = None,
    total: Callable[[int], None] | None = None,
) -> IngestReport:
    """Bring the store in line with a source folder: add new, replace changed, remove vanished documents.

    Opens the store (creating the collection) with the embedder's identity; the caller closes it.
    Parse failures are reported per document and leave that document's stored chunks untouched.

    ``shard=(i, N)`` handles only documents whose URI hashes to shard i of N, with a sync state of
    its own; a vanished document is deleted by the shard it hashes to, so N shards running at once
    never touch the same document. When ``stop`` is set the run ends after the document batch in
    flight is written (SIGTERM); the deletion pass is then skipped, the listing being unfinished.
    ``total`` is called once with the number of documents to look at, after listing (progress ETA).

    Raises:
        InvalidRequest: the source does not exist or is not a folder/file source.
        EmbedderMismatch: the collection was built by a different embedder.
    """
    started = time.monotonic()
    ingested_at = time.time()
    cfg = settings.ingest
    loader = make_loader(source, cfg)
    chunker = Chunker(cfg.chunk_size, cfg.chunk_overlap, embedder)
    await store.open(embedder.info, create=True)
    recipe = f"{chunker.recipe}:{embedder.info.id}"  # after open: an ``auto`` embedder may follow the collection
    suffix = f"shard{shard[0]}of{shard[1]}" if shard else ""
    state = SyncState(state_path(settings.data_dir, settings.store.url, store.name, suffix))
    tally = _Tally()
    interrupted = False
    writer: _Writer | None = None
    parser = Parser(ParseLimits.from_settings(cfg))

    def note(status: str, src: str) -> None:
        if progress is not None:
            progress(status, src)

    try:
        await _forget_state_of_an_empty_store(state, store)
        writer = _Writer(store, embedder, state, chunker, settings.embed, tally, note)
        seen: set[str] = set()
        unlisted: list[str] = []  # folders that could not be listed: their stored documents are kept
        items = [i async for i in loader.items() if shard is None or shard_of(i.uri, shard[1]) == shard[0]]
        if total is not None:
            total(len(items))
        parser.expect((i.name, i.size) for i in items if not i.skip and not i.error)
        ahead: dict[str, bytes | OSError] = {}  # files read ahead, in small groups, not yet processed
        for position, item in enumerate(items):
            if stop is not None and stop.is_set():
                interrupted = True
                log.info("stop requested: finishing the batch in flight, then stopping")
                break
            if item.skip:
                tally.skipped.append((item.uri, item.skip))
                note("skipped", item.uri)
                continue
            seen.add(item.uri)
            if item.error and item.uri.endswith("/"):
                unlisted.append(item.uri)
            if not item.error and item.uri not in ahead:
                ahead.update(await _read_ahead(loader, items, position))
            data = ahead.pop(item.uri, None)
            await _ingest_item(item, data, parser, chunker, recipe, ingested_at, state, store, writer, tally, note)
        await writer.flush()
        for doc in [] if interrupted else state.under(loader.root):
            if doc.source not in seen and not any(doc.source.startswith(u) for u in unlisted):
                removed = await store.delete_sources([doc.source])
                state.remove(doc.source)
                tally.counts["deleted"] += 1
                tally.chunks_deleted += max(removed, len(doc.ids))
                note("deleted", doc.source)
    finally:
        if writer is not None:
            await writer.close()
        await parser.close()
        state.close()
    report = tally.report(
        loader.root, started, shard=f"{shard[0]}/{shard[1]}" if shard else "", interrupted=interrupted
    )
    log.info(
        "ingested %s: %d added, %d updated, %d regrouped, %d deleted, %d unchanged, %d skipped, %d failed in %.1fs",
        report.source, report.added, report.updated, report.regrouped, report.deleted, report.unchanged,
        len(report.skipped), len(report.failed), report.seconds,
    )  # fmt: skip
    return report


async def ingest_documents(
    settings: Settings,
    store: VectorStore,
    embedder: Embedder,
    documents: Iterable[Document],
    *,
    progress: Callable[[int], None] | None = None,
) -> IngestReport:
    """Ingest documents parsed elsewhere (an evaluation's imported corpus) the way ``ingest_source`` does.

    The same chunker, embedding batches, store writes and sync protocol; a document whose hash and recipe
    are those already stored is skipped. There is no deletion pass (the documents are not a listing).
    Opens the store (creating the collection); the caller closes it. ``progress`` gets the documents done.
    """
    started = time.monotonic()
    ingested_at = time.time()
    chunker = Chunker(settings.ingest.chunk_size, settings.ingest.chunk_overlap, embedder)
    await store.open(embedder.info, create=True)
    recipe = f"{chunker.recipe}:{embedder.info.id}"  # after open: an ``auto`` embedder may follow the collection
    state = SyncState(state_path(settings.data_dir, settings.store.url, store.name))
    tally = _Tally()
    writer: _Writer | None = None
    done = 0
    try:
        await _forget_state_of_an_empty_store(state, store)
        writer = _Writer(store, embedder, state, chunker, settings.embed, tally, lambda status, source: None)
        for doc in documents:
            prev = state.get(doc.source)
            doc_recipe = f"{recipe}:acl={','.join(doc.groups)}"
            if prev is not None and prev.pending is None and (prev.doc_hash, prev.recipe) == (doc.doc_hash, doc_recipe):
                tally.counts["unchanged"] += 1
            else:
                chunks = await asyncio.to_thread(chunker.chunks, doc, ingested_at=ingested_at)
                await _write(doc.source, doc.doc_hash, doc_recipe, prev, chunks, writer)
            done += 1
            if progress is not None:
                progress(done)
        await writer.flush()
    finally:
        if writer is not None:
            await writer.close()
        state.close()
    return tally.report("", started)


async def _forget_state_of_an_empty_store(state: SyncState, store: VectorStore) -> None:
    """A state listing documents for an empty collection describes nothing real (a memory store, a wiped one)."""
    if state.count() and await store.count() == 0:
        log.warning("collection %s is empty but %s lists documents; starting afresh", store.name, state.path)
        state.reset()


async def _read_ahead(loader: Loader, items: list[Item], start: int) -> dict[str, bytes | OSError]:
    """Contents of ``items[start]`` and the readable items after it, up to _AHEAD_FILES files / _AHEAD_BYTES.

    A folder reads the whole group in one worker-thread call (``fetch_many``): an unchanged document costs
    a read and a hash, and one thread hop per small file was most of a no-change re-sync.
    """
    group: list[Item] = []
    size = 0
    for item in items[start:]:
        if item.skip or item.error:
            continue
        if group and (len(group) >= _AHEAD_FILES or size + item.size > _AHEAD_BYTES):
            break
        group.append(item)
        size += item.size
    if isinstance(loader, BatchFetcher):
        return dict(zip((i.uri for i in group), await loader.fetch_many(group), strict=True))
    out: dict[str, bytes | OSError] = {}
    for item in group:
        try:
            out[item.uri] = await loader.fetch(item)
        except OSError as e:
            out[item.uri] = e
    return out


async def _ingest_item(
    item: Item,
    data: bytes | OSError | None,
    parser: Parser,
    chunker: Chunker,
    recipe: str,
    ingested_at: float,
    state: SyncState,
    store: VectorStore,
    writer: _Writer,
    tally: _Tally,
    note: Progress,
) -> None:
    prev = state.get(item.uri)
    doc_recipe = f"{recipe}:acl={','.join(item.groups)}"

    async def fail(reason: str) -> None:
        tally.failed.append((item.uri, reason))
        log.warning("cannot ingest %s: %s", item.uri, reason)
        note("failed", item.uri)
        if prev is not None and prev.pending is not None:
            await _settle(prev, store, state)

    if item.error:
        await fail(item.error)
        return
    if data is None:  # not read ahead (cannot happen for a listed, readable item)
        data = OSError("not read")
    if isinstance(data, OSError):
        await fail(f"cannot read: {data.strerror or data}")
        return
    doc_hash = content_hash(data)
    if prev is not None and prev.pending is None and prev.doc_hash == doc_hash:
        if prev.recipe == doc_recipe:
            tally.counts["unchanged"] += 1
            note("unchanged", item.uri)
            return
        if prev.recipe.rpartition(":acl=")[0] == recipe and isinstance(store, GroupUpdater):
            # Same text, same chunking, only the ACL changed: rewrite the groups, keep the vectors.
            # A crash between these two steps leaves the old recipe recorded, so the next run redoes it.
            await store.set_groups(list(prev.ids), item.groups)
            state.finish(item.uri, list(prev.ids), doc_hash=doc_hash, recipe=doc_recipe)
            tally.counts["regrouped"] += 1
            note("regrouped", item.uri)
            return
    try:
        # Small text files are parsed here, in the same thread hop as their chunking (see ingest.sandbox);
        # everything else goes to the parser process, within its time and memory limits.
        if in_process(item.name, len(data)):
            parser.warm()  # the parser process starts meanwhile if later files need it
            parsed = None
        else:
            parsed = await parser.parse(item.name, data)
        doc, chunks = await asyncio.to_thread(_parse_chunk, item, data, parsed, parser.limits, chunker, ingested_at)
    except NeedsOcr as e:  # reported as skipped; stored chunks of the file are kept, as for a failure
        tally.skipped.append((item.uri, str(e)))
        log.warning("skipped %s: %s", item.uri, e)
        note("skipped", item.uri)
        if prev is not None and prev.pending is not None:
            await _settle(prev, store, state)
        return
    except ParseError as e:
        await fail(str(e))
        return
    except Exception as e:  # a library bug on one odd file must not stop the run
        log.exception("unexpected error parsing %s", item.uri)
        await fail(f"parser error: {type(e).__name__}: {e}")
        return
    tally.warnings.extend((item.uri, w) for w in doc.warnings)
    await _write(item.uri, doc_hash, doc_recipe, prev, chunks, writer)


async def _write(
    source: str, doc_hash: str, recipe: str, prev: DocState | None, chunks: list[Chunk], writer: _Writer
) -> None:
    """Hand a document's new chunks to the writer; ids it had before and no longer makes are deleted after."""
    new_ids = [c.id for c in chunks]
    old_ids = prev.all_ids() if prev is not None else set()
    job = _Job(
        source=source,
        status="updated" if prev is not None and prev.doc_hash else "added",
        doc_hash=doc_hash,
        recipe=recipe,
        new_ids=new_ids,
        stale_ids=sorted(old_ids - set(new_ids)),
        remaining=len(chunks),
    )
    await writer.add(job, chunks)


def _parse_chunk(
    item: Item, data: bytes, parsed: Parsed | None, limits: ParseLimits, chunker: Chunker, ingested_at: float
) -> tuple[Document, list[Chunk]]:
    """The document (parsed here when ``parsed`` is None) and its chunks."""
    doc = parse(item, data, parse_bounded(item.name, data, limits) if parsed is None else parsed)
    return doc, chunker.chunks(doc, ingested_at=ingested_at)


async def _settle(prev: DocState, store: VectorStore, state: SyncState) -> None:
    """After an interrupted write of a document that now fails: drop the half-written new ids, keep the old."""
    orphans = sorted(set(prev.pending or ()) - set(prev.ids))
    if orphans:
        await store.delete(orphans)
    state.clear_pending(prev.source)
