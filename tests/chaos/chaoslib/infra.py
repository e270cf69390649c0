"""Infrastructure the suite may break: its own Tansu and whole stacks on it (its own
PostgreSQL cluster is sluice.testing.postgres). The machine's shared PostgreSQL, Redis and
Mosquitto are never touched (the shared PostgreSQL only gets throwaway databases)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from sluice import bus, records
from sluice.embedded import EmbeddedKafka, free_port
from sluice.settings import SluiceSettings
from sluice.testing.stack import Stack


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
