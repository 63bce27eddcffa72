"""The folder loader, and ``parse``, which turns a fetched item's bytes into a Document.

The folder loader serves ``file://`` URIs and plain paths (``ingest.source`` picks loaders by scheme).
Listing is cheap (a directory walk and ``stat``); bytes are read only when the sync needs them, and
parsed only when they changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import stat
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import unquote_to_bytes, urlsplit

from ingest.acl import ACL_FILE, ACLError, groups_for
from ingest.files import FileId, Reader, display_name, file_kind
from ingest.formats import Parsed, ParseError, Section, parser_for
from ingest.source import Item, matches
from rag.config import IngestSettings
from rag.errors import InvalidRequest
from rag.ids import content_hash
from rag.lang import detect_lang

log = logging.getLogger(__name__)


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


def path_of(source: str) -> Path:
    """Local path from a ``file://`` URI or a plain path (a URI's escapes are file-system bytes, UTF-8 or not)."""
    if source.startswith("file://"):
        parts = urlsplit(source)
        if parts.netloc not in ("", "localhost"):
            raise InvalidRequest(f"file URI with a remote host is not supported: {source}", param="source")
        return Path(os.fsdecode(unquote_to_bytes(parts.path)))
    return Path(source)


@dataclass
class _Names:
    """The names found so far of one hard-linked file, and how many it has (``st_nlink``)."""

    count: int
    paths: set[Path] = field(default_factory=set)


