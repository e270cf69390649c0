"""A PostgreSQL cluster of a test's own, to stop and start at will.

initdb into a temporary directory, on a free port, run as the ``postgres`` user when the
tests run as root: the machine's shared server is never touched.
"""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from sluice.embedded import free_port


class ThrowawayPostgres:
    def __init__(self, prefix: str = "sluice-own-pg-") -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not found:
            pytest.skip("no PostgreSQL server binaries under /usr/lib/postgresql")
        self.bin = Path(found[-1]).parent
        # Not under pytest's tmp dirs: those are private to root, and the server runs as postgres.
        self.root = Path(tempfile.mkdtemp(prefix=prefix))
        self.data = self.root / "data"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/sluice"

    def _run(self, *args: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, *args], check=True, capture_output=True, timeout=120)

    def create(self) -> None:
        """initdb, start, and a database ``sluice`` with Sluice's migrations applied."""
        import asyncpg

        from sluice_api.migrate import upgrade

        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres")
        self.start()

        async def create_database() -> None:
            conn = await asyncpg.connect(self.url.rsplit("/", 1)[0] + "/postgres")
            try:
                await conn.execute("CREATE DATABASE sluice")
            finally:
                await conn.close()
            await upgrade(self.url)

        asyncio.run(create_database())

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
