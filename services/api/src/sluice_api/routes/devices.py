"""Devices of an account (account token): create, list, read, edit, delete.

Every change is published on ``sluice.control``: gateways disconnect a deactivated or
deleted device and reload its ACL; the parser reloads its payload parser.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import delete, func, select

from sluice import config
from sluice.db.models import DataPoint, Device, DeviceParam, DeviceToken
from sluice.ids import hash_token, new_id, new_token
from sluice_api.deps import AccountDep, ContextDep, Page, SessionDep
from sluice_api.devicerules import (
    DEFAULT_CHUNK_PERIOD,
    DEFAULT_CHUNK_RETENTION,
    retention_problem,
    type_change_problem,
    validate_topic_acl,
)
from sluice_api.errors import ERROR_RESPONSES, ApiError, Envelope, documented, ok
from sluice_api.parsers import decode_parser_source

log = logging.getLogger("sluice.api.devices")

router = APIRouter(tags=["devices"], responses=ERROR_RESPONSES)

ChunkPeriod = Literal["day", "week", "month", "quarter"]
EXAMPLE_ID = "6743a1f0c2d4e5f6a7b8c9d0"
EXAMPLE_ACL = [
    {"action": "allow", "access": "publish", "topic": "devices/{device}/#"},
    {"action": "allow", "access": "subscribe", "topic": "commands/{device}"},
]


class Tag(BaseModel):
    key: str = Field(min_length=1, max_length=100, examples=["site"])
    value: str = Field(max_length=100, examples=["lisbon"])


class AclRule(BaseModel):
    action: Literal["allow", "deny"] = "allow"
    access: Literal["publish", "subscribe", "all"] = "all"
    topic: str = Field(min_length=1, examples=["devices/{device}/#"])


class DeviceCreate(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "boiler-room sensor",
                    "type": "immutable",
                    "tags": [{"key": "site", "value": "lisbon"}],
                    "chunk_period": "month",
                    "chunk_retention": 12,
                }
            ]
        }
    )

    name: str = Field(min_length=1, max_length=100)
    type: Literal["immutable", "mutable"] = "immutable"
    active: bool = True
    tags: list[Tag] = Field(default_factory=list, max_length=100)
    payload_parser: str | None = Field(
        default=None, description="JavaScript source or base64 of it (≤ 64 kB)"
    )
    chunk_period: ChunkPeriod | None = Field(default=None, description="immutable only")
    chunk_retention: int | None = Field(default=None, description="immutable only")
    topic_acl: list[AclRule] = Field(default_factory=list, description="allow/deny rules")


class DeviceUpdate(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"active": False}, {"name": "boiler", "tags": []}]}
    )

    name: str | None = Field(default=None, min_length=1, max_length=100)
    type: Literal["immutable", "mutable"] | None = Field(
        default=None, description="changes only while the device is inactive and empty"
    )
    active: bool | None = None
    tags: list[Tag] | None = Field(default=None, max_length=100)
    payload_parser: str | None = Field(default=None, description="null removes the parser")
    chunk_period: ChunkPeriod | None = Field(
        default=None, description="fixed after creation; set only when converting to immutable"
    )
    chunk_retention: int | None = None
    topic_acl: list[AclRule] | None = None


class DeviceCreated(BaseModel):
    device_id: str
    bucket_id: str
    token: str


class DevicePublic(BaseModel):
    id: str
    name: str
    type: str
    active: bool
    tags: list[Tag]
    payload_parser: str | None
    chunk_period: str | None
    chunk_retention: int | None
    topic_acl: list[AclRule]
    bucket: dict[str, str]
    created_at: datetime
    updated_at: datetime
    last_input: datetime | None


DEVICE_EXAMPLE = {
    "id": EXAMPLE_ID,
    "name": "boiler-room sensor",
    "type": "immutable",
    "active": True,
    "tags": [{"key": "site", "value": "lisbon"}],
    "payload_parser": None,
    "chunk_period": "month",
    "chunk_retention": 12,
    "topic_acl": EXAMPLE_ACL,
    "bucket": {"id": EXAMPLE_ID, "name": "boiler-room sensor"},
    "created_at": "2026-01-05T10:00:00Z",
    "updated_at": "2026-01-05T10:00:00Z",
    "last_input": None,
}


def device_public(device: Device) -> dict[str, Any]:
    return DevicePublic(
        id=device.id,
        name=device.name,
        type=device.type,
        active=device.active,
        tags=[Tag.model_validate(t) for t in device.tags or ()],
        payload_parser=device.payload_parser,
        chunk_period=device.chunk_period,
        chunk_retention=device.chunk_retention,
        topic_acl=[AclRule.model_validate(r) for r in device.topic_acl or ()],
        bucket={"id": device.id, "name": device.name},
        created_at=device.created_at,
        updated_at=device.updated_at,
        last_input=device.last_input,
    ).model_dump(mode="json")


async def owned_device(session: SessionDep, account_id: str, device_id: str) -> Device:
    device = await session.get(Device, device_id)
    if device is None or device.account_id != account_id:
        raise ApiError(404, f"Device {device_id} not found")
    return device


def _acl(rules: list[AclRule]) -> list[dict[str, str]]:
    try:
        return validate_topic_acl([r.model_dump() for r in rules])
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None


def _chunks(period: str | None, retention: int | None) -> tuple[str, int]:
    period = period or DEFAULT_CHUNK_PERIOD
    retention = DEFAULT_CHUNK_RETENTION if retention is None else retention
    problem = retention_problem(period, retention)
    if problem:
        raise ApiError(400, problem)
    return period, retention


async def _changed(ctx: ContextDep, device: Device, what: str) -> None:
    await ctx.publish_control(
        config.DEVICE_CHANGED, key=device.id, device=device.id, account=device.account_id
    )
    log.info("device %s", what, extra={"account": device.account_id, "device": device.id})


@router.post(
    "/device",
    response_model=Envelope[DeviceCreated],
    status_code=201,
    responses=documented(
        {"device_id": EXAMPLE_ID, "bucket_id": EXAMPLE_ID, "token": "9f0c…-…"},
        413,
        status_code=201,
    ),
)
async def create_device(
    body: DeviceCreate, account: AccountDep, session: SessionDep, ctx: ContextDep
) -> dict[str, Any]:
    """Create a device and its first full-permission token (shown only now)."""
    if body.type == "immutable":
        period, retention = _chunks(body.chunk_period, body.chunk_retention)
        chunk_period: str | None = period
        chunk_retention: int | None = retention
    elif body.chunk_period is not None or body.chunk_retention is not None:
        raise ApiError(400, "chunk_period and chunk_retention apply to immutable devices only")
    else:
        chunk_period = chunk_retention = None
    device = Device(
        id=new_id(),
        account_id=account.id,
        name=body.name,
        type=body.type,
        active=body.active,
        tags=[t.model_dump() for t in body.tags],
        payload_parser=decode_parser_source(body.payload_parser),
        chunk_period=chunk_period,
        chunk_retention=chunk_retention,
        topic_acl=_acl(body.topic_acl),
    )
    token = new_token()
    session.add(device)
    await session.flush()
    session.add(
        DeviceToken(
            id=new_id(),
            token_hash=hash_token(token),
            device_id=device.id,
            account_id=account.id,
            name="Default",
            permission="full",
        )
    )
    await session.commit()
    await _changed(ctx, device, "created")
    return ok({"device_id": device.id, "bucket_id": device.id, "token": token})


def _like(pattern: str) -> str:
    """A TagoIO name filter (``*`` is a wildcard) as a SQL LIKE pattern."""
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").lower()


def _tag_filters(request: Request) -> list[tuple[str | None, str | None]]:
    """``filter[tags][0][key]=site&filter[tags][0][value]=lisbon`` (TagoIO's SDK shape)."""
    found: dict[str, dict[str, str]] = {}
    for key, value in request.query_params.multi_items():
        if key.startswith("filter[tags]["):
            parts = key[len("filter[tags][") :].rstrip("]").split("][")
            if len(parts) == 2 and parts[1] in ("key", "value"):
                found.setdefault(parts[0], {})[parts[1]] = value
    return [(f.get("key"), f.get("value")) for _, f in sorted(found.items())]


def _has_tags(device: Device, wanted: list[tuple[str | None, str | None]]) -> bool:
    tags = device.tags or ()
    return all(
        any(
            (key is None or t.get("key") == key) and (value is None or t.get("value") == value)
            for t in tags
        )
        for key, value in wanted
    )


@router.get(
    "/device",
    response_model=Envelope[list[DevicePublic]],
    responses=documented([DEVICE_EXAMPLE]),
)
async def list_devices(
    request: Request,
    account: AccountDep,
    session: SessionDep,
    name: Annotated[
        str | None, Query(description="part of the name (case-insensitive); `*` is a wildcard")
    ] = None,
    tag_key: Annotated[str | None, Query(description="devices with a tag of this key")] = None,
    tag_value: Annotated[str | None, Query(description="… and this value")] = None,
    page: Page = 1,
    amount: Annotated[int, Query(ge=1, le=10_000, description="devices per page")] = 20,
) -> dict[str, Any]:
    """The account's devices, oldest first; also takes TagoIO's `filter[name]` and
    `filter[tags][n][key|value]`."""
    query = select(Device).where(Device.account_id == account.id)
    if name:
        query = query.where(func.lower(Device.name).like(f"%{_like(name)}%", escape="\\"))
    exact = request.query_params.get("filter[name]")
    if exact:
        query = query.where(func.lower(Device.name).like(_like(exact), escape="\\"))
    wanted = _tag_filters(request)
    if tag_key is not None or tag_value is not None:
        wanted.append((tag_key, tag_value))
    query = query.order_by(Device.created_at, Device.id)
    if not wanted:
        query = query.offset((page - 1) * amount).limit(amount)
    devices = list((await session.scalars(query)).all())
    if wanted:
        # Tags are JSON: filtered here, so that SQLite and PostgreSQL agree.
        start = (page - 1) * amount
        devices = [d for d in devices if _has_tags(d, wanted)][start : start + amount]
    return ok([device_public(d) for d in devices])


@router.get(
    "/device/{device_id}",
    response_model=Envelope[DevicePublic],
    responses=documented(DEVICE_EXAMPLE),
)
async def get_device(device_id: str, account: AccountDep, session: SessionDep) -> dict[str, Any]:
    """One device of the account."""
    return ok(device_public(await owned_device(session, account.id, device_id)))


async def _data_points(session: SessionDep, device_id: str) -> int:
    count = await session.scalar(
        select(func.count()).select_from(DataPoint).where(DataPoint.device_id == device_id)
    )
    return int(count or 0)


async def _apply_type(session: SessionDep, device: Device, body: DeviceUpdate) -> None:
    """Type, chunk period and retention, with TagoIO's rules for changing them."""
    target = body.type or device.type
    active = device.active if body.active is None else body.active
    if target != device.type:
        problem = type_change_problem(active, await _data_points(session, device.id))
        if problem:
            raise ApiError(409, problem)
        device.type = target
        if target == "immutable":
            device.chunk_period, device.chunk_retention = _chunks(
                body.chunk_period, body.chunk_retention
            )
        elif body.chunk_period is not None or body.chunk_retention is not None:
            raise ApiError(400, "chunk_period and chunk_retention apply to immutable devices only")
        else:
            device.chunk_period = device.chunk_retention = None
        return
    if device.type == "mutable":
        if body.chunk_period is not None or body.chunk_retention is not None:
            raise ApiError(
                400,
                "chunk_period and chunk_retention apply to immutable devices only; "
                "to convert, send type 'immutable' while the device is inactive and empty",
            )
        return
    if body.chunk_period is not None and body.chunk_period != device.chunk_period:
        raise ApiError(
            400,
            f"chunk_period is fixed after creation (it is '{device.chunk_period}'); "
            "create a new device for another period",
        )
    if body.chunk_retention is not None:
        _, device.chunk_retention = _chunks(device.chunk_period, body.chunk_retention)


@router.put(
    "/device/{device_id}",
    response_model=Envelope[DevicePublic],
    responses=documented(DEVICE_EXAMPLE, 409, 413),
)
async def update_device(
    device_id: str, body: DeviceUpdate, account: AccountDep, session: SessionDep, ctx: ContextDep
) -> dict[str, Any]:
    """Edit a device. Deactivating it disconnects its MQTT sessions on every gateway."""
    device = await owned_device(session, account.id, device_id)
    await _apply_type(session, device, body)
    if body.name is not None:
        device.name = body.name
    if body.active is not None:
        device.active = body.active
    if body.tags is not None:
        device.tags = [t.model_dump() for t in body.tags]
    if "payload_parser" in body.model_fields_set:
        device.payload_parser = decode_parser_source(body.payload_parser)
    if body.topic_acl is not None:
        device.topic_acl = _acl(body.topic_acl)
    await session.commit()
    await session.refresh(device)
    await _changed(ctx, device, "updated")
    return ok(device_public(device))


@router.delete("/device/{device_id}", responses=documented("Device Successfully Removed"))
async def delete_device(
    device_id: str, account: AccountDep, session: SessionDep, ctx: ContextDep
) -> dict[str, Any]:
    """Delete a device, its tokens, params and data; its MQTT sessions are disconnected."""
    device = await owned_device(session, account.id, device_id)
    await session.execute(delete(DeviceToken).where(DeviceToken.device_id == device_id))
    await session.execute(delete(DeviceParam).where(DeviceParam.device_id == device_id))
    await session.execute(delete(DataPoint).where(DataPoint.device_id == device_id))
    await session.delete(device)
    await session.commit()
    await ctx.publish_control(
        config.DEVICE_DELETED, key=device_id, device=device_id, account=account.id
    )
    log.info("device deleted", extra={"account": account.id, "device": device_id})
    return ok("Device Successfully Removed")


@router.get("/device/{device_id}/data_amount", responses=documented(1234))
async def data_amount(device_id: str, account: AccountDep, session: SessionDep) -> dict[str, Any]:
    """How many data points the device's bucket holds."""
    await owned_device(session, account.id, device_id)
    return ok(await _data_points(session, device_id))
