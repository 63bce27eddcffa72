"""``rag ask`` and ``rag config``: asking from a terminal, mounted by the ``rag`` command."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import typer
from rich.console import Console

from rag.config import Overrides

ui_app = typer.Typer()
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


@ui_app.command()
def ask(
    ctx: typer.Context,
    question: Annotated[str, typer.Argument(help="The question.")],
    group: Annotated[list[str] | None, typer.Option("--group", "-g", help="Caller's ACL group (repeat).")] = None,
    stream: Annotated[bool, typer.Option(help="Print the answer as it is generated.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the answer and sources as JSON.")] = False,
) -> None:
    """Ask one question against the collection and print the cited answer.

    Example: rag ask "How long may a GPU job run?" -g public -g oncall
    """
    settings = (ctx.obj or Overrides()).load()
    groups = tuple(group) if group else tuple(settings.ingest.default_groups)

    async def go() -> Any:
        from rag.pipeline import Answer, Pipeline
        from rag.types import Filter, Message

        pipeline = await Pipeline.build(settings)
        try:
            prepared = await pipeline.prepare([Message("user", question)], Filter(groups=groups))
            async for event in pipeline.stream(prepared):
                if isinstance(event, Answer):
                    return event
                if stream and not as_json:
                    out.print(event.text, end="", soft_wrap=True, highlight=False)
            raise AssertionError("no answer")  # pragma: no cover
        finally:
            await pipeline.close()

    answer = asyncio.run(go())
    if as_json:
        out.print_json(
            data={
                "answer": answer.text,
                "backend": answer.backend,
                "sources": [
                    {"n": c.n, "source": c.hit.chunk.source, "title": c.hit.chunk.title, "score": c.hit.score}
                    for c in answer.citations
                ],
            }
        )
        return
    if not stream:
        out.print(answer.text, highlight=False)
    out.print()
    for c in answer.citations:
        ch = c.hit.chunk
        where = f", page {ch.page}" if ch.page is not None else (f", {ch.section}" if ch.section else "")
        out.print(f"  [{c.n}] {ch.title or ch.source}{where}  [dim]{ch.source}  score {c.hit.score:.2f}[/]")
    err.print(f"[dim]answered by {answer.backend}[/]")


@ui_app.command("config")
def show_config(ctx: typer.Context) -> None:
    """Print the effective configuration (secrets masked)."""
    settings = (ctx.obj or Overrides()).load()
    out.print_json(settings.model_dump_json())
