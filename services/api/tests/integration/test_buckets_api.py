"""A device's bucket through the account token: query, edit, delete, empty, chunks, CSV."""

from __future__ import annotations

import asyncio
import csv
import io
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from sluice.buckets import chunk_bounds, chunk_id
from sluice.db import create_engine
from sluice.db.models import DataPoint
from sluice.ids import new_id
from sluice.testing.stack import Stack


def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] is True, body
    return body["result"]


def refused(response: httpx.Response, status: int, fragment: str) -> None:
    assert response.status_code == status, response.text
    assert fragment in response.json()["message"]


def store(stack: Stack, rows: list[dict[str, Any]]) -> None:
    """Rows straight into the bucket, as storage writes them (bulk, for volume)."""

    async def go() -> None:
        engine = create_engine(stack.database_url)
        try:
            async with engine.begin() as conn:
                await conn.execute(DataPoint.__table__.insert(), rows)
        finally:
            await engine.dispose()

    asyncio.run(go())


def point(device: str, when: datetime, value: Any, **extra: Any) -> dict[str, Any]:
    kind = (
        "boolean"
        if isinstance(value, bool)
        else "number"
        if isinstance(value, int | float)
        else "string"
    )
    return {
        "id": new_id(),
        "device_id": device,
        "variable": "t",
        "value_type": kind,
        "value_number": float(value) if kind == "number" else None,
        "value_text": value if kind == "string" else None,
        "value_bool": value if kind == "boolean" else None,
        "time": when,
        "created_at": when,
        "location": None,
        "metadata": None,
        "group": "g",
        "unit": None,
        **extra,
    }


def account(stack: Stack) -> tuple[str, httpx.Client]:
    created = stack.create_account(f"bucket-{uuid.uuid4().hex[:6]}")
    return created["token"], stack.client(created["token"])


def test_query_send_edit_delete_with_the_account_token(stack: Stack) -> None:
    token, http = account(stack)
    with http:
        device = stack.create_device(token, name="m", type="mutable")["device_id"]
        sent = ok(
            http.post(
                f"/device/{device}/data",
                params={"wait": "true"},
                json=[{"variable": "a", "value": 1}, {"variable": "a", "value": 2}],
            )
        )
        assert sent == "2 Data Added"
        items = ok(http.get(f"/device/{device}/data", params={"variable": "a"}))
        assert sorted(i["value"] for i in items) == [1, 2]
        assert ok(http.get(f"/device/{device}/data", params={"query": "sum"}))[0]["value"] == 3
        ok(http.put(f"/device/{device}/data", json={"id": items[0]["id"], "value": 10}))
        assert (
            ok(http.delete(f"/device/{device}/data", params={"values": "10"})) == "1 Data Removed"
        )
        assert ok(http.get(f"/device/{device}/data", params={"query": "count"})) == 1

        _, other = account(stack)
        with other:
            refused(other.get(f"/device/{device}/data"), 404, f"Device {device} not found")
            refused(other.post(f"/device/{device}/empty"), 404, "not found")
            refused(other.get(f"/device/{device}/data/export"), 404, "not found")
        assert ok(http.post(f"/device/{device}/empty")) == "1 Data Removed"
        assert ok(http.get(f"/device/{device}/data", params={"query": "count"})) == 0


def test_chunks_are_listed_with_counts_and_deleted_one_by_one(stack: Stack) -> None:
    token, http = account(stack)
    now = datetime.now(UTC)
    with http:
        device = stack.create_device(token, name="i", chunk_period="day", chunk_retention=2)[
            "device_id"
        ]
        days = [now - timedelta(days=d) for d in (0, 0, 1, 2, 2, 2)]
        store(stack, [point(device, when, i) for i, when in enumerate(days)])
        chunks = ok(http.get(f"/device/{device}/chunk"))
        assert [c["amount"] for c in chunks] == [3, 1, 2]  # oldest first: 2 days ago … today
        today = chunk_bounds(now, "day")
        assert chunks[-1]["id"] == chunk_id(*today)
        assert chunks[-1]["from_date"] == today[0].isoformat().replace("+00:00", ".000Z")
        assert chunks[-1]["to_date"].endswith("T23:59:59.999Z")
        assert not any(c["expired"] for c in chunks)

        oldest = chunks[0]["id"]
        assert ok(http.delete(f"/device/{device}/chunk/{oldest}")) == f"Chunk {oldest} deleted"
        assert [c["amount"] for c in ok(http.get(f"/device/{device}/chunk"))] == [0, 1, 2]
        refused(http.delete(f"/device/{device}/chunk/123_456"), 400, "list the chunks with GET")

        mutable = stack.create_device(token, name="m", type="mutable")["device_id"]
        refused(http.get(f"/device/{mutable}/chunk"), 400, "Only immutable devices")


def test_csv_export_streams_every_point_oldest_first(stack: Stack) -> None:
    token, http = account(stack)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=5)
    with http:
        device = stack.create_device(token, name="csv")["device_id"]
        special = [
            point(device, start, 21.5, unit="C"),
            point(device, start + timedelta(seconds=1), True),
            point(device, start + timedelta(seconds=2), 'say "hi", ok', metadata={"a": [1, 2]}),
            point(
                device,
                start + timedelta(seconds=3),
                7,
                location={"type": "Point", "coordinates": [-49.27, -25.43]},
            ),
        ]
        # More than one page of the stream, with a tie on time to exercise the keyset.
        bulk = [point(device, start + timedelta(minutes=1, seconds=i // 2), i) for i in range(4500)]
        store(stack, special + bulk)

        response = http.get(f"/device/{device}/data/export")
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/csv")
        assert f"device-{device}.csv" in response.headers["content-disposition"]
        rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0] == ["variable", "value", "unit", "group", "time", "location", "metadata"]
    body = rows[1:]
    assert len(body) == 4504
    assert body[0] == ["t", "21.5", "C", "g", start.isoformat().replace("+00:00", ".000Z"), "", ""]
    assert body[1][1] == "true"
    assert (body[2][1], body[2][6]) == ('say "hi", ok', '{"a":[1,2]}')
    assert body[3][5] == '{"type":"Point","coordinates":[-49.27,-25.43]}'
    assert sorted(int(r[1]) for r in body[4:]) == list(range(4500))  # each once
