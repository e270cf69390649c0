"""The device data API over HTTP against the whole stack (SQLite and PostgreSQL).

Every reject path shows what the user sees, and that nothing already accepted is lost.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select, update

from sluice.buckets import MUTABLE_CAP, MUTABLE_CAP_MESSAGE
from sluice.db import create_engine, session_factory
from sluice.db.models import DataPoint, DeviceToken
from sluice.ids import hash_token, new_id
from sluice.testing.mqtt import Client
from sluice.testing.stack import Stack


def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] is True, body
    return body["result"]


def refused(response: httpx.Response, status: int, *fragments: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body == {"status": False, "message": body["message"]}
    for fragment in fragments:
        assert fragment in body["message"], body["message"]
    return str(body["message"])


def tenant(stack: Stack, **device: Any) -> dict[str, str]:
    account = stack.create_account(f"data-{uuid.uuid4().hex[:6]}")
    created = stack.create_device(account["token"], **{"name": "sensor", **device})
    return {"account": account["token"], "device": created["device_id"], "token": created["token"]}


def device_client(stack: Stack, token: str) -> httpx.Client:
    return httpx.Client(base_url=stack.api_url, headers={"device-token": token}, timeout=30)


def new_token(stack: Stack, account: str, device: str, permission: str) -> str:
    with stack.client(account) as http:
        response = http.post("/device/token", json={"device": device, "permission": permission})
        assert response.status_code in (200, 201), response.text
        return str(response.json()["result"]["token"])


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _sql(url: str, statement: Any) -> Any:
    engine = create_engine(url)
    try:
        async with session_factory(engine)() as session:
            result = await session.execute(statement)
            await session.commit()
            return result
    finally:
        await engine.dispose()


def count(stack: Stack, device: str) -> int:
    async def go() -> int:
        engine = create_engine(stack.database_url)
        try:
            async with session_factory(engine)() as session:
                rows = await session.scalars(
                    select(DataPoint.id).where(DataPoint.device_id == device)
                )
                return len(rows.all())
        finally:
            await engine.dispose()

    return int(run(go()))


def test_sent_data_comes_back_in_tagoio_s_shape(stack: Stack) -> None:
    t = tenant(stack)
    when = datetime.now(UTC) - timedelta(minutes=5)
    with device_client(stack, t["token"]) as http:
        sent = [
            {
                "variable": "Temperature",
                "value": 21.5,
                "unit": "C",
                "time": when.isoformat(),
                "location": {"lat": -25.43, "lng": -49.27},
                "metadata": {"room": "lab"},
            },
            {"variable": "door", "value": True, "serie": "batch-1"},
        ]
        assert ok(http.post("/data", params={"wait": "true"}, json=sent)) == "2 Data Added"
        items = ok(http.get("/data", params={"variable": "temperature", "details": "true"}))
        assert len(items) == 1
        item = items[0]
        assert set(item) >= {"id", "device", "variable", "value", "unit", "group", "time"}
        assert (item["variable"], item["value"], item["unit"]) == ("temperature", 21.5, "C")
        assert item["device"] == t["device"]
        assert item["location"] == {"type": "Point", "coordinates": [-49.27, -25.43]}
        assert item["metadata"] == {"room": "lab"}
        assert item["time"] == when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        assert "created_at" in item
        door = ok(http.get("/data", params={"variable": "door", "query": "last_value"}))[0]
        assert (door["value"], door["group"]) == (True, "batch-1")
        assert "created_at" not in door


def test_numbers_past_64_bits_are_stored_as_javascript_reads_them(stack: Stack) -> None:
    t = tenant(stack)
    json_headers = {"Content-Type": "application/json"}
    with device_client(stack, t["token"]) as http:
        body = '[{"variable": "huge", "value": 1180591620717411303424}]'
        response = http.post("/data", params={"wait": "true"}, content=body, headers=json_headers)
        assert ok(response) == "1 Data Added"
        [item] = ok(http.get("/data", params={"variable": "huge"}))
        assert item["value"] == 2.0**70
        # Past the double range: a clear 400, nothing stored.
        body = '[{"variable": "huge", "value": 1e999}]'
        response = http.post("/data", content=body, headers=json_headers)
        refused(response, 400, "not valid JSON", "infinity")
        # Found by the API fuzzer: a skip past any database offset was a 500.
        refused(http.get("/data", params={"skip": 10**30}), 400, "'skip' must be between")


def test_text_bodies_go_through_the_device_s_payload_parser(stack: Stack) -> None:
    parser = (
        "const hex = payload[0].value;"
        "payload = [{variable: 'temperature', value: parseInt(hex.slice(0, 4), 16) / 10,"
        " metadata: {raw: raw_payload ? raw_payload.toString() : null}}];"
    )
    t = tenant(stack, payload_parser=parser)
    with device_client(stack, t["token"]) as http:
        response = http.post(
            "/data",
            params={"wait": "true"},
            content=b"00D7FF",
            headers={"content-type": "text/plain"},
        )
        assert ok(response) == "1 Data Added"
        item = ok(http.get("/data", params={"query": "last_item"}))[0]
    assert (item["variable"], item["value"]) == ("temperature", 21.5)
    assert item["metadata"] == {"raw": "00D7FF"}


def test_wait_reports_a_parser_error_instead_of_timing_out(stack: Stack) -> None:
    t = tenant(stack, payload_parser="throw new Error('cannot decode ' + payload[0].value);")
    with device_client(stack, t["token"]) as http:
        response = http.post(
            "/data", params={"wait": "true"}, json={"variable": "x", "value": "zz"}
        )
        refused(response, 400, "Data not stored:", "cannot decode zz", "refused by parser")
        assert ok(http.get("/data", params={"query": "count"})) == 0


def test_wait_reports_what_storage_refuses(stack: Stack) -> None:
    # The parser moves the time out of the device's window: only storage can refuse it.
    parser = "payload = payload.map(p => ({...p, time: '2001-01-01T00:00:00Z'}));"
    t = tenant(stack, payload_parser=parser, chunk_period="day", chunk_retention=1)
    with device_client(stack, t["token"]) as http:
        response = http.post("/data", params={"wait": "true"}, json={"variable": "x", "value": 1})
        refused(response, 400, "immutable window", "Time must be between", "refused by storage")
        assert ok(http.get("/data", params={"query": "count"})) == 0


def test_invalid_items_are_refused_all_or_nothing(stack: Stack) -> None:
    t = tenant(stack)
    with device_client(stack, t["token"]) as http:
        batch = [{"variable": "ok", "value": 1}, {"variable": "bad name", "value": 2}]
        refused(http.post("/data", json=batch), 400, "item 1: 'variable' must not contain a space")
        refused(http.post("/data", json={"value": 3}), 400, "item 0: 'variable' is required")
        refused(
            http.post("/data", json={"variable": "t", "time": "2001-01-01"}),
            400,
            "item 0: 'time' is outside what this immutable device keeps",
            "Time must be between",
        )
        refused(
            http.post("/data", content=b"{oops", headers={"content-type": "application/json"}),
            400,
            "not valid JSON",
        )
        # A marker written after the refusals: nothing of them was stored, the marker was.
        ok(http.post("/data", params={"wait": "true"}, json={"variable": "marker", "value": 1}))
        assert [i["variable"] for i in ok(http.get("/data"))] == ["marker"]


def test_a_body_over_200_kb_is_refused_with_413(stack: Stack) -> None:
    t = tenant(stack)
    big = [{"variable": "blob", "value": "x" * 5000} for _ in range(45)]  # ~226 kB
    with device_client(stack, t["token"]) as http:
        refused(http.post("/data", json=big), 413, "larger than 200 kB", "split the data")
        # Chunked upload without a length is cut off at the limit too.
        chunks = iter([b"[" + b'{"variable":"a","value":1},' * 8000, b"{}]"])
        refused(
            http.post("/data", content=chunks, headers={"content-type": "application/json"}),
            413,
        )
        ok(http.post("/data", params={"wait": "true"}, json=big[:30]))
        assert ok(http.get("/data", params={"query": "count"})) == 30


def test_tokens_from_every_place_and_permissions(stack: Stack) -> None:
    t = tenant(stack)
    read = new_token(stack, t["account"], t["device"], "read")
    write = new_token(stack, t["account"], t["device"], "write")
    with httpx.Client(base_url=stack.api_url, timeout=30) as http:
        refused(http.get("/data"), 401, "send the device token")
        refused(
            http.get("/data", headers={"device-token": str(uuid.uuid4())}),
            401,
            "Invalid device token",
        )
        for headers in (
            {"token": read},
            {"device-token": read},
            {"authorization": read},
            {"Authorization": f"Bearer {read}"},
        ):
            assert ok(http.get("/data", headers=headers)) == []
        assert ok(http.get("/data", params={"token": read})) == []
        refused(
            http.post("/data", headers={"device-token": read}, json={"variable": "t", "value": 1}),
            403,
            "'read' permission and cannot send data",
        )
        refused(
            http.get("/data", headers={"device-token": write}),
            403,
            "'write' permission and cannot read data",
        )
        assert ok(
            http.post("/data", headers={"device-token": write}, json={"variable": "t", "value": 1})
        )
        # Expired: the token is refused from the moment its time has passed.
        run(
            _sql(
                stack.database_url,
                update(DeviceToken)
                .where(DeviceToken.token_hash == hash_token(read))
                .values(expire_at=datetime.now(UTC) - timedelta(seconds=1)),
            )
        )
        refused(http.get("/data", headers={"device-token": read}), 401, "Device token expired")


def test_last_authorization_is_written_at_most_once_a_minute(stack: Stack) -> None:
    t = tenant(stack)

    def last() -> datetime:
        result = run(
            _sql(
                stack.database_url,
                select(DeviceToken.last_authorization).where(
                    DeviceToken.token_hash == hash_token(t["token"])
                ),
            )
        )
        value: datetime = result.scalar_one()
        return value

    with device_client(stack, t["token"]) as http:
        ok(http.get("/info"))
        first = last()
        ok(http.get("/info"))
        assert last() == first  # within the minute: not written again
        earlier = datetime.now(UTC) - timedelta(minutes=2)
        run(
            _sql(
                stack.database_url,
                update(DeviceToken)
                .where(DeviceToken.token_hash == hash_token(t["token"]))
                .values(last_authorization=earlier),
            )
        )
        ok(http.get("/info"))
        assert last() > earlier + timedelta(minutes=1)


def test_immutable_data_cannot_be_edited_or_deleted(stack: Stack) -> None:
    t = tenant(stack)
    with device_client(stack, t["token"]) as http:
        ok(http.post("/data", params={"wait": "true"}, json={"variable": "t", "value": 1}))
        item = ok(http.get("/data"))[0]
        refused(
            http.put("/data", json={"id": item["id"], "value": 2}),
            400,
            "immutable devices cannot be edited",
        )
        refused(
            http.delete("/data", params={"variable": "t"}),
            400,
            "immutable devices cannot be deleted",
        )
        assert ok(http.get("/data"))[0]["value"] == 1


def test_mutable_data_is_edited_and_deleted_by_id_or_filter(stack: Stack) -> None:
    t = tenant(stack, type="mutable")
    start = datetime.now(UTC) - timedelta(minutes=10)
    with device_client(stack, t["token"]) as http:
        batch = [
            {"variable": "level", "value": i, "time": (start + timedelta(minutes=i)).isoformat()}
            for i in range(5)
        ] + [{"variable": "keep", "value": 0}]
        ok(http.post("/data", params={"wait": "true"}, json=batch))
        levels = ok(http.get("/data", params={"variable": "level", "ordination": "asc"}))
        first = levels[0]

        edit = {"id": first["id"], "value": 99.5, "unit": "m", "metadata": {"by": "test"}}
        assert ok(http.put("/data", json=edit)) == "1 item(s) updated"
        edited = ok(http.get("/data", params={"ids": first["id"]}))[0]
        assert (edited["value"], edited["unit"], edited["metadata"]) == (99.5, "m", {"by": "test"})

        # All-or-nothing: one bad edit and none is applied.
        bad = [{"id": levels[1]["id"], "value": 7}, {"id": levels[2]["id"], "value": {"no": 1}}]
        refused(http.put("/data", json=bad), 400, "item 1: 'value' must be a string, number")
        refused(http.put("/data", json={"id": "f" * 24, "value": 1}), 404, "f" * 24)
        refused(http.put("/data", json=[{"id": first["id"]}] * 26), 400, "At most 25 items")
        refused(http.put("/data", json={"value": 1}), 400, "item 0: 'id' is required")
        assert ok(http.get("/data", params={"ids": levels[1]["id"]}))[0]["value"] == 1

        assert (
            ok(http.delete("/data", params={"variable": "level", "qty": 2, "ordination": "asc"}))
            == "2 Data Removed"
        )
        refused(http.delete("/data", params={"query": "count"}), 400, "returns numbers")
        assert (
            ok(http.delete("/data", params={"query": "last_item", "variable": "level"}))
            == "1 Data Removed"
        )
        remaining = sorted(i["value"] for i in ok(http.get("/data", params={"qty": 100})))
        assert remaining == [0, 2, 3]  # `keep`, and the levels neither delete selected


def test_mutable_cap_refuses_with_tagoio_s_message(stack: Stack) -> None:
    t = tenant(stack, type="mutable")
    now = datetime.now(UTC)
    rows = [
        {
            "id": new_id(),
            "device_id": t["device"],
            "variable": "filler",
            "value_type": "number",
            "value_number": float(i),
            "time": now,
            "created_at": now,
        }
        for i in range(MUTABLE_CAP - 1)
    ]
    run(_bulk(stack.database_url, rows))
    with device_client(stack, t["token"]) as http:
        two = [{"variable": "t", "value": 1}, {"variable": "t", "value": 2}]
        refused(http.post("/data", json=two), 400, MUTABLE_CAP_MESSAGE)
        assert ok(http.post("/data", params={"wait": "true"}, json=two[0])) == "1 Data Added"
        refused(http.post("/data", json=two[1]), 400, MUTABLE_CAP_MESSAGE, "delete some data")
        assert ok(http.get("/data", params={"query": "count"})) == MUTABLE_CAP
        # Deleting makes room again.
        ok(http.delete("/data", params={"variable": "filler", "qty": 1}))
        assert ok(http.post("/data", params={"wait": "true"}, json=two[1])) == "1 Data Added"


async def _bulk(url: str, rows: list[dict[str, Any]]) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(DataPoint.__table__.insert(), rows)
    finally:
        await engine.dispose()


def test_info_params_and_publish_to_a_device(stack: Stack) -> None:
    t = tenant(stack)
    other = stack.create_device(t["account"], name="valve")
    with stack.client(t["account"]) as http:
        response = http.post(
            f"/device/{t['device']}/params",
            json=[
                {"key": "interval", "value": "60"},
                {"key": "mode", "value": "eco", "sent": True},
            ],
        )
        assert response.status_code == 200, response.text
    subscriber = Client(stack.mqtt_port, other["token"], version=5)
    assert subscriber.connect() == 0
    assert subscriber.subscribe("commands/#", qos=1) == [1]
    try:
        with device_client(stack, t["token"]) as http:
            info = ok(http.get("/info"))
            assert (info["id"], info["name"], info["type"]) == (t["device"], "sensor", "immutable")
            params = ok(http.get("/device/params"))
            assert [(p["key"], p["sent"]) for p in params] == [("interval", False), ("mode", True)]
            unsent = ok(http.get("/device/params", params={"sent_status": "false"}))
            assert [p["key"] for p in unsent] == ["interval"]
            ok(http.put(f"/device/params/{unsent[0]['id']}"))
            assert ok(http.get("/device/params", params={"sent_status": "false"})) == []
            refused(http.put(f"/device/params/{'f' * 24}"), 404, "not found")

            body = {
                "topic": "commands/valve",
                "message": "open",
                "device": other["device_id"],
                "options": {"qos": 1},
            }
            assert ok(http.post("/mqtt/publish", json=body)) == "Message published"
            got = subscriber.expect()
            assert (got.topic, got.payload) == ("commands/valve", b"open")
            body = {"topic": "commands/valve", "message": {"pos": 50}, "bucket": other["device_id"]}
            ok(http.post("/analysis/services/mqtt/publish", json=body))
            assert subscriber.expect().payload == b'{"pos":50}'
            refused(
                http.post("/mqtt/publish", json={"topic": "a/#", "message": "x"}),
                400,
                "Invalid topic",
            )
            foreign = stack.create_device(stack.create_account("other")["token"], name="x")
            body = {"topic": "a", "message": "x", "device": foreign["device_id"]}
            refused(http.post("/mqtt/publish", json=body), 404, "not found")
    finally:
        subscriber.disconnect()
