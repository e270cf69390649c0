"""Turn MQTT payloads and HTTP bodies into TagoIO data items, the way TagoIO does."""

from __future__ import annotations

from typing import Any

import orjson

_BOM = b"\xef\xbb\xbf"
_JSON_WHITESPACE = b" \t\r\n"


def _text_or_hex(data: bytes, raw: bytes) -> str:
    """``data`` as text, or ``raw`` as upper-case hex when it is not UTF-8."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return raw.hex().upper()


def _container(data: bytes) -> dict[str, Any] | list[Any] | None:
    """The JSON object or array in ``data``, or None when it holds anything else."""
    if data.lstrip(_JSON_WHITESPACE)[:1] not in (b"{", b"["):
        return None  # cheap early out: not worth a parse attempt
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return parsed if isinstance(parsed, dict | list) else None


def _tag_topic(item: dict[str, Any], topic: str) -> None:
    metadata = item.get("metadata")
    if metadata is None:
        item["metadata"] = {"mqtt_topic": topic}
    elif isinstance(metadata, dict):
        metadata["mqtt_topic"] = topic
    # Any other metadata is left for validation to reject with a message naming it.


def normalise_mqtt_payload(payload: bytes, topic: str, *, force_hex: bool = False) -> list[Any]:
    """The item list an MQTT publish starts as (before the payload parser and validation).

    A JSON object becomes one item and a JSON array its elements, each tagged with
    ``metadata.mqtt_topic``; anything else becomes one ``payload`` item holding the text,
    or upper-case hex when it is not UTF-8 or ``force_hex`` (device param payload_type=hex).
    Non-object array elements are kept as they are, for validation to reject.
    """
    if force_hex:
        value = payload.hex().upper()
    else:
        data = payload[3:] if payload.startswith(_BOM) else payload
        parsed = _container(data)
        if isinstance(parsed, dict):
            _tag_topic(parsed, topic)
            return [parsed]
        if isinstance(parsed, list):
            for element in parsed:
                if isinstance(element, dict):
                    _tag_topic(element, topic)
            return parsed
        value = _text_or_hex(data, payload)
    metadata = {"mqtt_topic": topic, "topic": topic}
    return [{"variable": "payload", "value": value, "metadata": metadata}]


def _media_type(content_type: str | None) -> str:
    return (content_type or "").partition(";")[0].strip().lower()


def normalise_http_body(body: bytes, content_type: str | None) -> list[Any] | dict[str, Any]:
    """The items of a ``POST /data`` body: JSON as sent, any other body as one ``payload`` item.

    Raises ValueError, with a message for the sender, for an empty body and for a body
    declared as JSON that is not a JSON object or array.
    """
    data = body[3:] if body.startswith(_BOM) else body
    if not data.strip():
        raise ValueError("the request body is empty: send a data item or a list of data items")
    media = _media_type(content_type)
    declared_json = media == "application/json" or media.endswith("+json")
    # No content type, or curl's default for -d, usually means JSON sent carelessly.
    if declared_json or media in ("", "application/x-www-form-urlencoded"):
        try:
            parsed = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            if declared_json:
                raise ValueError(f"the request body is not valid JSON: {exc}") from None
            parsed = None
        if isinstance(parsed, dict | list):
            return parsed
        if declared_json:
            raise ValueError(
                "a JSON body must be a data item object or a list of them, "
                'like {"variable": "temperature", "value": 21.5}'
            )
    binary = media == "application/octet-stream"
    value = body.hex().upper() if binary else _text_or_hex(data, body)
    return [{"variable": "payload", "value": value}]
