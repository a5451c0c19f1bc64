"""Metadata filters: one small language, validated once, used by every index backend.

A filter is a JSON object mapping metadata keys to conditions; all conditions must hold (AND)::

    {"file": "cooking.mp4"}                          # equality (string, number or bool)
    {"lang": {"$in": ["es", "ca"]}}                  # membership in a list of scalars
    {"lang": ["es", "ca"]}                           # the same: a bare list is short for $in
    {"year": {"$gte": 2020, "$lt": 2025}}           # numeric ranges: $gt, $gte, $lt, $lte
    {"channel": "abc", "start": {"$lt": 60.0}}       # several keys: all must match
    {"file": {"$eq": "a.mp4"}}                       # $eq is the long form of equality

The AST that :func:`parse_filter` returns (and that a backend translates, e.g. into a Milvus boolean
expression) is a :class:`Filter`: a tuple of :class:`Clause` ``(key, op, value)`` joined by AND, with

* ``op == "eq"``: ``value`` is a ``str``, ``int``, ``float`` or ``bool``;
* ``op == "in"``: ``value`` is a tuple of such scalars (possibly empty: matches nothing);
* ``op`` in ``"gt" "gte" "lt" "lte"``: ``value`` is a finite ``int`` or ``float`` (never ``bool``).

Semantics (every backend must follow them; ``tests/test_filters.py`` pins them down):

* a record whose metadata lacks the key does not match (unknown keys select nothing, they are not an error);
* equality is by value and by kind: ``True`` does not equal ``1``, ``"2024"`` does not equal ``2024``,
  ``2`` equals ``2.0``; list- or object-valued metadata never equals a scalar;
* a range clause matches only numeric metadata values (a string ``"2024"`` is not ``>= 2000``);
* an empty ``{}`` filter (or ``None``) matches everything.

Wrong filters (not an object, an empty or non-string key, a list or object where a scalar is expected, an
unknown ``$operator``, a non-numeric or NaN range bound, ``null``) raise :class:`~mtvr.errors.FilterError` naming
the key, before anything is searched.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import FilterError

RANGE_OPS = {"$gt": "gt", "$gte": "gte", "$lt": "lt", "$lte": "lte"}
OPERATORS = {"$eq": "eq", "$in": "in", **RANGE_OPS}
Scalar = str | int | float | bool


@dataclass(frozen=True)
class Clause:
    """One condition on one metadata key: ``op`` is ``eq``, ``in``, ``gt``, ``gte``, ``lt`` or ``lte``."""

    key: str
    op: str
    value: Any

    def matches(self, metadata: Mapping[str, Any]) -> bool:
        if self.key not in metadata:
            return False
        x = metadata[self.key]
        if self.op == "eq":
            return _same(x, self.value)
        if self.op == "in":
            return any(_same(x, v) for v in self.value)
        if not _is_number(x):
            return False
        if self.op == "gt":
            return x > self.value
        if self.op == "gte":
            return x >= self.value
        if self.op == "lt":
            return x < self.value
        return x <= self.value  # lte


@dataclass(frozen=True)
class Filter:
    """A validated filter: its clauses, all of which must hold. ``Filter(())`` matches everything."""

    clauses: tuple[Clause, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.clauses)

    def matches(self, metadata: Mapping[str, Any] | None) -> bool:
        """Whether a record with this metadata passes the filter."""
        meta = metadata or {}
        return all(c.matches(meta) for c in self.clauses)

    def select(self, records: Iterable[tuple[Any, Mapping[str, Any] | None]]) -> list[Any]:
        """The ids of the ``(id, metadata)`` records that pass, in the order given."""
        return [rid for rid, meta in records if self.matches(meta)]

    def to_dict(self) -> dict[str, Any]:
        """The filter back as a canonical JSON object (``$eq``/``$in``/ranges spelled out)."""
        out: dict[str, dict[str, Any]] = {}
        for c in self.clauses:
            out.setdefault(c.key, {})["$" + c.op] = list(c.value) if c.op == "in" else c.value
        return out


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _same(x: Any, value: Scalar) -> bool:
    if isinstance(value, bool) or isinstance(x, bool):
        return isinstance(x, bool) and isinstance(value, bool) and x == value
    if _is_number(value):
        return _is_number(x) and x == value
    return isinstance(x, str) and x == value


def _scalar(key: str, value: Any, what: str) -> Scalar:
    if isinstance(value, bool) or isinstance(value, str):
        return value
    if _is_number(value):
        if isinstance(value, float) and not math.isfinite(value):
            raise FilterError(f"filter on {key!r}: {what} {value!r} is not a finite number")
        return value
    if value is None:
        raise FilterError(f"filter on {key!r}: {what} is null; compare with a string, number or bool")
    if isinstance(value, (list, tuple)):
        raise FilterError(f"filter on {key!r}: {what} is a list; to match any of several values use {{'$in': [...]}}")
    raise FilterError(
        f"filter on {key!r}: {what} is a {type(value).__name__} ({value!r:.40}); use a string, number or bool"
    )


def parse_filter(filter: Mapping[str, Any] | Filter | None) -> Filter:
    """Validate a filter object (see the module docstring) into a :class:`Filter`.

    Raises :class:`~mtvr.errors.FilterError` naming the key of the first wrong condition.
    """
    if filter is None:
        return Filter()
    if isinstance(filter, Filter):
        return filter
    if not isinstance(filter, Mapping):
        raise FilterError(
            f"a filter must be an object mapping metadata keys to conditions, got {type(filter).__name__}"
        )
    clauses: list[Clause] = []
    for key, cond in filter.items():
        if not isinstance(key, str) or not key:
            raise FilterError(f"filter key {key!r} must be a non-empty string (a metadata key)")
        if key.startswith("$"):
            raise FilterError(
                f"filter key {key!r}: operators go inside a key's condition, e.g. {{'year': {{{key!r}: ...}}}}"
            )
        if isinstance(cond, (list, tuple)):  # shorthand for {"$in": [...]}
            clauses.append(Clause(key, "in", tuple(_scalar(key, v, "a listed value") for v in cond)))
            continue
        if not isinstance(cond, Mapping):
            clauses.append(Clause(key, "eq", _scalar(key, cond, "the value")))
            continue
        if not cond:
            raise FilterError(f"filter on {key!r}: empty condition {{}}; give a value or an operator")
        for op, value in cond.items():
            if op not in OPERATORS:
                raise FilterError(
                    f"filter on {key!r}: unknown operator {op!r}; use one of {', '.join(sorted(OPERATORS))}"
                )
            name = OPERATORS[op]
            if name == "eq":
                clauses.append(Clause(key, "eq", _scalar(key, value, "the $eq value")))
            elif name == "in":
                if not isinstance(value, (list, tuple)):
                    raise FilterError(f"filter on {key!r}: $in needs a list of values, got {type(value).__name__}")
                clauses.append(Clause(key, "in", tuple(_scalar(key, v, "a $in value") for v in value)))
            else:
                if not _is_number(value):
                    raise FilterError(
                        f"filter on {key!r}: {op} needs a number, got {type(value).__name__} ({value!r:.40})"
                    )
                if isinstance(value, float) and math.isnan(value):
                    raise FilterError(f"filter on {key!r}: {op} bound is NaN")
                clauses.append(Clause(key, name, value))
    return Filter(tuple(clauses))


def compile_filter(filter: Mapping[str, Any] | Filter | None) -> Callable[[Mapping[str, Any] | None], bool]:
    """A predicate ``metadata -> bool`` for a filter (validated first)."""
    return parse_filter(filter).matches


_CLI_OPS = ((">=", "$gte"), ("<=", "$lte"), ("!=", None), (">", "$gt"), ("<", "$lt"), ("=", "$eq"))


def _cli_value(text: str) -> Scalar:
    """A command-line value: JSON numbers, ``true``/``false`` and quoted strings are typed, the rest is text."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return text
    return value if isinstance(value, (str, int, float, bool)) else text


