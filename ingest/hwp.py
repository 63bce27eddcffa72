"""HWP 5.0 and HWPX documents (the Hangul word processor's binary and zipped-XML formats), through unhwp.

The parser is unhwp (MIT; a Rust core behind ctypes). It was compared with hwp-hwpx-parser (Apache-2.0, pure
Python) on the HWP 5 files of hwp-rs's tests (Apache-2.0), Naver's public templates and Hancom's own
distribution documents, and on HWPX/HWP files written by python-hwpx:

- body text: both read the same text (hello_world: "Hello World!"; annual_report: about 3,500 characters);
- headings: unhwp's document tree marks outline paragraphs (``head: Outline, level``); hwp-hwpx-parser gives
  flat text with no heading at all;
- tables: unhwp gives rows of cells with their row and column spans, so a merged title row still leaves every
  row as wide as the table; hwp-hwpx-parser's Markdown for the same table (work_report.hwp) has a one-column
  header over four-column rows, which no Markdown reader takes as one table;
- footnotes and text boxes: both keep their text; hwp-hwpx-parser lists footnotes apart (``[^1]`` markers),
  unhwp keeps a footnote at its anchor (its own paragraph in HWP 5, appended to the anchoring paragraph in
  HWPX) and a text box's text in the paragraph that holds it;
- protection: neither refuses a distribution document (both return its placeholder sentence as the text);
  unhwp's metadata carries the distribution flag, hwp-hwpx-parser's ``is_encrypted`` said False.

So unhwp, for headings and tables. Protection is read here from the formats' own flags (the HWP 5
``FileHeader`` property bits; ``encryption-data`` in an HWPX ``META-INF/manifest.xml``) before unhwp runs, with
unhwp's flag and the placeholder sentence as a second check: such a file is a failure, never indexed.

HWP has no pages in the file (Hangul lays pages out when it renders), so sections carry the heading path,
prefixed with the HWP section (구역) number in a document of more than one. HWP 3 and HWPML are refused as
unsupported formats.

Limits: ``check_hwp`` runs before the parser (from the parse sandbox): an HWPX package goes through
``check_package`` like a DOCX; an HWP 5 file's compressed streams (zlib, raw deflate) are inflated in pieces and
counted, nothing kept, against ``max_unpacked_mb`` and ``max_zip_ratio``. The sandbox's text, time and memory
limits apply as to every format. unhwp's document tree (JSON) is about 50 bytes per character of text, so a
document of several MiB of text meets ``parse_memory_mb`` before ``max_text_mb``.
"""

from __future__ import annotations

import io
import json
import logging
import re
import struct
import zipfile
import zlib
from dataclasses import dataclass
from typing import Any

from ingest.packages import check_package
from ingest.parsed import SECTION_SEP, Parsed, ParseError, Section

log = logging.getLogger(__name__)

_MiB = 1024 * 1024
_OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ZIP = b"PK\x03\x04"
_HWP3 = b"HWP Document File V3"
_HWP5 = b"HWP Document File".ljust(32, b"\0")
# FileHeader property bits (HWP 5.0 format specification, "FileHeader") that leave the body unreadable.
_LOCKS = {
    1: "password-protected",
    2: "distribution document (배포용 문서)",
    4: "DRM-protected",
    8: "encrypted with a certificate",
    10: "DRM-protected with a certificate",
}
_COMPRESSED = 1 << 0
# What Hangul puts in the body of a distribution document for readers without its key.
_PLACEHOLDER = re.compile(r"배포용\s*문서입니다")
_RATIO_GRACE = _MiB  # as for Office packages: small streams of repeated records may compress better
_SPACES = re.compile(r"[ \t\u00a0]+")
_BLANK_LINES = re.compile(r"\n{3,}")
# Outline paragraphs longer than this are numbered body text, not titles.
_MAX_HEADING_CHARS = 200


def _protected(what: str) -> ParseError:
    return ParseError(f"protected document ({what}): its body is encrypted for Hangul and cannot be read; not indexed")


