"""The relevance gate with its defaults: other corpora's questions are refused, the corpus's own are answered.

Real components: the bundled MiniLM, the memory store, hybrid retrieval and the extractive answerer. The
corpus is the XQuAD excerpt (tests/eval/data); the unanswerable questions are HotpotQA and Allganize
questions (tests/rag/data, see its README), the benchmark's cross-corpus construction in small.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from rag.config import Settings, StoreSettings
from rag.pipeline import Pipeline
from rag.registry import make_chat, make_embedder, make_store
from rag.seams import Embedder
from rag.types import Chunk, Message

HERE = Path(__file__).resolve().parent
XQUAD = json.loads((HERE.parent / "eval" / "data" / "xquad_en_excerpt.json").read_text())
CROSS = json.loads((HERE / "data" / "cross_questions.json").read_text())
OFF_TOPIC = ("Who won the 1998 World Cup?", "What is the airspeed velocity of an unladen swallow?")


def passages() -> list[tuple[str, str, list[str]]]:
    """(source, paragraph, its questions) of the XQuAD excerpt."""
    out = []
    for article in XQUAD["data"]:
        for i, p in enumerate(article["paragraphs"]):
            out.append((f"{article['title']}-{i}", p["context"], [q["question"] for q in p["qas"]]))
    return out


@pytest.fixture(scope="module")
def minilm() -> Embedder:
    return make_embedder(Settings())


@pytest.fixture
async def pipeline(minilm: Embedder) -> AsyncIterator[Pipeline]:
    settings = Settings(store=StoreSettings(url="memory://", collection="refusal"))
    embedder = minilm
    store = make_store(settings)
    await store.open(embedder.info, create=True)
    chunks = [Chunk(id=f"c{i}", text=text, source=src) for i, (src, text, _) in enumerate(passages())]
    await store.upsert(chunks, await embedder.embed_documents([c.text for c in chunks]))
    pipe = Pipeline(settings, store, embedder, make_chat(settings, "extractive://"))
    yield pipe
    await store.close()


async def test_questions_of_the_corpus_are_answered_citing_their_own_paragraph(pipeline: Pipeline):
    for source, _, questions in passages():
        for q in questions:
            answer = await pipeline.answer([Message("user", q)])
            assert "could not find" not in answer.text, q
            assert source in {c.hit.chunk.source for c in answer.citations}, (q, answer.text)


@pytest.mark.parametrize("question", [q["question"] for q in CROSS["hotpotqa"]] + list(OFF_TOPIC))
async def test_english_questions_another_corpus_answers_are_refused(pipeline: Pipeline, question: str):
    answer = await pipeline.answer([Message("user", question)])
    assert answer.text == "I could not find this in the available documents.", answer.text
    assert not answer.citations


@pytest.mark.parametrize("question", [q["question"] for q in CROSS["allganize_ko_rag"]])
async def test_korean_questions_against_an_english_corpus_are_refused_in_korean(pipeline: Pipeline, question: str):
    answer = await pipeline.answer([Message("user", question)])
    assert answer.text == "제공된 문서에서 답을 찾을 수 없습니다.", answer.text
