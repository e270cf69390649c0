import json
import math
import re
import string
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, cast

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sluice.dataitems import (
    _EPOCH,
    DataItem,
    DataValidationError,
    bus_json,
    format_epoch_ms,
    format_time,
    item_from_json,
    item_to_json,
    parse_relative,
    parse_time,
    validate_items,
    validate_json_items,
    value_type,
)

NOW = datetime(2026, 11, 24, 18, 43, 53, 123456, tzinfo=UTC)
NOW_MS = NOW.replace(microsecond=123000)


def one(entry: dict[str, Any], **kwargs: Any) -> DataItem:
    [item] = validate_items(entry, now=NOW, **kwargs)
    return item


def rejection(raw: Any) -> DataValidationError:
    with pytest.raises(DataValidationError) as caught:
        validate_items(raw, now=NOW)
    return caught.value


# -- accepted items ----------------------------------------------------------------------

ACCEPTED: list[tuple[dict[str, Any], str, Any]] = [
    # variable
    ({"variable": "Temperature"}, "variable", "temperature"),
    ({"variable": "v" * 100}, "variable", "v" * 100),
    ({"variable": "room_1/temp#2"}, "variable", "room_1/temp#2"),
    ({"variable": "Température"}, "variable", "température"),
    # value
    ({"variable": "v"}, "value", None),
    ({"variable": "v", "value": None}, "value", None),
    ({"variable": "v", "value": "on"}, "value", "on"),
    ({"variable": "v", "value": "42"}, "value", "42"),
    ({"variable": "v", "value": 21.5}, "value", 21.5),
    ({"variable": "v", "value": -3}, "value", -3),
    ({"variable": "v", "value": 2**63}, "value", 2**63),
    ({"variable": "v", "value": True}, "value", True),
    ({"variable": "v", "value": False}, "value", False),
    ({"variable": "v", "value": "x" * 6144}, "value", "x" * 6144),
    ({"variable": "v", "value": "é" * 3072}, "value", "é" * 3072),
    # unit
    ({"variable": "v", "unit": "°C"}, "unit", "°C"),
    ({"variable": "v", "unit": "u" * 25}, "unit", "u" * 25),
    ({"variable": "v", "unit": None}, "unit", None),
    # time
    ({"variable": "v"}, "time", NOW_MS),
    ({"variable": "v", "time": None}, "time", NOW_MS),
    ({"variable": "v", "time": "now"}, "time", NOW_MS),
    ({"variable": "v", "time": "2026-01-02T03:04:05.678Z"}, "time",
     datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)),
    ({"variable": "v", "time": "2026-01-02T03:04:05"}, "time",
     datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
    ({"variable": "v", "time": "2026-01-02 03:04:05.6789"}, "time",
     datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)),
    ({"variable": "v", "time": "2026-01-02T05:04:05+02:00"}, "time",
     datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
    ({"variable": "v", "time": "2026-01-02"}, "time", datetime(2026, 1, 2, tzinfo=UTC)),
    ({"variable": "v", "time": 1767322800}, "time", datetime(2026, 1, 2, 3, tzinfo=UTC)),
    ({"variable": "v", "time": 1767322800.5}, "time",
     datetime(2026, 1, 2, 3, 0, 0, 500000, tzinfo=UTC)),
    ({"variable": "v", "time": 1767322800250}, "time",
     datetime(2026, 1, 2, 3, 0, 0, 250000, tzinfo=UTC)),
    ({"variable": "v", "time": "1767322800"}, "time", datetime(2026, 1, 2, 3, tzinfo=UTC)),
    ({"variable": "v", "time": 0}, "time", datetime(1970, 1, 1, tzinfo=UTC)),
    # group and serie
    ({"variable": "v", "group": "g1"}, "group", "g1"),
    ({"variable": "v", "serie": "s1"}, "group", "s1"),
    ({"variable": "v", "group": "g1", "serie": "s1"}, "group", "g1"),
    ({"variable": "v", "group": None, "serie": "s1"}, "group", "s1"),
    ({"variable": "v", "group": "g" * 100}, "group", "g" * 100),
    # location
    ({"variable": "v"}, "location", None),
    ({"variable": "v", "location": {"lat": 10, "lng": 20}}, "location",
     {"type": "Point", "coordinates": [20.0, 10.0]}),
    ({"variable": "v", "location": {"lat": "-1.5", "lng": " 2 "}}, "location",
     {"type": "Point", "coordinates": [2.0, -1.5]}),
    ({"variable": "v", "location": {"lat": 1, "lon": 2}}, "location",
     {"type": "Point", "coordinates": [2.0, 1.0]}),
    ({"variable": "v", "location": {"lat": 90, "lng": -180}}, "location",
     {"type": "Point", "coordinates": [-180.0, 90.0]}),
    ({"variable": "v", "location": {"type": "Point", "coordinates": [20, 10]}}, "location",
     {"type": "Point", "coordinates": [20.0, 10.0]}),
    ({"variable": "v", "location": {"type": "Point", "coordinates": [20, 10, 300]}}, "location",
     {"type": "Point", "coordinates": [20.0, 10.0]}),
    # metadata
    ({"variable": "v"}, "metadata", None),
    ({"variable": "v", "metadata": {"color": "red", "n": {"a": [1, None]}}}, "metadata",
     {"color": "red", "n": {"a": [1, None]}}),
    ({"variable": "v", "metadata": {"k": "x" * 10_000}}, "metadata", {"k": "x" * 10_000}),
]  # fmt: skip


