"""Write a corpus of deliberately broken (and a few awkward but good) documents into a folder.

Generated at test time, never committed: binaries in git rot, and a symlink loop, a FIFO or a
chmod-000 file cannot be committed anyway. Next to the files it writes ``manifest.json`` (outside
the corpus folder) mapping each file's relative path to what ingestion must report for it:

    {"path": {"outcome": "failed" | "skipped" | "warning" | "ok", "reason": "regex the reason matches"}}

Usage: python scripts/make_broken_docs.py DIR [--large-mb 0.6]

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
import zipfile
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
