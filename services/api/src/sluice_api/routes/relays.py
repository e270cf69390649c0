"""MQTT relays: third-party brokers a gateway subscribes to for the account (docs/relay.md).

Every change is published on ``sluice.control`` (``relay.changed``): the gateway that owns
the relay reconnects it, or only swaps its mapping, within a second. Status (connected,
last error, message counts) is what that gateway last wrote to ``relay_status``.
"""

from __future__ import annotations

import logging
import os
import ssl
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select

from sluice import config
from sluice.db.models import Device, Relay, RelayStatus
from sluice.ids import new_id
from sluice.topicfilter import template_problem as topic_template_problem
from sluice.topicfilter import validate_topic_filter
from sluice_api.deps import AccountDep, ContextDep, SessionDep
from sluice_api.errors import ERROR_RESPONSES, ApiError, Envelope, documented, ok

log = logging.getLogger("sluice.api.relays")

router = APIRouter(tags=["relays"], responses=ERROR_RESPONSES)

MAX_RELAYS = 20  # per account
MAX_SUBSCRIPTIONS = 50
# The owning gateway writes a relay's status at least every 15 s; silence means no owner.
STALE_AFTER = timedelta(seconds=60)
PLACEHOLDERS = ("topic", "serial", "device")
EXAMPLE_ID = "6743a1f0c2d4e5f6a7b8c9e3"


class RelaySubscription(BaseModel):
    topic: str = Field(min_length=1, max_length=1024, examples=["devices/+/up"])
    qos: Literal[0, 1, 2] = 1


class RelayMapping(BaseModel):
    type: Literal["device", "topic", "json"] = Field(
        description="device: every message to one device; topic/json: a serial number "
        "(a device token's serie_number) read from a topic level or a JSON field"
    )
    device: str | None = Field(default=None, description="type device: the device id")
    segment: int | None = Field(
        default=None, description="type topic: the level holding the serial (0 first, -1 last)"
    )
    field: str | None = Field(
        default=None, description="type json: dotted path of the serial, e.g. 'meta.serial'"
    )


class RelayTls(BaseModel):
    ca: str | None = Field(default=None, description="PEM CA to trust (default: the system's)")
    cert: str | None = Field(default=None, description="PEM client certificate")
    key: str | None = Field(default=None, description="PEM private key of the client certificate")
    verify: bool = Field(default=True, description="verify the broker's certificate and name")


class RelayCreate(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "plant broker",
                    "host": "broker.example.com",
                    "port": 8883,
                    "tls": {"verify": True},
                    "username": "sluice",
                    "password": "secret",
                    "version": "3.1.1",
                    "subscriptions": [{"topic": "devices/+/up", "qos": 1}],
                    "mapping": {"type": "topic", "segment": 1},
                    "downlink_topic": "devices/{serial}/{topic}",
                }
            ]
        }
    )

    name: str = Field(min_length=1, max_length=100)
    active: bool = True
    host: str = Field(min_length=1, max_length=255)
    port: int = Field(default=1883, ge=1, le=65535)
    tls: RelayTls | None = Field(default=None, description="null: plain TCP")
    username: str | None = Field(default=None, max_length=255)
    password: str | None = Field(default=None, max_length=4096)
    client_id: str | None = Field(
        default=None, min_length=1, max_length=128, description="default sluice-relay-<id>"
    )
    version: Literal["3.1.1", "5.0"] = "3.1.1"
    keepalive: int = Field(default=60, ge=5, le=3600)
    subscriptions: list[RelaySubscription] = Field(min_length=1, max_length=MAX_SUBSCRIPTIONS)
    mapping: RelayMapping
    downlink_topic: str | None = Field(
        default="{topic}",
        max_length=255,
        description="where mqtt actions for a relayed device are published on the broker: "
        "{topic}, {serial} and {device} are replaced; null: never publish back",
    )
    ingest_retained: bool = Field(
        default=False, description="also relay the retained messages a subscription replays"
    )


class RelayUpdate(BaseModel):
    """Fields to change; ``tls`` replaces the whole TLS block; null clears a nullable field."""

    name: str | None = Field(default=None, min_length=1, max_length=100)
    active: bool | None = None
    host: str | None = Field(default=None, min_length=1, max_length=255)
    port: int | None = Field(default=None, ge=1, le=65535)
    tls: RelayTls | None = None
    username: str | None = Field(default=None, max_length=255)
    password: str | None = Field(default=None, max_length=4096)
    client_id: str | None = Field(default=None, min_length=1, max_length=128)
    version: Literal["3.1.1", "5.0"] | None = None
    keepalive: int | None = Field(default=None, ge=5, le=3600)
    subscriptions: list[RelaySubscription] | None = Field(
        default=None, min_length=1, max_length=MAX_SUBSCRIPTIONS
    )
    mapping: RelayMapping | None = None
    downlink_topic: str | None = Field(default=None, max_length=255)
    ingest_retained: bool | None = None