@pytest.mark.parametrize(("entry", "field", "expected"), ACCEPTED)
def test_accepted(entry: dict[str, Any], field: str, expected: Any) -> None:
    assert getattr(one(entry), field) == expected


def test_times_are_aware_utc() -> None:
    item = one({"variable": "v", "time": "2026-01-02T05:04:05+02:00"})
    assert item.time.tzinfo is UTC


def test_unknown_and_server_set_fields_are_dropped() -> None:
    item = one({"variable": "v", "id": "x", "device": "d", "created_at": "now", "colour": 1})
    assert not hasattr(item, "id")
    assert not hasattr(item, "colour")


def test_items_without_group_share_one_generated_group() -> None:
    items = validate_items(
        [{"variable": "a"}, {"variable": "b"}, {"variable": "c", "group": "g"}], now=NOW
    )
    assert items[0].group == items[1].group
    assert re.fullmatch(r"[0-9a-f]{24}", items[0].group)
    assert items[2].group == "g"
    assert validate_items({"variable": "a"}, now=NOW)[0].group != items[0].group


def test_default_group_is_used_when_given() -> None:
    assert one({"variable": "a"}, default_group="msg-group").group == "msg-group"
    assert one({"variable": "a", "group": ""}, default_group="msg-group").group == "msg-group"
    assert one({"variable": "a", "serie": "s"}, default_group="msg-group").group == "s"
    assert re.fullmatch(r"[0-9a-f]{24}", one({"variable": "a"}, default_group="").group)


def test_naive_now_means_utc() -> None:
    [item] = validate_items({"variable": "v"}, now=datetime(2026, 1, 2, 3, 4, 5))
    assert item.time == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


# -- rejected items ----------------------------------------------------------------------

