"""Service overhead and a bounded load run, each side in its own process.

``.venv/bin/python benchmarks/service.py [--rounds 5] [--seconds 8]`` compares ``POST /v1/search``
through real uvicorn (uvloop + httptools, as ``rag serve`` runs it) with the same
``Pipeline.search`` called in process, at concurrency 1 and 16, in alternating rounds; it reports
medians over the rounds. The HTTP load comes from ``wrk`` (``apt-get install wrk``; a C load
generator, so the client costs little of the two cores), the in-process load from a separate
Python process running the pipeline alone. Then time to first token: the service (retrieval +
prompt + backend) against the OpenAI fake backend directly, alternating one request each, from an
aiohttp client in this process; the retrieval time is the service's own
``rag_retrieval_duration_seconds`` over the same requests.

``--load [--clients 64 --seconds 60]``: that many concurrent streaming chats for that long against
the OpenAI fake backend; every response must be a 200 stream ending in ``[DONE]`` with no error
event; the service's RSS is sampled every 2 s (start, peak, end reported).

Uses the Chroma embedded store (2,000 short chunks) with the hashing embedder, so the figures
measure the service, not the embedding model. Everything binds 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DOCS = [{"id": f"d{i}", "text": f"Document {i} about GPU clusters, queues, budgets and policy number {i}.",
         "source": f"file:///d{i}.md", "title": f"D{i}", "groups": ["public"]} for i in range(2000)]  # fmt: skip
QUERY: dict[str, Any] = {"query": "GPU queue policy budget", "k": 5}
CHAT = {"model": "rag", "stream": True, "messages": [{"role": "user", "content": "GPU queue policy budget?"}]}

WRK_LUA = """
wrk.method = "POST"
wrk.body = '%s'
wrk.headers["Content-Type"] = "application/json"
function done(summary, latency, requests)
  io.write(string.format("WRKJSON {\\"requests\\": %%d, \\"seconds\\": %%f, \\"p50_us\\": %%d, \\"p99_us\\": %%d, "
    .. "\\"errors\\": %%d, \\"non2xx\\": %%d}\\n",
    summary.requests, summary.duration / 1e6, latency:percentile(50), latency:percentile(99),
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status))
end
"""

# Run in a separate process: Pipeline.search alone, ``conc`` callers for ``seconds``.
INPROC = """
import asyncio, json, sys, time
from rag.config import load
from rag.pipeline import Pipeline
from rag.types import Filter

