"""``GET /data`` and ``DELETE /data`` filters and query modes, as TagoIO's device API has them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import QueryParams

from sluice.dataitems import parse_relative, parse_time
from sluice.db.models import DataPoint
from sluice_api.errors import ApiError

DEFAULT_QTY = 15
MAX_QTY = 10_000
FIRST_LAST = {
    f"{edge}_{what}"
    for edge in ("first", "last")
    for what in ("item", "value", "location", "insert")
}
STATS = {"count", "min", "max", "avg", "sum"}
QUERIES = {"default"} | FIRST_LAST | STATS


def _many(params: QueryParams, *names: str) -> list[str]:
    """All values of a list parameter under any of its spellings (``a``, ``a[]``, ``a[0]``)."""
    return [
        value
        for key, value in params.multi_items()
        if value != "" and key.split("[", 1)[0] in names
    ]


@dataclass
class DataQuery:
    variables: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    values: list[str] = field(default_factory=list)
    qty: int = DEFAULT_QTY
    skip: int = 0
    ascending: bool = False
    start: datetime | None = None
    end: datetime | None = None
    query: str = "default"
    details: bool = False

    @classmethod
    def from_params(cls, params: QueryParams, now: datetime | None = None) -> DataQuery:
        now = now or datetime.now(UTC)
        query = params.get("query", "default") or "default"
        if query not in QUERIES:
            raise ApiError(
                400, f"Unknown query '{query}'; use one of: {', '.join(sorted(QUERIES))}"
            )
        ordination = (params.get("ordination") or "descending").lower()
        if ordination not in ("asc", "ascending", "desc", "descending"):
            raise ApiError(400, "ordination must be 'ascending' or 'descending'")
        return cls(
            variables=[v.lower() for v in _many(params, "variable", "variables")],
            groups=_many(params, "group", "groups", "serie", "series"),
            ids=_many(params, "id", "ids"),
            values=_many(params, "value", "values"),
            qty=_int(params, "qty", DEFAULT_QTY, 1, MAX_QTY),
            skip=_int(params, "skip", 0, 0, None),
            ascending=ordination.startswith("asc"),
            start=_date(params, "start_date", now),
            end=_date(params, "end_date", now),
            query=query,
            details=(params.get("details") or "").lower() in ("true", "1"),
        )

    def where(self, device_id: str, stmt: Select[Any]) -> Select[Any]:
        stmt = stmt.where(DataPoint.device_id == device_id)
        if self.variables:
            stmt = stmt.where(DataPoint.variable.in_(self.variables))
        if self.groups:
            stmt = stmt.where(DataPoint.group.in_(self.groups))
        if self.ids:
            stmt = stmt.where(DataPoint.id.in_(self.ids))
        if self.values:
            stmt = stmt.where(
                DataPoint.value_text.in_(self.values)
                | DataPoint.value_number.in_(_numbers(self.values))
            )
        if self.start is not None:
            stmt = stmt.where(DataPoint.time >= self.start)
        if self.end is not None:
            stmt = stmt.where(DataPoint.time <= self.end)
        return stmt


def _numbers(values: list[str]) -> list[float]:
    out = []
    for value in values:
        try:
            out.append(float(value))
        except ValueError:
            pass
    return out


def _int(params: QueryParams, name: str, default: int, low: int, high: int | None) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"'{name}' must be an integer") from None
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ApiError(400, f"'{name}' must be {bound}")
    return value


def _date(params: QueryParams, name: str, now: datetime) -> datetime | None:
    raw = params.get(name)
    if not raw:
        return None
    relative = parse_relative(raw)
    if relative is not None:
        return now - relative
    try:
        return parse_time(float(raw) if raw.replace(".", "", 1).isdigit() else raw, now)
    except ValueError:
        raise ApiError(
            400, f"'{name}' must be an ISO 8601 time, an epoch, or relative like '1 day'"
        ) from None


def point_value(point: DataPoint) -> Any:
    if point.value_type == "number":
        number = point.value_number
        return (
            int(number)
            if number is not None and number.is_integer() and abs(number) < 2**53
            else number
        )
    if point.value_type == "boolean":
        return point.value_bool
    if point.value_type == "string":
        return point.value_text
    return None


def point_json(point: DataPoint, details: bool = False) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": point.id,
        "device": point.device_id,
        "origin": point.device_id,
        "variable": point.variable,
        "value": point_value(point),
        "group": point.group,
        "serie": point.group,
        "time": _iso(point.time),
    }
    if point.unit is not None:
        item["unit"] = point.unit
    if point.location is not None:
        item["location"] = point.location
    if point.meta is not None:
        item["metadata"] = point.meta
    if details:
        item["created_at"] = _iso(point.created_at)
    return item


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def run_query(session: AsyncSession, device_id: str, q: DataQuery) -> Any:
    if q.query == "default":
        order = DataPoint.time.asc() if q.ascending else DataPoint.time.desc()
        stmt = (
            q.where(device_id, select(DataPoint))
            .order_by(order, DataPoint.id)
            .offset(q.skip)
            .limit(q.qty)
        )
        return [point_json(p, q.details) for p in (await session.scalars(stmt)).all()]
    if q.query in FIRST_LAST:
        return await _first_last(session, device_id, q)
    return await _stats(session, device_id, q)


async def _first_last(session: AsyncSession, device_id: str, q: DataQuery) -> list[dict[str, Any]]:
    edge, what = q.query.split("_", 1)
    column = DataPoint.created_at if what == "insert" else DataPoint.time
    order = column.desc() if edge == "last" else column.asc()
    base = q.where(device_id, select(DataPoint))
    if what == "value":
        base = base.where(DataPoint.value_type != "null")
    elif what == "location":
        base = base.where(DataPoint.location.is_not(None))
    # One item per requested variable (TagoIO's behaviour); one overall without a filter.
    out = []
    scopes: list[str | None] = list(q.variables) or [None]
    for variable in scopes:
        stmt = base if variable is None else base.where(DataPoint.variable == variable)
        point = (await session.scalars(stmt.order_by(order, DataPoint.id).limit(1))).first()
        if point is not None:
            out.append(point_json(point, q.details))
    return out


async def _stats(session: AsyncSession, device_id: str, q: DataQuery) -> Any:
    if q.query == "count":
        return (
            await session.scalar(q.where(device_id, select(func.count())).select_from(DataPoint))
            or 0
        )
    numeric = q.where(device_id, select(DataPoint)).where(DataPoint.value_type == "number")
    out = []
    variables = q.variables or list(
        (await session.scalars(q.where(device_id, select(DataPoint.variable).distinct()))).all()
    )
    for variable in variables:
        scoped = numeric.where(DataPoint.variable == variable)
        if q.query in ("min", "max"):
            order = (
                DataPoint.value_number.asc() if q.query == "min" else DataPoint.value_number.desc()
            )
            point = (
                await session.scalars(scoped.order_by(order, DataPoint.time.desc()).limit(1))
            ).first()
            if point is not None:
                out.append(point_json(point, q.details))
        else:
            fn = func.avg if q.query == "avg" else func.sum
            sub = scoped.with_only_columns(DataPoint.value_number).subquery()
            value = await session.scalar(select(fn(sub.c.value_number)))
            if value is not None:
                out.append({"variable": variable, "value": float(value), "device": device_id})
    return out
