"""Parsing within limits (unpacked size, text size, time, memory), in a separate process.

A parser library meeting a hostile or pathological file can inflate gigabytes, build a tree many times
the size of its XML, or run for hours, and a Python thread can be neither stopped nor capped. So
documents are parsed by a child process that imports only the parsers (``ingest.formats``): its data
segment is capped with ``RLIMIT_DATA`` (``parse_memory_mb``), the worker kills it when a parse runs past
``parse_timeout_s``, and a child that dies (killed, crashed, out of memory) is replaced for the next
document. Inside the child, a package is checked before its library opens it (``check_package``: declared
sizes, compression ratio, then the inflated bytes counted), pypdf inflates no stream past the same limit,
and the extracted text is measured (``max_text_mb``). Every failure is a ``ParseError`` whose reason names
the setting; the worker then keeps the stored chunks of that file.

The child is kept for the run (one start, not one per document); it exits when its stdin closes, and with
its parent on Linux. When the worker has told it which files the listing holds (``expect``), the child is
started in the background as soon as the first document is parsed in the worker's own thread, importing the
libraries of the formats it will meet, so the first PDF or Office file does not wait for its start-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import pickle
import re
import signal
import struct
import sys
import threading
import traceback
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Any

from ingest.formats import LIBRARIES, OCR_PARSERS, parser_for
from ingest.hwp import check_hwp
from ingest.ocr import OcrOptions
from ingest.packages import PACKAGES, check_package
from ingest.parsed import NeedsOcr, Parsed, ParseError

if TYPE_CHECKING:
    from rag.config import IngestSettings

log = logging.getLogger(__name__)

_MiB = 1024 * 1024
# Markdown and plain text up to this size are parsed in the worker's own thread, not in the child: their
# parsers (the text decoder, markdown-it-py) are linear in the input (the worst inputs measured, such as
# 64 KiB of "![" or "[", took 2 s and a few MB), so no time or memory limit is at stake, and a round trip
# to the child per small file would cost more than the parse (HotpotQA's passages are 600 bytes each).
# HTML is parsed here only up to 16 KiB: BeautifulSoup's tree work grows with the square of the nesting
# (16 KiB of unclosed "<p>" or "<ul><li>" took 1 s and a few MB, 64 KiB took 18 s), and the child's time limit
# is what bounds a larger page.
_IN_PROCESS_MAX_BYTES = {
    ".md": 64 * 1024, ".markdown": 64 * 1024, ".mdx": 64 * 1024, ".txt": 64 * 1024, ".text": 64 * 1024,
    ".html": 16 * 1024, ".htm": 16 * 1024,
}  # fmt: skip
_REQUEST = struct.Struct("!QQ")  # name length, data length; then the name (UTF-8) and the data
_REPLY = struct.Struct("!Q")  # pickled reply length; then the reply
_READY = b"R"  # the child's first byte: limits in place, ready for requests
# A child that has not said it is ready by then is taken as unable to start (a loaded machine takes seconds).
_START_TIMEOUT_S = 120.0
# The child: the parent's own copy of the code first on sys.path, then serve() with the limits.
_BOOT = "import sys; sys.path.insert(0, sys.argv[1]); from ingest.sandbox import serve; serve(sys.argv[2:])"
_ROOT = str(Path(__file__).resolve().parents[1])
# status ("ok", "error", or "skip": OCR needed but unavailable), the Parsed or the reason, warnings logged
# meanwhile, whether to replace the child
_Reply = tuple[str, Any, list[tuple[str, int, str]], bool]


_NO_OCR = OcrOptions(mode="off")


@dataclass(frozen=True)
class ParseLimits:
    """How much one document may cost to parse, and how scanned pages are read; see ``IngestSettings``."""

    max_unpacked_mb: float
    max_zip_ratio: float
    max_text_mb: float
    parse_timeout_s: float
    parse_memory_mb: float
    ocr: OcrOptions = _NO_OCR

    @classmethod
    def from_settings(cls, cfg: IngestSettings) -> ParseLimits:
        """The limits of an ingest configuration."""
        return cls(
            max_unpacked_mb=cfg.max_unpacked_mb,
            max_zip_ratio=cfg.max_zip_ratio,
            max_text_mb=cfg.max_text_mb,
            parse_timeout_s=cfg.parse_timeout_s,
            parse_memory_mb=cfg.parse_memory_mb,
            ocr=OcrOptions(
                mode=cfg.ocr, languages=cfg.ocr_languages, dpi=cfg.ocr_dpi, min_chars=cfg.ocr_min_chars,
                max_pixels_mb=cfg.max_unpacked_mb, timeout_s=cfg.parse_timeout_s,
            ),
        )  # fmt: skip

    @classmethod
    def from_json(cls, text: str) -> ParseLimits:
        """The limits sent to the parser process as JSON (``dataclasses.asdict``)."""
        raw = json.loads(text)
        return cls(**{**raw, "ocr": OcrOptions(**raw["ocr"])})


def in_process(name: str, size: int) -> bool:
    """Whether a file is parsed in the worker's thread (small Markdown, text or HTML) rather than in the child."""
    return size <= _IN_PROCESS_MAX_BYTES.get(PurePosixPath(name).suffix.lower(), -1)


