"""Language routing, weighted RRF, embedder languages, the relevance gate."""

from __future__ import annotations

import numpy as np

from rag.config import RetrievalSettings
from rag.embedders.hashing import HashingEmbedder
from rag.lexical.fusion import fuse as fuse_rrf
from rag.retrieval import ALL_LANGUAGES, Retriever, embedder_languages, route
from rag.seams import TermCoverage
from rag.stores.memory import MemoryStore
from rag.types import Chunk, ScoredChunk

EN = frozenset({"en"})


def hit(i: int, score: float = 0.0) -> ScoredChunk:
    return ScoredChunk(Chunk(id=f"c{i}", text=f"text {i}", source=f"s{i}"), score)


def test_minilm_is_recorded_as_english_only_and_multilingual_models_as_all_languages():
    assert embedder_languages("sentence-transformers/all-MiniLM-L6-v2") == EN
    assert embedder_languages("intfloat/multilingual-e5-small") == {ALL_LANGUAGES}
    assert embedder_languages("BAAI/bge-m3") == {ALL_LANGUAGES}
    assert embedder_languages("all-MiniLM-L6-v2", ["en", "ko"]) == {"en", "ko"}


def test_a_korean_query_to_an_english_only_embedder_is_routed_to_bm25_alone():
    plan = route("GPU 작업의 최대 실행 시간은?", RetrievalSettings(), EN)
    assert plan.lang == "ko" and plan.dense_weight == 0 and plan.lexical_weight > 0


def test_an_english_query_uses_both_rankings_and_a_multilingual_embedder_keeps_dense_for_korean():
    s = RetrievalSettings()
    assert route("How long may a GPU job run?", s, EN).dense_weight > 0
    assert route("GPU 작업의 최대 실행 시간은?", s, frozenset({ALL_LANGUAGES})).dense_weight > 0


def test_mode_dense_and_mode_lexical_run_one_ranking_only():
    assert route("x y", RetrievalSettings(mode="dense"), EN).lexical_weight == 0
    assert route("x y", RetrievalSettings(mode="lexical"), EN).dense_weight == 0


def test_rrf_rewards_agreement_and_scales_the_top_to_one():
    fused = fuse_rrf([(1.0, [hit(1), hit(2), hit(3)]), (1.0, [hit(2), hit(4)])], rrf_k=10)
    assert [h.chunk.id for h in fused][:2] == ["c2", "c1"]
    assert fuse_rrf([(1.0, [hit(1)]), (1.0, [hit(1)])], 60)[0].score == 1.0


def test_rrf_weights_tilt_the_order_and_zero_weight_rankings_are_ignored():
    a, b = [hit(1), hit(2)], [hit(2), hit(1)]
    assert fuse_rrf([(2.0, a), (1.0, b)], 10)[0].chunk.id == "c1"
    assert fuse_rrf([(1.0, a), (3.0, b)], 10)[0].chunk.id == "c2"
    assert [h.chunk.id for h in fuse_rrf([(0.0, a), (1.0, [hit(5)])], 10)] == ["c5"]


async def _store_with(texts: list[str]) -> tuple[MemoryStore, HashingEmbedder]:
    """A memory store holding one chunk per text (ids c0, c1, ..., each its own source)."""
    store = MemoryStore("docs")
    embedder = HashingEmbedder(64)
    await store.open(embedder.info, create=True)
    chunks = [Chunk(id=f"c{i}", text=t, source=f"s{i}", index=i) for i, t in enumerate(texts)]
    await store.upsert(chunks, await embedder.embed_documents(texts))
    return store, embedder


async def test_irrelevant_query_gets_no_hits_through_the_gate():
    store, embedder = await _store_with(["GPU jobs may run for 72 hours.", "The cafeteria opens at eight."])
    retriever = Retriever(store, embedder, RetrievalSettings(min_score=0.9))
    assert [h.chunk.id for h in await retriever.search("GPU jobs run hours", 2)] == ["c0"]
    assert await retriever.search("zebra migration patterns", 2) == []
    assert np.isfinite([h.score for h in await retriever.search("cafeteria", 2)]).all()


