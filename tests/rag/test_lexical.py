"""Tokenisers (Korean and English) and the in-process BM25 index."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag.errors import ConfigError
from rag.lexical.fusion import LEXICAL_RRF_K, fuse_lexical
from rag.lexical.index import LexicalIndex
from rag.lexical.tokens import bigram_tokens, coverage, hangul_fusion, kiwi_tokens, make_tokenizer, word_tokens
from rag.types import Chunk, Filter, ScoredChunk


def chunk(i: int, text: str, groups: tuple[str, ...] = ("public",), title: str = "") -> Chunk:
    return Chunk(id=f"id{i}", text=text, source=f"file:///{i}.md", index=i, groups=groups, title=title)


def test_word_tokens_lowercase_drop_stopwords_and_fold_plurals():
    assert word_tokens("The GPU jobs of the Cluster") == ["gpu", "job", "cluster"]


def test_bigram_tokens_split_hangul_runs_into_character_bigrams_and_keep_latin_words():
    assert bigram_tokens("휴가는 GPU작업") == ["휴가", "가는", "gpu", "작업"]


def test_bigram_tokens_let_different_particles_share_the_stem_bigram():
    assert set(bigram_tokens("휴가는")) & set(bigram_tokens("휴가를")) == {"휴가"}


def test_kiwi_tokens_keep_content_morphemes_and_drop_particles_and_endings():
    tokens = kiwi_tokens("지방은행이 시중은행으로 전환하려면 무엇이 필요한가요?")
    assert {"지방", "은행", "시중", "전환", "필요"} <= set(tokens)
    assert not {"이", "으로", "가요", "ᆫ가"} & set(tokens)


def test_kiwi_tokens_of_english_text_equal_word_tokens():
    assert kiwi_tokens("How long may GPU jobs run?") == word_tokens("How long may GPU jobs run?")


def test_kiwi_leaves_text_without_hangul_to_bigrams_and_never_loads_the_analyser_for_it():
    import subprocess
    import sys

    code = (
        "import sys; from rag.lexical.tokens import kiwi_tokens, bigram_tokens\n"
        "text = 'Tokyo 東京都 is the capital; 北京 too'\n"
        "assert kiwi_tokens(text) == bigram_tokens(text), kiwi_tokens(text)\n"
        "assert '東京' in kiwi_tokens(text) and '京都' in kiwi_tokens(text)\n"
        "assert 'kiwipiepy' not in sys.modules\n"
        "kiwi_tokens('한국어 문장')\n"
        "assert 'kiwipiepy' in sys.modules\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


def test_every_token_is_a_run_of_word_characters_so_milvus_standard_analyzer_keeps_it():
    import re

    for tok in (word_tokens, bigram_tokens, kiwi_tokens):
        for t in tok("e-mail_address 휴가-신청서 (2024년) C++ 3.5GB"):
            assert re.fullmatch(r"[^\W_]+", t), (tok.__name__, t)


def test_unknown_tokenizer_is_a_config_error_naming_the_known_ones():
    with pytest.raises(ConfigError, match="bigram"):
        make_tokenizer("jieba")


def test_coverage_is_the_share_of_distinct_query_terms_found():
    assert coverage(["gpu", "job", "gpu"], ["job", "queue"]) == 0.5
    assert coverage([], ["x"]) == 0.0


def test_index_ranks_by_bm25_and_searches_the_title_too():
    index = LexicalIndex("kiwi")
    index.upsert([chunk(0, "cluster rules", title="GPU policy"), chunk(1, "cafeteria hours"), chunk(2, "gpu gpu gpu")])
    hits = index.search("GPU policy", 3)
    assert [h.chunk.id for h in hits] == ["id0", "id2"]


def test_index_filters_before_ranking_and_an_empty_acl_matches_nothing():
    index = LexicalIndex("word")
    index.upsert([chunk(i, "secret secret secret", groups=("hr",)) for i in range(50)])
    index.upsert([chunk(99, "a long text where secret appears once among many words", groups=("eng",))])
    assert [h.chunk.id for h in index.search("secret", 1, Filter(groups=("eng",)))] == ["id99"]
    assert index.search("secret", 1, Filter(groups=())) == []


def test_index_persists_and_a_file_built_with_another_tokenizer_is_not_used(tmp_path: Path):
    path = tmp_path / "lex.sqlite3"
    index = LexicalIndex("kiwi", path)
    index.upsert([chunk(0, "연구실 출입은 사원증으로 합니다.")])
    index.save()
    again = LexicalIndex("kiwi", path)
    assert again.load() and again.search("사원증", 1)[0].chunk.id == "id0"
    assert not LexicalIndex("bigram", path).load()
    path.write_text("{broken")
    assert not LexicalIndex("kiwi", path).load()


def test_kiwi_tokens_add_compounds_of_nouns_written_together_next_to_their_parts():
    tokens = kiwi_tokens("지방은행이 1,000억원을 시중 은행에")
    assert {"지방", "은행", "지방은행", "1000억원"} <= set(tokens)
    # Nouns apart ("시중 은행") make no compound.
    assert "시중은행" not in tokens


def test_fuse_lexical_adds_reciprocal_ranks_and_keeps_the_top_k():
    a, b, c = (ScoredChunk(chunk(i, t), 1.0) for i, t in enumerate("abc"))
    fused = fuse_lexical([[a, b], [b, c]], 2)
    assert [h.chunk.id for h in fused] == ["id1", "id0"]
    # Reciprocal ranks summed, scaled so that first in both rankings would score 1.
    best = 2 / (LEXICAL_RRF_K + 1)
    assert fused[0].score == pytest.approx((1 / (LEXICAL_RRF_K + 2) + 1 / (LEXICAL_RRF_K + 1)) / best)


def test_hangul_fusion_only_for_kiwi_and_korean_queries():
    assert hangul_fusion("kiwi", "휴가 신청은?")
    assert not hangul_fusion("kiwi", "How long may GPU jobs run?")
    assert not hangul_fusion("bigram", "휴가 신청은?")


def test_kiwi_index_fuses_morphemes_with_bigrams_for_korean_queries():
    index = LexicalIndex("kiwi")
    # The OCR split "신 청서" loses the morpheme 신청 but keeps the bigram 청서.
    docs = [
        chunk(0, "출장 신청서는 총무팀에 냅니다."),
        chunk(1, "휴가 신 청서는 팀장에게 냅니다."),
        chunk(2, "식당은 8시에 엽니다."),
    ]
    index.upsert(docs)
    hits = index.search("휴가 신청서", 3)
    assert {h.chunk.id for h in hits} == {"id0", "id1"}
    assert hits[0].chunk.id == "id1"
    # A query without Hangul is ranked by BM25 alone, with BM25 scores.
    english = LexicalIndex("kiwi")
    english.upsert([chunk(0, "GPU policy"), chunk(1, "cafeteria hours")])
    assert english.search("GPU", 2)[0].score > 0.1


def test_a_batch_tokenises_as_text_by_text_for_every_tokenizer():
    from rag.lexical.tokens import make_batch_tokenizer

    texts = [
        "지방은행의 1,000억원 대출은 3월까지 이월됩니다.",
        "GPU jobs may run for 72 hours.",
        "",
        "직원은 매년 25일의 유급 휴가를 받습니다. Unused days carry over.",
        "東京の天気",
        "휴가",
    ]
    for name in ("word", "bigram", "kiwi"):
        assert make_batch_tokenizer(name)(texts) == [make_tokenizer(name)(t) for t in texts], name
    assert make_batch_tokenizer("kiwi")([]) == []


def test_the_gate_token_cache_drops_the_least_recently_used_text():
    from rag.retrieval import TokenCache

    calls: list[list[str]] = []
    cache = TokenCache(lambda texts: calls.append(list(texts)) or [t.split() for t in texts], size=2)
    cache.fill(["a b", "c d", "a b"])
    assert calls == [["a b", "c d"]]  # one batch, each distinct text once
    assert cache.get("a b") == frozenset({"a", "b"}) and len(calls) == 1
    cache.fill(["e f"])  # "c d" was used least recently
    assert cache.missing(["a b", "c d", "e f"]) == ["c d"]
