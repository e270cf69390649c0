"""Accounts (admin token) and account tokens (several per account, revocable)."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import delete, or_, select

from sluice import config
from sluice.db.models import Account, AccountToken, DataPoint, Device, Plan
from sluice.ids import hash_token, new_id, new_token
from sluice_api.deps import AccountDep, AdminDep, ContextDep, Page, SessionDep
from sluice_api.errors import ERROR_RESPONSES, ApiError, Envelope, documented, ok
from sluice_api.expiry import parse_expire_time

log = logging.getLogger("sluice.api.accounts")

router = APIRouter(tags=["accounts"], responses=ERROR_RESPONSES)

EXAMPLE_ACCOUNT = {
    "id": "6743a1f0c2d4e5f6a7b8c9a0",
    "name": "acme",
    "plan": "starter",
    "active": True,
    "created_at": "2026-01-05T10:00:00Z",
}
EXAMPLE_TOKEN = {
    "id": "6743a1f0c2d4e5f6a7b8c9a1",
    "name": "ci",
    "expire_time": "never",
    "created_at": "2026-01-05T10:00:00+00:00",
    "last_authorization": None,
}


class AccountCreate(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"name": "acme", "plan": "starter"}]})

    name: str = Field(min_length=1, max_length=100)
    plan: str = Field(default="free", description="a plan name (GET /plan)")


class AccountUpdate(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"active": False}, {"plan": "scale"}]}
    )

    name: str | None = Field(default=None, min_length=1, max_length=100)
    plan: str | None = None
    active: bool | None = Field(
        default=None, description="false disconnects every MQTT session of the account"
    )


class AccountCreated(BaseModel):
    id: str
    token: str


class AccountPublic(BaseModel):
    id: str
    name: str
    plan: str
    active: bool
    created_at: datetime


class AccountTokenCreate(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"name": "ci", "expire_time": "30 days"}]}
    )

    name: str = Field(default="", max_length=100)
    expire_time: str = Field(
        default="never", description="never, an ISO 8601 time, or relative like '30 days'"
    )


class AccountTokenCreated(BaseModel):
    token: str
    expire_time: str


class AccountTokenPublic(BaseModel):
    id: str
    name: str
    expire_time: str
    created_at: datetime
    last_authorization: datetime | None


def account_public(account: Account) -> dict[str, Any]:
    return AccountPublic.model_validate(account, from_attributes=True).model_dump(mode="json")


def account_token_public(token: AccountToken) -> dict[str, Any]:
    return {
        "id": token.id,
        "name": token.name,
        "expire_time": token.expire_at.isoformat() if token.expire_at else "never",
        "created_at": token.created_at.isoformat(),
        "last_authorization": token.last_authorization.isoformat()
        if token.last_authorization
        else None,
    }


async def _check_plan(session: SessionDep, plan: str) -> None:
    if await session.get(Plan, plan) is None:
        names = ", ".join((await session.scalars(select(Plan.name).order_by(Plan.name))).all())
        raise ApiError(400, f"Unknown plan '{plan}'; use one of: {names}")


async def _new_token(
    session: SessionDep, account_id: str, name: str, expire_time: str
) -> dict[str, Any]:
    token = new_token()
    expire_at = parse_expire_time(expire_time)
    row = AccountToken(
        id=new_id(),
        token_hash=hash_token(token),
        account_id=account_id,
        name=name,
        expire_at=expire_at,
    )
    session.add(row)
    await session.commit()
    log.info("account token created", extra={"account": account_id, "token_id": row.id})
    return {"token": token, "expire_time": expire_at.isoformat() if expire_at else "never"}


async def _account(session: SessionDep, account_id: str) -> Account:
    account = await session.get(Account, account_id)
    if account is None:
        raise ApiError(404, f"Account {account_id} not found")
    return account


# -- the caller's own account (account token) -----------------------------------------
@router.get(
    "/account/info", response_model=Envelope[AccountPublic], responses=documented(EXAMPLE_ACCOUNT)
)
async def account_info(account: AccountDep) -> dict[str, Any]:
    """The account the token belongs to."""
    return ok(account_public(account.account))


@router.post(
    "/account/token",
    status_code=201,
    response_model=Envelope[AccountTokenCreated],
    responses=documented(
        {"token": "3f0c…-…", "expire_time": "2026-02-04T10:00:00+00:00"}, status_code=201
    ),
)
async def create_account_token(
    body: AccountTokenCreate, account: AccountDep, session: SessionDep
) -> dict[str, Any]:
    """Another account token (for rotation); shown only now."""
    return ok(await _new_token(session, account.id, body.name, body.expire_time))


@router.get(
    "/account/token",
    response_model=Envelope[list[AccountTokenPublic]],
    responses=documented([EXAMPLE_TOKEN]),
)
async def list_account_tokens(account: AccountDep, session: SessionDep) -> dict[str, Any]:
    """The account's tokens, without their secrets."""
    tokens = (
        await session.scalars(
            select(AccountToken)
            .where(AccountToken.account_id == account.id)
            .order_by(AccountToken.created_at, AccountToken.id)
        )
    ).all()
    return ok([account_token_public(t) for t in tokens])


