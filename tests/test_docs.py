"""The docs stay true: the quickstart has exactly two commands, the tables match the code, links resolve."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
DOCS = ROOT / "docs"
sys.path.insert(0, str(ROOT / "scripts"))
PAGES = [ROOT / "README.md", *sorted(DOCS.rglob("*.md")), ROOT / "charts" / "README.md", ROOT / "deploy" / "README.md"]


def test_quickstart_block_holds_exactly_two_commands():
    section = README.split("## Quickstart", 1)[1]
    block = section.split("```", 2)[1]
    commands = [line for line in block.splitlines()[1:] if line.strip() and not line.startswith("#")]
    assert commands == ["make run", "make test"]


def test_the_readme_is_a_newcomers_page():
    assert README.count("\n") <= 200


def test_configuration_page_lists_every_setting_with_its_default():
    from config_table import PAGE, page_with_table

    text = PAGE.read_text(encoding="utf-8")
    assert page_with_table(text) == text, "docs/configuration.md is stale: run scripts/config_table.py --write"


def test_backend_page_names_every_registered_scheme():
    from ingest.source import LOADERS
    from rag.registry import CHATS, EMBEDDERS, RERANKERS, STORES

    page = (DOCS / "backends.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"`([a-z0-9+]+)://", page))
    tables = (STORES, EMBEDDERS, CHATS, RERANKERS, LOADERS)
    missing = {s for table in tables for s in table} - documented
    assert not missing, f"schemes missing from docs/backends.md: {sorted(missing)}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path):
    text = page.read_text(encoding="utf-8")
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path = (page.parent / target.split("#", 1)[0]).resolve()
        if not path.exists():
            broken.append(target)
    assert not broken, f"{page.relative_to(ROOT)} links to missing files: {broken}"


def test_docs_speak_of_the_project_not_of_its_history():
    said = {}
    for page in PAGES:
        text = page.read_text(encoding="utf-8").lower()
        hits = [p for p in ("this round", "earlier runs", "previous defaults", "since these runs") if p in text]
        if hits:
            said[str(page.relative_to(ROOT))] = hits
    assert not said, said


def test_ci_runs_the_readme_test_command():
    assert "make test" in (ROOT / ".ci" / "run").read_text()
