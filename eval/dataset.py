"""Evaluation cases: the JSONL/YAML file format, its JSON Schema, and importers for SQuAD/KorQuAD and BEIR.

A case file holds one case per line (``.jsonl``) or a top-level list (``.yaml``/``.yml``). Fields:

``id``            unique, non-empty
``question``      non-empty
``answers``       reference answers (may be empty: a retrieval-only case); none if ``unanswerable``
``sources``       gold source ids or URIs (the ``source`` of the chunks that should be retrieved and cited)
``tags``          free labels for breaking results down (``domain:law``, ``multihop``)
``lang``          ``en``, ``ko``, ...; detected from the question when missing
``unanswerable``  the documents do not answer it; the expected behaviour is a refusal

Unknown fields are rejected so that a typo (``answer``) cannot silently drop data. The schema in
``eval/schema/case.schema.json`` is generated from :class:`CaseRecord`; regenerate it with
``python -c "from eval.dataset import write_schema; write_schema()"``.

Importers return the cases plus the corpus to ingest; ingestion itself is the runner's job.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from rag.errors import InvalidRequest
from rag.lang import detect_lang

log = logging.getLogger(__name__)

SCHEMA_PATH = Path(__file__).parent / "schema" / "case.schema.json"
JSONL_SUFFIXES = frozenset({".jsonl"})
YAML_SUFFIXES = frozenset({".yaml", ".yml"})


class DatasetError(InvalidRequest):
    """A case file or imported data set is malformed; the message names the file and line."""

    code = "invalid_dataset"

    def __init__(self, path: Path | str, message: str, line: int | None = None) -> None:
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {message}")
        self.path = str(path)
        self.line = line


@dataclass(frozen=True)
class Case:
    """One evaluation case, as the runner and the metrics see it."""

    id: str
    question: str
    answers: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    lang: str = "en"
    unanswerable: bool = False


@dataclass(frozen=True)
class CorpusDoc:
    """One document of an imported corpus, ready for the runner to ingest under ``source=id``."""

    id: str
    title: str
    text: str


@dataclass(frozen=True)
class Imported:
    """An imported data set: its cases and its corpus (re-iterable; BEIR corpora are streamed from disk)."""

    cases: tuple[Case, ...]
    corpus: Iterable[CorpusDoc]


class CaseRecord(BaseModel):
    """One evaluation case as stored in a JSONL or YAML case file."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        title="EvalCase",
        json_schema_extra={
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            # Mirrors the validator below: an unanswerable case has no reference answers.
            "if": {"properties": {"unanswerable": {"const": True}}, "required": ["unanswerable"]},
            "then": {"properties": {"answers": {"maxItems": 0}}},
        },
    )

    id: str = Field(pattern=r"\S", description="Unique case id.")
    question: str = Field(pattern=r"\S", description="The question put to the system.")
    answers: list[str] = Field(
        default_factory=list,
        description="Reference answers; the score is the best match over them. Empty for retrieval-only cases.",
    )
    sources: list[str] = Field(
        default_factory=list,
        description="Gold source ids or URIs: the sources that should be retrieved and cited.",
    )
    tags: list[str] = Field(default_factory=list, description="Free labels for breaking results down.")
    lang: str | None = Field(
        default=None,
        pattern=r"^[a-z]{2,3}$",
        description="Language of the question (ISO 639-1, e.g. 'en', 'ko'); detected when missing.",
    )
    unanswerable: bool = Field(
        default=False,
        description="The documents do not answer the question; the expected answer is a refusal.",
    )

    @model_validator(mode="after")
    def _no_answers_when_unanswerable(self) -> CaseRecord:
        if self.unanswerable and self.answers:
            raise ValueError("an unanswerable case has no reference answers")
        return self

    def to_case(self) -> Case:
        """The in-code case, with the language detected when the record does not give it."""
        return Case(
            id=self.id,
            question=self.question,
            answers=tuple(self.answers),
            sources=tuple(self.sources),
            tags=tuple(self.tags),
            lang=self.lang or detect_lang(self.question),
            unanswerable=self.unanswerable,
        )

    @classmethod
    def from_case(cls, case: Case) -> CaseRecord:
        """The file record for a case."""
        return cls(
            id=case.id,
            question=case.question,
            answers=list(case.answers),
            sources=list(case.sources),
            tags=list(case.tags),
            lang=case.lang,
            unanswerable=case.unanswerable,
        )


def case_schema() -> dict[str, Any]:
    """The JSON Schema of one case, generated from :class:`CaseRecord`."""
    return CaseRecord.model_json_schema()


def schema_text() -> str:
    """The schema as it is committed: indented JSON with a trailing newline."""
    return json.dumps(case_schema(), indent=2, ensure_ascii=False) + "\n"


