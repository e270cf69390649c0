"""The management API over HTTP against the whole stack (SQLite and PostgreSQL): accounts,
plans, devices, params and device tokens, with every error a user can meet."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from sluice.db import DataPoint, create_engine, session_factory
from sluice.ids import new_id
from sluice.testing.stack import Stack


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] is True, body
    return body["result"]


def refused(response: httpx.Response, status: int, *fragments: str) -> str:
    """The error envelope a user sees, checked for status and the words that say what to fix."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] is False
    assert set(body) == {"status", "message"}
    for fragment in fragments:
        assert fragment in body["message"], body["message"]
    message: str = body["message"]
    return message


async def store_point(database_url: str, device_id: str) -> None:
    """A data point in the device's bucket, written as storage writes it."""
    engine = create_engine(database_url)
    try:
        async with session_factory(engine)() as session:
            session.add(
                DataPoint(
                    id=new_id(),
                    device_id=device_id,
                    variable="t",
                    value_type="number",
                    value_number=1.0,
                    time=datetime.now(UTC),
                )
            )
            await session.commit()
    finally:
        await engine.dispose()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def account(stack: Stack) -> dict[str, str]:
    return stack.create_account(unique("mgmt"), plan="scale")


def test_accounts_and_account_tokens(stack: Stack) -> None:
    with stack.client() as anon, stack.client("not-the-admin") as wrong:
        refused(anon.post("/account", json={"name": "x"}), 401, "admin token", "Authorization")
        refused(wrong.post("/account", json={"name": "x"}), 401, "Invalid admin token")
    with stack.client(stack.admin_token) as admin:
        refused(admin.post("/account", json={"name": "x", "plan": "gold"}), 400, "free", "scale")
        refused(admin.post("/account", json={"plan": "free"}), 422, "name", "required")
        created = ok(admin.post("/account", json={"name": "acme", "plan": "starter"}), 201)
        account_id, token = created["id"], created["token"]
        assert ok(admin.get(f"/account/{account_id}"))["plan"] == "starter"
        assert account_id in [a["id"] for a in ok(admin.get("/account", params={"amount": 10000}))]
        refused(admin.get("/account/000000000000000000000000"), 404, "not found")

        with stack.client(token) as own:
            info = ok(own.get("/account/info"))
            assert (info["id"], info["name"], info["active"]) == (account_id, "acme", True)
            refused(own.get("/account"), 401, "Invalid admin token")  # not an admin
            second = ok(own.post("/account/token", json={"name": "ci"}), 201)
            assert second["expire_time"] == "never"
            refused(own.post("/account/token", json={"expire_time": "2001-01-01"}), 400, "past")
            refused(own.post("/account/token", json={"expire_time": "soon"}), 400, "3 hours")
            listing = own.get("/account/token")
            tokens = ok(listing)
            assert sorted(t["name"] for t in tokens) == ["ci", "default"]
            assert token not in listing.text
            assert second["token"] not in listing.text
            assert all(set(t) >= {"id", "last_authorization", "expire_time"} for t in tokens)
            ci_id = next(t["id"] for t in tokens if t["name"] == "ci")
            ok(own.delete(f"/account/token/{ci_id}"))
            refused(own.delete(f"/account/token/{ci_id}"), 404, "token itself or its id")
        with stack.client(second["token"]) as revoked:
            refused(revoked.get("/account/info"), 401, "Invalid account token")

        disabled = ok(admin.put(f"/account/{account_id}", json={"active": False}))
        assert disabled["active"] is False
        with stack.client(token) as own:
            refused(own.get("/account/info"), 403, "disabled")
        refused(admin.put(f"/account/{account_id}", json={"plan": "gold"}), 400, "Unknown plan")
        ok(admin.put(f"/account/{account_id}", json={"active": True, "plan": "scale"}))
        rescue = ok(admin.post(f"/account/{account_id}/token", json={"name": "rescue"}), 201)
        with stack.client(rescue["token"]) as own:
            assert ok(own.get("/account/info"))["plan"] == "scale"
            device = ok(own.post("/device", json={"name": "doomed"}), 201)

        ok(admin.delete(f"/account/{account_id}"))
        refused(admin.get(f"/account/{account_id}"), 404)
        with stack.client(token) as own:
            refused(own.get("/account/info"), 401)
        with stack.client(device["token"]) as dev:
            refused(dev.get("/info"), 401, "Invalid device token")


