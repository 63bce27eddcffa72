"""The ``rag`` command: global options, each part's commands mounted, errors turned into exit codes here only.

Every part owns its commands (``ingest.cli``, ``serving.cli``, ``eval.cli``, ``ui.cli``); this module only
mounts them. The global options become a :class:`rag.config.Overrides` on the click context, from which
each command loads its settings. A ``RagError`` leaving any command is printed as one line and mapped to
an exit code by :func:`rag.errors.exit_code` (``ExitCode`` lists them).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from eval.cli import eval_app
from ingest.cli import ingest_app
from rag.config import Overrides, cli_log_level
from rag.errors import ConfigError, ExitCode, RagError, exit_code
from serving.cli import serving_app
from ui.cli import ui_app
from ui.kserve import kserve_app

err = Console(stderr=True, soft_wrap=True)


class _Root(TyperGroup):
    """Runs the command; a project error becomes one message on stderr and its exit code."""

    def invoke(self, ctx: Any) -> Any:  # typer.Context; typer types the base with its vendored click
        """Invoke the subcommand, translating errors."""
        try:
            return super().invoke(ctx)
        # escape(): messages hold brackets that are not markup ("pip install 'onprem-rag[kserve]'").
        except ConfigError as e:
            err.print(f"[bold red]configuration error:[/] {escape(e.message)}", highlight=False)
            ctx.exit(exit_code(e))
        except RagError as e:
            err.print(f"[bold red]error ({e.status} {e.code or e.type}):[/] {escape(e.message)}", highlight=False)
            ctx.exit(exit_code(e))
        except KeyboardInterrupt:
            err.print("interrupted")
            ctx.exit(ExitCode.INTERRUPTED)


app = typer.Typer(
    name="rag",
    cls=_Root,
    help="onprem-rag: ingest documents, ask questions with cited answers, serve an OpenAI-compatible API.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def options(
    ctx: typer.Context,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML config file.")] = None,
    store: Annotated[str | None, typer.Option(help="Vector store URL, e.g. milvus+lite:///data/rag.db")] = None,
    collection: Annotated[str | None, typer.Option(help="Collection name.")] = None,
    embed: Annotated[str | None, typer.Option(help="Embedder URL, e.g. st://all-MiniLM-L6-v2")] = None,
    chat: Annotated[str | None, typer.Option(help="Chat backend URL, e.g. ollama://localhost:11434?model=x")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log at DEBUG level.")] = False,
) -> None:
    """Options shared by every command; each also reads RAG_* environment variables."""
    values: dict[str, Any] = {
        "store": {"url": store, "collection": collection},
        "embed": {"url": embed},
        "chat": {"url": chat},
        "log_level": "DEBUG" if verbose else None,
    }
    ctx.obj = Overrides(config).merged(**values)
    if ctx.invoked_subcommand != "serve":  # the service logs JSON lines of its own (serving.metrics)
        logging.basicConfig(
            level=cli_log_level(verbose), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
        )


@app.command()
def backends() -> None:
    """List the backend URL schemes of every seam (stores, embedders, chat, rerankers, document sources)."""
    from ingest.source import LOADERS
    from rag.registry import CHATS, EMBEDDERS, RERANKERS, STORES

    out = Console(soft_wrap=True)
    for title, rows in (
        ("Vector stores", STORES), ("Embedders", EMBEDDERS), ("Chat backends", CHATS),
        ("Rerankers", RERANKERS), ("Document sources", LOADERS),
    ):  # fmt: skip
        table = Table(title=title)
        for column in ("scheme", "extra", "what"):
            table.add_column(column)
        for scheme, entry in rows.items():
            table.add_row(f"{scheme}://", entry.extra, entry.description)
        out.print(table)


app.add_typer(ingest_app)
app.add_typer(ui_app)
app.add_typer(serving_app)
app.add_typer(kserve_app, name="kserve")
app.add_typer(eval_app, name="eval", help="Evaluate retrieval and answers: run, report, compare, synth.")


def main() -> None:
    """Console-script entry point."""
    app()
