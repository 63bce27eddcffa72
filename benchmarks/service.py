"""Service overhead: /v1/search through real uvicorn vs the same retrieval in process; TTFT; memory.

``.venv/bin/python benchmarks/service.py [--seconds 10]``. Uses the Chroma embedded store with the
hashing embedder (so the figures measure the service, not the model) and the OpenAI fake as the
chat backend for time-to-first-token.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.serving.conftest import RagServer, _server_env, _wait_ready, free_port  # noqa: E402
from tests.serving.test_failover import SEED, spawn_backend  # noqa: E402

DOCS = [{"id": f"d{i}", "text": f"Document {i} about GPU clusters, queues, budgets and policy number {i}.",
         "source": f"file:///d{i}.md", "title": f"D{i}", "groups": ["public"]} for i in range(2000)]  # fmt: skip
QUERY = {"query": "GPU queue policy budget", "k": 5}


def pct(xs: list[float], p: float) -> float:
    return sorted(xs)[min(len(xs) - 1, int(p * len(xs)))] * 1000


async def load(call, concurrency: int, seconds: float) -> tuple[list[float], float]:  # type: ignore[no-untyped-def]
    lat: list[float] = []
    end = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < end:
            t = time.perf_counter()
            await call()
            lat.append(time.perf_counter() - t)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return lat, len(lat) / (time.perf_counter() - start)


async def main(seconds: float) -> dict[str, float]:
    tmp = Path(tempfile.mkdtemp(prefix="rag-bench-"))
    backend, backend_url = spawn_backend()
    chat = f"openai+http://{backend_url.removeprefix('http://')}?model=fake-chat"
    env = _server_env(tmp, f"chroma://{tmp}/chroma", chat, "hash://", {"RAG_LOG_LEVEL": "WARNING"})
    docs_file = tmp / "docs.json"
    docs_file.write_text(json.dumps(DOCS))
    seed = SEED.replace("json.loads(sys.argv[1])", "json.loads(open(sys.argv[1]).read())")
    subprocess.run([sys.executable, "-c", seed, str(docs_file)], env=env, cwd=REPO, check=True, timeout=600)
    port = free_port()
    cmd = [sys.executable, "-m", "uvicorn", "--factory", "serving.app:create_app", "--host", "127.0.0.1"]
    proc = subprocess.Popen([*cmd, "--port", str(port), "--log-level", "warning"], env=env, cwd=REPO)
    server = RagServer(port=port, env=env, process=proc, log_path=tmp / "none", data_dir=tmp)
    _wait_ready(server)
    out: dict[str, float] = {}
    try:
        # In process: the same pipeline call the route makes.
        import os

        os.environ.update({k: v for k, v in env.items() if k.startswith("RAG_")})
        from rag.config import load as load_settings
        from rag.pipeline import Pipeline

        pipeline = await Pipeline.build(load_settings())

        async def direct() -> None:
            await pipeline.search(QUERY["query"], QUERY["k"])

        async with httpx.AsyncClient(base_url=server.url, timeout=30, limits=httpx.Limits(max_connections=64)) as c:

            async def via_http() -> None:
                r = await c.post("/v1/search", json=QUERY)
                r.raise_for_status()

            for _ in range(50):
                await direct()
                await via_http()
            for conc in (1, 16):
                lat, rps = await load(direct, conc, seconds)
                out[f"inproc_c{conc}_p50_ms"], out[f"inproc_c{conc}_rps"] = pct(lat, 0.5), rps
                lat, rps = await load(via_http, conc, seconds)
                out[f"http_c{conc}_p50_ms"], out[f"http_c{conc}_rps"] = pct(lat, 0.5), rps
            # TTFT: the service (retrieval + prompt + backend) vs the backend directly.
            body = {"model": "rag", "stream": True, "messages": [{"role": "user", "content": "GPU queue policy?"}]}
            direct_body = {**body, "model": "fake-chat"}

            async def ttft(client: httpx.AsyncClient, url: str, payload: dict) -> float:  # type: ignore[type-arg]
                t = time.perf_counter()
                async with client.stream("POST", url, json=payload) as r:
                    async for line in r.aiter_lines():
                        if '"content":"' in line.replace(" ", "") and '"content":""' not in line.replace(" ", ""):
                            return time.perf_counter() - t
                return time.perf_counter() - t

            async with httpx.AsyncClient(timeout=30) as b:
                svc = [await ttft(c, "/v1/chat/completions", body) for _ in range(100)]
                raw = [await ttft(b, f"{backend_url}/chat/completions", direct_body) for _ in range(100)]
            out["ttft_service_p50_ms"], out["ttft_backend_p50_ms"] = pct(svc, 0.5), pct(raw, 0.5)
        status = Path(f"/proc/{proc.pid}/status").read_text()
        out["service_rss_mb"] = int(next(x for x in status.splitlines() if x.startswith("VmRSS")).split()[1]) / 1024
        await pipeline.close()
    finally:
        server.stop()
        backend.kill()
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    result = asyncio.run(main(parser.parse_args().seconds))
    for k, v in result.items():
        print(f"{k:28s} {v:10.2f}")