def test_plans_are_managed_by_the_admin(stack: Stack) -> None:
    name = unique("gold")
    with stack.client(stack.admin_token) as admin:
        plans = {p["name"]: p for p in ok(admin.get("/plan"))}
        assert {"free", "starter", "scale"} <= set(plans)
        assert plans["free"]["builtin"] is True
        assert plans["free"]["limits"]["max_packet_size"] == 256 * 1024

        gold = ok(
            admin.post(
                "/plan",
                json={"name": name, "based_on": "starter", "limits": {"mqtt_publish_per_min": 9}},
            ),
            201,
        )
        assert gold["limits"]["mqtt_publish_per_min"] == 9
        assert gold["limits"]["max_connections"] == plans["starter"]["limits"]["max_connections"]
        assert (gold["builtin"], gold["accounts"]) == (False, 0)
        refused(admin.post("/plan", json={"name": name}), 409, "already exists")
        refused(admin.post("/plan", json={"name": "Gold Plan"}), 400, "lower-case")
        refused(admin.post("/plan", json={"name": unique("p"), "based_on": "x"}), 400, "based_on")
        refused(
            admin.post("/plan", json={"name": unique("p"), "limits": {"publishes": 5}}),
            400,
            "Unknown limit 'publishes'",
            "mqtt_publish_per_min",
        )
        refused(
            admin.put(f"/plan/{name}", json={"limits": {"max_connections": -1}}),
            400,
            "max_connections",
            "≥ 0",
        )
        refused(admin.put(f"/plan/{name}", json={"limits": {"max_connections": "many"}}), 400)
        refused(admin.put("/plan/no-such-plan", json={"limits": {}}), 404, "no-such-plan")
        edited = ok(admin.put(f"/plan/{name}", json={"limits": {"max_connections": 3}}))
        assert edited["limits"]["max_connections"] == 3
        assert edited["limits"]["mqtt_publish_per_min"] == 9  # untouched limits stay
        assert ok(admin.get(f"/plan/{name}"))["limits"]["max_connections"] == 3

        account = ok(admin.post("/account", json={"name": "on-gold", "plan": name}), 201)
        assert ok(admin.get(f"/plan/{name}"))["accounts"] == 1
        refused(admin.delete(f"/plan/{name}"), 409, "used by 1 account", "another plan")
        refused(admin.delete("/plan/free"), 409, "built in")
        ok(admin.put(f"/account/{account['id']}", json={"plan": "free"}))
        ok(admin.delete(f"/plan/{name}"))
        refused(admin.get(f"/plan/{name}"), 404)
    with stack.client(account["token"]) as own:
        refused(own.get("/plan"), 401, "Invalid admin token")


def test_device_lifecycle_and_bucket_rules(stack: Stack, account: dict[str, str]) -> None:
    with stack.client(account["token"]) as http:
        created = ok(
            http.post("/device", json={"name": "Boiler", "tags": [{"key": "site", "value": "a"}]}),
            201,
        )
        device_id = created["device_id"]
        assert created["bucket_id"] == device_id
        assert created["token"]
        device = ok(http.get(f"/device/{device_id}"))
        assert (device["type"], device["chunk_period"], device["chunk_retention"]) == (
            "immutable",
            "month",
            12,
        )
        assert device["active"] is True
        assert device["topic_acl"] == []

        refused(
            http.post("/device", json={"name": "x", "chunk_period": "day", "chunk_retention": 40}),
            400,
            "between 0 and 31",
        )
        refused(
            http.post("/device", json={"name": "x", "type": "mutable", "chunk_period": "day"}),
            400,
            "immutable devices only",
        )
        refused(http.post("/device", json={"name": "x", "type": "fluid"}), 422, "type")
        refused(http.post("/device", json={"type": "mutable"}), 422, "name")
        refused(
            http.post("/device", content=b"{no", headers={"content-type": "application/json"}),
            422,
            "JSON",
        )
        refused(
            http.post("/device", json={"name": "x", "payload_parser": "x" * (65 * 1024)}),
            413,
            "64 kB",
        )
        refused(
            http.post("/device", json={"name": "x", "payload_parser": "x" * (1100 * 1024)}),
            413,
            "larger than",
        )

        edited = ok(
            http.put(
                f"/device/{device_id}",
                json={"name": "Boiler 2", "tags": [], "chunk_retention": 3},
            )
        )
        assert (edited["name"], edited["tags"], edited["chunk_retention"]) == ("Boiler 2", [], 3)
        refused(http.put(f"/device/{device_id}", json={"chunk_period": "day"}), 400, "fixed after")
        refused(http.put(f"/device/{device_id}", json={"chunk_retention": 99}), 400, "0 and 36")
        refused(
            http.put(f"/device/{device_id}", json={"type": "mutable"}),
            409,
            "deactivate it (active: false)",
        )
        parser = "payload = payload.map(p => ({...p, unit: 'C'}));"
        encoded = base64.b64encode(parser.encode()).decode()
        assert (
            ok(http.put(f"/device/{device_id}", json={"payload_parser": encoded}))["payload_parser"]
            == parser
        )  # TagoIO sends base64
        assert (
            ok(http.put(f"/device/{device_id}", json={"payload_parser": None}))["payload_parser"]
            is None
        )

        mutable = ok(http.put(f"/device/{device_id}", json={"type": "mutable", "active": False}))
        assert (mutable["type"], mutable["chunk_period"], mutable["active"]) == (
            "mutable",
            None,
            False,
        )
        refused(
            http.put(f"/device/{device_id}", json={"chunk_retention": 2}),
            400,
            "immutable devices only",
        )
        back = ok(
            http.put(
                f"/device/{device_id}",
                json={"type": "immutable", "chunk_period": "week", "chunk_retention": 4},
            )
        )
        assert (back["type"], back["chunk_period"], back["chunk_retention"]) == (
            "immutable",
            "week",
            4,
        )

        ok(http.delete(f"/device/{device_id}"))
        refused(http.get(f"/device/{device_id}"), 404, f"Device {device_id} not found")
        refused(http.put(f"/device/{device_id}", json={"name": "x"}), 404)
        refused(http.delete(f"/device/{device_id}"), 404)


