"""The lexical index against BM25 computed over the same chunks from scratch, its file, migration and concurrency."""

from __future__ import annotations

import json
import math
import random
import sqlite3
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import rag.lexical.postings as postings
from rag.lexical.fusion import fuse_lexical
from rag.lexical.index import BM25_B, BM25_K1, LexicalIndex
from rag.lexical.tokens import bigram_tokens, hangul_fusion, lexical_text, make_tokenizer
from rag.types import Chunk, Filter, matches, matches_nothing

EN = (  # noqa: SIM905 - a word list reads better as one string
    "gpu cluster job queue node memory storage quota policy vacation request team lead budget "
    "report travel expense laptop security badge office printer network backup server training "
    "model dataset"
).split()
KO = (  # noqa: SIM905 - a word list reads better as one string
    "연구실 출입 사원증 휴가 신청 팀장 예산 보고서 출장 경비 노트북 보안 사무실 프린터 네트워크 백업 서버 "
    "학습 모델 데이터 클러스터 작업 메모리 저장소 정책 "
    "지방은행 시중은행 전환"
).split()
PARTICLES = ("은", "는", "이", "가", "을", "를", "에", "으로", "에서", "")


def corpus(n: int, seed: int) -> list[Chunk]:
    """Korean, English and mixed chunks with repeated words, a few sources, ACLs and pages, two without tokens."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        kind = i % 3
        words = []
        for _ in range(rnd.randint(3, 40)):
            if kind == 0 or (kind == 2 and rnd.random() < 0.5):
                words.append(rnd.choice(EN[: rnd.randint(3, len(EN))]))
            else:
                words.append(rnd.choice(KO[: rnd.randint(3, len(KO))]) + rnd.choice(PARTICLES))
        text = " ".join(words) if i % 97 != 5 else "... !!"
        groups = (("public",), ("hr",), ("eng", "hr"), ())[rnd.randrange(4)]
        out.append(
            Chunk(
                id=f"c{i:04d}",
                text=text,
                source=f"file:///docs/{i % 7}.md",
                title=rnd.choice(["", "GPU policy", "휴가 규정"]),
                page=rnd.choice([None, 1, 2]),
                index=i,
                groups=groups,
                lang=rnd.choice(["en", "ko"]),
            )
        )
    return out


class Reference:
    """The chunks in insertion order, as a dict keeps them, ranked from scratch on every search."""

    def __init__(self, tokenizer: str) -> None:
        self.tokenizer = tokenizer
        self.tokenize = make_tokenizer(tokenizer)
        self.docs: dict[str, Chunk] = {}
        self._models: dict[tuple[str, tuple[Chunk, ...]], Any] = {}

    def ranking(self, tokens: list[str], of: str, k: int, flt: Filter | None) -> list[tuple[str, float]]:
        """bm25s over every chunk, filtered before the top-k: the index's previous implementation."""
        order = list(self.docs.values())
        model = self.model(order, of)
        ids = model.get_tokens_ids(tokens)
        if not ids:
            return []
        scores = np.asarray(model.get_scores_from_ids(ids), dtype=np.float64)
        if flt is not None:
            scores = np.where([matches(c, flt) for c in order], scores, 0.0)
        top = np.argsort(-scores, kind="stable")[: min(k, int((scores > 0).sum()))]
        return [(order[i].id, float(scores[i])) for i in top]

    def model(self, order: list[Chunk], of: str) -> Any:
        """bm25s over the chunks in this order (cached while they stay the same)."""
        import bm25s

        key = (of, tuple(order))
        if key not in self._models:
            tok = self.tokenize if of == "tokens" else bigram_tokens
            model = bm25s.BM25(k1=BM25_K1, b=BM25_B)
            model.index([tok(lexical_text(c)) or [""] for c in order], show_progress=False)
            self._models = {key: model, **{k: v for k, v in self._models.items() if k[0] != of}}
        return self._models[key]

    def plain(self, tokens: list[str], k: int, flt: Filter | None) -> list[tuple[str, float]]:
        """Textbook BM25 (Lucene idf) in float64, for the formula itself."""
        docs = [(c, self.tokenize(lexical_text(c)) or [""]) for c in self.docs.values()]
        avgdl = sum(len(t) for _, t in docs) / len(docs)
        df = {w: sum(1 for _, t in docs if w in t) for w in set(tokens)}
        out = []
        for c, t in docs:
            if flt is not None and not matches(c, flt):
                continue
            s = 0.0
            for w in tokens:
                tf = t.count(w)
                if tf:
                    idf = math.log(1 + (len(docs) - df[w] + 0.5) / (df[w] + 0.5))
                    s += idf * tf / (tf + BM25_K1 * (1 - BM25_B + BM25_B * len(t) / avgdl))
            if s > 0:
                out.append((c.id, s))
        return sorted(out, key=lambda x: -x[1])[:k]

    def search(self, query: str, k: int, flt: Filter | None) -> list[tuple[str, float]]:
        """What the index must return: the morpheme ranking, fused with bigrams for a Korean kiwi query."""
        tokens = self.tokenize(query)
        if not tokens or matches_nothing(flt) or not self.docs:
            return []
        hits = self.ranking(tokens, "tokens", k, flt)
        if hangul_fusion(self.tokenizer, query):
            from rag.types import ScoredChunk

            def scored(r: list[tuple[str, float]]) -> list[ScoredChunk]:
                return [ScoredChunk(self.docs[i], s) for i, s in r]

            bigrams = self.ranking(bigram_tokens(query), "bigrams", k, flt)
            return [(h.chunk.id, h.score) for h in fuse_lexical([scored(hits), scored(bigrams)], k)]
        return hits