def check_hwp(data: bytes, *, max_unpacked_mb: float, max_zip_ratio: float) -> None:
    """Refuse an HWP or HWPX file that would unpack beyond the limits, before unhwp inflates it.

    HWPX goes through ``check_package``; HWP 5's compressed streams are inflated in pieces and counted. A
    protected HWP 5 file is refused here already (its streams are encrypted, not deflated). Bytes of other
    formats are left to the parser, which names them.

    Raises:
        ParseError: over ``max_unpacked_mb`` or ``max_zip_ratio`` (named), a damaged stream, or a protected file.
    """
    if data.startswith(_ZIP):
        check_package(data, max_unpacked_mb=max_unpacked_mb, max_zip_ratio=max_zip_ratio)
        return
    if not data.startswith(_OLE):
        return
    ole = _open_ole(data)
    try:
        flags = _hwp5_flags(ole)
        limit = int(max_unpacked_mb * _MiB)
        total = 0
        for path in ole.listdir(streams=True, storages=False):
            name = "/".join(path)
            raw = ole.openstream(path).read()
            deflated = path[0] in ("BodyText", "DocInfo") and bool(flags & _COMPRESSED)
            if path[0] == "BinData":  # stored or deflated, per item: a stream that does not inflate is stored
                try:
                    size = _inflated(raw, limit - total + 1, max_zip_ratio)
                except zlib.error:
                    size = len(raw)
            elif deflated:
                try:
                    size = _inflated(raw, limit - total + 1, max_zip_ratio)
                except zlib.error as e:
                    raise ParseError(f"damaged HWP stream {name}: {e}") from e
            else:
                size = len(raw)
            if size > _RATIO_GRACE and size / max(len(raw), 1) > max_zip_ratio:
                raise ParseError(
                    f"HWP stream {name} inflates {size / max(len(raw), 1):.0f}:1 or more ({size / _MiB:.1f} MiB), "
                    f"above the {max_zip_ratio:g}:1 limit (max_zip_ratio)"
                )
            total += size
            if total > limit:
                raise ParseError(
                    f"HWP streams unpack to more than {total / _MiB:.1f} MiB, above the {max_unpacked_mb:g} MiB "
                    "limit (max_unpacked_mb)"
                )
    finally:
        ole.close()


def _inflated(raw: bytes, bound: int, max_ratio: float) -> int:
    """Bytes a raw deflate stream inflates to, counted up to ``bound`` (or until past ``max_ratio``).

    Raises:
        zlib.error: not deflate data, or truncated.
    """
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    size = 0
    stop = max(_RATIO_GRACE, max_ratio * len(raw)) + 1
    for i in range(0, len(raw), 64 * 1024):
        piece = inflater.decompress(raw[i : i + 64 * 1024], _MiB)
        while True:
            size += len(piece)
            if size >= bound or size >= stop:
                return size
            if not inflater.unconsumed_tail:
                break
            piece = inflater.decompress(inflater.unconsumed_tail, _MiB)
        if inflater.eof:
            return size
    if not inflater.eof:
        raise zlib.error("truncated deflate stream")
    return size


def _open_ole(data: bytes) -> Any:
    import olefile

    try:
        return olefile.OleFileIO(io.BytesIO(data))
    except Exception as e:  # olefile raises OSError, struct.error, IndexError... on damaged containers
        raise ParseError(f"unreadable HWP (damaged compound file): {type(e).__name__}: {e}") from e


def _hwp5_flags(ole: Any) -> int:
    """The FileHeader's property bits of an HWP 5 compound file.

    Raises:
        ParseError: no FileHeader (not an HWP file), or one of the protection bits set.
    """
    try:
        header = ole.openstream("FileHeader").read(256) if ole.exists("FileHeader") else b""
    except Exception as e:
        raise ParseError(f"unreadable HWP (damaged FileHeader stream): {type(e).__name__}: {e}") from e
    if len(header) < 40 or not header.startswith(_HWP5):
        raise ParseError("not an HWP 5 document (an OLE compound file without the HWP FileHeader signature)")
    (flags,) = struct.unpack_from("<I", header, 36)
    locks = [what for bit, what in _LOCKS.items() if flags & (1 << bit)]
    if locks:
        raise _protected("; ".join(locks))
    return int(flags)


