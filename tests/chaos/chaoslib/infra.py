"""Infrastructure the suite may break: its own Tansu, its own PostgreSQL cluster, and whole
stacks on them. The machine's shared PostgreSQL, Redis and Mosquitto are never touched
(the shared PostgreSQL only gets a throwaway database, as the repository's fixtures do)."""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest

from sluice import bus, records
from sluice.embedded import EmbeddedKafka, free_port
from sluice.settings import SluiceSettings
from sluice.testing.fixtures import postgres_admin_url
from sluice.testing.stack import Stack
from sluice_api.migrate import upgrade


def create_topics(bootstrap: str, prefix: str, partitions: int = 4) -> None:
    """What ``sluice run``'s supervisor does on a (re)started broker."""
    settings = SluiceSettings(kafka_bootstrap=bootstrap, topic_partitions=partitions)
    asyncio.run(bus.ensure_topics(settings, records.TopicNames(prefix)))


def own_tansu(log_dir: Path) -> EmbeddedKafka:
    """A Tansu of this test alone, on a fixed free port so it can come back on the same one."""
    log_dir.mkdir(parents=True, exist_ok=True)
    broker = EmbeddedKafka(port=free_port(), log_path=log_dir / "tansu.log")
    broker.start()
    asyncio.run(broker.wait_ready())
    return broker


class ThrowawayPostgres:
    """A PostgreSQL cluster in a temporary directory (run as ``postgres`` when we are root),
    on a free port: the approach of services/storage/tests/integration/test_storage_db_outage.py.
    """

    def __init__(self) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not found:
            pytest.skip("no PostgreSQL server binaries under /usr/lib/postgresql")
        self.bin = Path(found[-1]).parent
        # Not under pytest's tmp dirs: those are private to root, and the server runs as postgres.
        self.root = Path(tempfile.mkdtemp(prefix="sluice-chaos-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/sluice"

    def _run(self, *args: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, *args], check=True, capture_output=True, timeout=120)

    def init(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres")
        self.start()

        async def create() -> None:
            conn = await asyncpg.connect(self.url.rsplit("/", 1)[0] + "/postgres")
            try:
                await conn.execute("CREATE DATABASE sluice")
            finally:
                await conn.close()
            await upgrade(self.url)

        asyncio.run(create())

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off"
        log = str(self.root / "postgres.log")
        self._run(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", log, "-w", "start"
        )

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def destroy(self) -> None:
        try:
            self.stop("immediate")
        except subprocess.CalledProcessError:
            pass  # not running
        shutil.rmtree(self.root, ignore_errors=True)


def new_database(kind: str, tmp: Path) -> tuple[str, Callable[[], None]]:
    """(url, cleanup) of a fresh migrated database: a SQLite file, or a throwaway database
    on the shared PostgreSQL server (skipped when none answers)."""
    if kind == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp / 'sluice.db'}"
        asyncio.run(upgrade(url))
        return url, lambda: None
    admin = postgres_admin_url()
    if admin is None:
        pytest.skip("PostgreSQL is not reachable (set SLUICE_TEST_DATABASE_URL to use one)")
    name = f"sluice_chaos_{uuid.uuid4().hex[:10]}"
    admin_dsn = admin.replace("postgresql+asyncpg://", "postgresql://")

    async def execute(sql: str) -> None:
        conn = await asyncpg.connect(admin_dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(execute(f'CREATE DATABASE "{name}"'))
    url = f"{admin.rsplit('/', 1)[0]}/{name}"
    asyncio.run(upgrade(url))
    return url, lambda: asyncio.run(execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def start_stack(
    bootstrap: str,
    database_url: str,
    log_dir: Path,
    *,
    services: tuple[str, ...] | None = None,
    **env: str,
) -> Stack:
    """Every service (or ``services``) as child processes on fresh topics."""
    prefix = f"c{uuid.uuid4().hex[:10]}."
    create_topics(bootstrap, prefix)
    kwargs = {"services": services} if services else {}
    stack = Stack(bootstrap, database_url, prefix, log_dir, **kwargs)  # type: ignore[arg-type]
    stack.extra_env.update(env)
    try:
        stack.start()
    except Exception:
        stack.stop()
        raise
    return stack
