"""What the job runner does with a job: attempt it, and after the last failure hand it on."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaProducer

from sluice import bus, records
from sluice.bus import Record
from sluice.config import ConfigStore
from sluice.ids import derived_id
from sluice_actions import metrics
from sluice_actions.effects import AttemptResult, HttpPoster, Mailer
from sluice_actions.jobs import POST, Job

# Header that marks data a post action handed to its fallback device: that action is not
# evaluated again on it (an action whose fallback device is in its own scope would loop).
FALLBACK_HEADER = "fallback_action"


def fallback_items(body: Iterable[Any], *, error: str, url: str, attempts: int) -> list[Any]:
    """The data a webhook did not take, with why in each item's metadata."""
    items = []
    for item in body:
        if not isinstance(item, dict):
            continue
        metadata = item.get("metadata")
        items.append(
            {
                **item,
                "metadata": {
                    **(metadata if isinstance(metadata, dict) else {}),
                    "_http_error": error,
                    "_http_url": url,
                    "_http_attempts": attempts,
                },
            }
        )
    return items


class Executor:
    def __init__(
        self,
        store: ConfigStore,
        poster: HttpPoster,
        mailer: Mailer,
        producer: AIOKafkaProducer,
        topics: records.TopicNames,
        origin: str,
    ) -> None:
        self.store = store
        self.poster = poster
        self.mailer = mailer
        self.producer = producer
        self.topics = topics
        self.origin = origin

    async def wanted(self, job: Job) -> bool:
        """False once the action is deleted or deactivated: its pending retries stop."""
        return any(a.id == job.action for a in await self.store.account_actions(job.account))

    async def attempt(self, job: Job) -> AttemptResult:
        if job.kind == POST:
            return await self.poster.attempt(job)
        return await self.mailer.attempt(job)

    async def give_up(self, job: Job, result: AttemptResult, record: Record) -> str:
        """After the last failure: the fallback device gets the data, or the job is parked."""
        fallback = job.request.get("fallback_device") if job.kind == POST else None
        if fallback:
            items = fallback_items(
                job.request.get("body") or (),
                error=result.error,
                url=str(job.request.get("url", "")),
                attempts=job.attempt,
            )
            if items:
                envelope = records.Envelope(
                    message_id=derived_id(job.id, "fallback"),
                    account=job.account,
                    device=str(fallback),
                    kind=records.KIND_ITEMS,
                    origin=self.origin,
                    extra={FALLBACK_HEADER: job.action, "source_device": job.device},
                )
                await self.producer.send_and_wait(
                    self.topics.ingest,
                    records.dumps(items),
                    key=str(fallback).encode(),
                    headers=envelope.to_headers(),
                )
                metrics.fallbacks.inc()
                return f"data sent to fallback device {fallback}"
        await bus.dead_letter(
            self.producer,
            self.topics,
            record,
            "actions",
            f"{job.kind} failed after {job.attempt} attempts: {result.error}",
        )
        return "dead-lettered"