REJECTED: list[tuple[dict[str, Any], str, str]] = [
    ({}, "variable", "'variable' is required"),
    ({"variable": None}, "variable", "is required"),
    ({"value": 1}, "variable", "is required"),
    ({"variable": 5}, "variable", "must be a string (got a number)"),
    ({"variable": ""}, "variable", "must not be empty"),
    ({"variable": "v" * 101}, "variable", "must be at most 100 characters (got 101)"),
    ({"variable": "my var"}, "variable", "must not contain a space"),
    ({"variable": "a\tb"}, "variable", "must not contain whitespace"),
    ({"variable": "a\x00b"}, "variable", "NUL"),
    ({"variable": "a\ud800"}, "variable", "lone surrogate"),
    ({"variable": "v", "value": {"a": 1}}, "value", "not an object"),
    ({"variable": "v", "value": [1, 2]}, "value", "not an array"),
    ({"variable": "v", "value": "x" * 6145}, "value", "at most 6144 bytes of text (got 6145)"),
    ({"variable": "v", "value": "é" * 3073}, "value", "got 6146"),
    ({"variable": "v", "value": math.nan}, "value", "must be a finite number"),
    ({"variable": "v", "value": math.inf}, "value", "must be a finite number"),
    ({"variable": "v", "value": 10**400}, "value", "too large"),
    ({"variable": "v", "value": b"x"}, "value", "must be a string, number, boolean or null"),
    ({"variable": "v", "value": "a\x00"}, "value", "NUL"),
    ({"variable": "v", "unit": 5}, "unit", "must be a string"),
    ({"variable": "v", "unit": "u" * 26}, "unit", "at most 25 characters (got 26)"),
    ({"variable": "v", "time": "yesterday"}, "time", "is invalid: 'yesterday' is not a time"),
    ({"variable": "v", "time": "2026-13-01"}, "time", "ISO 8601"),
    ({"variable": "v", "time": ""}, "time", "is invalid"),
    ({"variable": "v", "time": True}, "time", "a boolean is not a time"),
    ({"variable": "v", "time": [2026]}, "time", "must be a string or a number"),
    ({"variable": "v", "time": math.nan}, "time", "is invalid"),
    ({"variable": "v", "time": 1e20}, "time", "out of range"),
    ({"variable": "v", "time": "10000-01-01"}, "time", "is invalid"),
    ({"variable": "v", "group": 5}, "group", "must be a string"),
    ({"variable": "v", "group": "g" * 101}, "group", "at most 100 characters (got 101)"),
    ({"variable": "v", "serie": ["s"]}, "serie", "must be a string (got an array)"),
    ({"variable": "v", "location": "here"}, "location", 'must be {"lat"'),
    ({"variable": "v", "location": {"lat": 1}}, "location", "'lat' or 'lng' is missing"),
    ({"variable": "v", "location": {"lat": 91, "lng": 0}}, "location",
     "latitude must be between -90 and 90"),
    ({"variable": "v", "location": {"lat": 0, "lng": -181}}, "location",
     "longitude must be between -180"),
    ({"variable": "v", "location": {"lat": "north", "lng": 0}}, "location",
     "needs a numeric latitude"),
    ({"variable": "v", "location": {"lat": True, "lng": 0}}, "location",
     "needs a numeric latitude"),
    ({"variable": "v", "location": {"lat": "nan", "lng": 0}}, "location",
     "needs a numeric latitude"),
    ({"variable": "v", "location": {"type": "LineString", "coordinates": [[0, 0], [1, 1]]}},
     "location", "GeoJSON Point"),
    ({"variable": "v", "location": {"type": "Point", "coordinates": [1]}}, "location",
     "[lng, lat]"),
    ({"variable": "v", "location": {"type": "Point", "coordinates": [0, 100]}}, "location",
     "latitude must be between"),
    ({"variable": "v", "metadata": "x"}, "metadata", "must be an object (got a string)"),
    ({"variable": "v", "metadata": [1]}, "metadata", "must be an object (got an array)"),
    ({"variable": "v", "metadata": {"k": "x" * 10_240}}, "metadata", "at most 10240 bytes"),
    ({"variable": "v", "metadata": {"k": "a\x00"}}, "metadata", "NUL"),
    ({"variable": "v", "metadata": {1: "x"}}, "metadata", "plain JSON"),
]  # fmt: skip