async def test_the_gate_tokenises_each_chunk_once_and_decides_as_without_the_cache():
    from rag.lexical.tokens import coverage, lexical_text

    store = MemoryStore("docs")
    embedder = HashingEmbedder(64)
    await store.open(embedder.info, create=True)
    texts = [
        "GPU 작업은 최대 72시간 동안 실행할 수 있습니다.",
        "GPU 할당량은 팀마다 A100 16장입니다.",
        "구내식당은 여덟 시에 문을 엽니다.",
        "GPU jobs may run for 72 hours.",
    ]
    chunks = [Chunk(id=f"c{i}", text=t, source=f"s{i}", index=i) for i, t in enumerate(texts)]
    await store.upsert(chunks, await embedder.embed_documents(texts))
    settings = RetrievalSettings(tokenizer="kiwi", min_score=2.0, min_lexical_coverage=0.5)  # lexical gate only
    retriever = Retriever(store, embedder, settings)
    seen: list[str] = []
    tokenize, tokenize_many = retriever.tokenize, retriever.tokenize_many
    retriever.tokenize = lambda text: seen.append(text) or tokenize(text)
    retriever.tokenize_many = lambda texts: seen.extend(texts) or tokenize_many(texts)
    queries = ["GPU 작업의 최대 실행 시간은?", "팀의 GPU 할당량은?", "GPU 작업의 최대 실행 시간은?", "GPU jobs hours"]
    for query in queries:
        ranked = await retriever.rank(query)
        for h in ranked.hits:
            uncached = coverage(ranked.query_tokens, tokenize(lexical_text(h.chunk))) >= 0.5
            assert retriever.relevant(ranked, h) is uncached, (query, h.chunk.text)
    chunk_texts = [t for t in seen if t not in queries]
    assert sorted(chunk_texts) == sorted(set(chunk_texts)) and chunk_texts  # each chunk tokenised once
    kept = [h.chunk.text for h in await retriever.search("GPU 작업의 최대 실행 시간은?", 4)]
    assert kept[0] == texts[0] and texts[2] not in kept
    edited = Chunk(id="c2", text="GPU 작업 시간은 72시간이 최대입니다.", source="s2", index=2)
    ranked = await retriever.rank("GPU 작업의 최대 실행 시간은?")
    assert retriever.relevant(ranked, ScoredChunk(edited, 0.0))  # same id, new text: tokenised afresh


class _WithoutTokens:
    """A store's every call but ``term_coverage``."""

    def __init__(self, store: MemoryStore) -> None:
        self._store = store

    def __getattr__(self, name: str):
        if name == "term_coverage":
            raise AttributeError(name)
        return getattr(self._store, name)


async def test_the_gate_reads_coverage_from_the_stores_index_and_analyses_no_chunk():
    from rag.lexical.tokens import coverage, lexical_text

    texts = [
        "GPU 작업은 최대 72시간 동안 실행할 수 있습니다.",
        "GPU 할당량은 팀마다 A100 16장입니다.",
        "구내식당은 여덟 시에 문을 엽니다.",
        "GPU jobs may run for 72 hours.",
        "The cafeteria opens at eight.",
    ]
    chunks = [Chunk(id=f"c{i}", text=t, source=f"s{i}", index=i) for i, t in enumerate(texts)]
    queries = ["GPU 작업의 최대 실행 시간은?", "팀의 GPU 할당량은?", "GPU jobs hours", "cafeteria eight", "zebra"]
    settings = RetrievalSettings(tokenizer="kiwi", min_score=2.0, min_lexical_coverage=0.5)  # lexical gate only
    embedder = HashingEmbedder(64)
    results = []
    for reads_index in (True, False):
        store, _ = await _store_with(texts)
        searched = store if reads_index else _WithoutTokens(store)  # as Milvus: no tokens to read
        assert isinstance(searched, TermCoverage) is reads_index
        retriever = Retriever(searched, embedder, settings)  # type: ignore[arg-type]
        analysed: list[str] = []
        tokenize_many = retriever.tokenize_many
        retriever.tokenize_many = lambda texts, seen=analysed, many=tokenize_many: seen.extend(texts) or many(texts)
        found = [[h.chunk.id for h in await retriever.search(q, 3)] for q in queries]
        for q, ids in zip(queries, found, strict=True):
            tokens = retriever.tokenize(q)
            passing = {c.id for c in chunks if coverage(tokens, retriever.tokenize(lexical_text(c))) >= 0.5}
            assert set(ids) == passing if len(passing) <= 3 else set(ids) <= passing, q
        assert (analysed == []) is reads_index, analysed  # the index is read, or each chunk analysed
        results.append(found)
    assert results[0] == results[1] and any(results[0])


async def test_a_store_failing_to_read_coverage_leaves_the_gate_to_analyse_the_chunks(caplog):
    from rag.errors import UpstreamError

    texts = ["GPU 작업은 최대 72시간 동안 실행할 수 있습니다.", "구내식당은 여덟 시에 문을 엽니다."]
    store, embedder = await _store_with(texts)
    settings = RetrievalSettings(tokenizer="kiwi", min_score=2.0, min_lexical_coverage=0.5)
    expected = [h.chunk.id for h in await Retriever(store, embedder, settings).search("GPU 작업 최대 시간", 2)]

    async def down(*args: object) -> dict[str, float]:
        raise UpstreamError("store went away")

    store.term_coverage = down  # type: ignore[method-assign]
    got = [h.chunk.id for h in await Retriever(store, embedder, settings).search("GPU 작업 최대 시간", 2)]
    assert got == expected == ["c0"]
    assert "store went away" in caplog.text


