"""Actions: what happens when a topic matches or a variable meets a condition."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field
from sqlalchemy import select

from sluice import config
from sluice.db.models import Action, Device
from sluice.ids import new_id
from sluice.topicfilter import validate_topic_filter
from sluice_api.deps import AccountDep, ContextDep, SessionDep
from sluice_api.errors import ERROR_RESPONSES, ApiError, Envelope, ok

router = APIRouter(tags=["actions"], responses=ERROR_RESPONSES)

CONDITIONS = ("<", ">", "=", "!", "><", "*")
VALUE_TYPES = ("string", "number", "boolean", "*")
ACTION_TYPES = ("insert", "post", "mqtt", "email")


class ActionCreate(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    active: bool = True
    type: Literal["mqtt_topic", "condition"] = Field(examples=["mqtt_topic"])
    trigger: list[dict[str, Any]] = Field(
        min_length=1, examples=[[{"device": "<device id>", "topic": "sensors/#"}]]
    )
    action: dict[str, Any] = Field(examples=[{"type": "insert"}])
    tags: list[dict[str, str]] = Field(default_factory=list)


class ActionUpdate(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=100)
    active: bool | None = None
    trigger: list[dict[str, Any]] | None = Field(default=None, min_length=1)
    action: dict[str, Any] | None = None
    tags: list[dict[str, str]] | None = None


class ActionLock(BaseModel):
    locked: bool


class ActionCreated(BaseModel):
    action: str


class ActionPublic(BaseModel):
    id: str
    name: str
    active: bool
    type: str
    trigger: list[dict[str, Any]]
    action: dict[str, Any]
    tags: list[dict[str, str]]
    locked: bool
    created_at: datetime
    updated_at: datetime
    last_triggered: datetime | None


def action_public(action: Action) -> dict[str, Any]:
    return ActionPublic.model_validate(action, from_attributes=True).model_dump(mode="json")


async def _check_scope(
    session: SessionDep, account_id: str, trigger: dict[str, Any], n: int
) -> None:
    device = trigger.get("device")
    if device:
        row = await session.get(Device, str(device))
        if row is None or row.account_id != account_id:
            raise ApiError(400, f"trigger {n}: device {device} not found")
    elif not trigger.get("tag_key"):
        raise ApiError(400, f"trigger {n}: give 'device' or 'tag_key' (+ 'tag_value')")


async def validate_action(
    session: SessionDep,
    account_id: str,
    kind: str,
    triggers: list[dict[str, Any]],
    action: dict[str, Any],
) -> None:
    for n, trigger in enumerate(triggers):
        await _check_scope(session, account_id, trigger, n)
        if kind == "mqtt_topic":
            topic = trigger.get("topic")
            problem = (
                validate_topic_filter(topic)
                if isinstance(topic, str)
                else "a topic filter is required"
            )
            if problem:
                raise ApiError(400, f"trigger {n}: 'topic' {problem}")
        else:
            if not isinstance(trigger.get("variable"), str) or not trigger["variable"]:
                raise ApiError(400, f"trigger {n}: 'variable' is required")
            if trigger.get("is") not in CONDITIONS:
                raise ApiError(400, f"trigger {n}: 'is' must be one of {' '.join(CONDITIONS)}")
            if trigger.get("value_type", "*") not in VALUE_TYPES:
                raise ApiError(
                    400, f"trigger {n}: 'value_type' must be one of {', '.join(VALUE_TYPES)}"
                )
            if trigger["is"] == "><" and trigger.get("second_value") is None:
                raise ApiError(400, f"trigger {n}: '><' needs 'second_value'")
    kind_of_action = action.get("type")
    if kind_of_action not in ACTION_TYPES:
        raise ApiError(400, f"action.type must be one of {', '.join(ACTION_TYPES)}")
    if kind_of_action == "insert" and kind != "mqtt_topic":
        raise ApiError(400, "an 'insert' action needs an mqtt_topic trigger")
    required = {
        "post": ("url",),
        "mqtt": ("device", "topic", "payload"),
        "email": ("to", "subject", "message"),
    }
    for name in required.get(kind_of_action, ()):
        if not action.get(name):
            raise ApiError(400, f"action.{name} is required for a '{kind_of_action}' action")
    if kind_of_action == "mqtt":
        target = await session.get(Device, str(action["device"]))
        if target is None or target.account_id != account_id:
            raise ApiError(400, f"action.device {action['device']} not found")


async def owned_action(session: SessionDep, account_id: str, action_id: str) -> Action:
    action = await session.get(Action, action_id)
    if action is None or action.account_id != account_id:
        raise ApiError(404, f"Action {action_id} not found")
    return action


@router.post("/action", response_model=Envelope[ActionCreated], status_code=201)
async def create_action(
    body: ActionCreate, account: AccountDep, session: SessionDep, ctx: ContextDep
) -> dict[str, Any]:
    await validate_action(session, account.id, body.type, body.trigger, body.action)
    action = Action(
        id=new_id(),
        account_id=account.id,
        name=body.name,
        active=body.active,
        type=body.type,
        trigger=body.trigger,
        action=body.action,
        tags=body.tags,
    )
    session.add(action)
    await session.commit()
    await ctx.publish_control(
        config.ACTION_CHANGED, key=action.id, action=action.id, account=account.id
    )
    return ok({"action": action.id})


@router.get("/action", response_model=Envelope[list[ActionPublic]])
async def list_actions(account: AccountDep, session: SessionDep) -> dict[str, Any]:
    actions = (
        await session.scalars(
            select(Action).where(Action.account_id == account.id).order_by(Action.created_at)
        )
    ).all()
    return ok([action_public(a) for a in actions])


@router.get("/action/{action_id}", response_model=Envelope[ActionPublic])
async def get_action(action_id: str, account: AccountDep, session: SessionDep) -> dict[str, Any]:
    return ok(action_public(await owned_action(session, account.id, action_id)))


@router.put("/action/{action_id}", response_model=Envelope[ActionPublic])
async def update_action(
    action_id: str, body: ActionUpdate, account: AccountDep, session: SessionDep, ctx: ContextDep
) -> dict[str, Any]:
    action = await owned_action(session, account.id, action_id)
    triggers = body.trigger if body.trigger is not None else action.trigger
    what = body.action if body.action is not None else action.action
    await validate_action(session, account.id, action.type, triggers, what)
    for name in ("name", "active", "trigger", "action", "tags"):
        value = getattr(body, name)
        if value is not None:
            setattr(action, name, value)
    await session.commit()
    await ctx.publish_control(
        config.ACTION_CHANGED, key=action.id, action=action.id, account=account.id
    )
    return ok(action_public(action))


@router.put("/action/{action_id}/lock", response_model=Envelope[ActionPublic])
async def lock_action(
    action_id: str, body: ActionLock, account: AccountDep, session: SessionDep, ctx: ContextDep
) -> dict[str, Any]:
    """Set the lock state of a condition action (locked: only unlock conditions are checked)."""
    action = await owned_action(session, account.id, action_id)
    action.locked = body.locked
    await session.commit()
    await ctx.publish_control(
        config.ACTION_CHANGED, key=action.id, action=action.id, account=account.id
    )
    return ok(action_public(action))


@router.delete("/action/{action_id}")
async def delete_action(
    action_id: str, account: AccountDep, session: SessionDep, ctx: ContextDep
) -> dict[str, Any]:
    action = await owned_action(session, account.id, action_id)
    await session.delete(action)
    await session.commit()
    await ctx.publish_control(
        config.ACTION_CHANGED, key=action_id, action=action_id, account=account.id
    )
    return ok("Action Successfully Removed")