class RelayStatusPublic(BaseModel):
    state: str = Field(
        description="connected, connecting, disconnected, error, pending (no gateway has "
        "reported yet), unknown (its gateway went silent) or disabled"
    )
    connected: bool
    last_error: str | None
    last_error_at: datetime | None
    connected_at: datetime | None
    messages_in: int
    messages_out: int
    dropped: int
    node: str | None
    updated_at: datetime | None


class RelayPublic(BaseModel):
    id: str
    name: str
    active: bool
    host: str
    port: int
    tls: dict[str, Any] | None
    username: str | None
    password_set: bool
    client_id: str
    version: str
    keepalive: int
    subscriptions: list[RelaySubscription]
    mapping: dict[str, Any]
    downlink_topic: str | None
    ingest_retained: bool
    created_at: datetime
    updated_at: datetime
    status: RelayStatusPublic


class RelayCreated(BaseModel):
    relay: str


EXAMPLE_RELAY = {
    "id": EXAMPLE_ID,
    "name": "plant broker",
    "active": True,
    "host": "broker.example.com",
    "port": 8883,
    "tls": {"ca": None, "cert": None, "key_set": False, "verify": True},
    "username": "sluice",
    "password_set": True,
    "client_id": f"sluice-relay-{EXAMPLE_ID}",
    "version": "3.1.1",
    "keepalive": 60,
    "subscriptions": [{"topic": "devices/+/up", "qos": 1}],
    "mapping": {"type": "topic", "segment": 1},
    "downlink_topic": "devices/{serial}/{topic}",
    "ingest_retained": False,
    "created_at": "2026-01-05T10:00:00Z",
    "updated_at": "2026-01-05T10:00:00Z",
    "status": {
        "state": "error",
        "connected": False,
        "last_error": "the broker refused the connection (not authorised, code 5): check the "
        "relay's username and password (and the broker's ACL)",
        "last_error_at": "2026-01-05T10:00:02Z",
        "connected_at": None,
        "messages_in": 0,
        "messages_out": 0,
        "dropped": 0,
        "node": "gateway-1",
        "updated_at": "2026-01-05T10:00:02Z",
    },
}


def _status(relay: Relay, row: RelayStatus | None, now: datetime) -> dict[str, Any]:
    counts = {
        "messages_in": row.messages_in if row else 0,
        "messages_out": row.messages_out if row else 0,
        "dropped": row.dropped if row else 0,
    }
    state = row.state if row else "pending"
    if not relay.active:
        state = "disabled"
    elif row is not None and now - row.updated_at > STALE_AFTER:
        state = "unknown"
    return {
        "state": state,
        "connected": state == "connected",
        "last_error": row.last_error if row else None,
        "last_error_at": row.last_error_at if row else None,
        "connected_at": row.connected_at if row and state == "connected" else None,
        **counts,
        "node": row.node if row else None,
        "updated_at": row.updated_at if row else None,
    }


def relay_public(relay: Relay, status: RelayStatus | None) -> dict[str, Any]:
    tls = relay.tls
    view = {
        "id": relay.id,
        "name": relay.name,
        "active": relay.active,
        "host": relay.host,
        "port": relay.port,
        "tls": {
            "ca": tls.get("ca"),
            "cert": tls.get("cert"),
            "key_set": bool(tls.get("key")),
            "verify": tls.get("verify", True) is not False,
        }
        if isinstance(tls, dict)
        else None,
        "username": relay.username,
        "password_set": bool(relay.password),
        "client_id": relay.client_id or f"sluice-relay-{relay.id}",
        "version": relay.mqtt_version,
        "keepalive": relay.keepalive,
        "subscriptions": relay.subscriptions,
        "mapping": relay.mapping,
        "downlink_topic": relay.downlink_topic,
        "ingest_retained": relay.ingest_retained,
        "created_at": relay.created_at,
        "updated_at": relay.updated_at,
        "status": _status(relay, status, datetime.now(UTC)),
    }
    return RelayPublic.model_validate(view).model_dump(mode="json")


def template_problem(template: str) -> str | None:
    return topic_template_problem(template, PLACEHOLDERS)