@router.delete("/account/token/{token}", responses=documented("Token Successfully Removed"))
async def delete_account_token(
    token: str, account: AccountDep, session: SessionDep
) -> dict[str, Any]:
    """Revoke an account token (by its value or its id); it stops working at once."""
    row = (
        await session.scalars(
            select(AccountToken).where(
                AccountToken.account_id == account.id,
                or_(AccountToken.token_hash == hash_token(token), AccountToken.id == token),
            )
        )
    ).first()
    if row is None:
        raise ApiError(404, "Account token not found: give the token itself or its id")
    await session.delete(row)
    await session.commit()
    log.info("account token revoked", extra={"account": account.id, "token_id": row.id})
    return ok("Token Successfully Removed")


# -- every account (admin token) ------------------------------------------------------
@router.post(
    "/account",
    response_model=Envelope[AccountCreated],
    status_code=201,
    responses=documented({"id": EXAMPLE_ACCOUNT["id"], "token": "3f0c…-…"}, status_code=201),
)
async def create_account(body: AccountCreate, _: AdminDep, session: SessionDep) -> dict[str, Any]:
    """Create an account (tenant) and its first account token, shown only now."""
    await _check_plan(session, body.plan)
    account = Account(id=new_id(), name=body.name, plan=body.plan)
    token = new_token()
    session.add(account)
    await session.flush()
    session.add(
        AccountToken(
            id=new_id(), token_hash=hash_token(token), account_id=account.id, name="default"
        )
    )
    await session.commit()
    log.info("account created", extra={"account": account.id, "plan": body.plan})
    return ok({"id": account.id, "token": token})


@router.get(
    "/account",
    response_model=Envelope[list[AccountPublic]],
    responses=documented([EXAMPLE_ACCOUNT]),
)
async def list_accounts(
    _: AdminDep,
    session: SessionDep,
    page: Page = 1,
    amount: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> dict[str, Any]:
    """Every account, oldest first."""
    accounts = (
        await session.scalars(
            select(Account)
            .order_by(Account.created_at, Account.id)
            .offset((page - 1) * amount)
            .limit(amount)
        )
    ).all()
    return ok([account_public(a) for a in accounts])


@router.get(
    "/account/{account_id}",
    response_model=Envelope[AccountPublic],
    responses=documented(EXAMPLE_ACCOUNT),
)
async def get_account(account_id: str, _: AdminDep, session: SessionDep) -> dict[str, Any]:
    """One account."""
    return ok(account_public(await _account(session, account_id)))


@router.put(
    "/account/{account_id}",
    response_model=Envelope[AccountPublic],
    responses=documented({**EXAMPLE_ACCOUNT, "active": False}),
)
async def update_account(
    account_id: str, body: AccountUpdate, _: AdminDep, session: SessionDep, ctx: ContextDep
) -> dict[str, Any]:
    """Rename, change plan (limits apply at once) or (de)activate an account."""
    account = await _account(session, account_id)
    if body.plan is not None:
        await _check_plan(session, body.plan)
        account.plan = body.plan
    if body.name is not None:
        account.name = body.name
    if body.active is not None:
        account.active = body.active
    await session.commit()
    await ctx.publish_control(
        config.ACCOUNT_CHANGED,
        key=account.id,
        account=account.id,
        active=account.active,
        plan=account.plan,
    )
    log.info(
        "account updated",
        extra={"account": account.id, "active": account.active, "plan": account.plan},
    )
    return ok(account_public(account))


@router.post(
    "/account/{account_id}/token",
    status_code=201,
    response_model=Envelope[AccountTokenCreated],
    responses=documented({"token": "3f0c…-…", "expire_time": "never"}, status_code=201),
)
async def admin_create_account_token(
    account_id: str, body: AccountTokenCreate, _: AdminDep, session: SessionDep
) -> dict[str, Any]:
    """A new token for an account, e.g. when it lost or revoked all of its own."""
    await _account(session, account_id)
    return ok(await _new_token(session, account_id, body.name, body.expire_time))


@router.delete("/account/{account_id}", responses=documented("Account Successfully Removed"))
async def delete_account(
    account_id: str, _: AdminDep, session: SessionDep, ctx: ContextDep
) -> dict[str, Any]:
    """Delete an account with its devices, tokens, actions and data; sessions disconnect."""
    await _account(session, account_id)
    devices = list(
        (await session.scalars(select(Device.id).where(Device.account_id == account_id))).all()
    )
    if devices:
        await session.execute(delete(DataPoint).where(DataPoint.device_id.in_(devices)))
    # Devices, tokens, params, actions and account tokens go with it (ON DELETE CASCADE).
    await session.execute(delete(Account).where(Account.id == account_id))
    await session.commit()
    await ctx.publish_control(
        config.ACCOUNT_CHANGED, key=account_id, account=account_id, active=False, deleted=True
    )
    for device_id in devices:
        await ctx.publish_control(
            config.DEVICE_DELETED, key=device_id, device=device_id, account=account_id
        )
    log.info("account deleted", extra={"account": account_id, "devices": len(devices)})
    return ok("Account Successfully Removed")