def filter_from_args(items: Sequence[str]) -> dict[str, Any]:
    """Build a filter object from command-line items.

    Each item is a JSON object (``'{"year": {"$gte": 2020}}'``) or ``key=value``, ``key>=n``, ``key>n``,
    ``key<=n``, ``key<n``; ``key=a,b`` is not split (use ``key:in=a,b``). Values that parse as JSON
    numbers or booleans are typed (``year=2024`` is the number 2024; ``name="2024"`` is the string).
    Repeated items are combined with AND. The result is validated by :func:`parse_filter`.
    """
    out: dict[str, dict[str, Any]] = {}

    def put(key: str, op: str, value: Any) -> None:
        cond = out.setdefault(key, {})
        if op in cond and cond[op] != value:
            raise FilterError(f"filter on {key!r}: {op} given twice with different values")
        cond[op] = value

    for item in items:
        text = item.strip()
        if text.startswith("{"):
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                raise FilterError(f"--filter {item!r} is not valid JSON ({exc})") from None
            for key, cond in parse_filter(obj).to_dict().items():
                for op, value in cond.items():
                    put(key, op, value)
            continue
        if ":in=" in text:
            key, _, rest = text.partition(":in=")
            put(key.strip(), "$in", [_cli_value(v) for v in rest.split(",")] if rest else [])
            continue
        pos = min((text.find(c) for c in "<>=!" if c in text), default=-1)  # the first operator sign
        if pos <= 0:
            raise FilterError(f"--filter {item!r}: expected key=value, key>=number, key:in=a,b or a JSON object")
        sym = next((s for s, _ in _CLI_OPS if text.startswith(s, pos)), "!")
        op = dict(_CLI_OPS).get(sym)
        if op is None:
            raise FilterError(f"--filter {item!r}: '!=' is not supported; use key=value, ranges or key:in=a,b")
        put(text[:pos].strip(), op, _cli_value(text[pos + len(sym) :].strip()))
    parse_filter(out)  # validate (names the key)
    return out