@pytest.mark.parametrize(("entry", "field", "fragment"), REJECTED)
def test_rejected(entry: dict[str, Any], field: str, fragment: str) -> None:
    error = rejection(entry)
    assert error.index == 0
    assert error.field == field
    assert error.message.startswith(f"item 0: '{field}' ")
    assert fragment in error.message
    assert str(error) == error.message


@pytest.mark.parametrize("char", list("*?!<>.-=$"))
def test_variable_rejects_each_reserved_character(char: str) -> None:
    error = rejection({"variable": f"temp{char}c"})
    assert f"must not contain '{char}'" in error.message


def test_metadata_text_that_merely_looks_like_a_nul_escape_is_fine() -> None:
    assert one({"variable": "v", "metadata": {"k": "\\u0000"}}).metadata == {"k": "\\u0000"}


def test_error_names_the_failing_item() -> None:
    error = rejection([{"variable": "ok"}, {"variable": "ok"}, {"variable": "x" * 132}])
    assert error.index == 2
    assert error.message == "item 2: 'variable' must be at most 100 characters (got 132)"


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ("text", "must be an item object or a list of them (got a string)"),
        (42, "(got a number)"),
        (None, "(got null)"),
        ([], "no data items"),
    ],
)
def test_rejected_requests(raw: Any, fragment: str) -> None:
    error = rejection(raw)
    assert error.index is None
    assert fragment in error.message


def test_non_object_element_is_rejected() -> None:
    error = rejection([{"variable": "a"}, 3])
    assert error.index == 1
    assert error.field is None
    assert error.message.startswith("item 1: must be an object")


def test_data_validation_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="item 0"):
        validate_items({}, now=NOW)


# -- times ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 day", timedelta(days=1)),
        ("2 days", timedelta(days=2)),
        ("2 hours", timedelta(hours=2)),
        ("1 Hour", timedelta(hours=1)),
        ("30 minutes", timedelta(minutes=30)),
        ("45 SECONDS", timedelta(seconds=45)),
        ("3 weeks", timedelta(weeks=3)),
        ("1 month", timedelta(days=30)),
        ("2 months", timedelta(days=60)),
        ("1 year", timedelta(days=365)),
        (" 1.5 hours ", timedelta(minutes=90)),
        ("10days", timedelta(days=10)),
        ("0 days", timedelta(0)),
    ],
)
def test_parse_relative(text: str, expected: timedelta) -> None:
    assert parse_relative(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "day", "1", "-1 day", "1 fortnight", "one day", "2026-01-01", "1 day ago", "ſ1 second"],
)
def test_parse_relative_rejects_other_text(text: str) -> None:
    assert parse_relative(text) is None


def test_parse_relative_of_an_absurd_amount_is_none() -> None:
    assert parse_relative("99999999999999 years") is None


def test_parse_time_forms() -> None:
    expected = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    assert parse_time("2026-01-02T03:04:05.678Z", NOW) == expected
    assert parse_time("2026-01-02T03:04:05.678999Z", NOW) == expected
    assert parse_time(expected.timestamp(), NOW) == expected
    assert parse_time(1767323045678, NOW) == expected
    assert (
        parse_time(datetime(2026, 1, 2, 4, 4, 5, 678000, tzinfo=timezone(timedelta(hours=1))), NOW)
        == expected
    )
    assert parse_time(" now ", NOW) == NOW_MS
    assert parse_time("20260102", NOW) == datetime(2026, 1, 2, tzinfo=UTC)
    assert parse_time(-86400, NOW) == datetime(1969, 12, 31, tzinfo=UTC)


@pytest.mark.parametrize("bad", ["soon", "2026-02-30", "12:00", math.inf, -1e20])
def test_parse_time_rejects(bad: str | float) -> None:
    with pytest.raises(ValueError):
        parse_time(bad, NOW)


