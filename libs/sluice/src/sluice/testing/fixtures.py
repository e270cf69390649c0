"""Pytest fixtures shared by every test suite: real Tansu, real SQL, a real stack.

Databases: SQLite always; PostgreSQL when ``SLUICE_TEST_DATABASE_URL`` is set or a server
answers on 127.0.0.1:5432. The run's header and summary say which were used.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from sluice import bus, records
from sluice.embedded import EmbeddedKafka
from sluice.settings import SluiceSettings
from sluice.testing.postgres import ThrowawayPostgres
from sluice.testing.stack import Stack

PG_DEFAULT = "postgresql://postgres@127.0.0.1:5432/test"
_used_backends: Counter[str] = Counter()


def postgres_admin_url() -> str | None:
    """The PostgreSQL server tests may use, or None when there is none."""
    url = os.environ.get("SLUICE_TEST_DATABASE_URL")
    if url:
        return url
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=0.5):
            return PG_DEFAULT
    except OSError:
        return None


def pytest_report_header(config: pytest.Config) -> str:
    pg = postgres_admin_url()
    where = (
        f"PostgreSQL at {pg.split('@')[-1]}" if pg else "no PostgreSQL reachable (those cases skip)"
    )
    return f"sluice databases: SQLite (temporary files) and {where}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    yield
    params = getattr(getattr(item, "callspec", None), "params", {})
    fixtures = getattr(item, "fixturenames", ())
    for name in ("database_url", "stack"):
        if name in params:
            _used_backends[params[name]] += 1
            break
    else:
        if "sqlite_url" in fixtures or "sqlite_stack" in fixtures:
            _used_backends["sqlite"] += 1


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _used_backends:
        used = ", ".join(f"{name}: {count} tests" for name, count in sorted(_used_backends.items()))
        terminalreporter.write_sep("-", f"sluice databases used: {used}")


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedKafka]:
    """One embedded Tansu for the whole run; tests isolate themselves by topic prefix."""
    log = tmp_path_factory.mktemp("tansu") / "tansu.log"
    broker = EmbeddedKafka(log_path=log)
    broker.start()
    asyncio.run(broker.wait_ready())
    yield broker
    broker.stop()


@pytest.fixture
def topic_prefix(kafka: EmbeddedKafka) -> str:
    prefix = f"t{uuid.uuid4().hex[:10]}."
    settings = SluiceSettings(kafka_bootstrap=kafka.bootstrap, topic_partitions=4)
    asyncio.run(bus.ensure_topics(settings, records.TopicNames(prefix)))
    return prefix


@pytest.fixture
def settings(kafka: EmbeddedKafka, topic_prefix: str) -> SluiceSettings:
    return SluiceSettings(
        kafka_bootstrap=kafka.bootstrap,
        topic_prefix=topic_prefix,
        kafka_fast_groups=True,
        node_id=f"test-{uuid.uuid4().hex[:6]}",
    )


async def _create_pg_database(admin_url: str, name: str) -> str:
    import asyncpg

    conn = await asyncpg.connect(admin_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base = admin_url.rsplit("/", 1)[0]
    return f"{base}/{name}"


async def _drop_pg_database(admin_url: str, name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(admin_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def new_database(kind: str, tmp_path: Path) -> tuple[str, Any]:
    """(url, cleanup) for a fresh, migrated database of the given kind."""
    from sluice_api.migrate import upgrade

    if kind == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'sluice.db'}"
        asyncio.run(upgrade(url))
        return url, lambda: None
    admin = postgres_admin_url()
    if admin is None:
        pytest.skip("PostgreSQL is not reachable (set SLUICE_TEST_DATABASE_URL to use one)")
    name = f"sluice_t_{uuid.uuid4().hex[:10]}"
    url = asyncio.run(_create_pg_database(admin, name))
    asyncio.run(upgrade(url))
    return url, lambda: asyncio.run(_drop_pg_database(admin, name))


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh migrated database: each test using it runs on SQLite and on PostgreSQL."""
    url, cleanup = new_database(request.param, tmp_path)
    yield url
    cleanup()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> Iterator[str]:
    url, cleanup = new_database("sqlite", tmp_path)
    yield url
    cleanup()


def _start_stack(kafka: EmbeddedKafka, kind: str, tmp: Path) -> tuple[Stack, Any]:
    url, cleanup = new_database(kind, tmp)
    prefix = f"s{uuid.uuid4().hex[:10]}."
    settings = SluiceSettings(kafka_bootstrap=kafka.bootstrap, topic_partitions=4)
    asyncio.run(bus.ensure_topics(settings, records.TopicNames(prefix)))
    stack = Stack(kafka.bootstrap, url, prefix, tmp / "logs")
    try:
        stack.start()
    except Exception:
        stack.stop()
        cleanup()
        raise
    return stack, cleanup


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def stack(
    request: pytest.FixtureRequest, kafka: EmbeddedKafka, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """The whole stack on each database, shared by a run; tests isolate by account."""
    s, cleanup = _start_stack(
        kafka, request.param, tmp_path_factory.mktemp(f"stack-{request.param}")
    )
    yield s
    s.stop()
    cleanup()


@pytest.fixture(scope="session")
def sqlite_stack(kafka: EmbeddedKafka, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The whole stack on SQLite only (for tests whose subject is not the database)."""
    s, cleanup = _start_stack(kafka, "sqlite", tmp_path_factory.mktemp("stack-sqlite-only"))
    yield s
    s.stop()
    cleanup()


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[Any]:
    from sluice.db import create_engine

    eng = create_engine(database_url)
    yield eng
    await eng.dispose()


@pytest.fixture
def own_postgres() -> Iterator[ThrowawayPostgres]:
    """A PostgreSQL cluster of the test's own, to stop and start (sluice.testing.postgres)."""
    pg = ThrowawayPostgres()
    try:
        pg.create()
        yield pg
    finally:
        pg.destroy()
