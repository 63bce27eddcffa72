"""Document sources: what a ``Loader`` is, the items it lists, and the table that picks one by URI scheme.

``rag ingest SOURCE`` takes a folder (a plain path or ``file://`` URI; a NAS mount) or an S3-compatible
bucket (``s3://bucket/prefix``); ``LOADERS`` maps the scheme to the loader's module, imported lazily, and
names the extra its SDK comes with (``rag backends`` lists it).
"""

from __future__ import annotations

import fnmatch
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable
from urllib.parse import urlsplit

from ingest.files import FileId
from rag.config import IngestSettings
from rag.errors import InvalidRequest
from rag.registry import Entry, build

LOADERS: dict[str, Entry] = {
    "file": Entry("ingest.loaders:from_source", "core", "a folder or file (NAS mount): /path or file:///path"),
    "s3": Entry("ingest.s3:from_source", "s3", "an S3-compatible bucket (MinIO, Ceph RGW, AWS): s3://bucket/prefix"),
}


@dataclass(frozen=True)
class Item:
    """One document a loader found: its URI, where it sits, its ACL groups, or why it is not loadable."""

    uri: str
    name: str
    mtime: float = 0.0
    size: int = 0
    groups: tuple[str, ...] = ()
    skip: str = ""  # non-empty: not a document we handle (unsupported type, link outside the root)
    error: str = ""  # non-empty: a document we should handle but cannot (too large, bad ACL file)
    # Folder sources: the listed file (device, inode), and its path below the root when ``uri`` is a link to it.
    # A read checks that it still is that file.
    file_id: FileId | None = None
    target: str = ""


@runtime_checkable
class Loader(Protocol):
    """A source of documents: lists items (covered by ``root``) and fetches an item's bytes."""

    @property
    def root(self) -> str:
        """URI prefix that every item of this source starts with; stored documents under it and not listed are gone."""
        ...

    def items(self) -> AsyncIterator[Item]:
        """Every item of the source, skipped and refused ones included (with their reason)."""
        ...

    async def fetch(self, item: Item) -> bytes:
        """Raw bytes of one item."""
        ...


@runtime_checkable
class BatchFetcher(Protocol):
    """A loader that reads several items in one call (one worker-thread hop for a group of small files)."""

    async def fetch_many(self, items: Sequence[Item]) -> list[bytes | OSError]:
        """The bytes of each item, or the OSError that reading it gave, in order."""
        ...


def matches(rel: str, patterns: Sequence[str]) -> bool:
    """Whether a relative path matches any glob (slash-less globs also match the bare name)."""
    # fnmatch's '*' crosses '/', so '*.md' matches at any depth; slash-less patterns also match the name.
    name = rel.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatchcase(rel, p) or ("/" not in p and fnmatch.fnmatchcase(name, p)) for p in patterns)


def make_loader(source: str, cfg: IngestSettings) -> Loader:
    """The loader for a source by scheme (``LOADERS``): plain paths and ``file://`` URIs, or ``s3://bucket/prefix``.

    Raises:
        InvalidRequest: an unknown scheme, or a source that does not exist.
        MissingExtra: the loader's SDK is not installed (S3: the ``s3`` extra).
    """
    scheme = urlsplit(source).scheme or "file"
    loader = LOADERS.get(scheme)
    if loader is None:
        known = ", ".join(f"{s}://" for s in LOADERS)
        raise InvalidRequest(f"unsupported source {source!r}: folders and files (paths or {known})", param="source")
    return build(loader, source, cfg)  # type: ignore[no-any-return]
