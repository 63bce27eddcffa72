"""OCR of scanned PDF pages and image files (PNG, JPEG, TIFF) with Tesseract, offline, Korean and English.

Tesseract is optional at install (Debian ``tesseract-ocr`` with ``tesseract-ocr-script-hang``, the Hangul
script model that reads Korean and Latin text, and ``tesseract-ocr-kor``; ``scripts/install_ocr.sh``):
without it a file that needs OCR is skipped with the reason, and the text pages of a mixed PDF are still
ingested. Only what needs it is OCR'd: a PDF page whose text layer holds fewer than ``min_chars`` characters
and that shows an image is rendered (pypdfium2) and read; its other pages keep their text layer.

This runs inside the parser process (``ingest.sandbox``), so its limits hold here too: a decoded image or
rendered page may not exceed ``max_unpacked_mb``, Tesseract inherits the process's memory cap
(``RLIMIT_DATA``) and dies with it (``PR_SET_PDEATHSIG``) when the worker stops a parse past
``parse_timeout_s``. Tesseract is called as a command (image on stdin, text on stdout): no temporary
files, so it works on a read-only file system.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import io
import logging
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL.Image import Image

log = logging.getLogger(__name__)

INSTALL_HINT = "install tesseract-ocr and tesseract-ocr-kor (scripts/install_ocr.sh)"
# Debian packages of the traineddata whose package name is not tesseract-ocr-<lang>: the script models.
_PACKAGES = {"Hangul": "tesseract-ocr-script-hang", "Latin": "tesseract-ocr-script-latn"}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
_FORMATS = {"PNG", "JPEG", "MPO", "TIFF"}  # what Pillow calls the formats we accept (MPO: JPEG from cameras)
_MiB = 1024 * 1024
_INK = re.compile(r"\S")
# Tesseract's page segmentation. 4 (one column of text of varying sizes) rather than 3 (automatic layout):
# with kor+eng, 3 drops whole Korean lines as non-text ("Empty page!!" for a page of one Hangul line) and
# 4 reads them (benchmarks/ocr.py compares the two).
PSM = 4


class OcrError(Exception):
    """A page or image could not be read (damaged, too large, Tesseract failed); the message says why."""


class OcrUnavailable(OcrError):
    """A file needs OCR, which is switched off or not installed (``ingest.formats.NeedsOcr`` tells the worker)."""


@dataclass(frozen=True)
class OcrOptions:
    """How scanned pages and images are read; see ``IngestSettings`` (``ocr``, ``ocr_*``)."""

    mode: str = "auto"  # auto: when Tesseract is installed; off: never
    languages: str = "Hangul"
    dpi: int = 300
    min_chars: int = 20
    max_pixels_mb: float = 256.0  # max_unpacked_mb: most bytes one decoded image or rendered page may take
    timeout_s: float = 300.0  # parse_timeout_s: the most one Tesseract call may run
    psm: int = PSM  # Tesseract's page segmentation mode (not a setting: the benchmark's knob)


def unavailable(options: OcrOptions) -> str | None:
    """Why OCR cannot run with these options (a reason naming the fix), or None when it can."""
    if options.mode == "off":
        return "needs OCR, which is switched off (ocr=off)"
    missing_modules = [m for m in ("PIL", "pypdfium2") if importlib.util.find_spec(m) is None]
    if missing_modules:
        return f"needs OCR: install the ocr extra (pip install 'onprem-rag[ocr]'; {', '.join(missing_modules)} missing)"
    exe = shutil.which("tesseract")
    if exe is None:
        return f"needs OCR: {INSTALL_HINT}"
    installed = _languages(exe)
    missing = [lang for lang in options.languages.split("+") if lang not in installed]
    if missing:
        packages = " ".join(_PACKAGES.get(lang, f"tesseract-ocr-{lang.lower().replace('_', '-')}") for lang in missing)
        return f"needs OCR in {'+'.join(missing)}, which Tesseract lacks: install {packages} (ocr_languages)"
    return None


@functools.lru_cache(maxsize=4)
def _languages(exe: str) -> frozenset[str]:
    """Languages the Tesseract at ``exe`` has data for (``--list-langs``)."""
    try:
        out = subprocess.run([exe, "--list-langs"], capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.SubprocessError) as e:
        log.warning("tesseract --list-langs failed: %s", e)
        return frozenset()
    # The first line names the data folder; then one language per line.
    return frozenset(line.strip() for line in out.stdout.splitlines()[1:] if line.strip())


def _die_with_parent() -> None:  # pragma: no cover - runs in the forked child before exec
    """Tesseract is killed when the parser process is (a parse stopped past parse_timeout_s)."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG


