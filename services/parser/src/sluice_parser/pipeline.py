"""Normalise → device parser → validate: what becomes of one ingest record (pure, no I/O)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, cast

import orjson

from sluice import records
from sluice.config import DeviceInfo
from sluice.dataitems import DataValidationError, bus_json, format_epoch_ms, validate_json_items
from sluice.ids import derived_id
from sluice.normalise import normalise_http_body, normalise_mqtt_payload
from sluice_parser.realm import loads
from sluice_parser.sandbox import (
    ParserCodeTooLarge,
    ParserRun,
    ParserSandbox,
    RunRequest,
    device_json,
    payload_json,
    resolve_parser,
)

_ID_PERSON = b"sluice.item.v1"
_ID_MASK = (1 << 96) - 1
_ID_HASH = hashlib.blake2b(digest_size=12, person=_ID_PERSON)  # copied: cheaper than new


@dataclass
class Outcome:
    data: bytes | None = None  # the `sluice.data` record: the items stored, in their bus form
    stored: int = 0  # how many items that is
    error: str | None = None
    stage: str = ""  # where it failed: "input", "parser" or "validation"
    console: list[str] = field(default_factory=list)
    parsed: bool = False  # the device has a parser and it was run
    # "ok", or why nothing is stored: "error", "timeout", "memory", "internal" (the parser
    # run), "too_large", "unknown_builtin" (the parser code), "invalid" (validation),
    # "unreadable" (the input)
    outcome: str = "ok"
    input: Any = None  # the normalised items: what the parser gets as `payload`
    parser_output_json: str = "null"  # what the parser left in `payload` (before validation)
    duration_ms: float = 0.0  # of the parser run

    @property
    def parser_output(self) -> Any:
        return loads(self.parser_output_json)

    @property
    def items(self) -> list[dict[str, Any]]:
        """The items stored (decoded from `data`)."""
        return cast(list[dict[str, Any]], records.loads(self.data)) if self.data else []


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


def item_ids(message_id: str, count: int) -> list[str]:
    """24-hex row ids for a message's items: the same message always gets the same ids.

    One hash per message, then consecutive numbers (ids of different messages are 96-bit
    random starts, so ranges of a few hundred never meet).
    """
    hasher = _ID_HASH.copy()
    hasher.update(message_id.encode())
    digest = hasher.digest()
    low = int.from_bytes(digest[8:], "big")
    if low + count <= 0xFFFFFFFF:  # all but the last 8 hex digits are shared
        high = digest[:8].hex()
        return [high + "%08x" % number for number in range(low, low + count)]  # noqa: UP031 (faster)
    start = int.from_bytes(digest, "big")
    return [f"{(start + index) & _ID_MASK:024x}" for index in range(count)]


def with_ids(items: list[dict[str, Any]], message_id: str) -> list[dict[str, Any]]:
    """Validated items in their `sluice.data` form get their row ids."""
    for item, item_id in zip(items, item_ids(message_id, len(items)), strict=True):
        item["id"] = item_id
    return items


@dataclass(slots=True)
class Pending:
    """A record that waits for its device's parser to run (Pipeline.start → finish)."""

    envelope: records.Envelope
    outcome: Outcome
    request: RunRequest


