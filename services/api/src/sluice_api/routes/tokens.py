"""Device tokens: many per device, shown once, stored as hashes."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import or_, select

from sluice import config
from sluice.db.models import DeviceToken
from sluice.ids import hash_token, new_id, new_token
from sluice_api.deps import AccountDep, ContextDep, Page, SessionDep, enforce_limit
from sluice_api.errors import ERROR_RESPONSES, ApiError, Envelope, documented, ok
from sluice_api.expiry import parse_expire_time
from sluice_api.routes.devices import owned_device

log = logging.getLogger("sluice.api.tokens")

router = APIRouter(tags=["device tokens"], responses=ERROR_RESPONSES)

TOKEN_RATE_LIMIT = "device_token_per_min"


class TokenCreate(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "device": "6743a1f0c2d4e5f6a7b8c9d0",
                    "name": "field unit",
                    "permission": "write",
                    "expire_time": "3 months",
                    "serie_number": "SN-000123",
                }
            ]
        }
    )

    device: str = Field(description="device id")
    name: str = Field(default="", max_length=100)
    permission: Literal["full", "read", "write"] = "full"
    expire_time: str = Field(
        default="never", description="never, an ISO 8601 time, or relative like '3 hours'"
    )
    serie_number: str | None = Field(
        default=None, max_length=100, description="unique in the account"
    )


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


TOKEN_EXAMPLE = {
    "id": "6743a1f0c2d4e5f6a7b8c9f2",
    "name": "field unit",
    "permission": "write",
    "expire_time": "2026-04-05T10:00:00+00:00",
    "serie_number": "SN-000123",
    "created_at": "2026-01-05T10:00:00+00:00",
    "last_authorization": "2026-01-06T08:12:00+00:00",
}


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


@router.post(
    "/device/token",
    response_model=Envelope[TokenCreated],
    status_code=201,
    responses=documented(
        {"token": "0b6d…-…", "expire_time": "2026-04-05T10:00:00+00:00", "permission": "write"},
        409,
        status_code=201,
    ),
)
async def create_token(
    body: TokenCreate, account: AccountDep, session: SessionDep, ctx: ContextDep
) -> dict[str, Any]:
    """Another token for a device (rotation without downtime); the secret is shown only now.

    Limited per minute by the plan's `device_token_per_min`.
    """
    await enforce_limit(ctx, session, account.account, TOKEN_RATE_LIMIT)
    await owned_device(session, account.id, body.device)
    expire_at = parse_expire_time(body.expire_time)
    if body.serie_number:
        taken = await session.scalar(
            select(DeviceToken.device_id).where(
                DeviceToken.account_id == account.id,
                DeviceToken.serie_number == body.serie_number,
            )
        )
        if taken is not None:
            raise ApiError(
                409,
                f"serie_number '{body.serie_number}' is already used by a token of device "
                f"{taken}; delete that token or choose another serie_number",
            )
    token = new_token()
    row = DeviceToken(
        id=new_id(),
        token_hash=hash_token(token),
        device_id=body.device,
        account_id=account.id,
        name=body.name,
        permission=body.permission,
        expire_at=expire_at,
        serie_number=body.serie_number or None,
    )
    session.add(row)
    await session.commit()
    log.info(
        "device token created",
        extra={"account": account.id, "device": body.device, "token_id": row.id},
    )
    return ok(
        {
            "token": token,
            "expire_time": expire_at.isoformat() if expire_at else "never",
            "permission": body.permission,
        }
    )


@router.get(
    "/device/token/{device_id}",
    response_model=Envelope[list[TokenPublic]],
    responses=documented([TOKEN_EXAMPLE]),
)
async def list_tokens(
    device_id: str,
    account: AccountDep,
    session: SessionDep,
    page: Page = 1,
    amount: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> dict[str, Any]:
    """A device's tokens, without their secrets (those are only shown at creation)."""
    await owned_device(session, account.id, device_id)
    tokens = (
        await session.scalars(
            select(DeviceToken)
            .where(DeviceToken.device_id == device_id)
            .order_by(DeviceToken.created_at, DeviceToken.id)
            .offset((page - 1) * amount)
            .limit(amount)
        )
    ).all()
    return ok([token_public(t) for t in tokens])


@router.delete("/device/token/{token}", responses=documented("Token Successfully Removed"))
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
        raise ApiError(404, "Token not found: give the token itself or its id")
    await session.delete(row)
    await session.commit()
    await ctx.publish_control(
        config.TOKEN_DELETED,
        key=row.device_id,
        token_hash=row.token_hash,
        device=row.device_id,
        account=account.id,
    )
    log.info(
        "device token revoked",
        extra={"account": account.id, "device": row.device_id, "token_id": row.id},
    )
    return ok("Token Successfully Removed")