def _tls_problem(tls: dict[str, Any]) -> str | None:
    try:
        context = ssl.create_default_context(cadata=tls["ca"]) if tls.get("ca") else None
    except (ssl.SSLError, ValueError) as exc:
        return f"tls.ca is not a PEM certificate ({exc})"
    cert, key = tls.get("cert"), tls.get("key")
    if bool(cert) != bool(key):
        return "tls.cert and tls.key go together: give both or neither"
    if cert and key:
        context = context or ssl.create_default_context()
        with tempfile.TemporaryDirectory(prefix="sluice-relay-") as tmp:
            paths = []
            for name, text in (("cert.pem", cert), ("key.pem", key)):
                path = Path(tmp, name)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as handle:
                    handle.write(text)
                paths.append(path)
            try:
                context.load_cert_chain(paths[0], paths[1])
            except (ssl.SSLError, ValueError) as exc:
                return f"tls.cert and tls.key are not a usable PEM certificate and key ({exc})"
    return None


async def _check(session: SessionDep, account_id: str, relay: Relay) -> None:
    """Reject a definition the gateway could not run, naming the field at fault."""
    if "://" in relay.host or "/" in relay.host or relay.host != relay.host.strip():
        raise ApiError(400, "host is a name or an address, without a scheme (no mqtt://)")
    seen = set()
    for n, sub in enumerate(relay.subscriptions):
        problem = validate_topic_filter(sub["topic"])
        if problem:
            raise ApiError(400, f"subscriptions {n}: topic {problem}")
        if sub["topic"] in seen:
            raise ApiError(400, f"subscriptions {n}: {sub['topic']!r} is listed twice")
        seen.add(sub["topic"])
    mapping = relay.mapping
    kind = mapping.get("type")
    if kind == "device":
        device = await session.get(Device, mapping.get("device") or "")
        if device is None or device.account_id != account_id:
            raise ApiError(400, f"mapping.device: device {mapping.get('device')} not found")
    elif kind == "topic":
        segment = mapping.get("segment")
        if segment is None or not -32 <= segment < 32:
            raise ApiError(400, "mapping.segment: the topic level holding the serial (0 … 31)")
    elif kind == "json":
        path = mapping.get("field") or ""
        if not path or any(not part for part in path.split(".")):
            raise ApiError(400, "mapping.field: a dotted path like 'serial' or 'meta.serial'")
    if relay.downlink_topic is not None:
        problem = template_problem(relay.downlink_topic)
        if problem:
            raise ApiError(400, f"downlink_topic: {problem}")
    if relay.password and not relay.username and relay.mqtt_version == "3.1.1":
        raise ApiError(400, "MQTT 3.1.1 sends a password only with a username: set username")
    if isinstance(relay.tls, dict):
        problem = _tls_problem(relay.tls)
        if problem:
            raise ApiError(400, problem)
    client_id = relay.client_id or f"sluice-relay-{relay.id}"
    clash = await session.scalar(
        select(Relay.id).where(
            Relay.id != relay.id,
            Relay.host == relay.host,
            Relay.port == relay.port,
            func.coalesce(Relay.client_id, "sluice-relay-" + Relay.id) == client_id,
        )
    )
    if clash is not None:
        raise ApiError(
            409,
            f"client_id {client_id!r} is used by another relay on {relay.host}:{relay.port}; "
            "two clients with one id would disconnect each other",
        )


def _mapping(body: RelayMapping) -> dict[str, Any]:
    fields = {"device": body.device, "segment": body.segment, "field": body.field}
    wanted = {"device": "device", "topic": "segment", "json": "field"}[body.type]
    return {"type": body.type, wanted: fields[wanted]}


async def owned_relay(session: SessionDep, account_id: str, relay_id: str) -> Relay:
    relay = await session.get(Relay, relay_id)
    if relay is None or relay.account_id != account_id:
        raise ApiError(404, f"Relay {relay_id} not found")
    return relay


async def _changed(ctx: ContextDep, relay: Relay, **fields: Any) -> None:
    await ctx.publish_control(
        config.RELAY_CHANGED, key=relay.id, relay=relay.id, account=relay.account_id, **fields
    )