class Pipeline:
    """One per sandbox (and so per thread): it keeps the devices' JSON views between runs.

    `process` takes one record through; a caller with many records calls `start` for each,
    runs the parsers of the pending ones with `ParserSandbox.run_many`, and `finish`es them.
    """

    def __init__(self, sandbox: ParserSandbox) -> None:
        self.sandbox = sandbox
        self._device_json: dict[str, tuple[DeviceInfo, str]] = {}

    def process(self, envelope: records.Envelope, value: bytes, device: DeviceInfo) -> Outcome:
        started = self.start(envelope, value, device)
        if isinstance(started, Outcome):
            return started
        return self.finish(started, self.sandbox.run_many([started.request])[0])

    def start(
        self, envelope: records.Envelope, value: bytes, device: DeviceInfo
    ) -> Outcome | Pending:
        """The outcome, or for a device with a parser what the parser is to run on."""
        try:
            items, raw = normalise(envelope, value, device)
        except ValueError as exc:
            return Outcome(error=f"unreadable input: {exc}", stage="input", outcome="unreadable")
        outcome = Outcome(input=items)
        if not device.payload_parser:
            text = _fast_json(items) if type(items) is list else None
            if text is not None and self._plainly_valid(envelope, outcome, text):
                return outcome
            return self._validated(envelope, outcome, items)
        outcome.parsed = True
        try:
            code = resolve_parser(device.payload_parser)
            self.sandbox.check_code(code)
        except KeyError as exc:
            _parser_failed(outcome, str(exc.args[0]), "unknown_builtin")
            return outcome
        except ParserCodeTooLarge as exc:
            _parser_failed(outcome, str(exc), "too_large")
            return outcome
        request = RunRequest(
            code, _fast_json(items) or payload_json(items), self._device(device), raw
        )
        return Pending(envelope, outcome, request)

    def finish(self, pending: Pending, run: ParserRun) -> Outcome:
        """The outcome of a pending record, given its parser's run."""
        outcome = pending.outcome
        outcome.console = run.console
        outcome.duration_ms = run.duration_ms
        outcome.parser_output_json = run.payload_json
        if run.error is not None:
            _parser_failed(outcome, run.error, run.outcome)
            return outcome
        if run.payload_json in ("null", "[]"):
            return outcome  # the parser chose to store nothing
        if self._plainly_valid(pending.envelope, outcome, run.payload_json):
            return outcome
        return self._validated(pending.envelope, outcome, run.payload)

    def _plainly_valid(self, envelope: records.Envelope, outcome: Outcome, text: str) -> bool:
        # Plainly valid items (most of them), as JSON text, go to the bus as they were
        # written, without Python objects; False leaves them to the full check.
        data = bus_json(
            text,
            now=format_epoch_ms(envelope.received_at),
            default_group=_message_group(envelope),
            ids=partial(item_ids, envelope.message_id),
        )
        if data is None:
            return False
        outcome.data, outcome.stored = data
        return True

    def _validated(self, envelope: records.Envelope, outcome: Outcome, items: Any) -> Outcome:
        received = datetime.fromtimestamp(envelope.received_at / 1000, UTC)
        try:
            validated = validate_json_items(
                items, now=received, default_group=_message_group(envelope)
            )
        except DataValidationError as exc:
            outcome.error, outcome.stage, outcome.outcome = exc.message, "validation", "invalid"
            return outcome
        outcome.data = records.dumps(with_ids(validated, envelope.message_id))
        outcome.stored = len(validated)
        return outcome

    def _device(self, device: DeviceInfo) -> str:
        # The config cache hands out the same DeviceInfo until the device changes.
        cached = self._device_json.get(device.id)
        if cached is not None and cached[0] is device:
            return cached[1]
        if len(self._device_json) >= 10_000:
            self._device_json.clear()
        text = device_json(device.context())
        self._device_json[device.id] = (device, text)
        return text


def _fast_json(items: Any) -> str | None:
    """The items as JSON text, by orjson (the sandbox's own encoder is 20 times slower).

    Normalised items come from JSON or UTF-8 text, so they hold no NaN (which orjson would
    write as null); what orjson refuses (integers past 64 bits) the sandbox's encoder writes.
    """
    try:
        return orjson.dumps(items).decode()
    except TypeError:
        return None


def _message_group(envelope: records.Envelope) -> Callable[[], str]:
    # The group of a message's items that name none: the same for every replay of it.
    return partial(derived_id, envelope.message_id, "group")


def _parser_failed(outcome: Outcome, reason: str, kind: str) -> None:
    outcome.error = f"payload parser: {reason}"
    outcome.stage = "parser"
    outcome.outcome = kind
