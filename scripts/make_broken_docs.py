"""Write a corpus of deliberately broken (and a few awkward but good) documents into a folder.

Generated at test time, never committed: binaries in git rot, and a symlink loop, a FIFO or a
chmod-000 file cannot be committed anyway. Next to the files it writes ``manifest.json`` (outside
the corpus folder) mapping each file's relative path to what ingestion must report for it:

    {"path": {"outcome": "failed" | "skipped" | "warning" | "ok", "reason": "regex the reason matches"}}

Usage: python scripts/make_broken_docs.py DIR [--large-mb 0.6]

Its builders of hostile files (``bomb_docx``, ``xml_docx``, ``lying_docx``, ``stream_pdf``) also serve the
parse-limit tests and ``benchmarks/parse_limits.py`` at sizes of their own.

About unreadable files: a chmod-000 file is unreadable only for a non-root user; root bypasses
permission bits. Its outcome is therefore "failed" with "Permission denied" for a non-root
ingest and "ok" for root (the manifest records both). A named pipe (FIFO) is refused as "not a
regular file" for any user, which is the unreadable case that also holds under root.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import struct
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

GOOD_TEXT = "Backups run nightly at 02:00 and are kept for thirty days. " * 12


def _pdf(text: str) -> bytes:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=11)
    pdf.multi_cell(0, 6, text)
    return bytes(pdf.output())


def _encrypted_pdf(text: str) -> bytes:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    for page in PdfReader(io.BytesIO(_pdf(text))).pages:
        writer.add_page(page)
    writer.encrypt("secret", algorithm="AES-128")
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()


def _junk_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("junk.bin", os.urandom(2048))
        z.writestr("word/nothing.txt", "this is no word document")
    return buf.getvalue()


def _pptx() -> bytes:
    from pptx import Presentation

    deck = Presentation()
    slide = deck.slides.add_slide(deck.slide_layouts[1])
    slide.shapes.title.text = "Backup schedule"
    slide.placeholders[1].text = GOOD_TEXT
    buf = io.BytesIO()
    deck.save(buf)
    return buf.getvalue()


def _xlsx() -> bytes:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.title = "Quotas"
    sheet.append(["team", "gpu hours", "storage TB"])
    sheet.append(["vision", 1200, 40])
    sheet.append(["nlp", 900, 25])
    buf = io.BytesIO()
    book.save(buf)
    return buf.getvalue()


MiB = 1024 * 1024
_DOCX_PARAGRAPH = b"<w:p><w:r><w:t>Backups run nightly at 02:00 and are kept for thirty days.</w:t></w:r></w:p>"


def _deflated(parts: list[tuple[bytes, int]]) -> tuple[bytes, int, int]:
    """Raw deflate data, CRC-32 and size of the parts, each repeated its count of times.

    Cheap at any size: after a full flush the compressor's output for a part depends on that part alone,
    so each part is compressed once and its output repeated.
    """
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    out: list[bytes] = []
    crc = size = 0
    for part, count in parts:
        out.append((compressor.compress(part) + compressor.flush(zlib.Z_FULL_FLUSH)) * count)
        for _ in range(count):
            crc = zlib.crc32(part, crc)
        size += len(part) * count
    out.append(compressor.flush())
    return b"".join(out), crc, size


def _zip(members: list[tuple[str, bytes, int, int]]) -> bytes:
    """A zip of raw deflate members (name, data, CRC, declared size), written by hand so that a member can
    be huge without being compressed for real, or declare less than it holds."""
    body = io.BytesIO()
    central = []
    for name, data, crc, declared in members:
        offset, encoded = body.tell(), name.encode()
        # version 2.0, no flags, deflate, 1980-01-01 00:00
        body.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0x21, crc, len(data), declared,
                               len(encoded), 0) + encoded + data)  # fmt: skip
        central.append(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0x21, crc, len(data),
                                   declared, len(encoded), 0, 0, 0, 0, 0, offset) + encoded)  # fmt: skip
    directory, start = b"".join(central), body.tell()
    body.write(directory + struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(directory),
                                       start, 0))  # fmt: skip
    return body.getvalue()


def _docx_members() -> dict[str, bytes]:
    import docx

    document = docx.Document()
    document.add_paragraph(GOOD_TEXT)
    buf = io.BytesIO()
    document.save(buf)
    with zipfile.ZipFile(buf) as z:
        return {name: z.read(name) for name in z.namelist()}


def _docx_with(replace: dict[str, tuple[bytes, int, int, int]]) -> bytes:
    """A real DOCX whose members named in ``replace`` are (raw deflate, CRC, size, declared size) instead."""
    members = []
    for name, data in _docx_members().items():
        if name in replace:
            raw, crc, _, declared = replace.pop(name)
        else:
            raw, crc, declared = *_deflated([(data, 1)])[:2], len(data)
        members.append((name, raw, crc, declared))
    members += [(name, raw, crc, declared) for name, (raw, crc, _, declared) in replace.items()]
    return _zip(members)


def bomb_docx(member_mb: int) -> bytes:
    """A good DOCX whose document refers to an image part of ``member_mb`` MiB of zeros (about 1 KiB per MiB in
    the file), so a library opening the package reads the part."""
    raw, crc, size = _deflated([(bytes(MiB), member_mb)])
    members = _docx_members()
    rels = members["word/_rels/document.xml.rels"].replace(
        b"</Relationships>",
        b'<Relationship Id="rIdBomb" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/'
        b'image" Target="media/image1.png"/></Relationships>',
    )
    types = members["[Content_Types].xml"]
    if b'Extension="png"' not in types:
        types = types.replace(b"</Types>", b'<Default Extension="png" ContentType="image/png"/></Types>')
    replace = {name: (*_deflated([(data, 1)])[:2], len(data), len(data))
               for name, data in (("word/_rels/document.xml.rels", rels), ("[Content_Types].xml", types))}  # fmt: skip
    return _docx_with(replace | {"word/media/image1.png": (raw, crc, size, size)})


def xml_docx(xml_mb: int, *, varied: bool = False) -> bytes:
    """A DOCX whose document.xml holds ``xml_mb`` MiB of paragraphs: repeated (about 300:1 in the file), or
    numbered with varied words (``varied``: about 10:1, so under a compression-ratio check)."""
    members = _docx_members()
    xml = members["word/document.xml"]
    at = xml.index(b"<w:body>") + len(b"<w:body>")
    if varied:
        words = [w.encode() for w in GOOD_TEXT.split()]
        paragraphs, i, total = [], 0, 0
        while total < xml_mb * MiB:
            text = b" ".join(words[(i * 7 + k * 3) % len(words)] for k in range(12)) + b" %d" % i
            paragraphs.append(b"<w:p><w:r><w:t>" + text + b"</w:t></w:r></w:p>")
            total += len(paragraphs[-1])
            i += 1
        raw, crc, size = _deflated([(xml[:at] + b"".join(paragraphs) + xml[at:], 1)])
    else:
        block = _DOCX_PARAGRAPH * (MiB // len(_DOCX_PARAGRAPH))  # just under 1 MiB of whole paragraphs
        raw, crc, size = _deflated([(xml[:at], 1), (block, xml_mb), (xml[at:], 1)])
    return _docx_with({"word/document.xml": (raw, crc, size, size)})


def lying_docx(real_mb: int) -> bytes:
    """A DOCX whose document.xml declares 1000 bytes (with their CRC) while its data inflates to ``real_mb`` MiB."""
    members = _docx_members()
    xml = members["word/document.xml"]
    at = xml.index(b"<w:body>") + len(b"<w:body>")
    raw, _, size = _deflated([(xml[:at], 1), (_DOCX_PARAGRAPH * 1000, real_mb * MiB // (len(_DOCX_PARAGRAPH) * 1000))])
    head = (xml[:at] + _DOCX_PARAGRAPH * 100)[:1000]
    return _docx_with({"word/document.xml": (raw, zlib.crc32(head), size, 1000)})


def stream_pdf(filler_mb: float, text: str = "Backups run nightly") -> bytes:
    """A one-page PDF whose content stream shows ``text`` and then holds ``filler_mb`` MiB of spaces:
    a stream that inflates about 1000:1, and that pypdf's content parser needs seconds per MiB to read."""
    count, head, filler = int(filler_mb * 4), f"BT /F1 12 Tf 10 10 Td ({text}) Tj ET\n".encode(), b" " * (MiB // 4)
    raw = _deflated([(head, 1), (filler, count)])[0]
    adler = zlib.adler32(head)
    for _ in range(count):
        adler = zlib.adler32(filler, adler)
    stream = b"\x78\xda" + raw + struct.pack(">I", adler)  # zlib framing around the raw deflate data
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] /Resources << /Font << /F1 4 0 R >> >> "
        b"/Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream + b"\nendstream",
    ]
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    out.write(b"".join(b"%010d 00000 n \n" % o for o in offsets))
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref))
    return out.getvalue()