def write_schema(path: Path = SCHEMA_PATH) -> None:
    """Regenerate the committed schema file."""
    path.write_text(schema_text(), encoding="utf-8")


def _describe(e: ValidationError) -> str:
    parts = []
    for err in e.errors():
        loc = ".".join(str(p) for p in err["loc"])
        parts.append(f"{loc}: {err['msg']}" if loc else err["msg"])
    return "; ".join(parts)


def _record(path: Path, line: int, raw: object) -> Case:
    if not isinstance(raw, dict):
        raise DatasetError(path, f"expected an object with 'id' and 'question', got {type(raw).__name__}", line)
    try:
        return CaseRecord.model_validate(raw).to_case()
    except ValidationError as e:
        raise DatasetError(path, f"invalid case: {_describe(e)}", line) from e


def _jsonl_rows(path: Path, text: str) -> Iterator[tuple[int, object]]:
    # Not splitlines(): it also splits at U+2028 and friends, which JSON allows raw inside strings.
    for n, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            yield n, json.loads(line)
        except json.JSONDecodeError as e:
            raise DatasetError(path, f"invalid JSON: {e.msg} (column {e.colno})", n) from e


def _yaml_rows(path: Path, text: str) -> Iterator[tuple[int, object]]:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        line = e.problem_mark.line + 1 if e.problem_mark else None
        raise DatasetError(path, f"invalid YAML: {e.problem}", line) from e
    if root is None:
        return
    if not isinstance(root, yaml.SequenceNode):
        raise DatasetError(path, "a YAML case file is a list of cases", root.start_mark.line + 1)
    for node in root.value:
        # Constructing node by node keeps each case's line number for error messages.
        line = node.start_mark.line + 1
        try:
            yield line, yaml.SafeLoader("").construct_document(node)
        except yaml.YAMLError as e:
            raise DatasetError(path, f"invalid YAML: {e}", line) from e


