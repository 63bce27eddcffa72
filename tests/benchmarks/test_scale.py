"""The scale benchmark runs end to end on a tiny corpus: every store, the BM25 index, the service, its page.

Behaviour only, no timings: the corpus is what the script says it is (ACL shares, Korean and English,
reproducible texts), every store's dense top-10 under each ACL filter equals the memory store's brute force
(at this size HNSW is exact), the figures and per-million rows are written, and ``--merge`` keeps what an
earlier run measured.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.scaling import corpus  # noqa: E402


def pool() -> corpus.Pool:
    en = [f"The queue number {i} runs nightly jobs on the GPU cluster." for i in range(50)]
    ko = [f"백업 작업 {i}번은 매일 밤 실행되며 결과를 보고합니다." for i in range(50)]
    return corpus.pool_from_passages(en + ko, "test")


def run(*argv: str | Path, timeout: float = 1200) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env |= {"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False"}
    cmd = [sys.executable, str(ROOT / "benchmarks" / "scale.py"), *map(str, argv)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=timeout, check=False)


def test_acl_groups_admit_exactly_one_ten_and_every_percent_of_chunks() -> None:
    groups = [corpus.groups_of(i) for i in range(10_000)]
    assert sum("s1" in g for g in groups) == 100
    assert sum("s10" in g for g in groups) == 1000
    assert all("public" in g for g in groups)


def test_chunk_texts_are_reproducible_mixed_korean_and_english_and_bounded() -> None:
    first = list(corpus.texts(pool(), 400, seed=3))
    assert first == list(corpus.texts(pool(), 400, seed=3))
    assert first != list(corpus.texts(pool(), 400, seed=4))
    ko = [t for lang, t in first if lang == "ko"]
    assert 0.2 < len(ko) / len(first) < 0.4 and all(any("가" <= c <= "힣" for c in t) for t in ko)
    assert all(0 < len(t) <= corpus.MAX_CHARS for _, t in first)


def test_generated_vectors_are_unit_length_and_clustered(tmp_path: Path) -> None:
    cluster = corpus.generated_vectors(2000, 5, tmp_path / "v.npy")
    import numpy as np

    vectors = np.load(tmp_path / "v.npy")
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    same = [(i, j) for i in range(200) for j in range(i + 1, 200) if cluster[i] == cluster[j]][:50]
    other = [(i, i + 1) for i in range(200) if cluster[i] != cluster[i + 1]][:50]
    mean = lambda pairs: float(np.mean([vectors[i] @ vectors[j] for i, j in pairs]))  # noqa: E731
    assert mean(same) > 0.4 > 0.2 > abs(mean(other))


def own_folder(tmp_path: Path) -> Path:
    """A team's documents: English and Korean text files the chunk texts are drawn from."""
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(6):
        (docs / f"ops{i}.md").write_text(
            f"# Operations {i}\n\n" + " ".join(s for s in pool().en[i * 8 : i * 8 + 8]), encoding="utf-8"
        )
        (docs / f"백업{i}.txt").write_text(" ".join(s for s in pool().ko[i * 8 : i * 8 + 8]), encoding="utf-8")
    return docs


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_the_benchmark_measures_every_store_and_the_service_and_writes_its_page(tmp_path: Path) -> None:
    out, page = tmp_path / "res" / "scale.json", tmp_path / "pages" / "scale.md"
    docs = own_folder(tmp_path)
    args = ["--corpus", docs, "--sizes", "300", "--queries", "6", "--rounds", "1", "--real-max", "300",
            "--work", tmp_path / "work", "--service", "--out", out, "--page", page]  # fmt: skip
    done = run(*args)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text(encoding="utf-8"))
    assert set(result["sizes"]) == {"300"}
    assert result["sizes"]["300"]["corpus"]["vectors"].startswith("MiniLM")
    for size in ("300",):
        stores = result["sizes"][size]["stores"]
        assert set(stores) == {"memory", "lexical", "milvus", "chroma"}
        assert result["sizes"][size]["oracle"] == "memory store"
        for name in ("memory", "milvus", "chroma"):
            figures = stores[name]["figures"]
            # Same ACL semantics as the oracle and exact at this size: every store finds the oracle's top-10.
            assert figures["recall_at_10"] == {"1": 1.0, "10": 1.0, "100": 1.0}, (size, name)
            assert set(figures["search"]["100"]) == {"dense", "lexical", "hybrid", "store_calls"}
            assert figures["per_million"]["rss_mb"] > 0
        assert stores["chroma"]["figures"]["disk_mb"] > 0
        assert stores["lexical"]["figures"]["load_s"] >= 0
    assert set(result["per_million"]) == {"memory", "lexical", "milvus", "chroma"}
    service = result["service"]
    assert "error" not in service, service
    assert service["n"] == 300 and service["http_search"]["calls"] == 6 and service["http_chat"]["calls"] == 6
    text = page.read_text(encoding="utf-8")
    assert str(docs) in result["settings"]["pool"]
    for part in ("# Benchmark: scale", "**Machine:**", "**Command:**", "**Settings:**", "recall@10", "/v1/search"):
        assert part in text
    assert not (tmp_path / "work" / "300").exists()  # the stores are removed unless --keep

    # A later run of one size and store keeps what the first measured of the others.
    again = run("--corpus", docs, "--sizes", "600", "--stores", "chroma", "--no-lexical", "--queries", "4",
                "--real-max", "0", "--keep",
                "--rounds", "1", "--work", tmp_path / "work", "--merge", "--out", out)  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    merged = json.loads(out.read_text(encoding="utf-8"))
    assert set(merged["sizes"]) == {"300", "600"}
    assert set(merged["sizes"]["300"]["stores"]) == {"memory", "lexical", "milvus", "chroma"}
    assert merged["sizes"]["600"]["corpus"]["vectors"] == "generated, clustered"
    # No memory store at 600: the oracle is numpy's exact search, which Chroma matches at this size.
    assert merged["sizes"]["600"]["oracle"].startswith("numpy exact")
    assert merged["sizes"]["600"]["stores"]["chroma"]["figures"]["recall_at_10"]["1"] == 1.0
    assert merged["sizes"]["600"]["stores"]["chroma"]["search"]["queries"] == 4
    assert "300->600" in merged["per_million"]["chroma"]["marginal"]
    assert merged["service"]["n"] == 300
    # The merged page's settings name every store its rows show, not only the last command's.
    assert merged["settings"]["stores"] == "memory, milvus, chroma"

    # Resumed with fewer queries: the ingest is taken as it was, a measurement not yet made uses the first 2.
    (tmp_path / "work" / "600" / "chroma.search.json").unlink()
    resumed = run("--corpus", docs, "--sizes", "600", "--stores", "chroma", "--no-lexical", "--queries", "2",
                  "--rounds", "1", "--work", tmp_path / "work", "--keep", "--resume", "--merge",
                  "--out", out)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    chroma = json.loads(out.read_text(encoding="utf-8"))["sizes"]["600"]["stores"]["chroma"]
    assert chroma["search"]["queries"] == 2
    assert chroma["ingest"] == merged["sizes"]["600"]["stores"]["chroma"]["ingest"]
    more = run("--corpus", docs, "--sizes", "600", "--stores", "chroma", "--queries", "9", "--work", tmp_path / "work",
               "--resume", "--out", tmp_path / "more.json")  # fmt: skip
    assert more.returncode != 0 and "prepared with 4 queries" in more.stderr


def test_an_unknown_store_is_refused_with_the_known_ones(tmp_path: Path) -> None:
    done = run("--stores", "chroma,qdrant", "--out", tmp_path / "x.json", timeout=120)
    assert done.returncode != 0 and "qdrant" in done.stderr and "milvus" in done.stderr
