"""Sharded ingestion: N passes over one source split it by a hash of each URI, together equal one pass."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.worker import ingest_source, parse_shard, shard_of
from rag.config import Settings
from rag.embedders.hashing import HashingEmbedder
from rag.errors import InvalidRequest
from rag.stores.memory import MemoryStore


async def test_shards_partition_the_source_and_together_equal_one_run(settings: Settings, corpus: Path) -> None:
    embedder = HashingEmbedder(64)
    whole = MemoryStore("docs")
    await ingest_source(
        settings.model_copy(update={"data_dir": settings.data_dir / "whole"}), whole, embedder, str(corpus)
    )

    space: dict = {}
    reports = [
        await ingest_source(settings, MemoryStore("docs", space), embedder, str(corpus), shard=(i, 3)) for i in range(3)
    ]
    assert sum(r.added for r in reports) == 12 and all(r.added < 12 for r in reports)
    assert [r.shard for r in reports] == ["0/3", "1/3", "2/3"]
    sharded = MemoryStore("docs", space)
    await sharded.open(embedder.info, create=False)
    assert set(sharded._opened().chunks) == set(whole._opened().chunks)
    assert len(list((settings.data_dir / "sync").glob("*-shard*of3.sqlite3"))) == 3

    # A vanished document is deleted by exactly the shard it hashes to; the others leave it alone.
    gone = corpus / "oncall-runbook.md"
    owner = shard_of(gone.resolve().as_uri(), 3)
    gone.unlink()
    after = [
        await ingest_source(settings, MemoryStore("docs", space), embedder, str(corpus), shard=(i, 3)) for i in range(3)
    ]
    assert [r.deleted for r in after] == [1 if i == owner else 0 for i in range(3)]
    assert not any(c.source == gone.resolve().as_uri() for c in sharded._opened().chunks.values())


@pytest.mark.parametrize("spec", ["3/3", "-1/2", "a/b", "1"])
def test_bad_shard_specs_are_refused(spec: str) -> None:
    with pytest.raises(InvalidRequest):
        parse_shard(spec)


def test_shard_assignment_is_stable_across_processes() -> None:
    # blake2b of the URI, not Python's salted hash(): every pod computes the same partition.
    assert shard_of("file:///data/docs/a.md", 4) == 0 and shard_of("s3://lake/x.pdf", 7) == 6
    assert {shard_of(f"s3://b/doc-{i}.md", 4) for i in range(64)} == {0, 1, 2, 3}
