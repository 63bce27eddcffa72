"""HWP 5.0 and HWPX parsing (ingest.hwp) on real files: hwp-rs's test documents (copied, tests/ingest/data/hwp)
and documents python-hwpx writes at test time (HWPX, and HWP 5 through its writer)."""

from __future__ import annotations

import importlib.util
import io
import re
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import pytest

from ingest.formats import Parsed, ParseError, parser_for
from ingest.hwp import parse_hwp
from ingest.sandbox import ParseLimits, parse_bounded
from ingest.worker import ingest_source
from rag.config import Settings
from rag.embedders.hashing import HashingEmbedder
from rag.stores.memory import MemoryStore

DATA = Path(__file__).parent / "data" / "hwp"
ROOT = Path(__file__).resolve().parents[2]
LIMITS = ParseLimits(max_unpacked_mb=256, max_zip_ratio=100, max_text_mb=20, parse_timeout_s=300, parse_memory_mb=1024)


def _docs() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_broken_docs", ROOT / "scripts" / "make_broken_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


DOCS = _docs()


@pytest.fixture(scope="module")
def report_files() -> dict[str, bytes]:
    """The generated report as HWPX and as HWP 5 (python-hwpx)."""
    return {"hwpx": DOCS.hwpx_report(), "hwp": DOCS.hwp_report()}


def _text(parsed: Parsed) -> str:
    return "\n".join(s.text for s in parsed.sections)


def _hwpx(*paragraphs: str) -> bytes:
    from hwpx import HwpxDocument

    doc = HwpxDocument.new()
    for text in paragraphs:
        doc.add_paragraph(text, inherit_style=False)
    buf = io.BytesIO()
    doc.save_to_stream(buf)
    return buf.getvalue()


def test_hello_world_hwp_yields_its_text_and_title() -> None:
    parsed = parse_bounded("hello_world.hwp", (DATA / "hello_world.hwp").read_bytes(), LIMITS)
    assert [s.text for s in parsed.sections] == ["Hello World!"]
    assert parsed.title == "Hello World"  # from the document's summary information


@pytest.mark.parametrize(
    ("name", "boxes"), [("draw_text.hwp", ["글상자1", "글상자2"]), ("group_with_draw_text.hwp", ["테스트1", "테스트2"])]
)
def test_text_boxes_of_real_hwp_files_are_extracted(name: str, boxes: list[str]) -> None:
    parsed = parse_hwp((DATA / name).read_bytes())
    assert _text(parsed).split("\n") == boxes


@pytest.mark.parametrize("kind", ["hwpx", "hwp"])
def test_outline_headings_become_section_paths(report_files: dict[str, bytes], kind: str) -> None:
    parsed = parse_bounded(f"report.{kind}", report_files[kind], LIMITS)
    assert [s.section for s in parsed.sections] == ["1. 연구 개요", "1. 연구 개요 > 가. 측정 결과", "2. 결론"]
    assert parsed.sections[0].text.startswith("1. 연구 개요\n\n본 보고서는 2026년 백업 정책의 성과를 정리한다.")
    assert parsed.title == "1. 연구 개요"  # no title in its metadata: the first heading
    assert all(s.page is None for s in parsed.sections)  # HWP stores no pages


def test_hwp_sections_number_the_section_path_in_a_document_of_several() -> None:
    from hwpx import HwpxDocument

    doc = HwpxDocument.new()
    doc.add_heading("연구 개요", level=1)
    doc.add_paragraph("첫 구역 본문.", inherit_style=False)
    second = doc.add_section()
    doc.add_paragraph("둘째 구역 본문.", section=second, inherit_style=False)
    doc.add_heading("부록", level=1, section=second)
    doc.add_paragraph("부록 본문.", section=second, inherit_style=False)
    buf = io.BytesIO()
    doc.save_to_stream(buf)
    parsed = parse_hwp(buf.getvalue())
    # The heading of the first section still heads the start of the second, as in the document.
    assert [(s.section, s.text.split("\n")[-1]) for s in parsed.sections] == [
        ("Section 1 > 1. 연구 개요", "첫 구역 본문."),
        ("Section 2 > 1. 연구 개요", "둘째 구역 본문."),
        ("Section 2 > 1. 부록", "부록 본문."),
    ]


