"""OCR of scanned PDF pages and image files with the real Tesseract (scripts/install_ocr.sh installs it).

Pages are rendered at test time with Pillow and the Nanum fonts; a wrapper ``tesseract`` put first on PATH
logs every call and then runs the real one, so the tests count OCR calls in real processes.
"""

from __future__ import annotations

import io
import os
import shutil
import stat
from difflib import SequenceMatcher
from pathlib import Path

import pytest
from fpdf import FPDF
from PIL import Image, ImageDraw, ImageFont

from ingest.formats import NeedsOcr, ParseError
from ingest.ocr import OcrOptions
from ingest.sandbox import ParseLimits, parse_bounded
from ingest.worker import ingest_source
from rag.config import RetrievalSettings, Settings
from rag.embedders.hashing import HashingEmbedder
from rag.lang import hangul_ratio
from rag.retrieval import Retriever
from rag.stores.memory import MemoryStore

FONT = Path("/usr/share/fonts/truetype/nanum/NanumGothic.ttf")
LATIN = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
HINT = "install tesseract-ocr and tesseract-ocr-kor (scripts/install_ocr.sh)"
KOREAN = "연구소의 장비 예약은 매주 월요일 오전에 마감됩니다."
ENGLISH = "The cryogenic freezer is serviced every March."
TEXT_PAGE = "This page has a real text layer about the quarterly budget review of the institute."


def render(*lines: str, size: tuple[int, int] = (2480, 700)) -> Image.Image:
    """A white 300-dpi page strip with the lines at about 12 pt: Korean in NanumGothic, English in DejaVu Sans."""
    assert FONT.exists(), f"{FONT} missing: run scripts/install_ocr.sh (fonts-nanum)"
    image = Image.new("L", size, 255)
    draw = ImageDraw.Draw(image)
    korean, latin = ImageFont.truetype(str(FONT), 50), ImageFont.truetype(str(LATIN), 46)
    for i, line in enumerate(lines):
        draw.text((150, 150 + i * 90), line, font=korean if hangul_ratio(line) else latin, fill=0)
    return image


def encoded(image: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, dpi=(300, 300), **kw)
    return buf.getvalue()


def pdf_of(*pages: str | Image.Image) -> bytes:
    """A PDF with one page per item: text (a text layer) or an image (a scanned page, no text layer)."""
    pdf = FPDF()
    for page in pages:
        pdf.add_page()
        if isinstance(page, str):
            pdf.set_font("helvetica", size=12)
            pdf.multi_cell(0, 7, page)
        else:
            pdf.image(io.BytesIO(encoded(page, "PNG")), x=0, y=20, w=210)
    return bytes(pdf.output())


def squeeze(text: str) -> str:
    return "".join(text.split())


def reads(expected: str, got: str) -> bool:
    """Whether OCR output holds the expected line, spaces aside, up to a few misread characters (10 %)."""
    want, have = squeeze(expected).casefold(), squeeze(got).casefold()
    matcher = SequenceMatcher(None, want, have, autojunk=False)
    return sum(block.size for block in matcher.get_matching_blocks()) >= 0.9 * len(want)


LIMITS = ParseLimits(256, 100, 20, 300, 1024, OcrOptions())


