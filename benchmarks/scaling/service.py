"""The service at scale: ``/v1/search`` and chat time to first token over the largest store, three ways.

1. Through the real service: a uvicorn process serving ``serving.app:create_app`` as ``rag serve`` runs it
   (uvloop, httptools), asked by an aiohttp client, one request at a time.
2. The same retrieval in process: ``Pipeline.search`` / ``Pipeline.prepare`` + ``stream`` in a separate
   Python process over its own copy of the store (an embedded store serves one process at a time).
3. The calls that retrieval makes, timed directly: the embedder's ``embed_query``, the store's dense
   ``search`` and lexical ``search_text`` at the retrieval depth (dense left out for a query the route sends
   to BM25 alone).

The three alternate pass by pass over the same queries. Everything uses the default settings (the bundled
MiniLM embeds each query; the chat backend is the extractive answerer, the default without an LLM), as an
anonymous caller, whose ACL (``public``) admits every chunk of the benchmark corpus.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.scaling import corpus

REPO = Path(__file__).resolve().parents[2]

# The in-process side: reads a command per line ("search", "calls", "chat", "quit"), answers JSON seconds.
INPROC = r"""
import asyncio, json, sys, time
from rag.config import load
from rag.pipeline import Pipeline
from rag.retrieval import route
from rag.types import Filter, Message

async def main(queries, k):
    pipeline = await Pipeline.build(load())
    await pipeline.ensure_open()
    flt = Filter(groups=("public",))  # the route's filter for an anonymous caller
    depth = pipeline.settings.retrieval.candidates
    for q in queries[:5]:
        await pipeline.search(q, k, flt)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "quit":
            break
        out = {"embed": [], "dense": [], "lexical": [], "calls": [], "t": []}
        for q in queries:
            t = time.perf_counter()
            if cmd == "search":
                await pipeline.search(q, k, flt)
            elif cmd == "chat":
                prepared = await pipeline.prepare([Message("user", q)], flt)
                async for event in pipeline.stream(prepared):
                    if getattr(event, "text", ""):
                        break
            elif cmd == "calls":
                plan = route(q, pipeline.settings.retrieval, pipeline.retriever.dense_langs)
                total = 0.0
                if plan.dense_weight > 0:
                    t0 = time.perf_counter(); vec = await pipeline.embedder.embed_query(q)
                    t1 = time.perf_counter(); await pipeline.store.search(vec, depth, flt)
                    t2 = time.perf_counter()
                    out["embed"].append(t1 - t0); out["dense"].append(t2 - t1); total += t2 - t0
                t0 = time.perf_counter(); await pipeline.store.search_text(q, depth, flt)
                out["lexical"].append(time.perf_counter() - t0); total += time.perf_counter() - t0
                out["calls"].append(total)
            out["t"].append(time.perf_counter() - t)
        print(json.dumps(out), flush=True)
    await pipeline.close()