@pytest.mark.parametrize("kind", ["hwpx", "hwp"])
def test_table_becomes_a_markdown_table_with_its_header_row(report_files: dict[str, bytes], kind: str) -> None:
    section = parse_hwp(report_files[kind]).sections[1]
    table = "| 항목 | 값 | 단위 |\n| --- | --- | --- |\n| 온도 | 25 | °C |\n| 압력 | 101 | kPa |"
    assert table in section.text
    assert section.section.endswith("가. 측정 결과")


@pytest.mark.parametrize("kind", ["hwpx", "hwp"])
def test_footnote_and_text_box_text_is_kept(report_files: dict[str, bytes], kind: str) -> None:
    parsed = parse_hwp(report_files[kind])
    first, second = parsed.sections[0].text, parsed.sections[1].text
    assert "백업은 매일 밤 2시에 실행된다." in first and "각주: 보관 기간은 30일이다." in first
    assert "글상자 앞 문단" in second and "글상자 안의 메모" in second


def test_merged_title_row_keeps_every_table_row_as_wide_as_the_table() -> None:
    from hwpx import HwpxDocument

    doc = HwpxDocument.new()
    table = doc.add_table(3, 3)
    table.merge_cells(0, 0, 0, 2)
    table.set_cell_text(0, 0, "분기별 실적")
    for r, row in enumerate([["분기", "매출", "비고"], ["1분기", "120", "-"]], start=1):
        for c, value in enumerate(row):
            table.set_cell_text(r, c, value)
    buf = io.BytesIO()
    doc.save_to_stream(buf)
    lines = _text(parse_hwp(buf.getvalue())).split("\n")
    assert lines == ["| 분기별 실적 |  |  |", "| --- | --- | --- |", "| 분기 | 매출 | 비고 |", "| 1분기 | 120 | - |"]


@pytest.mark.parametrize(
    ("name", "make", "reason"),
    [
        ("distribution.hwp", lambda f: DOCS.hwp_flagged(f["hwp"], 2), r"protected document \(distribution document"),
        ("password.hwp", lambda f: DOCS.hwp_flagged(f["hwp"], 1), r"protected document \(password-protected"),
        ("drm.hwp", lambda f: DOCS.hwp_flagged(f["hwp"], 4), r"protected document \(DRM-protected"),
        ("encrypted.hwpx", lambda f: DOCS.hwpx_encrypted(f["hwpx"]), r"protected document \(encrypted HWPX: Contents/"),
    ],
)
def test_protected_documents_are_refused_from_their_header_flags(
    report_files: dict[str, bytes], name: str, make: object, reason: str
) -> None:
    data = make(report_files)  # type: ignore[operator]
    with pytest.raises(ParseError, match=reason):
        parse_bounded(name, data, LIMITS)


def test_a_document_holding_only_the_distribution_placeholder_is_refused() -> None:
    placeholder = "이 문서는 상위 버전의 배포용 문서입니다. 문서를 읽으려면 최신 버전의 한글 전용 뷰어가 필요합니다."
    with pytest.raises(ParseError, match=r"protected document .*placeholder"):
        parse_hwp(_hwpx(placeholder))
    # A real document that merely mentions distribution documents is read.
    long_text = "배포용 문서입니다 라는 문구가 나오는 설명서. " + "본문 내용이 충분히 길다. " * 30
    assert "본문 내용이" in _text(parse_hwp(_hwpx(long_text)))


def test_hwp3_and_hwpml_are_unsupported_formats() -> None:
    with pytest.raises(ParseError, match=r"unsupported format: HWP 3\.x"):
        parse_bounded("old.hwp", b"HWP Document File V3.00 \x1a\x01\x02\x03\x04\x05" + bytes(1024), LIMITS)
    hml = b'\xef\xbb\xbf<?xml version="1.0" encoding="UTF-8"?><HWPML Version="2.8" Style="embed"><HEAD/></HWPML>'
    assert parser_for("old.hml") is not None
    with pytest.raises(ParseError, match="unsupported format: HWPML"):
        parse_bounded("old.hml", hml, LIMITS)


