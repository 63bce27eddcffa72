"""Document sources: a ``Loader`` lists items and fetches their bytes; ``parse`` turns bytes into a Document.

The folder loader serves ``file://`` URIs and plain paths. Listing is cheap (a directory walk and
``stat``); bytes are read only when the sync needs them, and parsed only when they changed.
"""

from __future__ import annotations

import asyncio
import errno
import fnmatch
import logging
import os
import stat
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable
from urllib.parse import unquote, urlsplit

import yaml

from ingest.formats import Parsed, ParseError, Section, parser_for
from rag.config import IngestSettings
from rag.errors import InvalidRequest
from rag.ids import content_hash
from rag.lang import detect_lang

log = logging.getLogger(__name__)

ACL_FILE = ".rag-acl.yaml"


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


@dataclass(frozen=True)
class Document:
    """A parsed document: identity, metadata and its sections in reading order."""

    source: str
    title: str
    lang: str
    mtime: float
    doc_hash: str
    sections: tuple[Section, ...]
    groups: tuple[str, ...] = field(default=())
    warnings: tuple[str, ...] = ()


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


class ACLError(Exception):
    """An ACL file exists but cannot be read; its folder must not fall back to the default groups."""


def groups_for(
    path: Path, root: Path, default: Sequence[str], _cache: dict[Path, tuple[str, ...]] | None = None
) -> tuple[str, ...]:
    """ACL groups of a file: the nearest ``.rag-acl.yaml`` (``groups: [a, b]``) at or above its folder, within root.

    Raises:
        ACLError: the nearest ACL file is unreadable or malformed (fail closed, never public).
    """
    cache = _cache if _cache is not None else {}
    folder = path.parent
    chain: list[Path] = []
    groups: tuple[str, ...] | None = None
    while True:
        if folder in cache:
            groups = cache[folder]
            break
        chain.append(folder)
        acl = folder / ACL_FILE
        if acl.is_file():
            groups = _read_acl(acl)
            break
        if folder == root or root not in folder.parents:
            groups = tuple(default)
            break
        folder = folder.parent
    for f in chain:
        cache[f] = groups
    return groups


def _read_acl(path: Path) -> tuple[str, ...]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ACLError(f"unreadable ACL file {path}: {e}") from e
    return parse_acl(text, str(path))


def parse_acl(text: str, where: str) -> tuple[str, ...]:
    """Groups from the text of an ACL file (``groups: [a, b]``); ``where`` names it in errors.

    Raises:
        ACLError: not YAML, or no non-empty list of group names.
    """
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ACLError(f"unreadable ACL file {where}: {e}") from e
    groups = data.get("groups") if isinstance(data, dict) else None
    if not isinstance(groups, list) or not groups or not all(isinstance(g, str) and g.strip() for g in groups):
        raise ACLError(f"ACL file {where} must contain 'groups: [name, ...]' with at least one group")
    return tuple(sorted({g.strip() for g in groups}))


def path_of(source: str) -> Path:
    """Local path from a ``file://`` URI or a plain path."""
    if source.startswith("file://"):
        parts = urlsplit(source)
        if parts.netloc not in ("", "localhost"):
            raise InvalidRequest(f"file URI with a remote host is not supported: {source}", param="source")
        return Path(unquote(parts.path))
    return Path(source)


def matches(rel: str, patterns: Sequence[str]) -> bool:
    """Whether a relative path matches any glob (slash-less globs also match the bare name)."""
    # fnmatch's '*' crosses '/', so '*.md' matches at any depth; slash-less patterns also match the name.
    name = rel.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatchcase(rel, p) or ("/" not in p and fnmatch.fnmatchcase(name, p)) for p in patterns)


