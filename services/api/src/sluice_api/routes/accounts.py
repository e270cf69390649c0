"""Accounts (admin token) and account tokens."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field
from sqlalchemy import select

from sluice.db.models import Account, AccountToken, Plan
from sluice.ids import hash_token, new_id, new_token
from sluice_api.deps import AccountDep, AdminDep, SessionDep
from sluice_api.errors import ERROR_RESPONSES, ApiError, Envelope, ok
from sluice_api.expiry import parse_expire_time

router = APIRouter(tags=["accounts"], responses=ERROR_RESPONSES)


class AccountCreate(BaseModel):
    name: str = Field(min_length=1, max_length=100, examples=["acme"])
    plan: str = Field(default="free", examples=["starter"])


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
    name: str = Field(default="", max_length=100)
    expire_time: str = Field(default="never", examples=["never", "30 days"])


def account_public(account: Account) -> dict[str, Any]:
    return AccountPublic.model_validate(account, from_attributes=True).model_dump()


@router.post("/account", response_model=Envelope[AccountCreated], status_code=201)
async def create_account(body: AccountCreate, _: AdminDep, session: SessionDep) -> dict[str, Any]:
    """Create an account (tenant) and its first account token, shown only now."""
    if await session.get(Plan, body.plan) is None:
        names = ", ".join((await session.scalars(select(Plan.name))).all())
        raise ApiError(400, f"Unknown plan '{body.plan}'; use one of: {names}")
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
    return ok({"id": account.id, "token": token})


@router.get("/account", response_model=Envelope[list[AccountPublic]])
async def list_accounts(_: AdminDep, session: SessionDep) -> dict[str, Any]:
    accounts = (await session.scalars(select(Account).order_by(Account.created_at))).all()
    return ok([account_public(a) for a in accounts])


@router.get("/account/info", response_model=Envelope[AccountPublic])
async def account_info(account: AccountDep) -> dict[str, Any]:
    """The account the token belongs to."""
    return ok(account_public(account.account))


@router.post("/account/token", status_code=201)
async def create_account_token(
    body: AccountTokenCreate, account: AccountDep, session: SessionDep
) -> dict[str, Any]:
    """Another account token (for rotation); shown only now."""
    token = new_token()
    expire_at = parse_expire_time(body.expire_time)
    session.add(
        AccountToken(
            id=new_id(),
            token_hash=hash_token(token),
            account_id=account.id,
            name=body.name,
            expire_at=expire_at,
        )
    )
    await session.commit()
    return ok({"token": token, "expire_time": expire_at.isoformat() if expire_at else "never"})
