from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from ingest.worker import IngestReport, ingest_source
from rag.config import Settings
from rag.embedders.hashing import HashingEmbedder
from rag.stores.memory import MemoryStore
from rag.types import Chunk


class CountingEmbedder(HashingEmbedder):
    """The hashing embedder, counting the texts it embeds."""

    def __init__(self) -> None:
        super().__init__(64)
        self.embedded = 0

    async def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        self.embedded += len(texts)
        return await super().embed_documents(texts)


class CpuBoundEmbedder(HashingEmbedder):
    """The hashing embedder, declaring itself a local CPU model (ingestion then embeds and writes in turn)."""

    cpu_bound = True

    def __init__(self, dim: int = 64, store: MemoryStore | None = None, parsed: list[str] | None = None) -> None:
        super().__init__(dim)
        self.store, self.parsed = store, parsed
        self.embedded = 0
        self.unwritten_at_start: list[int] = []
        self.parsed_while_embedding = 0

    async def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        if self.store is not None:
            self.unwritten_at_start.append(self.embedded - await self.store.count())
        before = len(self.parsed or [])
        await asyncio.sleep(0.05)  # a model's time: the event loop is free for anything that may run meanwhile
        self.parsed_while_embedding += len(self.parsed or []) - before
        self.embedded += len(texts)
        return await super().embed_documents(texts)


class Killed(Exception):
    pass