async def main(conc, seconds, query, k):
    pipeline = await Pipeline.build(load())
    # The route's call: an anonymous caller searches under the 'public' ACL filter.
    flt = Filter(groups=("public",))
    for _ in range(50):
        await pipeline.search(query, k, flt)
    lat = []
    end = time.perf_counter() + seconds
    async def worker():
        while time.perf_counter() < end:
            t = time.perf_counter()
            await pipeline.search(query, k, flt)
            lat.append(time.perf_counter() - t)
    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(conc)))
    elapsed = time.perf_counter() - start
    await pipeline.close()
    lat.sort()
    print(json.dumps({"p50_ms": lat[len(lat) // 2] * 1000, "rps": len(lat) / elapsed}))

asyncio.run(main(int(sys.argv[1]), float(sys.argv[2]), sys.argv[3], int(sys.argv[4])))
"""


def machine() -> str:
    """CPU count, model, load average: the state the figures were taken in."""
    model = ""
    with contextlib.suppress(OSError, StopIteration):
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        model = next(x.split(":", 1)[1].strip() for x in lines if "model name" in x)
    load = os.getloadavg()
    return (f"{os.cpu_count()} CPUs ({model or platform.machine()}), Python {platform.python_version()}, "
            f"load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}")  # fmt: skip


def rss_mb(pid: int) -> float:
    """Resident set size of a process, MiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(x for x in status.splitlines() if x.startswith("VmRSS")).split()[1]) / 1024


class Setup:
    """The seeded store, the OpenAI fake backend and the service process."""

    def __init__(self, extra_env: dict[str, str] | None = None) -> None:
        from tests.serving.conftest import _server_env
        from tests.serving.test_failover import SEED, spawn_backend

        self.tmp = Path(tempfile.mkdtemp(prefix="rag-bench-"))
        self.backend, self.backend_url = spawn_backend()
        chat = f"openai+http://{self.backend_url.removeprefix('http://')}?model=fake-chat"
        extra = {"RAG_LOG_LEVEL": "WARNING", **(extra_env or {})}
        self.env = _server_env(self.tmp, f"chroma://{self.tmp}/chroma", chat, "hash://", extra)
        docs_file = self.tmp / "docs.json"
        docs_file.write_text(json.dumps(DOCS))
        seed = SEED.replace("json.loads(sys.argv[1])", "json.loads(open(sys.argv[1]).read())")
        subprocess.run([sys.executable, "-c", seed, str(docs_file)], env=self.env, cwd=REPO, check=True, timeout=600)
        # An embedded store serves one process at a time: the in-process side searches its own copy.
        own = self.tmp / "inproc"
        own.mkdir()
        for name in ("chroma", "chroma-lexical"):
            shutil.copytree(self.tmp / name, own / name)
        self.inproc_env = {**self.env, "RAG_DATA_DIR": str(own), "RAG_STORE__URL": f"chroma://{own}/chroma"}
        self.server: Any = None

    def start(self) -> str:
        from tests.serving.conftest import RagServer, _wait_ready, free_port

        port = free_port()
        cmd = [sys.executable, "-m", "uvicorn", "--factory", "serving.app:create_app", "--host", "127.0.0.1",
               "--port", str(port), "--log-level", "warning", "--no-access-log", "--loop", "uvloop",
               "--http", "httptools"]  # fmt: skip
        proc = subprocess.Popen(cmd, env=self.env, cwd=REPO)
        self.server = RagServer(port=port, env=self.env, process=proc, log_path=self.tmp / "none", data_dir=self.tmp)
        _wait_ready(self.server)
        return str(self.server.url)

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()
        self.backend.kill()
        self.backend.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)


def inproc(env: dict[str, str], conc: int, seconds: float) -> dict[str, float]:
    """In-process ``Pipeline.search`` throughput and p50 (its own process)."""
    args = [sys.executable, "-c", INPROC, str(conc), str(seconds), str(QUERY["query"]), str(QUERY["k"])]
    out = subprocess.run(args, env=env, cwd=REPO, check=True, capture_output=True, text=True, timeout=600)
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def wrk(url: str, conc: int, seconds: float, tmp: Path) -> dict[str, float]:
    """``/v1/search`` through the service under ``wrk`` (one thread, ``conc`` connections)."""
    script = tmp / "search.lua"
    script.write_text(WRK_LUA % json.dumps(QUERY))
    cmd: list[str] = ["wrk", "-t1", f"-c{conc}", f"-d{max(1, round(seconds))}s", "--timeout", "10s", "-s", str(script)]
    out = subprocess.run([*cmd, f"{url}/v1/search"], check=True, capture_output=True, text=True, timeout=seconds + 60)
    line = next(x for x in out.stdout.splitlines() if x.startswith("WRKJSON "))
    r = json.loads(line.removeprefix("WRKJSON "))
    if r["errors"] or r["non2xx"]:
        raise RuntimeError(f"wrk saw errors: {r}")
    return {"p50_ms": r["p50_us"] / 1000, "p99_ms": r["p99_us"] / 1000, "rps": r["requests"] / r["seconds"]}


async def metric_sum(session: Any, url: str, name: str) -> tuple[float, float]:
    """``(sum, count)`` of a histogram on the service's /metrics."""
    async with session.get(f"{url}/metrics") as r:
        text = await r.text()
    total = float(re.search(rf"^{name}_sum (\S+)$", text, re.M).group(1))  # type: ignore[union-attr]
    count = float(re.search(rf"^{name}_count (\S+)$", text, re.M).group(1))  # type: ignore[union-attr]
    return total, count


async def ttft(url: str, backend_url: str, n: int) -> dict[str, float]:
    """Time to the first content token: the service vs the backend, alternating one request each."""
    import aiohttp

    async def first_token(session: aiohttp.ClientSession, target: str, body: dict[str, Any]) -> float:
        t = time.perf_counter()
        async with session.post(target, json=body) as r:
            r.raise_for_status()
            async for raw in r.content:
                line = raw.decode()
                if '"content":"' in line.replace(" ", "") and '"content":""' not in line.replace(" ", ""):
                    elapsed = time.perf_counter() - t
                    await r.read()
                    return elapsed
        raise RuntimeError(f"no content token from {target}")

    svc, raw = [], []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as s:
        for _ in range(10):  # warm both paths
            await first_token(s, f"{url}/v1/chat/completions", CHAT)
            await first_token(s, f"{backend_url}/chat/completions", {**CHAT, "model": "fake-chat"})
        before = await metric_sum(s, url, "rag_retrieval_duration_seconds")
        for _ in range(n):
            svc.append(await first_token(s, f"{url}/v1/chat/completions", CHAT))
            raw.append(await first_token(s, f"{backend_url}/chat/completions", {**CHAT, "model": "fake-chat"}))
        after = await metric_sum(s, url, "rag_retrieval_duration_seconds")
    retrieval_ms = (after[0] - before[0]) / max(1.0, after[1] - before[1]) * 1000
    return {
        "ttft_service_p50_ms": statistics.median(svc) * 1000,
        "ttft_backend_p50_ms": statistics.median(raw) * 1000,
        "retrieval_mean_ms": retrieval_ms,
    }


def overhead(rounds: int, seconds: float) -> dict[str, Any]:
    setup = Setup()
    try:
        url = setup.start()
        wrk(url, 4, 2, setup.tmp)  # warm-up
        runs: dict[str, list[float]] = {}
        for r in range(rounds):
            for conc in (1, 16):
                # Alternate which side goes first so a load change on the machine hits both.
                sides = [("inproc", lambda c=conc: inproc(setup.inproc_env, c, seconds)),
                         ("http", lambda c=conc: wrk(url, c, seconds, setup.tmp))]  # fmt: skip
                for side, fn in sides if r % 2 == 0 else sides[::-1]:
                    res = fn()
                    for key in ("p50_ms", "rps"):
                        runs.setdefault(f"{side}_c{conc}_{key}", []).append(res[key])
            print(f"round {r + 1}/{rounds}: " + ", ".join(f"{k}={v[-1]:.1f}" for k, v in runs.items()), flush=True)
        out: dict[str, Any] = {k: statistics.median(v) for k, v in runs.items()}
        # Differences within each round (the two sides ran back to back), then the median over rounds:
        # steadier than a difference of medians when the machine's load swings between rounds.
        added = [h - i for h, i in zip(runs["http_c1_p50_ms"], runs["inproc_c1_p50_ms"], strict=True)]
        ratios = [h / i for h, i in zip(runs["http_c16_rps"], runs["inproc_c16_rps"], strict=True)]
        out["search_added_p50_ms_c1"] = statistics.median(added)
        out["throughput_ratio_c16"] = statistics.median(ratios)
        out.update(asyncio.run(ttft(url, setup.backend_url, 100)))
        out["ttft_added_ms"] = out["ttft_service_p50_ms"] - out["ttft_backend_p50_ms"]
        out["service_rss_mb"] = rss_mb(setup.server.process.pid)
        out["rounds"] = runs
    finally:
        setup.close()
    return out


async def load_run(url: str, pid: int, clients: int, seconds: float) -> dict[str, Any]:
    """``clients`` concurrent streaming chats for ``seconds``; every answer checked; RSS sampled."""
    import aiohttp

    ok, errors, ttfts, rss = 0, [], [], [rss_mb(pid)]
    end = time.perf_counter() + seconds

    async def sampler() -> None:
        while time.perf_counter() < end:
            await asyncio.sleep(2.0)
            rss.append(rss_mb(pid))

    async def client(session: aiohttp.ClientSession, i: int) -> None:
        nonlocal ok
        n = 0
        while time.perf_counter() < end:
            n += 1
            body = {**CHAT, "messages": [{"role": "user", "content": f"GPU queue policy budget {i} {n}?"}]}
            t = time.perf_counter()
            try:
                async with session.post(f"{url}/v1/chat/completions", json=body) as r:
                    if r.status != 200:
                        errors.append(f"HTTP {r.status}: {(await r.text())[:200]}")
                        continue
                    first, done = None, False
                    async for raw in r.content:
                        line = raw.decode().strip()
                        if line.startswith('data: {"error"'):
                            errors.append(line[:200])
                        elif line == "data: [DONE]":
                            done = True
                        elif first is None and '"content":"' in line and '"content":""' not in line:
                            first = time.perf_counter() - t
                    if not done:
                        errors.append("stream ended without [DONE]")
                    else:
                        ok += 1
                        if first is not None:
                            ttfts.append(first)
            except (aiohttp.ClientError, TimeoutError) as e:
                errors.append(f"{type(e).__name__}: {e}")

    conn = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=120)) as s:
        start = time.perf_counter()
        await asyncio.gather(sampler(), *(client(s, i) for i in range(clients)))
        elapsed = time.perf_counter() - start
    rss.append(rss_mb(pid))
    ttfts.sort()
    return {
        "clients": clients,
        "seconds": round(elapsed, 1),
        "completed": ok,
        "errors": len(errors),
        "first_errors": errors[:5],
        "chats_per_s": round(ok / elapsed, 1),
        "ttft_p50_ms": round(ttfts[len(ttfts) // 2] * 1000, 1) if ttfts else None,
        "ttft_p99_ms": round(ttfts[int(len(ttfts) * 0.99)] * 1000, 1) if ttfts else None,
        "rss_start_mb": round(rss[0], 1),
        "rss_peak_mb": round(max(rss), 1),
        "rss_end_mb": round(rss[-1], 1),
        "rss_samples_mb": [round(x) for x in rss],
    }


def load(clients: int, seconds: float) -> dict[str, Any]:
    # The default limits are for production; the run wants every chat through the one backend.
    setup = Setup({"RAG_LIMITS__BACKEND_CONCURRENCY": str(clients)})
    try:
        url = setup.start()
        return asyncio.run(load_run(url, setup.server.process.pid, clients, seconds))
    finally:
        setup.close()


WHAT = """\
What is measured: the service's own cost. Overhead: `POST /v1/search` through a real uvicorn process
(driven by `wrk`) against the same `Pipeline.search` in a separate process, at concurrency 1 and 16, in
alternating rounds, medians; then time to first token of a streamed chat through the service against the
OpenAI-protocol fake backend directly. Load (`--load`): concurrent streaming chats for a fixed time, every
response checked to be a complete stream, the service's memory sampled. The store is Chroma embedded with the
hashing embedder, so the figures measure the service, not the embedding model.
"""


def use_own_data(corpus: Path | None, questions: Path | None) -> None:
    """Seed the store with ``--corpus`` (one chunk per file, first 2,000 characters) and ask ``--questions``' first."""
    from benchmarks.common import corpus_set, load_questions

    if corpus is not None:
        docs = list(corpus_set(corpus, None).corpus)
        DOCS[:] = [
            {"id": f"d{i}", "text": d.text[:2000] or d.title, "source": (corpus / d.id).resolve().as_uri(),
             "title": d.title, "groups": ["public"]}
            for i, d in enumerate(docs) if d.text or d.title
        ]  # fmt: skip
    if questions is not None:
        first = load_questions(questions)[0].question
        QUERY["query"] = first
        CHAT["messages"] = [{"role": "user", "content": first}]


def flat(result: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """The result's figures as (dotted name, value) rows."""
    if isinstance(result, dict):
        return [row for k, v in result.items() for row in flat(v, f"{prefix}{k}." if prefix or k else "")]
    return [(prefix.rstrip("."), result)]


if __name__ == "__main__":
    from benchmarks.common import add_data_options, check_data_options, command, now, write_page
    from benchmarks.common import machine as machine_info

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=None, help="per run (default 8; --load: 60)")
    parser.add_argument("--load", action="store_true", help="the bounded load run instead")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--out", type=Path, default=None, help="write the result JSON here")
    add_data_options(
        parser,
        corpus="seed the store with this folder (one chunk per file) instead of 2,000 generated ones",
        questions="send the first question of this eval case file instead of the built-in query",
    )
    args = parser.parse_args()
    check_data_options(args, questions_need_corpus=False)
    use_own_data(args.corpus, args.questions)
    started = time.perf_counter()
    print(f"machine: {machine()}", flush=True)
    result = load(args.clients, args.seconds or 60.0) if args.load else overhead(args.rounds, args.seconds or 8.0)
    print(json.dumps(result, indent=1))
    print(f"machine after: {machine()}")
    run = {"machine": machine_info(), "command": command(), "date": now(), "wall_s": time.perf_counter() - started}
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(run | {"result": result}, indent=1), encoding="utf-8")
    rows = "\n".join(
        f"| {k} | {f'{v:.4g}' if isinstance(v, float) else v} |"
        for k, v in flat(result)
        if not isinstance(v, list) or len(v) <= 8
    )
    shown = {"run": "load" if args.load else "overhead", "rounds": args.rounds,
             "seconds per run": args.seconds or (60.0 if args.load else 8.0), "clients": args.clients,
             "store": f"Chroma embedded, {len(DOCS)} chunks, hash:// embedder", "query": QUERY["query"],
             "load average at end": f"{os.getloadavg()[0]:.1f}"}  # fmt: skip
    body = "| figure | value |\n|---|---|\n" + rows
    title = "Benchmark: service" + (" under load" if args.load else "")
    write_page(args.page, title=title, what=WHAT, run=run, settings=shown, body=body)
