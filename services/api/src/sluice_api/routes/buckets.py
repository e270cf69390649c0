"""A device's bucket, managed with an account token: query, edit, delete, empty, chunks, CSV.

The same query language as the device API's ``GET /data`` (see dataquery.py).
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import and_, delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from sluice.buckets import chunk_id, chunks_between, parse_chunk_id, retained_window
from sluice.dataitems import format_time
from sluice.db.models import DataPoint, Device
from sluice_api.context import ApiContext
from sluice_api.dataedit import delete_points, edit_points, empty_device
from sluice_api.dataquery import DataQuery, point_value, run_query
from sluice_api.deps import AccountDep, ContextDep, SessionDep, enforce_limit
from sluice_api.errors import ERROR_RESPONSES, ApiError, documented, ok
from sluice_api.ingest import read_items, send_data
from sluice_api.routes.data import ITEM_EXAMPLE, SEND_BODY, read_body, read_json

router = APIRouter(tags=["buckets"], responses=ERROR_RESPONSES)

CSV_COLUMNS = ("variable", "value", "unit", "group", "time", "location", "metadata")
EXPORT_PAGE = 2000
MAX_CHUNKS_LISTED = 400
_MILLISECOND = timedelta(milliseconds=1)
CHUNK_EXAMPLE = {
    "id": "1763942400_1764547199",
    "from_date": "2025-11-24T00:00:00.000Z",
    "to_date": "2025-11-30T23:59:59.999Z",
    "amount": 1250,
}


async def owned(session: AsyncSession, account_id: str, device_id: str) -> Device:
    device = await session.get(Device, device_id)
    if device is None or device.account_id != account_id:
        raise ApiError(404, f"Device {device_id} not found")
    return device


@router.get("/device/{device_id}/data", responses=documented([ITEM_EXAMPLE]))
async def query_data(
    device_id: str, request: Request, account: AccountDep, session: SessionDep, ctx: ContextDep
) -> dict[str, Any]:
    """Query a device's data (same parameters and `query` modes as `GET /data`)."""
    device = await owned(session, account.id, device_id)
    await enforce_limit(ctx, session, account.account, "data_get_per_min")
    return ok(await run_query(session, device.id, DataQuery.from_params(request.query_params)))


@router.post(
    "/device/{device_id}/data", openapi_extra=SEND_BODY, responses=documented("1 Data Added")
)
async def send_device_data(
    device_id: str,
    request: Request,
    account: AccountDep,
    session: SessionDep,
    ctx: ContextDep,
    wait: Annotated[bool, Query(description="answer once stored")] = False,
) -> dict[str, Any]:
    """Send data to a device as if it had sent it (through its parser and the pipeline)."""
    device = await owned(session, account.id, device_id)
    await enforce_limit(ctx, session, account.account, "data_post_per_min")
    body = read_items(
        await read_body(request, ctx.settings.max_data_body), request.headers.get("content-type")
    )
    count = await send_data(ctx, session, device, body, wait=wait)
    return ok(f"{count} Data Added")


@router.put("/device/{device_id}/data", responses=documented("1 item(s) updated"))
async def edit_data(
    device_id: str, request: Request, account: AccountDep, session: SessionDep, ctx: ContextDep
) -> dict[str, Any]:
    """Edit up to 25 data points by `id` (mutable devices only)."""
    device = await owned(session, account.id, device_id)
    await enforce_limit(ctx, session, account.account, "data_edit_per_min")
    edited = await edit_points(
        session, device, await read_json(request, ctx.settings.max_data_body)
    )
    return ok(f"{edited} item(s) updated")


@router.delete("/device/{device_id}/data", responses=documented("3 Data Removed"))
async def delete_data(
    device_id: str, request: Request, account: AccountDep, session: SessionDep, ctx: ContextDep
) -> dict[str, Any]:
    """Delete what the same query returns (mutable devices only; `qty` default 15)."""
    device = await owned(session, account.id, device_id)
    await enforce_limit(ctx, session, account.account, "data_edit_per_min")
    removed = await delete_points(session, device, DataQuery.from_params(request.query_params))
    return ok(f"{removed} Data Removed")


@router.post("/device/{device_id}/empty", responses=documented("1250 Data Removed"))
async def empty(device_id: str, account: AccountDep, session: SessionDep) -> dict[str, Any]:
    """Delete every data point of the device (mutable or immutable)."""
    await owned(session, account.id, device_id)
    return ok(f"{await empty_device(session, device_id)} Data Removed")


