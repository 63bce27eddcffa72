"""Metrics against values computed by hand from their definitions."""

from __future__ import annotations

import math

import pytest

from eval.metrics import (
    answer_f1,
    char_f1,
    citation_precision,
    citation_recall,
    cost,
    exact_match,
    hit_at_k,
    is_refusal,
    mrr_at_k,
    ndcg_at_k,
    normalize_korquad,
    normalize_squad,
    recall_at_k,
    refusal_correct,
    rouge_l,
    token_f1,
)
from rag.types import Usage

# --- retrieval -------------------------------------------------------------------------------------------


def test_ndcg_with_gold_at_ranks_one_and_three_of_two_gold() -> None:
    expected = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert ndcg_at_k(["g1", "x", "g2"], {"g1", "g2"}, 10) == pytest.approx(expected)
    assert expected == pytest.approx(0.919720, abs=1e-6)


def test_ndcg_ideal_is_capped_at_k() -> None:
    # Three gold ids but k = 2: the ideal DCG has two terms, so two gold hits at the top score 1.
    assert ndcg_at_k(["g1", "g2", "x"], {"g1", "g2", "g3"}, 2) == pytest.approx(1.0)
    # Cut at k = 2 the second gold (rank 3) falls out: 1 / (1 + 1/log2(3)).
    assert ndcg_at_k(["g1", "x", "g2"], {"g1", "g2"}, 2) == pytest.approx(1 / (1 + 1 / math.log2(3)))


def test_ndcg_is_zero_without_gold_in_top_k() -> None:
    assert ndcg_at_k(["x", "y"], {"g"}, 2) == 0.0


def test_recall_counts_gold_share_in_top_k() -> None:
    ranked = ["g1", "x", "g2", "g3"]
    gold = {"g1", "g2", "g3"}
    assert recall_at_k(ranked, gold, 1) == pytest.approx(1 / 3)
    assert recall_at_k(ranked, gold, 2) == pytest.approx(1 / 3)
    assert recall_at_k(ranked, gold, 3) == pytest.approx(2 / 3)
    assert recall_at_k(ranked, gold, 10) == pytest.approx(1.0)


def test_mrr_is_reciprocal_rank_of_first_gold_within_k() -> None:
    assert mrr_at_k(["x", "y", "g"], {"g"}, 10) == pytest.approx(1 / 3)
    assert mrr_at_k(["x", "y", "g"], {"g"}, 2) == 0.0
    assert mrr_at_k(["g", "g2"], {"g", "g2"}, 10) == 1.0


def test_hit_at_k() -> None:
    assert hit_at_k(["x", "g"], ["g"], 2) == 1.0
    assert hit_at_k(["x", "g"], ["g"], 1) == 0.0


def test_repeated_ids_count_once_at_their_best_rank() -> None:
    # Two chunks of document x come first; after de-duplication g is at rank 2.
    ranked = ["x", "x", "g"]
    assert hit_at_k(ranked, {"g"}, 2) == 1.0
    assert mrr_at_k(ranked, {"g"}, 2) == pytest.approx(0.5)
    assert ndcg_at_k(["g", "g"], {"g", "h"}, 2) == pytest.approx(1 / (1 + 1 / math.log2(3)))


def test_retrieval_metrics_refuse_empty_gold_and_bad_k() -> None:
    with pytest.raises(ValueError, match="no gold ids"):
        ndcg_at_k(["x"], set(), 10)
    with pytest.raises(ValueError, match="k must be"):
        recall_at_k(["x"], {"x"}, 0)


# --- answers: SQuAD --------------------------------------------------------------------------------------


def test_squad_normalisation_drops_case_punctuation_articles_and_extra_spaces() -> None:
    assert normalize_squad("The  Cat!") == "cat"
    assert normalize_squad("An apple, the pear and a fig.") == "apple pear and fig"
    # Articles go only as whole words.
    assert normalize_squad("Theater anthem") == "theater anthem"


def test_exact_match_after_normalisation() -> None:
    assert exact_match("The  Cat!", ["cat"]) == 1.0
    assert exact_match("the Eiffel Tower", ["Eiffel Tower"]) == 1.0
    assert exact_match("Eiffel", ["Eiffel Tower"]) == 0.0
    assert exact_match("Eiffel", ["Eiffel Tower", "eiffel"]) == 1.0


def test_token_f1_partial_overlap_by_hand() -> None:
    # pred -> [quick, brown, fox]; ref -> [quick, red, fox, jumps]; overlap 2: P = 2/3, R = 1/2, F1 = 4/7.
    assert token_f1("the quick brown fox", ["a quick red fox jumps"]) == pytest.approx(4 / 7)


def test_token_f1_takes_the_best_reference() -> None:
    # Against "brown fox": overlap 2, P = 2/3, R = 1, F1 = 0.8 > 4/7.
    assert token_f1("the quick brown fox", ["a quick red fox jumps", "brown fox"]) == pytest.approx(0.8)


def test_token_f1_counts_repeated_tokens_once_per_match() -> None:
    # Counter overlap: 1 common token, P = 1/3, R = 1, F1 = 0.5.
    assert token_f1("fox fox fox", ["fox"]) == pytest.approx(0.5)
    assert token_f1("dog", ["fox"]) == 0.0