def read_image(image: Image, options: OcrOptions, *, dpi: int | None = None) -> str:
    """Text of one picture, by Tesseract in ``options.languages``; lines kept, runs of blank lines collapsed.

    Raises:
        OcrError: Tesseract failed, ran past ``timeout_s`` or was killed (memory cap).
    """
    exe = shutil.which("tesseract")
    if exe is None:
        raise OcrUnavailable(f"needs OCR: {INSTALL_HINT}")
    buf = io.BytesIO()
    _plain(image).save(buf, format="PNG", compress_level=1)
    # Without preserve_interword_spaces Tesseract spaces out Hangul syllables ("금 융 위원회"), which breaks
    # Korean word tokens (BM25); with it, the spaces it keeps are the page's own (runs collapsed below).
    cmd = [
        exe,
        "stdin",
        "stdout",
        "-l",
        options.languages,
        "--psm",
        str(options.psm),
        "-c",
        "preserve_interword_spaces=1",
    ]
    if dpi:
        cmd += ["--dpi", str(dpi)]
    try:
        done = subprocess.run(
            cmd, input=buf.getvalue(), capture_output=True, timeout=options.timeout_s, check=False,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise OcrError(f"OCR took longer than the {options.timeout_s:g} s limit (parse_timeout_s)") from None
    except OSError as e:
        raise OcrError(f"cannot run tesseract: {e}") from e
    if done.returncode != 0:
        detail = done.stderr.decode("utf-8", errors="replace").strip().splitlines()
        why = detail[-1] if detail else f"exit status {done.returncode}"
        if done.returncode < 0:
            why = f"killed by signal {-done.returncode} (memory cap parse_memory_mb?)"
        raise OcrError(f"OCR failed: tesseract: {why}")
    text = done.stdout.decode("utf-8", errors="replace").replace("\f", "\n")
    lines = [re.sub(r"[ \t]{2,}", " ", line).strip() for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _plain(image: Image) -> Image:
    """A greyscale or RGB copy Tesseract reads well: transparency put on white, palettes and 16-bit undone."""
    from PIL import Image as PILImage

    if image.mode in ("1", "L", "RGB"):
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = PILImage.new("RGBA", rgba.size, (255, 255, 255, 255))
        return PILImage.alpha_composite(white, rgba).convert("RGB")
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        return image.point(lambda v: v / 256).convert("L")  # type: ignore[no-untyped-call]
    return image.convert("RGB")


def _check_size(width: int, height: int, bands: int, options: OcrOptions, what: str) -> None:
    size = width * height * max(bands, 1)
    if size > options.max_pixels_mb * _MiB:
        raise OcrError(
            f"{what} is {width}x{height} pixels ({size / _MiB:.0f} MiB decoded), above the "
            f"{options.max_pixels_mb:g} MiB limit (max_unpacked_mb)"
        )


def _frames(data: bytes, options: OcrOptions) -> Iterator[Image]:
    """Each frame (TIFF page) of an image file, decoded, its size checked before it is decoded."""
    from PIL import Image as PILImage
    from PIL import ImageSequence, UnidentifiedImageError

    try:
        with _own_size_check():
            image = PILImage.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise OcrError("unreadable image: not a PNG, JPEG or TIFF file Pillow recognises") from None
    except (OSError, ValueError, SyntaxError, PILImage.DecompressionBombError) as e:
        raise OcrError(f"unreadable image: {type(e).__name__}: {e}") from e
    if image.format not in _FORMATS:
        raise OcrError(f"unsupported image format {image.format} (PNG, JPEG and TIFF are read)")
    for number, frame in enumerate(ImageSequence.Iterator(image), start=1):
        _check_size(frame.width, frame.height, len(frame.getbands()), options, f"image page {number}")
        try:
            frame.load()
        except (OSError, ValueError, SyntaxError, EOFError) as e:
            raise OcrError(f"unreadable image (page {number}): {type(e).__name__}: {e}") from e
        yield frame


@contextlib.contextmanager
def _own_size_check() -> Iterator[None]:
    """Pillow's pixel limit off while a file is opened: sizes are checked against max_unpacked_mb instead."""
    from PIL import Image as PILImage

    saved = PILImage.MAX_IMAGE_PIXELS
    PILImage.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        PILImage.MAX_IMAGE_PIXELS = saved


def _image_dpi(image: Image) -> int | None:
    """The resolution a file declares, when it is plausible for a scan (Tesseract otherwise guesses)."""
    dpi = image.info.get("dpi")
    try:
        value = round(float(dpi[0])) if dpi else 0
    except (TypeError, ValueError, IndexError):
        return None
    return value if 70 <= value <= 2400 else None


def image_pages(data: bytes, options: OcrOptions) -> list[tuple[int, str]]:
    """The text of each page (frame) of an image file (PNG, JPEG, TIFF), numbered from 1; empty pages left out.

    Raises:
        OcrUnavailable: OCR is off or Tesseract (or a language) is not installed.
        OcrError: the image is damaged, too large (max_unpacked_mb), or Tesseract failed.
    """
    frames = _frames(data, options)
    first = next(frames, None)  # decoded before the availability check: a damaged file is a failure either way
    if first is None:
        raise OcrError("image has no pages")
    reason = unavailable(options)
    if reason is not None:
        raise OcrUnavailable(f"image file {reason}")
    pages = []
    for number, frame in _numbered(first, frames):
        text = read_image(frame, options, dpi=_image_dpi(frame))
        if text:
            pages.append((number, text))
    return pages


def _numbered(first: Image, rest: Iterator[Image]) -> Iterator[tuple[int, Image]]:
    """Page numbers from 1 for the first frame, already decoded, and the rest."""
    yield 1, first
    yield from enumerate(rest, start=2)


def ink(text: str) -> int:
    """Characters of a text that are not whitespace (how much a page's text layer holds)."""
    return len(_INK.findall(text))


def read_pdf_pages(data: bytes, pages: Sequence[int], options: OcrOptions) -> tuple[dict[int, str], list[int]]:
    """OCR of the given 1-based pages of a PDF that show an image; returns (text by page, pages with an image).

    A page without any image is left out of both (nothing to read: a blank or vector-only page).
    A page too large to render at ``dpi`` within ``max_unpacked_mb`` is rendered at the resolution that fits.

    Raises:
        OcrError: pdfium cannot open the file, or Tesseract failed.
    """
    import pypdfium2 as pdfium
    import pypdfium2.raw as pdfium_c

    try:
        pdf = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as e:
        raise OcrError(f"cannot render the PDF for OCR: {e}") from e
    texts: dict[int, str] = {}
    imaged: list[int] = []
    can_read = unavailable(options) is None
    try:
        for number in pages:
            page = pdf[number - 1]
            try:
                if not any(True for _ in page.get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_IMAGE], max_depth=3)):
                    continue
                imaged.append(number)
                if not can_read:
                    continue
                width, height = page.get_size()  # points, 1/72 inch
                scale = options.dpi / 72
                fit = (options.max_pixels_mb * _MiB / max(width * height, 1.0)) ** 0.5
                if fit < scale:
                    log.warning("page %d rendered at %.0f dpi to fit max_unpacked_mb", number, fit * 72)
                    scale = fit
                bitmap = page.render(scale=scale, grayscale=True)
                try:
                    image = bitmap.to_pil()
                    texts[number] = read_image(image, options, dpi=round(scale * 72))
                finally:
                    bitmap.close()
            finally:
                page.close()
    finally:
        pdf.close()
    return texts, imaged