QUERIES = ["GPU cluster job", "휴가 신청서 팀장", "지방은행 전환", "budget report 보고서", "printer", "사원증으로 출입"]
FILTERS = [
    None,
    Filter(groups=("hr",)),
    Filter(groups=("eng", "nobody")),
    Filter(sources=("file:///docs/1.md", "file:///docs/3.md")),
    Filter(groups=("public",), where={"lang": "ko", "page": 2}),
    Filter(where={"title": "GPU policy"}),
    Filter(groups=()),
]


def assert_same(index: LexicalIndex, ref: Reference, k: int = 10) -> None:
    for query in QUERIES:
        for flt in FILTERS:
            got = [(h.chunk.id, h.score) for h in index.search(query, k, flt)]
            assert got == ref.search(query, k, flt), (query, flt)


@pytest.mark.parametrize("tokenizer", ["kiwi", "word"])
@pytest.mark.parametrize(("merge_min", "pending_max"), [(1_000_000, 2_000_000), (50, 2_000_000), (1_000_000, 100)])
def test_scores_and_order_equal_bm25_over_all_chunks_through_upserts_deletes_and_reload(
    tokenizer: str, merge_min: int, pending_max: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    # Small thresholds: changes go into the base after almost every batch (merge_min 50), or are folded into
    # the delta as they come (pending_max 100), so every path is compared with the reference.
    monkeypatch.setattr(postings, "_MERGE_MIN", merge_min)
    monkeypatch.setattr(postings, "_PENDING_MAX", pending_max)
    chunks = corpus(400, seed=1)
    path = tmp_path / "lex.sqlite3"
    index, ref = LexicalIndex(tokenizer, path), Reference(tokenizer)
    for start in range(0, 300, 60):
        index.upsert(chunks[start : start + 60])
        ref.docs.update((c.id, c) for c in chunks[start : start + 60])
    assert_same(index, ref)
    # Replaced chunks keep their place; deleted ones leave; new ones and re-added ones go last.
    changed = [replace(c, text=c.text + " gpu 휴가", groups=("hr",)) for c in chunks[10:40]]
    index.upsert(changed)
    ref.docs.update((c.id, c) for c in changed)
    gone = [c.id for c in chunks[100:150]] + ["never-indexed"]
    index.delete(gone)
    for i in gone:
        ref.docs.pop(i, None)
    index.upsert(chunks[300:] + chunks[120:125])
    ref.docs.update((c.id, c) for c in chunks[300:] + chunks[120:125])
    assert_same(index, ref)
    assert len(index) == len(ref.docs) and index.ids() == set(ref.docs)
    # A fresh process reads the file: same results.
    again = LexicalIndex(tokenizer, path)
    assert again.load()
    assert_same(again, ref)
    again.delete([c.id for c in chunks[:5]])
    for c in chunks[:5]:
        ref.docs.pop(c.id)
    assert_same(again, ref)


def test_bm25_scores_are_the_textbook_formula():
    index, ref = LexicalIndex("word"), Reference("word")
    chunks = corpus(200, seed=2)
    index.upsert(chunks)
    ref.docs.update((c.id, c) for c in chunks)
    for query in ("gpu cluster job", "printer printer budget"):
        tokens = ref.tokenize(query)
        for flt in (None, Filter(groups=("hr",))):
            got = index.search(query, 20, flt)
            want = ref.plain(tokens, 20, flt)
            assert [h.score for h in got] == pytest.approx([s for _, s in want], rel=1e-5)
            assert {h.chunk.id for h in got} == {i for i, _ in want} or len(want) == 20


def test_hits_carry_the_whole_chunk_read_back_from_the_file(tmp_path: Path):
    chunk = Chunk(
        id="x", text="연구실 출입은 사원증으로 합니다.", source="s", title="규정", page=3, groups=("hr", "eng")
    )
    index = LexicalIndex("kiwi", tmp_path / "lex.sqlite3")
    index.upsert([chunk])
    again = LexicalIndex("kiwi", tmp_path / "lex.sqlite3")
    assert again.load()
    assert again.search("사원증", 1)[0].chunk == chunk
    assert again.stale([replace(chunk, text="")]) == []
    assert again.stale([replace(chunk, text="", groups=("hr",))]) == ["x"]


def legacy_json(path: Path, chunks: list[Chunk], tokenizer: str, fmt: int = 3) -> None:
    """The one JSON file earlier versions wrote (format 3)."""
    tok = make_tokenizer(tokenizer)
    docs = [{"chunk": asdict(c), "tokens": tok(lexical_text(c))} for c in chunks]
    path.write_text(json.dumps({"format": fmt, "tokenizer": tokenizer, "docs": docs}, ensure_ascii=False))


def test_a_json_index_of_the_previous_version_is_converted_once_and_removed(tmp_path: Path):
    chunks = corpus(120, seed=3)
    legacy_json(tmp_path / "docs.json", chunks, "kiwi")
    index = LexicalIndex("kiwi", tmp_path / "docs.sqlite3")
    assert index.load()
    assert not (tmp_path / "docs.json").exists() and (tmp_path / "docs.sqlite3").is_file()
    ref = Reference("kiwi")
    ref.docs.update((c.id, c) for c in chunks)
    assert_same(index, ref)
    again = LexicalIndex("kiwi", tmp_path / "docs.sqlite3")
    assert again.load() and len(again) == len(chunks)


@pytest.mark.parametrize("content", ["{broken", "other-format"])
def test_an_unusable_json_index_is_dropped_and_the_store_rebuilds(tmp_path: Path, content: str):
    legacy = tmp_path / "docs.json"
    if content == "other-format":
        legacy_json(legacy, corpus(5, seed=4), "kiwi", fmt=2)
    else:
        legacy.write_text(content)
    index = LexicalIndex("kiwi", tmp_path / "docs.sqlite3")
    assert not index.load()
    assert not legacy.exists() and len(index) == 0


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_a_damaged_file_is_reported_set_aside_and_the_index_starts_empty(tmp_path: Path, damage: str, caplog):
    path = tmp_path / "lex.sqlite3"
    index = LexicalIndex("word", path)
    chunks = corpus(600, seed=5)
    index.upsert(chunks)
    index.close()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"not sqlite at all " * 1000)
    again = LexicalIndex("word", path)
    assert not again.load()
    assert "unreadable" in caplog.text
    assert (tmp_path / "lex.sqlite3.corrupt").is_file()
    # The store rebuilds it by upserting again: a working file.
    again.upsert(chunks[:10])
    third = LexicalIndex("word", path)
    assert third.load() and len(third) == 10