queries = json.loads(open(sys.argv[1], encoding="utf-8").read())
asyncio.run(main(queries, int(sys.argv[2])))
"""

K = 10


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(base: dict[str, str], spec: dict[str, Any], store: str, folder: Path) -> dict[str, str]:
    url = spec["stores"][store]["url"].replace(spec["stores"][store]["data_dir"], str(folder))
    return {**base, "RAG_DATA_DIR": str(folder), "RAG_STORE__URL": url, "RAG_CHAT__URL": "extractive://"}


async def _http_pass(url: str, queries: list[str], chat: bool) -> list[float]:
    import aiohttp

    times = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as s:
        for q in queries:
            t = time.perf_counter()
            if not chat:
                async with s.post(f"{url}/v1/search", json={"query": q, "k": K}) as r:
                    if r.status != 200:
                        raise RuntimeError(f"/v1/search answered {r.status}: {(await r.text())[:300]}")
                    await r.read()
                times.append(time.perf_counter() - t)
                continue
            body = {"model": "rag", "stream": True, "messages": [{"role": "user", "content": q}]}
            first = None
            async with s.post(f"{url}/v1/chat/completions", json=body) as r:
                if r.status != 200:
                    raise RuntimeError(f"/v1/chat/completions answered {r.status}: {(await r.text())[:300]}")
                async for raw in r.content:
                    line = raw.decode().strip()
                    if first is None and '"content":"' in line and '"content":""' not in line:
                        first = time.perf_counter() - t
            times.append(first if first is not None else time.perf_counter() - t)
    return times


def _summary(values: list[float]) -> dict[str, float]:
    from benchmarks.scaling.measure import pct

    return {"p50_ms": round(pct(values, 0.5) * 1000, 2), "p99_ms": round(pct(values, 0.99) * 1000, 2),
            "calls": len(values)}  # fmt: skip


def service_run(size_dir: Path, store: str, rounds: int, base_env: dict[str, str], limit: int = 100) -> dict[str, Any]:
    """Service vs in-process retrieval vs the calls it makes, over the store built at ``size_dir``."""
    spec = json.loads((size_dir / "spec.json").read_text(encoding="utf-8"))
    folder = Path(spec["stores"][store]["data_dir"])
    if not folder.is_dir():
        return {"error": f"no {store} store at {folder} (was its size run with --service?)"}
    own = size_dir / f"{store}-inproc"
    shutil.rmtree(own, ignore_errors=True)
    shutil.copytree(folder, own)
    queries = [q["text"] for q in corpus.spec_queries(spec)[0]][:limit]
    qfile = size_dir / "service-queries.json"
    qfile.write_text(json.dumps(queries, ensure_ascii=False), encoding="utf-8")
    port = _port()
    cmd = [sys.executable, "-m", "uvicorn", "--factory", "serving.app:create_app", "--host", "127.0.0.1",
           "--port", str(port), "--log-level", "warning", "--no-access-log", "--loop", "uvloop",
           "--http", "httptools"]  # fmt: skip
    server = subprocess.Popen(cmd, env=_env(base_env, spec, store, folder), cwd=REPO)
    inproc = subprocess.Popen([sys.executable, "-c", INPROC, str(qfile), str(K)], env=_env(base_env, spec, store, own),
                              cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        t = time.perf_counter()
        asyncio.run(_wait(url, server))
        # The first search opens the collection (and loads its lexical index): timed, then warmed.
        asyncio.run(_http_pass(url, queries[:1], chat=False))
        first_s = time.perf_counter() - t
        asyncio.run(_http_pass(url, queries[:5], chat=False))
        assert inproc.stdin is not None and inproc.stdout is not None
        if not json.loads(inproc.stdout.readline()).get("ready"):
            raise RuntimeError("the in-process side did not start")

        def ask(cmd: str) -> dict[str, list[float]]:
            assert inproc.stdin is not None and inproc.stdout is not None
            inproc.stdin.write(cmd + "\n")
            inproc.stdin.flush()
            line = inproc.stdout.readline()
            if not line:
                raise RuntimeError(f"the in-process side died during {cmd}")
            return json.loads(line)  # type: ignore[no-any-return]

        got: dict[str, list[float]] = {k: [] for k in ("http_search", "inproc_search", "embed", "dense", "lexical",
                                                       "calls", "http_chat", "inproc_chat")}  # fmt: skip
        for _ in range(rounds):
            got["http_search"] += asyncio.run(_http_pass(url, queries, chat=False))
            got["inproc_search"] += ask("search")["t"]
            calls = ask("calls")
            for key in ("embed", "dense", "lexical", "calls"):
                got[key] += calls[key]
            got["http_chat"] += asyncio.run(_http_pass(url, queries, chat=True))
            got["inproc_chat"] += ask("chat")["t"]
        inproc.stdin.write("quit\n")
        inproc.stdin.flush()
    finally:
        for proc in (server, inproc):
            proc.terminate()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(own, ignore_errors=True)
    out: dict[str, Any] = {key: _summary(v) for key, v in got.items()}
    out.update(
        {
            "store": store,
            "n": spec["n"],
            "queries": len(queries),
            "rounds": rounds,
            "start_and_first_search_s": round(first_s, 1),
            "service_over_inproc": round(out["http_search"]["p50_ms"] / out["inproc_search"]["p50_ms"], 3),
            "retrieval_over_calls": round(out["inproc_search"]["p50_ms"] / out["calls"]["p50_ms"], 3),
            "service_over_calls": round(out["http_search"]["p50_ms"] / out["calls"]["p50_ms"], 3),
            "description": (
                f"{store} store, {spec['n']:,} chunks, {len(queries)} queries x {rounds} rounds, one request at a "
                "time, anonymous caller (ACL `public`, every chunk); MiniLM embeds each query; chat through the "
                "extractive answerer (the default without an LLM). Store calls: embed_query + dense search + "
                "lexical search at the retrieval depth, timed on the adapter."
            ),
            "rows": [
                ["http_search", "`/v1/search` through the service"],
                ["inproc_search", "`Pipeline.search` in process"],
                ["calls", "its calls: embed + dense + lexical"],
                ["embed", "embed_query (MiniLM)"],
                ["dense", "dense search (depth 50)"],
                ["lexical", "lexical search (depth 50)"],
                ["http_chat", "chat time to first token through the service"],
                ["inproc_chat", "chat time to first token in process"],
            ],
            "ratios": {
                "service_over_inproc": "service ÷ in-process retrieval (p50)",
                "retrieval_over_calls": "in-process retrieval ÷ the calls it makes (p50; goal ≤ 1.5)",
                "service_over_calls": "service ÷ the calls its retrieval makes (p50)",
            },
        }
    )
    return out


async def _wait(url: str, server: subprocess.Popen[Any], timeout_s: float = 600) -> None:
    import aiohttp

    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as s:
        while time.monotonic() < deadline:
            if server.poll() is not None:
                raise RuntimeError(f"the service exited with {server.returncode}")
            try:
                async with s.get(f"{url}/healthz") as r:
                    if r.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError(f"the service did not start within {timeout_s:.0f} s")
