"""Dry runs of a payload parser for the playground API and ``sluice parse``: the service's own
pipeline (normalisation, the same sandbox, globals and limits, validation), nothing stored.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, TypeVar

from sluice import records
from sluice.config import DeviceInfo
from sluice.ids import new_id
from sluice_parser.pipeline import Pipeline
from sluice_parser.sandbox import ParserSandbox
from sluice_parser.settings import ParserSettings

T = TypeVar("T")

DEFAULT_TOPIC = "data"
_PARSER_PREFIX = "payload parser: "


def device_from_json(device: Any, *, payload_parser: str | None = None) -> DeviceInfo:
    """A device as the parser service holds it, from ``{"id", "name", "tags", "params"}``.

    Raises ValueError with a message for the caller when the shape is wrong.
    """
    if device is None:
        device = {}
    if not isinstance(device, dict):
        raise ValueError('device must be an object like {"id": "...", "tags": [], "params": []}')
    try:
        tags = tuple((str(t["key"]), str(t.get("value", ""))) for t in device.get("tags") or ())
        params = tuple(
            (str(p["key"]), str(p.get("value", "")), bool(p.get("sent", False)))
            for p in device.get("params") or ()
        )
    except (KeyError, TypeError, AttributeError):
        raise ValueError(
            'device tags must look like {"key": "site", "value": "north"} and params like '
            '{"key": "offset", "value": "1.5", "sent": false}'
        ) from None
    return DeviceInfo(
        id=str(device.get("id") or ""),
        account_id="",
        name=str(device.get("name") or ""),
        type="immutable",
        active=True,
        tags=tags,
        params=params,
        payload_parser=payload_parser,
        chunk_period=None,
        chunk_retention=None,
    )


def dry_run(
    sandbox: ParserSandbox,
    device: DeviceInfo,
    *,
    code: str | None,
    payload: Any = None,
    raw: bytes | None = None,
    topic: str = DEFAULT_TOPIC,
) -> dict[str, Any]:
    """What the parser service would do with one message, as a JSON-ready dict.

    ``raw`` is a message as published on MQTT ``topic`` (normalised first, the device's
    payload_type param honoured); otherwise ``payload`` is the item list the parser gets (a
    single object counts as a list of one, a string as a raw text message). ``code`` replaces
    the device's own parser (None: run the device's, if it has one).
    """
    if code is not None:
        device = replace(device, payload_parser=code)
    if raw is None and isinstance(payload, str):
        raw = payload.encode("utf-8", "surrogatepass")
    if raw is not None:
        kind, value = records.KIND_MQTT, raw
    else:
        items = [] if payload is None else payload if isinstance(payload, list) else [payload]
        kind, value = records.KIND_ITEMS, records.dumps(items)
    envelope = records.Envelope(
        message_id=new_id(), account=device.account_id, device=device.id, topic=topic, kind=kind
    )
    outcome = Pipeline(sandbox).process(envelope, value, device)
    parser_error = None
    validation = None
    if outcome.stage == "validation":
        validation = outcome.error
    elif outcome.error is not None:
        parser_error = outcome.error.removeprefix(_PARSER_PREFIX)
    return {
        "payload": outcome.parser_output if outcome.parsed else outcome.input,
        "console": outcome.console,
        "error": parser_error,
        "duration_ms": round(outcome.duration_ms, 3),
        "input": outcome.input,
        "validation": validation,
        "stored": None
        if outcome.error is not None
        else [{k: v for k, v in item.items() if k != "id"} for item in outcome.items],
    }


def sandbox_settings() -> ParserSettings:
    """The parser service's settings (same environment), for its limits."""
    return ParserSettings()


class SandboxPool:
    """Runs dry runs off the event loop: a few threads, each with a sandbox of its own."""

    def __init__(self, workers: int = 2, settings: ParserSettings | None = None) -> None:
        self.settings = settings or sandbox_settings()
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="parser-playground")
        self._local = threading.local()

    async def call(self, fn: Callable[[ParserSandbox], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._in_thread, fn)

    def _in_thread(self, fn: Callable[[ParserSandbox], T]) -> T:
        sandbox: ParserSandbox | None = getattr(self._local, "sandbox", None)
        if sandbox is None:
            # A QuickJS runtime stays on the thread that made it.
            sandbox = self._local.sandbox = ParserSandbox(
                time_limit=self.settings.parser_time_limit,
                memory_limit=self.settings.parser_memory_limit,
            )
        return fn(sandbox)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
