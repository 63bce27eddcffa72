"""``rag ingest``, ``rag worker`` and ``rag collection``: ingestion's commands, mounted by the ``rag`` command.

Errors are not handled here: a ``RagError`` leaves the command and the ``rag`` command turns it into one
message and an exit code (``onprem_rag.cli``).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from rag.config import Overrides, Settings
from rag.errors import ExitCode

ingest_app = typer.Typer()
collection_app = typer.Typer(
    help="Collection versions: build a new version beside the live one, switch atomically, drop old ones.",
    no_args_is_help=True,
)
ingest_app.add_typer(collection_app, name="collection")

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def _settings(ctx: typer.Context) -> Settings:
    return (ctx.obj or Overrides()).load()


def _live(settings: Settings) -> Settings:
    """Ingestion writes into the live version of a versioned collection."""
    from rag.versions import live_settings

    return live_settings(settings)


@ingest_app.command()
def ingest(
    ctx: typer.Context,
    source: Annotated[str, typer.Argument(help="Folder, file, file:// or s3:// URI to ingest.")],
    report: Annotated[Path | None, typer.Option(help="Also write the summary as JSON here.")] = None,
    shard: Annotated[
        str | None, typer.Option(help="Only shard i of N ('i/N'), by a hash of each document's URI.")
    ] = None,
) -> None:
    """Ingest documents: new and changed files are embedded, deleted ones removed.

    Example: rag ingest examples/docs --report ingest.json

    Example, 4 pods in parallel: rag ingest s3://docs/handbook --shard 2/4
    """
    from ingest.progress import RichProgress
    from ingest.worker import ingest_source, parse_shard
    from rag.registry import make_embedder, make_store

    settings = _live(_settings(ctx))
    part = parse_shard(shard) if shard else None

    embedder_used: Any = None

    async def go() -> Any:
        nonlocal embedder_used
        embedder, store = make_embedder(settings), make_store(settings)
        embedder_used = embedder
        try:
            with RichProgress(err) as progress:
                return await ingest_source(
                    settings, store, embedder, source, progress=progress, shard=part, total=progress.set_total
                )
        finally:
            await store.close()
            await embedder.close()

    _finish(asyncio.run(go()).to_dict() | {"embedder": _embedder_line(embedder_used)}, report)


def _embedder_line(embedder: Any) -> str:
    """Which embedder ran, with its inference backend and why it was chosen (st:// embedders)."""
    if embedder is None:
        return ""
    backend = getattr(embedder, "backend", None)
    reason = getattr(embedder, "backend_reason", "")
    return f"{embedder.info.id} (backend {backend}: {reason})" if backend else embedder.info.id


@ingest_app.command()
def worker(
    ctx: typer.Context,
    source: Annotated[str, typer.Argument(help="Folder, file, file:// or s3:// URI to keep in sync.")],
    interval: Annotated[float, typer.Option(help="Seconds between syncs.", min=1)] = 300.0,
    watch: Annotated[bool, typer.Option(help="Also sync soon after files change (local folders).")] = False,
    host: Annotated[str, typer.Option(help="Bind address of /healthz, /readyz, /metrics.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port of /healthz, /readyz, /metrics.")] = 9108,
    shard: Annotated[str | None, typer.Option(help="Only shard i of N ('i/N').")] = None,
) -> None:
    """Keep a collection in sync with a source until SIGTERM (the batch in flight is finished first).

    Example: rag worker /data/docs --interval 300 --watch --host 0.0.0.0 --port 9108
    """
    from ingest.service import run_worker
    from ingest.worker import parse_shard
    from rag.registry import make_embedder, make_store

    settings = _live(_settings(ctx))
    part = parse_shard(shard) if shard else None

    async def go() -> None:
        embedder, store = make_embedder(settings), make_store(settings)
        try:
            # Open once before the loop: a store another process holds, or one that cannot be reached, ends
            # the command at once with its message (each sync opens it again and reports its own outage).
            await store.open(embedder.info, create=True)
            await run_worker(
                settings, store, embedder, source, interval_s=interval, watch=watch, host=host, port=port, shard=part
            )
        finally:
            await store.close()
            await embedder.close()

    asyncio.run(go())


def _finish(summary: dict[str, Any], report: Path | None) -> None:
    """Print the summary, write it as JSON if asked; exit 1 when a document failed."""
    table = Table(title="Ingestion summary", show_header=False)
    for key in (
        "added", "updated", "regrouped", "deleted", "unchanged", "skipped", "failed", "warnings",
        "chunks_embedded", "chunks_added", "chunks_deleted",
    ):  # fmt: skip
        value = summary.get(key, 0)
        table.add_row(key.replace("_", " "), str(len(value) if isinstance(value, list) else value))
    table.add_row("seconds", f"{summary.get('seconds', 0):.1f}")
    if summary.get("embedder"):
        table.add_row("embedder", str(summary["embedder"]))
    out.print(table)
    for warning in summary.get("warnings", []):
        err.print(f"[yellow]warning[/] {warning['source']}: {warning['reason']}")
    for failure in summary.get("failed", []):
        err.print(f"[red]failed[/] {failure['source']}: {failure['reason']}")
    if report:
        report.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if summary.get("failed"):
        raise typer.Exit(ExitCode.PARTIAL)


@collection_app.command("build")
def collection_build(
    ctx: typer.Context,
    source: Annotated[str, typer.Argument(help="Folder, file, file:// or s3:// URI to ingest.")],
    version: Annotated[str, typer.Option("--version", help="Version name, e.g. v2 (collection <name>__v2).")],
    embed_url: Annotated[
        str | None, typer.Option("--embed", help="Embedder URL of this version (default: the configured one).")
    ] = None,
) -> None:
    """Ingest SOURCE into a new version of the collection; readers keep using the live one until a switch.

    Example: rag collection build /data/docs --version v2 --embed 'st:///models/e5-small'
    """
    from ingest.progress import RichProgress
    from ingest.versions import build

    settings = _settings(ctx)

    async def go() -> Any:
        with RichProgress(err) as progress:
            return await build(settings, source, version, embed_url, progress=progress, total=progress.set_total)

    summary = asyncio.run(go()).to_dict()
    err.print(f"version {version} is ready; evaluate it with --collection, then: rag collection switch {version}")
    _finish(summary, None)


@collection_app.command("list")
def collection_list(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the versions of the collection and which one is live."""
    from rag.versions import Pointer, pointer_path

    settings = _settings(ctx)
    pointer = Pointer(pointer_path(settings))
    live = pointer.read().get("live")
    rows = [v.to_dict() | {"live": v.name == live} for v in pointer.versions()]
    if as_json:
        out.print_json(data={"collection": settings.store.collection, "live": live, "versions": rows})
        return
    table = Table(title=f"Versions of {settings.store.collection}")
    for col in ("", "version", "collection", "embedder", "chunking", "state"):
        table.add_column(col)
    if live is None:
        table.add_row("*", "(none)", settings.store.collection, settings.embed.url, "", "live (unversioned)")
    for r in rows:
        table.add_row(
            "*" if r["live"] else "", r["name"], r["collection"], r["embed_url"],
            f"{r['chunk_size']}/{r['chunk_overlap']}", r["state"],
        )  # fmt: skip
    out.print(table)


@collection_app.command("switch")
def collection_switch(
    ctx: typer.Context, version: Annotated[str, typer.Argument(help="A ready version to make live.")]
) -> None:
    """Make a version live under the stable name, atomically; readers follow on their next request."""
    from ingest.versions import switch

    settings = _settings(ctx)
    v = asyncio.run(switch(settings, version))
    out.print(f"{settings.store.collection} -> {v.collection} ({v.embed_url})")


@collection_app.command("drop")
def collection_drop(
    ctx: typer.Context, version: Annotated[str, typer.Argument(help="A version that is not live.")]
) -> None:
    """Delete a version that is not live (its collection and sync state)."""
    from ingest.versions import drop

    v = asyncio.run(drop(_settings(ctx), version))
    out.print(f"dropped {v.collection}")
