"""The payload-parser playground on the live stack: POST /parser/run and
POST /device/{id}/parser/run give what Node gives for TagoIO-style decoders, store nothing,
and report parser failures as a result, not as an HTTP error."""

from __future__ import annotations

import base64
import importlib.util
import json
import threading
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from sluice.testing.stack import Stack

DECODERS_FILE = Path(__file__).resolve().parents[3] / "parser/tests/unit/test_sandbox_decoders.py"


def _decoder_cases() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sluice_decoder_cases", DECODERS_FILE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


DECODERS = _decoder_cases()
CASES: dict[str, tuple[str, list[Any], dict[str, Any], str | None]] = DECODERS.CASES


@pytest.fixture(scope="module")
def node() -> dict[str, Any]:
    return DECODERS.run_in_node(CASES)


@pytest.fixture(scope="module")
def account(sqlite_stack: Stack) -> dict[str, Any]:
    return sqlite_stack.create_account(f"playground-{uuid.uuid4().hex[:6]}")


def create_device(stack: Stack, account: dict[str, Any], **fields: Any) -> str:
    params = fields.pop("params", [])
    device_id: str = stack.create_device(account["token"], name="dev", **fields)["device_id"]
    if params:
        with stack.client(account["token"]) as http:
            http.post(f"/device/{device_id}/params", json=params).raise_for_status()
    return device_id


@pytest.fixture(scope="module")
def devices(sqlite_stack: Stack, account: dict[str, Any]) -> dict[str, str]:
    """One device shaped like each device of the decoder cases (same tags and params)."""
    made = {}
    for case in {id(c[2]): c[2] for c in CASES.values()}.values():
        made[json.dumps(case, sort_keys=True)] = create_device(
            sqlite_stack,
            account,
            tags=case["tags"],
            params=[{k: p[k] for k in ("key", "value", "sent")} for p in case["params"]],
        )
    return made


def run(stack: Stack, token: str, path: str, body: dict[str, Any]) -> Any:
    with stack.client(token) as http:
        response = http.post(path, json=body)
    assert response.status_code == 200, response.text
    return response.json()["result"]


def message(code: str, payload: list[Any], raw: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code}
    if raw is None:
        body["payload"] = payload
    else:
        body.update(raw=raw, encoding="hex")
    return body


def assert_like_node(result: dict[str, Any], expected: dict[str, Any], name: str) -> None:
    if expected["error"] is None:
        assert result["error"] is None, result["error"]
        assert result["payload"] == expected["payload"]
    else:
        # V8 and QuickJS word engine errors differently; the type must agree.
        assert result["error"] is not None
        assert result["error"].split(":")[0] == expected["error"].split(":")[0]
    if name != "lorawan environment, short frame":  # console.error(e) prints the stack in Node
        assert result["console"] == expected["console"]
    assert result["duration_ms"] >= 0


@pytest.mark.parametrize("name", list(CASES), ids=str)
def test_playground_matches_node(
    sqlite_stack: Stack, account: dict[str, Any], node: dict[str, Any], name: str
) -> None:
    code, payload, device, raw = CASES[name]
    body = {**message(code, payload, raw), "device": device}
    assert_like_node(run(sqlite_stack, account["token"], "/parser/run", body), node[name], name)


@pytest.mark.parametrize("name", list(CASES), ids=str)
def test_device_playground_matches_node_with_the_devices_tags_and_params(
    sqlite_stack: Stack,
    account: dict[str, Any],
    devices: dict[str, str],
    node: dict[str, Any],
    name: str,
) -> None:
    code, payload, device, raw = CASES[name]
    device_id = devices[json.dumps(device, sort_keys=True)]
    result = run(
        sqlite_stack,
        account["token"],
        f"/device/{device_id}/parser/run",
        message(code, payload, raw),
    )
    assert_like_node(result, node[name], name)


def test_device_playground_shows_what_would_be_stored(
    sqlite_stack: Stack, account: dict[str, Any]
) -> None:
    saved = """
    const frame = Buffer.from(payload[0].value, "hex");
    console.log("model", device.params[0].value, "site", device.tags[0].value);
    payload = [{ variable: "temperature", value: frame.readInt16BE(0) / 100, unit: "C",
                 metadata: payload[0].metadata }];
    """
    device_id = create_device(
        sqlite_stack,
        account,
        payload_parser=saved,
        tags=[{"key": "site", "value": "dock"}],
        params=[{"key": "model", "value": "t-1"}, {"key": "payload_type", "value": "hex"}],
    )
    path = f"/device/{device_id}/parser/run"
    # The device's saved parser, on a raw MQTT message normalised for its topic: "0960" is
    # ASCII text, the device's payload_type=hex param makes it hex.
    result = run(
        sqlite_stack, account["token"], path, {"raw": "0960", "encoding": "text", "topic": "up/t"}
    )
    assert result["input"] == [
        {
            "variable": "payload",
            "value": "30393630",
            "metadata": {"mqtt_topic": "up/t", "topic": "up/t"},
        }
    ]
    assert result["error"] is None
    assert result["console"] == ["log: model t-1 site dock"]
    result = run(sqlite_stack, account["token"], path, {"raw": "CWA=", "encoding": "base64"})
    assert result["payload"][0]["value"] == 24
    [stored] = result["stored"]
    assert {k: stored[k] for k in ("variable", "value", "unit", "metadata")} == {
        "variable": "temperature",
        "value": 24,
        "unit": "C",
        "metadata": {"mqtt_topic": "data", "topic": "data"},
    }
    assert stored["time"].endswith("Z")
    assert stored["group"]
    assert result["validation"] is None

    # Trying another parser: the output would be refused, and the result says why.
    bad = run(
        sqlite_stack,
        account["token"],
        path,
        {"code": "payload = [{ variable: 'no spaces allowed', value: 1 }];", "payload": []},
    )
    assert bad["error"] is None
    assert bad["payload"] == [{"variable": "no spaces allowed", "value": 1}]
    assert bad["stored"] is None
    assert bad["validation"].startswith("item 0: ")

    with sqlite_stack.client(account["token"]) as http:
        assert http.get(f"/device/{device_id}/data_amount").json()["result"] == 0  # none stored
    other = sqlite_stack.create_account("someone-else")
    with sqlite_stack.client(other["token"]) as http:
        assert http.post(path, json={"payload": []}).status_code == 404


