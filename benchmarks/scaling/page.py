"""The scale benchmark's Markdown page, from its JSON result."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.common import write_page

WHAT = """\
What is measured: how each store grows from thousands to millions of chunks. A synthetic corpus per size
(sentences of the public sets, 30 % Korean, chunk lengths drawn from the sets' passages up to what a
300-token chunk holds; vectors from the bundled MiniLM at 10k, generated clustered unit vectors beyond) is
written into each store through its adapter (`upsert`, 1,000 chunks a call; embedding not included) in a
process of its own, then opened in a fresh process, which is measured: resident memory (the process and its
children, less the same process before opening the store), dense search, lexical (BM25) search and hybrid
retrieval (the project's `Retriever.search`, k 10, dense and lexical depth 50 as the defaults have it), each
under ACL filters admitting 1 %, 10 % and 100 % of the chunks, query by query in alternating rounds.
Recall@10 compares each store's dense top-10 with the brute-force oracle under the same filter. The hybrid
rows look query vectors up (the vectors were made beforehand), so they hold retrieval alone; "store calls" is
the sum of the dense and lexical calls that retrieval makes, timed directly on the adapter, for the same
query. "Open" is a clean reopen; "open after a crash" (Chroma) is an open whose lexical file no longer claims
to match the collection, as a crash mid-write leaves it, so it reconciles the two by a scan. Per-million
figures scale memory, disk and ingest time linearly. The BM25 index kept beside the memory and Chroma stores
is also measured on its own (Milvus has its own BM25 inside).
"""


def _f(v: Any, digits: int = 1) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _stores(result: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    rows = []
    for size, data in result.get("sizes", {}).items():
        for name, entry in data.get("stores", {}).items():
            rows.append((size, name, entry))
    return rows


def _resources(result: dict[str, Any]) -> str:
    head = ("| size | store | ingest chunks/s | RSS MB | RSS MB per 1M | disk MB | disk MB per 1M | open s | "
            "open after a crash s | wall s (ingest + search) |\n|---|---|---|---|---|---|---|---|---|---|")  # fmt: skip
    lines = [head]
    for size, name, entry in _stores(result):
        if name == "lexical":
            continue
        f = entry.get("figures")
        if f is None:
            why = entry.get("skipped") or (entry.get("ingest", {}).get("error") or entry.get("search", {}).get("error"))
            lines.append(f"| {size} | {name} | {str(why)[:120]} | | | | | | | |")
            continue
        pm = f["per_million"]
        cells = [f.get("ingest_chunks_per_s"), f["rss_mb"], pm["rss_mb"], f["disk_mb"], pm["disk_mb"]]
        shown = " | ".join(_f(c, 0) for c in cells)
        opens = f"{_f(f.get('open_s'), 2)} | {_f(f.get('reconcile_open_s'), 2)}"
        lines.append(f"| {size} | {name} | {shown} | {opens} | {_f(entry.get('wall_s'), 0)} |")
    return "\n".join(lines)


def _latency(result: dict[str, Any]) -> str:
    head = ("| size | store | ACL admits | dense p50 / p99 ms | lexical p50 / p99 ms | "
            "hybrid p50 / p99 ms | store calls p50 ms | hybrid ÷ store calls | recall@10 |\n"
            "|---|---|---|---|---|---|---|---|---|")  # fmt: skip
    lines = [head]
    for size, name, entry in _stores(result):
        searches = entry.get("search", {}).get("searches") if isinstance(entry.get("search"), dict) else None
        if not searches or name == "lexical":
            continue
        rec = entry.get("figures", {}).get("recall_at_10", {})
        for sel, kinds in searches.items():

            def pp(kind: str, kinds: dict[str, Any] = kinds) -> str:
                k = kinds.get(kind)
                return f"{k['p50_ms']:.1f} / {k['p99_ms']:.1f}" if k else "-"

            calls = kinds.get("store_calls", {}).get("p50_ms")
            lines.append(
                f"| {size} | {name} | {sel} % | {pp('dense')} | {pp('lexical')} | {pp('hybrid')} | {_f(calls)} | "
                f"{_f(kinds.get('hybrid_over_store_calls'), 2)} | {_f(rec.get(sel), 3)} |"
            )
    return "\n".join(lines)


def _lexical(result: dict[str, Any]) -> str:
    head = ("| size | build s (tokenise + index) | save s | load s (read + index) | RSS MB | RSS MB per 1M | "
            "file MB | query p50 / p99 ms (1 %, 10 %, 100 %) |\n|---|---|---|---|---|---|---|---|")  # fmt: skip
    lines = [head]
    for size, name, entry in _stores(result):
        if name != "lexical":
            continue
        f = entry.get("figures")
        if f is None:
            why = entry.get("search", {}).get("error") or entry.get("ingest", {}).get("error")
            lines.append(f"| {size} | {str(why)[:150]} | | | | | | |")
            continue
        qs = entry["search"]["searches"]
        lat = ", ".join(f"{qs[s]['lexical']['p50_ms']:.1f} / {qs[s]['lexical']['p99_ms']:.1f}" for s in qs)
        lines.append(
            f"| {size} | {_f(f['build_s'], 1)} | {_f(f['save_s'], 1)} | {_f(f['load_s'], 1)} | {_f(f['rss_mb'], 0)} | "
            f"{_f(f['per_million']['rss_mb'], 0)} | {_f(f['disk_mb'], 0)} | {lat} |"
        )
    return "\n".join(lines)


def _indexes(result: dict[str, Any]) -> str:
    seen: dict[str, str] = {}
    for _, name, entry in _stores(result):
        idx = entry.get("figures", {}).get("index")
        if idx and name not in seen:
            reported = idx.get("reported")
            extra = f"; the store reports {reported}" if reported else ""
            seen[name] = f"- **{name}**: {idx['type']}, {idx.get('params')}{extra}"
    return "\n".join(seen.values())


def _walls(result: dict[str, Any]) -> str:
    parts = []
    for size, name, entry in _stores(result):
        if "wall_s" in entry:
            parts.append(f"{size} {name} {entry['wall_s']:.0f} s")
    return "; ".join(parts)


def _service(result: dict[str, Any]) -> str:
    s = result.get("service")
    if not s:
        return "Not run (`--service`)."
    if "error" in s:
        return f"The service run failed: {s['error']}"
    lines = [s.get("description", ""), "", "| figure | p50 ms | p99 ms |", "|---|---|---|"]
    for key, label in s.get("rows", []):
        v = s.get(key) or {}
        lines.append(f"| {label} | {_f(v.get('p50_ms'), 1)} | {_f(v.get('p99_ms'), 1)} |")
    for key, text in s.get("ratios", {}).items():
        lines.append(f"\n- {text}: **{s[key]:.2f}**")
    return "\n".join(lines)


def page_text(result: dict[str, Any], path: Path | None) -> str:
    """The page of one run (written to ``path`` when given)."""
    body = "\n\n".join(
        [
            "## Memory, disk, ingest\n\n" + _resources(result),
            "## Search latency and recall\n\n" + _latency(result),
            "## The BM25 index beside the memory and Chroma stores\n\n" + _lexical(result),
            "## Index types and parameters\n\n" + _indexes(result),
            "## Service at the largest size\n\n" + _service(result),
            "## Wall time of each size and store\n\n" + _walls(result),
        ]
    )
    return write_page(path, title="Benchmark: scale", what=WHAT, run=result, settings=result["settings"], body=body)
