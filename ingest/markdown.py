"""Markdown and MDX to sections of plain text, from markdown-it-py's token stream.

What the reader of a chunk would not see on the rendered page is dropped: HTML tags and comments (their text
content is kept), MDX ``import``/``export`` lines and ``{/* */}`` comments, thematic breaks, emphasis marks.
Admonitions (Docusaurus ``:::tip Title``, MkDocs ``!!! note "Title"`` and ``??? note``, Hugo ``{{< note >}}``)
become labelled text (``Tip: Title — body``). Fenced and indented code stays fenced, with its language, so
the chunker can keep each block whole. Tables read as ``header: value`` rows. The title comes from the
YAML (``---``) or TOML (``+++``) front matter's ``title``, else from the first level-1 heading.
"""

from __future__ import annotations

import logging
import re
import tomllib
from collections.abc import Sequence
from functools import cache
from html.parser import HTMLParser
from typing import Any

import yaml
from markdown_it import MarkdownIt
from markdown_it.token import Token
from mdit_py_plugins.admon import admon_plugin
from mdit_py_plugins.container import container_plugin
from mdit_py_plugins.front_matter import front_matter_plugin

from ingest.parsed import Section
from ingest.sections import Sections, row_lines

log = logging.getLogger(__name__)

# A Hugo shortcode alone on a line: {{< name args >}}, {{% name args %}}, or their closing forms.
_SHORTCODE = re.compile(r"\{\{([<%])\s*(/?)\s*([\w-]+)([^{}]*?)\s*[>%]\}\}")
# Hugo shortcodes that are admonitions (themes name them differently; "notice"/"alert" take the kind as argument).
_HUGO_NOTES = frozenset({"note", "tip", "info", "warning", "caution", "danger", "important", "hint", "callout"})
_HUGO_KIND_ARG = frozenset({"notice", "alert", "admonition", "callout", "hint"})
# A Docusaurus heading id: "## Setup {#setup}".
_HEADING_ID = re.compile(r"\s*\{#[\w-]+\}\s*\Z")


@cache
def _parser(mdx: bool) -> MarkdownIt:
    md = (
        MarkdownIt("commonmark")
        .enable("table")
        .use(front_matter_plugin)
        .use(admon_plugin)
        # Any ":::word" opens a Docusaurus admonition (or directive); the word is read when rendering.
        .use(container_plugin, "directive", validate=lambda params, *_: bool(params.strip()))
    )
    if mdx:
        # MDX has no indented code: indentation inside JSX is layout.
        md.disable("code")
    return md


def render(text: str, *, mdx: bool = False) -> tuple[str, tuple[Section, ...]]:
    """Markdown (or MDX with ``mdx``) as its title (front matter, else the first H1) and sections."""
    title, text = _toml_front_matter(text)
    renderer = _Renderer(mdx=mdx, title=title)
    renderer.render(_parser(mdx).parse(text))
    return renderer.title, tuple(renderer.acc.out)


def _toml_front_matter(text: str) -> tuple[str, str]:
    """Hugo's ``+++`` TOML front matter: its title, and the text after it (unchanged text when absent)."""
    if not text.startswith("+++"):
        return "", text
    first, _, rest = text.partition("\n")
    if first.strip() != "+++":
        return "", text
    body, sep, after = rest.partition("\n+++")
    if not sep:
        return "", text
    after = after.partition("\n")[2]
    try:
        meta: Any = tomllib.loads(body)
    except tomllib.TOMLDecodeError as e:
        log.debug("unreadable TOML front matter: %s", e)
        meta = {}
    title = meta.get("title") if isinstance(meta, dict) else None
    return (title.strip() if isinstance(title, str) else ""), after


def _label(kind: str, title: str) -> tuple[str, str]:
    """An admonition's name (``Tip``) and title; no title when it only repeats the name."""
    name = kind.replace("-", " ").replace("_", " ").strip().capitalize() or "Note"
    title = " ".join(title.split())
    return name, title if title.lower() != name.lower() else ""


