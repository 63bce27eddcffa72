"""The ``auto`` embedding backend: the fastest path this machine supports, checked once against fp32.

Each candidate embeds a probe batch (English and Korean, short and long) and must reach a cosine of at
least ``MIN_COSINE`` to the torch fp32 vectors on every probe text. The outcome is cached in a JSON file
under ``data_dir/models``, keyed by model, backend, device, CPU flags and library versions, so start-up
probes only when one of them changes. A backend that fails the probe is never used by ``auto``.

The precision of a backend is part of the embedder identity a collection records (``+bf16``, ``+int8``
after the model id; fp32 adds nothing), so vectors of different precisions never mix in one collection.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

MIN_COSINE = 0.999
PRECISION = {"torch": "fp32", "onnx": "fp32", "torch-bf16": "bf16", "onnx-int8": "int8"}
# The backend each recorded precision is embedded with when ``auto`` follows a collection.
FOLLOW = {"fp32": "torch", "bf16": "torch-bf16", "int8": "onnx-int8"}
_LONG_EN = (
    "The ingestion worker lists a NAS folder or an S3 bucket, parses PDF, Office, HWP, HTML and Markdown files, "
    "cuts each document into chunks of a few hundred tokens and embeds every chunk before it is written to the "
    "vector store together with its access-control list and a content hash. "
)
_LONG_KO = (
    "연구팀은 자체 쿠버네티스 플랫폼에서 내부 문서를 색인하고, 검색 서비스는 인용과 함께 답변을 생성합니다. "
    "수집 작업자는 폴더와 버킷의 파일을 읽어 조각으로 나누고 각 조각을 벡터로 바꿉니다. "
)
PROBE_TEXTS = (
    "Backups run nightly.",
    "How do I request a GPU quota increase for my team?",
    "백업은 매일 밤에 실행됩니다.",
    "GPU 할당량을 늘리려면 어떻게 신청하나요?",
    _LONG_EN * 8,  # longer than the model reads: truncation on the same tokens
    _LONG_KO * 8,
    "Mixed 한국어 and English: the 수집 worker embeds chunks (청크) at 02:00 UTC.",
    "def ingest(source: str) -> None:\n    for doc in list_documents(source):\n        embed(doc)",
)


@dataclass(frozen=True)
class Choice:
    """The backend ``auto`` picked and why (also what was rejected on the way)."""

    backend: str
    reason: str


def native_bf16() -> bool:
    """True when the CPU computes bf16 natively (AMX tiles or AVX-512 BF16), so autocast is fast, not emulated."""
    import torch

    cpu = torch.cpu
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


def candidates(device: str) -> list[str]:
    """Backends ``auto`` tries, fastest first; torch fp32 last, as the always-safe reference."""
    names = ["torch-bf16"] if device.startswith("cuda") or native_bf16() else []
    if not device.startswith("cuda"):
        try:
            import onnxruntime  # noqa: F401
        except ModuleNotFoundError:
            pass
        else:
            names.append("onnx")
    return [*names, "torch"]


def machine_key(device: str) -> dict[str, Any]:
    """What makes a probe outcome valid on this machine: device, CPU flags and library versions."""
    import torch

    flags: dict[str, Any] = {"capability": torch.backends.cpu.get_cpu_capability()}
    for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported", "_is_avx512_supported"):
        flags[name.strip("_")] = bool(getattr(torch.cpu, name, lambda: False)())
    versions: dict[str, str | None] = {}
    for dist in ("torch", "transformers", "sentence-transformers", "onnxruntime", "numpy"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return {"device": device, "cpu": _cpu_model(), "flags": flags, "versions": versions}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return ""


class ProbeCache:
    """Probe outcomes in one JSON file; a missing or unreadable file is an empty cache."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored outcome of ``key``, if any."""
        found = self._read().get(key)
        return found if isinstance(found, dict) else None

    def put(self, key: str, outcome: dict[str, Any]) -> None:
        """Store an outcome (atomically: another process may read the file at the same time)."""
        data = self._read() | {key: outcome}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError as e:  # a read-only data_dir: probe again next start rather than fail
            log.warning("cannot cache the embedding backend probe in %s: %s", self.path, e)


def cache_key(model: str, backend: str, machine: dict[str, Any]) -> str:
    """A short stable key of model + backend + machine."""
    raw = json.dumps({"model": model, "backend": backend, "machine": machine}, sort_keys=True)
    return f"{backend}-{hashlib.blake2b(raw.encode(), digest_size=8).hexdigest()}"


def min_cosine(reference: np.ndarray, vectors: np.ndarray) -> float:
    """Smallest cosine between matching rows (rows need not be unit length)."""
    ref = reference / np.clip(np.linalg.norm(reference, axis=1, keepdims=True), 1e-12, None)
    got = vectors / np.clip(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12, None)
    if ref.shape != got.shape or not np.isfinite(got).all():
        return -1.0
    return float((ref * got).sum(1).min())


def pick(
    names: Sequence[str],
    encode_with: Callable[[str, list[str]], np.ndarray],
    cache: ProbeCache,
    key_of: Callable[[str], str],
) -> Choice:
    """The first of ``names`` whose vectors match torch fp32 on the probe texts (cached); else torch.

    ``encode_with(backend, texts)`` embeds with one backend; ``"torch"`` is the fp32 reference and is
    always acceptable.
    """
    reference: np.ndarray | None = None
    rejected: list[str] = []
    for name in names:
        if name == "torch":
            break
        key = key_of(name)
        outcome = cache.get(key)
        how = "cached probe"
        if outcome is None:
            how = "probe"
            try:
                if reference is None:
                    reference = encode_with("torch", list(PROBE_TEXTS))
                cos = min_cosine(reference, encode_with(name, list(PROBE_TEXTS)))
                outcome = {"ok": cos >= MIN_COSINE, "min_cos": round(cos, 6), "error": None}
            except Exception as e:  # a backend that cannot run here is a failed probe, not a failed start
                outcome = {"ok": False, "min_cos": None, "error": f"{type(e).__name__}: {e}"}
            cache.put(key, outcome)
        if outcome.get("ok"):
            reason = f"{how}: min cosine {outcome['min_cos']} to fp32 on {len(PROBE_TEXTS)} probe texts"
            return Choice(name, "; ".join([*rejected, reason]))
        why = outcome.get("error") or f"min cosine {outcome.get('min_cos')} < {MIN_COSINE}"
        rejected.append(f"{name} rejected by {how} ({why})")
        log.warning("embedding backend %s failed its check against fp32: %s", name, why)
    return Choice("torch", "; ".join([*rejected, "fp32 (no faster backend passed here)"]))
