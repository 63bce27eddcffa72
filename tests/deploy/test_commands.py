"""Every command line in deploy/'s YAML uses only subcommands, options and arguments the ``rag`` CLI has.

Each line is walked against the real ``rag [SUBCOMMAND...] --help`` output (a process per level): options
must be listed there (and those that take a value are followed by one), subcommands must be in the
"Commands" panel, positional arguments must match the usage line, and the line must end at a command.
"""

from __future__ import annotations

import functools
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.deploy.conftest import clean_env, run
from tests.deploy.manifests import command_lines

_OPTION = re.compile(r"(?<![\w<\[-])(--?[A-Za-z][\w-]*)")


@dataclass(frozen=True)
class Help:
    """What one ``--help`` page offers."""

    options: dict[str, bool]  # name -> takes a value
    commands: frozenset[str]
    arguments: tuple[str, ...]  # positional arguments, from the "Arguments" panel
    required: int


@functools.cache
def cli_help(path: tuple[str, ...]) -> Help:
    """Parse ``rag PATH --help`` (typer's rich panels, wide enough not to wrap)."""
    home = Path("/tmp")
    r = run([sys.executable, "-m", "ui.cli", *path, "--help"], clean_env(home, COLUMNS="300"))
    assert r.returncode == 0, f"rag {' '.join(path)} --help failed: {r.stderr}"
    options: dict[str, bool] = {}
    commands: set[str] = set()
    arguments: list[str] = []
    required = 0
    panel = ""
    for line in r.stdout.splitlines():
        stripped = line.strip()
        if stripped.startswith("╭─"):
            panel = stripped.strip("╭─╮ ").split(" ")[0]
            continue
        if not stripped.startswith("│") or panel == "":
            continue
        body = stripped.strip("│").strip()
        if panel == "Options":
            head, _, _ = body.partition("<")
            takes_value = "<bool>" not in body
            for name in _OPTION.findall(head):
                options[name] = takes_value
        elif panel == "Commands" and body:
            commands.add(body.split()[0])
        elif panel == "Arguments" and body:
            words = body.split()
            if words[0] == "*":
                required += 1
                words = words[1:]
            arguments.append(words[0])
    return Help(options, frozenset(commands), tuple(arguments), required)


def check(argv: list[str]) -> list[str]:
    """Problems of one command line; empty when the CLI accepts its shape."""
    if argv[0] != "rag":
        return [f"runs {argv[0]!r}, not rag"]
    problems: list[str] = []
    path: list[str] = []
    help_ = cli_help(())
    positional = 0
    tokens = list(argv[1:])
    while tokens:
        token = tokens.pop(0)
        where = "rag " + " ".join(path)
        if token.startswith("-") and not token.startswith("-{"):
            name, eq, _ = token.partition("=")
            if name not in help_.options:
                problems.append(f"{where}: no option {name}")
                continue
            if help_.options[name] and not eq:
                if not tokens:
                    problems.append(f"{where}: {name} needs a value")
                else:
                    tokens.pop(0)
        elif help_.commands:
            if token not in help_.commands:
                problems.append(f"{where}: no subcommand {token!r} (has {sorted(help_.commands)})")
                return problems
            path.append(token)
            help_ = cli_help(tuple(path))
            positional = 0
        else:
            positional += 1
    if help_.commands:
        problems.append(f"rag {' '.join(path)}: stops at a command group")
    elif not help_.required <= positional <= len(help_.arguments):
        problems.append(f"rag {' '.join(path)}: {positional} positional arguments, the CLI takes {help_.arguments}")
    return problems


LINES = command_lines()


def test_the_help_parser_finds_what_the_cli_offers_and_the_check_rejects_what_it_does_not():
    assert {"--store", "--collection", "--embed", "--config"} <= set(cli_help(()).options)
    assert {"ingest", "eval", "kserve"} <= cli_help(()).commands
    run_help = cli_help(("eval", "run"))
    assert run_help.options["--out"] is True and run_help.options["--katib"] is False
    assert cli_help(("ingest",)).arguments == ("source",)
    assert check(["rag", "ingest", "/d", "--shard", "0/2"]) == []
    assert check(["rag", "ingest", "/d", "--shards", "0/2"])[0] == "rag ingest: no option --shards"
    assert check(["rag", "eval", "runn"])[0].startswith("rag eval: no subcommand 'runn'")
    assert check(["rag", "eval", "report", "--min", "f1=0.5"]) == [
        "rag eval report: 0 positional arguments, the CLI takes ('run',)"
    ]
    assert check(["rag", "eval"]) == ["rag eval: stops at a command group"]


def test_the_rendered_files_run_the_ingest_eval_and_gate_commands_on_every_platform():
    shapes = {(w.split()[0], " ".join(a[:2] if a[1] == "ingest" else a[:3])) for w, a in LINES}
    for platform in ("argo", "kfp"):
        assert {(platform, "rag ingest"), (platform, "rag eval run"), (platform, "rag eval report")} <= shapes
    assert ("katib", "rag eval run") in shapes


@pytest.mark.parametrize(("where", "argv"), LINES, ids=[w for w, _ in LINES])
def test_command_line_uses_only_what_the_cli_has(where: str, argv: list[str]):
    assert check(argv) == [], f"{where}: {argv}"
