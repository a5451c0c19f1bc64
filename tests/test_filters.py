"""The metadata filter language (mtvr.filters): validation, matching semantics, command-line items."""

from __future__ import annotations

import math

import pytest

from mtvr.errors import FilterError, MtvrError
from mtvr.filters import Clause, Filter, compile_filter, filter_from_args, parse_filter

RECORDS = {
    "a": {"file": "a.mp4", "year": 2021, "lang": "es", "start": 0.0, "end": 4.0, "hd": True},
    "b": {"file": "a.mp4", "year": 2024, "lang": "ca", "start": 2.0, "end": 6.0, "hd": False},
    "c": {"file": "b.mp4", "year": "2024", "lang": "en", "start": 0.0},
    "d": {"file": "c.mp4", "tags": ["x", "y"], "year": 2024.0},
    "e": {},
}


def select(f):
    return parse_filter(f).select(RECORDS.items())


def test_equality_in_and_ranges():
    assert select({"file": "a.mp4"}) == ["a", "b"]
    assert select({"file": {"$eq": "b.mp4"}}) == ["c"]
    assert select({"lang": {"$in": ["es", "en"]}}) == ["a", "c"]
    assert select({"lang": ["es", "en"]}) == ["a", "c"]  # a bare list is short for $in
    assert select({"year": {"$gte": 2022}}) == ["b", "d"]  # the string "2024" is not a number
    assert select({"year": {"$gt": 2021, "$lt": 2024}}) == []
    assert select({"year": {"$gte": 2021, "$lte": 2021}}) == ["a"]
    assert select({"start": {"$lt": 1}, "file": "a.mp4"}) == ["a"]
    assert select({"year": 2024}) == ["b", "d"]  # 2024 == 2024.0, "2024" is a string
    assert select({"year": "2024"}) == ["c"]
    assert select({"hd": True}) == ["a"]
    assert select({"hd": 1}) == []  # a bool is not a number
    assert select(None) == list(RECORDS)
    assert select({}) == list(RECORDS)


def test_unknown_keys_and_empty_selections_match_nothing_without_error():
    assert select({"no_such_key": "x"}) == []
    assert select({"lang": {"$in": []}}) == []
    assert select({"tags": "x"}) == []  # list-valued metadata never equals a scalar
    assert select({"file": "zzz.mp4"}) == []


@pytest.mark.parametrize(
    "bad, key",
    [
        ({"year": [2020, [2021]]}, "year"),
        ({"year": None}, "year"),
        ({"year": {"$gte": "2020"}}, "year"),
        ({"year": {"$gte": True}}, "year"),
        ({"year": {"$lt": math.nan}}, "year"),
        ({"lang": {"$in": "es"}}, "lang"),
        ({"lang": {"$in": [["es"]]}}, "lang"),
        ({"lang": {"$regex": "e.*"}}, "lang"),
        ({"lang": {}}, "lang"),
        ({"lang": {"$eq": {"a": 1}}}, "lang"),
        ({"$in": [1]}, "$in"),
        ({"x": math.inf}, "x"),
    ],
)
def test_wrong_types_raise_an_error_naming_the_key(bad, key):
    with pytest.raises(FilterError, match=repr(key).replace("$", r"\$")) as info:
        parse_filter(bad)
    assert isinstance(info.value, MtvrError) and isinstance(info.value, ValueError)


@pytest.mark.parametrize("bad", [["file", "a"], "file=a", 3, {1: "a"}, {"": "a"}])
def test_a_filter_must_be_an_object_with_string_keys(bad):
    with pytest.raises(FilterError):
        parse_filter(bad)


def test_ast_is_what_backends_translate():
    f = parse_filter({"file": "a.mp4", "year": {"$gte": 2020, "$lt": 2025}, "lang": {"$in": ["es"]}})
    assert f.clauses == (
        Clause("file", "eq", "a.mp4"),
        Clause("year", "gte", 2020),
        Clause("year", "lt", 2025),
        Clause("lang", "in", ("es",)),
    )
    assert parse_filter(f.to_dict()) == f
    assert parse_filter(f) is f
    assert not Filter() and f
    assert compile_filter({"lang": "es"})(RECORDS["a"]) and not compile_filter({"lang": "es"})(None)


def test_command_line_items():
    assert filter_from_args(["file=a.mp4"]) == {"file": {"$eq": "a.mp4"}}
    assert filter_from_args(["year=2024"]) == {"year": {"$eq": 2024}}
    assert filter_from_args(['name="2024"']) == {"name": {"$eq": "2024"}}
    assert filter_from_args(["year>=2020", "year<2025"]) == {"year": {"$gte": 2020, "$lt": 2025}}
    assert filter_from_args(["start>1.5", "end<=9"]) == {"start": {"$gt": 1.5}, "end": {"$lte": 9}}
    assert filter_from_args(["lang:in=es,ca"]) == {"lang": {"$in": ["es", "ca"]}}
    assert filter_from_args(["file=a<b.mp4"]) == {"file": {"$eq": "a<b.mp4"}}
    assert filter_from_args(['{"year": {"$gte": 2020}}', "lang=es"]) == {"year": {"$gte": 2020}, "lang": {"$eq": "es"}}
    assert select(filter_from_args(["file=a.mp4", "year>=2022"])) == ["b"]
    for bad in (["file"], ["=a"], ["year!=3"], ["year>=abc"], ["{not json"], ["year=1", "year=2"], ['{"y": [[1]]}']):
        with pytest.raises(FilterError):
            filter_from_args(bad)
