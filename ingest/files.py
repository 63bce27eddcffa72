"""Reading files of a folder source without following links, and only the very file that was listed.

A path is opened one component at a time from the source root's directory descriptor, each with
``O_NOFOLLOW``: a folder or file swapped for a symbolic link after the listing (to ``/etc/passwd``,
to another team's folder) cannot redirect the read. The open descriptor is then checked against the
listing (device and inode, size and modification time): anything else is a ``ChangedError`` for that
file, never the bytes of another one.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Sequence
from pathlib import Path

FileId = tuple[int, int]  # (st_dev, st_ino): one file, whatever its names

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: a FIFO swapped in after the listing must not block the run on open.
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0)


class ChangedError(OSError):
    """The file at a listed path is no longer the file that was listed (replaced, linked, modified)."""

    def __init__(self, what: str, filename: str = "") -> None:
        super().__init__(errno.ESTALE, f"changed since listing: {what}", filename or None)


def file_kind(mode: int) -> str:
    """Words for a file type, as reports name it ("named pipe", "symbolic link", ...)."""
    for test, kind in ((stat.S_ISREG, "regular file"), (stat.S_ISLNK, "symbolic link"), (stat.S_ISDIR, "folder"),
                       (stat.S_ISFIFO, "named pipe"), (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device")):  # fmt: skip
        if test(mode):
            return kind
    return "special file"


def display_name(name: str) -> str:
    """A file name as valid text for titles and reports; bytes that are not UTF-8 are read as CP949, else as U+FFFD.

    ``os`` hands undecodable bytes over as lone surrogates, which stores and JSON refuse.
    """
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        raw = os.fsencode(name)
    try:
        return raw.decode("cp949")  # Korean Windows names copied over unconverted (unzip, old SMB)
    except UnicodeDecodeError:
        return raw.decode("utf-8", "replace")


class Reader:
    """Opens files below one root folder through directory descriptors; folder descriptors are kept until close.

    One reader serves a group of reads (``FolderLoader.fetch_many``), so a folder is opened once per
    group, not once per file.
    """

    def __init__(self, root: Path, root_id: FileId) -> None:
        self._root, self._root_id = root, root_id
        self._dirs: dict[tuple[str, ...], int] = {}

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the folder descriptors."""
        for fd in self._dirs.values():
            os.close(fd)
        self._dirs.clear()

    def read(self, parts: Sequence[str], file_id: FileId, size: int, mtime: float) -> bytes:
        """The bytes of the file at ``root/parts`` if it is still the listed regular file (same id, size and mtime).

        Raises:
            ChangedError: a component is now a link or another kind of file, or the file is another one or modified.
            OSError: the file or a folder is gone or unreadable (``FileNotFoundError``, ``PermissionError``).
        """
        where = "/".join(parts)
        folder = self._dir(tuple(parts[:-1]))
        name = parts[-1]
        st = os.stat(name, dir_fd=folder, follow_symlinks=False)
        if not stat.S_ISREG(st.st_mode):  # checked before opening: opening a device can have effects
            raise ChangedError(f"now a {file_kind(st.st_mode)}", where)
        try:
            fd = os.open(name, _FILE_FLAGS, dir_fd=folder)
        except OSError as e:
            raise _explain(e, folder, name, where, is_folder=False) from e
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise ChangedError(f"now a {file_kind(st.st_mode)}", where)
            if (st.st_dev, st.st_ino) != file_id:
                raise ChangedError("now another file (replaced or renamed over)", where)
            if st.st_size != size or st.st_mtime != mtime:
                raise ChangedError("modified (size or modification time)", where)
            data = _read(fd, size + 1)  # one byte more: a file still growing is noticed, and never read past
        finally:
            os.close(fd)
        if len(data) != size:
            raise ChangedError("modified while being read", where)
        return data

    def _dir(self, parts: tuple[str, ...]) -> int:
        fd = self._dirs.get(parts)
        if fd is not None:
            return fd
        if not parts:
            fd = os.open(self._root, _DIR_FLAGS & ~os.O_NOFOLLOW)  # the root itself was resolved when configured
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) != self._root_id:
                os.close(fd)
                raise ChangedError("the source folder itself was replaced", str(self._root))
        else:
            parent = self._dir(parts[:-1])
            try:
                fd = os.open(parts[-1], _DIR_FLAGS, dir_fd=parent)
            except OSError as e:
                raise _explain(e, parent, parts[-1], "/".join(parts), is_folder=True) from e
        self._dirs[parts] = fd
        return fd


def _read(fd: int, limit: int) -> bytes:
    """Up to ``limit`` bytes, to the end of the file (plain ``os.read``: a file object costs two more syscalls)."""
    parts: list[bytes] = []
    while limit > 0:
        part = os.read(fd, limit)
        if not part:
            break
        parts.append(part)
        limit -= len(part)
    return b"".join(parts)


def _explain(e: OSError, folder: int, name: str, where: str, *, is_folder: bool) -> OSError:
    """An open refused by O_NOFOLLOW / O_DIRECTORY as the change it stands for; other errors unchanged."""
    if e.errno not in (errno.ELOOP, errno.ENOTDIR, errno.ENXIO, errno.EMLINK):
        return e
    try:
        st = os.stat(name, dir_fd=folder, follow_symlinks=False)
    except OSError:
        return e
    kind = file_kind(st.st_mode)
    return ChangedError(f"folder '{where}' on its path is now a {kind}" if is_folder else f"now a {kind}", where)