def test_output_keeps_what_the_script_produced(
    sqlite_stack: Stack, account: dict[str, Any]
) -> None:
    code = "payload = [{ z: 1, a: 2.5, gone: undefined, big: 2n ** 64n, whole: 3.0, neg: -0 }];"
    with sqlite_stack.client(account["token"]) as http:
        response = http.post("/parser/run", json={"code": code})
    assert '[{"z":1,"a":2.5,"big":"18446744073709551616","whole":3,"neg":0}]' in response.text
    [item] = response.json()["result"]["payload"]
    assert list(item) == ["z", "a", "big", "whole", "neg"]
    assert [type(v) for v in item.values()] == [int, float, str, int, int]


def test_integers_past_64_bits_reach_the_script_as_numbers(
    sqlite_stack: Stack, account: dict[str, Any]
) -> None:
    # Found by the API fuzzer: this was a 500. JavaScript reads every number as a double.
    result = run(
        sqlite_stack,
        account["token"],
        "/parser/run",
        {
            "code": "payload = [{ t: typeof payload[0].value, v: payload[0].value }];",
            "payload": [{"variable": "x", "value": 2**70}],
        },
    )
    assert result["error"] is None
    assert result["payload"] == [{"t": "number", "v": 2.0**70}]


def test_errors_are_results_with_their_line(sqlite_stack: Stack, account: dict[str, Any]) -> None:
    result = run(
        sqlite_stack,
        account["token"],
        "/parser/run",
        {"code": "console.log('start');\nconst x = payload[0].value.length;", "payload": []},
    )
    assert result["error"].startswith("TypeError: ")
    assert result["error"].endswith("(line 2)")
    assert result["console"] == ["log: start"]
    assert result["payload"] is None
    syntax = run(sqlite_stack, account["token"], "/parser/run", {"code": "payload = ;"})
    assert syntax["error"].startswith("SyntaxError")


def test_a_spinning_parser_answers_with_a_timeout_and_blocks_no_one(
    sqlite_stack: Stack, account: dict[str, Any]
) -> None:
    slow: dict[str, Any] = {}

    def spin() -> None:
        slow["result"] = run(sqlite_stack, account["token"], "/parser/run", {"code": "for (;;) {}"})

    thread = threading.Thread(target=spin)
    thread.start()
    answered_meanwhile = 0
    while thread.is_alive():
        quick = run(sqlite_stack, account["token"], "/parser/run", {"code": "payload = 7;"})
        assert quick["payload"] == 7
        if thread.is_alive():
            answered_meanwhile += 1
    thread.join()
    assert slow["result"]["error"] == "timeout: parser exceeded 1.0 s CPU time"
    assert answered_meanwhile >= 1


def test_code_formats_and_limits(sqlite_stack: Stack, account: dict[str, Any]) -> None:
    code = "payload = payload.map((x) => ({ ...x, value: x.value * 2 }));"
    as_base64 = base64.b64encode(code.encode()).decode()
    result = run(
        sqlite_stack,
        account["token"],
        "/parser/run",
        {"code": as_base64, "payload": {"variable": "n", "value": 21}},
    )
    assert result["payload"] == [{"variable": "n", "value": 42}]
    lpp = run(
        sqlite_stack,
        account["token"],
        "/parser/run",
        {
            "code": "@sluice/cayenne-lpp",
            "raw": "03670110",  # ASCII bytes: hex only because the device says so
            "encoding": "hex",
            "device": {"params": [{"key": "payload_type", "value": "hex"}]},
        },
    )
    assert lpp["payload"] == [{"variable": "temperature_3", "value": 27.2, "unit": "°C"}]

    with sqlite_stack.client(account["token"]) as http:
        too_large = http.post("/parser/run", json={"code": "//" + "x" * 64 * 1024})
        unknown = http.post("/parser/run", json={"code": "@sluice/lorawan"})
        no_code = http.post("/parser/run", json={"payload": []})
        both = http.post("/parser/run", json={"code": "1", "payload": [], "raw": "x"})
        bad_hex = http.post("/parser/run", json={"code": "1", "raw": "zz", "encoding": "hex"})
        no_token = http.post("/parser/run", json={"code": "1"}, headers={"Authorization": ""})
    assert too_large.status_code == 413
    assert too_large.json() == {"status": False, "message": "code is larger than 64 kB"}
    assert unknown.status_code == 400
    assert "choose one of @sluice/json-flatten" in unknown.json()["message"]
    assert no_code.status_code == 422
    assert both.status_code == 422
    assert "not both" in both.json()["message"]
    assert bad_hex.status_code == 400
    assert no_token.status_code == 401