def parse_bounded(name: str, data: bytes, limits: ParseLimits) -> Parsed:
    """Run the parser for ``name`` with the limits that hold inside a process: unpacked size, text size.

    Raises:
        ParseError: unsupported, damaged or empty content, or a limit exceeded (named in the reason).
    """
    parser = parser_for(name)
    if parser is None:
        raise ParseError(f"unsupported file type: {name}")
    suffix = PurePosixPath(name).suffix.lower()
    if suffix in PACKAGES:
        check_package(data, max_unpacked_mb=limits.max_unpacked_mb, max_zip_ratio=limits.max_zip_ratio)
    elif suffix in (".hwp", ".hwpx"):
        check_hwp(data, max_unpacked_mb=limits.max_unpacked_mb, max_zip_ratio=limits.max_zip_ratio)
    with _pdf_limits(limits) if suffix == ".pdf" else contextlib.nullcontext():
        parsed = OCR_PARSERS[suffix](data, limits.ocr) if suffix in OCR_PARSERS else parser(data)
    size = sum(len(s.text) if s.text.isascii() else len(s.text.encode("utf-8")) for s in parsed.sections)
    if size > limits.max_text_mb * _MiB:
        raise ParseError(
            f"extracted text is {size / _MiB:.1f} MiB, above the {limits.max_text_mb:g} MiB limit (max_text_mb)"
        )
    return parsed


@contextlib.contextmanager
def _pdf_limits(limits: ParseLimits) -> Iterator[None]:
    """The caps pypdf puts on inflated streams and image buffers (75 MB each by default): ``max_unpacked_mb``."""
    import dataclasses

    import pypdf

    cap = int(limits.max_unpacked_mb * _MiB)
    names = (
        "maximum_declared_stream_length", "array_based_stream_maximum_output_length", "zlib_maximum_output_length",
        "lzw_maximum_output_length", "run_length_maximum_output_length", "jbig2_maximum_output_length",
        "brotli_maximum_output_length", "image_maximum_buffer_size",
    )  # fmt: skip
    known = {f.name for f in dataclasses.fields(pypdf.Configuration)}  # the set grows between pypdf releases
    configuration = pypdf.get_configuration().with_overwrites(**{name: cap for name in names if name in known})
    with pypdf.apply_configuration(configuration):
        yield