def test_type_change_needs_an_empty_bucket(stack: Stack, account: dict[str, str]) -> None:
    with stack.client(account["token"]) as http:
        created = ok(http.post("/device", json={"name": "with data", "type": "mutable"}), 201)
        device_id = created["device_id"]
    asyncio.run(store_point(stack.database_url, device_id))
    with stack.client(account["token"]) as http:
        assert ok(http.get(f"/device/{device_id}/data_amount")) == 1
        message = refused(
            http.put(f"/device/{device_id}", json={"type": "immutable", "active": False}),
            409,
            "empty its bucket (it holds 1 data points)",
        )
        assert "deactivate" not in message
        assert ok(http.get(f"/device/{device_id}"))["active"] is True  # nothing was applied


def test_device_list_filters_and_pages(stack: Stack, account: dict[str, str]) -> None:
    with stack.client(account["token"]) as http:
        names = ["pump-1", "pump-2", "Pump_3", "valve-1", "valve-2"]
        ids = {}
        for n, name in enumerate(names):
            tags = [{"key": "site", "value": "north" if n % 2 else "south"}]
            ids[name] = ok(http.post("/device", json={"name": name, "tags": tags}), 201)[
                "device_id"
            ]

        def listed(**params: Any) -> list[str]:
            return [d["name"] for d in ok(http.get("/device", params=params))]

        assert listed() == names
        assert listed(name="pump") == ["pump-1", "pump-2", "Pump_3"]  # case-insensitive part
        assert listed(name="p_1") == []  # '_' is a character, not a SQL wildcard
        assert listed(**{"filter[name]": "valve*"}) == ["valve-1", "valve-2"]
        assert listed(**{"filter[name]": "valve"}) == []  # TagoIO: exact unless '*'
        assert listed(tag_key="site", tag_value="north") == ["pump-2", "valve-1"]
        assert listed(**{"filter[tags][0][key]": "site", "filter[tags][0][value]": "south"}) == [
            "pump-1",
            "Pump_3",
            "valve-2",
        ]
        assert listed(amount=2) == names[:2]
        assert listed(amount=2, page=3) == names[4:]
        assert listed(tag_value="south", amount=2, page=2) == ["valve-2"]
        refused(http.get("/device", params={"page": 0}), 422, "page")
        # Found by the API fuzzer: a page past any offset the database can hold was a 500.
        refused(http.get("/device", params={"page": 10**20}), 422, "page")
        tokens = http.get(f"/device/token/{ids['pump-1']}", params={"page": 10**20})
        refused(tokens, 422, "page")
    other = stack.create_account(unique("other"))
    with stack.client(other["token"]) as stranger:
        assert ok(stranger.get("/device")) == []
        refused(stranger.get(f"/device/{ids['pump-1']}"), 404)
        refused(stranger.put(f"/device/{ids['pump-1']}", json={"active": False}), 404)
        refused(stranger.delete(f"/device/{ids['pump-1']}"), 404)


