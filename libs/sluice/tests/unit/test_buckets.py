import itertools
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sluice.buckets import (
    PERIODS,
    chunk_bounds,
    chunk_id,
    chunk_start,
    chunks_between,
    parse_chunk_id,
    retained_window,
    shift_chunks,
    window_text,
)

WED = datetime(2026, 3, 18, 15, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("period", "start"),
    [
        ("day", datetime(2026, 3, 18, tzinfo=UTC)),
        ("week", datetime(2026, 3, 16, tzinfo=UTC)),  # Monday
        ("month", datetime(2026, 3, 1, tzinfo=UTC)),
        ("quarter", datetime(2026, 1, 1, tzinfo=UTC)),
    ],
)
def test_chunk_start(period: str, start: datetime) -> None:
    assert chunk_start(WED, period) == start


def test_quarters_and_months_cross_years() -> None:
    assert shift_chunks(datetime(2026, 11, 5, tzinfo=UTC), "quarter", 1) == datetime(
        2027, 1, 1, tzinfo=UTC
    )
    assert shift_chunks(datetime(2026, 2, 5, tzinfo=UTC), "month", -14) == datetime(
        2024, 12, 1, tzinfo=UTC
    )


@pytest.mark.parametrize(
    ("period", "retention", "start"),
    [
        ("day", 0, datetime(2026, 3, 18, tzinfo=UTC)),  # 0 keeps only the current chunk
        ("day", 31, datetime(2026, 2, 15, tzinfo=UTC)),
        ("week", 2, datetime(2026, 3, 2, tzinfo=UTC)),
        ("month", 36, datetime(2023, 3, 1, tzinfo=UTC)),
        ("quarter", 1, datetime(2025, 10, 1, tzinfo=UTC)),
    ],
)
def test_retained_window_ends_with_tomorrow(period: str, retention: int, start: datetime) -> None:
    window = retained_window(WED, period, retention)
    assert window == (start, datetime(2026, 3, 20, tzinfo=UTC))
    assert window_text(window).endswith("and 2026-03-19")


def test_chunk_ids_round_trip_and_refuse_what_is_not_a_chunk() -> None:
    bounds = chunk_bounds(WED, "week")
    text = chunk_id(*bounds)
    assert text == f"{int(bounds[0].timestamp())}_{int(bounds[1].timestamp()) - 1}"
    assert parse_chunk_id(text, "week") == bounds
    with pytest.raises(ValueError, match="does not start a month chunk"):
        parse_chunk_id(text, "month")
    for bad in ("abc", "12", f"{int(bounds[0].timestamp())}_5"):
        with pytest.raises(ValueError):
            parse_chunk_id(bad, "week")


def test_chunks_between_lists_every_chunk_once() -> None:
    chunks = chunks_between(datetime(2025, 12, 30, tzinfo=UTC), WED, "month")
    assert [c[0].month for c in chunks] == [12, 1, 2, 3]
    assert all(a[1] == b[0] for a, b in itertools.pairwise(chunks))


@given(
    st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(9000, 1, 1)),
    st.sampled_from(PERIODS),
)
def test_every_instant_is_in_exactly_its_chunk(naive: datetime, period: str) -> None:
    when = naive.replace(tzinfo=UTC)
    start, end = chunk_bounds(when, period)
    assert start <= when < end
    assert chunk_start(start, period) == start
    assert chunk_start(end - timedelta(microseconds=1), period) == start