def test_damaged_hwp_and_hwpx_are_reported(report_files: dict[str, bytes]) -> None:
    hwp, hwpx = report_files["hwp"], report_files["hwpx"]
    with pytest.raises(ParseError, match=r"unreadable HWP \(damaged compound file\)"):
        parse_bounded("half.hwp", hwp[: len(hwp) // 2], LIMITS)
    with pytest.raises(ParseError, match=r"unreadable HWPX \(damaged zip package\)"):
        parse_bounded("half.hwpx", hwpx[: len(hwpx) // 2], LIMITS)
    body = bytes(range(256)) * 4
    with pytest.raises(ParseError, match=r"damaged HWP stream BodyText/Section0"):
        parse_bounded("garbled.hwp", DOCS.hwp_with(hwp, {"BodyText/Section0": body}), LIMITS)
    with pytest.raises(ParseError, match="not an HWPX package"):
        parse_bounded("renamed.hwpx", DOCS._docx_with({}), LIMITS)
    with pytest.raises(ParseError, match="not an HWP 5 document"):
        renamed = hwp.replace("FileHeader".encode("utf-16-le"), "FileXeader".encode("utf-16-le"))
        parse_bounded("no-header.hwp", renamed, LIMITS)


def test_hwp_streams_and_hwpx_members_are_held_to_the_unpacking_limits(report_files: dict[str, bytes]) -> None:
    with pytest.raises(ParseError, match=r"HWP stream BodyText/Section0 inflates \d+:1 .*max_zip_ratio"):
        parse_bounded("bomb.hwp", DOCS.bomb_hwp(50), LIMITS)
    # Under a looser ratio the same file meets the size limit instead, counted while inflating.
    loose = replace(LIMITS, max_unpacked_mb=8, max_zip_ratio=10_000)
    with pytest.raises(ParseError, match=r"HWP streams unpack to more than .* 8 MiB limit \(max_unpacked_mb\)"):
        parse_bounded("bomb.hwp", DOCS.bomb_hwp(50), loose)
    tiny = replace(LIMITS, max_unpacked_mb=0.01)
    with pytest.raises(ParseError, match=r"package unpacks to .* \(max_unpacked_mb\)"):
        parse_bounded("report.hwpx", report_files["hwpx"], tiny)
    little_text = replace(LIMITS, max_text_mb=0.0001)
    with pytest.raises(ParseError, match=r"extracted text .*\(max_text_mb\)"):
        parse_bounded("report.hwp", report_files["hwp"], little_text)


async def test_protected_version_is_reported_and_the_stored_chunks_are_kept(
    settings: Settings, tmp_path: Path, report_files: dict[str, bytes]
) -> None:
    folder = tmp_path / "hwp"
    folder.mkdir()
    path = folder / "report.hwp"
    path.write_bytes(report_files["hwp"])
    store, embedder = MemoryStore("docs"), HashingEmbedder(64)
    first = await ingest_source(settings, store, embedder, str(folder))
    assert first.failed == () and first.added == 1
    before = dict(store._opened().chunks)
    assert any("| 온도 | 25 | °C |" in c.text for c in before.values())

    path.write_bytes(DOCS.hwp_flagged(report_files["hwp"], 2))  # now saved as a distribution document
    second = await ingest_source(settings, store, embedder, str(folder))
    assert [(source, re.sub(r"\(.*", "", reason)) for source, reason in second.failed] == [
        (path.resolve().as_uri(), "protected document ")
    ]
    assert "distribution document (배포용 문서)" in second.failed[0][1]
    assert dict(store._opened().chunks) == before
    assert not any("배포용" in c.text for c in store._opened().chunks.values())


async def test_hwpx_is_ingested_into_chroma_and_found_by_search_with_its_section(
    settings: Settings, tmp_path: Path, report_files: dict[str, bytes]
) -> None:
    from rag.registry import make_store
    from rag.retrieval import Retriever

    folder = tmp_path / "hwpx"
    folder.mkdir()
    (folder / "백업 보고서.hwpx").write_bytes(report_files["hwpx"])
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    url = f"chroma://{settings.data_dir}/chroma"
    settings = settings.model_copy(update={"store": settings.store.model_copy(update={"url": url})})
    store, embedder = make_store(settings), HashingEmbedder(64)
    try:
        report = await ingest_source(settings, store, embedder, str(folder))
        assert report.failed == () and report.added == 1
        hits = await Retriever(store, embedder, settings.retrieval).search("압력 kPa", 3)
        assert hits, "the table's chunk was not found"
        top = hits[0].chunk
        assert top.source == (folder / "백업 보고서.hwpx").resolve().as_uri()
        assert "| 압력 | 101 | kPa |" in top.text and top.section == "1. 연구 개요 > 가. 측정 결과"
    finally:
        await store.close()
