"""The scale benchmark's synthetic corpus: chunk texts, ACL groups, vectors and queries, all from one seed.

Texts are sentences sampled from public sets (English XQuAD paragraphs, Korean Allganize pages) or a team's
own folder, each chunk one language, filled to a length drawn from the lengths of those sets' passages
(clipped to what a 300-token chunk holds). Texts are regenerated from the seed in every process (cheaper
than a gigabyte file); vectors are written once to an ``.npy`` file.

Vectors: the real embedder (bundled MiniLM) where asked (``real``), else generated unit vectors around a
few thousand random unit centres (Gaussian noise, then normalised), so nearest neighbours are crowded the
way real embeddings are and an approximate index can miss some: recall is meaningful. A query is a run of
words from a random chunk, with (generated) a vector drawn around that chunk's centre, or (real) its
embedding.

ACL groups: every chunk is readable by ``public`` (100 %); every 10th chunk also by ``s10`` (10 %), every
100th by ``s1`` (1 %). Cluster membership is random, so a filter keeps the same share of every cluster.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rag.types import Chunk, Filter

DIM = 384
# Chunk lengths, characters: what the default 300-token chunk of the bundled model holds at most.
MIN_CHARS, MAX_CHARS = 80, 1400
KOREAN_SHARE = 0.3
CHUNKS_PER_DOC = 8
NOISE = 0.8  # norm of the noise around a centre: member-centre cosine about 0.78, member-member about 0.61

# Selectivity (percent of chunks readable) -> the ACL filter that admits exactly that share.
SELECTIVITIES: dict[int, Filter] = {
    1: Filter(groups=("s1",)),
    10: Filter(groups=("s10",)),
    100: Filter(groups=("public",)),
}

_SENTENCE = re.compile(r"(?<=[.!?。])\s+|\n+")


@dataclass(frozen=True)
class Pool:
    """Sentences by language and passage lengths to draw chunk lengths from."""

    en: list[str]
    ko: list[str]
    lengths: list[int]
    origin: str

    def to_json(self) -> dict[str, Any]:
        """The pool as JSON (workers regenerate the same texts from it)."""
        return {"en": self.en, "ko": self.ko, "lengths": self.lengths, "origin": self.origin}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Pool:
        """The pool ``to_json`` wrote."""
        return cls(list(raw["en"]), list(raw["ko"]), [int(x) for x in raw["lengths"]], str(raw["origin"]))


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(text) if len(s.strip()) >= 20]


def pool_from_passages(passages: list[str], origin: str) -> Pool:
    """Sentences of the passages split by script (a sentence with Hangul is Korean) and the passages' lengths."""
    from rag.lexical.tokens import has_hangul

    en: list[str] = []
    ko: list[str] = []
    for p in passages:
        for s in _sentences(p):
            (ko if has_hangul(s) else en).append(s)
    lengths = [min(max(len(p), MIN_CHARS), MAX_CHARS) for p in passages if p.strip()]
    if not en and not ko:
        raise SystemExit(f"{origin}: no sentences of 20 characters or more to build chunks from")
    return Pool(en, ko, lengths, origin)


def shared_pool(data: Path) -> Pool:
    """The public sets' pool: XQuAD English paragraphs and Allganize Korean pages (their ``beir/corpus.jsonl``)."""
    passages: list[str] = []
    names = []
    for name in ("xquad_en", "allganize_ko_rag"):
        path = data / name / "beir" / "corpus.jsonl"
        if not path.is_file():
            raise SystemExit(f"--data {data}: {path} is missing (the public sets; see /work/shared/data/README.md)")
        names.append(name)
        with path.open(encoding="utf-8") as f:
            passages += [json.loads(line)["text"] for line in f if line.strip()]
    return pool_from_passages(passages, " + ".join(names))


def folder_pool(folder: Path) -> Pool:
    """A team's own pool: the documents of ``folder`` parsed as ingestion parses them."""
    from benchmarks.common import corpus_set

    docs = corpus_set(folder, None).corpus
    # A document's text is cut into passages of at most MAX_CHARS so its lengths look like chunks.
    passages = [d.text[i : i + MAX_CHARS] for d in docs for i in range(0, max(len(d.text), 1), MAX_CHARS)]
    return pool_from_passages([p for p in passages if p.strip()], str(folder))


def groups_of(i: int) -> tuple[str, ...]:
    """The ACL groups of chunk ``i`` (see the module docstring)."""
    out = ["public"]
    if i % 10 == 0:
        out.append("s10")
    if i % 100 == 0:
        out.append("s1")
    return tuple(out)


