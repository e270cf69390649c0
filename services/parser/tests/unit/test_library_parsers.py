"""The built-in parsers json-flatten, senml and cayenne-lpp, against outputs worked out from
the formats' specifications."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from sluice_parser.sandbox import BUILTIN_PARSERS, ParserSandbox, builtin_parser


@pytest.fixture(scope="module")
def sandbox() -> Iterator[ParserSandbox]:
    with ParserSandbox() as box:
        yield box


def parse(sandbox: ParserSandbox, name: str, payload: list[Any]) -> Any:
    run = sandbox.run(builtin_parser(name), payload)
    assert run.error is None, run.error
    return run.payload


def test_library_lists_its_parsers_and_rejects_unknown_names() -> None:
    assert BUILTIN_PARSERS == ("json-flatten", "senml", "cayenne-lpp")
    for name in BUILTIN_PARSERS:
        assert "payload =" in builtin_parser(name)
    with pytest.raises(KeyError, match="json-flatten, senml, cayenne-lpp"):
        builtin_parser("lora")


# --------------------------------------------------------------------------- json-flatten


def test_json_text_in_an_item_is_flattened(sandbox: ParserSandbox) -> None:
    payload = [
        {
            "variable": "payload",
            "value": '{"a":{"b":1},"c":[1,2]}',
            "group": "g1",
            "time": "2024-01-01T00:00:00Z",
        }
    ]
    extra = {"group": "g1", "time": "2024-01-01T00:00:00Z"}
    assert parse(sandbox, "json-flatten", payload) == [
        {"variable": "a_b", "value": 1, **extra},
        {"variable": "c_0", "value": 1, **extra},
        {"variable": "c_1", "value": 2, **extra},
    ]


def test_json_object_message_is_flattened_keeping_metadata(sandbox: ParserSandbox) -> None:
    # What SPEC §3 normalisation makes of the MQTT message {"a":{"b":1},"c":[1,2]}
    payload = [{"a": {"b": 1}, "c": [1, 2], "metadata": {"mqtt_topic": "plant/line1"}}]
    meta = {"metadata": {"mqtt_topic": "plant/line1"}}
    assert parse(sandbox, "json-flatten", payload) == [
        {"variable": "a_b", "value": 1, **meta},
        {"variable": "c_0", "value": 1, **meta},
        {"variable": "c_1", "value": 2, **meta},
    ]


def test_flatten_names_values_and_pass_through(sandbox: ParserSandbox) -> None:
    payload = [
        {
            "variable": "payload",
            "value": '{"Temp.C": 21.5, "a b": {"X-Y": true, "none": null}, "label": "ok", "e": {}}',
        },
        {"variable": "list", "value": "[10, [20]]"},
        {"variable": "rssi", "value": -80},
        {"variable": "note", "value": "{not json"},
        {"variable": "parsed", "value": {"k": "v"}},
    ]
    assert parse(sandbox, "json-flatten", payload) == [
        {"variable": "temp_c", "value": 21.5},
        {"variable": "a_b_x_y", "value": True},
        {"variable": "label", "value": "ok"},
        {"variable": "list_0", "value": 10},
        {"variable": "list_1_0", "value": 20},
        {"variable": "rssi", "value": -80},
        {"variable": "note", "value": "{not json"},
        {"variable": "k", "value": "v"},
    ]


# ---------------------------------------------------------------------------------- senml


def senml(records: list[dict[str, Any]], **item: Any) -> list[dict[str, Any]]:
    return [{"variable": "payload", "value": json.dumps(records), **item}]


def test_senml_single_datapoint(sandbox: ParserSandbox) -> None:
    # RFC 8428 §5.1.1
    records = [{"n": "urn:dev:ow:10e2073a01080063", "u": "Cel", "v": 23.1}]
    assert parse(sandbox, "senml", senml(records)) == [
        {"variable": "urn:dev:ow:10e2073a01080063", "value": 23.1, "unit": "Cel"}
    ]


def test_senml_base_name_and_unit(sandbox: ParserSandbox) -> None:
    # RFC 8428 §5.1.2, plus a base unit the second record inherits
    records = [
        {"bn": "urn:dev:ow:10e2073a01080063:", "bu": "A", "n": "voltage", "u": "V", "v": 120.1},
        {"n": "current", "v": 1.2},
    ]
    assert parse(sandbox, "senml", senml(records)) == [
        {"variable": "urn:dev:ow:10e2073a01080063:voltage", "value": 120.1, "unit": "V"},
        {"variable": "urn:dev:ow:10e2073a01080063:current", "value": 1.2, "unit": "A"},
    ]


def test_senml_base_time_and_relative_times(sandbox: ParserSandbox) -> None:
    # RFC 8428 §5.1.3: bt = 1.276020076001e+09 s is 2010-06-08T18:01:16.001Z
    records = [
        {
            "bn": "urn:dev:ow:10e2073a0108006:",
            "bt": 1.276020076001e09,
            "bu": "A",
            "bver": 5,
            "n": "voltage",
            "u": "V",
            "v": 120.1,
        },
        {"n": "current", "t": -5, "v": 1.2},
        {"n": "current", "t": -4, "v": 1.3},
        {"n": "current", "t": 0, "v": 1.7},
    ]
    name = "urn:dev:ow:10e2073a0108006:"
    assert parse(sandbox, "senml", senml(records)) == [
        {
            "variable": name + "voltage",
            "value": 120.1,
            "time": "2010-06-08T18:01:16.001Z",
            "unit": "V",
        },
        {
            "variable": name + "current",
            "value": 1.2,
            "time": "2010-06-08T18:01:11.001Z",
            "unit": "A",
        },
        {
            "variable": name + "current",
            "value": 1.3,
            "time": "2010-06-08T18:01:12.001Z",
            "unit": "A",
        },
        {
            "variable": name + "current",
            "value": 1.7,
            "time": "2010-06-08T18:01:16.001Z",
            "unit": "A",
        },
    ]


def test_senml_time_below_2_pow_28_is_relative_to_now(sandbox: ParserSandbox) -> None:
    before = time.time()
    (item,) = parse(sandbox, "senml", senml([{"n": "t", "t": -60, "v": 1}]))
    stamp = datetime.fromisoformat(item["time"].replace("Z", "+00:00")).timestamp()
    assert before - 61 <= stamp <= time.time() - 59


def test_senml_base_value_sum_and_other_value_kinds(sandbox: ParserSandbox) -> None:
    records = [
        {"bn": "meter/", "bv": 1000, "bs": 50},  # base fields only: no item
        {"n": "energy", "v": 5, "s": 2, "u": "kWh"},
        {"n": "state", "vs": "on"},
        {"n": "open", "vb": False},
        {"n": "blob", "vd": "aGk"},
        {"n": "sensor.temp-1", "v": -4},
    ]
    assert parse(sandbox, "senml", senml(records, group="g")) == [
        {"variable": "meter/energy", "value": 1005, "unit": "kWh", "group": "g"},
        {"variable": "meter/energy_sum", "value": 52, "unit": "kWh", "group": "g"},
        {"variable": "meter/state", "value": "on", "group": "g"},
        {"variable": "meter/open", "value": False, "group": "g"},
        {"variable": "meter/blob", "value": "aGk", "group": "g"},
        {
            "variable": "meter/sensor_temp_1",
            "value": 996,
            "group": "g",
            "metadata": {"senml_name": "meter/sensor.temp-1"},
        },
    ]


def test_senml_records_published_directly(sandbox: ParserSandbox) -> None:
    # A JSON array message: normalisation gives one item per record, each with the topic.
    meta = {"mqtt_topic": "senml/dev1"}
    payload = [
        {"bn": "dev1/", "bt": 1700000000, "n": "temp", "u": "Cel", "v": 20.5, "metadata": meta},
        {"n": "hum", "u": "%RH", "t": 10, "v": 40, "metadata": meta},
    ]
    assert parse(sandbox, "senml", payload) == [
        {
            "variable": "dev1/temp",
            "value": 20.5,
            "time": "2023-11-14T22:13:20.000Z",
            "unit": "Cel",
            "metadata": meta,
        },
        {
            "variable": "dev1/hum",
            "value": 40,
            "time": "2023-11-14T22:13:30.000Z",
            "unit": "%RH",
            "metadata": meta,
        },
    ]


def test_senml_bad_packs(sandbox: ParserSandbox) -> None:
    assert parse(sandbox, "senml", senml([{"n": "x", "v": "12"}])) == [
        {"variable": "parse_error", "value": 'SenML: SenML field "v" must be a number, got "12"'}
    ]
    assert parse(sandbox, "senml", senml([{"u": "V", "v": 1}])) == [
        {"variable": "parse_error", "value": "SenML: a SenML record has no name (neither bn nor n)"}
    ]
    other = [{"variable": "payload", "value": "[1, 2]"}, {"variable": "rssi", "value": -70}]
    assert parse(sandbox, "senml", other) == other


# ---------------------------------------------------------------------------- cayenne-lpp


def lpp(frame: str, **item: Any) -> list[dict[str, Any]]:
    return [{"variable": "payload", "value": frame.replace(" ", ""), **item}]


def test_lpp_two_temperatures(sandbox: ParserSandbox) -> None:
    # The LPP documentation's example: channel 3 = 27.2 °C, channel 5 = 25.5 °C
    assert parse(sandbox, "cayenne-lpp", lpp("03 67 01 10 05 67 00 FF")) == [
        {"variable": "temperature_3", "value": 27.2, "unit": "°C"},
        {"variable": "temperature_5", "value": 25.5, "unit": "°C"},
    ]


def test_lpp_every_standard_type(sandbox: ParserSandbox) -> None:
    frame = (
        "00 00 01"  # ch0 digital input 1
        "01 01 00"  # ch1 digital output 0
        "02 02 FF 38"  # ch2 analog input -200 * 0.01
        "03 03 04 D2"  # ch3 analog output 1234 * 0.01
        "04 65 01 2C"  # ch4 illuminance 300 lux
        "05 66 01"  # ch5 presence 1
        "06 67 FF D7"  # ch6 temperature -41 * 0.1
        "07 68 61"  # ch7 humidity 97 * 0.5
        "08 71 04 D2 FB 2E 00 00"  # ch8 accelerometer 1.234, -1.234, 0 G
        "09 73 27 8D"  # ch9 barometer 10125 * 0.1
        "0A 86 00 64 FF 9C 27 10"  # ch10 gyrometer 1.00, -1.00, 100.00 °/s
        "0B 88 06 76 5F F2 96 0A 00 03 E8"  # ch11 GPS 42.3519, -87.9094, 10.00 m
    )
    extra = {"group": "up-1", "time": "2024-02-02T02:02:02Z"}
    points = [
        ("digital_input_0", 1, None),
        ("digital_output_1", 0, None),
        ("analog_input_2", -2, None),
        ("analog_output_3", 12.34, None),
        ("illuminance_4", 300, "lux"),
        ("presence_5", 1, None),
        ("temperature_6", -4.1, "°C"),
        ("humidity_7", 48.5, "%"),
        ("accelerometer_x_8", 1.234, "G"),
        ("accelerometer_y_8", -1.234, "G"),
        ("accelerometer_z_8", 0, "G"),
        ("barometer_9", 1012.5, "hPa"),
        ("gyrometer_x_10", 1, "°/s"),
        ("gyrometer_y_10", -1, "°/s"),
        ("gyrometer_z_10", 100, "°/s"),
    ]
    location = {"lat": 42.3519, "lng": -87.9094}
    assert parse(sandbox, "cayenne-lpp", lpp(frame, **extra)) == [
        *(
            {"variable": name, "value": value, **({"unit": unit} if unit else {}), **extra}
            for name, value, unit in points
        ),
        {"variable": "location_11", "value": "42.3519,-87.9094", "location": location, **extra},
        {"variable": "altitude_11", "value": 10, "unit": "m", **extra},
    ]


def test_lpp_accepts_base64_frames_and_passes_other_items_through(sandbox: ParserSandbox) -> None:
    frame = base64.b64encode(bytes.fromhex("03670110056700FF")).decode()
    payload = [{"variable": "frm_payload", "value": frame}, {"variable": "rssi", "value": -99}]
    assert parse(sandbox, "cayenne-lpp", payload) == [
        {"variable": "temperature_3", "value": 27.2, "unit": "°C"},
        {"variable": "temperature_5", "value": 25.5, "unit": "°C"},
        {"variable": "rssi", "value": -99},
    ]


def test_lpp_bad_frames_keep_what_decoded(sandbox: ParserSandbox) -> None:
    assert parse(sandbox, "cayenne-lpp", lpp("03 67 01 10 05 67 00")) == [
        {"variable": "temperature_3", "value": 27.2, "unit": "°C"},
        {"variable": "parse_error", "value": "Cayenne LPP: temperature on channel 5 is truncated"},
    ]
    assert parse(sandbox, "cayenne-lpp", lpp("01 02 03 04 05 99 00")) == [
        {"variable": "analog_input_1", "value": 7.72},
        {
            "variable": "parse_error",
            "value": "Cayenne LPP: unknown data type 153 on channel 5 at byte 5",
        },
    ]
    assert parse(sandbox, "cayenne-lpp", lpp("07")) == [
        {"variable": "parse_error", "value": "Cayenne LPP: frame ends inside the header at byte 0"}
    ]