def _hwpx_check(data: bytes) -> None:
    """Refuse a zip that is not an HWPX package, or one whose parts are encrypted (manifest ``encryption-data``)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as e:
        raise ParseError(f"unreadable HWPX (damaged zip package): {e}") from e
    with archive:
        names = set(archive.namelist())
        try:
            mimetype = archive.read("mimetype")[:64].strip() if "mimetype" in names else b""
            manifest = archive.read("META-INF/manifest.xml") if "META-INF/manifest.xml" in names else b""
        except (zipfile.BadZipFile, zlib.error, OSError) as e:
            raise ParseError(f"unreadable HWPX (damaged zip member): {e}") from e
    if mimetype != b"application/hwp+zip" and "Contents/content.hpf" not in names:
        what = f"mimetype {mimetype.decode('ascii', 'replace')!r}" if mimetype else "no mimetype, no content.hpf"
        raise ParseError(f"not an HWPX package ({what})")
    if b"encryption-data" in manifest:
        encrypted = re.findall(rb'full-path="([^"]+)"[^>]*>\s*<(?:\w+:)?encryption-data', manifest)
        parts = ", ".join(p.decode("utf-8", "replace") for p in encrypted[:3]) or "its parts"
        raise _protected(f"encrypted HWPX: {parts} listed with encryption-data in META-INF/manifest.xml")


def parse_hwp(data: bytes) -> Parsed:
    """HWP 5.0 or HWPX (told apart by their bytes) via unhwp: outline headings as sections, tables as Markdown.

    Raises:
        ParseError: protected (distribution, password, DRM), HWP 3 or HWPML (unsupported), or damaged.
    """
    head = data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n")
    if data.startswith(_HWP3):
        raise ParseError("unsupported format: HWP 3.x (Hangul 97 and older); save it as HWP or HWPX in Hangul 2002+")
    if head.startswith(b"<") and b"<HWPML" in head:
        raise ParseError("unsupported format: HWPML (Hangul's XML document, .hml); save it as HWP or HWPX")
    if data.startswith(_OLE):
        _hwp5_flags_of(data)
    elif data.startswith(_ZIP):
        _hwpx_check(data)
    else:
        raise ParseError("not an HWP document (no HWP 5 compound-file, HWPX zip or HWP 3 signature)")
    import unhwp

    try:
        with unhwp.parse_bytes(data) as result:
            tree = json.loads(result.json, object_hook=_slim)
    except unhwp.UnhwpError as e:
        if e.kind in (unhwp.ErrorKind.DISTRIBUTION_RESTRICTED, unhwp.ErrorKind.ENCRYPTED):
            raise _protected(str(e)) from e
        if e.kind == unhwp.ErrorKind.UNSUPPORTED_FORMAT:
            raise ParseError(f"unsupported format: {e}") from e
        raise ParseError(f"unreadable HWP: {e}") from e
    meta = tree.get("metadata") or {}
    if meta.get("is_distribution"):
        raise _protected("distribution document (배포용 문서), flagged in its document properties")
    parsed = _parsed(tree)
    text = "\n".join(s.text for s in parsed.sections)
    if _PLACEHOLDER.search(text) and len(_PLACEHOLDER.sub("", text)) < 300:
        raise _protected("its only text is Hangul's placeholder for distribution documents")
    return parsed  # no sections: the loader reports "no text found"


def _hwp5_flags_of(data: bytes) -> int:
    ole = _open_ole(data)
    try:
        return _hwp5_flags(ole)
    finally:
        ole.close()


def _slim(node: dict[str, Any]) -> dict[str, Any]:
    """Drop run formatting while the tree is read (it is most of its size and none of its text)."""
    if "text" in node and "style" in node:
        del node["style"]
    return node


@dataclass
class _Acc:
    """Blocks under a heading stack, flushed into sections at each heading."""

    prefix: str
    stack: list[tuple[int, str]]
    heading_line: str = ""
    title: str = ""

    def __post_init__(self) -> None:
        self.body: list[str] = []
        self.out: list[Section] = []

    def heading(self, level: int, text: str) -> None:
        self.flush()
        while self.stack and self.stack[-1][0] >= level:
            self.stack.pop()
        self.stack.append((level, text))
        self.heading_line = text
        self.title = self.title or text

    def flush(self) -> None:
        body = _BLANK_LINES.sub("\n\n", "\n".join(self.body)).strip()
        if body:
            text = f"{self.heading_line}\n\n{body}" if self.heading_line else body
            path = [self.prefix] if self.prefix else []
            self.out.append(Section(text=text, section=SECTION_SEP.join(path + [t for _, t in self.stack])))
        self.heading_line, self.body = "", []


def _parsed(tree: dict[str, Any]) -> Parsed:
    """Sections from unhwp's document tree: paragraphs, outline headings, tables."""
    sections = tree.get("sections") or []
    out: list[Section] = []
    title = ((tree.get("metadata") or {}).get("title") or "").strip()
    stack: list[tuple[int, str]] = []  # headings carry on across HWP sections, as in the document
    for number, hwp_section in enumerate(sections, start=1):
        acc = _Acc(prefix=f"Section {number}" if len(sections) > 1 else "", stack=stack)
        for block in hwp_section.get("content") or []:
            kind, value = _only(block)
            if kind == "Paragraph":
                text = _clean(_inline_text(value.get("content") or []))
                level = _heading_level(value.get("style") or {})
                if text and level and len(text) <= _MAX_HEADING_CHARS:
                    acc.heading(level, text)
                elif text:
                    acc.body.append(text)
            elif kind == "Table":
                acc.body.extend(["", *_table_lines(value), ""])
            else:
                text = _clean(_inline_text([block]))
                if text:
                    acc.body.append(text)
        acc.flush()
        out.extend(acc.out)
        title = title or acc.title
    return Parsed(title=title, sections=tuple(out))


