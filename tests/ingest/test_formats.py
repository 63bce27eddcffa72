from __future__ import annotations

import io
from pathlib import Path

import pytest

from ingest.formats import ParseError, decode_text, parse_docx, parse_html, parse_markdown, parse_pdf, parse_text
from ingest.loaders import parse
from ingest.source import Item
from tests.ingest.conftest import DOCS

KOREAN = "보안 사고는 즉시 정보보안팀에 신고합니다. 비밀번호는 14자 이상이어야 합니다."


def _doc(name: str):
    path = DOCS / name
    return parse(Item(uri=path.as_uri(), name=name, groups=("public",)), path.read_bytes())


def test_markdown_sections_follow_heading_path_and_title_from_front_matter() -> None:
    doc = _doc("gpu-cluster-policy.md")
    assert doc.title == "GPU Cluster Usage Policy"
    assert doc.lang == "en"
    sections = [s.section for s in doc.sections]
    assert "GPU Cluster Usage Policy > Queues" in sections
    queues = next(s for s in doc.sections if s.section.endswith("Queues"))
    assert "72 hours" in queues.text
    assert all(s.page is None for s in doc.sections)


def test_markdown_table_rows_read_as_header_value_lines() -> None:
    md = b"# T\n\n| Queue | Max run time |\n|:---|---:|\n| `batch` | 72 hours |\n| a \\| b | none |\n\nAfter.\n"
    text = parse_markdown(md).sections[0].text
    assert "Queue: `batch`; Max run time: 72 hours" in text
    assert "Queue: a | b; Max run time: none" in text
    assert "|---" not in text and "After." in text


def test_markdown_code_fence_comment_is_not_a_heading_and_setext_is() -> None:
    md = b"# Top\n\nintro\n\n```bash\n# not a heading\nls\n```\n\nSub\n---\n\nbody\n"
    parsed = parse_markdown(md)
    assert parsed.title == "Top"
    assert [s.section for s in parsed.sections] == ["Top", "Top > Sub"]
    assert "# not a heading" in parsed.sections[0].text


def test_markdown_title_falls_back_to_file_name() -> None:
    doc = parse(Item(uri="file:///x/team-notes.md", name="team-notes.md"), b"just text, no heading\n")
    assert doc.title == "team notes"


def test_korean_markdown_detected_as_korean() -> None:
    doc = _doc("security-policy-ko.md")
    assert doc.lang == "ko"
    assert doc.title == "정보보안 정책"
    assert any(s.section == "정보보안 정책 > 보안 사고 신고" and "내선 2119" in s.text for s in doc.sections)


def test_pdf_keeps_one_based_page_numbers() -> None:
    doc = _doc("data-retention-policy.pdf")
    assert doc.title == "Data Retention Policy"
    assert [s.page for s in doc.sections] == [1, 2, 3]
    assert "180 days" in doc.sections[1].text
    assert "14 days" in doc.sections[2].text


def test_docx_headings_become_sections_and_tables_rows() -> None:
    doc = _doc("onboarding-checklist-ko.docx")
    assert doc.title == "신규 입사자 온보딩 체크리스트"
    assert doc.lang == "ko"
    contacts = next(s for s in doc.sections if s.section == "담당 부서 연락처")
    assert "정보보안팀 | 보안 교육, 보안 사고 신고 | 내선 2119" in contacts.text


def test_html_drops_boilerplate_and_splits_on_headings() -> None:
    doc = _doc("kserve-serving-guide.html")
    assert doc.title.startswith("Model Serving with KServe")
    text = "\n".join(s.text for s in doc.sections)
    for boilerplate in (
        "analytics",
        "Internal documentation portal",
        "Related pages",
        "mlops@hari.re.kr",
        "JupyterHub",
    ):
        assert boilerplate not in text
    assert "Model Serving with KServe > Scaling" in [s.section for s in doc.sections]
    assert "hari-vllm-runtime" in text


def test_plain_text_title_from_first_line() -> None:
    doc = _doc("work-and-leave-ko.txt")
    assert doc.title == "근무 및 휴가 안내"
    assert doc.lang == "ko"


@pytest.mark.parametrize(
    "encoding",
    ["utf-8", "utf-8-sig", "utf-16", "utf-16-be-bom", "cp949", "euc-kr"],
)
def test_text_encodings_decode(encoding: str) -> None:
    data = b"\xfe\xff" + KOREAN.encode("utf-16-be") if encoding == "utf-16-be-bom" else KOREAN.encode(encoding)
    assert decode_text(data) == KOREAN
    assert parse_text(data).sections[0].text == KOREAN


def test_binary_text_file_fails_with_reason() -> None:
    with pytest.raises(ParseError, match="binary"):
        parse_text(bytes(range(256)) * 4)


def test_invalid_pdf_fails_with_reason() -> None:
    with pytest.raises(ParseError, match="not a PDF"):
        parse_pdf(b"hello, I am not a pdf")