class Parser:
    """Parses documents within the limits, in a child process that is restarted when it dies or is stopped.

    One document at a time; ``close`` stops the child. Small Markdown, text and HTML files skip the child
    (``in_process``).
    """

    def __init__(self, limits: ParseLimits) -> None:
        self._limits = limits
        self._proc: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()
        self._libraries: tuple[str, ...] = ()  # what the child imports ahead (``expect``)
        self._expected = False
        self._starting: asyncio.Task[None] | None = None

    def expect(self, files: Iterable[tuple[str, int]]) -> None:
        """Name the files (name, size) a run may parse: if some need the child, ``warm`` may start it early."""
        suffixes = {PurePosixPath(name).suffix.lower() for name, size in files if not in_process(name, size)}
        suffixes = {s for s in suffixes if parser_for(f"x{s}") is not None}
        self._expected = bool(suffixes)
        self._libraries = tuple(sorted({lib for s in suffixes for lib in LIBRARIES.get(s, ())}))

    def warm(self) -> None:
        """Start the child in the background if files expected need it and it is not running (idempotent)."""
        if self._expected and self._starting is None and self.pid is None:
            self._starting = asyncio.get_running_loop().create_task(self._start())

    async def _start(self) -> None:
        async with self._lock:
            try:
                await self._child()
            except ParseError as e:  # the first document that needs the child tries again and reports it
                log.debug("parser process did not start ahead: %s", e)

    @property
    def limits(self) -> ParseLimits:
        """The limits every document is parsed within."""
        return self._limits

    @property
    def pid(self) -> int | None:
        """Process id of the running child, if one is running."""
        return self._proc.pid if self._proc is not None and self._proc.returncode is None else None

    async def parse(self, name: str, data: bytes) -> Parsed:
        """Title and sections of one file (``name`` picks the parser).

        Raises:
            NeedsOcr: the file needs OCR, which is off or not installed (the worker reports it skipped).
            ParseError: the parser's own reasons, a limit exceeded, or the child killed or crashed.
        """
        if in_process(name, len(data)):
            return await asyncio.to_thread(parse_bounded, name, data, self._limits)
        async with self._lock:
            return await self._remote(name, data)

    async def close(self) -> None:
        """Stop the child (killed: it only parses, so nothing is lost, and its orderly exit took 60 ms a run)."""
        starting, self._starting = self._starting, None
        if starting is not None and not starting.done():
            starting.cancel()  # a child half started is killed (``_child``)
            with contextlib.suppress(asyncio.CancelledError):
                await starting
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        with contextlib.suppress(ProcessLookupError):  # it may have just exited on its own
            proc.kill()
        await proc.wait()

    async def _remote(self, name: str, data: bytes) -> Parsed:
        proc = await self._child()
        timeout = self._limits.parse_timeout_s
        try:
            status, value, logs, retire = await asyncio.wait_for(self._exchange(proc, name, data), timeout)
        except TimeoutError:
            await self._kill()
            raise ParseError(
                f"parsing took longer than the {timeout:g} s limit (parse_timeout_s); the parser process was stopped"
            ) from None
        except (asyncio.IncompleteReadError, ConnectionError) as e:
            code = await proc.wait()
            self._proc = None
            raise ParseError(_death(code, self._limits)) from e
        except asyncio.CancelledError:  # a request half sent or a reply half read: the stream is unusable
            await self._kill()
            raise
        for logger, level, message in logs:
            logging.getLogger(logger).log(level, "%s: %s", name, message)
        if retire:
            await self.close()
        if status == "ok":
            return value  # type: ignore[no-any-return]
        raise NeedsOcr(value) if status == "skip" else ParseError(value)

    async def _child(self) -> asyncio.subprocess.Process:
        """The running child, or a new one once it says it is ready (its start-up is not a document's time)."""
        if self._proc is not None and self._proc.returncode is None:
            return self._proc
        limits = json.dumps(asdict(self._limits))
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _BOOT, _ROOT, limits, str(os.getpid()), ",".join(self._libraries),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert proc.stdout is not None
        try:
            ready = await asyncio.wait_for(proc.stdout.readexactly(1), _START_TIMEOUT_S)
        except asyncio.CancelledError:
            proc.kill()
            await proc.wait()
            raise
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise ParseError(f"the parser process did not start within {_START_TIMEOUT_S:g} s") from None
        except asyncio.IncompleteReadError:
            ready = b""
        if ready != _READY:
            code = await proc.wait()
            raise ParseError(f"the parser process did not start (exit status {code}; its error output says why)")
        log.debug("parser process %d started", proc.pid)
        self._proc = proc
        return proc

    @staticmethod
    async def _exchange(proc: asyncio.subprocess.Process, name: str, data: bytes) -> _Reply:
        assert proc.stdin is not None and proc.stdout is not None
        encoded = name.encode("utf-8", errors="surrogateescape")
        proc.stdin.write(_REQUEST.pack(len(encoded), len(data)) + encoded)
        proc.stdin.write(data)
        await proc.stdin.drain()
        (size,) = _REPLY.unpack(await proc.stdout.readexactly(_REPLY.size))
        reply: _Reply = pickle.loads(await proc.stdout.readexactly(size))
        return reply

    async def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            proc.kill()
            await proc.wait()


def _death(code: int, limits: ParseLimits) -> str:
    """Why the child ended mid-parse, from its exit status."""
    if code >= 0:
        return f"the parser process exited with status {code} while parsing this file"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = f"signal {-code}"
    reason = f"the parser process was killed by {name} while parsing this file"
    if -code == signal.SIGKILL:  # what the kernel's out-of-memory killer sends
        reason += f" (by the out-of-memory killer, parse_memory_mb {limits.parse_memory_mb:g}, or from outside)"
    return reason


# --- the child --------------------------------------------------------------------------------------------


