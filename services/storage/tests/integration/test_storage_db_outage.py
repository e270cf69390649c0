"""The database goes down while storage writes under load, then comes back: nothing lost.

Uses a throwaway PostgreSQL cluster of its own (initdb into a temporary directory, on a
free port): the machine's shared server is never touched.
"""

from __future__ import annotations

import asyncio

import pytest

from sluice.testing.postgres import ThrowawayPostgres
from sluice.testing.stack import Stack

RECORDS = 2000
ITEMS = 10


@pytest.fixture
def database_url(own_postgres: ThrowawayPostgres) -> str:
    """This file's tests use the throwaway cluster, not the shared server."""
    return own_postgres.url


async def test_database_restart_under_load_loses_nothing(
    own_postgres: ThrowawayPostgres,
    engine,
    new_device,
    make_record,
    rows_of,
    load,
    storage_only: Stack,
) -> None:
    device = await new_device()
    batch = [make_record(device, list(range(ITEMS)), offset=i) for i in range(RECORDS)]
    producing = asyncio.create_task(load(storage_only, batch, pause_every=100))
    deadline = asyncio.get_running_loop().time() + 60
    while await rows_of(engine, device) == 0:
        assert asyncio.get_running_loop().time() < deadline, storage_only.logs()
        await asyncio.sleep(0.02)
    # Crash the database in the middle of the load; storage must hold its offsets.
    await asyncio.to_thread(own_postgres.stop, "immediate")
    await producing
    await asyncio.sleep(2)  # storage keeps failing and backing off meanwhile
    assert storage_only.processes["storage"].alive(), storage_only.logs()
    await asyncio.to_thread(own_postgres.start)
    await engine.dispose()  # the test's own pool holds connections to the dead server

    deadline = asyncio.get_running_loop().time() + 90
    while (count := await rows_of(engine, device)) < RECORDS * ITEMS:
        assert asyncio.get_running_loop().time() < deadline, f"stuck at {count} rows"
        await asyncio.sleep(0.2)
    assert count == RECORDS * ITEMS
    log = storage_only.processes["storage"].log_path.read_text(errors="replace")
    assert "failed; retrying in" in log  # it did fail and retry, not skip
