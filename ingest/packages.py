"""Zip packages (Office, HWPX) checked against the unpacking limits before a library inflates them."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib

from ingest.parsed import ParseError

# Office formats that are zip packages of XML parts, checked by ``check_package`` before a library opens them.
PACKAGES = (".docx", ".pptx", ".xlsx", ".xlsm")
_MiB = 1024 * 1024
# Members up to this size may compress better than the ratio limit (small parts of repeated markup do);
# the limit is about members large enough to matter (Apache POI's zip-bomb check has the same grace).
_RATIO_GRACE = _MiB
# A zip member's local file header (APPNOTE 4.3.7); fields 10 and 11 are its name and extra-field lengths.
_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")


def check_package(data: bytes, *, max_unpacked_mb: float, max_zip_ratio: float) -> None:
    """Refuse an Office package (a zip) that would unpack beyond the limits, before a library inflates it.

    The members' declared sizes and compression ratios are checked first (cheap), then every member's
    compressed data is inflated in pieces and counted, nothing kept: a member that inflates to more than
    its header declares is refused rather than trusted. Bytes that are not a zip are left to the parser.

    Raises:
        ParseError: over ``max_unpacked_mb`` or ``max_zip_ratio`` (the setting is named), or a damaged member.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError):
        return
    limit = int(max_unpacked_mb * _MiB)

    def too_large(total: float) -> ParseError:
        return ParseError(
            f"package unpacks to {total / _MiB:.1f} MiB, above the {max_unpacked_mb:g} MiB limit (max_unpacked_mb)"
        )

    with archive:
        members = archive.infolist()
        declared = sum(info.file_size for info in members)
        if declared > limit:
            raise too_large(declared)
        for info in members:
            ratio = info.file_size / max(info.compress_size, 1)
            if info.file_size > _RATIO_GRACE and ratio > max_zip_ratio:
                raise ParseError(
                    f"package member {info.filename} inflates {ratio:.0f}:1 ({info.file_size / _MiB:.1f} MiB), "
                    f"above the {max_zip_ratio:g}:1 limit (max_zip_ratio)"
                )
        inflated = 0
        for info in members:
            size = _inflated_size(data, info, min(info.file_size, limit - inflated) + 1)
            if size > info.file_size:
                if inflated + size > limit:
                    raise too_large(inflated + size)
                raise ParseError(
                    f"damaged package member {info.filename}: its data inflates to more than the "
                    f"{info.file_size} bytes its header declares"
                )
            inflated += size


def _inflated_size(data: bytes, info: zipfile.ZipInfo, bound: int) -> int:
    """Bytes a member's data really inflates to (counted up to ``bound``), its CRC checked on the way.

    Raises:
        ParseError: the member's data is damaged (bad local header, deflate stream or CRC).
    """
    try:
        if info.compress_type != zipfile.ZIP_DEFLATED or info.flag_bits & 0x1:
            # Stored (or rare) members: zipfile reads exactly the declared size and checks the CRC.
            with zipfile.ZipFile(io.BytesIO(data)).open(info) as member:
                while member.read(_MiB):
                    pass
            return info.file_size
        fields = _LOCAL_HEADER.unpack_from(data, info.header_offset)
        if fields[0] != b"PK\x03\x04":
            raise zipfile.BadZipFile("bad local file header")
        start = info.header_offset + _LOCAL_HEADER.size + fields[10] + fields[11]
        stream = memoryview(data)[start : start + info.compress_size]
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        size = crc = 0
        # Compressed input goes in small pieces so the output of each stays small (a bomb inflates 1000:1).
        for i in range(0, len(stream), 64 * 1024):
            piece = inflater.decompress(stream[i : i + 64 * 1024], _MiB)
            while True:
                size += len(piece)
                crc = zlib.crc32(piece, crc)
                if size >= bound:
                    return size
                if not inflater.unconsumed_tail:
                    break
                piece = inflater.decompress(inflater.unconsumed_tail, _MiB)
            if inflater.eof:
                break
        if not inflater.eof or crc != info.CRC:
            raise zipfile.BadZipFile("truncated data" if not inflater.eof else "CRC mismatch")
        return size
    except (zipfile.BadZipFile, zlib.error, struct.error, NotImplementedError, RuntimeError) as e:
        raise ParseError(f"damaged package member {info.filename}: {e}") from e
