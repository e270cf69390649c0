"""``GET /data`` and ``DELETE /data``: filters and query modes, as TagoIO's device API has them.

Parsing (``DataQuery.from_params``) is pure; ``run_query`` turns a query into SQL that the
indexes on (device, variable, time), (device, time), (device, group) and (device, created_at)
answer without scanning other devices.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, ColumnElement, Integer, Select, and_, cast, func, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import QueryParams

from sluice.dataitems import format_time, parse_relative, parse_time
from sluice.db.models import DataPoint
from sluice_api.errors import ApiError

DEFAULT_QTY = 15
MAX_QTY = 10_000
MAX_SKIP = 10**12  # past this the database cannot represent the offset
FIRST_LAST = frozenset(
    f"{edge}_{what}"
    for edge in ("first", "last")
    for what in ("item", "value", "location", "insert")
)
STATS = frozenset({"count", "min", "max", "avg", "sum"})
LISTING = frozenset({"default", "conditional"})
QUERIES = LISTING | FIRST_LAST | STATS | {"aggregate"}
# Modes whose result is a list of stored points (what DELETE /data may remove).
POINT_QUERIES = LISTING | FIRST_LAST | {"min", "max"}
INTERVALS = ("minute", "hour", "day", "week", "month", "quarter", "year")
AGGREGATES = ("avg", "sum", "min", "max")
CONDITIONS = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<=", "eq": "=", "ne": "!="}
_TRUE = ("true", "1", "yes")


def _many(params: QueryParams, *names: str) -> list[str]:
    """All values of a list parameter under any spelling: ``a``, ``a[]``, ``a[0]``, ``a=x,y``."""
    out: list[str] = []
    for key, value in params.multi_items():
        if key.split("[", 1)[0] in names and value != "":
            out.append(value)
    return out


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
    interval: str | None = None  # aggregate
    function: str | None = None  # aggregate (avg|sum|min|max) or conditional (gt|…|ne)
    operand: str | None = None  # conditional: the value compared with

    @classmethod
    def from_params(cls, params: QueryParams, now: datetime | None = None) -> DataQuery:
        """The query a request asks for; ApiError(400) naming the parameter when it is wrong."""
        now = now or datetime.now(UTC)
        query = (params.get("query") or "default").strip().lower()
        if query == "defaultq":
            query = "default"
        if query not in QUERIES:
            raise ApiError(
                400, f"Unknown query '{query}'; use one of: {', '.join(sorted(QUERIES))}"
            )
        ordination = (params.get("ordination") or "descending").strip().lower()
        if ordination not in ("asc", "ascending", "desc", "descending"):
            raise ApiError(400, "'ordination' must be 'ascending' or 'descending'")
        q = cls(
            variables=[v.lower() for v in _many(params, "variable", "variables")],
            groups=_many(params, "group", "groups", "serie", "series"),
            ids=_many(params, "id", "ids"),
            values=_many(params, "values")
            if query == "conditional"
            else _many(params, "value", "values"),
            qty=_int(params, "qty", DEFAULT_QTY, 1, MAX_QTY),
            skip=_int(params, "skip", 0, 0, MAX_SKIP),
            ascending=ordination.startswith("asc"),
            start=_date(params, "start_date", now),
            end=_date(params, "end_date", now),
            query=query,
            details=(params.get("details") or params.get("detail") or "").lower() in _TRUE,
        )
        if q.start and q.end and q.start > q.end:
            raise ApiError(400, "'start_date' must be before 'end_date'")
        if query == "aggregate":
            q.interval = _choice(params, "interval", INTERVALS)
            q.function = _choice(params, "function", AGGREGATES)
        elif query == "conditional":
            q.function = _choice(params, "function", tuple(CONDITIONS))
            operand = params.get("value")
            if operand is None or operand == "":
                raise ApiError(400, "query 'conditional' needs 'value', the value to compare with")
            q.operand = operand
            if q.function not in ("eq", "ne") and _number(operand) is None:
                raise ApiError(
                    400, f"function '{q.function}' compares numbers: 'value' must be a number"
                )
        return q

    def where(self, device_id: str, stmt: Select[Any]) -> Select[Any]:
        stmt = stmt.where(DataPoint.device_id == device_id)
        if self.variables:
            stmt = stmt.where(DataPoint.variable.in_(self.variables))
        if self.groups:
            stmt = stmt.where(DataPoint.group.in_(self.groups))
        if self.ids:
            stmt = stmt.where(DataPoint.id.in_(self.ids))
        if self.values:
            stmt = stmt.where(_matches_any(self.values))
        if self.start is not None:
            stmt = stmt.where(DataPoint.time >= self.start)
        if self.end is not None:
            stmt = stmt.where(DataPoint.time <= self.end)
        if self.query == "conditional" and self.operand is not None and self.function:
            stmt = stmt.where(_condition(self.function, self.operand))
        return stmt


def _number(text: str) -> float | None:
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _matches_any(values: list[str]) -> ColumnElement[bool]:
    numbers = [n for n in (_number(v) for v in values) if n is not None]
    booleans = [v.lower() == "true" for v in values if v.lower() in ("true", "false")]
    clauses: list[ColumnElement[bool]] = [DataPoint.value_text.in_(values)]
    if numbers:
        clauses.append(and_(DataPoint.value_type == "number", DataPoint.value_number.in_(numbers)))
    if booleans:
        clauses.append(and_(DataPoint.value_type == "boolean", DataPoint.value_bool.in_(booleans)))
    return or_(*clauses)


def _condition(function: str, operand: str) -> ColumnElement[bool]:
    number = _number(operand)
    if number is not None:
        column = DataPoint.value_number
        numeric = DataPoint.value_type == "number"
        return and_(numeric, column.op(CONDITIONS[function])(number))
    if operand.lower() in ("true", "false"):
        flag = operand.lower() == "true"
        same = and_(DataPoint.value_type == "boolean", DataPoint.value_bool == flag)
    else:
        same = DataPoint.value_text == operand
    return same if function == "eq" else ~same


def _int(params: QueryParams, name: str, default: int, low: int, high: int | None) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"'{name}' must be an integer (got '{raw}')") from None
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ApiError(400, f"'{name}' must be {bound} (got {value})")
    return value


def _choice(params: QueryParams, name: str, allowed: tuple[str, ...]) -> str:
    raw = (params.get(name) or "").strip().lower()
    if raw not in allowed:
        query = params.get("query")
        got = f" (got '{raw}')" if raw else ""
        raise ApiError(400, f"query '{query}' needs '{name}', one of: {', '.join(allowed)}{got}")
    return raw


def _date(params: QueryParams, name: str, now: datetime) -> datetime | None:
    raw = params.get(name)
    if not raw:
        return None
    relative = parse_relative(raw)
    if relative is not None:
        return now - relative
    try:
        return parse_time(float(raw) if _number(raw) is not None else raw, now)
    except ValueError:
        raise ApiError(
            400,
            f"'{name}' must be an ISO 8601 time, an epoch, or relative like '1 day' (got '{raw}')",
        ) from None


def point_value(point: DataPoint) -> Any:
    if point.value_type == "number":
        return _plain_number(point.value_number)
    if point.value_type == "boolean":
        return point.value_bool
    if point.value_type == "string":
        return point.value_text
    return None


def _plain_number(number: float | None) -> float | int | None:
    """Whole numbers as integers (``21`` rather than ``21.0``), as the device sent them."""
    if number is not None and number.is_integer() and abs(number) < 2**53:
        return int(number)
    return number


def point_json(point: DataPoint, details: bool = False) -> dict[str, Any]:
    """A stored point as TagoIO returns it (fields without a value are left out)."""
    item: dict[str, Any] = {
        "id": point.id,
        "device": point.device_id,
        "origin": point.device_id,
        "variable": point.variable,
        "group": point.group,
        "serie": point.group,
        "time": format_time(point.time),
    }
    if point.value_type != "null":
        item["value"] = point_value(point)
    if point.unit is not None:
        item["unit"] = point.unit
    if point.location is not None:
        item["location"] = point.location
    if point.meta is not None:
        item["metadata"] = point.meta
    if details:
        item["created_at"] = format_time(point.created_at)
    return item


async def run_query(session: AsyncSession, device_id: str, q: DataQuery) -> Any:
    """The result of a query: a list of items, or a number for ``count``."""
    if q.query == "count":
        stmt = q.where(device_id, select(func.count()).select_from(DataPoint))
        return int(await session.scalar(stmt) or 0)
    if q.query == "aggregate":
        return await _aggregate(session, device_id, q)
    if q.query in ("avg", "sum"):
        return await _avg_sum(session, device_id, q)
    return [point_json(p, q.details) for p in await query_points(session, device_id, q)]


async def query_points(session: AsyncSession, device_id: str, q: DataQuery) -> list[DataPoint]:
    """The stored points a listing, first/last or min/max query selects."""
    if q.query in LISTING:
        order = DataPoint.time.asc() if q.ascending else DataPoint.time.desc()
        stmt = (
            q.where(device_id, select(DataPoint))
            .order_by(order, DataPoint.id)
            .offset(q.skip)
            .limit(q.qty)
        )
        return list((await session.scalars(stmt)).all())
    if q.query in FIRST_LAST:
        return await _first_last(session, device_id, q)
    if q.query in ("min", "max"):
        return await _min_max(session, device_id, q)
    raise ApiError(400, f"query '{q.query}' does not select data points")


async def _variables(session: AsyncSession, device_id: str, q: DataQuery) -> list[str]:
    if q.variables:
        return q.variables
    stmt = q.where(device_id, select(DataPoint.variable).distinct()).order_by(DataPoint.variable)
    return list((await session.scalars(stmt)).all())


async def _first_last(session: AsyncSession, device_id: str, q: DataQuery) -> list[DataPoint]:
    edge, what = q.query.split("_", 1)
    column = DataPoint.created_at if what == "insert" else DataPoint.time
    order = column.desc() if edge == "last" else column.asc()
    base = q.where(device_id, select(DataPoint))
    if what == "value":
        base = base.where(DataPoint.value_type != "null")
    elif what == "location":
        # SQL NULL or JSON null: the ORM writes a missing location as the latter.
        base = base.where(DataPoint.location.is_not(None), DataPoint.location != JSON.NULL)
    # One item per requested variable (TagoIO's behaviour); one overall without a filter.
    out = []
    scopes: list[str | None] = list(q.variables) or [None]
    for variable in scopes:
        stmt = base if variable is None else base.where(DataPoint.variable == variable)
        point = (await session.scalars(stmt.order_by(order, DataPoint.id).limit(1))).first()
        if point is not None:
            out.append(point)
    return out


async def _min_max(session: AsyncSession, device_id: str, q: DataQuery) -> list[DataPoint]:
    """Per variable, the point holding the smallest or largest number (latest on a tie)."""
    numeric = q.where(device_id, select(DataPoint)).where(DataPoint.value_type == "number")
    order = DataPoint.value_number.asc() if q.query == "min" else DataPoint.value_number.desc()
    out = []
    for variable in await _variables(session, device_id, q):
        stmt = numeric.where(DataPoint.variable == variable)
        stmt = stmt.order_by(order, DataPoint.time.desc(), DataPoint.id).limit(1)
        point = (await session.scalars(stmt)).first()
        if point is not None:
            out.append(point)
    return out


async def _avg_sum(session: AsyncSession, device_id: str, q: DataQuery) -> list[dict[str, Any]]:
    """Per variable, the average or sum of its numbers: ``{"variable", "value", ...}``."""
    fn = func.avg if q.query == "avg" else func.sum
    stmt = (
        q.where(
            device_id,
            select(DataPoint.variable, fn(DataPoint.value_number), func.count()),
        )
        .where(DataPoint.value_type == "number")
        .group_by(DataPoint.variable)
        .order_by(DataPoint.variable)
    )
    return [
        {
            "variable": variable,
            "value": _plain_number(float(value)),
            "device": device_id,
            "origin": device_id,
            "count": count,
        }
        for variable, value, count in (await session.execute(stmt)).all()
        if value is not None
    ]


def _bucket(dialect: str, interval: str) -> ColumnElement[Any]:
    """The start of the interval holding each point's time (UTC), in SQL."""
    if dialect == "postgresql":
        return func.date_trunc(interval, func.timezone("UTC", DataPoint.time))
    # SQLite keeps times as 'YYYY-MM-DD HH:MM:SS.ffffff' text in UTC.
    time = DataPoint.time
    if interval == "week":
        return func.date(time, "weekday 0", "-6 days").concat(" 00:00:00")
    if interval == "quarter":
        month = (cast(func.strftime("%m", time), Integer) - 1) / 3 * 3 + 1
        return func.printf("%s-%02d-01 00:00:00", func.strftime("%Y", time), month)
    formats = {
        "minute": "%Y-%m-%d %H:%M:00",
        "hour": "%Y-%m-%d %H:00:00",
        "day": "%Y-%m-%d 00:00:00",
        "month": "%Y-%m-01 00:00:00",
        "year": "%Y-01-01 00:00:00",
    }
    return func.strftime(literal(formats[interval]), time)


def _bucket_time(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return datetime.fromisoformat(str(value)).replace(tzinfo=UTC)


async def _aggregate(session: AsyncSession, device_id: str, q: DataQuery) -> list[dict[str, Any]]:
    """Per variable and interval, one number: ``{"variable", "value", "time", ...}``."""
    interval, function = q.interval or "hour", q.function or "avg"
    fn = getattr(func, function)
    bucket = _bucket(session.get_bind().dialect.name, interval).label("bucket")
    stmt = (
        q.where(
            device_id,
            select(DataPoint.variable, bucket, fn(DataPoint.value_number), func.count()),
        )
        .where(DataPoint.value_type == "number")
        .group_by(DataPoint.variable, bucket)
        .order_by(bucket.asc() if q.ascending else bucket.desc(), DataPoint.variable)
        .offset(q.skip)
        .limit(q.qty)
    )
    return [
        {
            "variable": variable,
            "value": _plain_number(float(value)),
            "time": format_time(_bucket_time(start)),
            "device": device_id,
            "origin": device_id,
            "count": count,
        }
        for variable, start, value, count in (await session.execute(stmt)).all()
        if value is not None
    ]
