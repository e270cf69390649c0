"""Editing and deleting stored data points: mutable devices only, as in TagoIO."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from sluice.dataitems import DataValidationError, format_time, validate_items, value_type
from sluice.db.models import DataPoint, Device
from sluice_api.dataquery import POINT_QUERIES, DataQuery, point_value, query_points
from sluice_api.errors import ApiError

MAX_EDIT_ITEMS = 25
EDITABLE = ("variable", "value", "unit", "time", "group", "serie", "location", "metadata")


def require_mutable(device: Device, verb: str) -> None:
    if device.type != "mutable":
        raise ApiError(
            400,
            f"Data of immutable devices cannot be {verb}: only mutable devices allow it "
            "(immutable data leaves only when its chunk expires; see GET /device/{id}/chunk)",
        )


def _current(point: DataPoint) -> dict[str, Any]:
    return {
        "variable": point.variable,
        "value": point_value(point),
        "unit": point.unit,
        "time": format_time(point.time),
        "group": point.group,
        "location": point.location,
        "metadata": point.meta,
    }


async def edit_points(session: AsyncSession, device: Device, body: Any) -> int:
    """Apply edits (an item or a list, each with its ``id``), all-or-nothing; returns the count."""
    require_mutable(device, "edited")
    edits = body if isinstance(body, list) else [body]
    if not edits:
        raise ApiError(400, "No items to edit: send an item with its 'id', or a list of them")
    if len(edits) > MAX_EDIT_ITEMS:
        raise ApiError(
            400, f"At most {MAX_EDIT_ITEMS} items can be edited per request (got {len(edits)})"
        )
    ids: list[str] = []
    for index, edit in enumerate(edits):
        if not isinstance(edit, dict) or not isinstance(edit.get("id"), str) or not edit["id"]:
            raise ApiError(400, f"item {index}: 'id' is required: name the data point to edit")
        ids.append(edit["id"])
    found = {
        p.id: p
        for p in (
            await session.scalars(
                select(DataPoint).where(DataPoint.device_id == device.id, DataPoint.id.in_(ids))
            )
        ).all()
    }
    missing = [i for i in ids if i not in found]
    if missing:
        raise ApiError(404, f"Data not found on this device: {', '.join(missing[:10])}")
    merged = []
    for edit in edits:
        item = _current(found[edit["id"]])
        changes = {k: v for k, v in edit.items() if k in EDITABLE}
        if "serie" in changes and "group" not in changes:
            changes["group"] = changes.pop("serie")
        changes.pop("serie", None)
        item.update(changes)
        merged.append(item)
    try:
        validated = validate_items(merged, now=datetime.now(UTC))
    except DataValidationError as exc:
        raise ApiError(400, exc.message) from None
    for edit, new in zip(edits, validated, strict=True):
        point = found[edit["id"]]
        kind = value_type(new.value)
        point.variable = new.variable
        point.value_type = kind
        point.value_number = float(new.value) if kind == "number" else None  # type: ignore[arg-type]
        point.value_text = new.value if kind == "string" else None  # type: ignore[assignment]
        point.value_bool = new.value if kind == "boolean" else None  # type: ignore[assignment]
        point.unit = new.unit
        point.time = new.time
        point.group = new.group
        point.location = new.location
        point.meta = new.metadata
    await session.commit()
    return len(edits)


async def delete_points(session: AsyncSession, device: Device, query: DataQuery) -> int:
    """Delete what the same ``GET /data`` query returns (at most ``qty``); returns the count."""
    require_mutable(device, "deleted")
    if query.query not in POINT_QUERIES:
        raise ApiError(
            400,
            f"query '{query.query}' returns numbers, not data points: delete with the default "
            "query (filters and qty), first_*/last_*, min or max",
        )
    ids = [p.id for p in await query_points(session, device.id, query)]
    if ids:
        await session.execute(
            delete(DataPoint).where(DataPoint.device_id == device.id, DataPoint.id.in_(ids))
        )
        await session.commit()
    return len(ids)


async def empty_device(session: AsyncSession, device_id: str, batch: int = 10_000) -> int:
    """Delete every data point of a device, a batch per transaction; returns the count."""
    total = 0
    while True:
        doomed = (
            select(DataPoint.id).where(DataPoint.device_id == device_id).limit(batch)
        ).scalar_subquery()
        result = await session.execute(delete(DataPoint).where(DataPoint.id.in_(doomed)))
        await session.commit()
        count = max(result.rowcount or 0, 0)  # type: ignore[attr-defined]
        total += count
        if count < batch:
            return total


async def count_points(session: AsyncSession, device_id: str) -> int:
    stmt = select(func.count()).select_from(DataPoint).where(DataPoint.device_id == device_id)
    return int(await session.scalar(stmt) or 0)
