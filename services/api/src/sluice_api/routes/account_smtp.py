"""The SMTP server an account's ``email`` actions send through (account token).

Stored in ``accounts.settings["smtp"]``. The password is write-only: it is never returned,
and a PUT without one keeps the current one. The actions service reads the settings at
each attempt, so fixing them lets e-mails that are still being retried go out.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from sluice import config
from sluice.db.models import Account
from sluice_api.deps import AccountDep, ContextDep, SessionDep
from sluice_api.errors import ERROR_RESPONSES, ApiError, Envelope, documented, ok

log = logging.getLogger("sluice.api.smtp")

router = APIRouter(tags=["accounts"], responses=ERROR_RESPONSES)

EXAMPLE = {
    "host": "smtp.example.com",
    "port": 587,
    "username": "alerts@example.com",
    "from": "Sluice alerts <alerts@example.com>",
    "security": "starttls",
    "password_set": True,
}


class SmtpSettingsIn(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    host: str = Field(min_length=1, max_length=255, examples=["smtp.example.com"])
    port: int = Field(default=587, ge=1, le=65535)
    username: str | None = Field(default=None, max_length=255)
    password: str | None = Field(
        default=None, max_length=1024, description="Omit to keep the current one"
    )
    sender: str = Field(
        alias="from", min_length=3, max_length=255, examples=["Sluice <alerts@example.com>"]
    )
    security: Literal["starttls", "tls", "none"] = Field(
        default="starttls",
        description="starttls (usually port 587), tls (implicit TLS, port 465) or none",
    )


class SmtpSettingsPublic(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    host: str
    port: int
    username: str | None
    sender: str = Field(alias="from")
    security: str
    password_set: bool


def _public(smtp: dict[str, Any]) -> dict[str, Any]:
    return SmtpSettingsPublic(
        host=smtp["host"],
        port=smtp["port"],
        username=smtp.get("username"),
        sender=smtp["from"],
        security=smtp.get("security", "starttls"),
        password_set=bool(smtp.get("password")),
    ).model_dump(by_alias=True)


@router.get(
    "/account/smtp", response_model=Envelope[SmtpSettingsPublic], responses=documented(EXAMPLE)
)
async def get_smtp(account: AccountDep) -> dict[str, Any]:
    """The account's SMTP settings, without the password."""
    smtp = (account.account.settings or {}).get("smtp")
    if not isinstance(smtp, dict):
        raise ApiError(404, "No SMTP settings: set them with PUT /account/smtp")
    return ok(_public(smtp))


@router.put(
    "/account/smtp", response_model=Envelope[SmtpSettingsPublic], responses=documented(EXAMPLE)
)
async def put_smtp(
    body: SmtpSettingsIn, account: AccountDep, session: SessionDep, ctx: ContextDep
) -> dict[str, Any]:
    """Set the SMTP server for e-mail actions (applies to e-mails still being retried)."""
    if "@" not in body.sender:
        raise ApiError(400, "'from' must contain an e-mail address, like alerts@example.com")
    row = await session.get(Account, account.id)
    if row is None:
        raise ApiError(404, "Account not found")
    current = (row.settings or {}).get("smtp")
    password = body.password
    if password is None and isinstance(current, dict):
        password = current.get("password")
    smtp = {
        "host": body.host,
        "port": body.port,
        "username": body.username,
        "password": password,
        "from": body.sender,
        "security": body.security,
    }
    row.settings = {**(row.settings or {}), "smtp": smtp}  # a new dict: the change is seen
    await session.commit()
    await ctx.publish_control(config.ACCOUNT_CHANGED, key=account.id, account=account.id)
    log.info("smtp settings saved", extra={"account": account.id, "host": body.host})
    return ok(_public(smtp))


@router.delete("/account/smtp", responses=documented("SMTP Settings Removed"))
async def delete_smtp(account: AccountDep, session: SessionDep, ctx: ContextDep) -> dict[str, Any]:
    """Remove the SMTP settings; e-mail actions fail (and retry) until new ones are set."""
    row = await session.get(Account, account.id)
    if row is None or "smtp" not in (row.settings or {}):
        raise ApiError(404, "No SMTP settings to remove")
    row.settings = {k: v for k, v in row.settings.items() if k != "smtp"}
    await session.commit()
    await ctx.publish_control(config.ACCOUNT_CHANGED, key=account.id, account=account.id)
    return ok("SMTP Settings Removed")
