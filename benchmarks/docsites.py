"""Documentation sites: how cleanly Docusaurus (MDX), MkDocs and Hugo pages are parsed and chunked.

Usage:
    python benchmarks/docsites.py --out bench-results/docsites.json              # a generated site
    python benchmarks/docsites.py --corpus path/to/site/docs --out results.json    # your own pages
    python benchmarks/docsites.py --generate site/ --pages 120                   # write the site only

Every ``.md``/``.mdx``/``.markdown`` file under ``--corpus`` (or a site of ``--pages`` pages generated with
``--seed``: front matter, MDX imports and JSX tabs, ``:::``/``!!!``/``???`` admonitions, Hugo shortcodes,
anchors, comments, tables, fenced code blocks of 3 to 120 lines) is parsed and chunked the way ingestion does
(chunk size / overlap from the defaults, 300 / 40 tokens of the bundled all-MiniLM-L6-v2; ``--approx`` counts
tokens without the tokenizer). Reported: files no parser takes, the share of chunks that cut a code fence
(an odd number of fence lines), chunks without a letter or digit, and chunks that still carry markup a page
reader never sees (``:::``, ``!!!``/``???``, MDX ``import``/``export``, ``<a id>``, ``<!--``, ``{{<``).
Run it against another checkout (``PYTHONPATH=that/checkout``) to compare two versions on the same pages.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
# This checkout last, for benchmarks.common: a PYTHONPATH naming another checkout still decides which code is measured.
sys.path.append(str(Path(__file__).resolve().parents[1]))

from benchmarks.common import add_data_options, command, machine, now, write_page  # noqa: E402

SUFFIXES = {".md", ".mdx", ".markdown"}
RESIDUE = {
    "docusaurus :::": lambda line: line.lstrip().startswith(":::"),
    "mkdocs !!!/???": lambda line: line.lstrip().startswith(("!!! ", "??? ", "???+ ")),
    "mdx import/export": lambda line: line.startswith(("import ", "export ")),
    "html anchor": lambda line: "<a id=" in line or "<a name=" in line,
    "html comment": lambda line: "<!--" in line,
    "hugo shortcode": lambda line: "{{<" in line or "{{%" in line,
    "jsx tag": lambda line: line.lstrip().startswith(("<Tabs", "<TabItem", "</Tab")),
}

_COMPONENTS = ["scheduler", "ingest worker", "retrieval service", "vector store", "gateway", "operator", "client"]
_VERBS = ["reads", "writes", "caches", "rotates", "validates", "replicates", "exports", "schedules"]
_OBJECTS = ["the access token", "each shard", "the job spec", "the config map", "the audit log", "every index"]
_QUALIFIERS = ["every night", "on start-up", "before each run", "within five minutes", "per namespace", ""]
_KINDS = ["note", "tip", "info", "warning", "danger", "caution"]


def _sentence(rng: random.Random) -> str:
    words = f"The {rng.choice(_COMPONENTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)} {rng.choice(_QUALIFIERS)}"
    return " ".join(words.split()) + "."


def _paragraph(rng: random.Random) -> str:
    return " ".join(_sentence(rng) for _ in range(rng.randint(1, 5)))


def _code(rng: random.Random, lines: int) -> tuple[str, list[str]]:
    lang = rng.choice(["python", "bash", "yaml", "json", "go"])
    body = []
    for i in range(lines):
        if lang == "python":
            body.append(f"    result_{i} = client.{rng.choice(_VERBS)}(name='job-{i}', retries={i % 5})")
        elif lang == "bash":
            body.append(f"kubectl -n team-{i % 7} {rng.choice(['get', 'apply', 'delete'])} pod/worker-{i} --wait")
        elif lang == "yaml":
            body.append(f"{'  ' * (i % 3)}key_{i}: {rng.choice(['true', 'false', str(i * 10)])}")
        elif lang == "json":
            body.append(f'  "field_{i}": {{"limit": {i * 3}, "enabled": {str(i % 2 == 0).lower()}}},')
        else:
            body.append(f'\tif err := run(ctx, "step-{i}"); err != nil {{ return err }}')
    return lang, body


def _fence(rng: random.Random, title: bool) -> str:
    lang, body = _code(rng, rng.choice([3, 5, 8, 12, 20, 35, 60, 120]))
    info = f'{lang} title="example_{rng.randint(1, 99)}.{lang[:2]}"' if title and rng.random() < 0.5 else lang
    return "\n".join([f"```{info}", *body, "```"])


def _section(rng: random.Random, style: str, n: int) -> list[str]:
    heading = f"## {rng.choice(_COMPONENTS).capitalize()} step {n}"
    out = [f"{heading} {{#step-{n}}}" if style == "docusaurus" else heading, _paragraph(rng)]
    for _ in range(rng.randint(1, 4)):
        roll = rng.random()
        kind, title = rng.choice(_KINDS), rng.choice(["", "Before you start", "Limits"])
        if roll < 0.3:
            out.append(_fence(rng, style != "hugo"))
        elif roll < 0.45 and style == "docusaurus":
            out.append(f":::{kind}{' ' + title if title else ''}\n{_paragraph(rng)}\n:::")
        elif roll < 0.45 and style == "mkdocs":
            marker = rng.choice(["!!!", "???"])
            out.append(f"{marker} {kind}{f' {json.dumps(title)}' if title else ''}\n    {_paragraph(rng)}")
        elif roll < 0.45:
            out.append(f"{{{{< {kind} >}}}}\n{_paragraph(rng)}\n{{{{< /{kind} >}}}}")
        elif roll < 0.55 and style == "docusaurus":
            tabs = ["<Tabs>"]
            for tab in ("pip", "conda"):
                tabs += [f'<TabItem value="{tab}" label="{tab}">', "", _paragraph(rng), "", _fence(rng, True), ""]
                tabs.append("</TabItem>")
            out.append("\n".join([*tabs, "</Tabs>"]))
        elif roll < 0.65:
            rows = [f"| `{rng.choice(_COMPONENTS)}` | {rng.randint(1, 64)} | {_sentence(rng)} |" for _ in range(4)]
            out.append("\n".join(["| Component | Replicas | Notes |", "|---|---:|---|", *rows]))
        elif roll < 0.75:
            out.append(rng.choice([f'<a id="anchor-{n}"></a>', "<!-- TODO: review -->", "---"]))
        else:
            out.append(_paragraph(rng))
    return out


def write_site(folder: Path, pages: int, seed: int) -> None:
    """Write ``pages`` pages in the three generators' styles (a third each) under ``folder``."""
    rng = random.Random(seed)
    for i in range(pages):
        style = ("docusaurus", "mkdocs", "hugo")[i % 3]
        title = f"{rng.choice(_COMPONENTS).capitalize()} guide {i}"
        if style == "docusaurus":
            head = [f"---\ntitle: {title}\nsidebar_position: {i}\n---", "import Tabs from '@theme/Tabs';"]
            head += ["import TabItem from '@theme/TabItem';", "{/* generated page */}"]
            name = f"docs/page-{i:03}.mdx"
        elif style == "mkdocs":
            head, name = [f"# {title}"], f"mkdocs/page-{i:03}.md"
        else:
            head, name = [f'+++\ntitle = "{title}"\nweight = {i}\n+++'], f"hugo/page-{i:03}.md"
        blocks = [*head, _paragraph(rng)]
        for n in range(rng.randint(2, 6)):
            blocks += _section(rng, style, n)
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n\n".join(blocks) + "\n", encoding="utf-8")


