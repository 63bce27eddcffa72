"""The ``rag`` command line. Errors become a one-line message and an exit code here, and only here."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from eval.cli import eval_app
from rag.config import Settings, load
from rag.errors import ConfigError, RagError
from rag.seams import Embedder, VectorStore
from ui.kserve import kserve_app

app = typer.Typer(
    name="rag",
    help="onprem-rag: ingest documents, ask questions with cited answers, serve an OpenAI-compatible API.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
log = logging.getLogger("rag.cli")

T = TypeVar("T")

# Exit codes: 0 ok, 1 some work failed (e.g. documents that did not ingest), 2 usage or configuration,
# 3 a backend is unavailable or refused the request.
EXIT_PARTIAL, EXIT_CONFIG, EXIT_BACKEND = 1, 2, 3


class _State:
    """Options given before the subcommand, turned into Settings on first use."""

    config_file: Path | None = None
    overrides: dict[str, str] = {}  # noqa: RUF012 - one instance per process
    _settings: Settings | None = None

    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load(self.config_file, **_nested(self.overrides))
        return self._settings


def _nested(env: dict[str, str]) -> dict[str, Any]:
    """``{"RAG_STORE__URL": v}`` → ``{"store": {"url": v}}`` (merged over env and file by load())."""
    out: dict[str, Any] = {}
    for key, value in env.items():
        *sections, leaf = key.removeprefix("RAG_").lower().split("__")
        node = out
        for section in sections:
            node = node.setdefault(section, {})
        node[leaf] = value
    return out


state = _State()


def run(coro_fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run one async command, turning project errors into a message and an exit code."""
    try:
        return asyncio.run(coro_fn())
    except ConfigError as e:
        err.print(f"[bold red]configuration error:[/] {e.message}")
        raise typer.Exit(EXIT_CONFIG) from None
    except RagError as e:
        err.print(f"[bold red]error ({e.status} {e.code or e.type}):[/] {e.message}")
        raise typer.Exit(EXIT_BACKEND if e.status >= 500 else EXIT_CONFIG) from None
    except KeyboardInterrupt:
        err.print("interrupted")
        raise typer.Exit(130) from None