def test_topic_acl_is_validated_and_stored(stack: Stack, account: dict[str, str]) -> None:
    rules = [
        {"action": "allow", "access": "publish", "topic": "devices/{device}/#"},
        {"action": "deny", "access": "subscribe", "topic": "admin/#"},
        {"topic": "+/status"},
    ]
    with stack.client(account["token"]) as http:
        created = ok(http.post("/device", json={"name": "acl", "topic_acl": rules}), 201)
        device_id = created["device_id"]
        stored = ok(http.get(f"/device/{device_id}"))["topic_acl"]
        assert stored[:2] == rules[:2]
        assert stored[2] == {"action": "allow", "access": "all", "topic": "+/status"}
        refused(
            http.put(f"/device/{device_id}", json={"topic_acl": [{"topic": "a/#/b"}]}),
            400,
            "topic_acl[0].topic",
            "last level",
        )
        refused(
            http.put(f"/device/{device_id}", json={"topic_acl": [{"topic": "x/{id}"}]}),
            400,
            "only placeholder is {device}",
        )
        refused(
            http.put(f"/device/{device_id}", json={"topic_acl": [{"topic": "a", "access": "r"}]}),
            422,
            "access",
        )
        assert ok(http.put(f"/device/{device_id}", json={"topic_acl": []}))["topic_acl"] == []


def test_device_params(stack: Stack, account: dict[str, str]) -> None:
    with stack.client(account["token"]) as http:
        device_id = ok(http.post("/device", json={"name": "params"}), 201)["device_id"]
        created = ok(
            http.post(
                f"/device/{device_id}/params",
                json=[{"key": "interval", "value": "60"}, {"key": "mode", "value": "eco"}],
            )
        )
        assert [(p["key"], p["value"], p["sent"]) for p in created] == [
            ("interval", "60", False),
            ("mode", "eco", False),
        ]
        interval = created[0]["id"]
        single = ok(http.post(f"/device/{device_id}/params", json={"key": "led", "sent": True}))
        assert len(single) == 3
        edited = ok(
            http.post(
                f"/device/{device_id}/params",
                json=[{"id": interval, "key": "interval", "value": "30", "sent": True}],
            )
        )
        assert {p["key"]: p["value"] for p in edited}["interval"] == "30"
        sent = ok(http.get(f"/device/{device_id}/params", params={"sent_status": "true"}))
        assert sorted(p["key"] for p in sent) == ["interval", "led"]
        mode = next(p["id"] for p in created if p["key"] == "mode")
        assert (
            ok(http.put(f"/device/{device_id}/params/{mode}", json={"value": "boost"}))["value"]
            == "boost"
        )
        ok(http.delete(f"/device/{device_id}/params/{mode}"))
        refused(http.delete(f"/device/{device_id}/params/{mode}"), 404, "Param")
        refused(http.put(f"/device/{device_id}/params/{mode}", json={"value": "x"}), 404)
        refused(
            http.post(f"/device/{device_id}/params", json=[{"id": mode, "key": "x"}]),
            404,
            f"Param {mode} not found",
        )
        refused(http.post(f"/device/{device_id}/params", json=[{"value": "x"}]), 422, "key")
        assert sorted(p["key"] for p in ok(http.get(f"/device/{device_id}/params"))) == [
            "interval",
            "led",
        ]
    other = stack.create_account(unique("other"))
    with stack.client(other["token"]) as stranger:
        refused(stranger.get(f"/device/{device_id}/params"), 404)


def test_device_tokens(stack: Stack, account: dict[str, str]) -> None:
    serial = unique("SN")
    with stack.client(account["token"]) as http:
        device_id = ok(http.post("/device", json={"name": "tokens"}), 201)["device_id"]
        created = ok(
            http.post(
                "/device/token",
                json={
                    "device": device_id,
                    "name": "reader",
                    "permission": "read",
                    "expire_time": "3 hours",
                    "serie_number": serial,
                },
            ),
            201,
        )
        assert created["permission"] == "read"
        assert created["expire_time"] != "never"
        refused(
            http.post("/device/token", json={"device": device_id, "serie_number": serial}),
            409,
            serial,
            "another serie_number",
        )
        refused(
            http.post("/device/token", json={"device": device_id, "expire_time": "2000-01-01"}),
            400,
            "in the past",
        )
        refused(
            http.post("/device/token", json={"device": device_id, "expire_time": "later"}),
            400,
            "'never', an ISO 8601 time",
        )
        refused(
            http.post("/device/token", json={"device": device_id, "permission": "admin"}),
            422,
            "permission",
        )
        refused(
            http.post("/device/token", json={"device": "000000000000000000000000"}),
            404,
            "not found",
        )
    with stack.client(created["token"]) as reader:
        assert ok(reader.get("/info"))["id"] == device_id
        refused(reader.post("/data", json={"variable": "x", "value": 1}), 403, "'read'")
    with stack.client(account["token"]) as http:
        listing = http.get(f"/device/token/{device_id}")
        tokens = ok(listing)
        assert created["token"] not in listing.text
        assert "token" not in tokens[0]
        reader_row = next(t for t in tokens if t["name"] == "reader")
        assert reader_row["serie_number"] == serial
        assert reader_row["last_authorization"] is not None
        assert next(t for t in tokens if t["name"] == "Default")["last_authorization"] is None
        ok(http.delete(f"/device/token/{reader_row['id']}"))
        refused(http.delete(f"/device/token/{reader_row['id']}"), 404, "Token not found")
    with stack.client(created["token"]) as reader:
        refused(reader.get("/info"), 401, "Invalid device token")
    other = stack.create_account(unique("other"))
    with stack.client(other["token"]) as stranger:
        refused(stranger.get(f"/device/token/{device_id}"), 404)
        default_id = tokens[0]["id"]
        refused(stranger.delete(f"/device/token/{default_id}"), 404)