def texts(pool: Pool, n: int, seed: int) -> Iterator[tuple[str, str]]:
    """(language, text) of chunks 0..n-1, the same for the same pool, n and seed."""
    rng = np.random.default_rng(seed)
    langs = rng.random(n) < (KOREAN_SHARE if pool.ko and pool.en else (1.0 if pool.ko else 0.0))
    targets = rng.choice(np.asarray(pool.lengths), size=n)
    for i in range(n):
        sentences = pool.ko if langs[i] else pool.en
        picks = rng.integers(0, len(sentences), size=24)
        parts: list[str] = []
        size = 0
        for j in picks:
            if size >= targets[i]:
                break
            parts.append(sentences[int(j)])
            size += len(parts[-1]) + 1
        yield ("ko" if langs[i] else "en"), " ".join(parts)[:MAX_CHARS]


def chunks(pool: Pool, n: int, seed: int, start: int = 0, stop: int | None = None) -> Iterator[Chunk]:
    """The benchmark's chunks ``start..stop`` of a corpus of ``n`` (texts regenerated from the seed)."""
    stop = n if stop is None else stop
    for i, (lang, text) in enumerate(texts(pool, n, seed)):
        if i < start:
            continue
        if i >= stop:
            break
        doc = i // CHUNKS_PER_DOC
        yield Chunk(
            id=f"s{i:08d}",
            text=text,
            source=f"file:///scale/doc{doc:07d}.md",
            title=f"doc {doc}",
            index=i % CHUNKS_PER_DOC,
            groups=groups_of(i),
            lang=lang,
            content_hash=f"h{i}",
            doc_hash=f"d{doc}",
        )


def centres_for(n: int) -> int:
    """How many cluster centres a corpus of ``n`` chunks gets (a few thousand at 100k and beyond)."""
    return int(min(4000, max(100, n // 100)))


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def generated_vectors(n: int, seed: int, path: Path, batch: int = 100_000) -> np.ndarray:
    """Clustered unit vectors for ``n`` chunks written to ``path`` (``.npy``); returns each chunk's cluster."""
    rng = np.random.default_rng(seed + 1)
    centres = _unit(rng.standard_normal((centres_for(n), DIM)))
    cluster = rng.integers(0, len(centres), size=n)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, DIM))
    for start in range(0, n, batch):
        part = cluster[start : start + batch]
        noise = rng.standard_normal((len(part), DIM)) * (NOISE / np.sqrt(DIM))
        out[start : start + len(part)] = _unit(centres[part] + noise)
    out.flush()
    del out
    np.save(path.with_suffix(".centres.npy"), centres)
    return cluster


def query_texts(pool: Pool, n: int, seed: int, count: int) -> list[tuple[int, str]]:
    """(source chunk, text) of ``count`` queries: a run of 4-8 words (2-4 for Korean) from a random chunk."""
    rng = np.random.default_rng(seed + 2)
    wanted = sorted(set(int(x) for x in rng.choice(n, size=min(count * 2, n), replace=False)))
    by_chunk: dict[int, str] = {}
    want = set(wanted)
    for i, (lang, text) in enumerate(texts(pool, n, seed)):
        if i in want:
            words = text.split()
            size = int(rng.integers(2, 5) if lang == "ko" else rng.integers(4, 9))
            if len(words) >= size:
                at = int(rng.integers(0, len(words) - size + 1))
                by_chunk[i] = " ".join(words[at : at + size])
        if len(by_chunk) >= count or i >= wanted[-1]:
            break
    out = [(i, q) for i, q in by_chunk.items() if any(c.isalnum() for c in q)]
    return out[:count]


def spec_queries(spec: dict[str, Any]) -> tuple[list[dict[str, Any]], np.ndarray]:
    """A size's queries and their vectors: the first ``spec["query_count"]`` of those prepared (default all)."""
    rows = json.loads(Path(spec["queries"]).read_text(encoding="utf-8"))
    count = spec.get("query_count", len(rows))
    return rows[:count], np.load(spec["query_vectors"])[:count]


def generated_query_vectors(seed: int, centres: np.ndarray, clusters: list[int]) -> np.ndarray:
    """A vector around each query's source cluster centre, drawn as the chunks' vectors are."""
    rng = np.random.default_rng(seed + 3)
    noise = rng.standard_normal((len(clusters), DIM)) * (NOISE / np.sqrt(DIM))
    return _unit(centres[np.asarray(clusters)] + noise)