def test_format_time() -> None:
    assert (
        format_time(datetime(2026, 11, 24, 18, 43, 53, 123456, tzinfo=UTC))
        == "2026-11-24T18:43:53.123Z"
    )
    assert format_time(datetime(5, 1, 2, tzinfo=UTC)) == "0005-01-02T00:00:00.000Z"
    plus_two = timezone(timedelta(hours=2))
    assert format_time(datetime(2026, 1, 1, 2, tzinfo=plus_two)) == "2026-01-01T00:00:00.000Z"


# -- value types and the bus form ----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (1, "number"),
        (1.5, "number"),
        ("1", "string"),
        (True, "boolean"),
        (False, "boolean"),
        (None, "null"),
    ],
)
def test_value_type(value: Any, kind: str) -> None:
    assert value_type(value) == kind


def test_value_type_rejects_structures() -> None:
    with pytest.raises(TypeError):
        value_type([1])  # type: ignore[arg-type]


def test_item_to_json() -> None:
    item = one(
        {
            "variable": "Temp",
            "value": 21.5,
            "unit": "C",
            "time": "2026-11-24T18:43:53.123Z",
            "group": "g",
            "location": {"lat": 1, "lng": 2},
            "metadata": {"a": 1},
        }
    )
    assert item_to_json(item) == {
        "variable": "temp",
        "value": 21.5,
        "unit": "C",
        "time": "2026-11-24T18:43:53.123Z",
        "group": "g",
        "location": {"type": "Point", "coordinates": [2.0, 1.0]},
        "metadata": {"a": 1},
    }


def test_item_from_json_tolerates_missing_optional_fields_and_extra_ones() -> None:
    item = item_from_json(
        {"id": "x", "variable": "v", "group": "g", "time": "2026-01-02T03:04:05.000Z"}
    )
    assert item == DataItem(
        "v", None, None, datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "g", None, None
    )


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"group": "g", "time": "2026-01-02T03:04:05Z"}, KeyError),
        ({"variable": 1, "group": "g", "time": "2026-01-02T03:04:05Z"}, TypeError),
        ({"variable": "v", "group": "g", "time": "2026-01-02T03:04:05Z", "value": [1]}, TypeError),
        (
            {"variable": "v", "group": "g", "time": "2026-01-02T03:04:05Z", "metadata": "m"},
            TypeError,
        ),
        ({"variable": "v", "group": "g", "time": "late"}, ValueError),
    ],
)
def test_item_from_json_rejects_malformed(data: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        item_from_json(data)


# -- property: valid items pass and survive the bus ----------------------------------------

# Text a database can store: no NUL, no lone surrogates.
safe_chars = st.characters(exclude_categories=["Cs"], exclude_characters="\x00")
safe_text = st.text(safe_chars)
variables = st.text(
    st.sampled_from(string.ascii_letters + string.digits + "_/#@éüΩ中"), min_size=1, max_size=100
)
values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(safe_chars, max_size=1536),
)
aware_times = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
)
times = st.one_of(
    aware_times.map(lambda t: t.isoformat()),
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)).map(str),
    st.integers(0, 10**11),
    st.integers(10**11 + 1, 253_402_000_000_000),
    st.floats(0, 1e11),
)
latitudes = st.floats(-90, 90)
longitudes = st.floats(-180, 180)
locations = st.one_of(
    st.builds(lambda lat, lng: {"lat": lat, "lng": lng}, latitudes, longitudes),
    st.builds(lambda lat, lng: {"lat": str(lat), "lon": str(lng)}, latitudes, longitudes),
    st.builds(lambda lat, lng: {"type": "Point", "coordinates": [lng, lat]}, latitudes, longitudes),
)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    safe_text,
)
metadata = st.dictionaries(
    safe_text,
    st.recursive(
        json_scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(safe_text, inner, max_size=3),
        max_leaves=10,
    ),
    max_size=5,
)
optional_fields = st.fixed_dictionaries(
    {},
    optional={
        "value": values,
        "unit": st.text(safe_chars, max_size=25),
        "time": times,
        "group": st.text(safe_chars, min_size=1, max_size=100),
        "serie": st.text(safe_chars, min_size=1, max_size=100),
        "location": locations,
        "metadata": metadata,
        "device": st.just("ignored"),
    },
)
items = st.builds(lambda variable, rest: {"variable": variable, **rest}, variables, optional_fields)