async def test_search_keeps_one_huge_document_from_filling_the_top_k():
    store = MemoryStore("docs")
    embedder = HashingEmbedder(64)
    await store.open(embedder.info, create=True)
    reference = [f"The quota field {i} of the quota API sets the GPU quota of a team." for i in range(12)]
    others = [
        "The GPU quota of a team is 16 A100 GPUs.",
        "Ask the platform team to raise a GPU quota.",
        "Each GPU quota of a team is reviewed once a year.",
    ]
    chunks = [Chunk(id=f"r{i}", text=t, source="api-reference.md", index=i) for i, t in enumerate(reference)]
    chunks += [Chunk(id=f"o{i}", text=t, source=f"guide{i}.md") for i, t in enumerate(others)]
    texts = [c.text for c in chunks]
    await store.upsert(chunks, await embedder.embed_documents(texts))
    query = "GPU quota of a team"
    capped = await Retriever(store, embedder, RetrievalSettings(max_chunks_per_source=2)).search(query, 5)
    assert [h.chunk.source for h in capped].count("api-reference.md") == 2
    assert {"guide0.md", "guide1.md", "guide2.md"} <= {h.chunk.source for h in capped} and len(capped) == 5
    default = await Retriever(store, embedder, RetrievalSettings()).search(query, 5)
    assert [h.chunk.source for h in default].count("api-reference.md") == RetrievalSettings().max_chunks_per_source
    uncapped = await Retriever(store, embedder, RetrievalSettings(max_chunks_per_source=0)).search(query, 5)
    assert [h.chunk.source for h in uncapped].count("api-reference.md") > 2
    alone = await Retriever(store, embedder, RetrievalSettings(max_chunks_per_source=1)).search("quota API field", 5)
    assert len(alone) == 5  # few documents match: the cap relaxes rather than return fewer than k


async def test_search_finds_another_document_behind_a_huge_one_that_owns_the_first_candidates():
    store = MemoryStore("docs")
    embedder = HashingEmbedder(64)
    await store.open(embedder.info, create=True)
    # 40 near-copies of the query (ranked first by both retrievers), then one guide that also matches.
    reference = [f"GPU quota of a team, field {i}." for i in range(40)]
    chunks = [Chunk(id=f"r{i}", text=t, source="api-reference.md", index=i) for i, t in enumerate(reference)]
    guide = "Write to the platform people, with a reason, to raise a GPU quota for the team in the next cycle."
    chunks.append(Chunk(id="g", text=guide, source="guide.md"))
    await store.upsert(chunks, await embedder.embed_documents([c.text for c in chunks]))
    retriever = Retriever(store, embedder, RetrievalSettings(max_chunks_per_source=2))
    ranked = await retriever.rank("GPU quota of a team", None, 50)
    position = [h.chunk.source for h in ranked.hits].index("guide.md")
    assert position >= 20  # behind the window the gate scans first
    sources = [h.chunk.source for h in await retriever.search("GPU quota of a team", 5)]
    assert "guide.md" in sources and len(sources) == 5


def titled(i: int, title: str, text: str) -> ScoredChunk:
    return ScoredChunk(Chunk(id=f"c{i}", text=text, source=f"s{i}", title=title), 0.0)


def test_title_rankings_find_titles_named_by_the_query_and_by_the_best_chunks():
    from rag.retrieval import title_rankings

    fused = [
        titled(0, "Journal of Psychotherapy", "It is published by the American Psychological Association."),
        titled(1, "Cafeteria", "Opens at eight."),
        titled(2, "American Psychological Association", "Its first president was G. Stanley Hall."),
        titled(3, "Association", "A word that is only part of another title: 'American Psychological Association'."),
        titled(4, "AI", "Too short a title to match by accident."),
    ]
    named, linked = title_rankings("Who published the Journal of Psychotherapy? Ask AI.", fused, top=1)
    assert [h.chunk.id for h in named] == ["c0"]
    # c3's title is a whole word of c0's text, so it links as well; the short title "AI" never matches.
    assert [h.chunk.id for h in linked] == ["c2", "c3"]
    assert title_rankings("Who published the Journal of Psychotherapy?", fused, top=0)[1] == []


