"""Chroma's filtered dense search: a broad filter is applied after an unfiltered search, a narrow one inside it.

Chroma evaluates a ``where`` over every chunk it admits before searching, which costs more than the search
when the filter admits most of the collection (an ACL of ``public``). The adapter first asks for the nearest
chunks with no ``where`` and filters them itself; when too few pass it asks again with the ``where``. Both
paths must give the brute-force top-k of the admitted chunks, on embedded Chroma and on a Chroma server.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest

from rag.registry import make_store
from rag.types import EmbedderInfo, Filter
from tests.contract.conftest import make_chunk, settings_for, store_url, unit_vectors

DIM = 16
N = 400
K = 10


def _groups(i: int) -> tuple[str, ...]:
    if i % 10 == 9:
        return ("private",)  # 10 % nobody in these tests may read
    if i % 50 == 0:
        return ("public", "lab")  # 2 %: a narrow group
    return ("public",)


@pytest.mark.parametrize("backend", ["chroma", "chroma+http"])
async def test_broad_and_narrow_filters_both_give_the_exact_admitted_top_k(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
):
    url = store_url(backend, tmp_path, request)
    store = make_store(settings_for(url, f"c{uuid.uuid4().hex[:12]}", data_dir=tmp_path / "data"))
    await store.open(EmbedderInfo(id="hash-16", dim=DIM), create=True)
    try:
        chunks = [make_chunk(f"note {i}", source=f"file:///d{i % 7}.md", index=i, groups=_groups(i)) for i in range(N)]
        vectors = unit_vectors(N, DIM, seed=3)
        await store.upsert(chunks, vectors)
        queries = unit_vectors(6, DIM, seed=4)
        cases = {
            "broad ACL": (Filter(groups=("public",)), lambda i: "public" in _groups(i)),
            "narrow ACL": (Filter(groups=("lab",)), lambda i: "lab" in _groups(i)),
            "ACL and a source": (
                Filter(groups=("public",), sources=("file:///d3.md",)),
                lambda i: "public" in _groups(i) and i % 7 == 3,
            ),
            "ACL less a source": (
                Filter(groups=("public",), exclude_sources=("file:///d1.md",)),
                lambda i: "public" in _groups(i) and i % 7 != 1,
            ),
        }
        for name, (flt, admitted) in cases.items():
            allowed = np.array([admitted(i) for i in range(N)])
            for q in queries:
                sims = np.where(allowed, vectors @ q, -np.inf)
                expected = [chunks[i].id for i in np.argsort(-sims)[: min(K, int(allowed.sum()))]]
                got = await store.search(q, K, flt)
                assert [h.chunk.id for h in got] == expected, name
                assert all(admitted(h.chunk.index) for h in got), name
        # The narrow filters went to Chroma's own filtered search; the broad ACL did not need it.
        narrow = store._narrow  # type: ignore[attr-defined]
        assert repr({"groups": {"$contains": "lab"}}) in narrow
        assert repr({"groups": {"$contains": "public"}}) not in narrow
    finally:
        await store.close()
