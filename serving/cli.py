"""``rag serve`` and ``rag keys``: the service's commands, mounted by the ``rag`` command."""

from __future__ import annotations

import importlib.util
import sys
from typing import Annotated, Any

import typer
from rich.console import Console

from rag.config import Overrides
from rag.errors import ExitCode

serving_app = typer.Typer()
keys_app = typer.Typer(
    help="API keys for the access file (auth.access_file): only their SHA-256 is stored.", no_args_is_help=True
)
serving_app.add_typer(keys_app, name="keys")

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


@serving_app.command()
def serve(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Bind address (default from RAG_SERVER__HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default from RAG_SERVER__PORT).")] = None,
) -> None:
    """Serve the OpenAI-compatible API and the web console.

    Example: rag serve --port 8000, then open http://127.0.0.1:8000/
    """
    import uvicorn

    from serving.app import create_app

    settings = (ctx.obj or Overrides()).load(server={"host": host, "port": port})
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
    # httptools has no header limit of its own: serving.protocol bounds the request head while parsing
    # it (limits from the app's settings); without httptools, h11 gets the same byte limit.
    http = "serving.protocol:HeaderLimitedProtocol" if importlib.util.find_spec("httptools") else "h11"
    uvicorn.run(
        create_app(settings),
        host=settings.server.host,
        port=settings.server.port,
        http=http,
        h11_max_incomplete_event_size=settings.server.max_header_kb * 1024,
        log_level=settings.log_level.lower(),
        # create_app configured the root logger (JSON lines by default); uvicorn's own loggers propagate
        # to it instead of getting uvicorn's text handlers, so every stderr line has one format.
        log_config=None,
        access_log=False,  # the service writes its own access log line (JSON, with request id and caller)
    )


@serving_app.command("mcp")
def mcp_stdio(
    ctx: typer.Context,
    api_key: Annotated[
        str | None,
        typer.Option(
            envvar="RAG_MCP_API_KEY",
            show_envvar=True,
            help="Act as the caller this access-file key names (its groups and scopes); without one, "
            "as an anonymous caller (the public group), refused where auth.required is set.",
        ),
    ] = None,
) -> None:
    """Serve MCP (tools search and ask, documents as resources) over stdin/stdout, for a local MCP client.

    Example (an MCP client's server entry): {"command": "rag", "args": ["mcp"], "env": {"RAG_MCP_API_KEY": "..."}}
    """
    import asyncio

    from serving.mcp import run_stdio

    settings = (ctx.obj or Overrides()).load()
    asyncio.run(run_stdio(settings, api_key))


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
        raise typer.Exit(ExitCode.CONFIG)
    out.print(hash_key(value), highlight=False)