def test_title_links_lift_the_second_hop_and_leave_scores_alone_when_nothing_links():
    a = [titled(0, "Journal X", "published by Big Society"), titled(1, "Other", "x"), titled(2, "Big Society", "y")]
    rankings: list[tuple[float, list[ScoredChunk]]] = [(1.0, a), (1.0, a)]
    assert fuse_rrf([*rankings, (1.0, []), (0.5, [])], 5)[0].score == 1.0
    fused = fuse_rrf([*rankings, (0.5, [a[2]])], 5)
    assert [h.chunk.id for h in fused] == ["c0", "c2", "c1"]


def test_a_text_links_a_title_only_as_the_title_is_written():
    from rag.retrieval import title_rankings

    fused = [
        titled(0, "Apollo program", "The crew breathed pure oxygen; the rules stay in force."),
        titled(1, "Apollo program", "Apollo 1 burned during a plugs-out test run by NASA."),
        titled(2, "Oxygen", "A chemical element."),
        titled(3, "Force", "A push or a pull."),
        titled(4, "NASA", "The space agency."),
    ]
    named, linked = title_rankings("When did the apollo program test run?", fused, top=2)
    assert [h.chunk.id for h in named] == ["c0", "c1"]  # the query may name a title in any case
    assert [h.chunk.id for h in linked] == ["c4"]  # "oxygen" and "in force" are common words, not names


async def test_a_query_searched_by_bm25_alone_is_gated_by_min_lexical_coverage_alone():
    from rag.lexical.tokens import coverage, lexical_text

    store = MemoryStore("docs")
    embedder = HashingEmbedder(64)
    await store.open(embedder.info, create=True)
    texts = ["GPU 작업은 최대 72시간 동안 실행할 수 있습니다.", "구내식당은 여덟 시에 문을 엽니다."]
    chunks = [Chunk(id=f"c{i}", text=t, source=f"s{i}", index=i) for i, t in enumerate(texts)]
    await store.upsert(chunks, await embedder.embed_documents(texts))
    query = "GPU 작업의 대기열과 할당량은?"

    async def kept(**gate: object) -> list[str]:
        retriever = Retriever(store, embedder, RetrievalSettings(tokenizer="kiwi", min_score=2.0, **gate))
        return [h.chunk.text for h in await retriever.search(query, 2)]

    probe = Retriever(store, embedder, RetrievalSettings(tokenizer="kiwi"))
    share = coverage(probe.tokenize(query), probe.tokenize(lexical_text(chunks[0])))
    assert 0 < share < 1
    # BM25 alone (mode=lexical): only min_lexical_coverage_alone counts.
    assert await kept(mode="lexical", min_lexical_coverage=1.0, min_lexical_coverage_alone=share) == [texts[0]]
    assert await kept(mode="lexical", min_lexical_coverage=0.0, min_lexical_coverage_alone=share + 0.01) == []
    # Dense + BM25 (hybrid, the hashing embedder reads every language): only min_lexical_coverage counts.
    assert await kept(min_lexical_coverage=share, min_lexical_coverage_alone=1.0) == [texts[0]]
    assert await kept(min_lexical_coverage=share + 0.01, min_lexical_coverage_alone=0.0) == []


async def test_a_document_crowded_out_of_every_candidate_place_is_found_by_a_second_look():
    store = MemoryStore("docs")
    embedder = HashingEmbedder(64)
    await store.open(embedder.info, create=True)
    crowd = [f"What is the GPU quota of a team? The quota field {i} of the quota API." for i in range(80)]
    page = "Each team gets 16 A100 GPUs as its GPU quota."
    texts = [*crowd, page]
    sources = ["file:///reference.md"] * len(crowd) + ["file:///quota.md"]
    chunks = [Chunk(id=f"c{i}", text=t, source=s, index=i) for i, (t, s) in enumerate(zip(texts, sources, strict=True))]
    await store.upsert(chunks, await embedder.embed_documents(texts))
    settings = RetrievalSettings(candidates=10, max_chunks_per_source=3, min_score=0.0, min_lexical_coverage=0.0)
    retriever = Retriever(store, embedder, settings)
    query = "What is the GPU quota of a team?"
    assert "c80" not in [h.chunk.id for h in (await retriever.rank(query)).hits]  # not among the candidates
    hits = await retriever.search(query, 5)
    assert "c80" in [h.chunk.id for h in hits]
    assert sum(h.chunk.source == "file:///reference.md" for h in hits) == 4  # 3 + one more place left open
    # No document capped (cap 0): one look, the reference fills the k.
    uncapped = Retriever(store, embedder, settings.model_copy(update={"max_chunks_per_source": 0}))
    assert {h.chunk.source for h in await uncapped.search(query, 5)} == {"file:///reference.md"}
