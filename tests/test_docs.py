"""The README stays true: its quickstart has exactly two commands and its tables match the code."""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
sys.path.insert(0, str(ROOT / "scripts"))


def test_quickstart_block_holds_exactly_two_commands():
    section = README.split("## Quickstart", 1)[1]
    block = section.split("```", 2)[1]
    commands = [line for line in block.splitlines()[1:] if line.strip() and not line.startswith("#")]
    assert commands == ["make run", "make test"]


def test_configuration_table_lists_every_setting_with_its_default():
    from config_table import table

    assert table() in README, "README configuration table is stale: run scripts/config_table.py"


def test_backend_table_names_every_registered_scheme():
    from rag.registry import CHATS, EMBEDDERS, STORES

    documented = set(re.findall(r"`([a-z+]+)://", README))
    missing = {s for table in (STORES, EMBEDDERS, CHATS) for s in table} - documented
    assert not missing, f"schemes missing from the README backend table: {sorted(missing)}"


def test_ci_runs_the_readme_test_command():
    assert "make test" in (ROOT / ".ci" / "run").read_text()
