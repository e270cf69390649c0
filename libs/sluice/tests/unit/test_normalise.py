from typing import Any

import pytest

from sluice.normalise import normalise_http_body, normalise_mqtt_payload

TOPIC = "devices/meter-1/data"


def payload_item(value: str, topic: str = TOPIC) -> list[dict[str, Any]]:
    return [
        {"variable": "payload", "value": value, "metadata": {"mqtt_topic": topic, "topic": topic}}
    ]


def test_object_becomes_one_item_tagged_with_the_topic() -> None:
    items = normalise_mqtt_payload(b'{"variable": "temperature", "value": 21.5}', TOPIC)
    assert items == [{"variable": "temperature", "value": 21.5, "metadata": {"mqtt_topic": TOPIC}}]


def test_existing_metadata_is_kept() -> None:
    payload = b'{"variable": "t", "value": 1, "metadata": {"color": "red", "nested": {"a": [1]}}}'
    [item] = normalise_mqtt_payload(payload, TOPIC)
    assert item["metadata"] == {"color": "red", "nested": {"a": [1]}, "mqtt_topic": TOPIC}


def test_null_metadata_is_replaced() -> None:
    [item] = normalise_mqtt_payload(b'{"variable": "t", "metadata": null}', TOPIC)
    assert item["metadata"] == {"mqtt_topic": TOPIC}


def test_metadata_that_is_not_an_object_is_left_for_validation() -> None:
    [item] = normalise_mqtt_payload(b'{"variable": "t", "metadata": "oops"}', TOPIC)
    assert item["metadata"] == "oops"


def test_array_elements_are_each_tagged() -> None:
    items = normalise_mqtt_payload(b'[{"variable": "a", "value": 1}, {"variable": "b"}]', TOPIC)
    assert items == [
        {"variable": "a", "value": 1, "metadata": {"mqtt_topic": TOPIC}},
        {"variable": "b", "metadata": {"mqtt_topic": TOPIC}},
    ]


def test_array_scalars_are_left_as_they_are() -> None:
    items = normalise_mqtt_payload(b'[{"variable": "a"}, 42, "x", null, [1]]', TOPIC)
    assert items == [{"variable": "a", "metadata": {"mqtt_topic": TOPIC}}, 42, "x", None, [1]]


def test_empty_array_gives_no_items() -> None:
    assert normalise_mqtt_payload(b"[]", TOPIC) == []


@pytest.mark.parametrize(
    ("payload", "value"),
    [
        (b"hello world", "hello world"),
        (b"42", "42"),
        (b"21.5", "21.5"),
        (b"true", "true"),
        (b"null", "null"),
        (b'"s"', '"s"'),
        (b"{not json", "{not json"),
        (b"[1, 2", "[1, 2"),
        (b"", ""),
        (b"  ", "  "),
        ("température".encode(), "température"),
    ],
)
def test_anything_else_becomes_a_payload_item(payload: bytes, value: str) -> None:
    assert normalise_mqtt_payload(payload, TOPIC) == payload_item(value)


def test_binary_becomes_upper_case_hex() -> None:
    assert normalise_mqtt_payload(b"\x01\xab\xff\x00", TOPIC) == payload_item("01ABFF00")


def test_force_hex_applies_to_json_too() -> None:
    payload = b'{"variable": "t"}'
    assert normalise_mqtt_payload(payload, TOPIC, force_hex=True) == payload_item(
        payload.hex().upper()
    )


def test_force_hex_of_empty_payload_is_empty() -> None:
    assert normalise_mqtt_payload(b"", TOPIC, force_hex=True) == payload_item("")


def test_byte_order_mark_and_whitespace_around_json() -> None:
    items = normalise_mqtt_payload(b'\xef\xbb\xbf \r\n {"variable": "t"}\n', TOPIC)
    assert items == [{"variable": "t", "metadata": {"mqtt_topic": TOPIC}}]


def test_byte_order_mark_is_dropped_from_text() -> None:
    assert normalise_mqtt_payload(b"\xef\xbb\xbfhello", TOPIC) == payload_item("hello")


def test_mqtt_topic_in_metadata_is_the_real_topic() -> None:
    [item] = normalise_mqtt_payload(b'{"metadata": {"mqtt_topic": "forged"}}', TOPIC)
    assert item["metadata"]["mqtt_topic"] == TOPIC


# -- HTTP bodies -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/vnd.api+json",
        None,
        "",
        "application/x-www-form-urlencoded",
    ],
)
def test_http_json_is_returned_as_sent(content_type: str | None) -> None:
    assert normalise_http_body(b'{"variable": "t", "value": 1}', content_type) == {
        "variable": "t",
        "value": 1,
    }
    assert normalise_http_body(b'[{"variable": "t"}, 3]', content_type) == [{"variable": "t"}, 3]


def test_http_json_is_not_tagged_with_a_topic() -> None:
    assert normalise_http_body(b'{"variable": "t"}', "application/json") == {"variable": "t"}


@pytest.mark.parametrize(
    ("body", "content_type", "value"),
    [
        (b"hello", "text/plain", "hello"),
        (b'{"variable": "t"}', "text/plain", '{"variable": "t"}'),
        (b"42", None, "42"),
        (b"not json", None, "not json"),
        (b"\xef\xbb\xbfhello", "text/plain", "hello"),
        (b"\x01\xff", "text/plain", "01FF"),
        (b"\x01\xff", None, "01FF"),
        (b"abc", "application/octet-stream", "616263"),
    ],
)
def test_http_other_bodies_become_a_payload_item(
    body: bytes, content_type: str | None, value: str
) -> None:
    assert normalise_http_body(body, content_type) == [{"variable": "payload", "value": value}]


@pytest.mark.parametrize(
    ("body", "content_type", "complaint"),
    [
        (b"", "application/json", "empty"),
        (b" \n", None, "empty"),
        (b"", "text/plain", "empty"),
        (b"{oops", "application/json", "not valid JSON"),
        (b"42", "application/json", "object or a list"),
        (b'"text"', "application/json; charset=utf-8", "object or a list"),
    ],
)
def test_http_bad_bodies_are_refused(body: bytes, content_type: str | None, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        normalise_http_body(body, content_type)
