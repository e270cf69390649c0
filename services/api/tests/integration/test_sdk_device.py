"""TagoIO's official Python SDK (PyPI ``tagoio-sdk``) against Sluice, unchanged.

``Device`` is pointed at the test server with the ``region`` dict; every call's result is
checked as a TagoIO user would read it.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from tagoio_sdk import Device
from tagoio_sdk.infrastructure.api_request import TagoIORequestError

from sluice.testing.mqtt import wait_for
from sluice.testing.stack import Stack

T0 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)


def sdk_device(stack: Stack, token: str) -> Device:
    return Device({"token": token, "region": {"api": stack.api_url, "sse": stack.api_url}})


@pytest.fixture
def device(stack: Stack) -> tuple[Device, dict[str, Any]]:
    account = stack.create_account(f"sdk-{uuid.uuid4().hex[:6]}")
    created = stack.create_device(account["token"], name="sdk-sensor", type="mutable")
    return sdk_device(stack, created["token"]), {**created, "account": account["token"]}


def at(minutes: int) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat()


def test_send_and_read_every_query_mode(
    stack: Stack, device: tuple[Device, dict[str, Any]]
) -> None:
    dev, meta = device
    assert dev.sendData({"variable": "temperature", "value": 20, "unit": "C", "time": at(0)}) == (
        "1 Data Added"
    )
    sent = dev.sendData(
        [
            {"variable": "temperature", "value": 24, "unit": "C", "time": at(30)},
            {"variable": "temperature", "value": 28, "unit": "C", "time": at(70), "group": "g2"},
            {"variable": "humidity", "value": 55, "time": at(10), "location": {"lat": 1, "lng": 2}},
            {"variable": "status", "value": "ok", "time": at(80), "metadata": {"fw": "1.2"}},
        ]
    )
    assert sent == "4 Data Added"
    wait_for(lambda: dev.getData({"query": "count"})[0]["value"] == 5, what="5 points stored")

    default = dev.getData({"variables": ["temperature", "humidity"], "qty": 10})
    assert [d["value"] for d in default] == [28, 24, 55, 20]  # newest first
    assert isinstance(default[0]["time"], datetime)  # the SDK parsed our time format
    assert default[0]["device"] == meta["device_id"]
    asc = dev.getData({"variable": "temperature", "ordination": "ascending", "qty": 2, "skip": 1})
    assert [d["value"] for d in asc] == [24, 28]
    detailed = dev.getData({"variable": "status", "details": True})
    assert detailed[0]["metadata"] == {"fw": "1.2"}
    assert "created_at" in detailed[0]
    assert [d["value"] for d in dev.getData({"groups": "g2"})] == [28]
    window = dev.getData({"variable": "temperature", "start_date": at(10), "end_date": at(60)})
    assert [d["value"] for d in window] == [24]
    assert [d["value"] for d in dev.getData({"values": ["ok"]})] == ["ok"]
    ids = dev.getData({"ids": [default[0]["id"]]})
    assert [d["value"] for d in ids] == [28]

    def one(query: str, variable: str = "temperature") -> Any:
        result = dev.getData({"query": query, "variable": variable})
        assert len(result) == 1, (query, result)
        return result[0]["value"]

    assert one("last_item") == one("last_value") == 28
    assert one("first_item") == one("first_value") == 20
    assert one("last_location", "humidity") == one("first_location", "humidity") == 55
    assert dev.getData({"query": "last_location", "variable": "temperature"}) == []
    assert one("last_insert") in (24, 28)  # both arrived in one request
    assert one("first_insert") == 20
    assert dev.getData({"query": "count", "variable": "temperature"})[0]["value"] == 3
    assert one("min") == 20
    assert one("max") == 28
    assert one("avg") == 24
    assert one("sum") == 72

    hourly = dev.getData(
        {
            "query": "aggregate",
            "variable": "temperature",
            "interval": "hour",
            "function": "avg",
            "ordination": "asc",
        }
    )
    assert [(h["time"].hour, h["value"]) for h in hourly] == [
        (T0.hour, 22),
        ((T0.hour + 1) % 24, 28),
    ]
    conditional = dev.getData(
        {"query": "conditional", "variable": "temperature", "function": "gte", "value": 24}
    )
    assert sorted(c["value"] for c in conditional) == [24, 28]
    ne = dev.getData(
        {"query": "conditional", "variable": "status", "function": "ne", "value": "ok"}
    )
    assert ne == []


def test_edit_delete_info_and_params(stack: Stack, device: tuple[Device, dict[str, Any]]) -> None:
    dev, meta = device
    dev.sendData([{"variable": "level", "value": v, "time": at(v)} for v in (1, 2, 3)])
    wait_for(lambda: len(dev.getData({"variable": "level"})) == 3, what="3 levels stored")
    newest = dev.getData({"variable": "level", "query": "last_item"})[0]

    assert dev.editData({"id": newest["id"], "value": 30, "unit": "cm"}) == "1 item(s) updated"
    edited = dev.getData({"ids": newest["id"]})[0]
    assert (edited["value"], edited["unit"]) == (30, "cm")

    assert dev.deleteData({"variable": "level", "query": "first_item"}) == "1 Data Removed"
    assert dev.deleteData() == "1 Data Removed"  # the SDK's default: last_item
    assert [d["value"] for d in dev.getData({"variable": "level"})] == [2]

    info = dev.info()
    assert (info["id"], info["name"], info["type"]) == (meta["device_id"], "sdk-sensor", "mutable")
    assert info["bucket"]["id"] == meta["device_id"]

    with stack.client(meta["account"]) as http:
        response = http.post(
            f"/device/{meta['device_id']}/params",
            json=[{"key": "interval", "value": "60"}, {"key": "mode", "value": "eco"}],
        )
        assert response.status_code == 200, response.text
    params = dev.getParameters()
    assert [(p["key"], p["value"], p["sent"]) for p in params] == [
        ("interval", "60", False),
        ("mode", "eco", False),
    ]
    assert dev.setParameterAsRead(params[0]["id"]) == "Param Successfully Updated"
    assert [p["sent"] for p in dev.getParameters()] == [True, False]
    # The Python SDK's onlyUnRead sends sent_status=true, which (as in TagoIO's API and the
    # JS SDK) selects the params already sent: the SDK's flag name is the odd one out.
    assert [p["key"] for p in dev.getParameters(onlyUnRead=True)] == ["interval"]


def test_sdk_raises_the_api_s_message(stack: Stack, device: tuple[Device, dict[str, Any]]) -> None:
    dev, _ = device
    with pytest.raises(TagoIORequestError, match="item 0: 'variable' must not contain a space"):
        dev.sendData({"variable": "bad name", "value": 1})
    with pytest.raises(TagoIORequestError, match="Invalid device token"):
        sdk_device(stack, str(uuid.uuid4())).info()