# --- HWP and HWPX (Hangul word processor) ---------------------------------------------------------------------------
# Real documents written by python-hwpx (HWPX, and HWP 5 through its HWP 5 writer); the broken ones are these with
# one part changed. The builders also serve tests/ingest/test_hwp.py.

HWP_TABLE = [["항목", "값", "단위"], ["온도", "25", "°C"], ["압력", "101", "kPa"]]


def hwpx_report(table: list[list[str]] | None = None) -> bytes:
    """An HWPX report: two outline headings (levels 1 and 2), body text, a footnote, a table and a text box."""
    from hwpx import HwpxDocument

    doc = HwpxDocument.new()
    doc.add_heading("연구 개요", level=1)
    doc.add_paragraph("본 보고서는 2026년 백업 정책의 성과를 정리한다.", inherit_style=False)
    anchor = doc.add_paragraph("백업은 매일 밤 2시에 실행된다.", inherit_style=False)
    doc.notes.add_footnote("각주: 보관 기간은 30일이다.", paragraph=anchor)
    doc.add_heading("측정 결과", level=2)
    rows = table or HWP_TABLE
    grid = doc.add_table(len(rows), len(rows[0]))
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            grid.set_cell_text(r, c, value)
    holder = doc.add_paragraph("글상자 앞 문단", inherit_style=False)
    holder.add_rectangle(width=8000, height=3000).set_draw_text("글상자 안의 메모")
    doc.add_heading("결론", level=1)
    doc.add_paragraph("결론 문단이다.", inherit_style=False)
    buf = io.BytesIO()
    doc.save_to_stream(buf)
    return buf.getvalue()


