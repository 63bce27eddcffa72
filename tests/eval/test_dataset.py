"""Case files, the committed schema, and the SQuAD/KorQuAD and BEIR importers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval.dataset import (
    SCHEMA_PATH,
    Case,
    CorpusDoc,
    DatasetError,
    dump_cases,
    from_beir,
    from_squad,
    load_cases,
    schema_text,
)

DATA = Path(__file__).parent / "data"

CASES = [
    Case(
        id="c1",
        question="Who won Super Bowl 50?",
        answers=("Denver Broncos", "the Broncos"),
        sources=("Super_Bowl_50#0",),
        tags=("sports",),
        lang="en",
    ),
    Case(id="c2", question="김치는 무엇으로 담그나요?", answers=("배추",), sources=("d4",), lang="ko"),
    Case(id="c3", question="What is the capital of Atlantis?", lang="en", unanswerable=True),
]


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- case files ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["cases.jsonl", "cases.yaml", "cases.yml"])
def test_cases_round_trip_through_a_file(tmp_path: Path, name: str) -> None:
    dump_cases(CASES, tmp_path / name)
    assert load_cases(tmp_path / name) == CASES


def test_missing_language_is_detected_from_the_question(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "c.jsonl",
        '{"id": "a", "question": "서울의 인구는 얼마인가요?"}\n'
        '{"id": "b", "question": "How many people live in Seoul?"}\n'
        '{"id": "c", "question": "How many people live in Seoul?", "lang": "de"}\n',
    )
    assert [c.lang for c in load_cases(path)] == ["ko", "en", "de"]


def test_defaults_and_blank_lines(tmp_path: Path) -> None:
    path = write(tmp_path, "c.jsonl", '\n{"id": "a", "question": "Why?"}\r\n\n')
    assert load_cases(path) == [Case(id="a", question="Why?", lang="en")]


def test_jsonl_strings_may_hold_unicode_line_separators(tmp_path: Path) -> None:
    path = write(tmp_path, "c.jsonl", '{"id": "a", "question": "Why\u2028not?"}\n{"id": "b", "question": "q"}\n')
    assert [c.question for c in load_cases(path)] == ["Why\u2028not?", "q"]


def test_yaml_case_file_with_comments(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "c.yaml",
        "# smoke cases\n- id: a\n  question: Who won?\n  answers: [Broncos]\n  sources: [doc1]\n",
    )
    assert load_cases(path) == [Case(id="a", question="Who won?", answers=("Broncos",), sources=("doc1",))]


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ('{"id": "a", "question": "q"}\n{"id": "b", "question": "q",\n', 2, "invalid JSON"),
        ('{"id": "a", "question": "q"}\n\n{"id": "b"}\n', 3, "question: Field required"),
        ('{"id": "a", "question": "q", "answer": ["x"]}\n', 1, "answer: Extra inputs are not permitted"),
        ('{"id": "a", "question": "   "}\n', 1, "question: String should match pattern"),
        ('{"id": "a", "question": "q", "answers": "x"}\n', 1, "answers: Input should be a valid list"),
        ('{"id": "a", "question": "q", "unanswerable": true, "answers": ["x"]}\n', 1, "no reference answers"),
        ('{"id": "a", "question": "q", "lang": "English"}\n', 1, "lang: String should match pattern"),
        ('["a", "q"]\n', 1, "expected an object"),
        ('{"id": "a", "question": "q"}\n{"id": "a", "question": "r"}\n', 2, "duplicate case id 'a' (first on line 1)"),
    ],
)
def test_bad_jsonl_rows_are_reported_with_their_line(tmp_path: Path, text: str, line: int, message: str) -> None:
    path = write(tmp_path, "bad.jsonl", text)
    with pytest.raises(DatasetError) as info:
        load_cases(path)
    assert info.value.line == line
    assert f"bad.jsonl:{line}:" in str(info.value)
    assert message in str(info.value)


def test_bad_yaml_cases_are_reported_with_their_line(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.yaml", "- id: a\n  question: q\n\n- id: b\n  tags: [x]\n")
    with pytest.raises(DatasetError, match=r"bad\.yaml:4: invalid case: question: Field required"):
        load_cases(path)
    broken = write(tmp_path, "broken.yaml", "- id: a\n  question: [q\n")
    with pytest.raises(DatasetError, match="invalid YAML") as info:
        load_cases(broken)
    assert info.value.line is not None
    mapping = write(tmp_path, "map.yaml", "id: a\nquestion: q\n")
    with pytest.raises(DatasetError, match="a YAML case file is a list"):
        load_cases(mapping)


def test_unknown_file_type_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="unknown case file type"):
        load_cases(write(tmp_path, "cases.csv", "id,question\n"))
    with pytest.raises(DatasetError, match="cannot read"):
        load_cases(tmp_path / "missing.jsonl")


def test_committed_schema_matches_the_model() -> None:
    assert SCHEMA_PATH.read_text(encoding="utf-8") == schema_text(), (
        "eval/schema/case.schema.json is stale; regenerate it with "
        'python -c "from eval.dataset import write_schema; write_schema()"'
    )
    schema = json.loads(schema_text())
    assert schema["required"] == ["id", "question"]
    assert schema["additionalProperties"] is False


# --- SQuAD / KorQuAD -------------------------------------------------------------------------------------


def test_from_squad_makes_a_case_per_question_and_a_document_per_paragraph() -> None:
    imported = from_squad(DATA / "xquad_en_excerpt.json")
    assert len(imported.cases) == 7
    docs = list(imported.corpus)
    assert [d.id for d in docs] == ["Super_Bowl_50#0", "Super_Bowl_50#1", "Nikola_Tesla#0"]
    assert docs[0].title == "Super Bowl 50"
    assert docs[0].text.startswith("The Broncos defeated the Pittsburgh Steelers")
    first = imported.cases[0]
    assert first == Case(
        id="56beb7953aeaaa14008c92ab",
        question="Who lost to the Broncos in the divisional round?",
        answers=("Pittsburgh Steelers",),
        sources=("Super_Bowl_50#0",),
        lang="en",
    )
    by_doc = {d.id: d.text for d in docs}
    for case in imported.cases:
        assert case.sources[0] in by_doc
        assert all(answer in by_doc[case.sources[0]] for answer in case.answers)
    assert [c.sources[0] for c in imported.cases].count("Nikola_Tesla#0") == 2


def test_from_squad_reads_korquad_and_squad_v2_unanswerable(tmp_path: Path) -> None:
    data = {
        "version": "KorQuAD_v1.0_dev",
        "data": [
            {
                "title": "김치",
                "paragraphs": [
                    {
                        "context": "김치는 배추와 고춧가루로 담그는 발효 음식이다.",
                        "qas": [
                            {
                                "id": "k1",
                                "question": "김치는 무엇으로 담그나요?",
                                "answers": [
                                    {"text": "배추와 고춧가루", "answer_start": 4},
                                    {"text": "배추와 고춧가루", "answer_start": 4},
                                ],
                            },
                            {"id": "k2", "question": "김치는 언제 생겼나요?", "answers": [], "is_impossible": True},
                        ],
                    }
                ],
            }
        ],
    }
    path = write(tmp_path, "korquad.json", json.dumps(data, ensure_ascii=False))
    imported = from_squad(path)
    assert imported.cases == (
        Case(
            id="k1", question="김치는 무엇으로 담그나요?", answers=("배추와 고춧가루",), sources=("김치#0",), lang="ko"
        ),
        Case(id="k2", question="김치는 언제 생겼나요?", lang="ko", unanswerable=True),
    )
    assert list(imported.corpus) == [CorpusDoc("김치#0", "김치", "김치는 배추와 고춧가루로 담그는 발효 음식이다.")]


def test_from_squad_refuses_other_json(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not a SQuAD-format file"):
        from_squad(write(tmp_path, "x.json", '{"rows": []}'))
    with pytest.raises(DatasetError, match="missing or malformed field"):
        from_squad(write(tmp_path, "y.json", '{"data": [{"title": "t", "paragraphs": [{"qas": []}]}]}'))


# --- BEIR ------------------------------------------------------------------------------------------------


def test_from_beir_takes_gold_from_positive_qrels() -> None:
    imported = from_beir(DATA / "beir_tiny")
    assert imported.cases == (
        Case(id="q1", question="How is tea made?", answers=("from leaves",), sources=("d1", "d2"), lang="en"),
        Case(id="q2", question="What are coffee beans?", sources=("d3",), lang="en"),
        Case(
            id="q3",
            question="김치는 무엇으로 담그나요?",
            answers=("배추와 고춧가루",),
            sources=("d4",),
            tags=("domain:food",),
            lang="ko",
        ),
    )


def test_beir_corpus_is_streamed_and_can_be_read_twice() -> None:
    corpus = from_beir(DATA / "beir_tiny").corpus
    first = list(corpus)
    assert [d.id for d in first] == ["d1", "d2", "d3", "d4"]
    assert first[3] == CorpusDoc("d4", "김치", "김치는 배추와 고춧가루로 담그는 한국의 발효 음식이다.")
    assert list(corpus) == first


def test_from_beir_reads_the_qrels_split_folder_layout(tmp_path: Path) -> None:
    for name in ("corpus.jsonl", "queries.jsonl"):
        (tmp_path / name).write_bytes((DATA / "beir_tiny" / name).read_bytes())
    (tmp_path / "qrels").mkdir()
    write(tmp_path / "qrels", "dev.tsv", "q2\td3\t1\n")
    assert [c.id for c in from_beir(tmp_path, split="dev").cases] == ["q2"]
    with pytest.raises(DatasetError, match="missing file"):
        from_beir(tmp_path, split="test")


def test_from_beir_reports_bad_rows_with_their_line(tmp_path: Path) -> None:
    for name in ("corpus.jsonl", "queries.jsonl"):
        (tmp_path / name).write_bytes((DATA / "beir_tiny" / name).read_bytes())
    write(tmp_path, "qrels.tsv", "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td3\n")
    with pytest.raises(DatasetError, match=r"qrels\.tsv:3: expected 3 tab-separated columns"):
        from_beir(tmp_path)
    write(tmp_path, "qrels.tsv", "q1\td1\tone\n")
    with pytest.raises(DatasetError, match=r"qrels\.tsv:1: score 'one' is not a number"):
        from_beir(tmp_path)
    write(tmp_path, "qrels.tsv", "q9\td1\t1\n")
    with pytest.raises(DatasetError, match=r"not in queries\.jsonl"):
        from_beir(tmp_path)
    write(tmp_path, "qrels.tsv", "q1\td1\t1\n")
    write(tmp_path, "corpus.jsonl", '{"_id": "d1", "text": "ok"}\n{"_id": "d2"}\n')
    with pytest.raises(DatasetError, match=r"corpus\.jsonl:2: bad corpus row"):
        list(from_beir(tmp_path).corpus)
