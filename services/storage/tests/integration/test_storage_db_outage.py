"""The database goes down while storage writes under load, then comes back: nothing lost.

Uses a throwaway PostgreSQL cluster of its own (initdb into a temporary directory, on a
free port): the machine's shared server is never touched.
"""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from sluice.embedded import free_port
from sluice.testing.stack import Stack
from sluice_api.migrate import upgrade

RECORDS = 2000
ITEMS = 10


class ThrowawayPostgres:
    """A PostgreSQL cluster in a temporary directory, run as the ``postgres`` user if root."""

    def __init__(self, root: Path) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not found:
            pytest.skip("no PostgreSQL server binaries under /usr/lib/postgresql")
        self.bin = Path(found[-1]).parent
        self.root = root
        self.data = root / "data"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/sluice"

    def _run(self, *args: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, *args], check=True, capture_output=True, timeout=120)

    def init(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres")

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off"
        log = str(self.root / "postgres.log")
        self._run(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", log, "-w", "start"
        )

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")


@pytest.fixture
def own_postgres() -> Iterator[ThrowawayPostgres]:
    # Not under pytest's tmp dirs: those are private to root, and the server runs as postgres.
    pg = ThrowawayPostgres(Path(tempfile.mkdtemp(prefix="sluice-own-pg-")))
    try:
        pg.init()
        pg.start()

        async def create() -> None:
            conn = await asyncpg.connect(pg.url.rsplit("/", 1)[0] + "/postgres")
            try:
                await conn.execute("CREATE DATABASE sluice")
            finally:
                await conn.close()
            await upgrade(pg.url)

        asyncio.run(create())
        yield pg
    finally:
        try:
            pg.stop("immediate")
        except subprocess.CalledProcessError:
            pass  # not running
        shutil.rmtree(pg.root, ignore_errors=True)


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
