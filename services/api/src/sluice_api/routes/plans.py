"""Plans (admin token): the limits accounts get. Changes apply without restarts."""

from __future__ import annotations

import logging
import re
from datetime import datetime
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select

from sluice import config
from sluice.db.models import Account, Plan
from sluice.plans import DEFAULT_PLANS, LIMIT_KEYS, plan_limits
from sluice_api.deps import AdminDep, ContextDep, SessionDep
from sluice_api.errors import ERROR_RESPONSES, ApiError, Envelope, documented, ok

log = logging.getLogger("sluice.api.plans")

router = APIRouter(tags=["plans"], responses=ERROR_RESPONSES)

NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,49}")
MAX_PACKET = 268_435_455  # the largest MQTT packet
PLAN_EXAMPLE = {
    "name": "gold",
    "builtin": False,
    "accounts": 2,
    "limits": {**DEFAULT_PLANS["starter"], "mqtt_publish_per_min": 10_000},
    "created_at": "2026-01-05T10:00:00Z",
    "updated_at": "2026-01-06T10:00:00Z",
}


class PlanCreate(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"name": "gold", "based_on": "starter", "limits": {"mqtt_publish_per_min": 10000}}
            ]
        }
    )

    name: str = Field(description="lower-case letters, digits, '-' and '_' (≤ 50)")
    based_on: str = Field(default="free", description="plan whose limits are the starting point")
    limits: dict[str, Any] = Field(default_factory=dict, description="limits to override")


class PlanUpdate(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"limits": {"mqtt_connect_per_min": 50}}]}
    )

    limits: dict[str, Any] = Field(description="limits to change; others keep their value")


class PlanPublic(BaseModel):
    name: str
    builtin: bool
    accounts: int
    limits: dict[str, Any]
    created_at: datetime
    updated_at: datetime


def check_limits(limits: dict[str, Any]) -> dict[str, int]:
    """Known limit names with whole, non-negative values; else 400 naming the culprit."""
    clean: dict[str, int] = {}
    for key, value in limits.items():
        if key not in LIMIT_KEYS:
            raise ApiError(400, f"Unknown limit '{key}'; known limits: {', '.join(LIMIT_KEYS)}")
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ApiError(400, f"Limit '{key}' must be a whole number ≥ 0 (got {value!r})")
        if key == "max_packet_size" and not 1 <= value <= MAX_PACKET:
            raise ApiError(400, f"Limit 'max_packet_size' must be between 1 and {MAX_PACKET}")
        clean[key] = value
    return clean


async def _usage(session: SessionDep, name: str) -> int:
    count = await session.scalar(
        select(func.count()).select_from(Account).where(Account.plan == name)
    )
    return int(count or 0)


async def plan_public(session: SessionDep, plan: Plan) -> dict[str, Any]:
    return PlanPublic(
        name=plan.name,
        builtin=plan.name in DEFAULT_PLANS,
        accounts=await _usage(session, plan.name),
        limits=plan_limits(plan.limits, plan.name),
        created_at=plan.created_at,
        updated_at=plan.updated_at,
    ).model_dump(mode="json")


async def _plan(session: SessionDep, name: str) -> Plan:
    plan = await session.get(Plan, name)
    if plan is None:
        raise ApiError(404, f"Plan '{name}' not found")
    return plan


@router.get(
    "/plan", response_model=Envelope[list[PlanPublic]], responses=documented([PLAN_EXAMPLE])
)
async def list_plans(_: AdminDep, session: SessionDep) -> dict[str, Any]:
    """Every plan with its full limits and how many accounts use it."""
    plans = (await session.scalars(select(Plan).order_by(Plan.name))).all()
    return ok([await plan_public(session, p) for p in plans])


@router.get("/plan/{name}", response_model=Envelope[PlanPublic], responses=documented(PLAN_EXAMPLE))
async def get_plan(name: str, _: AdminDep, session: SessionDep) -> dict[str, Any]:
    """One plan."""
    return ok(await plan_public(session, await _plan(session, name)))


@router.post(
    "/plan",
    status_code=201,
    response_model=Envelope[PlanPublic],
    responses=documented({**PLAN_EXAMPLE, "accounts": 0}, 409, status_code=201),
)
async def create_plan(body: PlanCreate, _: AdminDep, session: SessionDep) -> dict[str, Any]:
    """A custom plan: the limits of `based_on`, with `limits` over them."""
    if not NAME.fullmatch(body.name):
        raise ApiError(
            400, "Plan name must be 1-50 lower-case letters, digits, '-' or '_' (like 'gold')"
        )
    if await session.get(Plan, body.name) is not None:
        raise ApiError(409, f"Plan '{body.name}' already exists; edit it with PUT /plan/{{name}}")
    base = await session.get(Plan, body.based_on)
    if base is None:
        raise ApiError(400, f"based_on: no plan named '{body.based_on}' (GET /plan lists them)")
    limits = plan_limits(base.limits, body.based_on)
    limits.update(check_limits(body.limits))
    plan = Plan(name=body.name, limits=limits)
    session.add(plan)
    await session.commit()
    log.info("plan created", extra={"plan": plan.name})
    return ok(await plan_public(session, plan))


@router.put("/plan/{name}", response_model=Envelope[PlanPublic], responses=documented(PLAN_EXAMPLE))
async def update_plan(
    name: str, body: PlanUpdate, _: AdminDep, session: SessionDep, ctx: ContextDep
) -> dict[str, Any]:
    """Change some limits; gateways and the API apply them within a second, no restart."""
    plan = await _plan(session, name)
    plan.limits = {**plan_limits(plan.limits, name), **check_limits(body.limits)}
    await session.commit()
    await ctx.publish_control(config.PLAN_CHANGED, key=name, plan=name)
    log.info("plan updated", extra={"plan": name, "changed": sorted(body.limits)})
    return ok(await plan_public(session, plan))


@router.delete("/plan/{name}", responses=documented("Plan Successfully Removed", 409))
async def delete_plan(
    name: str, _: AdminDep, session: SessionDep, ctx: ContextDep
) -> dict[str, Any]:
    """Delete a custom plan that no account uses."""
    plan = await _plan(session, name)
    if name in DEFAULT_PLANS:
        raise ApiError(409, f"Plan '{name}' is built in and cannot be deleted; edit its limits")
    used = await _usage(session, name)
    if used:
        raise ApiError(
            409,
            f"Plan '{name}' is used by {used} account(s); move them to another plan first "
            "(PUT /account/{id} with a new plan)",
        )
    await session.delete(plan)
    await session.commit()
    await ctx.publish_control(config.PLAN_CHANGED, key=name, plan=name, deleted=True)
    log.info("plan deleted", extra={"plan": name})
    return ok("Plan Successfully Removed")
