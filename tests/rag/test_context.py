"""Context assembly (dedupe, MMR, neighbours, budget) and the follow-up rewrite heuristic."""

from __future__ import annotations

from rag.context import (
    cap_per_source,
    estimate_tokens,
    fit_budget,
    is_followup,
    rewrite_messages,
    select,
    standalone_heuristic,
    with_neighbors,
)
from rag.types import Chunk, Message, ScoredChunk


def hit(i: int, text: str, score: float, source: str = "s") -> ScoredChunk:
    return ScoredChunk(Chunk(id=f"c{i}", text=text, source=source, index=i), score)


def test_near_duplicates_of_a_better_hit_are_dropped():
    hits = [
        hit(0, "GPU jobs may run for at most 72 hours on the cluster.", 0.9),
        hit(1, "GPU jobs may run for at most 72 hours on the cluster!", 0.8),
        hit(2, "The cafeteria opens at eight.", 0.7),
    ]
    assert [h.chunk.id for h in select(hits, 3)] == ["c0", "c2"]


def test_korean_near_duplicates_are_dropped_too():
    hits = [hit(0, "휴가는 2주 전에 신청해야 합니다.", 0.9), hit(1, "휴가는 2주 전에 신청해야 합니다", 0.8)]
    assert len(select(hits, 2)) == 1


def test_mmr_prefers_a_diverse_hit_over_a_similar_better_one():
    hits = [
        hit(0, "alpha beta gamma delta epsilon", 1.0),
        hit(1, "alpha beta gamma delta zeta", 0.95),
        hit(2, "cafeteria opening hours", 0.9),
    ]
    assert [h.chunk.id for h in select(hits, 2, dedupe=0.99)] == ["c0", "c1"]
    assert [h.chunk.id for h in select(hits, 2, dedupe=0.99, mmr_lambda=0.5)] == ["c0", "c2"]


def test_token_budget_keeps_whole_sources_in_order_and_cuts_only_a_lone_oversized_first():
    hits = [hit(0, "a" * 400, 0.9), hit(1, "b" * 400, 0.8), hit(2, "c" * 400, 0.7)]
    assert [h.chunk.id for h in fit_budget(hits, 250)] == ["c0", "c1"]
    cut = fit_budget([hit(0, "x" * 4000, 0.9)], 100)
    assert len(cut) == 1 and estimate_tokens(cut[0].chunk.text) <= 101


def test_korean_text_counts_more_tokens_per_character_than_english():
    assert estimate_tokens("가" * 300) > estimate_tokens("a" * 300)


def test_neighbours_of_the_same_document_are_merged_in_order():
    same = [Chunk(id=f"n{i}", text=f"part {i}", source="s", index=i) for i in range(5)]
    other = Chunk(id="o", text="elsewhere", source="t", index=3)
    merged = with_neighbors(hit(2, "part 2", 0.9), [*same, other], 1)
    assert merged.chunk.text == "part 1\npart 2\npart 3"
    assert with_neighbors(hit(2, "part 2", 0.9), same, 0).chunk.text == "part 2"


def test_followups_are_recognised_in_english_and_korean():
    assert is_followup("What about CPU jobs?")
    assert is_followup("And how long does it take?")
    assert is_followup("그럼 CPU 작업은요?")
    assert not is_followup("How many vacation days do new employees get per year?")


def test_heuristic_rewrite_prepends_the_previous_user_question():
    history = [Message("user", "How long may a GPU job run?"), Message("assistant", "72 hours [1].")]
    assert standalone_heuristic("What about CPU jobs?", history) == "How long may a GPU job run? What about CPU jobs?"
    standalone = "How many vacation days do new employees get per year?"
    assert standalone_heuristic(standalone, history) == standalone
    assert standalone_heuristic("What about CPU jobs?", []) == "What about CPU jobs?"


def test_llm_rewrite_prompt_carries_the_history_and_the_question():
    history = [Message("user", "GPU 작업의 최대 실행 시간은?"), Message("assistant", "72시간입니다 [1].")]
    (msg,) = rewrite_messages("그럼 CPU는?", history)
    assert "GPU 작업의 최대 실행 시간은?" in msg.content and "그럼 CPU는?" in msg.content


def test_a_dominating_source_is_capped_and_other_documents_get_its_slots():
    ranked = [hit(i, f"api {i}", 1 - i / 20, "api.md") for i in range(8)] + [
        hit(10, "guide", 0.5, "guide.md"),
        hit(11, "policy", 0.4, "policy.md"),
        hit(12, "faq", 0.3, "faq.md"),
    ]
    top = cap_per_source(ranked, 5, per_source=2)
    assert [h.chunk.id for h in top] == ["c0", "c1", "c10", "c11", "c12"]


def test_with_few_matching_sources_the_cap_relaxes_to_fill_k_best_first():
    ranked = [hit(i, f"api {i}", 1 - i / 20, "api.md") for i in range(6)] + [hit(10, "guide", 0.5, "guide.md")]
    top = cap_per_source(ranked, 5, per_source=2)
    assert [h.chunk.id for h in top] == ["c0", "c1", "c10", "c2", "c3"]
    assert [h.chunk.id for h in cap_per_source(ranked[:4], 5, per_source=2)] == ["c0", "c1", "c2", "c3"]
    assert cap_per_source(ranked, 3, per_source=0) == ranked[:3]