class FolderLoader:
    """Recursive walk of a local folder (or one file); reads follow no link and read only the listed file.

    Hidden (dot-named) files and folders are reported as skipped, a folder once. A symbolic link to a
    file inside the root is read under the ACL of the target's folder (``follow_links="target-acl"``)
    or skipped (``"skip"``); one leading out of the root is skipped. A file with several hard links is
    read only if the walk finds every one of its names, under the groups all their folders share.
    """

    def __init__(
        self,
        source: str,
        *,
        include: Sequence[str] = (),
        exclude: Sequence[str] = (),
        max_file_mb: float = 50.0,
        default_groups: Sequence[str] = ("public",),
        follow_links: str = "target-acl",
    ) -> None:
        self._path = path_of(source).expanduser().resolve()
        try:
            st = os.stat(self._path)
        except OSError as e:
            raise InvalidRequest(f"source not found: {source}", param="source") from e
        if follow_links not in ("target-acl", "skip"):
            raise InvalidRequest(f"follow_links must be 'target-acl' or 'skip', got '{follow_links}'")
        # Reads start from this folder's descriptor; a single-file source reads from its parent.
        self._base = self._path if stat.S_ISDIR(st.st_mode) else self._path.parent
        base = st if self._base == self._path else os.stat(self._base)
        self._base_id: FileId = (base.st_dev, base.st_ino)
        uri = self._base.as_uri()
        self._base_uri = uri if uri.endswith("/") else uri + "/"  # the file-system root's URI ends in "/"
        self._include = tuple(include)
        self._exclude = tuple(exclude)
        self._max_bytes = int(max_file_mb * 1024 * 1024)
        self._default = tuple(default_groups)
        self._follow = follow_links

    @property
    def root(self) -> str:
        """URI of the folder (or file) this loader covers."""
        return self._path.as_uri()

    async def items(self) -> AsyncIterator[Item]:
        """Walk in a worker thread, then yield items in path order."""
        for item in await asyncio.to_thread(self._list):
            yield item

    async def fetch(self, item: Item) -> bytes:
        """Read the listed file in a worker thread.

        Raises:
            ChangedError: the path no longer leads to the listed file (a link now, replaced, modified).
            OSError: gone or unreadable.
        """

        def read() -> bytes:
            with Reader(self._base, self._base_id) as reader:
                return self._read(reader, item)

        return await asyncio.to_thread(read)

    async def fetch_many(self, items: Sequence[Item]) -> list[bytes | OSError]:
        """Read several files in one worker-thread call, checked as ``fetch`` does; a failed read gives its OSError."""

        def read_all() -> list[bytes | OSError]:
            out: list[bytes | OSError] = []
            with Reader(self._base, self._base_id) as reader:
                for item in items:
                    try:
                        out.append(self._read(reader, item))
                    except OSError as e:
                        out.append(e)
            return out

        return await asyncio.to_thread(read_all)

    def _read(self, reader: Reader, item: Item) -> bytes:
        # The path below the root straight from the URI's text (pathlib costs more than the read of a small file).
        if item.target:
            parts = item.target.split("/")
        elif item.uri.startswith(self._base_uri):
            parts = [os.fsdecode(unquote_to_bytes(p)) for p in item.uri[len(self._base_uri) :].split("/")]
        else:
            parts = []
        if item.file_id is None or not parts or any(p in ("", ".", "..") for p in parts):
            raise OSError(errno.EINVAL, "not a file listed by this loader", item.uri)
        return reader.read(parts, item.file_id, item.size, item.mtime)

    def _rel(self, path: Path) -> str:
        return path.relative_to(self._base).as_posix()

    def _list(self) -> list[Item]:
        out: list[Item] = []
        cache: dict[Path, tuple[str, ...]] = {}
        linked: dict[FileId, _Names] = {}  # hard-linked files met, with the names found for each
        unstated: list[Path] = []  # files passed over without a stat: maybe other names of a hard link
        if self._path != self._base:
            return self._hard_links([self._item(self._path, cache, linked)], cache, linked, unstated)

        def unlisted(e: OSError) -> None:
            # A folder we cannot list is reported (its URI ends in "/"), and the documents stored
            # from it are kept rather than taken for deleted.
            where = Path(e.filename or self._path)
            rel = display_name(self._rel(where)) if where != self._path else "."
            out.append(Item(uri=where.as_uri() + "/", name=rel, error=f"cannot list folder: {e.strerror}"))

        for dirpath, dirnames, filenames in os.walk(self._path, onerror=unlisted, followlinks=False):
            folder = Path(dirpath)
            kept = []
            for d in sorted(dirnames):
                sub = folder / d
                rel = self._rel(sub)
                if matches(rel, self._exclude):
                    continue
                if d.startswith("."):
                    out.append(Item(uri=sub.as_uri() + "/", name=display_name(rel) + "/", skip="hidden folder"))
                elif sub.is_symlink():
                    reason = "symbolic link to a folder (not followed)"
                    out.append(Item(uri=sub.as_uri(), name=display_name(rel), skip=reason))
                else:
                    kept.append(d)
            dirnames[:] = kept
            for f in sorted(filenames):
                path = folder / f
                rel = self._rel(path)
                if f == ACL_FILE or matches(rel, self._exclude) or (self._include and not matches(rel, self._include)):
                    unstated.append(path)
                elif f.startswith("."):
                    unstated.append(path)
                    out.append(Item(uri=path.as_uri(), name=display_name(rel), skip="hidden file"))
                else:
                    out.append(self._item(path, cache, linked))
        out = self._hard_links(out, cache, linked, unstated)
        out.sort(key=lambda i: i.uri)
        return out

    def _item(self, path: Path, cache: dict[Path, tuple[str, ...]], linked: dict[FileId, _Names]) -> Item:
        uri, name = path.as_uri(), display_name(self._rel(path))
        try:
            st = os.lstat(path)
        except OSError as e:
            return Item(uri=uri, name=name, error=f"cannot stat: {e.strerror}")
        target = path
        if stat.S_ISLNK(st.st_mode):
            try:
                target = path.resolve(strict=True)
                st = os.stat(target)
            except RuntimeError:  # Python < 3.13 reports a loop this way, newer ones as OSError(ELOOP)
                return Item(uri=uri, name=name, error="symbolic link loop")
            except OSError as e:
                reason = "symbolic link loop" if e.errno == errno.ELOOP else f"broken symbolic link: {e.strerror}"
                return Item(uri=uri, name=name, error=reason)
            if not target.is_relative_to(self._base):
                return Item(uri=uri, name=name, skip="symbolic link pointing outside the source root")
            if self._follow == "skip":
                return Item(uri=uri, name=name, skip="symbolic link (not followed: follow_links=skip)")
        file_id = (st.st_dev, st.st_ino)
        if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
            linked.setdefault(file_id, _Names(st.st_nlink)).paths.add(target)
        if parser_for(path.name) is None:
            base = name.rpartition("/")[2]
            return Item(uri=uri, name=name, skip=f"unsupported file type '{Path(base).suffix or base}'")
        if not stat.S_ISREG(st.st_mode):
            # Reading a FIFO would block the run forever; devices and sockets are no documents either.
            return Item(uri=uri, name=name, error=f"not a regular file ({file_kind(st.st_mode)})")
        if st.st_size == 0:
            return Item(uri=uri, name=name, mtime=st.st_mtime, skip="empty file (0 bytes)")
        if st.st_size > self._max_bytes:
            limit = f"{self._max_bytes / 1024 / 1024:g} MiB limit (max_file_mb)"
            reason = f"file is {st.st_size / 1024 / 1024:.1f} MiB, above the {limit}"
            return Item(uri=uri, name=name, mtime=st.st_mtime, size=st.st_size, error=reason)
        try:
            # A link is read under the ACL of the folder its target lies in, never the link's.
            groups = groups_for(target, self._base, self._default, cache)
        except ACLError as e:
            return Item(uri=uri, name=name, mtime=st.st_mtime, size=st.st_size, error=str(e))
        return Item(
            uri=uri, name=name, mtime=st.st_mtime, size=st.st_size, groups=groups,
            file_id=file_id, target=self._rel(target) if target != path else "",
        )  # fmt: skip

    def _hard_links(
        self, out: list[Item], cache: dict[Path, tuple[str, ...]], linked: dict[FileId, _Names], unstated: list[Path]
    ) -> list[Item]:
        """Hard-linked files under the groups all their names' folders share; refused if a name is unaccounted for.

        Another name of the file may sit in a folder of another ACL, or outside the root where none of
        this source's ACLs applies: the file is read only when the walk saw every name.
        """
        if not linked:
            return out
        if any(len(n.paths) < n.count for n in linked.values()):
            for path in unstated:  # names the walk passed over (hidden, excluded, not included) count too
                with contextlib.suppress(OSError):
                    st = os.lstat(path)
                    if (st.st_dev, st.st_ino) in linked:
                        linked[(st.st_dev, st.st_ino)].paths.add(path)
        return [self._hard_linked(i, linked[i.file_id], cache) if i.file_id in linked else i for i in out]

    def _hard_linked(self, item: Item, names: _Names, cache: dict[Path, tuple[str, ...]]) -> Item:
        refused = replace(item, groups=(), file_id=None, target="")
        if len(names.paths) < names.count:
            reason = (
                f"hard link with {names.count} names, {len(names.paths)} of them in the source: the others may lie "
                "outside it (or in folders it skips) under another ACL"
            )
            return replace(refused, skip=reason)
        shared: set[str] | None = None
        for path in sorted(names.paths):
            try:
                groups = set(groups_for(path, self._base, self._default, cache))
            except ACLError as e:
                return replace(refused, error=str(e))
            shared = groups if shared is None else shared & groups
        if not shared:
            where = ", ".join(display_name(self._rel(p)) for p in sorted(names.paths))
            return replace(refused, skip=f"hard link whose names lie under ACLs with no group in common ({where})")
        return replace(item, groups=tuple(sorted(shared)))


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


def from_source(source: str, cfg: IngestSettings) -> FolderLoader:
    """The folder loader for a ``file://`` URI or a plain path (the ``file`` row of ``ingest.source.LOADERS``)."""
    return FolderLoader(
        source,
        include=cfg.include,
        exclude=cfg.exclude,
        max_file_mb=cfg.max_file_mb,
        default_groups=cfg.default_groups,
        follow_links=cfg.follow_links,
    )