def load_cases(path: Path | str) -> list[Case]:
    """Read a ``.jsonl`` or ``.yaml`` case file; errors name the file and line of the bad case."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(path, f"cannot read the case file: {e}") from e
    suffix = path.suffix.lower()
    if suffix in JSONL_SUFFIXES:
        rows = _jsonl_rows(path, text)
    elif suffix in YAML_SUFFIXES:
        rows = _yaml_rows(path, text)
    else:
        raise DatasetError(path, f"unknown case file type '{suffix}'; use .jsonl, .yaml or .yml")
    cases: list[Case] = []
    first_line: dict[str, int] = {}
    for line, raw in rows:
        case = _record(path, line, raw)
        if case.id in first_line:
            raise DatasetError(path, f"duplicate case id '{case.id}' (first on line {first_line[case.id]})", line)
        first_line[case.id] = line
        cases.append(case)
    return cases


def dump_cases(cases: Sequence[Case], path: Path | str) -> None:
    """Write cases as ``.jsonl`` or ``.yaml`` (chosen by suffix), languages written out."""
    path = Path(path)
    records = [CaseRecord.from_case(c).model_dump() for c in cases]
    suffix = path.suffix.lower()
    if suffix in JSONL_SUFFIXES:
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    elif suffix in YAML_SUFFIXES:
        text = yaml.safe_dump(records, allow_unicode=True, sort_keys=False)
    else:
        raise DatasetError(path, f"unknown case file type '{suffix}'; use .jsonl, .yaml or .yml")
    path.write_text(text, encoding="utf-8")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(path, f"cannot read: {e}") from e
    except json.JSONDecodeError as e:
        raise DatasetError(path, f"invalid JSON: {e.msg}", e.lineno) from e


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def from_squad(path: Path | str, lang: str | None = None) -> Imported:
    """Import a SQuAD/KorQuAD v1 JSON file: one case per question, one document per paragraph.

    A paragraph's id is ``"{title}#{paragraph_index}"`` (index within its article, from 0), and it is each of
    its questions' gold source. Duplicate reference answers are dropped (the score is a max over them).
    SQuAD v2 questions marked ``is_impossible`` become unanswerable cases with no gold source. The
    document title has underscores turned into spaces, so that it reads (and tokenises) as words.
    """
    path = Path(path)
    data = _read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise DatasetError(path, "not a SQuAD-format file (no top-level 'data' list)")
    cases: list[Case] = []
    docs: list[CorpusDoc] = []
    seen_docs: set[str] = set()
    seen_cases: set[str] = set()
    try:
        for article in data["data"]:
            title = str(article["title"])
            for i, paragraph in enumerate(article["paragraphs"]):
                doc_id = f"{title}#{i}"
                if doc_id in seen_docs:
                    raise DatasetError(path, f"duplicate paragraph id '{doc_id}' (article title repeated)")
                seen_docs.add(doc_id)
                docs.append(CorpusDoc(id=doc_id, title=title.replace("_", " "), text=paragraph["context"]))
                for qa in paragraph["qas"]:
                    qid = str(qa["id"])
                    if qid in seen_cases:
                        raise DatasetError(path, f"duplicate question id '{qid}'")
                    seen_cases.add(qid)
                    impossible = bool(qa.get("is_impossible", False))
                    answers = () if impossible else _unique(a["text"] for a in qa["answers"])
                    cases.append(
                        Case(
                            id=qid,
                            question=qa["question"],
                            answers=answers,
                            sources=() if impossible else (doc_id,),
                            lang=lang or detect_lang(qa["question"]),
                            unanswerable=impossible,
                        )
                    )
    except (KeyError, TypeError) as e:
        raise DatasetError(path, f"not a SQuAD-format file: missing or malformed field {e}") from e
    log.info("imported %d questions over %d paragraphs from %s", len(cases), len(docs), path)
    return Imported(cases=tuple(cases), corpus=tuple(docs))


class BeirCorpus:
    """A BEIR ``corpus.jsonl`` read lazily, afresh on every iteration."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __iter__(self) -> Iterator[CorpusDoc]:
        with self.path.open(encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                    yield CorpusDoc(id=str(row["_id"]), title=str(row.get("title") or ""), text=str(row["text"]))
                except (json.JSONDecodeError, KeyError, TypeError) as e:
                    raise DatasetError(self.path, f"bad corpus row: {e}", n) from e


# The first column's name in BEIR's optional header line ("query-id\tcorpus-id\tscore").
_QRELS_HEADER_NAMES = frozenset({"query-id", "query_id", "qid"})


def _read_qrels(path: Path) -> dict[str, list[str]]:
    """Relevant corpus ids per query (score > 0), in file order."""
    gold: dict[str, list[str]] = {}
    with path.open(encoding="utf-8", newline="") as f:
        for n, row in enumerate(csv.reader(f, delimiter="\t"), 1):
            if not row or not "".join(row).strip():
                continue
            if len(row) != 3:
                raise DatasetError(path, f"expected 3 tab-separated columns, not {len(row)}", n)
            qid, doc_id, score = row
            if n == 1 and qid.strip().lower() in _QRELS_HEADER_NAMES:
                continue
            try:
                relevance = float(score)
            except ValueError as e:
                raise DatasetError(path, f"score '{score}' is not a number", n) from e
            if relevance > 0:
                gold.setdefault(qid, []).append(doc_id)
    return gold


def from_beir(folder: Path | str, split: str = "test", lang: str | None = None) -> Imported:
    """Import a BEIR folder (``corpus.jsonl``, ``queries.jsonl``, ``qrels.tsv`` or ``qrels/{split}.tsv``).

    Gold sources are the corpus ids with relevance > 0; queries with none are skipped, as BEIR's evaluation
    does. Optional query fields: ``answers`` (list of strings) become reference answers, ``domain`` a
    ``domain:<name>`` tag.
    """
    folder = Path(folder)
    corpus_path, queries_path = folder / "corpus.jsonl", folder / "queries.jsonl"
    qrels_path = folder / "qrels.tsv"
    if not qrels_path.exists():
        qrels_path = folder / "qrels" / f"{split}.tsv"
    for p in (corpus_path, queries_path, qrels_path):
        if not p.is_file():
            raise DatasetError(p, "missing file of a BEIR folder")
    gold = _read_qrels(qrels_path)
    cases: list[Case] = []
    seen: set[str] = set()
    skipped = 0
    for n, raw in _jsonl_rows(queries_path, queries_path.read_text(encoding="utf-8")):
        if not isinstance(raw, dict) or "_id" not in raw or not str(raw.get("text") or "").strip():
            raise DatasetError(queries_path, "a query row is an object with '_id' and a non-empty 'text'", n)
        qid, question = str(raw["_id"]), str(raw["text"])
        answers = raw.get("answers") or []
        if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
            raise DatasetError(queries_path, "'answers' must be a list of strings", n)
        if qid in seen:
            raise DatasetError(queries_path, f"duplicate query id '{qid}'", n)
        seen.add(qid)
        if qid not in gold:
            skipped += 1
            continue
        domain = raw.get("domain")
        cases.append(
            Case(
                id=qid,
                question=question,
                answers=_unique(answers),
                sources=_unique(gold[qid]),
                tags=(f"domain:{domain}",) if isinstance(domain, str) and domain else (),
                lang=lang or detect_lang(question),
            )
        )
    unknown = sorted(set(gold) - seen)
    if unknown:
        raise DatasetError(qrels_path, f"{len(unknown)} query ids are not in queries.jsonl, e.g. '{unknown[0]}'")
    if skipped:
        log.info("skipped %d queries of %s without relevant documents", skipped, folder)
    return Imported(cases=tuple(cases), corpus=BeirCorpus(corpus_path))
