"""Deterministic identifiers, so re-ingesting the same content is idempotent."""

from __future__ import annotations

import hashlib


def content_hash(data: bytes | str) -> str:
    """Hex SHA-256 of content (text is hashed as UTF-8)."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    return hashlib.sha256(data).hexdigest()


def chunk_id(source: str, index: int, text_hash: str) -> str:
    """Id of a chunk from its source URI, position and content hash (32 hex chars)."""
    key = f"{source}\x00{index}\x00{text_hash}".encode()
    return hashlib.blake2b(key, digest_size=16).hexdigest()
