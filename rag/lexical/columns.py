"""The fields a filter reads (``rag.types.matches``), one small integer per chunk and field, without the texts.

Each string field is interned (a code per distinct value: sources, titles, sections repeat across chunks), the
ACL is a code per distinct groups tuple, the page an int64 (-1 for none). A filter's mask is then a few numpy
lookups over codes, with exactly the semantics of ``matches``: groups shared, source listed, ``where`` equal.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rag.types import FILTERABLE_FIELDS, Chunk, Filter

_STRINGS = tuple(sorted(FILTERABLE_FIELDS - {"page"}))
_NO_PAGE = -1  # pages count from 1; a chunk without a page never equals a filter's page


class _Interned:
    """Distinct values of one field and a code per slot."""

    def __init__(self) -> None:
        self.values: list[Any] = []
        self.code: dict[Any, int] = {}
        self.slots = np.zeros(0, np.int32)

    def put(self, slots: np.ndarray, values: Sequence[Any]) -> None:
        codes = []
        for v in values:
            c = self.code.get(v)
            if c is None:
                c = self.code[v] = len(self.values)
                self.values.append(v)
            codes.append(c)
        if len(slots) and int(slots.max()) >= len(self.slots):
            grown = np.zeros(max(int(slots.max()) + 1, 2 * len(self.slots), 1024), np.int32)
            grown[: len(self.slots)] = self.slots
            self.slots = grown
        self.slots[slots] = codes

    def where(self, admit: np.ndarray, n: int) -> np.ndarray:
        """Mask of slots below ``n`` whose value's code is admitted (``admit``: bool per code)."""
        return admit[self.slots[:n]]


class Columns:
    """Per-slot filter fields of the indexed chunks."""

    def __init__(self) -> None:
        self._fields = {name: _Interned() for name in _STRINGS}
        self._groups = _Interned()
        self._page = np.zeros(0, np.int64)

    def put(self, slots: Sequence[int], chunks: Sequence[Chunk]) -> None:
        """Record the filter fields of chunks in their slots."""
        arr = np.asarray(slots, np.int64)
        if not len(arr):
            return
        for name, col in self._fields.items():
            col.put(arr, [getattr(c, name) for c in chunks])
        self._groups.put(arr, [tuple(c.groups) for c in chunks])
        if int(arr.max()) >= len(self._page):
            grown = np.full(max(int(arr.max()) + 1, 2 * len(self._page), 1024), _NO_PAGE, np.int64)
            grown[: len(self._page)] = self._page
            self._page = grown
        self._page[arr] = [_NO_PAGE if c.page is None else c.page for c in chunks]

    def mask(self, flt: Filter, n: int) -> np.ndarray:
        """Which of slots 0..n-1 the filter admits (``rag.types.matches``; free slots are masked by the caller)."""
        out = np.ones(n, bool)
        if flt.groups is not None:
            wanted = set(flt.groups)
            admit = np.array([bool(wanted & set(g)) for g in self._groups.values], bool)
            out &= self._groups.where(admit, n) if len(admit) else False
        if flt.sources is not None:
            out &= self._admit("source", set(flt.sources), n)
        if flt.exclude_sources:
            out &= ~self._admit("source", set(flt.exclude_sources), n)
        for key, value in flt.where.items():
            if key == "page":
                out &= self._page[:n] == value
            else:
                out &= self._admit(key, {value}, n)
        return out

    def _admit(self, name: str, wanted: set[Any], n: int) -> np.ndarray:
        col = self._fields[name]
        admit = np.array([v in wanted for v in col.values], bool)
        return col.where(admit, n) if len(admit) else np.zeros(n, bool)
