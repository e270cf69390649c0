"""Jobs on ``sluice.action-jobs``: one webhook call or e-mail the service owes (pure).

A job record asks for one attempt at a due time. A failed attempt is followed by a new
record for the next attempt, so the topic is the durable schedule: whatever it holds
past the committed offset is still to do, even after a crash.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from sluice import records

POST = "post"
EMAIL = "email"
JOB_KINDS = (POST, EMAIL)


def retry_delay(attempt: int, base: float, cap: float) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based): doubling, capped."""
    if attempt < 1:
        raise ValueError("attempts are numbered from 1")
    return float(min(base * 2 ** min(attempt - 1, 62), cap))


def schedule(attempts: int, base: float, cap: float) -> list[float]:
    """The waits between ``attempts`` attempts (for docs and tests)."""
    return [retry_delay(n, base, cap) for n in range(1, attempts)]


@dataclass(slots=True, frozen=True)
class Job:
    id: str  # the same for every attempt: derived from the message and the action
    kind: str  # POST or EMAIL
    attempt: int  # which attempt this record asks for, from 1
    due_ms: int
    action: str
    action_name: str
    account: str
    device: str  # the device whose data fired the action
    source: str  # message id of that data
    request: dict[
        str, Any
    ]  # POST: url, headers, body, fallback_device; EMAIL: to, subject, message

    def to_json(self) -> dict[str, Any]:
        return {
            "job": self.id,
            "kind": self.kind,
            "attempt": self.attempt,
            "due": self.due_ms,
            "action": self.action,
            "action_name": self.action_name,
            "account": self.account,
            "device": self.device,
            "source": self.source,
            "request": self.request,
        }

    def value(self) -> bytes:
        return records.dumps(self.to_json())

    def key(self) -> bytes:
        return self.device.encode()

    def headers(self, origin: str) -> list[tuple[str, bytes]]:
        envelope = records.Envelope(
            message_id=self.id,
            account=self.account,
            device=self.device,
            origin=origin,
            kind=self.kind,
            extra={"action": self.action, "attempt": str(self.attempt)},
        )
        return envelope.to_headers()

    def next_attempt(self, due_ms: int) -> Job:
        return replace(self, attempt=self.attempt + 1, due_ms=due_ms)

    @classmethod
    def from_value(cls, value: bytes | None) -> Job:
        """Read a job record's value; raises ValueError when it is not one."""
        data = records.loads(value)
        if not isinstance(data, dict):
            raise ValueError("a job record holds a JSON object")
        try:
            job = cls(
                id=str(data["job"]),
                kind=str(data["kind"]),
                attempt=int(data["attempt"]),
                due_ms=int(data["due"]),
                action=str(data["action"]),
                action_name=str(data.get("action_name", "")),
                account=str(data["account"]),
                device=str(data["device"]),
                source=str(data.get("source", "")),
                request=dict(data["request"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a job record: {exc}") from None
        if job.kind not in JOB_KINDS or job.attempt < 1:
            raise ValueError(f"not a job record: kind {job.kind!r}, attempt {job.attempt}")
        return job