@app.callback()
def main_options(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML config file.")] = None,
    store: Annotated[str | None, typer.Option(help="Vector store URL, e.g. milvus+lite:///data/rag.db")] = None,
    collection: Annotated[str | None, typer.Option(help="Collection name.")] = None,
    embed: Annotated[str | None, typer.Option(help="Embedder URL, e.g. st://all-MiniLM-L6-v2")] = None,
    chat: Annotated[str | None, typer.Option(help="Chat backend URL, e.g. ollama://localhost:11434?model=x")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log at DEBUG level.")] = False,
) -> None:
    """Options shared by every command; each also reads RAG_* environment variables."""
    state.config_file = config
    for env, value in (
        ("RAG_STORE__URL", store),
        ("RAG_STORE__COLLECTION", collection),
        ("RAG_EMBED__URL", embed),
        ("RAG_CHAT__URL", chat),
    ):
        if value is not None:
            state.overrides[env] = value
    if verbose:
        state.overrides["RAG_LOG_LEVEL"] = "DEBUG"
    level = "DEBUG" if verbose else os.environ.get("RAG_LOG_LEVEL", "WARNING")
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def _settings() -> Settings:
    try:
        return state.settings()
    except ConfigError as e:
        err.print(f"[bold red]configuration error:[/] {e.message}")
        raise typer.Exit(EXIT_CONFIG) from None


def _live(settings: Settings) -> Settings:
    """Ingestion writes into the live version of a versioned collection."""
    from rag.versions import live_settings

    return live_settings(settings)


@asynccontextmanager
async def _writable_store(settings: Settings) -> AsyncIterator[tuple[VectorStore, Embedder]]:
    """The configured store, opened (created if new) for the configured embedder, closed afterwards."""
    from rag.registry import make_embedder, make_store

    embedder = make_embedder(settings)
    store = make_store(settings)
    try:
        await store.open(embedder.info, create=True)
        yield store, embedder
    finally:
        await store.close()


@app.command()
def ingest(
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
    settings = _live(_settings())

    async def go() -> Any:
        from ingest.progress import RichProgress
        from ingest.worker import ingest_source, parse_shard

        part = parse_shard(shard) if shard else None
        async with _writable_store(settings) as (store, embedder):
            with RichProgress(err) as progress:
                return await ingest_source(
                    settings, store, embedder, source, progress=progress, shard=part, total=progress.set_total
                )

    result = run(go)
    summary = result.to_dict()
    _print_ingest_summary(summary)
    if report:
        report.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if summary.get("failed"):
        raise typer.Exit(EXIT_PARTIAL)


@app.command()
def worker(
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
    settings = _live(_settings())

    async def go() -> Any:
        from ingest.service import run_worker
        from ingest.worker import parse_shard

        part = parse_shard(shard) if shard else None
        async with _writable_store(settings) as (store, embedder):
            return await run_worker(
                settings, store, embedder, source, interval_s=interval, watch=watch, host=host, port=port, shard=part
            )

    run(go)


def _print_ingest_summary(summary: dict[str, Any]) -> None:
    table = Table(title="Ingestion summary", show_header=False)
    for key in (
        "added", "updated", "regrouped", "deleted", "unchanged", "skipped", "failed", "warnings",
        "chunks_embedded", "chunks_added", "chunks_deleted",
    ):  # fmt: skip
        value = summary.get(key, 0)
        table.add_row(key.replace("_", " "), str(len(value) if isinstance(value, list) else value))
    table.add_row("seconds", f"{summary.get('seconds', 0):.1f}")
    out.print(table)
    for warning in summary.get("warnings", []):
        err.print(f"[yellow]warning[/] {warning['source']}: {warning['reason']}")
    for failure in summary.get("failed", []):
        err.print(f"[red]failed[/] {failure['source']}: {failure['reason']}")


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="The question.")],
    group: Annotated[list[str] | None, typer.Option("--group", "-g", help="Caller's ACL group (repeat).")] = None,
    stream: Annotated[bool, typer.Option(help="Print the answer as it is generated.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the answer and sources as JSON.")] = False,
) -> None:
    """Ask one question against the collection and print the cited answer.

    Example: rag ask "How long may a GPU job run?" -g public -g oncall
    """
    settings = _settings()
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

    answer = run(go)
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


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default from RAG_SERVER__HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default from RAG_SERVER__PORT).")] = None,
) -> None:
    """Serve the OpenAI-compatible API and the web console.

    Example: rag serve --port 8000, then open http://127.0.0.1:8000/
    """
    if host:
        state.overrides["RAG_SERVER__HOST"] = host
    if port is not None:
        state.overrides["RAG_SERVER__PORT"] = str(port)
    settings = _settings()
    import uvicorn

    # Start-up choices (which chat backend 'auto' picked, and why) are logged at INFO.
    logging.getLogger().setLevel(settings.log_level.upper())

    base = f"http://{settings.server.host}:{settings.server.port}"
    out.print(f"[bold green]onprem-rag[/] serving on {base}  (web console: {base}/ , API: {base}/v1)")
    out.print(
        "Try:\n"
        f"  curl -s {base}/v1/chat/completions -H 'Content-Type: application/json' \\\n"
        f'    -d \'{{"model": "{settings.server.model_name}", "messages": '
        '[{"role": "user", "content": "How long may a GPU job run?"}]}\'\n'
        f"  python -c \"from openai import OpenAI; c = OpenAI(base_url='{base}/v1', api_key='none'); "
        f"print(c.chat.completions.create(model='{settings.server.model_name}', "
        "messages=[{'role': 'user', 'content': 'How long may a GPU job run?'}]).choices[0].message.content)\""
    )
    # The app factory (imported by uvicorn, not by us) reads the configuration from the environment:
    # hand it the CLI flags and the config file that way.
    os.environ.update(state.overrides)
    if state.config_file:
        os.environ["RAG_CONFIG_FILE"] = str(state.config_file)
    import importlib.util

    # httptools has no header limit of its own: serving.protocol bounds the request head while parsing
    # it (limits from the app's settings); without httptools, h11 gets the same byte limit.
    http = "serving.protocol:HeaderLimitedProtocol" if importlib.util.find_spec("httptools") else "h11"
    uvicorn.run(
        "serving.app:create_app",
        factory=True,
        host=settings.server.host,
        port=settings.server.port,
        http=http,
        h11_max_incomplete_event_size=settings.server.max_header_kb * 1024,
        log_level=settings.log_level.lower(),
        access_log=False,  # the service writes its own access log line (JSON, with request id and caller)
    )


@app.command("config")
def show_config() -> None:
    """Print the effective configuration (secrets masked)."""
    settings = _settings()
    out.print_json(settings.model_dump_json())


@app.command()
def backends() -> None:
    """List the backend URL schemes for stores, embedders and chat."""
    from rag.registry import CHATS, EMBEDDERS, STORES

    for title, table_rows in (("Vector stores", STORES), ("Embedders", EMBEDDERS), ("Chat backends", CHATS)):
        table = Table(title=title)
        table.add_column("scheme")
        table.add_column("extra")
        table.add_column("what")
        for scheme, entry in table_rows.items():
            table.add_row(f"{scheme}://", entry.extra, entry.description)
        out.print(table)