def test_a_file_built_with_another_tokenizer_is_emptied_and_rebuilt(tmp_path: Path):
    path = tmp_path / "lex.sqlite3"
    LexicalIndex("word", path).upsert(corpus(20, seed=6))
    other = LexicalIndex("bigram", path)
    assert not other.load() and len(other) == 0
    other.upsert(corpus(3, seed=6))
    assert LexicalIndex("bigram", path).load()
    assert not LexicalIndex("word", path).load()


def test_the_synced_token_survives_a_reload_and_goes_with_a_rebuild(tmp_path: Path):
    path = tmp_path / "lex.sqlite3"
    index = LexicalIndex("kiwi", path)
    index.upsert(corpus(20, seed=8))
    index.set_synced("m1")
    index.close()
    again = LexicalIndex("kiwi", path)
    assert again.load() and len(again) == 20  # a recorded token does not make the file look foreign
    assert again.synced() == "m1"
    again.set_synced(None)
    assert LexicalIndex("kiwi", path).synced() is None
    again.set_synced("m2")
    other = LexicalIndex("word", path)
    assert not other.load() and other.synced() is None  # emptied for another tokeniser: it matches nothing


def test_korean_queries_after_a_reload_rank_as_before_it(tmp_path: Path):
    path = tmp_path / "lex.sqlite3"
    index = LexicalIndex("kiwi", path)
    chunks = corpus(200, seed=9)
    index.upsert(chunks)
    korean = [c for c in chunks if any("\uac00" <= ch <= "\ud7a3" for ch in c.text)]
    query = " ".join(korean[0].text.split()[:3])
    assert hangul_fusion("kiwi", query)
    before = [(h.chunk.id, h.score) for h in index.search(query, 10)]
    again = LexicalIndex("kiwi", path)
    again.load()
    assert before and [(h.chunk.id, h.score) for h in again.search(query, 10)] == before


