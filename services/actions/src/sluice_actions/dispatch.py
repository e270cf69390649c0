"""From consumed records to fired actions: ``sluice.uplink`` (topic triggers) and
``sluice.data`` (variable conditions).

Nothing here waits on a webhook or an SMTP server: ``insert`` and ``mqtt`` become records
on ``sluice.ingest`` and ``sluice.downlink``, ``post`` and ``email`` become jobs on
``sluice.action-jobs``. The batch's offsets are committed once Kafka holds all of them.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer

from sluice import records
from sluice.batching import BatchProducer, Output
from sluice.bus import Record
from sluice.config import ActionInfo, ConfigStore, DeviceInfo
from sluice.ids import derived_id
from sluice.inspector import Inspector, Watches
from sluice.normalise import normalise_mqtt_payload
from sluice.topicfilter import validate_topic_name
from sluice_actions import metrics
from sluice_actions.conditions import concerns, decide
from sluice_actions.executor import FALLBACK_HEADER
from sluice_actions.jobs import EMAIL, POST, Job
from sluice_actions.state import ActionStates
from sluice_actions.templates import context_for, render, render_line, render_url
from sluice_actions.triggers import topic_actions

log = logging.getLogger("sluice.actions")


class ActionProblem(Exception):
    """An action that cannot run as defined (reported to its owner, the batch goes on)."""


def header_pairs(headers: Any) -> list[tuple[str, str]]:
    """Webhook headers given as ``{"name": "value"}`` or ``[{"key": ..., "value": ...}]``."""
    if isinstance(headers, Mapping):
        return [(str(k), str(v)) for k, v in headers.items()]
    if isinstance(headers, list):
        return [
            (str(h["key"]), str(h.get("value", "")))
            for h in headers
            if isinstance(h, Mapping) and h.get("key")
        ]
    return []


def recipients(to: Any) -> list[str]:
    """E-mail recipients: a list, or one string separated by ``;`` or ``,``."""
    parts = to if isinstance(to, list) else str(to or "").replace(";", ",").split(",")
    return [str(p).strip() for p in parts if str(p).strip()]


class Outbox:
    """What one batch produces, and what to report once Kafka has acknowledged all of it.

    Records go out in per-partition Kafka batches. A routine success (an ``insert``, one per
    stored message) is reported to the Live Inspector only while someone watches the device;
    every other execution, retry and failure always is.
    """

    def __init__(self, batcher: BatchProducer, inspector: Inspector, watches: Watches) -> None:
        self.batcher = batcher
        self.inspector = inspector
        self.watches = watches
        self.outputs: list[Output] = []
        self.events: list[Output] = []
        self.outcomes: Counter[tuple[str, str]] = Counter()

    async def send(
        self, topic: str, value: bytes, key: str, headers: list[tuple[str, bytes]]
    ) -> None:
        self.outputs.append(Output(topic, key.encode(), value, headers))

    def report(
        self,
        account: str,
        device: str,
        outcome: tuple[str, str] | None,
        *,
        routine: bool = False,
        **event: Any,
    ) -> None:
        """An inspector event, and (type, outcome) to count, once the batch is in Kafka."""
        if outcome is not None:
            self.outcomes[outcome] += 1
        if routine and not self.watches(device):
            return
        fields = {k: v for k, v in event.items() if v is not None}
        value = self.inspector.encode(account, device, "action", **fields)
        self.events.append(Output(self.inspector.topic, device.encode(), value, required=False))

    async def flush(self) -> None:
        # Raises when Kafka fails: the batch is retried and nothing is reported.
        await self.batcher.send(self.outputs)
        for (kind, outcome), count in self.outcomes.items():
            metrics.executions.labels(kind, outcome).inc(count)
        await self.batcher.send(self.events)


class Dispatcher:
    def __init__(
        self,
        store: ConfigStore,
        states: ActionStates,
        producer: AIOKafkaProducer,
        topics: records.TopicNames,
        inspector: Inspector,
        origin: str,
        watches: Watches | None = None,
    ) -> None:
        self.batcher = BatchProducer(producer, "actions")
        self.watches = watches or Watches()
        self.store = store
        self.states = states
        self.producer = producer
        self.topics = topics
        self.inspector = inspector
        self.origin = origin

    async def handle(self, batch: list[Record]) -> None:
        outbox = Outbox(self.batcher, self.inspector, self.watches)
        for record in batch:
            if record.topic == self.topics.uplink:
                await self.on_uplink(record, outbox)
            elif record.topic == self.topics.data:
                await self.on_data(record, outbox)
        await outbox.flush()

    async def on_uplink(self, record: Record, outbox: Outbox) -> None:
        envelope = records.Envelope.from_headers(record.headers)
        device = await self.store.device(envelope.device)
        if device is None or device.account_id != envelope.account:
            return
        fired = topic_actions(
            await self.store.account_actions(envelope.account), device, envelope.topic
        )
        items: list[Any] | None = None
        for action in fired:
            if action.action.get("type") == "insert":
                await self._insert(action, envelope, record, outbox)
                continue
            if items is None:
                force_hex = (device.param("payload_type") or "").lower() == "hex"
                items = normalise_mqtt_payload(
                    record.value or b"", envelope.topic, force_hex=force_hex
                )
            await self.fire(action, device, envelope, items, "unlocked", outbox)

    async def _insert(
        self, action: ActionInfo, envelope: records.Envelope, record: Record, outbox: Outbox
    ) -> None:
        ingest = records.Envelope(
            # Derived, so a replayed uplink record yields the same ingest message.
            message_id=derived_id(envelope.message_id, action.id),
            account=envelope.account,
            device=envelope.device,
            topic=envelope.topic,
            qos=envelope.qos,
            received_at=envelope.received_at,
            origin=envelope.origin,
            kind=records.KIND_MQTT,
            extra={"action": action.id, "uplink_id": envelope.message_id},
        )
        await outbox.send(
            self.topics.ingest, record.value or b"", envelope.device, ingest.to_headers()
        )
        outbox.report(
            envelope.account,
            envelope.device,
            ("insert", "success"),
            routine=True,
            action=action.id,
            name=action.name,
            action_type="insert",
            status="success",
            message_id=envelope.message_id,
        )
        await self.states.touch(action.id)

    async def on_data(self, record: Record, outbox: Outbox) -> None:
        envelope = records.Envelope.from_headers(record.headers)
        actions = [
            a
            for a in await self.store.account_actions(envelope.account)
            if a.type == "condition" and a.id != envelope.extra.get(FALLBACK_HEADER)
        ]
        if not actions:
            return  # most accounts: not even worth parsing the record
        try:
            loaded = records.loads(record.value)
        except ValueError:
            return  # storage dead-letters what it cannot read
        items = [i for i in loaded if isinstance(i, dict)] if isinstance(loaded, list) else []
        variables = {str(i["variable"]) for i in items if isinstance(i.get("variable"), str)}
        if not variables:
            return
        device = await self.store.device(envelope.device)
        if device is None or device.account_id != envelope.account:
            return
        for action in actions:
            if concerns(action.trigger, device, variables):
                await self._evaluate(action, device, envelope, items, outbox)

    async def _evaluate(
        self,
        action: ActionInfo,
        device: DeviceInfo,
        envelope: records.Envelope,
        items: list[dict[str, Any]],
        outbox: Outbox,
    ) -> None:
        state = await self.states.lock_state(action.id)
        if state is None:
            return  # deleted since the config was cached
        if state.changed_by == envelope.message_id:
            # This very record moved the lock before (a crash or a retried batch came
            # between): redo its firing, with the same ids downstream, and nothing else.
            if state.locked:
                again = decide(action.trigger, device, items, locked=False)
                if again.fire:
                    await self.fire(action, device, envelope, again.items, "locked", outbox)
            return
        decision = decide(action.trigger, device, items, state.locked)
        if decision.lock is not None:
            if not await self.states.change_lock(action.id, decision.lock, envelope.message_id):
                return  # another actions process moved it first; it acts on it
            label = "locked" if decision.lock else "unlocked"
            metrics.lock_changes.labels(label).inc()
            log.info(
                "action %s",
                label,
                extra={"action": action.id, "device": device.id, "message_id": envelope.message_id},
            )
            outbox.report(
                envelope.account,
                device.id,
                None,  # counted by sluice_action_lock_changes_total
                action=action.id,
                name=action.name,
                action_type=action.action.get("type"),
                status=label,
                message_id=envelope.message_id,
            )
        if decision.fire:
            state_text = "locked" if decision.lock else "unlocked"
            await self.fire(action, device, envelope, decision.items, state_text, outbox)

    async def fire(
        self,
        action: ActionInfo,
        device: DeviceInfo,
        envelope: records.Envelope,
        items: Sequence[Any],
        action_state: str,
        outbox: Outbox,
    ) -> None:
        """Hand one execution of ``action`` on: to the downlink topic or as a job."""
        kind = str(action.action.get("type", ""))
        first = next((i for i in items if isinstance(i, dict)), None)
        ctx = context_for(
            first,
            device_id=device.id,
            device_name=device.name,
            received_at_ms=envelope.received_at,
            action_state=action_state,
        )
        common: dict[str, Any] = {
            "action": action.id,
            "name": action.name,
            "action_type": kind,
            "message_id": envelope.message_id,
        }
        effect_id = derived_id(envelope.message_id, action.id)
        try:
            if kind == "mqtt":
                details = await self._mqtt(action, device, envelope, ctx, effect_id, outbox)
                outbox.report(
                    envelope.account,
                    device.id,
                    (kind, "success"),
                    status="success",
                    **common,
                    **details,
                )
            elif kind in (POST, EMAIL):
                job = self._job(kind, action, device, envelope, items, ctx, effect_id)
                await outbox.send(
                    self.topics.action_jobs, job.value(), device.id, job.headers(self.origin)
                )
                outbox.report(
                    envelope.account,
                    device.id,
                    (kind, "fired"),
                    status="queued",
                    job=job.id,
                    **common,
                )
            else:
                raise ActionProblem(f"action type {kind!r} cannot run on this trigger")
        except ActionProblem as exc:
            log.warning(
                "action cannot run",
                extra={"action": action.id, "device": device.id, "error": str(exc)},
            )
            outbox.report(
                envelope.account,
                device.id,
                (kind or "unknown", "error"),
                status="error",
                error=str(exc),
                **common,
            )
            return
        await self.states.touch(action.id)

    async def _mqtt(
        self,
        action: ActionInfo,
        device: DeviceInfo,
        envelope: records.Envelope,
        ctx: Any,
        effect_id: str,
        outbox: Outbox,
    ) -> dict[str, Any]:
        spec = action.action
        target_id = str(spec.get("device") or "")
        target = await self.store.device(target_id) if target_id else None
        if target is None or target.account_id != device.account_id:
            raise ActionProblem(f"target device {target_id or '(none)'} not found in this account")
        topic = render(str(spec.get("topic", "")), ctx)
        problem = validate_topic_name(topic)
        if problem:
            raise ActionProblem(f"topic {topic!r}: {problem}")
        payload = spec.get("payload", "")
        text = payload if isinstance(payload, str) else records.dumps(payload).decode()
        qos = spec.get("qos", 0)
        downlink = records.Envelope(
            message_id=effect_id,
            account=envelope.account,
            device=target.id,
            topic=topic,
            qos=qos if qos in (0, 1, 2) else 0,
            retain=spec.get("retain") is True,
            origin=self.origin,
            extra={"action": action.id, "source_device": device.id},
        )
        await outbox.send(
            self.topics.downlink, render(text, ctx).encode(), target.id, downlink.to_headers()
        )
        return {"target": target.id, "topic": topic}

    def _job(
        self,
        kind: str,
        action: ActionInfo,
        device: DeviceInfo,
        envelope: records.Envelope,
        items: Sequence[Any],
        ctx: Any,
        effect_id: str,
    ) -> Job:
        spec = action.action
        if kind == POST:
            url = str(spec.get("url") or "")
            if not url:
                raise ActionProblem("a post action needs a 'url'")
            request: dict[str, Any] = {
                "url": render_url(url, ctx),
                "headers": {
                    name: render_line(value, ctx)
                    for name, value in header_pairs(spec.get("headers"))
                },
                "body": [
                    {**item, "device": device.id} if isinstance(item, dict) else item
                    for item in items
                ],
                "fallback_device": spec.get("fallback_device") or None,
            }
        else:
            to = recipients(spec.get("to"))
            if not to:
                raise ActionProblem("an email action needs recipients in 'to'")
            request = {
                "to": to,
                "subject": render_line(str(spec.get("subject", "")), ctx),
                "message": render(str(spec.get("message", "")), ctx),
            }
        return Job(
            id=effect_id,
            kind=kind,
            attempt=1,
            due_ms=records.now_ms(),
            action=action.id,
            action_name=action.name,
            account=envelope.account,
            device=device.id,
            source=envelope.message_id,
            request=request,
        )
