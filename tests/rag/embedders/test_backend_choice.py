"""The ``auto`` embedding backend: chosen per machine, checked against fp32, cached, recorded, followed.

Real MiniLM, real Chroma (embedded); the only fakes are the deliberately bad backends handed to the probe
(fp32 vectors with noise added, or a backend that crashes), which a real machine cannot produce on demand.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rag.config import load
from rag.embedders import probe
from rag.embedders.st import SentenceTransformerEmbedder, bundled_minilm_path
from rag.errors import EmbedderMismatch
from rag.registry import make_embedder, make_store

MODEL = "sentence-transformers/all-MiniLM-L6-v2"


def embedder(data: Path, backend: str | None = None) -> SentenceTransformerEmbedder:
    """The bundled embedder as the settings build it (the default backend unless one is given)."""
    embed: dict[str, str] = {"url": "st://all-MiniLM-L6-v2"}
    if backend:
        embed["backend"] = backend
    made = make_embedder(load(data_dir=data, embed=embed))
    assert isinstance(made, SentenceTransformerEmbedder)
    return made


@pytest.fixture(scope="module")
def fp32() -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder(bundled_minilm_path(), MODEL, backend="torch")


def test_the_default_backend_is_auto() -> None:
    assert load().embed.backend == "auto"


def test_auto_takes_the_fastest_candidate_of_this_machine_after_checking_it_against_fp32(tmp_path: Path) -> None:
    expected = probe.candidates("cpu")[0]  # torch-bf16 on a CPU with AMX / AVX-512 BF16, else onnx or torch
    emb = embedder(tmp_path)
    assert emb.backend == expected
    assert emb.backend_reason.startswith("auto: probe: min cosine")
    cached = json.loads((tmp_path / "models" / "backend-probes.json").read_text(encoding="utf-8"))
    (outcome,) = cached.values()
    assert outcome["ok"] is True and outcome["min_cos"] >= probe.MIN_COSINE


def test_candidates_put_bf16_first_exactly_when_the_cpu_has_native_bf16() -> None:
    names = probe.candidates("cpu")
    assert names[-1] == "torch"
    assert (names[0] == "torch-bf16") == probe.native_bf16()
    assert probe.candidates("cuda:0") == ["torch-bf16", "torch"]


def test_a_second_start_reuses_the_cached_probe_outcome(tmp_path: Path) -> None:
    first = embedder(tmp_path)
    second = embedder(tmp_path)
    assert second.backend == first.backend
    if first.backend != "torch":
        assert second.backend_reason.startswith("auto: cached probe:")


def perturbed(fp32: SentenceTransformerEmbedder, *, only: int | None, scale: float):
    """A fake backend: the fp32 vectors plus noise (on every probe text, or only on text ``only``)."""
    calls: list[str] = []

    def encode_with(backend: str, texts: list[str]) -> np.ndarray:
        calls.append(backend)
        vectors = fp32.encode(texts)
        if backend == "bad":
            noise = np.random.default_rng(0).normal(0, scale, vectors.shape).astype(np.float32)
            if only is not None:
                noise[np.arange(len(texts)) != only] = 0
            vectors = vectors + noise
        if backend == "crash":
            raise RuntimeError("kernel not available")
        return vectors

    return encode_with, calls


@pytest.mark.parametrize("only", [None, probe.PROBE_TEXTS.index(probe._LONG_KO * 8)])
def test_a_backend_whose_vectors_drift_from_fp32_is_refused_even_on_one_probe_text(
    fp32: SentenceTransformerEmbedder, tmp_path: Path, only: int | None
) -> None:
    encode_with, calls = perturbed(fp32, only=only, scale=0.004)  # cosine about 0.997 on a perturbed text
    cache = probe.ProbeCache(tmp_path / "probes.json")
    choice = probe.pick(["bad", "torch"], encode_with, cache, lambda b: b)
    assert choice.backend == "torch"
    assert "bad rejected by probe" in choice.reason
    assert cache.get("bad") is not None and cache.get("bad")["ok"] is False  # type: ignore[index]
    # The refusal is cached too: the next start does not embed the probe with the bad backend again.
    calls.clear()
    again = probe.pick(["bad", "torch"], encode_with, cache, lambda b: b)
    assert again.backend == "torch" and "cached probe" in again.reason and calls == []


def test_a_backend_that_crashes_on_the_probe_is_skipped_for_the_next_candidate(
    fp32: SentenceTransformerEmbedder, tmp_path: Path
) -> None:
    encode_with, _ = perturbed(fp32, only=None, scale=0.0)
    choice = probe.pick(["crash", "good", "torch"], encode_with, probe.ProbeCache(tmp_path / "p.json"), str)
    assert choice.backend == "good"
    assert "crash rejected by probe (RuntimeError: kernel not available)" in choice.reason


def test_an_explicit_backend_wins_and_is_not_probed(tmp_path: Path) -> None:
    emb = embedder(tmp_path, "torch")
    assert emb.backend == "torch" and emb.backend_reason == "set explicitly (embed.backend)"
    assert emb.info.follow is None
    assert not (tmp_path / "models" / "backend-probes.json").exists()


def test_the_recorded_identity_names_the_precision_fp32_being_the_bare_model_id(tmp_path: Path) -> None:
    assert embedder(tmp_path, "torch").info.id == MODEL
    bf16 = embedder(tmp_path, "torch-bf16").info
    assert bf16.id == f"{MODEL}+bf16" and bf16.precision == "bf16" and bf16.dim == 384


def settings_for(data: Path, backend: str | None):
    embed = {"url": "st://all-MiniLM-L6-v2"} | ({"backend": backend} if backend else {})
    return load(data_dir=data, store={"url": f"chroma://{data}/chroma"}, embed=embed)


@pytest.mark.parametrize("bf16", [True, False], ids=["cpu-with-bf16", "cpu-without-bf16"])
async def test_auto_follows_the_precision_of_a_collection_built_at_another_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bf16: bool
) -> None:
    from ingest.worker import ingest_source

    # Both kinds of CPU on any machine: the probe's candidates follow native_bf16() (bf16 is emulated, slowly
    # but with the same numbers, where the CPU lacks it). The collection is built at a precision the probe
    # does not pick: fp32 where it picks bf16, int8 where it picks an fp32 backend (onnx or torch).
    monkeypatch.setattr(probe, "native_bf16", lambda: bf16)
    picked = probe.candidates("cpu")[0]
    built_with = "torch" if probe.PRECISION[picked] != "fp32" else "onnx-int8"
    precision = probe.PRECISION[built_with]
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# Backups\n\nBackups run nightly at 02:00.\n", encoding="utf-8")
    (docs / "b.md").write_text("# 백업\n\n백업은 매일 밤 2시에 실행됩니다.\n", encoding="utf-8")
    built = settings_for(tmp_path, built_with)
    store, emb = make_store(built), make_embedder(built)
    first = await ingest_source(built, store, emb, str(docs))
    await store.close()
    assert first.chunks_embedded == 2

    later = settings_for(tmp_path, None)  # the default backend, on the same collection
    store, auto = make_store(later), make_embedder(later)
    assert isinstance(auto, SentenceTransformerEmbedder)
    assert auto.backend == picked and probe.PRECISION[auto.backend] != precision
    again = await ingest_source(later, store, auto, str(docs))
    hits = await store.search(await auto.embed_query("when do backups run?"), k=1)
    await store.close()
    assert auto.info.id == emb.info.id and auto.backend == probe.FOLLOW[precision]
    assert f"follows the collection, built at {precision} (probe chose {picked})" in auto.backend_reason
    assert again.chunks_embedded == 0 and again.unchanged == 2  # following does not re-embed anything
    assert hits and hits[0].chunk.source.endswith("a.md")


async def test_a_collection_of_one_precision_refuses_an_explicit_backend_of_another(tmp_path: Path) -> None:
    built = settings_for(tmp_path, "torch-bf16")
    store, emb = make_store(built), make_embedder(built)
    await store.open(emb.info, create=True)
    await store.close()
    explicit = settings_for(tmp_path, "torch")
    store = make_store(explicit)
    with pytest.raises(EmbedderMismatch, match=r"all-MiniLM-L6-v2\+bf16"):
        await store.open(make_embedder(explicit).info, create=False)
    await store.close()


async def test_auto_does_not_follow_a_collection_of_another_model(tmp_path: Path) -> None:
    other = load(data_dir=tmp_path, store={"url": f"chroma://{tmp_path}/chroma"}, embed={"url": "hash://?dim=384"})
    store = make_store(other)
    await store.open(make_embedder(other).info, create=True)
    await store.close()
    store, auto = make_store(settings_for(tmp_path, None)), embedder(tmp_path)
    before = auto.backend
    with pytest.raises(EmbedderMismatch):
        await store.open(auto.info, create=False)
    await store.close()
    assert auto.backend == before


def test_the_ingest_summary_says_which_backend_ran_and_why(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# Backups\n\nBackups run nightly.\n", encoding="utf-8")
    env = os.environ | {
        "RAG_DATA_DIR": str(tmp_path / "data"),
        "RAG_STORE__URL": f"chroma://{tmp_path}/chroma",
        "RAG_EMBED__URL": "st://all-MiniLM-L6-v2",
        "HF_HUB_OFFLINE": "1",
        "ANONYMIZED_TELEMETRY": "False",
    }
    report = tmp_path / "report.json"
    done = subprocess.run(
        [sys.executable, "-m", "onprem_rag", "ingest", str(docs), "--report", str(report)],
        capture_output=True, text=True, env=env, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    line = json.loads(report.read_text(encoding="utf-8"))["embedder"]
    expected = probe.candidates("cpu")[0]
    assert line.startswith(MODEL) and f"(backend {expected}: auto: probe: min cosine" in line
    assert "embedder" in done.stdout
