from __future__ import annotations

import pytest

from ingest.chunking import Chunker, approx_tokens
from ingest.formats import Section
from ingest.loaders import Document, FolderLoader, parse
from rag.embedders.st import SentenceTransformerEmbedder, bundled_minilm_path
from tests.ingest.conftest import DOCS


def _doc(text: str, *, sections: tuple[Section, ...] | None = None) -> Document:
    return Document(
        source="file:///docs/a.md",
        title="A",
        lang="en",
        mtime=1.0,
        doc_hash="h",
        sections=sections or (Section(text=text, section="A > B", page=None),),
        groups=("public",),
    )


@pytest.fixture(scope="module")
def minilm() -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder(bundled_minilm_path(), "sentence-transformers/all-MiniLM-L6-v2")


async def _sample_docs() -> list[Document]:
    loader = FolderLoader(str(DOCS), default_groups=("public",))
    return [parse(item, await loader.fetch(item)) async for item in loader.items() if not item.skip and not item.error]


async def test_chunks_respect_the_minilm_token_limit_on_the_sample_corpus(
    minilm: SentenceTransformerEmbedder,
) -> None:
    chunker = Chunker(chunk_size=64, chunk_overlap=8, embedder=minilm)
    docs = await _sample_docs()
    total = 0
    for doc in docs:
        for chunk in chunker.chunks(doc, ingested_at=2.0):
            assert len(minilm.tokenizer.tokenize(chunk.text)) <= 64
            assert chunk.text.strip() == chunk.text and chunk.text
            total += 1
    assert total > len(docs)


def test_chunk_size_is_capped_at_what_the_model_reads(minilm: SentenceTransformerEmbedder) -> None:
    chunker = Chunker(chunk_size=1000, chunk_overlap=40, embedder=minilm)
    assert chunker.size == minilm.max_tokens - 2


def test_korean_text_chunks_are_never_empty_or_blank(minilm: SentenceTransformerEmbedder) -> None:
    korean = "연구소 GPU 클러스터는 매월 둘째 주 화요일에 점검합니다. " * 60 + "\n\n   \n\n" + "끝."
    chunker = Chunker(chunk_size=48, chunk_overlap=8, embedder=minilm)
    chunks = chunker.chunks(_doc(korean), ingested_at=0.0)
    assert len(chunks) > 3
    for chunk in chunks:
        assert chunk.text.strip()
        assert len(minilm.tokenizer.tokenize(chunk.text)) <= 48
    # Sentences end where the splitter cut: no chunk starts with the period of the previous one.
    assert not any(c.text.startswith(".") for c in chunks)


def test_chunk_ids_are_deterministic_and_fields_filled() -> None:
    doc = _doc("First sentence here. " * 100)
    first = Chunker(64, 8).chunks(doc, ingested_at=5.0)
    second = Chunker(64, 8).chunks(doc, ingested_at=9.0)
    assert [c.id for c in first] == [c.id for c in second]
    assert len({c.id for c in first}) == len(first)
    for i, c in enumerate(first):
        assert (c.index, c.source, c.title, c.section, c.lang, c.doc_hash) == (i, doc.source, "A", "A > B", "en", "h")
        assert c.groups == ("public",) and c.content_hash and c.mtime == 1.0 and c.ingested_at == 5.0


def test_chunks_never_merge_across_sections_or_pages() -> None:
    sections = (
        Section(text="alpha one.", page=1),
        Section(text="beta two.", page=2),
        Section(text="", page=3),
        Section(text="gamma three.", section="G", page=None),
    )
    chunks = Chunker(200, 20).chunks(_doc("", sections=sections), ingested_at=0.0)
    assert [(c.text, c.page, c.section) for c in chunks] == [
        ("alpha one.", 1, ""),
        ("beta two.", 2, ""),
        ("gamma three.", None, "G"),
    ]


def test_fallback_counts_are_rough_tokens() -> None:
    assert approx_tokens("hello, world") == 3
    assert approx_tokens("안녕하세요") == 5
    chunker = Chunker(32, 4)
    for piece in chunker.split("word " * 500):
        assert approx_tokens(piece) <= 32


def test_overlap_larger_than_size_is_clamped() -> None:
    chunker = Chunker(32, 100)
    assert chunker.overlap == 16


def test_heading_is_never_a_chunk_of_its_own(minilm: SentenceTransformerEmbedder) -> None:
    text = "## 계정과 인증\n\n" + "비밀번호는 최소 14자 이상이어야 하며 다중 인증이 필수입니다. " * 30
    chunks = Chunker(64, 8, minilm).split(text)
    assert chunks[0].startswith("## 계정과 인증\n\n비밀번호")
    assert all(len(minilm.tokenizer.tokenize(c)) <= 64 for c in chunks)
