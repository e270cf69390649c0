"""Normalise → device parser → validate: what becomes of one ingest record (pure, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sluice import records
from sluice.config import DeviceInfo
from sluice.dataitems import DataValidationError, item_to_json, validate_items
from sluice.ids import derived_id
from sluice.normalise import normalise_http_body, normalise_mqtt_payload
from sluice_parser.sandbox import ParserSandbox


@dataclass
class Outcome:
    items: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    stage: str = ""  # where it failed: "input", "parser" or "validation"
    console: list[str] = field(default_factory=list)
    parsed: bool = False


def normalise(
    envelope: records.Envelope, value: bytes, device: DeviceInfo
) -> tuple[Any, bytes | None]:
    """The item list a record starts as, and the raw bytes the parser may look at."""
    force_hex = (device.param("payload_type") or "").lower() == "hex"
    if envelope.kind == records.KIND_MQTT:
        return normalise_mqtt_payload(value, envelope.topic, force_hex=force_hex), value
    if envelope.kind == records.KIND_RAW:
        return normalise_http_body(value, envelope.extra.get("content_type", "text/plain")), value
    return records.loads(value), None


class Pipeline:
    def __init__(self, sandbox: ParserSandbox) -> None:
        self.sandbox = sandbox

    def process(self, envelope: records.Envelope, value: bytes, device: DeviceInfo) -> Outcome:
        try:
            items, raw = normalise(envelope, value, device)
        except ValueError as exc:
            return Outcome(error=f"unreadable input: {exc}", stage="input")
        outcome = Outcome()
        if device.payload_parser:
            run = self.sandbox.run(device.payload_parser, items, device.context(), raw)
            outcome.console = run.console
            outcome.parsed = True
            if run.error is not None:
                outcome.error, outcome.stage = f"payload parser: {run.error}", "parser"
                return outcome
            items = run.payload
            if items is None or items == []:
                return outcome  # the parser chose to store nothing
        received = datetime.fromtimestamp(envelope.received_at / 1000, UTC)
        try:
            validated = validate_items(
                items, now=received, default_group=derived_id(envelope.message_id, "group")
            )
        except DataValidationError as exc:
            outcome.error, outcome.stage = exc.message, "validation"
            return outcome
        outcome.items = [
            {**item_to_json(item), "id": derived_id(envelope.message_id, index)}
            for index, item in enumerate(validated)
        ]
        return outcome
