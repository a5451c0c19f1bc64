"""Milvus boolean expressions from validated mtvr filters and video ids, with every value escaped.

Milvus selects rows by a filter *string* (``file == "a.mp4" and start >= 10.0``). Video ids and
metadata values are data: they are never pasted into that string as they are, but written as escaped
string literals, so that an id such as ``x" or id != "`` stays one string. (pymilvus's own
``delete(ids=...)`` / ``get(ids=...)`` quote VARCHAR keys without escaping; mtvr never calls them.)

Hand-written because pymilvus has no literal-escaping helper, and its expression templates
(``filter_params``) are not understood by Milvus Lite. The escapes are those both the Milvus server
grammar (``Plan.g4``: ``\\"``, ``\\'``, ``\\\\``, ``\\n``, ``\\r``, ``\\t``) and Milvus Lite's tokenizer accept.

Layout of an mtvr collection (see :mod:`mtvr.index.milvus`): typed metadata lives in scalar columns —
``file`` (VARCHAR, string values), ``start`` / ``end`` (DOUBLE, numeric values) — and everything else in
the JSON column ``meta``. A clause on a typed key reads the column for values of the column's type and
``meta[key]`` for the rest, so a filter means the same as :meth:`mtvr.filters.Filter.matches`. Where
Milvus's JSON comparison is looser than mtvr's (it treats ``true`` as ``1``), the backend re-checks the
returned rows with :meth:`~mtvr.filters.Filter.matches`; an expression may select too much, never too little.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from ..errors import VideoIndexError

STR_COLUMNS = {"file": 4096}  # metadata key -> VARCHAR column of that max byte length (longer values go to JSON)
NUM_COLUMNS = ("start", "end")  # metadata keys -> DOUBLE columns (numeric values; others go to JSON)
JSON_FIELD = "meta"
ID_FIELD = "id"

_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_OPS = {"eq": "==", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


class MatchNothing(Exception):
    """Raised by :func:`filter_expression` when a filter can match no row (an empty ``$in``)."""


def quote(text: str) -> str:
    """``text`` as a double-quoted Milvus string literal (backslash, quote and line breaks escaped)."""
    if not isinstance(text, str):
        raise VideoIndexError(f"expected a string, got {type(text).__name__}")
    return '"' + "".join(_ESCAPES.get(ch, ch) for ch in text) + '"'


def literal(value: Any) -> str:
    """A scalar filter value as a Milvus literal: escaped string, ``true``/``false``, or a finite number."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return quote(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)
    raise VideoIndexError(f"cannot compare with {value!r:.40}: use a string, a bool or a finite number")


def json_path(key: str) -> str:
    """The expression reading metadata key ``key`` from the JSON column: ``meta["key"]`` (key escaped)."""
    return f"{JSON_FIELD}[{quote(key)}]"


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def in_column(key: str, value: Any) -> bool:
    """Whether metadata ``key: value`` is stored in a typed scalar column (else in the JSON column)."""
    if key in STR_COLUMNS:
        return isinstance(value, str) and len(value.encode("utf-8")) <= STR_COLUMNS[key]
    if key in NUM_COLUMNS:
        return is_number(value) and math.isfinite(value)
    return False


def ids_expression(video_ids: Sequence[str]) -> str:
    """``id in ["a", "b"]`` with every id escaped (ids are data, never query syntax)."""
    if not video_ids:
        raise VideoIndexError("no video ids given")
    return f"{ID_FIELD} in [{', '.join(quote(v) for v in video_ids)}]"


def _any_of(parts: Iterable[str]) -> str:
    parts = list(parts)
    return parts[0] if len(parts) == 1 else "(" + " or ".join(parts) + ")"


def _clause(key: str, op: str, value: Any) -> str:
    if op == "in":
        values = list(value)
        if not values:
            raise MatchNothing(key)
        column = [v for v in values if in_column(key, v)]
        rest = [v for v in values if not in_column(key, v)]
        parts = [f"{key} in [{', '.join(literal(v) for v in column)}]"] if column else []
        # Milvus Lite cannot apply `in` to a JSON path: one equality per value
        parts += [f"{json_path(key)} == {literal(v)}" for v in rest]
        return _any_of(parts)
    if op not in _OPS:
        raise VideoIndexError(f"filter on {key!r}: unknown operation {op!r}")
    if op == "eq" and in_column(key, value):
        return f"{key} {_OPS[op]} {literal(value)}"
    if op != "eq" and key in NUM_COLUMNS:  # ranges match numbers only, and every number of these keys is a column
        return f"{key} {_OPS[op]} {literal(value)}"
    return f"{json_path(key)} {_OPS[op]} {literal(value)}"


def filter_expression(filter: Any) -> str:
    """The Milvus expression of a validated :class:`mtvr.filters.Filter` (``""`` when it matches everything).

    Raises :class:`MatchNothing` when no row can match (a ``$in`` with no values).
    """
    return " and ".join(f"({_clause(c.key, c.op, c.value)})" for c in filter.clauses)
