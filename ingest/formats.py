"""Parsers from raw bytes to sections of text, one per supported file format.

Every parser either returns the document's title and sections or raises ``ParseError`` with a
reason a person can act on. None of them ever returns undecoded bytes as text.
"""

from __future__ import annotations

import codecs
import io
import logging
import re
from collections.abc import Callable
from pathlib import PurePosixPath
from typing import Any

from ingest.ocr import OcrError, OcrOptions, OcrUnavailable, image_pages, ocr_pdf
from ingest.parsed import NeedsOcr, Parsed, ParseError, Section
from ingest.sections import Sections as _Sections
from ingest.sections import row_lines as _row_lines
from rag.lang import hangul_ratio

log = logging.getLogger(__name__)

# Control characters other than tab/newline/carriage return/form feed mark binary content.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")
_SPACES = re.compile(r"[ \t\u00a0]+")
_BLANK_LINES = re.compile(r"\n{3,}")


def decode_text(data: bytes) -> str:
    """Decode text bytes: BOMs, then UTF-8, then Korean legacy encodings, then charset detection.

    Raises:
        ParseError: the bytes are binary or in no encoding we can tell.
    """
    return decode_text_noted(data)[0]


def decode_text_noted(data: bytes) -> tuple[str, tuple[str, ...]]:
    """Like ``decode_text``, also returning warnings about repairs (mixed encodings, invalid UTF-8 bytes).

    Raises:
        ParseError: the bytes are binary or in no encoding we can tell.
    """
    for bom, encoding in (
        (codecs.BOM_UTF32_LE, "utf-32"),
        (codecs.BOM_UTF32_BE, "utf-32"),
        (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if data.startswith(bom):
            try:
                return _check_text(data.decode(encoding), encoding), ()
            except UnicodeDecodeError as e:
                raise ParseError(f"invalid {encoding} text after its byte-order mark: {e.reason}") from e
    if b"\x00" in data:
        raise ParseError("binary content (NUL bytes, no UTF-16 byte-order mark)")
    try:
        return _check_text(data.decode("utf-8"), "utf-8"), ()
    except UnicodeDecodeError as e:
        first_bad = e.start
    repaired = _decode_by_line(data, first_bad)
    if repaired is not None:
        return repaired
    # Korean documents are our common non-UTF-8 case, and short CP949 text is easy to misdetect,
    # so a strict CP949 decode that yields mostly Hangul wins over the statistical guess.
    try:
        text = data.decode("cp949")
        if hangul_ratio(text) >= 0.3:
            return _check_text(text, "cp949"), ()
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    if best is None:
        raise ParseError("undecodable content: not UTF-8, UTF-16, CP949 or any encoding charset-normalizer knows")
    return _check_text(str(best), best.encoding), ()


def _decode_by_line(data: bytes, first_bad: int) -> tuple[str, tuple[str, ...]] | None:
    """UTF-8 text with some CP949 lines (files concatenated from two sources), or with a few damaged bytes.

    Only applies when the file holds real UTF-8 (valid non-ASCII sequences); a file with none is
    in a legacy encoding and left to the CP949 check and charset detection.
    """
    replaced = data.decode("utf-8", errors="replace")
    if replaced.replace("\ufffd", "").isascii():
        return None
    out: list[str] = []
    utf8_non_ascii = legacy = bad = 0
    for line in data.split(b"\n"):
        try:
            text = line.decode("utf-8")
            utf8_non_ascii += not text.isascii()
        except UnicodeDecodeError:
            try:
                text = line.decode("cp949")
                legacy += 1 if hangul_ratio(text) >= 0.3 else 0
                bad += 0 if hangul_ratio(text) >= 0.3 else 1
            except UnicodeDecodeError:
                text = line.decode("utf-8", errors="replace")
                bad += 1
        out.append(text)
    if legacy and not bad and not utf8_non_ascii:
        return None  # all CP949: not mixed, the whole-file CP949 decode takes it
    if legacy and not bad:
        note = f"mixed encodings: {legacy} line(s) in CP949, the rest UTF-8; each line decoded in its own encoding"
        return _check_text("\n".join(out), "utf-8+cp949"), (note,)
    damaged = replaced.count("\ufffd")
    if damaged <= max(1, len(replaced) // 100):
        note = f"invalid UTF-8: {damaged} damaged byte sequence(s) replaced with U+FFFD (first at byte {first_bad})"
        return _check_text(replaced, "utf-8"), (note,)
    return None


def _check_text(text: str, encoding: str) -> str:
    if text and len(_CONTROL.findall(text)) / len(text) > 0.01:
        raise ParseError(f"binary content (control characters after decoding as {encoding})")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _clean(text: str) -> str:
    lines = [_SPACES.sub(" ", line).strip() for line in text.split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


# Part of every document's recipe in the sync state: bump it when a parser's output changes, so the next
# sync re-parses documents whose bytes did not change. v2: Markdown tables become "header: value" rows.
# v3: Markdown rendered from its tokens (HTML, MDX statements and emphasis dropped, admonitions labelled).
PARSER_VERSION = "parsers:v3"


def parse_markdown(data: bytes) -> Parsed:
    """Markdown: sections by heading path (code fences respected), title from front matter or H1."""
    from ingest.markdown import render

    text, warnings = decode_text_noted(data)
    title, sections = render(text)
    return Parsed(title=title, sections=sections, warnings=warnings)


def parse_mdx(data: bytes) -> Parsed:
    """MDX (Docusaurus): Markdown without its ``import``/``export`` lines and JSX tags."""
    from ingest.markdown import render

    text, warnings = decode_text_noted(data)
    title, sections = render(text, mdx=True)
    return Parsed(title=title, sections=sections, warnings=warnings)


def parse_text(data: bytes) -> Parsed:
    """Plain text: one section; a short first line followed by a blank line is the title."""
    text, warnings = decode_text_noted(data)
    text = text.strip()
    first, _, rest = text.partition("\n")
    title = first.strip() if rest.startswith("\n") and 0 < len(first.strip()) <= 100 else ""
    return Parsed(title=title, sections=(Section(text=text),) if text else (), warnings=warnings)


def parse_pdf(data: bytes, ocr: OcrOptions | None = None) -> Parsed:
    """PDF via pypdf: one section per page with its 1-based page number; scanned pages by OCR (``ingest.ocr``).

    A page whose text layer holds fewer than ``ocr.min_chars`` characters and that shows an image is
    OCR'd; when OCR cannot run, those pages are named in a warning and the rest is kept.

    Raises:
        NeedsOcr: no page has a text layer and OCR cannot run (off, or Tesseract not installed).
        ParseError: encrypted, truncated or otherwise unreadable, or no text at all.
    """
    from pypdf import PdfReader
    from pypdf.errors import LimitReachedError, PyPdfError

    if not data.lstrip().startswith(b"%PDF-"):
        raise ParseError("not a PDF file (no %PDF- header)")
    if b"%%EOF" not in data[-2048:]:
        raise ParseError("truncated PDF (no %%EOF marker at the end)")
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            try:
                ok = reader.decrypt("")
            except (PyPdfError, NotImplementedError) as e:
                raise ParseError(f"encrypted PDF that cannot be opened without a password: {e}") from e
            if not ok:
                raise ParseError("encrypted PDF (a password is needed to read it)")
        title = ""
        meta = reader.metadata
        if meta is not None and meta.title:
            title = str(meta.title).strip()
        texts = {number: _clean(page.extract_text() or "") for number, page in enumerate(reader.pages, start=1)}
    except ParseError:
        raise
    except LimitReachedError as e:
        raise ParseError(f"PDF stream above a parsing limit (max_unpacked_mb for inflated streams): {e}") from e
    except Exception as e:  # pypdf raises many unrelated types on damaged files
        raise ParseError(f"unreadable PDF: {type(e).__name__}: {e}") from e
    warnings: tuple[str, ...] = ()
    if ocr is not None:
        try:
            texts, warnings = ocr_pdf(data, texts, ocr)
        except OcrUnavailable as e:
            raise NeedsOcr(str(e)) from None
        except OcrError as e:
            raise ParseError(str(e)) from e
    sections = tuple(Section(text=text, page=number) for number, text in texts.items() if text)
    if not sections:
        raise ParseError("PDF has no text layer and no images to OCR")
    return Parsed(title=title, sections=sections, warnings=warnings)


def parse_docx(data: bytes) -> Parsed:
    """DOCX via python-docx: headings give the section path, tables become one line per row."""
    import docx
    from docx.table import Table

    try:
        document = docx.Document(io.BytesIO(data))
    except Exception as e:  # python-docx raises zipfile/KeyError/ValueError on bad packages
        raise ParseError(f"unreadable DOCX: {type(e).__name__}: {e}") from e
    title = (document.core_properties.title or "").strip()
    acc = _Sections()
    # python-docx resolves a paragraph's style by scanning every style of the document, per paragraph
    # (milliseconds each: a 10 MB document.xml took minutes); names by style id are looked up once.
    style_names: dict[str | None, str] = {}
    for block in document.iter_inner_content():
        if isinstance(block, Table):
            for row in block.rows:
                cells: list[str] = []
                for cell in row.cells:
                    value = _SPACES.sub(" ", cell.text.replace("\n", " ")).strip()
                    if not cells or cells[-1] != value:  # merged cells repeat their text
                        cells.append(value)
                if any(cells):
                    acc.add(" | ".join(cells))
            acc.add("")
            continue
        text = _SPACES.sub(" ", block.text).strip()
        style_id = block._element.style
        style = style_names.get(style_id)
        if style is None:
            style = style_names[style_id] = (block.style.name if block.style is not None else "") or ""
        level = _docx_heading_level(style)
        if level == 0 and text:
            title = title or text
            acc.heading(1, text, text)
        elif level and text:
            if level == 1 and not title:
                title = text
            acc.heading(level, text, text)
        else:
            acc.add(text)
    acc.flush()
    return Parsed(title=title, sections=tuple(acc.out))


def _docx_heading_level(style: str) -> int | None:
    """0 for the Title style, 1-9 for Heading N, None for body text."""
    if style == "Title":
        return 0
    match = re.fullmatch(r"Heading (\d)", style)
    return int(match.group(1)) if match else None


_BOILERPLATE = ("script", "style", "noscript", "template", "nav", "header", "footer", "aside", "form", "iframe")
_BLOCKS = (
    "p", "div", "li", "tr", "br", "pre", "blockquote", "table", "ul", "ol", "dl", "dt", "dd",
    "section", "article", "main", "figcaption", "caption", "hr",
)  # fmt: skip
_HEADING = re.compile(r"^h[1-6]$")
_MARK = "\ue000"  # private-use character: not whitespace (str.strip keeps it), not in real text


def parse_html(data: bytes) -> Parsed:
    """HTML via BeautifulSoup: boilerplate dropped, headings give the section path."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(data, "html.parser")
    if soup.find(True) is None:
        raise ParseError("no HTML elements found")
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    for tag in soup.find_all(_BOILERPLATE):
        tag.decompose()
    for tag in soup.find_all(None, {"role": ["navigation", "banner", "contentinfo"]}):
        tag.decompose()
    root: Any = soup.body or soup
    h1 = root.find("h1")
    if h1 is not None and not title:
        title = h1.get_text(" ", strip=True)
    for heading in root.find_all(_HEADING):
        text = heading.get_text(" ", strip=True)
        heading.replace_with(f"\n{_MARK}{heading.name[1]}{_MARK}{text}\n")
    for cell in root.find_all(["td", "th"]):
        cell.insert_after(" | ")
    for block in root.find_all(_BLOCKS):
        block.insert_after("\n")
    acc = _Sections()
    for raw in root.get_text().split("\n"):
        line = _SPACES.sub(" ", raw).strip().rstrip("|").strip()
        if line.startswith(_MARK):
            _, level, text = line.split(_MARK, 2)
            acc.heading(int(level), text, text)
        elif line:
            acc.add(line)
    acc.flush()
    return Parsed(title=title, sections=tuple(acc.out))


def parse_pptx(data: bytes) -> Parsed:
    """PPTX via python-pptx: one section per slide (its title is the section), notes and tables included."""
    from pptx import Presentation

    try:
        deck = Presentation(io.BytesIO(data))
    except Exception as e:  # python-pptx raises zipfile/KeyError/ValueError on bad packages
        raise ParseError(f"unreadable PPTX: {type(e).__name__}: {e}") from e
    title = (deck.core_properties.title or "").strip()
    sections: list[Section] = []
    for number, slide in enumerate(deck.slides, start=1):
        heading = ""
        title_shape = slide.shapes.title
        if title_shape is not None and title_shape.has_text_frame:
            heading = _SPACES.sub(" ", title_shape.text_frame.text).strip()
        lines: list[str] = [heading] if heading else []
        for shape in slide.shapes:
            if title_shape is not None and shape.shape_id == title_shape.shape_id:
                continue
            lines.extend(_pptx_shape_lines(shape))
        if slide.has_notes_slide and slide.notes_slide.notes_text_frame is not None:
            notes = slide.notes_slide.notes_text_frame.text.strip()
            if notes:
                lines.append(f"Notes: {notes}")
        text = _clean("\n".join(lines))
        if text:
            title = title or heading
            sections.append(Section(text=text, section=heading or f"Slide {number}", page=number))
    return Parsed(title=title, sections=tuple(sections))


def _pptx_shape_lines(shape: Any) -> list[str]:
    if getattr(shape, "shapes", None) is not None:  # a group: recurse into its members
        return [line for sub in shape.shapes for line in _pptx_shape_lines(sub)]
    if getattr(shape, "has_table", False) and shape.has_table:
        return [" | ".join(_SPACES.sub(" ", c.text).strip() for c in row.cells) for row in shape.table.rows]
    if getattr(shape, "has_text_frame", False) and shape.has_text_frame:
        return [p_text for p in shape.text_frame.paragraphs if (p_text := "".join(r.text for r in p.runs).strip())]
    return []


# Rows per section of a sheet or CSV: each section repeats the header, so every chunk reads on its own.
_ROWS_PER_SECTION = 50


def _rows_as_sections(rows: list[list[str]], section: str) -> list[Section]:
    """Table rows as ``header: value`` lines, the first non-empty row being the header."""
    lines = _row_lines(rows)
    if not lines:
        return []
    return [
        Section(text="\n".join(lines[i : i + _ROWS_PER_SECTION]), section=section)
        for i in range(0, len(lines), _ROWS_PER_SECTION)
    ]


def parse_xlsx(data: bytes) -> Parsed:
    """XLSX via openpyxl (read-only, cached values): each sheet's rows as ``header: value`` text."""
    from openpyxl import load_workbook

    try:
        book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as e:  # openpyxl raises zipfile/KeyError/InvalidFileException on bad packages
        raise ParseError(f"unreadable XLSX: {type(e).__name__}: {e}") from e
    try:
        title = (book.properties.title or "").strip()
        sections: list[Section] = []
        for sheet in book.worksheets:
            rows = [["" if v is None else str(v) for v in row] for row in sheet.iter_rows(values_only=True)]
            sections.extend(_rows_as_sections(rows, sheet.title))
    finally:
        book.close()
    return Parsed(title=title, sections=tuple(sections))


def parse_csv(data: bytes) -> Parsed:
    """CSV (delimiter sniffed, encoding detected): rows as ``header: value`` text."""
    import csv

    text, warnings = decode_text_noted(data)
    try:
        dialect: Any = csv.Sniffer().sniff(text[:8192], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    try:
        rows = list(csv.reader(io.StringIO(text), dialect))
    except csv.Error as e:
        raise ParseError(f"malformed CSV: {e}") from e
    return Parsed(title="", sections=tuple(_rows_as_sections(rows, "")), warnings=warnings)


def parse_hwp(data: bytes) -> Parsed:
    """HWP 5.0 and HWPX: ``ingest.hwp`` (imported on use; it builds on this module)."""
    from ingest.hwp import parse_hwp as parse

    return parse(data)


def parse_image(data: bytes, ocr: OcrOptions | None = None) -> Parsed:
    """PNG, JPEG or TIFF (every page) read by OCR (``ingest.ocr``): one section per page.

    Raises:
        NeedsOcr: OCR is off or Tesseract is not installed.
        ParseError: a damaged or oversized image, or Tesseract failed.
    """
    try:
        pages = image_pages(data, ocr or OcrOptions(mode="off"))
    except OcrUnavailable as e:
        raise NeedsOcr(str(e)) from None
    except OcrError as e:
        raise ParseError(str(e)) from e
    return Parsed(title="", sections=tuple(Section(text=text, page=number) for number, text in pages))


PARSERS: dict[str, Callable[[bytes], Parsed]] = {
    ".md": parse_markdown,
    ".markdown": parse_markdown,
    ".mdx": parse_mdx,
    ".txt": parse_text,
    ".text": parse_text,
    ".pdf": parse_pdf,
    ".docx": parse_docx,
    ".html": parse_html,
    ".htm": parse_html,
    ".pptx": parse_pptx,
    ".xlsx": parse_xlsx,
    ".xlsm": parse_xlsx,
    ".csv": parse_csv,
    ".tsv": parse_csv,
    ".hwp": parse_hwp,
    ".hwpx": parse_hwp,
    ".hml": parse_hwp,  # HWPML: refused with a clear reason rather than skipped as an unknown type
    ".png": parse_image,
    ".jpg": parse_image,
    ".jpeg": parse_image,
    ".tif": parse_image,
    ".tiff": parse_image,
}
# The libraries each parser imports on first use. A parser process started ahead of its first document
# imports those of the formats a listing holds meanwhile (``ingest.sandbox.Parser.expect``).
LIBRARIES: dict[str, tuple[str, ...]] = {
    ".pdf": ("pypdf",), ".docx": ("docx",), ".html": ("bs4",), ".htm": ("bs4",), ".pptx": ("pptx",),
    ".xlsx": ("openpyxl",), ".xlsm": ("openpyxl",), ".hwp": ("olefile", "unhwp"), ".hwpx": ("unhwp",),
    ".png": ("PIL.Image",), ".jpg": ("PIL.Image",), ".jpeg": ("PIL.Image",), ".tif": ("PIL.Image",),
    ".tiff": ("PIL.Image",),
}  # fmt: skip
# Parsers that read scanned pages: they also take the OCR options (``ingest.sandbox.parse_bounded`` passes them).
OCR_PARSERS: dict[str, Callable[[bytes, OcrOptions], Parsed]] = {
    ".pdf": parse_pdf, ".png": parse_image, ".jpg": parse_image, ".jpeg": parse_image, ".tif": parse_image,
    ".tiff": parse_image,
}  # fmt: skip


def parser_for(name: str) -> Callable[[bytes], Parsed] | None:
    """The parser for a file name by its extension, or None when the format is not supported."""
    return PARSERS.get(PurePosixPath(name).suffix.lower())
