"""Pipeline.search (hybrid) and prepare/answer: bad input, routing, "don't know", follow-ups, sources."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from rag.config import Settings, StoreSettings
from rag.errors import EmbedderMismatch, InvalidRequest
from rag.pipeline import Pipeline
from rag.registry import make_chat, make_embedder, make_store
from rag.seams import Embedder
from rag.types import ChatRequest, Chunk, Delta, Filter, Message

# Our own text (no third-party passages): an English and a Korean handbook excerpt.
DOCS = [
    ("handbook.md", "GPU jobs", "GPU jobs on the shared cluster may run for at most 72 hours.", ("public",)),
    ("handbook.md", "CPU jobs", "CPU jobs may run for up to 14 days before they are stopped.", ("public",)),
    ("handbook.md", "Leave", "New employees get 25 vacation days per year.", ("public",)),
    ("salaries.md", "Pay", "The salary bands of the research staff are reviewed every April.", ("hr",)),
    ("ko.md", "휴가", "신입 직원은 매년 25일의 연차 휴가를 받습니다. 휴가는 2주 전에 신청해야 합니다.", ("public",)),
    ("ko.md", "출입", "연구동 출입은 사원증으로만 가능하며 방문객은 안내 데스크에서 등록합니다.", ("public",)),
]


@pytest.fixture(scope="module")
def minilm() -> Embedder:
    return make_embedder(Settings())


@pytest.fixture
async def pipeline(minilm: Embedder) -> AsyncIterator[Pipeline]:
    settings = Settings(store=StoreSettings(url="memory://"))
    store = make_store(settings)
    await store.open(minilm.info, create=True)
    chunks = [
        Chunk(id=f"c{i}", text=text, source=src, title=title, index=i, groups=groups)
        for i, (src, title, text, groups) in enumerate(DOCS)
    ]
    await store.upsert(chunks, await minilm.embed_documents([c.text for c in chunks]))
    pipe = Pipeline(settings, store, minilm, make_chat(settings, "extractive://"))
    yield pipe
    await store.close()


@pytest.mark.parametrize(
    ("query", "message"),
    [("", "empty"), ("   ", "empty"), ("?!… 🙂🙂", "no letters"), ("x" * 100_000, "too long")],
)
async def test_bad_queries_are_refused_with_a_clear_invalid_request(pipeline: Pipeline, query: str, message: str):
    with pytest.raises(InvalidRequest, match=message) as err:
        await pipeline.search(query)
    assert err.value.status == 400


async def test_unknown_filter_field_is_refused_through_search(pipeline: Pipeline):
    with pytest.raises(InvalidRequest, match="author"):
        await pipeline.search("GPU jobs", flt=Filter(where={"author": "kim"}))


async def test_a_collection_built_with_another_embedder_is_refused_with_409(minilm: Embedder):
    settings = Settings(store=StoreSettings(url="memory://?name=other-embedder"))
    store = make_store(settings)
    await store.open(make_embedder(Settings(embed={"url": "hash://?dim=384"})).info, create=True)
    pipe = Pipeline(settings, make_store(settings), minilm, make_chat(settings, "extractive://"))
    with pytest.raises(EmbedderMismatch) as err:
        await pipe.search("GPU jobs")
    assert err.value.status == 409


async def test_search_returns_fused_scores_best_first_and_applies_the_acl(pipeline: Pipeline):
    hits = await pipeline.search("How long may a GPU job run?", k=3)
    assert hits[0].chunk.title == "GPU jobs"
    assert all(0 < h.score <= 1 for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    public = await pipeline.search("salary bands", 5, Filter(groups=("public",)))
    assert not any(h.chunk.source == "salaries.md" for h in public)
    assert (await pipeline.search("salary bands", 5, Filter(groups=("hr",))))[0].chunk.source == "salaries.md"


async def test_korean_query_finds_the_korean_passage_without_the_english_embedder(pipeline: Pipeline):
    hits = await pipeline.search("연차 휴가는 며칠인가요?", k=2)
    assert hits and hits[0].chunk.title == "휴가"


async def test_irrelevant_question_gets_no_sources_and_a_dont_know_answer(pipeline: Pipeline):
    answer = await pipeline.answer([Message("user", "What is the airspeed of an unladen swallow?")])
    assert answer.retrieved == () and answer.citations == ()
    assert "could not find" in answer.text
    ko = await pipeline.answer([Message("user", "화성 탐사선의 발사 일정은 언제인가요?")])
    assert ko.retrieved == () and "찾을 수 없습니다" in ko.text


async def test_answer_cites_the_source_in_the_question_language(pipeline: Pipeline):
    answer = await pipeline.answer([Message("user", "연구동 출입은 어떻게 하나요?")])
    assert "[1]" in answer.text and answer.citations[0].hit.chunk.title == "출입"


async def test_follow_up_is_rewritten_with_the_previous_question_before_retrieval(pipeline: Pipeline):
    history = [Message("user", "How long may a GPU job run?"), Message("assistant", "72 hours [1].")]
    prepared = await pipeline.prepare([*history, Message("user", "And CPU ones?")])
    assert prepared.search_query == "How long may a GPU job run? And CPU ones?"
    assert "CPU jobs" in [h.chunk.title for h in prepared.retrieved[:2]]
    assert prepared.request.question == "And CPU ones?"


class RewritingChat:
    """A chat backend that answers the rewrite prompt with a fixed standalone question."""

    name = "fake-llm"

    def __init__(self) -> None:
        self.requests: list[ChatRequest] = []

    async def stream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        self.requests.append(request)
        yield Delta(text="How many vacation days do new employees get?")
        yield Delta(finish_reason="stop")

    async def health(self) -> bool:
        return True

    async def close(self) -> None:
        return None


async def test_an_llm_backend_rewrites_the_follow_up(pipeline: Pipeline):
    chat = RewritingChat()
    pipe = Pipeline(pipeline.settings, pipeline.store, pipeline.embedder, chat)
    history = [Message("user", "How long may a GPU job run?"), Message("assistant", "72 hours [1].")]
    query = await pipe.standalone("What about that for leave?", history)
    assert query == "How many vacation days do new employees get?"
    assert "How long may a GPU job run?" in chat.requests[0].messages[0].content


async def test_sources_are_deduplicated_and_fit_the_token_budget(pipeline: Pipeline, minilm: Embedder):
    dup = Chunk(id="dup", text=DOCS[0][2], source="copy.md", title="GPU jobs", index=0)
    await pipeline.store.upsert([dup], await minilm.embed_documents([dup.text]))
    sources = await pipeline.sources_for("How long may a GPU job run?")
    texts = [s.chunk.text for s in sources]
    assert texts.count(DOCS[0][2]) == 1


class NotFoundChat(RewritingChat):
    """Answers every request like the extractive backend does without sources."""

    async def stream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        self.requests.append(request)
        yield Delta(text="I could not find this in the available documents.")
        yield Delta(finish_reason="stop")


async def test_a_not_found_reply_to_the_rewrite_prompt_falls_back_to_the_heuristic(pipeline: Pipeline):
    pipe = Pipeline(pipeline.settings, pipeline.store, pipeline.embedder, NotFoundChat())
    history = [Message("user", "How long may a GPU job run?"), Message("assistant", "72 hours [1].")]
    assert await pipe.standalone("And CPU ones?", history) == "How long may a GPU job run? And CPU ones?"