def test_token_creation_is_rate_limited_by_plan(stack: Stack) -> None:
    plan = unique("tiny")
    with stack.client(stack.admin_token) as admin:
        ok(admin.post("/plan", json={"name": plan, "limits": {"device_token_per_min": 2}}), 201)
    account = stack.create_account(unique("limited"), plan=plan)
    device_id = stack.create_device(account["token"], name="limited")["device_id"]
    with stack.client(account["token"]) as http:
        window = int(time.time() // 60)
        created = 0
        for _ in range(5):  # five calls span at most two one-minute windows
            over = http.post("/device/token", json={"device": device_id})
            if over.status_code != 201:
                break
            created += 1
        same_window = window == int(time.time() // 60)
    refused(over, 429, "Too many requests (Retry-After: ")
    assert 1 <= int(over.headers["Retry-After"]) <= 60
    assert created == 2 if same_window else 2 <= created <= 4


def test_errors_outside_routes_use_the_envelope(stack: Stack, account: dict[str, str]) -> None:
    with stack.client(account["token"]) as http:
        refused(http.get("/no/such/route"), 404, "Route not found: GET /no/such/route")
        refused(http.patch("/device"), 405, "Method PATCH is not allowed on /device")
        refused(
            http.post(
                "/account/token",
                content=b"x" * (2 * 1024 * 1024),
                headers={"content-type": "application/json"},
            ),
            413,
            "larger than 1024 kB",
        )
    # Any of the token spellings works, the query string too.
    for headers, params in (
        ({"account-token": account["token"]}, {}),
        ({"token": account["token"]}, {}),
        ({"Authorization": account["token"]}, {}),
        ({}, {"token": account["token"]}),
    ):
        response = httpx.get(f"{stack.api_url}/account/info", headers=headers, params=params)
        assert ok(response)["plan"] == "scale"


MY_TAGS = {
    "accounts",
    "plans",
    "devices",
    "device params",
    "device tokens",
    "live inspector",
    "health",
}


def _has_example(media: dict[str, Any], schemas: dict[str, Any]) -> bool:
    if "example" in media or "examples" in media:
        return True
    schema = media.get("schema", {})
    if "$ref" in schema:
        schema = schemas[schema["$ref"].rsplit("/", 1)[1]]
    return "example" in schema or "examples" in schema


def test_openapi_documents_every_management_route_with_examples(stack: Stack) -> None:
    assert httpx.get(f"{stack.api_url}/docs").status_code == 200
    spec = httpx.get(f"{stack.api_url}/openapi.json").json()
    schemas = spec["components"]["schemas"]
    checked = 0
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            if (
                not MY_TAGS & set(op.get("tags", ()))
                or path.startswith("/account/smtp")  # another module's, under "accounts"
            ):
                continue
            checked += 1
            where = f"{method.upper()} {path}"
            success = [r for code, r in op["responses"].items() if code.startswith("2")]
            assert success, where
            assert all(
                any(_has_example(m, schemas) for m in r.get("content", {}).values())
                for r in success
            ), f"{where}: no response example"
            if "requestBody" in op:
                media = op["requestBody"]["content"].values()
                assert any(_has_example(m, schemas) for m in media), f"{where}: no body example"
            errors = {code for code in op["responses"] if code.startswith("4")}
            assert {"401", "404", "422"} <= errors or op.get("tags") == ["health"], where
    assert checked >= 25
