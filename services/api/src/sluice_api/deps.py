"""FastAPI dependencies as Annotated aliases: the routes read like their contract."""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import Depends, Query, Request, Security
from fastapi.security import APIKeyHeader
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from sluice import metrics
from sluice.db.models import Account, AccountToken, Device, DeviceToken, Plan
from sluice.ids import hash_token
from sluice.plans import plan_limits
from sluice_api.context import ApiContext
from sluice_api.errors import ApiError
from sluice_api.observability import auth_failures

# Pages past this would ask the database for offsets it cannot represent.
MAX_PAGE = 1_000_000
Page = Annotated[int, Query(ge=1, le=MAX_PAGE, description="1-based page")]

TOKEN_HEADERS = ("token", "device-token", "account-token", "authorization")
LAST_AUTH_RESOLUTION = timedelta(minutes=1)

# Declared for the OpenAPI document; the token is read from any of TOKEN_HEADERS or ?token=.
_token_scheme = APIKeyHeader(name="token", auto_error=False, description="device or account token")
_bearer_scheme = APIKeyHeader(name="Authorization", auto_error=False, description="Bearer <token>")

log = logging.getLogger("sluice.api")


def get_context(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.ctx
    return ctx


ContextDep = Annotated[ApiContext, Depends(get_context)]


async def get_session(ctx: ContextDep) -> AsyncIterator[AsyncSession]:
    async with ctx.sessions() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


def request_token(request: Request) -> str | None:
    for name in TOKEN_HEADERS:
        value = request.headers.get(name)
        if value:
            value = value.strip()
            if value.lower().startswith("bearer "):
                value = value[7:].strip()
            return value or None
    return request.query_params.get("token") or None


def _documented_token(
    _a: Annotated[str | None, Security(_token_scheme)] = None,
    _b: Annotated[str | None, Security(_bearer_scheme)] = None,
) -> None:
    return None


async def require_admin(
    request: Request, ctx: ContextDep, _doc: Annotated[None, Depends(_documented_token)]
) -> None:
    token = request_token(request)
    admin = ctx.settings.admin_token
    if not token:
        auth_failures.labels("admin", "missing").inc()
        raise ApiError(
            401, "Authorization required: send the admin token in the 'Authorization' header"
        )
    if not admin or not hmac.compare_digest(token, admin):
        auth_failures.labels("admin", "invalid").inc()
        raise ApiError(401, "Invalid admin token")


AdminDep = Annotated[None, Depends(require_admin)]


@dataclass
class AccountContext:
    account: Account
    token: AccountToken

    @property
    def id(self) -> str:
        return self.account.id


async def authenticate_account(session: AsyncSession, token: str | None) -> AccountContext:
    """The account a token belongs to, or the 401/403 a client should see."""
    if not token:
        auth_failures.labels("account", "missing").inc()
        raise ApiError(
            401, "Authorization required: send an account token in the 'Authorization' header"
        )
    row = (
        await session.execute(
            select(AccountToken, Account)
            .join(Account, Account.id == AccountToken.account_id)
            .where(AccountToken.token_hash == hash_token(token))
        )
    ).first()
    if row is None:
        auth_failures.labels("account", "invalid").inc()
        raise ApiError(401, "Invalid account token")
    account_token, account = row
    now = datetime.now(UTC)
    if account_token.expire_at is not None and account_token.expire_at <= now:
        auth_failures.labels("account", "expired").inc()
        raise ApiError(
            401,
            "Account token expired: use another token of this account "
            "(an administrator can create one with POST /account/{id}/token)",
        )
    if not account.active:
        auth_failures.labels("account", "disabled").inc()
        raise ApiError(403, "Account is disabled")
    await _touch(session, account_token, now)
    return AccountContext(account, account_token)


async def require_account(
    request: Request, session: SessionDep, _doc: Annotated[None, Depends(_documented_token)]
) -> AccountContext:
    return await authenticate_account(session, request_token(request))


AccountDep = Annotated[AccountContext, Depends(require_account)]


@dataclass
class DeviceContext:
    device: Device
    token: DeviceToken
    account: Account

    def require(self, permission: str) -> None:
        """``read`` or ``write``; a ``full`` token may do both."""
        if self.token.permission not in ("full", permission):
            verb = "read data" if permission == "read" else "send data"
            raise ApiError(
                403, f"This device token has '{self.token.permission}' permission and cannot {verb}"
            )


async def require_device(
    request: Request, session: SessionDep, _doc: Annotated[None, Depends(_documented_token)]
) -> DeviceContext:
    token = request_token(request)
    if not token:
        auth_failures.labels("device", "missing").inc()
        raise ApiError(
            401, "Authorization required: send the device token in the 'device-token' header"
        )
    row = (
        await session.execute(
            select(DeviceToken, Device, Account)
            .join(Device, Device.id == DeviceToken.device_id)
            .join(Account, Account.id == Device.account_id)
            .where(DeviceToken.token_hash == hash_token(token))
        )
    ).first()
    if row is None:
        auth_failures.labels("device", "invalid").inc()
        raise ApiError(401, "Invalid device token")
    device_token, device, account = row
    now = datetime.now(UTC)
    if device_token.expire_at is not None and device_token.expire_at <= now:
        auth_failures.labels("device", "expired").inc()
        raise ApiError(401, "Device token expired")
    if not device.active:
        auth_failures.labels("device", "inactive").inc()
        raise ApiError(403, "Device is inactive")
    if not account.active:
        auth_failures.labels("device", "disabled").inc()
        raise ApiError(403, "Account is disabled")
    await _touch(session, device_token, now)
    return DeviceContext(device, device_token, account)


DeviceDep = Annotated[DeviceContext, Depends(require_device)]


async def _touch(session: AsyncSession, token: AccountToken | DeviceToken, now: datetime) -> None:
    """Record ``last_authorization``, at most once a minute per token."""
    last = token.last_authorization
    if last is None or now - last >= LAST_AUTH_RESOLUTION:
        token.last_authorization = now
        await session.commit()


async def account_limit(session: AsyncSession, account: Account, name: str) -> int:
    """One limit of the account's plan (stored limits over the plan's defaults)."""
    plan = await session.get(Plan, account.plan)
    return int(plan_limits(plan.limits if plan else None, account.plan)[name])


async def enforce_limit(
    ctx: ApiContext, session: AsyncSession, account: Account, name: str
) -> None:
    """Count one request against a per-minute plan limit; 429 with Retry-After when over."""
    limit = await account_limit(session, account, name)
    retry_after = ctx.limiter.hit(f"{account.id}:{name}", limit)
    if retry_after is not None:
        metrics.limit_hits.labels("api", name).inc()
        log.info(
            "request over a plan limit",
            extra={"account": account.id, "limit": name, "per_minute": limit, "plan": account.plan},
        )
        seconds = f"{retry_after:.0f}"
        # The message is TagoIO's, word for word: clients match on it.
        raise ApiError(
            429, f"Too many requests (Retry-After: {seconds})", headers={"Retry-After": seconds}
        )
