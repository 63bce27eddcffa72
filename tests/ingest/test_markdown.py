from __future__ import annotations

from pathlib import Path

import pytest

from ingest.chunking import Chunker
from ingest.formats import parse_markdown, parse_mdx, parser_for
from ingest.loaders import Document, FolderLoader, parse
from ingest.source import Item
from rag.embedders.st import SentenceTransformerEmbedder, bundled_minilm_path

SITE = Path(__file__).parent / "docsite"


def _page(name: str) -> Document:
    path = SITE / name
    return parse(Item(uri=path.as_uri(), name=name, groups=("public",)), path.read_bytes())


def _text(doc: Document) -> str:
    return "\n\n".join(s.text for s in doc.sections)


@pytest.fixture(scope="module")
def minilm() -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder(bundled_minilm_path(), "sentence-transformers/all-MiniLM-L6-v2")


async def test_mdx_files_are_listed_and_parsed_not_skipped() -> None:
    assert parser_for("docs/intro.mdx") is parse_mdx
    loader = FolderLoader(str(SITE), default_groups=("public",))
    items = {item.name: item async for item in loader.items()}
    assert not items["docusaurus-quickstart.mdx"].skip
    assert not items["docusaurus-quickstart.mdx"].error


def test_mdx_drops_imports_exports_jsx_tags_comments_and_anchors_but_keeps_their_text() -> None:
    doc = _page("docusaurus-quickstart.mdx")
    text = _text(doc)
    for residue in ("import ", "export ", "<Tabs", "TabItem", "{/*", "<!--", "<a id", "<b>", "{#install}", "---"):
        assert residue not in text, residue
    assert "Install the client with pip." in text and "Install the client with conda." in text
    assert "Jobs run in the batch queue for at most 72 hours." in text
    assert "Queue: interactive; Max run time: 4 hours; GPUs: 1" in text
    assert [s.section for s in doc.sections] == [
        "Submitting your first job",
        "Submitting your first job > Install the client",
        "Submitting your first job > Queue limits",
    ]


def test_mdx_front_matter_title_wins_over_the_first_heading() -> None:
    assert _page("docusaurus-quickstart.mdx").title == "Quickstart for the GPU queue"


def test_docusaurus_admonitions_become_labelled_text() -> None:
    text = _text(_page("docusaurus-quickstart.mdx"))
    assert "Tip: Use the dry-run flag — Run `rag-submit --dry-run` first to see the resources a job would get." in text
    assert "Warning: Jobs that write to the home directory are stopped after ten minutes." in text
    assert "Note: Quota resets — Quotas reset every Monday at 09:00." in text
    assert ":::" not in text


def test_mkdocs_admonitions_become_labelled_text() -> None:
    text = _text(_page("mkdocs-storage.md"))
    assert "Note: Backups — The NAS is backed up every night at 02:00. Restores are requested through" in text
    assert "Warning: Deleted files stay in the snapshot for fourteen days." in text
    assert "!!!" not in text and "???" not in text


def test_hugo_toml_front_matter_gives_the_title_and_shortcodes_are_labelled_or_dropped() -> None:
    doc = _page("hugo-alerts.md")
    assert doc.title == "Alert routing"
    text = _text(doc)
    assert "Note: Pages outside office hours are routed to the secondary after fifteen minutes." in text
    assert "Warning: Never silence an alert without a ticket." in text
    assert "{{" not in text and "+++" not in text and "weight" not in text
    assert "The rota is published every Friday." in text


def test_markdown_html_anchors_and_comments_are_dropped_and_element_text_kept() -> None:
    md = (
        b'# Guide <a id="guide"></a>\n\n<a name="start"></a>\n\n<!--\nnot for readers\n-->\n\n'
        b"Press <kbd>Ctrl</kbd> to stop. <!-- inline note -->\n\n"
        b"<details>\n<summary>More options</summary>\n\nHidden body text.\n\n</details>\n"
    )
    parsed = parse_markdown(md)
    text = parsed.sections[0].text
    assert parsed.title == "Guide"
    assert "Press Ctrl to stop." in text and "More options" in text and "Hidden body text." in text
    assert "<" not in text and "not for readers" not in text and "inline note" not in text


