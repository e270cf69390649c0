"""Devices of an account (account token)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field, model_validator
from sqlalchemy import delete, func, select

from sluice import config
from sluice.db.models import DataPoint, Device, DeviceParam, DeviceToken
from sluice.ids import hash_token, new_id, new_token
from sluice_api.deps import AccountDep, ContextDep, SessionDep
from sluice_api.errors import ERROR_RESPONSES, ApiError, Envelope, ok
from sluice_api.parsers import decode_parser_source

router = APIRouter(tags=["devices"], responses=ERROR_RESPONSES)

ChunkPeriod = Literal["day", "week", "month", "quarter"]
MAX_RETENTION = {"day": 31, "week": 26, "month": 36, "quarter": 36}


class Tag(BaseModel):
    key: str = Field(max_length=100)
    value: str = Field(max_length=100)


class DeviceCreate(BaseModel):
    name: str = Field(min_length=1, max_length=100, examples=["boiler-room sensor"])
    type: Literal["immutable", "mutable"] = "immutable"
    active: bool = True
    tags: list[Tag] = Field(default_factory=list)
    payload_parser: str | None = Field(
        default=None, description="JavaScript source or base64 of it"
    )
    chunk_period: ChunkPeriod | None = None
    chunk_retention: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _chunks(self) -> DeviceCreate:
        if self.type == "immutable":
            self.chunk_period = self.chunk_period or "month"
            if self.chunk_retention is None:
                self.chunk_retention = 12
            check_retention(self.chunk_period, self.chunk_retention)
        else:
            self.chunk_period = None
            self.chunk_retention = None
        return self


class DeviceUpdate(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=100)
    active: bool | None = None
    tags: list[Tag] | None = None
    payload_parser: str | None = None
    chunk_retention: int | None = Field(default=None, ge=0)


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
    created_at: datetime
    updated_at: datetime
    last_input: datetime | None


def check_retention(period: str, retention: int) -> None:
    limit = MAX_RETENTION[period]
    if not 0 <= retention <= limit:
        raise ValueError(f"chunk_retention for period '{period}' must be between 0 and {limit}")


def device_public(device: Device) -> dict[str, Any]:
    return DevicePublic.model_validate(device, from_attributes=True).model_dump(mode="json")


async def owned_device(session: SessionDep, account_id: str, device_id: str) -> Device:
    device = await session.get(Device, device_id)
    if device is None or device.account_id != account_id:
        raise ApiError(404, f"Device {device_id} not found")
    return device


@router.post("/device", response_model=Envelope[DeviceCreated], status_code=201)
async def create_device(
    body: DeviceCreate, account: AccountDep, session: SessionDep, ctx: ContextDep
) -> dict[str, Any]:
    """Create a device and its first full-permission token (shown only now)."""
    device = Device(
        id=new_id(),
        account_id=account.id,
        name=body.name,
        type=body.type,
        active=body.active,
        tags=[t.model_dump() for t in body.tags],
        payload_parser=decode_parser_source(body.payload_parser),
        chunk_period=body.chunk_period,
        chunk_retention=body.chunk_retention,
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
    await ctx.publish_control(
        config.DEVICE_CHANGED, key=device.id, device=device.id, account=account.id
    )
    return ok({"device_id": device.id, "bucket_id": device.id, "token": token})


@router.get("/device", response_model=Envelope[list[DevicePublic]])
async def list_devices(
    account: AccountDep,
    session: SessionDep,
    name: Annotated[str | None, Query(description="substring of the name")] = None,
    tag_key: str | None = None,
    tag_value: str | None = None,
    page: Annotated[int, Query(ge=1)] = 1,
    amount: Annotated[int, Query(ge=1, le=10_000)] = 20,
) -> dict[str, Any]:
    query = select(Device).where(Device.account_id == account.id)
    if name:
        query = query.where(Device.name.contains(name))
    devices = (await session.scalars(query.order_by(Device.created_at, Device.id))).all()
    if tag_key is not None or tag_value is not None:
        devices = [
            d
            for d in devices
            if any(
                (tag_key is None or t.get("key") == tag_key)
                and (tag_value is None or t.get("value") == tag_value)
                for t in d.tags or ()
            )
        ]
    start = (page - 1) * amount
    return ok([device_public(d) for d in devices[start : start + amount]])


@router.get("/device/{device_id}", response_model=Envelope[DevicePublic])
async def get_device(device_id: str, account: AccountDep, session: SessionDep) -> dict[str, Any]:
    return ok(device_public(await owned_device(session, account.id, device_id)))


@router.put("/device/{device_id}", response_model=Envelope[DevicePublic])
async def update_device(
    device_id: str, body: DeviceUpdate, account: AccountDep, session: SessionDep, ctx: ContextDep
) -> dict[str, Any]:
    device = await owned_device(session, account.id, device_id)
    if body.name is not None:
        device.name = body.name
    if body.active is not None:
        device.active = body.active
    if body.tags is not None:
        device.tags = [t.model_dump() for t in body.tags]
    if "payload_parser" in body.model_fields_set:
        device.payload_parser = decode_parser_source(body.payload_parser)
    if body.chunk_retention is not None:
        if device.type != "immutable" or device.chunk_period is None:
            raise ApiError(400, "chunk_retention applies to immutable devices only")
        try:
            check_retention(device.chunk_period, body.chunk_retention)
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        device.chunk_retention = body.chunk_retention
    await session.commit()
    await ctx.publish_control(
        config.DEVICE_CHANGED, key=device.id, device=device.id, account=account.id
    )
    return ok(device_public(device))


@router.delete("/device/{device_id}")
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
    return ok("Device Successfully Removed")


@router.get("/device/{device_id}/data_amount")
async def data_amount(device_id: str, account: AccountDep, session: SessionDep) -> dict[str, Any]:
    await owned_device(session, account.id, device_id)
    count = await session.scalar(select(func.count()).where(DataPoint.device_id == device_id))
    return ok(count or 0)
