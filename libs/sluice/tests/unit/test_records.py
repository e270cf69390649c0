import math

import orjson
import pytest

from sluice import records


def test_dumps_writes_integers_past_64_bits_as_javascript_doubles() -> None:
    value = [{"value": 2**70, "list": [1, True, -(2**80)], "n": {"deep": 10**400}}, 2**64 - 1]
    out = orjson.loads(records.dumps(value))
    assert out == [
        {"value": float(2**70), "list": [1, True, float(-(2**80))], "n": {"deep": None}},
        2**64 - 1,  # still fits: kept exact
    ]
    assert math.isclose(out[0]["value"], 1.1805916207174113e21)


def test_dumps_still_refuses_what_is_not_json() -> None:
    with pytest.raises(TypeError, match="not JSON serializable"):
        records.dumps({"x": object()})


def test_envelope_headers_round_trip() -> None:
    envelope = records.Envelope(
        message_id="m1", account="a", device="d", topic="t/1", qos=1, retain=True, kind="mqtt"
    )
    back = records.Envelope.from_headers(envelope.to_headers())
    assert back == envelope