def test_answer_metrics_refuse_empty_references() -> None:
    with pytest.raises(ValueError, match="no reference answers"):
        token_f1("x", [])


# --- answers: KorQuAD ------------------------------------------------------------------------------------


def test_korquad_normalisation_removes_cjk_brackets_and_keeps_articles() -> None:
    assert normalize_korquad("《훈민정음》") == "훈민정음"
    assert normalize_korquad("〈서울〉의 ‘강남’ (區)") == "서울 의 강남 區"
    assert normalize_korquad("The Cat") == "the cat"


def test_char_f1_on_korean_by_hand() -> None:
    # pred 5 characters, ref 2, overlap 2: P = 2/5, R = 1, F1 = 4/7.
    assert char_f1("서울특별시", ["서울"]) == pytest.approx(4 / 7)
    # A trailing particle: 5 vs 4 characters, overlap 4: P = 4/5, R = 1, F1 = 8/9.
    assert char_f1("세종대왕이", ["세종대왕"]) == pytest.approx(8 / 9)
    assert char_f1("하하하", ["하"]) == pytest.approx(0.5)


def test_char_f1_ignores_spaces_but_korquad_exact_match_does_not() -> None:
    assert char_f1("서울 특별시", ["서울특별시"]) == pytest.approx(1.0)
    assert exact_match("서울 특별시", ["서울특별시"], lang="ko") == 0.0
    assert exact_match("《훈민정음》", ["훈민정음"], lang="ko") == 1.0


def test_answer_f1_chooses_characters_for_korean_and_tokens_otherwise() -> None:
    assert answer_f1("서울특별시", ["서울"], "ko") == pytest.approx(4 / 7)
    assert answer_f1("서울특별시", ["서울"], "en") == 0.0
    assert answer_f1("the quick brown fox", ["a quick red fox jumps"], "en") == pytest.approx(4 / 7)


# --- ROUGE-L ---------------------------------------------------------------------------------------------


def test_rouge_l_by_hand() -> None:
    # [cat, sat, on, mat] vs [cat, was, sitting, on, mat]: LCS = cat on mat = 3; P = 3/4, R = 3/5, F = 2/3.
    assert rouge_l("the cat sat on the mat", ["a cat was sitting on a mat"]) == pytest.approx(2 / 3)


def test_rouge_l_respects_order_where_f1_does_not() -> None:
    assert token_f1("mat on cat", ["cat on mat"]) == pytest.approx(1.0)
    assert rouge_l("mat on cat", ["cat on mat"]) == pytest.approx(1 / 3)


def test_rouge_l_over_korean_characters_by_hand() -> None:
    # [서울은수도] vs [대한민국의수도는서울]: LCS = 2 (수도 or 서울); P = 2/5, R = 2/10, F = 4/15.
    assert rouge_l("서울은 수도", ["대한민국의 수도는 서울"], lang="ko") == pytest.approx(4 / 15)
    assert rouge_l("서울은 수도", ["대한민국의 수도는 서울", "서울은 수도다"], lang="ko") == pytest.approx(
        2 * 1 * (5 / 6) / (1 + 5 / 6)
    )


# --- citations -------------------------------------------------------------------------------------------


def test_citation_precision_and_recall_over_distinct_ids() -> None:
    cited = ["a", "b", "b", "c"]
    assert citation_precision(cited, {"a", "d"}) == pytest.approx(1 / 3)
    assert citation_recall(cited, {"a", "d"}) == pytest.approx(1 / 2)


def test_citing_nothing_scores_zero() -> None:
    assert citation_precision([], {"a"}) == 0.0
    assert citation_recall([], {"a"}) == 0.0
    with pytest.raises(ValueError):
        citation_recall(["a"], [])


# --- refusals --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "I could not find this in the available documents.",
        "I don’t know.",
        "The answer is not in the documents provided.",
        "제공된 문서에서 답을 찾을 수 없습니다.",
        "문서에 해당 정보가 나와 있지 않습니다.",
    ],
)
def test_refusals_are_recognised_in_english_and_korean(text: str) -> None:
    assert is_refusal(text)
    assert refusal_correct(text, unanswerable=True) == 1.0
    assert refusal_correct(text, unanswerable=False) == 0.0


def test_an_answer_is_not_a_refusal() -> None:
    assert refusal_correct("The Broncos won 24–10 [1].", unanswerable=False) == 1.0
    assert refusal_correct("서울입니다 [1].", unanswerable=True) == 0.0


def test_refusal_matching_misses_paraphrases_as_documented() -> None:
    assert not is_refusal("The sources are silent on this point.")


# --- cost ------------------------------------------------------------------------------------------------


def test_cost_from_usage_and_per_million_prices() -> None:
    assert cost(Usage(prompt_tokens=1000, completion_tokens=500), 0.15, 0.60) == pytest.approx(0.00045)
    assert cost(Usage(), 1.0, 1.0) == 0.0
    with pytest.raises(ValueError):
        cost(Usage(1, 1), -1.0, 1.0)