collection_app = typer.Typer(
    help="Collection versions: build a new version beside the live one, switch atomically, drop old ones.",
    no_args_is_help=True,
)


@collection_app.command("build")
def collection_build(
    source: Annotated[str, typer.Argument(help="Folder, file, file:// or s3:// URI to ingest.")],
    version: Annotated[str, typer.Option("--version", help="Version name, e.g. v2 (collection <name>__v2).")],
    embed_url: Annotated[
        str | None, typer.Option("--embed", help="Embedder URL of this version (default: the configured one).")
    ] = None,
) -> None:
    """Ingest SOURCE into a new version of the collection; readers keep using the live one until a switch.

    Example: rag collection build /data/docs --version v2 --embed 'st:///models/e5-small'
    """
    settings = _settings()

    async def go() -> Any:
        from ingest.progress import RichProgress
        from ingest.worker import ingest_source
        from rag.registry import make_embedder, make_store
        from rag.versions import begin_build, finish_build, version_settings

        v = begin_build(settings, version, embed_url)
        vs = version_settings(settings, v)
        ok = False
        embedder = make_embedder(vs)
        store = make_store(vs)
        try:
            await store.open(embedder.info, create=True)
            with RichProgress(err) as progress:
                result = await ingest_source(vs, store, embedder, source, progress=progress, total=progress.set_total)
            ok = not result.interrupted
            return result
        finally:
            await store.close()
            await embedder.close()
            finish_build(settings, version, ok=ok)

    result = run(go)
    summary = result.to_dict()
    _print_ingest_summary(summary)
    err.print(f"version {version} is ready; evaluate it with --collection, then: rag collection switch {version}")
    if summary.get("failed"):
        raise typer.Exit(EXIT_PARTIAL)


@collection_app.command("list")
def collection_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the versions of the collection and which one is live."""
    from rag.versions import Pointer, pointer_path

    settings = _settings()
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
def collection_switch(version: Annotated[str, typer.Argument(help="A ready version to make live.")]) -> None:
    """Make a version live under the stable name, atomically; readers follow on their next request."""
    settings = _settings()

    async def go() -> Any:
        from rag.versions import switch

        return await switch(settings, version)

    v = run(go)
    out.print(f"{settings.store.collection} -> {v.collection} ({v.embed_url})")


@collection_app.command("drop")
def collection_drop(version: Annotated[str, typer.Argument(help="A version that is not live.")]) -> None:
    """Delete a version that is not live (its collection and sync state)."""
    settings = _settings()

    async def go() -> Any:
        from rag.versions import drop

        return await drop(settings, version)

    v = run(go)
    out.print(f"dropped {v.collection}")


keys_app = typer.Typer(
    help="API keys for the access file (auth.access_file): only their SHA-256 is stored.", no_args_is_help=True
)


@keys_app.command("new")
def keys_new(
    name: Annotated[str, typer.Argument(help="Who or what the key is for (shown in logs as key:NAME).")],
    group: Annotated[list[str] | None, typer.Option("--group", "-g", help="ACL group (repeatable).")] = None,
    scope: Annotated[
        list[str] | None, typer.Option("--scope", "-s", help="chat, search, embed or admin (repeatable).")
    ] = None,
) -> None:
    """Make a random key: the key goes to stderr (give it to the caller), the access-file entry to stdout.

    Example: rag keys new ci-bot -g eng -s chat -s search >> access.yaml
    """
    import secrets

    import yaml

    from serving.identity import hash_key

    key = "rag-" + secrets.token_urlsafe(32)
    entry: dict[str, Any] = {"name": name, "sha256": hash_key(key), "groups": group or []}
    if scope:
        entry["scopes"] = scope
    err.print(f"API key for {name} (shown once): {key}", highlight=False)
    sys.stdout.write(yaml.safe_dump({"keys": [entry]}, sort_keys=False).split("\n", 1)[1])


@keys_app.command("hash")
def keys_hash(
    key: Annotated[
        str | None, typer.Argument(help="The key; read from stdin when omitted (keeps it out of shell history).")
    ] = None,
) -> None:
    """Print the SHA-256 hex of an existing key, for the access file's 'sha256' field."""
    from serving.identity import hash_key

    value = key if key is not None else sys.stdin.readline().strip()
    if not value:
        err.print("no key given")
        raise typer.Exit(EXIT_CONFIG)
    out.print(hash_key(value), highlight=False)


app.add_typer(collection_app, name="collection")
app.add_typer(keys_app, name="keys")
app.add_typer(eval_app, name="eval", help="Evaluate retrieval and answers: run, report, compare, synth.")
app.add_typer(kserve_app, name="kserve")


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