def _directive_label(info: str) -> tuple[str, str]:
    """Docusaurus ``tip Title`` or ``tip[Title]`` (the container's parameters) as a label."""
    info = info.strip()
    kind = re.match(r"[\w-]*", info)
    name = kind.group(0) if kind else ""
    rest = info[len(name) :].strip()
    if rest.startswith("[") and rest.endswith("]"):
        rest = rest[1:-1]
    return _label(name, rest)


class _TextOnly(HTMLParser):
    """The text content of an HTML (or JSX) fragment; tags, comments, scripts and styles dropped."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in ("script", "style"):
            self._skip += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style") and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


# Comments and processing instructions, an unterminated one running to the end. Removed before HTMLParser
# sees the fragment: this Python's HTMLParser rescans an unterminated "<!--" or "<?" at every later one,
# quadratic in the fragment (64 KiB of "<!--" took 5 s in-process); one regex pass is linear.
_COMMENT = re.compile(r"<!--.*?(?:-->|\Z)|<\?.*?(?:>|\Z)", re.S)


def _html_text(html: str) -> str:
    """Text of an HTML block: lines of its text content, blank ones dropped."""
    parser = _TextOnly()
    parser.feed(_COMMENT.sub("", html))
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.parts).split("\n"))
    return "\n".join(line for line in lines if line)


def _fence(info: str, code: str, markup: str = "```") -> str:
    """A code block as a fence whose marker no line of the code can close early."""
    longest = max((len(m) for m in re.findall(rf"{re.escape(markup[0])}+", code)), default=0)
    if longest >= len(markup):
        markup = markup[0] * (longest + 1)
    return f"{markup}{info}\n{code.rstrip(chr(10))}\n{markup}"


class _Renderer:
    """Walks the token stream once, filling sections."""

    def __init__(self, *, mdx: bool, title: str) -> None:
        self.mdx = mdx
        self.title = title
        self.acc = Sections()
        self.pending: list[tuple[str, str]] = []  # (name, title) of admonitions waiting for their first block of text
        self.lists: list[str] = []  # the markers of the open lists, innermost last
        self._item: str | None = None  # the marker of a list item whose first paragraph is still to come

    def render(self, tokens: Sequence[Token]) -> None:
        """Render every block token; sections are in ``acc.out`` afterwards."""
        i = 0
        while i < len(tokens):
            i = self._block(tokens, i)
        self._flush_label()
        self.acc.flush()

    def _block(self, tokens: Sequence[Token], i: int) -> int:
        tok = tokens[i]
        kind = tok.type
        if kind == "front_matter":
            self._yaml_title(tok.content)
        elif kind == "heading_open":
            self._heading(int(tok.tag[1]), tokens[i + 1])
            return i + 3
        elif kind == "paragraph_open":
            self._paragraph(tokens[i + 1], top=tok.level == 0)
            return i + 3
        elif kind in ("fence", "code_block"):
            info = tok.info.strip() if kind == "fence" else ""
            markup = tok.markup if kind == "fence" else "```"
            self._emit(_fence(info, tok.content, markup), code=True)
        elif kind == "html_block":
            text = _html_text(tok.content)
            if text:
                self._emit(text)
        elif kind == "table_open":
            return self._table(tokens, i)
        elif kind == "admonition_open":
            self.pending.append(_label(tok.meta.get("tag", ""), tok.content))
            while tokens[i].type != "admonition_title_close":
                i += 1
        elif kind == "container_directive_open":
            self.pending.append(_directive_label(tok.info))
        elif kind in ("admonition_close", "container_directive_close"):
            self._flush_label()
        elif kind in ("bullet_list_open", "ordered_list_open"):
            self.lists.append("-" if kind == "bullet_list_open" else tok.markup)
        elif kind in ("bullet_list_close", "ordered_list_close"):
            self.lists.pop()
            self.acc.add("")
        elif kind == "list_item_open":
            self._item = f"{tok.info}{tok.markup}" if tok.info else tok.markup or "-"
        # Thematic breaks, blockquote and list item boundaries carry no text of their own.
        return i + 1

    def _yaml_title(self, content: str) -> None:
        if self.title:
            return
        try:
            meta = yaml.safe_load(content)
        except yaml.YAMLError as e:
            log.debug("unreadable YAML front matter: %s", e)
            return
        if isinstance(meta, dict) and isinstance(meta.get("title"), str):
            self.title = meta["title"].strip()

    def _heading(self, level: int, inline: Token) -> None:
        self._flush_label()
        text = _HEADING_ID.sub("", " ".join(self._inline(inline).split()))
        if not text:
            return
        if level == 1 and not self.title:
            self.title = text
        self.acc.heading(level, text, f"{'#' * level} {text}")

    def _paragraph(self, inline: Token, *, top: bool) -> None:
        if self.mdx and top and self._is_mdx_only(inline.content):
            return
        lines: list[str] = []
        for line in self._inline(inline).split("\n"):
            shortcode = _SHORTCODE.fullmatch(line.strip())
            if shortcode:
                self._shortcode(shortcode, lines)
            else:
                lines.append(line)
        text = " ".join(" ".join(lines).split())
        if text:
            if self._item and self.lists:
                text = f"{self._item} {text}"
                self._item = None
            self._emit(text, tight=bool(self.lists))

    @staticmethod
    def _is_mdx_only(content: str) -> bool:
        """An MDX ESM block (``import``/``export``) or a JSX comment, which render to nothing."""
        head = content.lstrip()
        if head.startswith(("import ", "export ")):
            return True
        return head.startswith("{/*") and content.rstrip().endswith("*/}")

    def _shortcode(self, match: re.Match[str], lines: list[str]) -> None:
        """A Hugo shortcode line: an admonition opens a label, anything else is dropped."""
        closing, name, args = match.group(2), match.group(3).lower(), match.group(4).strip()
        if closing:
            if name in _HUGO_NOTES or name in _HUGO_KIND_ARG:
                self._flush_text(lines)
                self._flush_label()
            return
        if name in _HUGO_NOTES or name in _HUGO_KIND_ARG:
            self._flush_text(lines)
            words = args.replace('"', " ").split()
            by_arg = name in _HUGO_KIND_ARG and bool(words) and "=" not in words[0]
            kind = words[0] if by_arg else name
            rest = " ".join(words[1:] if by_arg else words)
            self.pending.append(_label(kind, rest if "=" not in rest else ""))

    def _flush_text(self, lines: list[str]) -> None:
        text = " ".join(" ".join(lines).split())
        if text:
            self._emit(text)
        lines.clear()

    def _inline(self, inline: Token) -> str:
        """Text of an inline token: code keeps its backticks, HTML tags and emphasis marks are dropped."""
        out: list[str] = []
        for child in inline.children or ():
            if child.type == "text":
                out.append(child.content)
            elif child.type == "code_inline":
                out.append(f"{child.markup}{child.content}{child.markup}")
            elif child.type == "softbreak" or child.type == "hardbreak":
                out.append("\n")
            elif child.type == "image":
                out.append(child.content)
        return "".join(out)

    def _table(self, tokens: Sequence[Token], i: int) -> int:
        rows: list[list[str]] = []
        while tokens[i].type != "table_close":
            tok = tokens[i]
            if tok.type == "tr_open":
                rows.append([])
            elif tok.type == "inline" and rows:
                rows[-1].append(" ".join(self._inline(tok).split()))
            i += 1
        lines = row_lines(rows)
        if lines:
            self._emit("\n".join(lines))
        return i + 1

    def _emit(self, text: str, *, code: bool = False, tight: bool = False) -> None:
        """Add one block of text; a waiting admonition label goes in front of it."""
        if self.pending:
            name, title = self._take_label()
            # A fence must start its own line; prose reads on after the label.
            if code:
                text = f"{name}: {title}\n{text}" if title else f"{name}:\n{text}"
            else:
                text = f"{name}: {title} — {text}" if title else f"{name}: {text}"
        self.acc.add(text)
        if not tight:
            self.acc.add("")

    def _flush_label(self) -> None:
        """An admonition that ended without text still says what it was."""
        if self.pending:
            name, title = self._take_label()
            self.acc.add(f"{name}: {title}" if title else name)
            self.acc.add("")

    def _take_label(self) -> tuple[str, str]:
        """The waiting labels as one (nested admonitions read outermost first)."""
        names = ": ".join(n for n, _ in self.pending)
        titles = " — ".join(t for _, t in self.pending if t)
        self.pending.clear()
        return names, titles
