"""TagoIO data items: validating what devices send, and their JSON form on the bus."""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, NoReturn

import msgspec
import orjson

from sluice.ids import new_id

MAX_VARIABLE_CHARS = 100
MAX_VALUE_BYTES = 6 * 1024
MAX_UNIT_CHARS = 25
MAX_GROUP_CHARS = 100
MAX_METADATA_BYTES = 10 * 1024

Value = str | int | float | bool | None
ValueType = Literal["number", "string", "boolean", "null"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Epochs above this are milliseconds: 1e11 seconds is the year 5138, 1e11 ms is 1973.
_MILLISECONDS_FROM = 1e11
_BAD_VARIABLE_CHAR = re.compile(r"[\s*?!<>.\-=$]")
_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?", re.ASCII)
_RELATIVE = re.compile(
    r"\s*(\d+(?:\.\d+)?)\s*(second|minute|hour|day|week|month|year)s?\s*", re.ASCII | re.IGNORECASE
)
_UNIT_SECONDS = {
    "second": 1,
    "minute": 60,
    "hour": 3600,
    "day": 86400,
    "week": 7 * 86400,
    "month": 30 * 86400,
    "year": 365 * 86400,
}
_TIME_HELP = "use ISO 8601 (e.g. 2026-11-24T18:43:53Z) or an epoch in seconds or milliseconds"


class DataValidationError(ValueError):
    """An item that cannot be stored; ``message`` says which item, which field and why."""

    def __init__(self, message: str, index: int | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.index = index
        self.field = field


@dataclass(slots=True)
class DataItem:
    """One validated data point, before the server adds ``id``, ``device`` and ``created_at``."""

    variable: str
    value: Value
    unit: str | None
    time: datetime
    group: str
    location: dict[str, Any] | None
    metadata: dict[str, Any] | None


def _kind(value: object) -> str:
    """The JSON name of a value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _preview(value: object, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _fail(index: int, field: str, problem: str) -> NoReturn:
    raise DataValidationError(f"item {index}: '{field}' {problem}", index, field)


def _text_bytes(text: str, index: int, field: str) -> int:
    """UTF-8 size of ``text``, rejecting what the database cannot store."""
    if "\x00" in text:
        _fail(index, field, "must not contain the NUL character (U+0000)")
    if text.isascii():
        return len(text)
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:
        _fail(index, field, "must be valid Unicode text (it contains a lone surrogate)")


def _has_nul(value: object) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(v) for v in value)
    return False


def _to_utc_ms(when: datetime) -> datetime:
    """Aware UTC with millisecond precision, as TagoIO keeps times; naive means UTC."""
    if when.tzinfo is UTC and not when.microsecond % 1000:
        return when
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    elif when.tzinfo is not UTC:
        try:
            when = when.astimezone(UTC)
        except OverflowError:
            raise ValueError(f"{when.isoformat()} is out of range") from None
    return when.replace(microsecond=when.microsecond // 1000 * 1000)


def _from_epoch(number: float) -> datetime:
    if not math.isfinite(number):
        raise ValueError(f"{number} is not a time: {_TIME_HELP}")
    try:
        if abs(number) > _MILLISECONDS_FROM:
            return _EPOCH + timedelta(milliseconds=number)
        return _EPOCH + timedelta(seconds=number)
    except OverflowError:
        raise ValueError(f"epoch {number} is out of range (years 1 to 9999)") from None


def parse_time(value: str | int | float | datetime, now: datetime) -> datetime:
    """A time as TagoIO accepts it (ISO 8601, ``now`` or epoch s/ms), as aware UTC to the ms.

    ISO times without a timezone are UTC; a date alone is its midnight. Raises ValueError.
    """
    if isinstance(value, datetime):
        return _to_utc_ms(value)
    if isinstance(value, bool):
        raise ValueError(f"a boolean is not a time: {_TIME_HELP}")
    if isinstance(value, int | float):
        return _to_utc_ms(_from_epoch(value))
    if not isinstance(value, str):
        raise ValueError(f"{_kind(value)} is not a time: {_TIME_HELP}")
    text = value.strip()
    if text.lower() == "now":
        return _to_utc_ms(now)
    try:
        return _to_utc_ms(datetime.fromisoformat(text))
    except ValueError:
        pass
    if _NUMBER.fullmatch(text):
        return _to_utc_ms(_from_epoch(float(text)))
    raise ValueError(f"{_preview(value)} is not a time: {_TIME_HELP}")


def parse_relative(text: str) -> timedelta | None:
    """``"3 hours"``, ``"1 day"``, ``"2 weeks"``… as a timedelta; None when not of that form.

    A month is 30 days and a year 365, as in TagoIO.
    """
    if not isinstance(text, str):
        return None
    match = _RELATIVE.fullmatch(text)
    if match is None:
        return None
    amount, unit = match.groups()
    try:
        return timedelta(seconds=float(amount) * _UNIT_SECONDS[unit.lower()])
    except OverflowError:
        return None


def format_time(when: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and ``Z``: ``2026-11-24T18:43:53.123Z``."""
    if when.tzinfo is not None and when.tzinfo is not UTC:
        when = when.astimezone(UTC)
    return (
        f"{when.year:04d}-{when.month:02d}-{when.day:02d}T"
        f"{when.hour:02d}:{when.minute:02d}:{when.second:02d}.{when.microsecond // 1000:03d}Z"
    )


_SECOND_TEXTS: dict[int, str] = {}  # seconds since the epoch -> "YYYY-MM-DDTHH:MM:SS"


def format_epoch_ms(ms: int) -> str:
    """:func:`format_time` of the time ``ms`` milliseconds after the epoch (a record's
    ``received_at``): a cached text per second, the milliseconds appended."""
    seconds, millis = divmod(ms, 1000)
    prefix = _SECOND_TEXTS.get(seconds)
    if prefix is None:
        if len(_SECOND_TEXTS) >= 4096:
            _SECOND_TEXTS.clear()
        prefix = _SECOND_TEXTS[seconds] = format_time(_EPOCH + timedelta(seconds=seconds))[:19]
    return f"{prefix}.{millis:03d}Z"


def value_type(value: Value) -> ValueType:
    """How a value is stored: ``number``, ``string``, ``boolean`` or ``null``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    raise TypeError(f"{_kind(value)} is not a data item value")


# Variable names already found valid, by the text sent, and their stored form (they repeat
# in every message of a device; bus_json takes only names found here).
_KNOWN_VARIABLES: dict[str, str] = {}
_KNOWN_MAX = 10_000


def _variable(entry: Mapping[str, Any], index: int) -> str:
    raw = entry.get("variable")
    if type(raw) is str:
        known = _KNOWN_VARIABLES.get(raw)
        if known is not None:
            return known
    if raw is None:
        _fail(index, "variable", 'is required: name what is measured, e.g. "temperature"')
    if not isinstance(raw, str):
        _fail(index, "variable", f"must be a string (got {_kind(raw)})")
    variable = raw.lower()
    if not variable:
        _fail(index, "variable", "must not be empty")
    if len(variable) > MAX_VARIABLE_CHARS:
        size = f"must be at most {MAX_VARIABLE_CHARS} characters (got {len(variable)})"
        _fail(index, "variable", size)
    bad = _BAD_VARIABLE_CHAR.search(variable)
    if bad is not None:
        char = bad.group()
        named = "a space" if char == " " else "whitespace" if char.isspace() else f"'{char}'"
        _fail(
            index,
            "variable",
            f"must not contain {named} (got {_preview(raw)}); "
            "leave out spaces and the characters * ? ! < > . - = $",
        )
    _text_bytes(variable, index, "variable")
    if type(raw) is str:
        if len(_KNOWN_VARIABLES) >= _KNOWN_MAX:
            _KNOWN_VARIABLES.clear()
        _KNOWN_VARIABLES[raw] = variable
    return variable


def _value(entry: Mapping[str, Any], index: int) -> Value:
    value = entry.get("value")
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        size = _text_bytes(value, index, "value")
        if size > MAX_VALUE_BYTES:
            _fail(index, "value", f"must be at most {MAX_VALUE_BYTES} bytes of text (got {size})")
        return value
    if isinstance(value, int):
        try:
            float(value)
        except OverflowError:
            _fail(index, "value", "is too large a number to store")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            _fail(index, "value", f"must be a finite number (got {value})")
        return value
    if isinstance(value, dict | list | tuple):
        _fail(
            index,
            "value",
            f"must be a string, number, boolean or null, not {_kind(value)}; "
            "put structured data in 'metadata' or split it into several variables",
        )
    _fail(index, "value", f"must be a string, number, boolean or null (got {_kind(value)})")


def _short_text(entry: Mapping[str, Any], index: int, field: str, limit: int) -> str | None:
    text = entry.get(field)
    if text is None:
        return None
    if not isinstance(text, str):
        _fail(index, field, f"must be a string (got {_kind(text)})")
    if len(text) > limit:
        _fail(index, field, f"must be at most {limit} characters (got {len(text)})")
    _text_bytes(text, index, field)
    return text


def _time(entry: Mapping[str, Any], index: int, now: datetime) -> datetime:
    raw = entry.get("time")
    if raw is None:
        return now
    return _time_of(raw, index, now)


def _time_of(raw: object, index: int, now: datetime) -> datetime:
    if isinstance(raw, str | int | float | datetime):
        try:
            return parse_time(raw, now)
        except ValueError as exc:
            _fail(index, "time", f"is invalid: {exc}")
    _fail(index, "time", f"must be a string or a number (got {_kind(raw)}): {_TIME_HELP}")


def _group(entry: Mapping[str, Any], index: int) -> str | None:
    # ``serie`` is TagoIO's older name for ``group``; ``group`` wins when both are sent.
    for field in ("group", "serie"):
        if entry.get(field) not in (None, ""):
            return _short_text(entry, index, field, MAX_GROUP_CHARS)
    return None


def _coordinate(raw: object, index: int, name: str, low: float, high: float) -> float:
    number = math.nan
    if isinstance(raw, str):
        if _NUMBER.fullmatch(raw.strip()):
            number = float(raw)
    elif isinstance(raw, int | float) and not isinstance(raw, bool):
        with contextlib.suppress(OverflowError):
            number = float(raw)
    if not math.isfinite(number):
        _fail(index, "location", f"needs a numeric {name} (got {_preview(raw)})")
    if not low <= number <= high:
        _fail(index, "location", f"{name} must be between {low:g} and {high:g} (got {number:g})")
    return number


def _location(entry: Mapping[str, Any], index: int) -> dict[str, Any] | None:
    raw = entry.get("location")
    if raw is None:
        return None
    shape = 'must be {"lat": ..., "lng": ...} or {"type": "Point", "coordinates": [lng, lat]}'
    if not isinstance(raw, dict):
        _fail(index, "location", f"{shape} (got {_kind(raw)})")
    if "type" in raw or "coordinates" in raw:
        coordinates = raw.get("coordinates")
        kind = raw.get("type")
        if str(kind).lower() != "point":
            _fail(index, "location", f"must be a GeoJSON Point (got type {_preview(kind)})")
        if not isinstance(coordinates, list | tuple) or len(coordinates) not in (2, 3):
            _fail(index, "location", "needs 'coordinates' as [lng, lat]")
        raw_lng, raw_lat = coordinates[0], coordinates[1]
    else:
        raw_lat = raw.get("lat")
        raw_lng = raw.get("lng", raw.get("lon"))
        if raw_lat is None or raw_lng is None:
            _fail(index, "location", f"{shape}; 'lat' or 'lng' is missing")
    lat = _coordinate(raw_lat, index, "latitude", -90, 90)
    lng = _coordinate(raw_lng, index, "longitude", -180, 180)
    return {"type": "Point", "coordinates": [lng, lat]}


def _metadata(entry: Mapping[str, Any], index: int) -> dict[str, Any] | None:
    metadata = entry.get("metadata")
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        _fail(index, "metadata", f"must be an object (got {_kind(metadata)})")
    try:
        encoded = orjson.dumps(metadata)
    except orjson.JSONEncodeError as exc:
        _fail(index, "metadata", f"must be plain JSON ({exc})")
    if len(encoded) > MAX_METADATA_BYTES:
        _fail(
            index,
            "metadata",
            f"must be at most {MAX_METADATA_BYTES} bytes as JSON (got {len(encoded)})",
        )
    if b"\\u0000" in encoded and _has_nul(metadata):
        _fail(index, "metadata", "must not contain the NUL character (U+0000)")
    return metadata


def _validate_item(entry: Mapping[str, Any], index: int, now: datetime) -> DataItem:
    # Positional: this runs for every item a device sends.
    return DataItem(
        _variable(entry, index),
        _value(entry, index),
        _short_text(entry, index, "unit", MAX_UNIT_CHARS),
        _time(entry, index, now),
        _group(entry, index) or "",
        _location(entry, index),
        _metadata(entry, index),
    )


def validate_items(raw: Any, *, now: datetime, default_group: str | None = None) -> list[DataItem]:
    """Validate one item or a list of items, all-or-nothing; raises DataValidationError.

    Items without a group get ``default_group``, or else one new id shared by all of them.
    Unknown fields and the server-set ``id``, ``device`` and ``created_at`` are dropped.
    """
    entries = _entries(raw)
    now = _to_utc_ms(now)
    items: list[DataItem] = []
    shared_group = default_group
    for index, entry in enumerate(entries):
        _check_object(entry, index)
        item = _validate_item(entry, index, now)
        if not item.group:
            if not shared_group:
                shared_group = new_id()
            item.group = shared_group
        items.append(item)
    return items


def validate_json_items(
    raw: Any, *, now: datetime, default_group: str | Callable[[], str] | None = None
) -> list[dict[str, Any]]:
    """What :func:`validate_items` accepts, each item straight in its :func:`item_to_json`
    form (the same checks and errors, the same result); for services that put validated
    items on the bus, which need no datetime for a time already in the bus form.

    ``default_group`` may be a function giving the group, called only if an item has none.
    """
    entries = _entries(raw)
    shared_group = default_group
    items = []
    for index, entry in enumerate(entries):
        _check_object(entry, index)
        variable = _variable(entry, index)
        value = _value(entry, index)
        unit = _short_text(entry, index, "unit", MAX_UNIT_CHARS)
        when = entry.get("time")
        text = format_time(_to_utc_ms(now)) if when is None else _time_text(when, index, now)
        group = _group(entry, index)
        if not group:
            if callable(shared_group):
                shared_group = shared_group()
            if not shared_group:
                shared_group = new_id()
            group = shared_group
        items.append(
            {
                "variable": variable,
                "value": value,
                "unit": unit,
                "time": text,
                "group": group,
                "location": _location(entry, index),
                "metadata": _metadata(entry, index),
            }
        )
    return items


# The bus form of a time: a text of this form that is a valid time is its own bus form.
_BUS_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", re.ASCII)


def _in_bus_form(text: str) -> bool:
    """Whether a time text is a valid time already in the bus form (out of range, such as
    month 13, it is not: the full check says why)."""
    if len(text) != 24 or _BUS_TIME.fullmatch(text) is None:
        return False
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


def _time_text(raw: object, index: int, now: datetime) -> str:
    if type(raw) is str and _in_bus_form(raw):
        return raw
    return format_time(_time_of(raw, index, now))


# An integer part of 16 digits or more may lie beyond 2**53 (JavaScript writes integral
# doubles below 1e21 in full). JSON from an engine has no whitespace, so a number starts the
# text or follows one of - : , [. A quick look for any run of 16 digits (bytes.translate and
# find run at memory speed; a regex takes ten times as long) rules out most texts before
# that pattern is searched for.
_DIGITS_TO_ZERO = bytes(0 if 0x30 <= byte <= 0x39 else 1 for byte in range(256))
_SIXTEEN_DIGITS = bytes(16)
_LONG_INTEGER = re.compile(r"(?:^|[-:,\[])[0-9]{16}")


def long_integer_in(text: str, encoded: bytes | None = None) -> bool:
    """Whether compact JSON text (``encoded``: the same as UTF-8) may hold an integer of 16
    digits or more: one a JSON decoder keeps exact where JavaScript held a double, or one
    too large for 64 bits."""
    if encoded is None:
        encoded = text.encode("utf-8", "surrogatepass")
    if encoded.translate(_DIGITS_TO_ZERO).find(_SIXTEEN_DIGITS) < 0:
        return False
    return _LONG_INTEGER.search(text) is not None


_RAW_NULL = msgspec.Raw(b"null")
# Lengths msgspec checks while it decodes (a character is at most 4 bytes of UTF-8).
_PlainValue = Annotated[str, msgspec.Meta(max_length=MAX_VALUE_BYTES // 4)] | int | float | bool
_PlainUnit = Annotated[str, msgspec.Meta(max_length=MAX_UNIT_CHARS)]
_PlainGroup = Annotated[str, msgspec.Meta(max_length=MAX_GROUP_CHARS)]


class _PlainItem(msgspec.Struct):
    """The shape of an item bus_json takes (other fields are ignored, as the full check
    drops them); anything else, location and serie included, goes the long way."""

    variable: str
    value: _PlainValue | None = None
    unit: _PlainUnit | None = None
    time: str | int | None = None
    group: _PlainGroup | None = None
    serie: None = None
    location: None = None
    metadata: msgspec.Raw = _RAW_NULL


class _BusItem(msgspec.Struct):
    """An item in its `sluice.data` form (item_to_json) with its id: the same fields, in order."""

    variable: str
    value: Value
    unit: str | None
    time: str
    group: str
    location: None
    metadata: msgspec.Raw
    id: str


_plain_items = msgspec.json.Decoder(list[_PlainItem])
_PLAIN_EPOCH_MS_MAX = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
_bus_items = msgspec.json.Encoder()
# Metadata passed on as it was written: short enough that, written again by orjson (as the
# full check measures it), it is within the limit, and too shallow for orjson's depth limit.
_RAW_METADATA_MAX = MAX_METADATA_BYTES // 4
_RAW_METADATA_BRACKETS = 100


def bus_json(
    text: str,
    *,
    now: str,
    default_group: Callable[[], str],
    ids: Callable[[int], list[str]],
) -> tuple[bytes, int] | None:
    """A `sluice.data` value (the items in their bus form, with ids) and its item count, for
    a JSON list of items that are plainly valid (items without a time get ``now``, in the
    bus form); None when :func:`validate_json_items` must decide (an invalid item, or
    anything it checks the long way: a variable not seen valid before, a time neither in the
    bus form nor a whole epoch number from 1970 on, location, serie, long texts, escaped
    characters).
    Where it answers, the items are those ``validate_json_items`` gives for the decoded
    text, written as JSON (numbers as written).
    """
    if "\\u" in text or long_integer_in(text):  # NUL, lone surrogates; long integers
        return None
    try:
        entries = _plain_items.decode(text)
    except (msgspec.MsgspecError, UnicodeEncodeError):  # the latter: a raw lone surrogate
        return None
    if not entries:
        return None
    known = _KNOWN_VARIABLES
    null = _RAW_NULL
    checked_metadata = null
    checked_time: str | None = None
    group_text: str | None = None
    items: list[_BusItem] = []
    for entry, item_id in zip(entries, ids(len(entries)), strict=True):
        variable = known.get(entry.variable)
        if variable is None:
            return None
        written_time = entry.time
        if written_time is None:
            when = now
        elif isinstance(written_time, str):
            if written_time != checked_time:
                if not _in_bus_form(written_time):
                    return None
                checked_time = written_time
            when = written_time
        elif type(written_time) is int and 0 <= written_time <= _PLAIN_EPOCH_MS_MAX:
            # epoch seconds, or milliseconds past _MILLISECONDS_FROM (as parse_time reads them)
            if written_time <= _MILLISECONDS_FROM:
                written_time *= 1000
            when = format_epoch_ms(written_time)
        else:
            return None
        group = entry.group
        if not group:
            if group_text is None:
                group_text = default_group()
            group = group_text
        metadata = entry.metadata
        if metadata != checked_metadata and metadata != null:
            written = bytes(metadata)
            if (
                written[:1] != b"{"
                or len(written) > _RAW_METADATA_MAX
                or written.count(b"{") + written.count(b"[") > _RAW_METADATA_BRACKETS
            ):
                return None
            checked_metadata = metadata
        items.append(
            _BusItem(variable, entry.value, entry.unit, when, group, None, metadata, item_id)
        )
    return _bus_items.encode(items), len(items)


def _entries(raw: Any) -> list[Any]:
    if isinstance(raw, dict):
        return [raw]
    if isinstance(raw, list):
        if not raw:
            raise DataValidationError("no data items: send an item or a non-empty list of items")
        return raw
    raise DataValidationError(f"data must be an item object or a list of them (got {_kind(raw)})")


def _check_object(entry: Any, index: int) -> None:
    if not isinstance(entry, dict):
        raise DataValidationError(
            f'item {index}: must be an object like {{"variable": "temperature", "value": 21.5}}'
            f" (got {_kind(entry)})",
            index,
        )


def item_to_json(item: DataItem) -> dict[str, Any]:
    """The item as JSON-ready data for the bus; :func:`item_from_json` reads it back."""
    return {
        "variable": item.variable,
        "value": item.value,
        "unit": item.unit,
        "time": format_time(item.time),
        "group": item.group,
        "location": item.location,
        "metadata": item.metadata,
    }


def item_from_json(data: Mapping[str, Any]) -> DataItem:
    """An item written by :func:`item_to_json`; raises KeyError, TypeError or ValueError."""
    variable, group, when = data["variable"], data["group"], data["time"]
    if not isinstance(variable, str) or not isinstance(group, str) or not isinstance(when, str):
        raise TypeError("'variable', 'group' and 'time' must be strings")
    value = data.get("value")
    if value is not None and not isinstance(value, str | int | float):
        raise TypeError(f"'value' must be a string, number, boolean or null (got {_kind(value)})")
    unit, location, metadata = data.get("unit"), data.get("location"), data.get("metadata")
    if unit is not None and not isinstance(unit, str):
        raise TypeError("'unit' must be a string or null")
    if location is not None and not isinstance(location, dict):
        raise TypeError("'location' must be an object or null")
    if metadata is not None and not isinstance(metadata, dict):
        raise TypeError("'metadata' must be an object or null")
    return DataItem(
        variable=variable,
        value=value,
        unit=unit,
        time=_to_utc_ms(datetime.fromisoformat(when)),
        group=group,
        location=location,
        metadata=metadata,
    )
