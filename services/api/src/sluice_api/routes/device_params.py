"""A device's configuration params, managed with an account token.

Devices read theirs with their own token (``GET /device/params``, routes/data.py); the
payload parser sees them as ``device.params``, so every change is a control event.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from sluice import config
from sluice.db.models import DeviceParam
from sluice.ids import new_id
from sluice_api.deps import AccountDep, ContextDep, SessionDep
from sluice_api.errors import ERROR_RESPONSES, ApiError, Envelope, documented, ok
from sluice_api.routes.devices import owned_device

log = logging.getLogger("sluice.api.params")

router = APIRouter(tags=["device params"], responses=ERROR_RESPONSES)

MAX_PARAMS = 200
MAX_VALUE = 10_000
PARAM_EXAMPLE = {"id": "6743a1f0c2d4e5f6a7b8c9e1", "key": "interval", "value": "60", "sent": False}


class ParamSet(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"key": "interval", "value": "60", "sent": False}]}
    )

    id: str | None = Field(default=None, description="edit this param; omit to create one")
    key: str = Field(min_length=1, max_length=100)
    value: str = Field(default="", max_length=MAX_VALUE)
    sent: bool = False


class ParamEdit(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"value": "120", "sent": False}]})

    key: str | None = Field(default=None, min_length=1, max_length=100)
    value: str | None = Field(default=None, max_length=MAX_VALUE)
    sent: bool | None = None


class ParamPublic(BaseModel):
    id: str
    key: str
    value: str
    sent: bool


def param_public(param: DeviceParam) -> dict[str, Any]:
    return {"id": param.id, "key": param.key, "value": param.value, "sent": param.sent}


async def _params(session: SessionDep, device_id: str) -> list[DeviceParam]:
    return list(
        (
            await session.scalars(
                select(DeviceParam)
                .where(DeviceParam.device_id == device_id)
                .order_by(DeviceParam.key, DeviceParam.id)
            )
        ).all()
    )


async def _changed(ctx: ContextDep, account_id: str, device_id: str) -> None:
    await ctx.publish_control(
        config.DEVICE_CHANGED, key=device_id, device=device_id, account=account_id
    )
    log.info("device params changed", extra={"account": account_id, "device": device_id})


@router.get(
    "/device/{device_id}/params",
    response_model=Envelope[list[ParamPublic]],
    responses=documented([PARAM_EXAMPLE]),
)
async def list_params(
    device_id: str,
    account: AccountDep,
    session: SessionDep,
    sent_status: Annotated[
        bool | None, Query(description="only params already sent (true) or not yet (false)")
    ] = None,
) -> dict[str, Any]:
    """The device's params, by key."""
    await owned_device(session, account.id, device_id)
    params = await _params(session, device_id)
    if sent_status is not None:
        params = [p for p in params if p.sent == sent_status]
    return ok([param_public(p) for p in params])


@router.post(
    "/device/{device_id}/params",
    response_model=Envelope[list[ParamPublic]],
    responses=documented([PARAM_EXAMPLE]),
)
async def set_params(
    device_id: str,
    body: Annotated[
        ParamSet | list[ParamSet],
        Body(examples=[[{"key": "interval", "value": "60"}, {"key": "mode", "value": "eco"}]]),
    ],
    account: AccountDep,
    session: SessionDep,
    ctx: ContextDep,
) -> dict[str, Any]:
    """Create params, or edit those given with an `id` (one object or a list, as TagoIO)."""
    await owned_device(session, account.id, device_id)
    items = body if isinstance(body, list) else [body]
    existing = {p.id: p for p in await _params(session, device_id)}
    created = sum(1 for item in items if item.id is None)
    if len(existing) + created > MAX_PARAMS:
        raise ApiError(400, f"A device has at most {MAX_PARAMS} params; remove some first")
    for item in items:
        if item.id is None:
            session.add(
                DeviceParam(
                    id=new_id(), device_id=device_id, key=item.key, value=item.value, sent=item.sent
                )
            )
            continue
        param = existing.get(item.id)
        if param is None:
            raise ApiError(404, f"Param {item.id} not found on device {device_id}")
        param.key, param.value, param.sent = item.key, item.value, item.sent
    await session.commit()
    await _changed(ctx, account.id, device_id)
    return ok([param_public(p) for p in await _params(session, device_id)])


@router.put(
    "/device/{device_id}/params/{param_id}",
    response_model=Envelope[ParamPublic],
    responses=documented(PARAM_EXAMPLE),
)
async def edit_param(
    device_id: str,
    param_id: str,
    body: ParamEdit,
    account: AccountDep,
    session: SessionDep,
    ctx: ContextDep,
) -> dict[str, Any]:
    """Change a param's key, value or sent flag."""
    await owned_device(session, account.id, device_id)
    param = await session.get(DeviceParam, param_id)
    if param is None or param.device_id != device_id:
        raise ApiError(404, f"Param {param_id} not found on device {device_id}")
    for name in ("key", "value", "sent"):
        value = getattr(body, name)
        if value is not None:
            setattr(param, name, value)
    await session.commit()
    await _changed(ctx, account.id, device_id)
    return ok(param_public(param))


@router.delete(
    "/device/{device_id}/params/{param_id}", responses=documented("Param Successfully Removed")
)
async def delete_param(
    device_id: str, param_id: str, account: AccountDep, session: SessionDep, ctx: ContextDep
) -> dict[str, Any]:
    """Remove a param."""
    await owned_device(session, account.id, device_id)
    param = await session.get(DeviceParam, param_id)
    if param is None or param.device_id != device_id:
        raise ApiError(404, f"Param {param_id} not found on device {device_id}")
    await session.delete(param)
    await session.commit()
    await _changed(ctx, account.id, device_id)
    return ok("Param Successfully Removed")
