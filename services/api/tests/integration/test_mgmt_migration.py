"""Revision 0004 on SQLite and PostgreSQL: a token's serie_number becomes unique within its
account, keeping it on the oldest of any duplicates made before; and it downgrades."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from sluice.db import Account, Device, DeviceToken, create_engine
from sluice.testing.fixtures import postgres_admin_url
from sluice_api.migrate import alembic_config, upgrade


async def _admin(url: str, statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'migrate.db'}"
        return
    admin = postgres_admin_url()
    if admin is None:
        pytest.skip("PostgreSQL is not reachable (set SLUICE_TEST_DATABASE_URL to use one)")
    name = f"sluice_m_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin(admin, f'CREATE DATABASE "{name}"'))
    yield f"{admin.rsplit('/', 1)[0]}/{name}"
    asyncio.run(_admin(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _downgrade(url: str, revision: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(lambda sync: command.downgrade(alembic_config(sync), revision))
    finally:
        await engine.dispose()


def _token(n: int, serie: str | None, account: str = "a" * 24) -> dict[str, object]:
    return {
        "id": f"{n:024x}",
        "token_hash": f"{n:064x}",
        "device_id": "d" * 24,
        "account_id": account,
        "name": "",
        "permission": "full",
        "serie_number": serie,
    }


async def _scenario(url: str) -> None:
    await upgrade(url, "0001")
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(insert(Account).values(id="a" * 24, name="acme", plan="free"))
            await conn.execute(
                insert(Device).values(id="d" * 24, account_id="a" * 24, name="dev", tags=[])
            )
            await conn.execute(
                insert(DeviceToken),
                [_token(1, "SN-1"), _token(2, "SN-1"), _token(3, "SN-2"), _token(4, None)],
            )
        await upgrade(url)
        async with engine.begin() as conn:
            rows = (await conn.execute(select(DeviceToken.id, DeviceToken.serie_number))).all()
            assert sorted(rows) == [
                (f"{1:024x}", "SN-1"),  # the oldest keeps its serial
                (f"{2:024x}", None),
                (f"{3:024x}", "SN-2"),
                (f"{4:024x}", None),
            ]
            await conn.execute(insert(DeviceToken).values(**_token(5, None)))  # nulls may repeat
        with pytest.raises(IntegrityError):
            async with engine.begin() as conn:
                await conn.execute(insert(DeviceToken).values(**_token(6, "SN-2")))
        await _downgrade(url, "0004@-1")
        async with engine.begin() as conn:
            await conn.execute(insert(DeviceToken).values(**_token(7, "SN-2")))
    finally:
        await engine.dispose()


def test_serie_number_becomes_unique_per_account(empty_database: str) -> None:
    asyncio.run(_scenario(empty_database))
