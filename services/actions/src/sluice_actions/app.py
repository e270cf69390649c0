"""Composition root of the actions service.

Two consumer groups in one process: triggers (``sluice.uplink`` + ``sluice.data``), which
only produce records and so never wait on the outside world, and jobs
(``sluice.action-jobs``), which call webhooks and SMTP servers with retries.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import httpx

from sluice import bus, records
from sluice.config import ConfigStore, follow_control
from sluice.db import create_engine, session_factory
from sluice.inspector import Inspector, Watches
from sluice.service import consumer_check, database_check, run_until_stopped, start_health
from sluice_actions.dispatch import Dispatcher
from sluice_actions.effects import HttpPoster, Mailer
from sluice_actions.executor import Executor
from sluice_actions.runner import JobRunner
from sluice_actions.settings import ActionsSettings
from sluice_actions.state import ActionStates

log = logging.getLogger("sluice.actions")


def _runner_check(runner: JobRunner) -> Callable[[], Awaitable[str | None]]:
    async def check() -> str | None:
        return None if runner.joined else "job consumer has not joined its group yet"

    return check


async def serve(settings: ActionsSettings, stop: asyncio.Event) -> None:
    topics = records.TopicNames(settings.topic_prefix)
    origin = f"actions:{settings.node_id}"
    engine = create_engine(settings.database_url)
    sessions = session_factory(engine)
    store = ConfigStore(sessions, settings.control_cache_ttl)
    states = ActionStates(sessions, settings.control_cache_ttl)
    store.listeners.append(states.on_control)
    producer = bus.make_producer(settings)
    await bus.start_with_retry(producer, "actions producer", stop)
    inspector = Inspector(producer, topics, "actions")
    http = httpx.AsyncClient(
        timeout=settings.action_http_timeout,
        follow_redirects=False,
        limits=httpx.Limits(max_connections=settings.action_concurrency),
        headers={"User-Agent": "Sluice-Actions/0.1"},
    )
    executor = Executor(
        store,
        HttpPoster(http),
        Mailer(states.smtp_settings, settings.action_smtp_timeout),
        producer,
        topics,
        origin,
    )
    watches = Watches()
    store.listeners.append(watches.apply)
    dispatcher = Dispatcher(store, states, producer, topics, inspector, origin, watches)
    trigger_topics = [topics.uplink, topics.data]
    consumer = bus.make_group_consumer(settings, trigger_topics, settings.actions_group)
    loop = bus.ConsumerLoop(consumer, trigger_topics, dispatcher.handle, name="actions")
    jobs_consumer = bus.make_group_consumer(
        settings, [topics.action_jobs], settings.actions_jobs_group, max_poll_records=500
    )
    runner = JobRunner(jobs_consumer, producer, topics, executor, inspector, settings, origin)
    control = bus.Tail(settings, [topics.control])
    health = await start_health(
        settings,
        {
            "database": database_check(engine),
            "kafka": consumer_check(loop),
            "jobs": _runner_check(runner),
        },
    )
    try:
        await control.start(stop)
        await loop.start(stop)
        await runner.start(stop)
        await run_until_stopped(
            stop, loop.run(stop), runner.run(stop), follow_control(control, store, stop)
        )
    finally:
        await loop.stop()
        await runner.stop()
        await control.stop()
        await producer.stop()
        await http.aclose()
        if health:
            await health.stop()
        await engine.dispose()
