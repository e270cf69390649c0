"""Device tokens: many per device, shown once, stored as hashes."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field
from sqlalchemy import or_, select

from sluice import config
from sluice.db.models import DeviceToken
from sluice.ids import hash_token, new_id, new_token
from sluice_api.deps import AccountDep, ContextDep, SessionDep
from sluice_api.errors import ERROR_RESPONSES, ApiError, Envelope, ok
from sluice_api.expiry import parse_expire_time
from sluice_api.routes.devices import owned_device

router = APIRouter(tags=["device tokens"], responses=ERROR_RESPONSES)


class TokenCreate(BaseModel):
    device: str = Field(description="device id")
    name: str = Field(default="", max_length=100)
    permission: Literal["full", "read", "write"] = "full"
    expire_time: str = Field(default="never", examples=["never", "3 hours", "2027-01-01T00:00:00Z"])
    serie_number: str | None = Field(default=None, max_length=100)


class TokenCreated(BaseModel):
    token: str
    expire_time: str
    permission: str


class TokenPublic(BaseModel):
    id: str
    name: str
    permission: str
    expire_time: str
    serie_number: str | None
    created_at: datetime
    last_authorization: datetime | None


def token_public(token: DeviceToken) -> dict[str, Any]:
    return {
        "id": token.id,
        "name": token.name,
        "permission": token.permission,
        "expire_time": token.expire_at.isoformat() if token.expire_at else "never",
        "serie_number": token.serie_number,
        "created_at": token.created_at.isoformat(),
        "last_authorization": token.last_authorization.isoformat()
        if token.last_authorization
        else None,
    }


@router.post("/device/token", response_model=Envelope[TokenCreated], status_code=201)
async def create_token(
    body: TokenCreate, account: AccountDep, session: SessionDep
) -> dict[str, Any]:
    """Another token for a device (rotation without downtime); the secret is shown only now."""
    await owned_device(session, account.id, body.device)
    expire_at = parse_expire_time(body.expire_time)
    token = new_token()
    session.add(
        DeviceToken(
            id=new_id(),
            token_hash=hash_token(token),
            device_id=body.device,
            account_id=account.id,
            name=body.name,
            permission=body.permission,
            expire_at=expire_at,
            serie_number=body.serie_number,
        )
    )
    await session.commit()
    return ok(
        {
            "token": token,
            "expire_time": expire_at.isoformat() if expire_at else "never",
            "permission": body.permission,
        }
    )


@router.get("/device/token/{device_id}", response_model=Envelope[list[TokenPublic]])
async def list_tokens(device_id: str, account: AccountDep, session: SessionDep) -> dict[str, Any]:
    """A device's tokens, without their secrets."""
    await owned_device(session, account.id, device_id)
    tokens = (
        await session.scalars(
            select(DeviceToken)
            .where(DeviceToken.device_id == device_id)
            .order_by(DeviceToken.created_at)
        )
    ).all()
    return ok([token_public(t) for t in tokens])


@router.delete("/device/token/{token}")
async def delete_token(
    token: str, account: AccountDep, session: SessionDep, ctx: ContextDep
) -> dict[str, Any]:
    """Revoke a token (by its value or its id); its MQTT sessions are disconnected."""
    row = (
        await session.scalars(
            select(DeviceToken).where(
                DeviceToken.account_id == account.id,
                or_(DeviceToken.token_hash == hash_token(token), DeviceToken.id == token),
            )
        )
    ).first()
    if row is None:
        raise ApiError(404, "Token not found")
    await session.delete(row)
    await session.commit()
    await ctx.publish_control(
        config.TOKEN_DELETED,
        key=row.device_id,
        token_hash=row.token_hash,
        device=row.device_id,
        account=account.id,
    )
    return ok("Token Successfully Removed")