def hwp_report() -> bytes:
    """The same report as HWP 5.0 (python-hwpx's HWP 5 writer)."""
    import tempfile

    from hwpx import HwpxDocument

    with tempfile.TemporaryDirectory() as tmp:
        source, target = Path(tmp, "report.hwpx"), Path(tmp, "report.hwp")
        source.write_bytes(hwpx_report())
        HwpxDocument.open(source).save_to_path(target)
        return target.read_bytes()


def _hwp_streams(data: bytes) -> list[tuple[str, bytes]]:
    import olefile

    with olefile.OleFileIO(io.BytesIO(data)) as ole:
        return [("/".join(path), ole.openstream(path).read()) for path in ole.listdir(streams=True, storages=False)]


def hwp_with(data: bytes, replace: dict[str, bytes]) -> bytes:
    """An HWP 5 file with the named streams replaced (the compound file rebuilt)."""
    from hwpx.hwp5.cfb import build_compound_file

    return build_compound_file([(name, replace.get(name, body)) for name, body in _hwp_streams(data)])


def hwp_flagged(data: bytes, bit: int) -> bytes:
    """An HWP 5 file with one more FileHeader property bit set (2: distribution document, 1: password)."""
    header = bytearray(dict(_hwp_streams(data))["FileHeader"])
    struct.pack_into("<I", header, 36, struct.unpack_from("<I", header, 36)[0] | 1 << bit)
    return hwp_with(data, {"FileHeader": bytes(header)})