def _only(node: Any) -> tuple[str, Any]:
    """The kind and value of a one-key node ``{"Kind": {...}}``; ("", node) for anything else."""
    if isinstance(node, dict) and len(node) == 1:
        ((kind, value),) = node.items()
        if isinstance(value, dict):
            return kind, value
    return "", node


def _heading_level(style: dict[str, Any]) -> int | None:
    """1-based outline level of a paragraph (its outline head, else its style's heading level), or None."""
    head = style.get("head") or {}
    if head.get("kind") == "Outline" and isinstance(head.get("level"), int):
        return int(head["level"]) + 1
    level = style.get("heading_level")
    return int(level) if isinstance(level, int) and level > 0 else None


def _inline_text(nodes: list[Any]) -> str:
    """The text of inline nodes (runs, and paragraphs or cells nested in them), in order."""
    parts: list[str] = []
    for node in nodes:
        kind, value = _only(node)
        if kind == "Table":
            parts.append(" ".join(" | ".join(row) for row in _table_grid(value)))
        elif isinstance(value, dict):
            if isinstance(value.get("text"), str):
                parts.append(value["text"])
            if isinstance(value.get("content"), list):
                parts.append(_inline_text(value["content"]))
        elif isinstance(node, str):
            parts.append(node)
    return "".join(parts)


def _clean(text: str) -> str:
    return "\n".join(line for raw in text.split("\n") if (line := _SPACES.sub(" ", raw).strip()))


def _table_grid(table: dict[str, Any]) -> list[list[str]]:
    """A table's cells on a grid: a merged cell's text in its top-left position, the positions it covers empty."""
    grid: dict[tuple[int, int], str] = {}
    width = 0
    for r, row in enumerate(table.get("rows") or []):
        c = 0
        for cell in row.get("cells") or []:
            while (r, c) in grid:
                c += 1
            text = " ".join(_clean(_inline_text([p])).replace("\n", " ") for p in cell.get("content") or [])
            rowspan, colspan = max(int(cell.get("rowspan") or 1), 1), max(int(cell.get("colspan") or 1), 1)
            for dr in range(rowspan):
                for dc in range(colspan):
                    grid[(r + dr, c + dc)] = ""
            grid[(r, c)] = text.strip()
            c += colspan
            width = max(width, c)
    rows = 1 + max((r for r, _ in grid), default=-1)
    return [[grid.get((r, c), "") for c in range(width)] for r in range(rows)]


def _table_lines(table: dict[str, Any]) -> list[str]:
    """A table as Markdown lines, its first row the header; nothing for a table with no text."""
    grid = [row for row in _table_grid(table) if any(row)]
    if not grid:
        return []

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    return [line(grid[0]), "| " + " | ".join("---" for _ in grid[0]) + " |", *(line(row) for row in grid[1:])]