@given(st.lists(items, min_size=1, max_size=5))
def test_valid_items_pass_and_round_trip(entries: list[dict[str, Any]]) -> None:
    validated = validate_items(entries, now=NOW)
    assert len(validated) == len(entries)
    for entry, item in zip(entries, validated, strict=True):
        assert item.variable == entry["variable"].lower()
        assert item.time.tzinfo is UTC
        assert item.time.microsecond % 1000 == 0
        wire = orjson.loads(orjson.dumps(item_to_json(item)))
        assert item_from_json(wire) == item


# -- the bus form straight away: validate_json_items and bus_json ---------------------------

LONE_SURROGATE = re.compile("[\ud800-\udfff]")
BUS_NOW = "2026-11-24T18:43:53.123Z"  # format_time of NOW to the millisecond


def engine_json(value: Any) -> str:
    """JSON text as JavaScript's JSON.stringify writes it: non-ASCII as it is, lone
    surrogates escaped."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def ids(count: int) -> list[str]:
    return [f"id-{n}" for n in range(count)]


def full(raw: Any) -> list[dict[str, Any]] | str:
    """What the full check gives for ``raw``: the bus items with ids, or the error."""
    try:
        items = validate_json_items(raw, now=NOW, default_group=lambda: "msg-group")
    except DataValidationError as exc:
        return exc.message
    return [{**item, "id": item_id} for item, item_id in zip(items, ids(len(items)), strict=True)]


def fast(text: str) -> list[dict[str, Any]] | None:
    answer = bus_json(text, now=BUS_NOW, default_group=lambda: "msg-group", ids=ids)
    if answer is None:
        return None
    data, count = answer
    items = orjson.loads(data)
    assert len(items) == count
    return cast(list[dict[str, Any]], items)


def as_json_text(raw: Any) -> str | None:
    try:
        return engine_json(raw)
    except (TypeError, ValueError):
        return None  # not JSON (NaN, bytes, integer keys...): no engine writes it


@pytest.mark.parametrize(
    "entry", [entry for entry, _, _ in ACCEPTED] + [entry for entry, _, _ in REJECTED]
)
def test_json_items_are_the_items_in_their_bus_form(entry: dict[str, Any]) -> None:
    try:
        expected: Any = [item_to_json(item) for item in validate_items(entry, now=NOW)]
    except DataValidationError as exc:
        expected = exc.message
    try:
        got: Any = validate_json_items(entry, now=NOW)
    except DataValidationError as exc:
        got = exc.message
    if isinstance(expected, list) and "group" not in entry and "serie" not in entry:
        for item in [*expected, *got]:
            item["group"] = "generated"  # a new id each time
    assert got == expected


@pytest.mark.parametrize(
    "entry", [entry for entry, _, _ in ACCEPTED] + [entry for entry, _, _ in REJECTED]
)
def test_bus_json_answers_as_the_full_check_or_leaves_it_to_it(entry: dict[str, Any]) -> None:
    text = as_json_text([entry])
    if text is None:
        return
    expected = full(json.loads(text))  # warms the caches of variables and units seen valid
    got = fast(text)
    assert got is None or got == expected
    if isinstance(expected, str):
        assert got is None


def test_bus_json_takes_a_decoders_output_once_its_names_are_known() -> None:
    frame_metadata = {"mqtt_topic": "sensors/env"}
    output = [
        {"variable": "temperature", "value": -26.39, "unit": "°C", "metadata": frame_metadata},
        {"variable": "co2", "value": 46936, "unit": "ppm", "metadata": frame_metadata},
        {"variable": "alarm", "value": True, "time": "2026-11-24T18:00:00.000Z"},
        {"variable": "state", "value": "on", "group": "g1"},
    ]
    text = engine_json(output)
    expected = full(output)
    assert fast(text) == expected  # every name was seen valid by full()
    assert (expected[0]["time"], expected[0]["group"]) == (BUS_NOW, "msg-group")
    assert expected[2]["time"] == "2026-11-24T18:00:00.000Z"
    assert [item["id"] for item in expected] == ids(4)


@pytest.mark.parametrize(
    "when",
    [0, 1, 1_767_322_800, 100_000_000_000, 100_000_000_001, 1_767_322_800_123, 253_402_300_799_999],
)
def test_bus_json_takes_whole_epoch_times_as_the_full_check_does(when: int) -> None:
    # Seconds up to 1e11, milliseconds past it (as parse_time reads them).
    entries = [{"variable": "v", "value": 1, "time": when}, {"variable": "v", "time": when}]
    expected = full(entries)
    assert isinstance(expected, list)
    assert fast(engine_json(entries)) == expected


@pytest.mark.parametrize(
    "entry",
    [
        {"variable": "Unseen_Name"},  # not yet seen valid: checked the long way
        {"variable": "v", "time": "2026-13-01T00:00:00.000Z"},
        {"variable": "v", "time": "2026-W48-3T00:00:00.000Z"},
        {"variable": "v", "time": "2026-11-24 18:43:53.123Z"},
        {"variable": "v", "time": 1767322800.5},
        {"variable": "v", "time": 1767322800000.0},
        {"variable": "v", "time": -1},
        {"variable": "v", "time": 253_402_300_800_000},  # year 10000
        {"variable": "v", "time": True},
        {"variable": "v", "time": "1767322800"},
        {"variable": "v", "location": {"lat": 1, "lng": 2}},
        {"variable": "v", "serie": "s"},
        {"variable": "v", "value": "a\x00b"},
        {"variable": "v", "value": "\ud800"},
        {"variable": "v", "value": "x" * 1537},
        {"variable": "v", "metadata": [1]},
        {"variable": "v", "metadata": "m"},
        {"variable": "v", "metadata": {"k": "x" * 2600}},
        {"variable": "v", "metadata": {"k": [[[[[[[[[[[[1]]]]]]]]]]]] * 10}},
        {"variable": "v", "metadata": {"k": "\x00"}},
        {"variable": "v", "unit": "u" * 26},
        {"variable": "v", "group": "g" * 101},
        {"variable": "v", "value": [1]},
        {"value": 1},
    ],
)
def test_bus_json_leaves_the_unusual_to_the_full_check(entry: dict[str, Any]) -> None:
    full([{"variable": "v"}])
    assert fast(engine_json([entry])) is None


@pytest.mark.parametrize(
    "text",
    ["[]", "{}", '{"variable":"v"}', "[null]", "[1]", "x", "[{", '[{"variable":"v\ud800"}]'],
)
def test_bus_json_leaves_other_shapes_to_the_full_check(text: str) -> None:
    full([{"variable": "v"}])
    assert fast(text) is None


@given(st.lists(items, min_size=1, max_size=5))
def test_bus_json_agrees_with_the_full_check(entries: list[dict[str, Any]]) -> None:
    text = as_json_text(entries)
    if text is None:
        return
    expected = full(json.loads(text))
    got = fast(text)
    assert got is None or got == expected


@given(st.integers(0, 253_402_300_799_999))
def test_format_epoch_ms_is_format_time_of_the_received_time(ms: int) -> None:
    received = datetime.fromtimestamp(ms / 1000, UTC) if ms else datetime(1970, 1, 1, tzinfo=UTC)
    assert format_epoch_ms(ms) == format_time(received.replace(microsecond=ms % 1000 * 1000))
    assert format_epoch_ms(ms) == format_time(_EPOCH + timedelta(milliseconds=ms))
