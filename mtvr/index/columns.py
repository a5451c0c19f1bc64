"""Metadata kept in columns so that a filter becomes a boolean mask over the index's int ids in milliseconds.

:class:`MetadataColumns` holds, for every metadata key, two numpy columns indexed by the int id faiss
stores for each video (ids are never reused, so position = id):

* ``codes[key]`` (``int32``): the dictionary code of a string or bool value (``-1``: missing, a number, or a
  list / object that never equals a scalar); equality and ``$in`` on strings and bools compare codes;
* ``nums[key]`` (``float64``, created with the key's first number): the value of int / float metadata
  (``NaN``: missing or not a number); equality on numbers and the ranges compare it.

A filter (:mod:`mtvr.filters`) is compiled clause by clause into vectorised comparisons on these columns, AND-ed
with the ``live`` column, so its cost is a few passes over ``n`` small integers or floats instead of one Python
call per video and clause (at 100k videos: 1 s at 1 % selectivity and 13 s for a 50-value ``$in`` evaluated
in Python, against well under a millisecond here; ``benchmarks/search_backends.py``). The semantics are those of
:meth:`mtvr.filters.Filter.matches`, which ``tests/test_filter_columns.py`` checks record by record: a missing
key matches nothing, ``True`` is not ``1``, ``2 == 2.0``, ranges only match numbers. Integers that a float64
cannot hold exactly (beyond 2**53) are kept aside and compared exactly in Python.

The columns are derived data: :class:`~mtvr.index.VideoIndex` updates them on every add, remove and replace
(under its write lock) and rebuilds them from the saved metadata on load; they are never written to disk.
Hand-written rather than a library: the index's own int ids address the rows, the semantics are mtvr's filter
language, and numpy alone keeps a 100k-row mask under a millisecond (a pandas/pyarrow table would have to be
re-indexed on every add and remove).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from ..filters import Clause, Filter

_CMP = {"gt": np.greater, "gte": np.greater_equal, "lt": np.less, "lte": np.less_equal}
_PY_CMP = {"gt": lambda a, b: a > b, "gte": lambda a, b: a >= b, "lt": lambda a, b: a < b, "lte": lambda a, b: a <= b}


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _exact_float(x: int | float) -> bool:
    """Whether a number is held exactly by a float64 (every float is; ints up to 2**53 are)."""
    return isinstance(x, float) or -(2**53) <= x <= 2**53


def _tag(value: Any) -> tuple[str, Any] | None:
    """The dictionary key of a string or bool value (``None`` for numbers and non-scalars)."""
    if isinstance(value, bool):
        return ("b", value)
    if isinstance(value, str):
        return ("s", value)
    return None


class MetadataColumns:
    """Columns of metadata over int ids ``0..capacity-1`` (see the module docstring)."""

    def __init__(self) -> None:
        self._cap = 0
        self.live = np.zeros(0, dtype=bool)  # ids that are in the index now
        self._codes: dict[str, np.ndarray] = {}
        self._dict: dict[str, dict[tuple[str, Any], int]] = {}  # key -> {(kind, value): code}
        self._nums: dict[str, np.ndarray] = {}
        self._big: dict[str, dict[int, int]] = {}  # key -> {id: int beyond float64's exact range}

    # ----------------------------------------------------------------- maintenance
    @property
    def capacity(self) -> int:
        return self._cap

    def reserve(self, need: int) -> None:
        """Make room for ids below ``need`` (done before an add changes anything: a failed allocation
        leaves the columns as they were)."""
        if need <= self._cap:
            return
        cap = max(need, 2 * self._cap, 1024)
        self.live = _extend(self.live, cap, False)
        for key in self._codes:
            self._codes[key] = _extend(self._codes[key], cap, -1)
        for key in self._nums:
            self._nums[key] = _extend(self._nums[key], cap, np.nan)
        self._cap = cap

    def add(self, ints: Iterable[int], metadata: Iterable[Mapping[str, Any] | None]) -> None:
        """Record the metadata of newly added ids (every id in ``ints`` must be new or removed before)."""
        ints = np.asarray(list(ints) if not isinstance(ints, np.ndarray) else ints, dtype=np.int64)
        if not len(ints):
            return
        self.reserve(int(ints.max()) + 1)
        for i, meta in zip(ints.tolist(), metadata):
            for key, value in (meta or {}).items():
                self._set(key, i, value)
        self.live[ints] = True

    def _set(self, key: str, i: int, value: Any) -> None:
        tag = _tag(value)
        if tag is not None:
            col = self._codes.get(key)
            if col is None:
                col = self._codes[key] = np.full(self._cap, -1, dtype=np.int32)
            codes = self._dict.setdefault(key, {})
            code = codes.get(tag)
            if code is None:
                code = codes[tag] = len(codes)
            col[i] = code
        elif _is_number(value) and not (isinstance(value, float) and math.isnan(value)):
            col = self._nums.get(key)
            if col is None:
                col = self._nums[key] = np.full(self._cap, np.nan, dtype=np.float64)
            if _exact_float(value):
                col[i] = value
            else:
                self._big.setdefault(key, {})[i] = value

    def remove(self, ints: Iterable[int]) -> None:
        """Forget removed ids (their rows go back to missing)."""
        ints = np.asarray(list(ints) if not isinstance(ints, np.ndarray) else ints, dtype=np.int64)
        ints = ints[ints < self._cap]
        if not len(ints):
            return
        self.live[ints] = False
        for col in self._codes.values():
            col[ints] = -1
        for col in self._nums.values():
            col[ints] = np.nan
        for big in self._big.values():
            for i in ints.tolist():
                big.pop(i, None)

    # ----------------------------------------------------------------- selection
    def mask(self, wanted: Filter) -> np.ndarray:
        """``bool [capacity]``: which ids are live and match every clause of ``wanted``."""
        out = self.live.copy()
        for clause in wanted.clauses:
            if not out.any():
                break
            out &= self._clause(clause)
        return out

    def _clause(self, c: Clause) -> np.ndarray:
        if c.op == "eq":
            return self._equal(c.key, (c.value,))
        if c.op == "in":
            return self._equal(c.key, c.value)
        nums = self._nums.get(c.key)
        out = np.zeros(self._cap, dtype=bool)
        if nums is not None:
            bound = c.value
            if _exact_float(bound):
                with np.errstate(invalid="ignore"):
                    out = _CMP[c.op](nums, bound)
            else:  # an int bound beyond 2**53: exact Python comparisons on the numeric rows
                rows = np.flatnonzero(~np.isnan(nums))
                out[rows[[_PY_CMP[c.op](x, bound) for x in nums[rows].tolist()]]] = True
        for i, x in self._big.get(c.key, {}).items():
            out[i] = _PY_CMP[c.op](x, c.value)
        return out

    def _equal(self, key: str, values: Iterable[Any]) -> np.ndarray:
        """Rows whose value equals one of ``values`` (by value and by kind, as :mod:`mtvr.filters` says)."""
        out = np.zeros(self._cap, dtype=bool)
        values = list(values)
        codes = self._dict.get(key, {})
        wanted_codes = [code for v in values if (tag := _tag(v)) is not None and (code := codes.get(tag)) is not None]
        if wanted_codes:
            col = self._codes[key]
            out |= col == wanted_codes[0] if len(wanted_codes) == 1 else np.isin(col, wanted_codes)
        numbers = [v for v in values if _is_number(v)]
        nums = self._nums.get(key)
        if numbers and nums is not None:
            exact = [v for v in numbers if _exact_float(v)]
            if exact:
                out |= nums == exact[0] if len(exact) == 1 else np.isin(nums, exact)
            for v in numbers:  # an int beyond 2**53: rows whose float is its nearest, checked exactly
                if not _exact_float(v) and abs(v) < 2**1023:
                    rows = np.flatnonzero(nums == float(v))
                    out[rows[[x == v for x in nums[rows].tolist()]]] = True
        if numbers:
            for i, x in self._big.get(key, {}).items():
                out[i] = any(x == v for v in numbers)
        return out


def _extend(col: np.ndarray, cap: int, fill: Any) -> np.ndarray:
    out = np.full(cap, fill, dtype=col.dtype)
    out[: len(col)] = col
    return out


def columns_of(ints: Iterable[int], metadata: Iterable[Mapping[str, Any] | None]) -> MetadataColumns:
    """Columns built from ``(int id, metadata)`` pairs given as two parallel iterables (a load)."""
    cols = MetadataColumns()
    cols.add(ints, metadata)
    return cols