class CrashingStore(MemoryStore):
    """A memory store that dies (like a killed process) on the n-th upsert or the first delete."""

    def __init__(self, space: dict, *, upserts_before_crash: int | None = None, crash_on_delete: bool = False):
        super().__init__("docs", space)
        self.left = upserts_before_crash
        self.crash_on_delete = crash_on_delete

    async def upsert(self, chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        if self.left is not None:
            if self.left == 0:
                raise Killed
            self.left -= 1
        await super().upsert(chunks, vectors)

    async def delete(self, ids: Sequence[str]) -> None:
        if self.crash_on_delete:
            raise Killed
        await super().delete(ids)


async def _snapshot(store: MemoryStore) -> dict[str, tuple]:
    sources = await store.sources()
    col = store._opened()
    assert set(sources) == {c.source for c in col.chunks.values()}
    return {cid: (c.source, c.index, c.text, c.groups, c.doc_hash) for cid, c in col.chunks.items()}


async def test_sample_corpus_ingests_with_acl_and_reports(settings: Settings, store: MemoryStore, embedder) -> None:
    events: list[tuple[str, str]] = []
    report = await ingest_source(
        settings, store, embedder, str(Path("examples/docs")), progress=lambda *e: events.append(e)
    )
    assert isinstance(report, IngestReport)
    assert report.added == 12 and report.failed == () and report.skipped == ()
    assert report.chunks_added == await store.count() > 12
    assert len(events) == 12
    restricted = [c for c in store._opened().chunks.values() if "restricted" in c.source]
    assert restricted and all(c.groups == ("oncall",) for c in restricted)
    as_dict = report.to_dict()
    assert as_dict["added"] == 12 and isinstance(as_dict["failed"], list) and as_dict["seconds"] >= 0


async def test_second_run_of_unchanged_folder_embeds_and_changes_nothing(settings: Settings, corpus: Path) -> None:
    store, embedder = MemoryStore("docs"), CountingEmbedder()
    await ingest_source(settings, store, embedder, str(corpus))
    before = await _snapshot(store)
    embedded = embedder.embedded
    report = await ingest_source(settings, store, embedder, str(corpus))
    assert embedder.embedded == embedded
    assert (report.added, report.updated, report.deleted, report.unchanged) == (0, 0, 0, 12)
    assert report.chunks_added == report.chunks_deleted == 0
    assert await _snapshot(store) == before


async def test_modifying_one_file_replaces_exactly_its_chunks(settings: Settings, corpus: Path) -> None:
    store, embedder = MemoryStore("docs"), CountingEmbedder()
    await ingest_source(settings, store, embedder, str(corpus))
    before = await _snapshot(store)
    target = corpus / "nas-storage-guide.md"
    target.write_text(target.read_text().replace("200 GiB", "300 GiB") + "\n## New\n\nA new section.\n")
    report = await ingest_source(settings, store, embedder, str(corpus))
    assert (report.added, report.updated, report.unchanged) == (0, 1, 11)
    after = await _snapshot(store)
    uri = target.as_uri()
    assert {k: v for k, v in before.items() if v[0] != uri} == {k: v for k, v in after.items() if v[0] != uri}
    new_texts = " ".join(v[2] for v in after.values() if v[0] == uri)
    assert "300 GiB" in new_texts and "200 GiB" not in new_texts and "A new section." in new_texts
    assert report.chunks_added == sum(1 for v in after.values() if v[0] == uri)


async def test_deleting_a_file_removes_its_chunks(settings: Settings, corpus: Path) -> None:
    store, embedder = MemoryStore("docs"), HashingEmbedder(64)
    await ingest_source(settings, store, embedder, str(corpus))
    gone = corpus / "restricted" / "incident-escalation.md"
    count = (await store.sources())[gone.as_uri()]
    gone.unlink()
    report = await ingest_source(settings, store, embedder, str(corpus))
    assert report.deleted == 1 and report.chunks_deleted == count
    assert gone.as_uri() not in await store.sources()


async def test_parse_failure_keeps_previous_chunks_and_others_still_ingest(settings: Settings, corpus: Path) -> None:
    store, embedder = MemoryStore("docs"), HashingEmbedder(64)
    await ingest_source(settings, store, embedder, str(corpus))
    before = await _snapshot(store)
    pdf = corpus / "data-retention-policy.pdf"
    pdf.write_bytes(pdf.read_bytes()[:500])
    (corpus / "garbage.txt").write_bytes(bytes(range(256)) * 8)
    (corpus / "new.md").write_text("# New\n\nA good new file.\n")
    report = await ingest_source(settings, store, embedder, str(corpus))
    failed = dict(report.failed)
    assert "truncated PDF" in failed[pdf.as_uri()]
    assert "binary" in failed[(corpus / "garbage.txt").as_uri()]
    assert report.added == 1 and report.deleted == 0
    after = await _snapshot(store)
    assert {k: v for k, v in after.items() if "new.md" not in v[0]} == before
    # Fixing the file later updates it normally.
    import shutil

    shutil.copy(Path("examples/docs/data-retention-policy.pdf"), pdf)
    report = await ingest_source(settings, store, embedder, str(corpus))
    # Same bytes as at the first run: nothing to redo for it.
    assert pdf.as_uri() not in dict(report.failed) and report.unchanged == 13


async def test_unsupported_files_are_skipped_not_failed(settings: Settings, corpus: Path) -> None:
    (corpus / "diagram.svg").write_bytes(b"<svg/>")
    report = await ingest_source(settings, MemoryStore("docs"), HashingEmbedder(64), str(corpus))
    assert [s for s, _ in report.skipped] == [(corpus / "diagram.svg").as_uri()]
    assert report.failed == ()


@pytest.mark.parametrize("url", ["memory://", "chroma://{tmp}/chroma", "milvus+lite:///{tmp}/rag.db"])
async def test_acl_change_rewrites_groups_without_re_embedding(settings: Settings, corpus: Path, url: str) -> None:
    from rag.registry import make_store
    from rag.types import Filter

    url = url.format(tmp=settings.data_dir)
    settings = settings.model_copy(update={"store": settings.store.model_copy(update={"url": url})})
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store, embedder = make_store(settings), HashingEmbedder(64)
    try:
        await ingest_source(settings, store, embedder, str(corpus))
        restricted = (corpus / "restricted" / "incident-escalation.md").resolve().as_uri()
        before = await store.count(Filter(sources=(restricted,)))
        (corpus / "restricted" / ".rag-acl.yaml").write_text("groups: [oncall, leads]\n")
        report = await ingest_source(settings, store, embedder, str(corpus))
        assert report.regrouped == 1 and report.updated == 0
        assert report.chunks_embedded == report.chunks_added == report.chunks_deleted == 0
        assert await store.count(Filter(sources=(restricted,), groups=("leads",))) == before > 0
        hits = await store.search(await embedder.embed_query("escalation"), 50, Filter(groups=("leads",)))
        assert hits and {h.chunk.source for h in hits} == {restricted}
        assert all(h.chunk.groups == ("leads", "oncall") for h in hits)
        again = await ingest_source(settings, store, embedder, str(corpus))
        assert again.regrouped == 0 and again.unchanged == 12
    finally:
        await store.close()


async def test_chunk_settings_change_rechunks_everything(settings: Settings, corpus: Path) -> None:
    store, embedder = MemoryStore("docs"), HashingEmbedder(64)
    await ingest_source(settings, store, embedder, str(corpus))
    smaller = settings.model_copy(update={"ingest": settings.ingest.model_copy(update={"chunk_size": 64})})
    report = await ingest_source(smaller, store, embedder, str(corpus))
    assert report.updated == 12


@pytest.mark.parametrize("crash", ["first-upsert", "second-upsert", "delete"])
@pytest.mark.parametrize("serial", [False, True], ids=["overlapped", "serial"])
async def test_rerun_after_a_crash_ends_like_an_uninterrupted_run(
    settings: Settings, corpus: Path, crash: str, serial: bool
) -> None:
    # Reference: two uninterrupted runs (initial, then after edits) in their own store and state.
    ref_settings = settings.model_copy(update={"data_dir": settings.data_dir / "ref"})
    ref = MemoryStore("docs")
    embedder = (CpuBoundEmbedder if serial else HashingEmbedder)(64)
    await ingest_source(ref_settings, ref, embedder, str(corpus))

    space: dict = {}
    await ingest_source(settings, MemoryStore("docs", space), embedder, str(corpus))

    # Edits: one file changed, one removed, one added.
    (corpus / "oncall-runbook.md").write_text(
        (corpus / "oncall-runbook.md").read_text().replace("15 minutes", "10 minutes")
    )
    (corpus / "jupyterhub-guide.md").unlink()
    # Big enough for several store writes (chunks are written in groups of 4 batch sizes).
    (corpus / "extra.md").write_text("# Extra\n\n" + "Extra words here. " * 3000)

    await ingest_source(ref_settings, ref, embedder, str(corpus))
    expected = await _snapshot(ref)

    crashing = CrashingStore(
        space,
        upserts_before_crash={"first-upsert": 0, "second-upsert": 1, "delete": None}[crash],
        crash_on_delete=crash == "delete",
    )
    with pytest.raises(Killed):
        await ingest_source(settings, crashing, embedder, str(corpus))
    report = await ingest_source(settings, MemoryStore("docs", space), embedder, str(corpus))
    assert report.failed == ()
    healed = MemoryStore("docs", space)
    await healed.open(embedder.info, create=False)
    assert await _snapshot(healed) == expected
    # And a further run has nothing left to do.
    again = await ingest_source(settings, healed, embedder, str(corpus))
    assert again.unchanged == 12 and again.chunks_added == 0 and again.chunks_deleted == 0


async def test_state_is_reset_when_the_store_was_emptied(settings: Settings, corpus: Path) -> None:
    embedder = HashingEmbedder(64)
    await ingest_source(settings, MemoryStore("docs"), embedder, str(corpus))
    fresh = MemoryStore("docs")  # same state file, empty store (e.g. memory store in a new process)
    report = await ingest_source(settings, fresh, embedder, str(corpus))
    assert report.added == 12 and await fresh.count() > 0


class BatchRecordingEmbedder(HashingEmbedder):
    """The hashing embedder, keeping every batch it is given."""

    def __init__(self) -> None:
        super().__init__(64)
        self.batches: list[list[str]] = []

    async def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        self.batches.append(list(texts))
        return await super().embed_documents(texts)


@pytest.mark.parametrize("budget", [0, 400, 1200])
async def test_embedding_batches_respect_batch_size_and_padded_token_budget(
    settings: Settings, corpus: Path, budget: int
) -> None:
    from ingest.chunking import SPECIAL_TOKENS, approx_tokens

    settings.embed.batch_tokens = budget
    settings.ingest.chunk_size = 120
    embedder, store = BatchRecordingEmbedder(), MemoryStore("docs")
    report = await ingest_source(settings, store, embedder, str(corpus))
    sizes = [len(b) for b in embedder.batches]
    assert sum(sizes) == report.chunks_embedded == report.chunks_added == await store.count()
    assert max(sizes) <= settings.embed.batch_size
    for batch in embedder.batches:
        tokens = [approx_tokens(t) for t in batch]
        assert tokens == sorted(tokens, reverse=True)  # longest first: the first chunk sets the padding
        if budget and len(batch) > 1:
            assert len(batch) * (tokens[0] + SPECIAL_TOKENS) <= budget
    if budget == 0:  # only the last batch of a window may be short
        assert sizes.count(settings.embed.batch_size) >= len(sizes) - 4
    else:  # long chunks go in smaller batches, short ones still fill a batch
        assert min(sizes) < settings.embed.batch_size <= max(sizes)


def test_plan_batches_longest_first_within_size_and_padded_token_budget() -> None:
    from ingest.worker import plan_batches

    lengths = [10, 256, 12, 256, 100, 11, 256, 9]
    assert plan_batches([], 4, 100) == []
    assert plan_batches(lengths, 4, 0) == [[1, 3, 6, 4], [2, 5, 0, 7]]  # size only
    # 2 x 256 > 500: each long text alone (one text may exceed the budget); short ones share a batch.
    assert plan_batches(lengths, 4, 500) == [[1], [3], [6], [4, 2, 5, 0], [7]]
    assert all(len(b) <= 4 for b in plan_batches(lengths, 4, 10_000))


@pytest.mark.parametrize("cpu_bound", [True, False])
async def test_a_cpu_bound_embedder_embeds_alone_and_embedded_chunks_are_written_in_groups(
    settings: Settings, corpus: Path, monkeypatch: pytest.MonkeyPatch, cpu_bound: bool
) -> None:
    import ingest.worker

    parsed: list[str] = []

    def counting_parse(item, data, result=None):  # type: ignore[no-untyped-def]
        parsed.append(item.uri)
        return parse(item, data, result)

    parse = ingest.worker.parse
    monkeypatch.setattr(ingest.worker, "parse", counting_parse)
    store = MemoryStore("docs")
    embedder = CpuBoundEmbedder(64, store, parsed)
    embedder.cpu_bound = cpu_bound
    report = await ingest_source(settings, store, embedder, str(corpus))
    assert report.added == 12 and report.chunks_added == await store.count() == embedder.embedded
    assert len(embedder.unwritten_at_start) > 3
    if cpu_bound:  # nothing parsed while the model works; writes grouped by 4 batch sizes at most
        assert embedder.parsed_while_embedding == 0
        assert 0 in embedder.unwritten_at_start and max(embedder.unwritten_at_start) < 4 * settings.embed.batch_size
    else:  # a remote model: the next documents are parsed meanwhile
        assert embedder.parsed_while_embedding > 0