@pytest.fixture
def counted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A logging ``tesseract`` first on PATH (each OCR call appends a line); returns the log file."""
    real = shutil.which("tesseract")
    assert real, "tesseract missing: run scripts/install_ocr.sh"
    bin_dir, log = tmp_path / "bin", tmp_path / "ocr-calls.log"
    bin_dir.mkdir()
    wrapper = bin_dir / "tesseract"
    wrapper.write_text(f'#!/bin/sh\ncase "$1" in stdin) echo "$*" >> {log} ;; esac\nexec {real} "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    log.touch()
    return log


@pytest.fixture
def no_tesseract(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """PATH without tesseract (a bare folder): what a machine without tesseract-ocr sees."""
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


def ingest_settings(settings: Settings, **ingest: object) -> Settings:
    return settings.model_copy(update={"ingest": settings.ingest.model_copy(update=ingest)})


def test_png_is_read_in_korean_and_english() -> None:
    parsed = parse_bounded("scan.png", encoded(render(KOREAN, ENGLISH), "PNG"), LIMITS)
    (section,) = parsed.sections
    assert section.page == 1
    assert reads(KOREAN, section.text)
    assert reads(ENGLISH, section.text)


def test_jpeg_with_transparency_free_rgb_is_read() -> None:
    parsed = parse_bounded("photo.jpg", encoded(render(KOREAN).convert("RGB"), "JPEG", quality=90), LIMITS)
    assert reads(KOREAN, parsed.sections[0].text)


def test_transparent_png_is_read_on_white() -> None:
    image = render(ENGLISH).convert("LA")
    image.putalpha(image.getchannel("L").point(lambda v: 255 - v))  # ink opaque, paper transparent
    parsed = parse_bounded("logo.png", encoded(image, "PNG"), LIMITS)
    assert reads(ENGLISH, parsed.sections[0].text)


def test_multipage_tiff_gives_one_section_per_page_with_its_number(counted: Path) -> None:
    first, second = render(KOREAN), render(ENGLISH)
    buf = io.BytesIO()
    first.save(buf, "TIFF", save_all=True, append_images=[second], compression="tiff_deflate", dpi=(300, 300))
    parsed = parse_bounded("scan.tiff", buf.getvalue(), LIMITS)
    assert [s.page for s in parsed.sections] == [1, 2]
    assert reads(KOREAN, parsed.sections[0].text)
    assert reads(ENGLISH, parsed.sections[1].text)
    assert len(counted.read_text().splitlines()) == 2


def test_mixed_pdf_ocrs_only_its_scanned_page(counted: Path) -> None:
    data = pdf_of(TEXT_PAGE, render(KOREAN, ENGLISH), TEXT_PAGE + " Second text page.")
    parsed = parse_bounded("mixed.pdf", data, LIMITS)
    assert [s.page for s in parsed.sections] == [1, 2, 3]
    assert parsed.sections[0].text == TEXT_PAGE
    assert reads(KOREAN, parsed.sections[1].text)
    assert parsed.warnings == ()
    calls = counted.read_text().splitlines()
    assert len(calls) == 1, calls
    assert "-l Hangul" in calls[0] and "--dpi 300" in calls[0]


def test_pdf_page_with_only_stray_characters_is_ocrd(counted: Path) -> None:
    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("helvetica", size=8)
    pdf.cell(0, 5, "p. 7")  # a stray page number in the text layer, the page itself a scan
    pdf.image(io.BytesIO(encoded(render(KOREAN), "PNG")), x=0, y=20, w=210)
    parsed = parse_bounded("scan.pdf", bytes(pdf.output()), LIMITS)
    assert reads(KOREAN, parsed.sections[0].text)
    assert len(counted.read_text().splitlines()) == 1


def test_text_pdf_runs_no_ocr(counted: Path) -> None:
    parsed = parse_bounded("text.pdf", pdf_of(TEXT_PAGE, TEXT_PAGE), LIMITS)
    assert len(parsed.sections) == 2
    assert counted.read_text() == ""


def test_corrupt_and_oversized_images_fail_with_the_reason() -> None:
    png = encoded(render(ENGLISH), "PNG")
    with pytest.raises(ParseError, match="unreadable image"):
        parse_bounded("cut.png", png[: len(png) // 2], LIMITS)
    with pytest.raises(ParseError, match="unreadable image"):
        parse_bounded("fake.jpg", b"\xff\xd8\xff\xe0 not a jpeg at all", LIMITS)
    small = ParseLimits(1, 100, 20, 300, 1024, OcrOptions(max_pixels_mb=1))
    with pytest.raises(ParseError, match=r"above the 1 MiB limit \(max_unpacked_mb\)"):
        parse_bounded("big.png", png, small)


def test_without_tesseract_an_image_needs_ocr_with_the_install_hint(no_tesseract: None) -> None:
    with pytest.raises(NeedsOcr, match=r"needs OCR: install tesseract-ocr and tesseract-ocr-kor"):
        parse_bounded("scan.png", encoded(render(ENGLISH), "PNG"), LIMITS)


def test_missing_language_data_is_named() -> None:
    limits = ParseLimits(256, 100, 20, 300, 1024, OcrOptions(languages="kor+xyzzy"))
    with pytest.raises(NeedsOcr, match=r"xyzzy.*tesseract-ocr-xyzzy \(ocr_languages\)"):
        parse_bounded("scan.png", encoded(render(ENGLISH), "PNG"), limits)


async def test_image_only_pdf_is_ingested_by_ocr_and_searchable(
    tmp_path: Path, settings: Settings, store: MemoryStore, embedder: HashingEmbedder
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "scan.pdf").write_bytes(pdf_of(render(KOREAN, ENGLISH)))
    (docs / "notes.md").write_text("# Notes\n\nThe canteen opens at eight.\n")
    report = await ingest_source(settings, store, embedder, str(docs))
    assert report.failed == () and report.skipped == () and report.added == 2
    retriever = Retriever(store, embedder, RetrievalSettings(min_score=0.0))
    (hit, *_) = await retriever.search("장비 예약 마감", 3)
    assert hit.chunk.source.endswith("/scan.pdf") and hit.chunk.page == 1
    assert reads(KOREAN, hit.chunk.text)
    (hit, *_) = await retriever.search("cryogenic freezer serviced", 3)
    assert hit.chunk.source.endswith("/scan.pdf")


async def test_without_tesseract_files_needing_ocr_are_skipped_with_the_reason_and_the_rest_ingested(
    tmp_path: Path, settings: Settings, store: MemoryStore, embedder: HashingEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "scan.png").write_bytes(encoded(render(KOREAN), "PNG"))
    (docs / "scan.pdf").write_bytes(pdf_of(render(ENGLISH)))
    (docs / "mixed.pdf").write_bytes(pdf_of(TEXT_PAGE, render(KOREAN)))
    (docs / "notes.md").write_text("# Notes\n\nThe canteen opens at eight.\n")
    path = os.environ["PATH"]
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))

    report = await ingest_source(settings, store, embedder, str(docs))
    skipped = {Path(s).name: r for s, r in report.skipped}
    assert set(skipped) == {"scan.png", "scan.pdf"}
    assert all(HINT in r for r in skipped.values()), skipped
    assert "page 1 scanned" in skipped["scan.pdf"]
    assert report.failed == ()
    assert report.added == 2  # notes.md and the text page of mixed.pdf
    (warning,) = report.warnings
    assert warning[0].endswith("/mixed.pdf") and "page 2 not read" in warning[1] and HINT in warning[1]
    assert {c.page for c in store._opened().chunks.values() if c.source.endswith("/mixed.pdf")} == {1}

    # With tesseract back, the next run reads what was skipped (nothing of it was recorded as done).
    monkeypatch.setenv("PATH", path)
    again = await ingest_source(settings, store, embedder, str(docs))
    assert again.skipped == () and again.failed == ()
    assert again.added == 2
    assert any(reads(KOREAN, c.text) for c in store._opened().chunks.values() if "scan.png" in c.source)


async def test_ocr_off_skips_scans_with_the_setting_named(
    tmp_path: Path, settings: Settings, store: MemoryStore, embedder: HashingEmbedder, counted: Path
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "scan.png").write_bytes(encoded(render(ENGLISH), "PNG"))
    (docs / "notes.md").write_text("# Notes\n\nThe canteen opens at eight.\n")
    report = await ingest_source(ingest_settings(settings, ocr="off"), store, embedder, str(docs))
    ((source, reason),) = report.skipped
    assert source.endswith("/scan.png") and "switched off (ocr=off)" in reason
    assert report.added == 1
    assert counted.read_text() == ""


async def test_ocr_settings_reach_the_parser_process(
    tmp_path: Path, settings: Settings, store: MemoryStore, embedder: HashingEmbedder, counted: Path
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "scan.pdf").write_bytes(pdf_of(render(ENGLISH)))
    custom = ingest_settings(settings, ocr_languages="eng", ocr_dpi=200)
    report = await ingest_source(custom, store, embedder, str(docs))
    assert report.added == 1
    (call,) = counted.read_text().splitlines()
    assert "-l eng " in call and "--dpi 200" in call
