"""Feature-hashing embedder: no model, deterministic, meaningless beyond shared words (tests only)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from rag.types import EmbedderInfo

if TYPE_CHECKING:
    from rag.config import Settings
    from rag.registry import BackendURL

_WORD = re.compile(r"\w+", re.UNICODE)


class HashingEmbedder:
    """Bag of hashed words, L2-normalised; cosine similarity approximates word overlap."""

    def __init__(self, dim: int = 256) -> None:
        self._info = EmbedderInfo(id=f"hash-{dim}", dim=dim)

    @property
    def info(self) -> EmbedderInfo:
        """Identity and dimension."""
        return self._info

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Blocking encode into unit vectors."""
        out = np.zeros((len(texts), self._info.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in _WORD.findall(text.lower()):
                h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
                out[row, h % self._info.dim] += 1.0 if (h >> 63) == 0 else -1.0
            norm = np.linalg.norm(out[row])
            if norm > 0:
                out[row] /= norm
        return out

    async def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """Embed passages."""
        return self.encode(texts)

    async def close(self) -> None:
        """Nothing to release: the model lives as long as the process."""

    async def embed_query(self, text: str) -> np.ndarray:
        """Embed a query."""
        return self.encode([text])[0]


def from_url(url: BackendURL, settings: Settings) -> HashingEmbedder:
    """``hash://?dim=256``."""
    return HashingEmbedder(int(url.query.get("dim", "256")))