def hwpx_encrypted(data: bytes) -> bytes:
    """An HWPX package whose manifest lists its section as encrypted (ODF encryption-data, as Hangul writes for a
    password or a distribution document), the section's bytes scrambled."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            body = src.read(info)
            if info.filename == "META-INF/manifest.xml":
                body = (
                    b'<?xml version="1.0" encoding="UTF-8"?><odf:manifest xmlns:odf="urn:oasis:names:tc:opendocument:'
                    b'xmlns:manifest:1.0"><odf:file-entry full-path="Contents/section0.xml" media-type="application/'
                    b'xml" size="%d"><odf:encryption-data checksum-type="urn:oasis:names:tc:opendocument:xmlns:'
                    b'manifest:1.0#sha256-1k" checksum="AAAA"><odf:algorithm algorithm-name="http://www.w3.org/2001/'
                    b'04/xmlenc#aes256-cbc" initialisation-vector="AAAA"/><odf:key-derivation key-derivation-name="'
                    b'urn:oasis:names:tc:opendocument:xmlns:manifest:1.0#pbkdf2" key-size="32" iteration-count="1024" '
                    b'salt="AAAA"/></odf:encryption-data></odf:file-entry></odf:manifest>' % len(body)
                )
            elif info.filename == "Contents/section0.xml":
                body = os.urandom(len(body))
            dst.writestr(info, body)
    return out.getvalue()


def bomb_hwp(section_mb: int) -> bytes:
    """An HWP 5 file whose body section is ``section_mb`` MiB of zeros deflated (about 1 KiB per MiB in the file)."""
    return hwp_with(hwp_report(), {"BodyText/Section0": _deflated([(bytes(MiB), section_mb)])[0]})


def _put_hwp(put: Callable[[str, bytes, str, str], Path]) -> None:
    """The HWP and HWPX files of the corpus."""
    hwp, hwpx = hwp_report(), hwpx_report()
    put("report.hwp", hwp, "ok", "")
    put("report.hwpx", hwpx, "ok", "")
    put("truncated.hwp", hwp[: len(hwp) // 2], "failed", "unreadable HWP")
    garbled = os.urandom(len(dict(_hwp_streams(hwp))["BodyText/Section0"]))
    put("garbled-body.hwp", hwp_with(hwp, {"BodyText/Section0": garbled}), "failed",
        r"damaged HWP stream|unreadable HWP")  # fmt: skip
    put("truncated.hwpx", hwpx[: len(hwpx) // 2], "failed", "unreadable HWPX")
    put("not-hwp.hwp", b"HWP? no: plain bytes " * 40, "failed", "not an HWP document")
    put("distribution.hwp", hwp_flagged(hwp, 2), "failed", r"protected document \(distribution document")
    put("password.hwp", hwp_flagged(hwp, 1), "failed", r"protected document \(password-protected")
    put("encrypted.hwpx", hwpx_encrypted(hwpx), "failed", r"protected document \(encrypted HWPX")
    put("hangul97.hwp", b"HWP Document File V3.00 \x1a\x01\x02\x03\x04\x05" + bytes(2048), "failed",
        "unsupported format: HWP 3")  # fmt: skip
    put("old.hml", b'<?xml version="1.0" encoding="UTF-8"?><HWPML Version="2.8"><BODY/></HWPML>', "failed",
        "unsupported format: HWPML")  # fmt: skip
    put("bomb.hwp", bomb_hwp(200), "failed", r"HWP stream BodyText/Section0 inflates \d+:1 .*max_zip_ratio")


def _png(width: int, height: int, rows: int | None = None) -> bytes:
    """A white 8-bit greyscale PNG written by hand; ``rows`` below ``height`` gives a file whose header declares
    more than its data holds (a pixel bomb: 60000x60000 declared, a few bytes on disk)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    pixels = zlib.compress((b"\x00" + b"\xff" * width) * (height if rows is None else rows))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def make(root: Path, large_mb: float = 0.6) -> dict[str, dict[str, str]]:
    """Write the corpus into ``root`` (created); returns the manifest."""
    root.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, dict[str, str]] = {}

    def put(name: str, data: bytes, outcome: str, reason: str = "") -> Path:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        manifest[name] = {"outcome": outcome, "reason": reason}
        return path

    pdf = _pdf(GOOD_TEXT)
    put("truncated.pdf", pdf[: len(pdf) // 2], "failed", "truncated PDF")
    put("encrypted.pdf", _encrypted_pdf(GOOD_TEXT), "failed", "encrypted PDF")
    put("empty.txt", b"", "skipped", r"empty file \(0 bytes\)")
    put("whitespace.md", b"  \n\n \t\n", "failed", "no text found")
    put("binary.txt", os.urandom(4096) + b"\x00" * 16, "failed", "binary content")
    put("binary.md", bytes(range(256)) * 8, "failed", "binary content")
    korean = "백업은 매일 밤 2시에 실행됩니다. 보관 기간은 30일입니다."
    put(
        "invalid-utf8.md",
        f"# Backups\n\n{GOOD_TEXT}\n{korean}\n".encode() + b"broken \xff\xfe byte\n",
        "warning",
        "invalid UTF-8",
    )
    put(
        "mixed-encodings.txt",
        f"Backups 백업\n\n{GOOD_TEXT}\n".encode() + f"{korean}\n".encode("cp949"),
        "warning",
        "mixed encodings",
    )
    put("too-large.txt", (GOOD_TEXT + "\n").encode() * int(large_mb * 1024 * 1024 / len(GOOD_TEXT) + 1),
        "failed", "above the .* MiB limit")  # fmt: skip
    put("junk.docx", _junk_zip(), "failed", "unreadable DOCX")
    put("junk.pptx", _junk_zip(), "failed", "unreadable PPTX")
    put("junk.xlsx", b"PK\x03\x04 not a zip at all", "failed", "unreadable XLSX")
    # Hostile packages and streams (each under 0.5 MiB on disk): refused before, or while, the library inflates them.
    put("bomb.docx", bomb_docx(200), "failed", r"image1\.png inflates \d+:1 .*max_zip_ratio")
    put("huge-xml.docx", xml_docx(100), "failed", r"document\.xml inflates \d+:1 .*max_zip_ratio")
    put("lying-header.docx", lying_docx(64), "failed", r"document\.xml: .*more than the 1000 bytes its header declares")
    put("bomb.pdf", stream_pdf(300), "failed", r"PDF stream above a parsing limit \(max_unpacked_mb")
    # Images (read by OCR): damaged or oversized ones fail with the reason, whether Tesseract is installed or not.
    png = _png(64, 16)
    put("truncated.png", png[:-24], "failed", r"unreadable image \(page 1\)")
    put("not-a-photo.jpg", b"\xff\xd8\xff\xe0 this is no JPEG" + os.urandom(512), "failed", "unreadable image")
    put("pixel-bomb.png", _png(60_000, 60_000, rows=1), "failed", r"60000x60000 pixels .*\(max_unpacked_mb\)")
    # Awkward but good: these must be ingested.
    put("space name 한국어 📄.md", f"# 이름이 이상한 문서\n\n{GOOD_TEXT}\n".encode(), "ok")
    put("new\nline.md", f"# Newline in the name\n\n{GOOD_TEXT}\n".encode(), "ok")
    put("slides.pptx", _pptx(), "ok")
    put("quotas.xlsx", _xlsx(), "ok")
    put("quotas.csv", b"team;gpu hours\nvision;1200\nnlp;900\n", "ok")
    put("good.pdf", pdf, "ok")
    put("good.md", f"# Backups\n\n{GOOD_TEXT}\n".encode(), "ok")
    # Hidden entries are reported, a folder once; a link to a file inside the corpus is read (under the
    # target's ACL).
    put(".draft.md", f"# Draft\n\n{GOOD_TEXT}\n".encode(), "skipped", "hidden file")
    (root / ".cache").mkdir(exist_ok=True)
    (root / ".cache" / "a.md").write_bytes(f"# Cached\n\n{GOOD_TEXT}\n".encode())
    manifest[".cache/"] = {"outcome": "skipped", "reason": "hidden folder"}
    os.symlink("good.md", root / "alias.md")
    manifest["alias.md"] = {"outcome": "ok", "reason": ""}
    # Links: a loop between two names, and a folder linking to its parent (never followed).
    os.symlink("loop-b.md", root / "loop-a.md")
    os.symlink("loop-a.md", root / "loop-b.md")
    manifest["loop-a.md"] = manifest["loop-b.md"] = {"outcome": "failed", "reason": "symbolic link loop"}
    (root / "sub").mkdir(exist_ok=True)
    os.symlink("..", root / "sub" / "up")
    manifest["sub/up"] = {"outcome": "skipped", "reason": "symbolic link to a folder"}
    # Unreadable: a FIFO (for anyone) and a chmod-000 file (for non-root only; see the module doc).
    os.mkfifo(root / "pipe.txt")
    manifest["pipe.txt"] = {"outcome": "failed", "reason": r"not a regular file \(named pipe\)"}
    locked = put("locked.md", f"# Locked\n\n{GOOD_TEXT}\n".encode(), "failed", "Permission denied")
    locked.chmod(0)
    manifest["locked.md"]["root_outcome"] = "ok"
    _put_hwp(put)
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dir", type=Path)
    parser.add_argument("--large-mb", type=float, default=0.6, help="size of the too-large file, MiB")
    args = parser.parse_args()
    manifest = make(args.dir, args.large_mb)
    out = args.dir.parent / f"{args.dir.name}.manifest.json"
    out.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {len(manifest)} files into {args.dir}, manifest {out}")


if __name__ == "__main__":
    main()