@router.post(
    "/relay",
    response_model=Envelope[RelayCreated],
    status_code=201,
    responses=documented({"relay": EXAMPLE_ID}, 409, status_code=201),
)
async def create_relay(
    body: RelayCreate, account: AccountDep, session: SessionDep, ctx: ContextDep
) -> dict[str, Any]:
    """Register a broker to relay from; a gateway connects it within seconds."""
    count = await session.scalar(
        select(func.count()).select_from(Relay).where(Relay.account_id == account.id)
    )
    if (count or 0) >= MAX_RELAYS:
        raise ApiError(409, f"An account has at most {MAX_RELAYS} relays; delete one first")
    relay = Relay(
        id=new_id(),
        account_id=account.id,
        name=body.name,
        active=body.active,
        host=body.host,
        port=body.port,
        tls=body.tls.model_dump() if body.tls else None,
        username=body.username,
        password=body.password,
        client_id=body.client_id,
        mqtt_version=body.version,
        keepalive=body.keepalive,
        subscriptions=[s.model_dump() for s in body.subscriptions],
        mapping=_mapping(body.mapping),
        downlink_topic=body.downlink_topic,
        ingest_retained=body.ingest_retained,
    )
    await _check(session, account.id, relay)
    session.add(relay)
    await session.commit()
    await _changed(ctx, relay)
    log.info("relay created", extra={"account": account.id, "relay": relay.id})
    return ok({"relay": relay.id})


@router.get(
    "/relay", response_model=Envelope[list[RelayPublic]], responses=documented([EXAMPLE_RELAY])
)
async def list_relays(account: AccountDep, session: SessionDep) -> dict[str, Any]:
    """The account's relays with their status (secrets are never returned)."""
    rows = (
        await session.execute(
            select(Relay, RelayStatus)
            .outerjoin(RelayStatus, RelayStatus.relay_id == Relay.id)
            .where(Relay.account_id == account.id)
            .order_by(Relay.created_at, Relay.id)
        )
    ).all()
    return ok([relay_public(relay, status) for relay, status in rows])


@router.get(
    "/relay/{relay_id}", response_model=Envelope[RelayPublic], responses=documented(EXAMPLE_RELAY)
)
async def get_relay(relay_id: str, account: AccountDep, session: SessionDep) -> dict[str, Any]:
    """One relay: its definition and status (connected, last error, messages in/out)."""
    relay = await owned_relay(session, account.id, relay_id)
    return ok(relay_public(relay, await session.get(RelayStatus, relay_id)))


@router.put(
    "/relay/{relay_id}",
    response_model=Envelope[RelayPublic],
    responses=documented(EXAMPLE_RELAY, 409),
)
async def update_relay(
    relay_id: str, body: RelayUpdate, account: AccountDep, session: SessionDep, ctx: ContextDep
) -> dict[str, Any]:
    """Change a relay; it applies without restarting anything (reconnecting if needed)."""
    relay = await owned_relay(session, account.id, relay_id)
    given = body.model_fields_set
    nullable = ("tls", "username", "password", "client_id", "downlink_topic")
    for name in given:
        value = getattr(body, name)
        if value is None and name not in nullable:
            raise ApiError(400, f"{name} cannot be null")
    for name in ("name", "active", "host", "port", "username", "password", "client_id"):
        if name in given:
            setattr(relay, name, getattr(body, name))
    for name in ("keepalive", "downlink_topic", "ingest_retained"):
        if name in given:
            setattr(relay, name, getattr(body, name))
    if "version" in given:
        relay.mqtt_version = body.version or relay.mqtt_version
    if "tls" in given:
        relay.tls = body.tls.model_dump() if body.tls else None
    if body.subscriptions is not None:
        relay.subscriptions = [s.model_dump() for s in body.subscriptions]
    if body.mapping is not None:
        relay.mapping = _mapping(body.mapping)
    await _check(session, account.id, relay)
    relay.updated_at = datetime.now(UTC)
    await session.commit()
    await _changed(ctx, relay)
    log.info("relay changed", extra={"account": account.id, "relay": relay.id})
    return ok(relay_public(relay, await session.get(RelayStatus, relay_id)))


@router.delete("/relay/{relay_id}", responses=documented("Relay Successfully Removed"))
async def delete_relay(
    relay_id: str, account: AccountDep, session: SessionDep, ctx: ContextDep
) -> dict[str, Any]:
    """Delete a relay; its gateway disconnects and ends its session on the broker."""
    relay = await owned_relay(session, account.id, relay_id)
    status = await session.get(RelayStatus, relay_id)
    if status is not None:
        await session.delete(status)  # SQLite may run without foreign-key cascades
    await session.delete(relay)
    await session.commit()
    await _changed(ctx, relay, deleted=True)
    log.info("relay deleted", extra={"account": account.id, "relay": relay_id})
    return ok("Relay Successfully Removed")
