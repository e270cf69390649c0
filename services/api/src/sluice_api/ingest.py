"""Data sent over HTTP joins the pipeline MQTT data takes: ``sluice.ingest`` → parser → storage.

The API never writes data points itself. Without a payload parser the items are final, so
they are validated here, all-or-nothing, with the bucket rules (immutable window, mutable
cap) checked too: the sender learns at once what storage would refuse. With a parser the
body goes as it came and the parser validates its output. ``wait`` answers only once the
data is stored, or with the reason it never will be (read from ``sluice.dead-letter``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from aiokafka.errors import KafkaError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from sluice import bus, records
from sluice.buckets import MUTABLE_CAP, MUTABLE_CAP_MESSAGE, retained_window, window_text
from sluice.dataitems import DataItem, DataValidationError, item_to_json, validate_items
from sluice.db.models import DataPoint, Device
from sluice.ids import new_id
from sluice.normalise import normalise_http_body
from sluice_api.context import ApiContext
from sluice_api.errors import ApiError

log = logging.getLogger("sluice.api.data")

_JSON_MEDIA = ("application/json", "")


@dataclass(slots=True)
class Body:
    """What a ``POST /data`` body holds: JSON items, or raw bytes for the payload parser."""

    items: list[Any]
    raw: bytes | None
    content_type: str


def read_items(body: bytes, content_type: str | None) -> Body:
    """Items of a JSON body, or the raw body (as one ``payload`` item until parsed)."""
    try:
        parsed = normalise_http_body(body, content_type)
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None
    media = (content_type or "").partition(";")[0].strip().lower()
    is_json = media.endswith("json") or media in ("", "application/x-www-form-urlencoded")
    if is_json:
        try:
            is_json = isinstance(orjson.loads(body.removeprefix(b"\xef\xbb\xbf")), dict | list)
        except orjson.JSONDecodeError:
            is_json = False
    items = parsed if isinstance(parsed, list) else [parsed]
    if not items:
        raise ApiError(400, "No data items in the request: send an item or a non-empty list")
    return Body(items, None if is_json else body, content_type or "text/plain")


def check_window(device: Device, items: list[DataItem], now: datetime) -> None:
    """400 naming the first item an immutable device would refuse for its time."""
    if device.type != "immutable" or not device.chunk_period:
        return
    window = retained_window(now, device.chunk_period, device.chunk_retention or 0)
    for index, item in enumerate(items):
        if not window[0] <= item.time < window[1]:
            raise ApiError(
                400,
                f"item {index}: 'time' is outside what this immutable device keeps "
                f"({device.chunk_retention or 0} {device.chunk_period} chunk(s) before the "
                f"current one). {window_text(window)}",
            )


async def check_cap(session: AsyncSession, device: Device, adding: int) -> None:
    """400 with TagoIO's message when a mutable device would pass its 50,000 records."""
    if device.type != "mutable":
        return
    stored = await session.scalar(
        select(func.count()).select_from(DataPoint).where(DataPoint.device_id == device.id)
    )
    if (stored or 0) + adding > MUTABLE_CAP:
        raise ApiError(
            400,
            f"{MUTABLE_CAP_MESSAGE} ({stored} stored): delete some data or empty the device",
        )


async def send_data(
    ctx: ApiContext,
    session: AsyncSession,
    device: Device,
    body: Body,
    *,
    wait: bool = False,
) -> int:
    """Put the data on ``sluice.ingest``; returns how many items were accepted."""
    now = datetime.now(UTC)
    value: bytes
    if device.payload_parser:
        kind = records.KIND_ITEMS if body.raw is None else records.KIND_RAW
        value = records.dumps(body.items) if body.raw is None else body.raw
        count = len(body.items)
    else:
        try:
            validated = validate_items(body.items, now=now)
        except DataValidationError as exc:
            raise ApiError(400, exc.message) from None
        check_window(device, validated, now)
        kind, count = records.KIND_ITEMS, len(validated)
        value = records.dumps([item_to_json(i) for i in validated])
    # With a parser the item count is only known once it ran: at least one is coming.
    await check_cap(session, device, 1 if device.payload_parser else count)
    await session.commit()  # no read transaction held while waiting (commit keeps objects loaded)
    envelope = records.Envelope(
        message_id=new_id(),
        account=device.account_id,
        device=device.id,
        kind=kind,
        origin=f"api:{ctx.settings.node_id}",
        received_at=int(now.timestamp() * 1000),
    )
    if kind == records.KIND_RAW:
        envelope.extra["content_type"] = body.content_type
    watch = await _watch_dead_letters(ctx) if wait else None
    try:
        try:
            await ctx.producer.send_and_wait(
                ctx.topics.ingest, value, key=device.id.encode(), headers=envelope.to_headers()
            )
        except KafkaError as exc:
            raise ApiError(
                503,
                f"Data not accepted: the message bus is unavailable ({type(exc).__name__}); retry",
            ) from None
        log.debug(
            "data accepted",
            extra={"device": device.id, "message_id": envelope.message_id, "items": count},
        )
        if watch is not None:
            await wait_stored(ctx, session, device.id, envelope.message_id, watch)
    finally:
        if watch is not None:
            await watch.stop()
    return count


async def _watch_dead_letters(ctx: ApiContext) -> bus.Tail:
    """A tail of ``sluice.dead-letter`` positioned before our record is produced."""
    tail = bus.Tail(ctx.settings, [ctx.topics.dead_letter])
    try:
        await asyncio.wait_for(tail.start(), ctx.settings.wait_timeout)
    except (KafkaError, TimeoutError) as exc:
        await tail.stop()
        raise ApiError(
            503, f"Cannot wait: the message bus is unavailable ({exc!r}); retry"
        ) from None
    return tail


def _refusal(batch: dict[Any, list[bus.Record]], message_id: str) -> str | None:
    wanted = message_id.encode()
    for recs in batch.values():
        for record in recs:
            if records.header(record.headers, "message_id") == wanted:
                reason = records.header(record.headers, "dead_reason") or b"refused"
                service = records.header(record.headers, "dead_service") or b"pipeline"
                return f"{reason.decode(errors='replace')} (refused by {service.decode()})"
    return None


async def wait_stored(
    ctx: ApiContext, session: AsyncSession, device_id: str, message_id: str, watch: bus.Tail
) -> int:
    """Rows stored for a message; ApiError when the pipeline refused it or time ran out."""
    timeout = ctx.settings.wait_timeout
    deadline = time.monotonic() + timeout
    while True:
        stored = await session.scalar(
            select(func.count())
            .select_from(DataPoint)
            .where(DataPoint.message_id == message_id, DataPoint.device_id == device_id)
        )
        await session.commit()  # end the read transaction so the next poll sees new rows
        if stored:
            return int(stored)
        batch = await watch.consumer.getmany(timeout_ms=100, max_records=500)
        refusal = _refusal(batch, message_id)
        if refusal is not None:
            raise ApiError(400, f"Data not stored: {refusal}")
        if time.monotonic() > deadline:
            raise ApiError(
                504,
                f"Data accepted but not stored within {timeout:g} s (message {message_id}): "
                "storage may be behind, or the payload parser returned no items; "
                "the Live Inspector shows what happened",
            )