def test_an_unterminated_html_comment_or_instruction_drops_the_rest_of_its_block_only() -> None:
    for opener in (b"<!--", b"<?"):
        md = b"# T\n\n<div>\nBefore the note.\n" + opener * 4000 + b"\n</div>\n\nAfter the block.\n"
        text = "\n".join(s.text for s in parse_markdown(md).sections)
        assert "Before the note." in text and "After the block." in text
        assert opener.decode() not in text


def test_markdown_keeps_import_lines_that_only_mdx_treats_as_code() -> None:
    md = b"# T\n\nimport the data before you start.\n"
    assert "import the data before you start." in parse_markdown(md).sections[0].text
    assert parse_mdx(md).sections == ()  # a heading alone is no section


def test_yaml_front_matter_title_and_h1_fallback() -> None:
    assert parse_markdown(b"---\ntitle: From YAML\n---\n# Heading\n\nx\n").title == "From YAML"
    assert parse_markdown(b"---\nsidebar: 1\n---\n# Heading one\n\nx\n").title == "Heading one"
    assert parse_markdown(b"+++\ntitle = 'From TOML'\n+++\n# H\n\nx\n").title == "From TOML"
    # Broken front matter does not lose the page.
    assert "body" in parse_markdown(b"+++\ntitle = \n+++\nbody\n").sections[0].text


def test_indented_code_becomes_a_fence_that_its_own_backticks_cannot_close() -> None:
    text = parse_markdown(b"Example:\n\n    ```\n    inner\n    ```\n\nAfter.\n").sections[0].text
    assert "````\n```\ninner\n```\n````" in text


def test_long_code_block_is_split_at_lines_with_the_fence_reopened(minilm: SentenceTransformerEmbedder) -> None:
    doc = _page("mkdocs-storage.md")
    chunker = Chunker(chunk_size=64, chunk_overlap=8, embedder=minilm)
    chunks = [c.text for c in chunker.chunks(doc, ingested_at=0.0)]
    code = [c for c in chunks if "check_quota" in c]
    assert len(code) > 3
    seen: list[str] = []
    for chunk in code:
        lines = chunk.split("\n")
        opening = lines.index("```python")
        closing = lines.index("```", opening + 1)
        assert all("```" not in line for line in lines[:opening] + lines[closing + 1 :])  # one fence per chunk
        assert len(minilm.tokenizer.tokenize(chunk)) <= 64
        seen.extend(lines[opening + 1 : closing])
    source = (SITE / "mkdocs-storage.md").read_text("utf-8").split("\n")
    assert seen == [line for line in source if "check_quota" in line]  # every line once, in order
    assert any("Run the script once per login node." in c for c in chunks)


def test_chunks_without_letters_or_digits_are_dropped() -> None:
    text = "one two three four five six seven eight nine\n\n" + "- " * 30 + "\n\n:::\n\n```\n```\n\nten"
    pieces = Chunker(8, 0).split(text)
    assert pieces and all(any(ch.isalnum() for ch in p) for p in pieces)
    assert pieces[-1].endswith("ten") and not any("- -" in p or ":::" in p or "```" in p for p in pieces)


def test_a_heading_before_a_long_code_block_stays_with_its_first_part() -> None:
    code = "\n".join(f"step_{i} = run(job_{i}, retries=3)" for i in range(40))
    pieces = Chunker(48, 8).split(f"## Example\n\n```python\n{code}\n```")
    assert pieces[0].startswith("## Example\n\n```python\nstep_0 = run(")
    assert all(p.startswith("```python\n") and p.endswith("\n```") for p in pieces[1:])
    assert "## Example" not in pieces[1:]
