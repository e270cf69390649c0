"""The device data API (device token), compatible with TagoIO's SDKs."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Annotated, Any

from aiokafka.errors import KafkaError
from fastapi import APIRouter, Query, Request
from sqlalchemy import func, select

from sluice import records
from sluice.dataitems import DataValidationError, item_to_json, validate_items
from sluice.db.models import DataPoint
from sluice.ids import new_id
from sluice.normalise import normalise_http_body
from sluice_api.dataquery import DataQuery, run_query
from sluice_api.deps import ContextDep, DeviceDep, SessionDep
from sluice_api.errors import ERROR_RESPONSES, ApiError, ok

router = APIRouter(tags=["device data"], responses=ERROR_RESPONSES)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"Request body is larger than {limit // 1024} kB")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"Request body is larger than {limit // 1024} kB")
        chunks.append(chunk)
    return b"".join(chunks)


@router.post(
    "/data",
    openapi_extra={
        "requestBody": {
            "content": {
                "application/json": {
                    "schema": {
                        "oneOf": [
                            {"type": "object"},
                            {"type": "array", "items": {"type": "object"}},
                        ]
                    },
                    "example": [{"variable": "temperature", "value": 21.5, "unit": "C"}],
                },
                "text/plain": {"schema": {"type": "string"}},
            }
        }
    },
)
async def post_data(
    request: Request,
    device: DeviceDep,
    ctx: ContextDep,
    session: SessionDep,
    wait: Annotated[bool, Query(description="answer only once the data is stored")] = False,
) -> dict[str, Any]:
    """Send data points (one item or a list; other bodies go through the device's parser)."""
    device.require("write")
    body = await read_body(request, ctx.settings.max_data_body)
    try:
        parsed = normalise_http_body(body, request.headers.get("content-type"))
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None
    items = parsed if isinstance(parsed, list) else [parsed]
    if not items:
        raise ApiError(400, "No data items in the request")
    if not device.device.payload_parser:
        # Without a parser the items are final: reject bad ones now, all-or-nothing.
        try:
            validated = validate_items(items, now=datetime.now(UTC))
        except DataValidationError as exc:
            raise ApiError(400, exc.message) from None
        items = [item_to_json(i) for i in validated]
    message_id = new_id()
    envelope = records.Envelope(
        message_id=message_id,
        account=device.account.id,
        device=device.device.id,
        kind=records.KIND_ITEMS,
        origin=f"api:{ctx.settings.node_id}",
    )
    try:
        await ctx.producer.send_and_wait(
            ctx.topics.ingest,
            records.dumps(items),
            key=device.device.id.encode(),
            headers=envelope.to_headers(),
        )
    except KafkaError as exc:
        raise ApiError(
            503, f"Data not accepted: the message bus is unavailable ({type(exc).__name__}); retry"
        ) from None
    if wait:
        await wait_stored(session, message_id, ctx.settings.wait_timeout)
    return ok(f"{len(items)} Data Added")


async def wait_stored(session: SessionDep, message_id: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stored = await session.scalar(
            select(func.count()).where(DataPoint.message_id == message_id)
        )
        if stored:
            return
        await session.rollback()  # end the read transaction so the next poll sees new rows
        await asyncio.sleep(0.05)
    raise ApiError(
        504,
        f"Data accepted but not stored within {timeout:g} s (message {message_id}); "
        "the Live Inspector shows parser or validation errors",
    )


@router.get("/data")
async def get_data(request: Request, device: DeviceDep, session: SessionDep) -> dict[str, Any]:
    """Read data points: filters `variable(s)`, `groups`, `ids`, `values`, dates; `query` modes."""
    device.require("read")
    query = DataQuery.from_params(request.query_params)
    return ok(await run_query(session, device.device.id, query))


@router.get("/info")
async def device_info(device: DeviceDep) -> dict[str, Any]:
    """The device the token belongs to."""
    d = device.device
    return ok(
        {
            "id": d.id,
            "name": d.name,
            "type": d.type,
            "active": d.active,
            "profile": d.account_id,
            "tags": d.tags,
            "bucket": {"id": d.id, "name": d.name},
            "created_at": d.created_at.isoformat(),
            "updated_at": d.updated_at.isoformat(),
            "last_input": d.last_input.isoformat() if d.last_input else None,
            "chunk_period": d.chunk_period,
            "chunk_retention": d.chunk_retention,
        }
    )