def test_truncated_pdf_fails_with_reason() -> None:
    data = (DOCS / "data-retention-policy.pdf").read_bytes()
    with pytest.raises(ParseError, match="truncated"):
        parse_pdf(data[: len(data) // 2])


def test_encrypted_pdf_fails_with_reason() -> None:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    for page in PdfReader(DOCS / "data-retention-policy.pdf").pages:
        writer.add_page(page)
    writer.encrypt("secret", algorithm="RC4-128")
    buf = io.BytesIO()
    writer.write(buf)
    with pytest.raises(ParseError, match="encrypted"):
        parse_pdf(buf.getvalue())


def test_broken_docx_fails_with_reason() -> None:
    with pytest.raises(ParseError, match="unreadable DOCX"):
        parse_docx(b"PK\x03\x04 not really a zip")


def test_html_without_elements_fails() -> None:
    with pytest.raises(ParseError):
        parse_html(b"")


def test_every_sample_question_answer_is_in_its_source() -> None:
    import json
    import re

    questions = [json.loads(line) for line in (DOCS.parent / "questions.jsonl").read_text("utf-8").splitlines()]
    assert 15 <= len(questions) <= 20
    assert {q["lang"] for q in questions} == {"en", "ko"}
    for q in questions:
        doc = _doc(q["source"])
        text = re.sub(r"\s+", " ", " ".join(s.text for s in doc.sections))
        assert q["answer"] in text, q


def test_sample_corpus_has_the_promised_mix() -> None:
    files = [p for p in DOCS.rglob("*") if p.is_file() and not p.name.startswith(".")]
    suffixes = [p.suffix for p in files]
    assert 10 <= len(files) <= 14
    for ext in (".md", ".pdf", ".docx", ".html", ".txt"):
        assert ext in suffixes
    assert sum(1 for p in files if _doc(str(p.relative_to(DOCS))).lang == "ko") >= 4


def test_generated_pdf_is_multi_page(tmp_path: Path) -> None:
    assert len(_doc("data-retention-policy.pdf").sections) >= 3


def test_pptx_slides_become_sections_with_titles_tables_and_notes() -> None:
    from pptx import Presentation
    from pptx.util import Inches

    from ingest.formats import parse_pptx

    deck = Presentation()
    deck.core_properties.title = "Cluster onboarding"
    s1 = deck.slides.add_slide(deck.slide_layouts[1])
    s1.shapes.title.text = "GPU quota"
    s1.placeholders[1].text = "Each team gets 1200 GPU hours."
    s1.notes_slide.notes_text_frame.text = "Ask the admins for more."
    s2 = deck.slides.add_slide(deck.slide_layouts[5])
    s2.shapes.title.text = "Queues"
    table = s2.shapes.add_table(2, 2, Inches(1), Inches(2), Inches(4), Inches(1)).table
    for (r, c), v in {(0, 0): "queue", (0, 1): "limit", (1, 0): "short", (1, 1): "4h"}.items():
        table.cell(r, c).text = v
    buf = io.BytesIO()
    deck.save(buf)
    parsed = parse_pptx(buf.getvalue())
    assert parsed.title == "Cluster onboarding"
    assert [(s.section, s.page) for s in parsed.sections] == [("GPU quota", 1), ("Queues", 2)]
    assert "1200 GPU hours" in parsed.sections[0].text and "Notes: Ask the admins" in parsed.sections[0].text
    assert "short | 4h" in parsed.sections[1].text


def test_xlsx_rows_read_as_header_value_text_per_sheet() -> None:
    from openpyxl import Workbook

    from ingest.formats import parse_xlsx

    book = Workbook()
    sheet = book.active
    sheet.title = "Quotas"
    sheet.append(["team", "gpu hours"])
    sheet.append(["vision", 1200])
    other = book.create_sheet("Contacts")
    other.append(["name", "email"])
    other.append(["Kim", "kim@example.org"])
    buf = io.BytesIO()
    book.save(buf)
    parsed = parse_xlsx(buf.getvalue())
    assert [s.section for s in parsed.sections] == ["Quotas", "Contacts"]
    assert parsed.sections[0].text == "team: vision; gpu hours: 1200"
    assert parsed.sections[1].text == "name: Kim; email: kim@example.org"


def test_csv_sniffs_delimiter_and_detects_encoding() -> None:
    from ingest.formats import parse_csv

    data = "이름;부서\n김철수;연구소\n".encode("cp949")
    parsed = parse_csv(data)
    assert parsed.sections[0].text == "이름: 김철수; 부서: 연구소"


def test_mixed_encodings_and_damaged_utf8_decode_with_a_warning() -> None:
    mixed = "Intro 소개\n".encode() + "백업은 매일 밤 실행됩니다.\n".encode("cp949")
    parsed = parse_text(mixed)
    assert "백업은 매일 밤 실행됩니다." in parsed.sections[0].text and "mixed encodings" in parsed.warnings[0]
    damaged = ("안녕하세요. " * 50).encode() + b"\xff" + b" end"
    parsed = parse_text(damaged)
    assert parsed.sections[0].text.startswith("안녕하세요.") and "invalid UTF-8" in parsed.warnings[0]
