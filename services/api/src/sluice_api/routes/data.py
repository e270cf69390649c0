"""The device data API (device token), compatible with TagoIO's SDKs.

Sent data goes through Kafka like MQTT data and is readable once storage has written it
(usually well under a second); ``POST /data?wait=true`` answers only then.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request

from sluice_api.dataedit import delete_points, edit_points
from sluice_api.dataquery import DataQuery, run_query
from sluice_api.deps import ContextDep, DeviceDep, SessionDep, enforce_limit
from sluice_api.errors import ERROR_RESPONSES, ApiError, documented, ok
from sluice_api.ingest import read_items, send_data

router = APIRouter(tags=["device data"], responses=ERROR_RESPONSES)

ITEM_EXAMPLE = {
    "id": "6743a1f0c2d4e5f6a7b8c9d0",
    "device": "6743a1f0c2d4e5f6a7b8c9aa",
    "variable": "temperature",
    "value": 21.5,
    "unit": "C",
    "group": "6743a1f0c2d4e5f6a7b8c9bb",
    "time": "2026-11-24T18:43:53.123Z",
    "location": {"type": "Point", "coordinates": [-49.27, -25.43]},
    "metadata": {"room": "lab"},
}
SEND_BODY = {
    "requestBody": {
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [{"type": "object"}, {"type": "array", "items": {"type": "object"}}]
                },
                "example": [{"variable": "temperature", "value": 21.5, "unit": "C"}],
            },
            "text/plain": {"schema": {"type": "string"}},
        }
    }
}


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) as soon as it passes ``limit`` bytes."""
    too_large = ApiError(
        413, f"Request body is larger than {limit // 1024} kB: split the data into several requests"
    )
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, limit: int) -> Any:
    body = await read_body(request, limit)
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"The request body is not valid JSON: {exc}") from None


@router.post(
    "/data",
    openapi_extra=SEND_BODY,
    responses=documented("2 Data Added", 413, 503),
)
async def post_data(
    request: Request,
    device: DeviceDep,
    ctx: ContextDep,
    session: SessionDep,
    wait: Annotated[
        bool, Query(description="answer once stored, or with the reason it was refused")
    ] = False,
) -> dict[str, Any]:
    """Send data: an item or a list (JSON), or any other body for the device's payload parser."""
    device.require("write")
    await enforce_limit(ctx, session, device.account, "data_post_per_min")
    body = read_items(
        await read_body(request, ctx.settings.max_data_body), request.headers.get("content-type")
    )
    count = await send_data(ctx, session, device.device, body, wait=wait)
    return ok(f"{count} Data Added")


@router.get("/data", responses=documented([ITEM_EXAMPLE]))
async def get_data(
    request: Request, device: DeviceDep, ctx: ContextDep, session: SessionDep
) -> dict[str, Any]:
    """Read data: filters `variable(s)`, `groups`, `ids`, `values`, dates; `query` modes."""
    device.require("read")
    await enforce_limit(ctx, session, device.account, "data_get_per_min")
    query = DataQuery.from_params(request.query_params)
    return ok(await run_query(session, device.device.id, query))


@router.put("/data", responses=documented("1 item(s) updated"))
async def put_data(
    request: Request, device: DeviceDep, ctx: ContextDep, session: SessionDep
) -> dict[str, Any]:
    """Edit up to 25 data points by `id` (mutable devices only)."""
    device.require("write")
    await enforce_limit(ctx, session, device.account, "data_edit_per_min")
    edited = await edit_points(
        session, device.device, await read_json(request, ctx.settings.max_data_body)
    )
    return ok(f"{edited} item(s) updated")


@router.delete("/data", responses=documented("3 Data Removed"))
async def delete_data(
    request: Request, device: DeviceDep, ctx: ContextDep, session: SessionDep
) -> dict[str, Any]:
    """Delete what the same `GET /data` query returns (mutable devices only; `qty` default 15)."""
    device.require("write")
    await enforce_limit(ctx, session, device.account, "data_edit_per_min")
    query = DataQuery.from_params(request.query_params)
    removed = await delete_points(session, device.device, query)
    return ok(f"{removed} Data Removed")


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