def test_every_batch_is_committed_without_save(tmp_path: Path):
    path = tmp_path / "lex.sqlite3"
    index = LexicalIndex("word", path)
    index.upsert(corpus(30, seed=7))
    index.delete(["c0001"])
    # No save(), no close(): as if the process died here.
    reader = LexicalIndex("word", path)
    assert reader.load() and len(reader) == 29 and "c0001" not in reader.ids()


_WRITER = """
import sys
from rag.lexical.index import LexicalIndex
from tests.rag.test_lexical_index import corpus
path, part = sys.argv[1], int(sys.argv[2])
chunks = [c for i, c in enumerate(corpus(400, seed=8)) if i % 2 == part]
index = LexicalIndex("kiwi", __import__("pathlib").Path(path))
index.load()
for start in range(0, len(chunks), 10):
    index.upsert(chunks[start : start + 10])
    if start % 50 == 0:
        index.delete([chunks[start].id])
"""


def test_two_processes_writing_one_file_at_once_lose_nothing(tmp_path: Path):
    path = tmp_path / "shared.sqlite3"
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(path), str(part)], stderr=subprocess.PIPE, text=True)
        for part in (0, 1)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    db.close()
    chunks = corpus(400, seed=8)
    deleted = {c.id for part in (0, 1) for j, c in enumerate(chunks[part::2]) if j % 50 == 0}
    index = LexicalIndex("kiwi", path)
    assert index.load()
    assert index.ids() == {c.id for c in chunks} - deleted
    # Token ids assigned by both processes agree: BM25 as over the same chunks, in the file's order.
    ref = Reference("kiwi")
    by_id = {c.id: c for c in chunks}
    rows = sqlite3.connect(path).execute("SELECT id FROM chunks ORDER BY seq").fetchall()
    ref.docs.update((i, by_id[i]) for (i,) in rows)
    assert_same(index, ref)