def ocr_pdf(data: bytes, texts: dict[int, str], options: OcrOptions) -> tuple[dict[int, str], tuple[str, ...]]:
    """A PDF's text by page with its scanned pages OCR'd, and warnings naming pages that could not be read.

    Raises:
        OcrUnavailable: no page has text of its own and the scanned ones cannot be read (OCR off or missing).
        OcrError: rendering or Tesseract failed.
    """
    scanned = [number for number, text in texts.items() if ink(text) < options.min_chars]
    if not scanned:
        return texts, ()
    read, imaged = read_pdf_pages(data, scanned, options)
    reason = unavailable(options) if len(read) < len(imaged) else None
    if reason is not None and not any(text for number, text in texts.items() if number not in imaged):
        raise OcrUnavailable(f"PDF has no text layer ({pages_phrase(imaged)} scanned): {reason}")
    out = dict(texts)
    for number, text in read.items():
        # OCR reads the page's few layer characters too; keep the layer where OCR found less.
        if ink(text) >= ink(texts[number]):
            out[number] = text
    if read:
        log.info("OCR read %s", pages_phrase(sorted(read)))
    if reason is not None:
        return out, (f"{pages_phrase(imaged)} not read: scanned, and the file {reason}",)
    return out, ()


def pages_phrase(pages: Sequence[int]) -> str:
    """'page 3' or 'pages 2, 5, 7' (the first 20, then a count)."""
    shown = ", ".join(str(p) for p in pages[:20])
    more = f" and {len(pages) - 20} more" if len(pages) > 20 else ""
    return f"page{'s' if len(pages) > 1 else ''} {shown}{more}"
