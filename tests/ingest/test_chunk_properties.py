"""Properties of parsing and chunking over generated Markdown and MDX documentation pages."""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from ingest.chunking import Chunker, fence_blocks
from ingest.formats import parse_markdown, parse_mdx

WORDS = st.sampled_from(
    [
        "queue",
        "node",
        "quota",
        "cluster",
        "storage",
        "policy",
        "backup",
        "restore",
        "mount",
        "token",
        "model",
        "serving",
        "index",
        "shard",
        "replica",
        "volume",
        "secret",
        "label",
        "alert",
        "rota",
        "snapshot",
    ]
)
LANGS = st.sampled_from(["python", "bash", "yaml", "js", ""])


@dataclass
class Page:
    """A generated page: its source and what must survive into the chunks."""

    source: list[str] = field(default_factory=list)
    sentences: list[str] = field(default_factory=list)
    code: list[tuple[str, str]] = field(default_factory=list)  # (language, line)


@st.composite
def sentences(draw: st.DrawFn) -> str:
    words = draw(st.lists(WORDS, min_size=3, max_size=10))
    return " ".join(words).capitalize() + "."


@st.composite
def pages(draw: st.DrawFn, mdx: bool) -> Page:
    page = Page()
    if draw(st.booleans()):
        page.source += ["---", f"title: {draw(sentences())}", "---", ""]
    if mdx and draw(st.booleans()):
        page.source += ["import Tabs from '@theme/Tabs';", "export const x = 1;", ""]
    for _ in range(draw(st.integers(1, 12))):
        kind = draw(st.sampled_from(["heading", "para", "fence", "docusaurus", "mkdocs", "list", "noise"]))
        said = draw(st.lists(sentences(), min_size=1, max_size=6))
        if kind == "heading":
            page.source += [
                f"{'#' * draw(st.integers(1, 3))} {' '.join(draw(st.lists(WORDS, min_size=1, max_size=4)))}"
            ]
            said = []
        elif kind == "para":
            # One sentence a line (wrapped), some with emphasis or inline HTML: markup the parser removes.
            for i, sentence in enumerate(said):
                words = sentence.split(" ")
                words[1] = ("**{}**", "<kbd>{}</kbd>", "_{}_", "{}")[i % 4].format(words[1])
                page.source.append(" ".join(words))
        elif kind == "fence":
            lang = draw(LANGS)
            lines = [
                f"{a}_{i} = {b}({c}, {i})"
                for i, (a, b, c) in enumerate(draw(st.lists(st.tuples(WORDS, WORDS, WORDS), max_size=40)))
            ]
            page.source += [f"```{lang}", *lines, "```"]
            page.code += [(lang, line) for line in lines]
            said = []
        elif kind == "docusaurus":
            title = draw(st.sampled_from(["", " Heads up", "[Be careful]"]))
            page.source += [f":::{draw(st.sampled_from(['tip', 'note', 'warning']))}{title}", *said, ":::"]
        elif kind == "mkdocs":
            page.source += [f'{draw(st.sampled_from(["!!!", "???"]))} note "Remember"', *(f"    {s}" for s in said)]
        elif kind == "list":
            page.source += [f"- {s}" for s in said]
        else:
            page.source += [draw(st.sampled_from(['<a id="x"></a>', "<!-- hidden -->", "---", "<Tabs>", "***"]))]
            said = []
        page.sentences += said
        page.source += [""]
    return page


def _fenced_lines(chunk: str) -> tuple[list[tuple[str, str]], bool]:
    """(language, line) of every line inside a fence of the chunk, and whether every fence is closed."""
    inside: list[tuple[str, str]] = []
    lang: str | None = None
    for line in chunk.split("\n"):
        if line.startswith("```"):
            lang = line[3:].strip() if lang is None else None
        elif lang is not None:
            inside.append((lang, line))
    return inside, lang is None


def _check(page: Page, parse: object, size: int, overlap: int) -> None:
    parsed = parse(("\n".join(page.source)).encode())  # type: ignore[operator]
    chunker = Chunker(size, overlap)
    chunks = [c for s in parsed.sections for c in chunker.split(s.text)]
    flat = [" ".join(c.split()) for c in chunks]
    code: set[tuple[str, str]] = set()
    for chunk in chunks:
        assert any(ch.isalnum() for ch in chunk), chunk
        inside, closed = _fenced_lines(chunk)
        assert closed, chunk
        code.update(inside)
    for sentence in page.sentences:
        assert any(sentence in c for c in flat), sentence
    for pair in page.code:
        assert pair in code, pair


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(page=pages(mdx=False), size=st.integers(24, 160), overlap=st.integers(0, 20))
def test_markdown_chunks_keep_fences_whole_have_words_and_lose_no_sentence(page: Page, size: int, overlap: int) -> None:
    _check(page, parse_markdown, size, overlap)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(page=pages(mdx=True), size=st.integers(24, 160), overlap=st.integers(0, 20))
def test_mdx_chunks_keep_fences_whole_have_words_and_lose_no_sentence(page: Page, size: int, overlap: int) -> None:
    _check(page, parse_mdx, size, overlap)


FENCE_LINES = st.sampled_from(
    ["```", "```py", "````", "~~~", "~~~~ yaml", "  ```", "   ~~~", "``` a`b", "text words", "", "``", "```  "]
)


@settings(max_examples=300, deadline=None)
@given(lines=st.lists(FENCE_LINES, max_size=30))
def test_fence_scanner_finds_the_blocks_markdown_it_finds(lines: list[str]) -> None:
    tokens = MarkdownIt("commonmark").parse("".join(f"{line}\n" for line in lines))
    expected = [(t.map[0], t.map[1]) for t in tokens if t.type == "fence" and t.map]
    found = [(first, end) for first, end, _ in fence_blocks(lines)]
    assert found == expected
