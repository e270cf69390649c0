"""What ``GET /data`` and ``DELETE /data`` understand of their query strings (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from starlette.datastructures import QueryParams

from sluice_api.dataquery import DataQuery
from sluice_api.errors import ApiError
from sluice_api.ingest import read_items

NOW = datetime(2026, 3, 18, 12, tzinfo=UTC)


def parse(query: str) -> DataQuery:
    return DataQuery.from_params(QueryParams(query), NOW)


def refused(query: str) -> str:
    with pytest.raises(ApiError) as caught:
        parse(query)
    assert caught.value.status_code == 400
    return caught.value.message


@pytest.mark.parametrize(
    "query",
    [
        "variable=Temp&variable=hum",
        "variables=temp&variables=hum",
        "variable[]=temp&variable[]=hum",
        "variables[0]=temp&variables[1]=hum",
    ],
)
def test_every_spelling_of_a_variable_list(query: str) -> None:
    assert parse(query).variables == ["temp", "hum"]


def test_defaults_are_tagoio_s() -> None:
    q = parse("")
    assert (q.query, q.qty, q.skip, q.ascending, q.details) == ("default", 15, 0, False, False)


def test_filters_dates_and_paging() -> None:
    q = parse(
        "groups=g1&serie=g2&ids=a&values=on&qty=10000&skip=5&ordination=ASC&details=True"
        "&start_date=1 day&end_date=2026-03-18T10:00:00Z"
    )
    assert q.groups == ["g1", "g2"]
    assert (q.ids, q.values, q.qty, q.skip, q.ascending, q.details) == (
        ["a"],
        ["on"],
        10000,
        5,
        True,
        True,
    )
    assert q.start == NOW - timedelta(days=1)
    assert q.end == datetime(2026, 3, 18, 10, tzinfo=UTC)
    assert parse("start_date=1773835200").start == datetime(2026, 3, 18, 12, tzinfo=UTC)
    assert parse("start_date=2 hours").start == NOW - timedelta(hours=2)


def test_aggregate_and_conditional_take_their_own_parameters() -> None:
    q = parse("query=aggregate&interval=Hour&function=max&variable=t")
    assert (q.query, q.interval, q.function) == ("aggregate", "hour", "max")
    q = parse("query=conditional&function=gte&value=20.5&values=x")
    assert (q.function, q.operand, q.values) == ("gte", "20.5", ["x"])
    # Outside conditional, ``value`` filters by value (the SDK's deleteData example).
    assert parse("query=last_item&value=10").values == ["10"]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("query=median", "Unknown query 'median'; use one of:"),
        ("qty=0", "'qty' must be between 1 and 10000 (got 0)"),
        ("qty=10001", "'qty' must be between 1 and 10000"),
        ("qty=many", "'qty' must be an integer"),
        ("skip=-1", "'skip' must be between 0 and 1000000000000"),
        ("ordination=up", "'ordination' must be 'ascending' or 'descending'"),
        ("start_date=yesterday", "'start_date' must be an ISO 8601 time"),
        ("start_date=1 hour&end_date=2 hours", "'start_date' must be before 'end_date'"),
        ("query=aggregate&function=avg", "query 'aggregate' needs 'interval', one of: minute"),
        ("query=aggregate&interval=day&function=median", "needs 'function', one of: avg, sum"),
        ("query=conditional&function=gt", "query 'conditional' needs 'value'"),
        ("query=conditional&function=gt&value=hot", "function 'gt' compares numbers"),
        ("query=conditional&value=1", "query 'conditional' needs 'function', one of: gt"),
    ],
)
def test_wrong_parameters_are_named(query: str, message: str) -> None:
    assert message in refused(query)


def test_bodies_are_json_items_or_raw_for_the_parser() -> None:
    body = read_items(b'{"variable": "t", "value": 1}', "application/json")
    assert (body.items, body.raw) == ([{"variable": "t", "value": 1}], None)
    body = read_items(b'\xef\xbb\xbf[{"variable": "t"}]', None)
    assert (body.items, body.raw) == ([{"variable": "t"}], None)
    body = read_items(b"01A2FF", "text/plain")
    assert body.items == [{"variable": "payload", "value": "01A2FF"}]
    assert (body.raw, body.content_type) == (b"01A2FF", "text/plain")
    with pytest.raises(ApiError, match="not valid JSON"):
        read_items(b"{oops", "application/json")
    with pytest.raises(ApiError, match="body is empty"):
        read_items(b"  ", "text/plain")
    with pytest.raises(ApiError, match="non-empty list"):
        read_items(b"[]", "application/json")