class FolderLoader:
    """Recursive walk of a local folder (or one file): hidden entries skipped, links kept inside the root."""

    def __init__(
        self,
        source: str,
        *,
        include: Sequence[str] = (),
        exclude: Sequence[str] = (),
        max_file_mb: float = 50.0,
        default_groups: Sequence[str] = ("public",),
    ) -> None:
        self._path = path_of(source).expanduser().resolve()
        if not self._path.exists():
            raise InvalidRequest(f"source not found: {source}", param="source")
        self._include = tuple(include)
        self._exclude = tuple(exclude)
        self._max_bytes = int(max_file_mb * 1024 * 1024)
        self._default = tuple(default_groups)

    @property
    def root(self) -> str:
        """URI of the folder (or file) this loader covers."""
        return self._path.as_uri()

    async def items(self) -> AsyncIterator[Item]:
        """Walk in a worker thread, then yield items in path order."""
        for item in await asyncio.to_thread(self._list):
            yield item

    async def fetch(self, item: Item) -> bytes:
        """Read the file in a worker thread."""
        return await asyncio.to_thread(path_of(item.uri).read_bytes)

    async def fetch_many(self, items: Sequence[Item]) -> list[bytes | OSError]:
        """Read several files in one worker-thread call; a file that cannot be read gives its OSError."""

        def read(item: Item) -> bytes | OSError:
            try:
                return path_of(item.uri).read_bytes()
            except OSError as e:
                return e

        return await asyncio.to_thread(lambda: [read(i) for i in items])

    def _list(self) -> list[Item]:
        if self._path.is_file():
            return [self._item(self._path, self._path.parent, {})]
        out: list[Item] = []
        cache: dict[Path, tuple[str, ...]] = {}

        def unlisted(e: OSError) -> None:
            # A folder we cannot list is reported (its URI ends in "/"), and the documents stored
            # from it are kept rather than taken for deleted.
            where = Path(e.filename or self._path)
            rel = where.relative_to(self._path).as_posix() if where != self._path else "."
            out.append(Item(uri=where.as_uri() + "/", name=rel, error=f"cannot list folder: {e.strerror}"))

        for dirpath, dirnames, filenames in os.walk(self._path, onerror=unlisted, followlinks=False):
            folder = Path(dirpath)
            kept = []
            for d in sorted(dirnames):
                sub = folder / d
                rel = sub.relative_to(self._path).as_posix()
                if d.startswith(".") or matches(rel, self._exclude):
                    continue
                if sub.is_symlink():
                    out.append(Item(uri=sub.as_uri(), name=rel, skip="symbolic link to a folder (not followed)"))
                    continue
                kept.append(d)
            dirnames[:] = kept
            for f in sorted(filenames):
                path = folder / f
                rel = path.relative_to(self._path).as_posix()
                if f.startswith(".") or matches(rel, self._exclude):
                    continue
                if self._include and not matches(rel, self._include):
                    continue
                out.append(self._item(path, self._path, cache))
        out.sort(key=lambda i: i.uri)
        return out

    def _item(self, path: Path, root: Path, cache: dict[Path, tuple[str, ...]]) -> Item:
        uri, name = path.as_uri(), path.relative_to(root).as_posix()
        if path.is_symlink():
            try:
                target = path.resolve(strict=True)
            except RuntimeError:  # Python < 3.13 reports a loop this way, newer ones as OSError(ELOOP)
                return Item(uri=uri, name=name, error="symbolic link loop")
            except OSError as e:
                reason = "symbolic link loop" if e.errno == errno.ELOOP else f"broken symbolic link: {e.strerror}"
                return Item(uri=uri, name=name, error=reason)
            if target != root and root not in target.parents:
                return Item(uri=uri, name=name, skip="symbolic link pointing outside the source root")
        if parser_for(path.name) is None:
            return Item(uri=uri, name=name, skip=f"unsupported file type '{path.suffix or path.name}'")
        try:
            st = path.stat()
        except OSError as e:
            return Item(uri=uri, name=name, error=f"cannot stat: {e.strerror}")
        if not stat.S_ISREG(st.st_mode):
            # Reading a FIFO would block the run forever; devices and sockets are no documents either.
            return Item(uri=uri, name=name, error=f"not a regular file ({_file_kind(st.st_mode)})")
        if st.st_size == 0:
            return Item(uri=uri, name=name, mtime=st.st_mtime, skip="empty file (0 bytes)")
        if st.st_size > self._max_bytes:
            limit = f"{self._max_bytes / 1024 / 1024:g} MiB limit (max_file_mb)"
            reason = f"file is {st.st_size / 1024 / 1024:.1f} MiB, above the {limit}"
            return Item(uri=uri, name=name, mtime=st.st_mtime, size=st.st_size, error=reason)
        try:
            groups = groups_for(path, root, self._default, cache)
        except ACLError as e:
            return Item(uri=uri, name=name, mtime=st.st_mtime, size=st.st_size, error=str(e))
        return Item(uri=uri, name=name, mtime=st.st_mtime, size=st.st_size, groups=groups)


def _file_kind(mode: int) -> str:
    for test, kind in ((stat.S_ISFIFO, "named pipe"), (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device"), (stat.S_ISDIR, "folder")):  # fmt: skip
        if test(mode):
            return kind
    return "special file"


def parse(item: Item, data: bytes, parsed: Parsed | None = None) -> Document:
    """Parse fetched bytes into a Document; ``parsed`` is the parser's output when it ran elsewhere (the sandbox).

    Raises:
        ParseError: unsupported, damaged, binary or undecodable content.
    """
    if parsed is None:
        parser = parser_for(item.name)
        if parser is None:
            raise ParseError(f"unsupported file type: {item.name}")
        parsed = parser(data)
    if not any(s.text.strip() for s in parsed.sections):
        raise ParseError("empty file (0 bytes)" if not data else "no text found in the document")
    stem = Path(item.name).stem
    title = parsed.title or stem.replace("_", " ").replace("-", " ").strip() or stem
    sample = "\n".join(s.text for s in parsed.sections[:20])[:20000]
    return Document(
        source=item.uri,
        title=title,
        lang=detect_lang(sample),
        mtime=item.mtime,
        doc_hash=content_hash(data),
        sections=parsed.sections,
        groups=item.groups,
        warnings=parsed.warnings,
    )


def make_loader(source: str, cfg: IngestSettings) -> Loader:
    """The loader for a source string by scheme: ``s3://bucket/prefix``, else ``file://`` URIs and plain paths.

    Raises:
        InvalidRequest: an unknown scheme, or a source that does not exist.
        ConfigError: the S3 extra is not installed.
    """
    scheme = urlsplit(source).scheme
    if scheme == "s3":
        from ingest.s3 import S3Loader

        return S3Loader(source, cfg)
    if scheme not in ("", "file") and not (len(scheme) == 1 and os.name == "nt"):
        raise InvalidRequest(
            f"unsupported source '{source}': folders and files (file:// URIs or paths) or s3://bucket/prefix",
            param="source",
        )
    return FolderLoader(
        source,
        include=cfg.include,
        exclude=cfg.exclude,
        max_file_mb=cfg.max_file_mb,
        default_groups=cfg.default_groups,
    )