def _cuts_fence(chunk: str) -> bool:
    """Whether a chunk leaves a code fence open (or closes one it never opened)."""
    marks = [line.lstrip(" ")[:3] for line in chunk.split("\n") if line.lstrip(" ")[:3] in ("```", "~~~")]
    return len(marks) % 2 == 1


def _metrics(chunks: list[str], lengths: list[int], size: int, skipped: int, files: int) -> dict[str, Any]:
    """The figures of one contender's chunks."""
    marked = [any(test(line) for test in RESIDUE.values() for line in c.split("\n")) for c in chunks]
    residue = {kind: sum(any(test(line) for line in c.split("\n")) for c in chunks) for kind, test in RESIDUE.items()}
    n = len(chunks) or 1
    cut = sum(_cuts_fence(c) for c in chunks)
    return {
        "files": files,
        "files_skipped": skipped,
        "chunks": len(chunks),
        "fence_cut_chunks": cut,
        "fence_cut_share": round(cut / n, 4),
        "chunks_without_alnum": sum(not any(ch.isalnum() for ch in c) for c in chunks),
        "chunks_with_markup_residue": sum(marked),
        "chunks_over_size": sum(k > size for k in lengths),
        "chunks_heading_only": sum("\n" not in c and c.startswith("#") for c in chunks),
        "mean_chunk_chars": round(sum(map(len, chunks)) / n),
        "residue_by_kind": residue,
    }


