"""MQTT 5 properties of a message as they travel between gateways (a JSON header)."""

from __future__ import annotations

import time
from typing import Any

import orjson

from sluice_gateway.codec import Properties
from sluice_gateway.session import Message


def props_header(msg: Message) -> bytes:
    doc: dict[str, Any] = {}
    props = msg.props
    if props is not None:
        if props.payload_format_indicator is not None:
            doc["pfi"] = props.payload_format_indicator
        if props.content_type is not None:
            doc["ct"] = props.content_type
        if props.response_topic is not None:
            doc["rt"] = props.response_topic
        if props.correlation_data is not None:
            doc["cd"] = props.correlation_data.hex()
        if props.user_properties:
            doc["up"] = props.user_properties
    if msg.expires_at is not None:
        doc["exp"] = max(0, int(msg.expires_at - time.monotonic()))
    return orjson.dumps(doc)


def props_from_header(raw: bytes | None) -> tuple[Properties | None, float | None]:
    """(forwardable properties, expiry deadline) from a ``props`` header."""
    if not raw:
        return None, None
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None, None
    if not isinstance(doc, dict):
        return None, None
    props = Properties()
    found = False
    if "pfi" in doc:
        props.payload_format_indicator = int(doc["pfi"])
        found = True
    if "ct" in doc:
        props.content_type = str(doc["ct"])
        found = True
    if "rt" in doc:
        props.response_topic = str(doc["rt"])
        found = True
    if "cd" in doc:
        props.correlation_data = bytes.fromhex(str(doc["cd"]))
        found = True
    if doc.get("up"):
        props.user_properties = [(str(k), str(v)) for k, v in doc["up"]]
        found = True
    expires = time.monotonic() + float(doc["exp"]) if "exp" in doc else None
    return (props if found else None), expires
