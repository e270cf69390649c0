"""Where the writer's rows go: one adapter per database, both idempotent on the row id.

SQLite goes through SQLAlchemy (an executemany of ``INSERT … ON CONFLICT DO NOTHING``);
PostgreSQL through the pool's asyncpg connection directly: a binary COPY into a staging
table, then one ``INSERT … SELECT … ON CONFLICT DO NOTHING`` per batch, which skips the
per-row ORM and parameter work.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, Protocol, cast

import asyncpg
import orjson
from sqlalchemy import Table, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError, StatementError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from sluice.db.models import DataPoint, Device
from sluice_storage.rows import COLUMNS


class PointTx(Protocol):
    async def count(self, device_id: str) -> int: ...
    async def existing(self, ids: list[str]) -> set[str]: ...
    async def insert(self, rows: list[dict[str, Any]]) -> None: ...
    async def touch(self, last_input: dict[str, datetime]) -> None: ...


class PointStore(Protocol):
    def transaction(self) -> Any: ...  # an async context manager yielding a PointTx
    def is_data_error(self, exc: BaseException) -> bool: ...


# --- SQLAlchemy (SQLite, and PostgreSQL when asked) -------------------------------------


class SqlTx:
    def __init__(self, conn: AsyncConnection, dialect: str) -> None:
        self.conn = conn
        table = cast(Table, DataPoint.__table__)
        stmt = postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
        self._insert = stmt.on_conflict_do_nothing(index_elements=["id"])

    async def count(self, device_id: str) -> int:
        stmt = select(func.count()).select_from(DataPoint).where(DataPoint.device_id == device_id)
        return int((await self.conn.execute(stmt)).scalar_one())

    async def existing(self, ids: list[str]) -> set[str]:
        rows = await self.conn.execute(select(DataPoint.id).where(DataPoint.id.in_(ids)))
        return {r[0] for r in rows}

    async def insert(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            await self.conn.execute(self._insert, rows)

    async def touch(self, last_input: dict[str, datetime]) -> None:
        for device_id, when in last_input.items():
            await self.conn.execute(
                update(Device).where(Device.id == device_id).values(last_input=when)
            )


class SqlPointStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqlTx]:
        async with self.engine.begin() as conn:
            yield SqlTx(conn, self.engine.dialect.name)

    def is_data_error(self, exc: BaseException) -> bool:
        if isinstance(exc, IntegrityError):
            return True
        if isinstance(exc, DBAPIError):
            return not exc.connection_invalidated and type(exc).__name__ in (
                "DataError",
                "IntegrityError",
            )
        return isinstance(exc, StatementError)


# --- PostgreSQL fast path: binary COPY into a staging table, one INSERT … SELECT --------

_JSON_COLUMNS = frozenset({"location", "metadata"})
_STAGING = "sluice_staging_points"
_NAMES = ", ".join(f'"{c}"' for c in COLUMNS)
# Per session, emptied at every commit; LIKE copies the column types and NOT NULLs, so
# the COPY already refuses what the table would (too long a unit, a missing variable).
_CREATE_STAGING = (
    f"CREATE TEMP TABLE IF NOT EXISTS {_STAGING} (LIKE data_points) ON COMMIT DELETE ROWS"
)
_MERGE = (
    f"INSERT INTO data_points ({_NAMES}) SELECT {_NAMES} FROM {_STAGING} "
    "ON CONFLICT (id) DO NOTHING"
)


def _json_text(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


class PgTx:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def count(self, device_id: str) -> int:
        return int(
            await self.conn.fetchval(
                "SELECT count(*) FROM data_points WHERE device_id = $1", device_id
            )
        )

    async def existing(self, ids: list[str]) -> set[str]:
        found = await self.conn.fetch(
            "SELECT id FROM data_points WHERE id = ANY($1::varchar[])", ids
        )
        return {r[0] for r in found}

    async def insert(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        tuples = [
            (
                r["id"],
                r["device_id"],
                r["variable"],
                r["value_type"],
                r["value_number"],
                r["value_text"],
                r["value_bool"],
                r["unit"],
                r["group"],
                r["time"],
                _json_text(r["location"]),
                _json_text(r["metadata"]),
                r["message_id"],
                r["created_at"],
            )
            for r in rows
        ]
        await self.conn.execute(_CREATE_STAGING)
        await self.conn.copy_records_to_table(_STAGING, records=tuples, columns=COLUMNS)
        await self.conn.execute(_MERGE)

    async def touch(self, last_input: dict[str, datetime]) -> None:
        if last_input:
            await self.conn.executemany(
                "UPDATE devices SET last_input = $2 WHERE id = $1", list(last_input.items())
            )


class PgPointStore:
    """Writes through the pool's asyncpg connection directly: no per-row ORM overhead."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PgTx]:
        async with self.engine.connect() as conn:
            raw = await conn.get_raw_connection()
            driver = cast(asyncpg.Connection, raw.driver_connection)
            try:
                async with driver.transaction():
                    yield PgTx(driver)
            except BaseException as exc:
                if not self.is_data_error(exc):
                    # The connection may be dead (server restarted): never hand it out again.
                    await conn.invalidate()
                raise

    def is_data_error(self, exc: BaseException) -> bool:
        return isinstance(exc, asyncpg.DataError | asyncpg.IntegrityConstraintViolationError)


def point_store(engine: AsyncEngine) -> PointStore:
    if engine.dialect.name == "postgresql":
        return PgPointStore(engine)
    return SqlPointStore(engine)