def measure(folder: Path, approx: bool) -> dict[str, Any]:
    """Chunk every Markdown/MDX page under ``folder`` with each contender; the figures of each."""
    from langchain_text_splitters import Language, RecursiveCharacterTextSplitter

    from ingest.chunking import Chunker
    from ingest.formats import decode_text, parser_for
    from ingest.loaders import parse
    from ingest.source import Item
    from rag.config import Settings

    settings = Settings()
    embedder = None
    if not approx:
        from rag.embedders.st import SentenceTransformerEmbedder, bundled_minilm_path

        embedder = SentenceTransformerEmbedder(bundled_minilm_path(), "sentence-transformers/all-MiniLM-L6-v2")
    chunker = Chunker(settings.ingest.chunk_size, settings.ingest.chunk_overlap, embedder)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
    # LangChain's splitters over the page source, sized in the same tokens: the generic and the Markdown one.
    splitters = {
        f"langchain {kind}": RecursiveCharacterTextSplitter(
            separators=RecursiveCharacterTextSplitter.get_separators_for_language(Language.MARKDOWN)
            if kind == "markdown"
            else None,
            is_separator_regex=kind == "markdown",
            chunk_size=chunker.size,
            chunk_overlap=chunker.overlap,
            length_function=chunker.length,
        )
        for kind in ("recursive", "markdown")
    }
    ours: list[str] = []
    theirs: dict[str, list[str]] = {name: [] for name in splitters}
    skipped = 0
    for path in files:
        name = str(path.relative_to(folder))
        source = decode_text(path.read_bytes())
        for label, splitter in splitters.items():
            theirs[label] += splitter.split_text(source)
        if parser_for(name) is None:
            skipped += 1
            continue
        doc = parse(Item(uri=path.as_uri(), name=name, groups=("public",)), path.read_bytes())
        ours += [c.text for c in chunker.chunks(doc, ingested_at=0.0)]
    out = {"onprem-rag": _metrics(ours, chunker.lengths(ours), chunker.size, skipped, len(files))}
    for label, chunks in theirs.items():
        out[label] = _metrics(chunks, chunker.lengths(chunks), chunker.size, 0, len(files))
    return {"recipe": chunker.recipe, "contenders": out}


def _commit(repo: Path) -> str:
    try:
        cmd = ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"]
        return subprocess.run(cmd, capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return ""


def _table(contenders: dict[str, dict[str, Any]]) -> str:
    """The figures as a Markdown table, one column per contender."""
    names = list(contenders)
    keys = [k for k in contenders[names[0]] if k != "residue_by_kind"]
    rows = [f"| {k} | " + " | ".join(str(contenders[n][k]) for n in names) + " |" for k in keys]
    kinds = contenders[names[0]]["residue_by_kind"]
    rows += [
        f"| residue: {k} | " + " | ".join(str(contenders[n]["residue_by_kind"][k]) for n in names) + " |" for k in kinds
    ]
    head = "| figure | " + " | ".join(names) + " |\n|---|" + "---:|" * len(names) + "\n"
    return head + "\n".join(rows) + "\n"


WHAT = """Every `.md`/`.mdx` page of a folder (or of a generated site: a third each in the shapes of Docusaurus,
MkDocs and Hugo, with front matter, MDX imports and JSX tabs, admonitions, shortcodes, anchors, comments, tables
and fenced code blocks of 3 to 120 lines) is parsed and chunked the way ingestion does, and by LangChain's
splitters over the page source for comparison. Counted: files no parser takes, chunks that cut a code fence (an
odd number of fence lines), chunks without a letter or digit, and chunks with markup a reader of the rendered
page never sees."""


def main() -> None:
    """Command line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_data_options(ap, corpus="a folder of your own .md/.mdx pages (default: a generated site)", questions=None)
    ap.add_argument("--generate", type=Path, help="write the generated site to this folder and stop")
    ap.add_argument("--pages", type=int, default=120, help="pages of the generated site")
    ap.add_argument("--seed", type=int, default=7, help="seed of the generated site")
    ap.add_argument("--approx", action="store_true", help="count tokens without the MiniLM tokenizer")
    ap.add_argument("--out", type=Path, help="write the figures as JSON here (and a .md table beside it)")
    args = ap.parse_args()
    if args.generate:
        write_site(args.generate, args.pages, args.seed)
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.corpus
        if folder is None:
            folder = Path(tmp)
            write_site(folder, args.pages, args.seed)
        result = measure(folder, args.approx)
    import ingest

    code = Path(ingest.__file__).resolve().parent.parent
    result.update(
        machine=f"{platform.node()} {platform.machine()} {platform.python_version()}",
        code=str(code),
        commit=_commit(code),
        data=str(args.corpus) if args.corpus else f"generated: {args.pages} pages, seed {args.seed}",
    )
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
        args.out.with_suffix(".md").write_text(_table(result["contenders"]), "utf-8")
    if args.page:
        run = {"machine": machine(), "command": command(), "date": now()}
        write_page(args.page, title="Benchmark: documentation sites (Markdown and MDX)", what=WHAT, run=run,
                   settings={"data": result["data"], "chunk size / overlap": "defaults (300 / 40 tokens)",
                             "tokens": "approximate" if args.approx else "all-MiniLM-L6-v2 tokenizer"},
                   body=_table(result["contenders"]))  # fmt: skip


if __name__ == "__main__":
    main()