def _chunk_range(device: Device) -> tuple[str, int]:
    if device.type != "immutable" or not device.chunk_period:
        raise ApiError(400, "Only immutable devices keep their data in chunks")
    return device.chunk_period, device.chunk_retention or 0


@router.get("/device/{device_id}/chunk", responses=documented([CHUNK_EXAMPLE]))
async def list_chunks(device_id: str, account: AccountDep, session: SessionDep) -> dict[str, Any]:
    """The chunks of an immutable device, oldest first, with how many points each holds."""
    device = await owned(session, account.id, device_id)
    period, retention = _chunk_range(device)
    now = datetime.now(UTC)
    window = retained_window(now, period, retention)
    first, last = (
        await session.execute(
            select(func.min(DataPoint.time), func.max(DataPoint.time)).where(
                DataPoint.device_id == device.id
            )
        )
    ).one()
    start = min(window[0], first) if first is not None else window[0]
    end = max(last, now) if last is not None else now
    chunks = chunks_between(start, end, period)[-MAX_CHUNKS_LISTED:]
    out = []
    for chunk_start, chunk_end in chunks:
        amount = await session.scalar(
            select(func.count())
            .select_from(DataPoint)
            .where(
                DataPoint.device_id == device.id,
                DataPoint.time >= chunk_start,
                DataPoint.time < chunk_end,
            )
        )
        out.append(
            {
                "id": chunk_id(chunk_start, chunk_end),
                "from_date": format_time(chunk_start),
                "to_date": format_time(chunk_end - _MILLISECOND),
                "amount": int(amount or 0),
                "expired": chunk_end <= window[0],
            }
        )
    return ok(out)


@router.delete(
    "/device/{device_id}/chunk/{chunk}", responses=documented("Chunk 1763942400_1764547199 deleted")
)
async def delete_chunk(
    device_id: str, chunk: str, account: AccountDep, session: SessionDep
) -> dict[str, Any]:
    """Delete one chunk's data points before retention would."""
    device = await owned(session, account.id, device_id)
    period, _ = _chunk_range(device)
    try:
        start, end = parse_chunk_id(chunk, period)
    except ValueError as exc:
        raise ApiError(400, f"{exc}; list the chunks with GET /device/{device_id}/chunk") from None
    await session.execute(
        delete(DataPoint).where(
            DataPoint.device_id == device.id, DataPoint.time >= start, DataPoint.time < end
        )
    )
    await session.commit()
    return ok(f"Chunk {chunk} deleted")


def _csv_row(point: DataPoint) -> list[Any]:
    value = point_value(point)
    return [
        point.variable,
        ("true" if value else "false")
        if isinstance(value, bool)
        else ("" if value is None else value),
        point.unit or "",
        point.group or "",
        format_time(point.time),
        orjson.dumps(point.location).decode() if point.location is not None else "",
        orjson.dumps(point.meta).decode() if point.meta is not None else "",
    ]


async def _csv_pages(ctx: ApiContext, device_id: str, query: DataQuery) -> AsyncIterator[bytes]:
    """The CSV, a page at a time: keyset pagination on (time, id), a short session per page."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    after: tuple[datetime, str] | None = None
    while True:
        stmt = query.where(device_id, select(DataPoint))
        if after is not None:
            stmt = stmt.where(
                or_(
                    DataPoint.time > after[0],
                    and_(DataPoint.time == after[0], DataPoint.id > after[1]),
                )
            )
        stmt = stmt.order_by(DataPoint.time, DataPoint.id).limit(EXPORT_PAGE)
        async with ctx.sessions() as session:
            points = (await session.scalars(stmt)).all()
        for point in points:
            writer.writerow(_csv_row(point))
        yield buffer.getvalue().encode()
        buffer.seek(0)
        buffer.truncate()
        if len(points) < EXPORT_PAGE:
            return
        after = (points[-1].time, points[-1].id)


@router.get(
    "/device/{device_id}/data/export",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}, "description": "CSV, oldest first"}},
)
async def export_csv(
    device_id: str, request: Request, account: AccountDep, session: SessionDep, ctx: ContextDep
) -> StreamingResponse:
    """Every data point (or those the filters select) as CSV, streamed oldest first."""
    device = await owned(session, account.id, device_id)
    query = DataQuery.from_params(request.query_params)
    await session.commit()  # the stream uses its own short sessions
    return StreamingResponse(
        _csv_pages(ctx, device.id, query),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="device-{device.id}.csv"'},
    )