class _Records(logging.Handler):
    """Warnings the parsers log while one document is parsed, sent back with the reply."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[tuple[str, int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        """Keep the record's logger, level and message."""
        with contextlib.suppress(Exception):
            self.records.append((record.name, record.levelno, record.getMessage()))


def _read(stream: IO[bytes], n: int) -> bytes:
    """Exactly n bytes, or b"" at end of input."""
    parts: list[bytes] = []
    while n:
        part = stream.read(n)
        if not part:
            return b""
        parts.append(part)
        n -= len(part)
    return b"".join(parts)


def _confine(limits: ParseLimits, parent: int) -> None:
    """Cap the data segment and core dumps; on Linux, die with the parent."""
    import resource

    cap = int(limits.parse_memory_mb * _MiB)
    resource.setrlimit(resource.RLIMIT_DATA, (cap, cap))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if sys.platform == "linux":
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before the signal was armed
        raise SystemExit(0)


def serve(argv: list[str]) -> None:
    """The child's loop: read a request, parse, reply; until the input ends.

    argv: limits JSON, parent pid, and optionally the libraries to import ahead (comma-separated), which a
    thread imports while the loop waits for the first request (a request needing one waits for its import).
    """
    limits = ParseLimits.from_json(argv[0])
    # The protocol gets its own descriptors; fds 0 and 1 become /dev/null and stderr, so a library that
    # prints cannot corrupt a reply.
    requests = os.fdopen(os.dup(0), "rb")
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    os.dup2(2, 1)
    _confine(limits, int(argv[1]))
    records = _Records()
    logging.getLogger().addHandler(records)
    logging.getLogger().setLevel(logging.WARNING)
    replies.write(_READY)
    replies.flush()
    libraries = [name for name in (argv[2] if len(argv) > 2 else "").split(",") if name]
    if libraries:
        threading.Thread(target=_import_ahead, args=(libraries,), daemon=True).start()
    while head := _read(requests, _REQUEST.size):
        name_len, data_len = _REQUEST.unpack(head)
        name = _read(requests, name_len).decode("utf-8", errors="surrogateescape")
        data = _read(requests, data_len)
        records.records.clear()
        reply = _reply(name, data, limits, records.records)
        del data
        payload = pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL)
        replies.write(_REPLY.pack(len(payload)) + payload)
        replies.flush()
        if reply[3]:
            return


def _import_ahead(libraries: list[str]) -> None:
    """Import the parsers' libraries before a document needs them; one that fails is left to its parser."""
    import importlib

    for name in libraries:
        with contextlib.suppress(Exception):
            importlib.import_module(name)


def _reply(name: str, data: bytes, limits: ParseLimits, logs: list[tuple[str, int, str]]) -> _Reply:
    """The reply to one request.

    A failure is put down to the memory cap when it is a MemoryError or when the parse's peak RSS reached
    the cap: C libraries report a failed allocation in their own words (lxml: "XMLSyntaxError: unknown
    error"). A child that came that close is replaced (its heap may be in pieces).
    """
    _reset_peak()
    try:
        reply: _Reply = ("ok", parse_bounded(name, data, limits), logs, False)
    except NeedsOcr as e:
        reply = ("skip", str(e), logs, False)
    except ParseError as e:
        reply = ("error", str(e), logs, False)
    except MemoryError:
        reply = ("error", "", logs, True)
    except Exception as e:  # a library bug on one odd file: reported, and the next file goes on
        logs.append((__name__, logging.ERROR, "unexpected parser error\n" + "".join(traceback.format_exception(e))))
        reply = ("error", f"parser error: {type(e).__name__}: {e}", logs, False)
    # The peak counts the libraries' pages too, so a parse stopped by the cap ends a little above it.
    if reply[3] or _peak() >= 0.9 * limits.parse_memory_mb * _MiB:
        if reply[0] == "error":
            return ("error", _memory_reason(limits), logs, True)
        return (reply[0], reply[1], logs, True)
    return reply


def _reset_peak() -> None:
    """Start a new peak-RSS count (Linux: VmHWM is reset by writing 5 to clear_refs)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def _peak() -> int:
    """Peak RSS since ``_reset_peak``, bytes (0 where /proc cannot tell).

    Not ``ru_maxrss``: Linux carries that across fork and exec, so a child of a large worker starts at its size.
    """
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return 0
    found = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    return int(found.group(1)) * 1024 if found else 0


def _memory_reason(limits: ParseLimits) -> str:
    return f"parsing needs more than the {limits.parse_memory_mb:g} MiB memory limit (parse_memory_mb)"
