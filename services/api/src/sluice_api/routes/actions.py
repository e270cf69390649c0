"""Actions: what happens when a topic matches or a variable meets a condition.

The shape is TagoIO's: ``{"name", "type": "mqtt_topic" | "condition", "trigger": [...],
"action": {"type": "insert" | "post" | "mqtt" | "email", ...}}``. Every change is published
on ``sluice.control``; the actions service applies it within a second.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter
from pydantic import AliasChoices, BaseModel, Field
from sqlalchemy import select

from sluice import config
from sluice.db.models import Action, Device
from sluice.ids import new_id
from sluice.topicfilter import validate_topic_filter, validate_topic_name
from sluice_api.deps import AccountDep, ContextDep, SessionDep
from sluice_api.errors import ERROR_RESPONSES, ApiError, Envelope, documented, ok

router = APIRouter(tags=["actions"], responses=ERROR_RESPONSES)

TRIGGER_TYPES = ("mqtt_topic", "condition")
CONDITIONS = ("<", ">", "=", "!", "><", "*")
ORDERED = ("<", ">", "><")
VALUE_TYPES = ("string", "number", "boolean", "*")
ACTION_TYPES = ("insert", "post", "mqtt", "email")
MAX_TRIGGERS = 50
_NUMBER = re.compile(r"\s*[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?\s*", re.ASCII)
_BOOLEAN = ("true", "false", "1", "0", "yes", "no", "on", "off")
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_PLACEHOLDER = re.compile(r"\$[A-Z][A-Z_.]*\$")
EXAMPLE_ID = "6743a1f0c2d4e5f6a7b8c9d1"
EXAMPLE_ACTION = {
    "id": EXAMPLE_ID,
    "name": "boiler too hot",
    "active": True,
    "type": "condition",
    "trigger": [
        {"device": "6743a1f0c2d4e5f6a7b8c9d0", "variable": "temperature", "is": ">",
         "value": "95", "value_type": "number"},
        {"device": "6743a1f0c2d4e5f6a7b8c9d0", "variable": "temperature", "is": "<",
         "value": "90", "value_type": "number", "unlock": True},
    ],
    "action": {"type": "email", "to": "ops@example.com", "subject": "$DEVICE.NAME$ is hot",
               "message": "$VARIABLE$ = $VALUE$$UNIT$ at $TIME$"},
    "tags": [],
    "locked": False,
    "created_at": "2026-01-05T10:00:00Z",
    "updated_at": "2026-01-05T10:00:00Z",
    "last_triggered": None,
}  # fmt: skip


class ActionCreate(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    active: bool = True
    type: Literal["mqtt_topic", "condition"] = Field(examples=["mqtt_topic"])
    trigger: list[dict[str, Any]] = Field(
        min_length=1,
        max_length=MAX_TRIGGERS,
        examples=[[{"device": "<device id>", "topic": "sensors/#"}]],
    )
    action: dict[str, Any] = Field(examples=[{"type": "insert"}])
    tags: list[dict[str, str]] = Field(default_factory=list)


class ActionUpdate(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=100)
    active: bool | None = None
    type: Literal["mqtt_topic", "condition"] | None = None
    trigger: list[dict[str, Any]] | None = Field(
        default=None, min_length=1, max_length=MAX_TRIGGERS
    )
    action: dict[str, Any] | None = None
    tags: list[dict[str, str]] | None = None


class ActionLock(BaseModel):
    locked: bool = Field(validation_alias=AliasChoices("locked", "lock"))


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


async def _own_device(session: SessionDep, account_id: str, device_id: Any, where: str) -> None:
    if not isinstance(device_id, str) or not device_id:
        raise ApiError(400, f"{where} must be a device id")
    row = await session.get(Device, device_id)
    if row is None or row.account_id != account_id:
        raise ApiError(400, f"{where}: device {device_id} not found in this account")


async def _check_scope(
    session: SessionDep, account_id: str, trigger: dict[str, Any], n: int
) -> None:
    if trigger.get("device"):
        await _own_device(session, account_id, trigger["device"], f"trigger {n}: 'device'")
        return
    key, value = trigger.get("tag_key"), trigger.get("tag_value")
    if not isinstance(key, str) or not key:
        raise ApiError(400, f"trigger {n}: give 'device', or 'tag_key' (and 'tag_value')")
    if value is not None and not isinstance(value, str):
        raise ApiError(400, f"trigger {n}: 'tag_value' must be a string")


def _fits(value: Any, value_type: str) -> bool:
    """Whether a condition value reads as ``value_type`` (as the actions service coerces)."""
    if value is None or isinstance(value, dict | list):
        return False
    if value_type == "number":
        return not isinstance(value, bool) and (
            isinstance(value, int | float) or bool(_NUMBER.fullmatch(str(value)))
        )
    if value_type == "boolean":
        return isinstance(value, bool) or str(value).strip().lower() in _BOOLEAN
    return True


def _check_condition(trigger: dict[str, Any], n: int) -> None:
    variable = trigger.get("variable")
    if not isinstance(variable, str) or not variable.strip():
        raise ApiError(400, f"trigger {n}: 'variable' is required")
    op = trigger.get("is")
    if op not in CONDITIONS:
        raise ApiError(400, f"trigger {n}: 'is' must be one of {' '.join(CONDITIONS)}")
    value_type = trigger.get("value_type", "*")
    if value_type not in VALUE_TYPES:
        raise ApiError(400, f"trigger {n}: 'value_type' must be one of {', '.join(VALUE_TYPES)}")
    if "unlock" in trigger and not isinstance(trigger["unlock"], bool):
        raise ApiError(400, f"trigger {n}: 'unlock' must be true or false")
    if op == "*":
        return
    if op in ORDERED and value_type in ("string", "boolean"):
        raise ApiError(400, f"trigger {n}: '{op}' compares numbers; use value_type 'number' or '*'")
    wanted = "number" if op in ORDERED else value_type
    if not _fits(trigger.get("value"), wanted):
        raise ApiError(
            400, f"trigger {n}: 'value' must be a {wanted if wanted != '*' else 'value'}"
        )
    if op == "><" and not _fits(trigger.get("second_value"), "number"):
        raise ApiError(400, f"trigger {n}: '><' needs a number in 'second_value'")


def _check_headers(headers: Any) -> None:
    if headers is None:
        return
    if isinstance(headers, dict):
        pairs = list(headers.items())
    elif isinstance(headers, list) and all(isinstance(h, dict) for h in headers):
        pairs = [(h.get("key"), h.get("value", "")) for h in headers]
    else:
        raise ApiError(
            400, 'action.headers must be {"Name": "value"} or [{"key": "Name", "value": "value"}]'
        )
    for name, value in pairs:
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            raise ApiError(400, f"action.headers: {name!r} is not a valid header name")
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise ApiError(400, f"action.headers: the value of {name} must be a string")


async def _check_action(
    session: SessionDep, account_id: str, kind: str, action: dict[str, Any]
) -> None:
    what = action.get("type")
    if what not in ACTION_TYPES:
        raise ApiError(400, f"action.type must be one of {', '.join(ACTION_TYPES)}")
    if what == "insert" and kind != "mqtt_topic":
        raise ApiError(400, "an 'insert' action needs an mqtt_topic trigger")
    required = {"post": ("url",), "mqtt": ("device", "topic"), "email": ("to", "subject")}
    for name in required.get(what, ()):
        if not action.get(name):
            raise ApiError(400, f"action.{name} is required for a '{what}' action")
    if what == "post":
        url = action["url"]
        if not isinstance(url, str) or not url.lower().startswith(("http://", "https://")):
            raise ApiError(400, "action.url must be an http:// or https:// URL")
        _check_headers(action.get("headers"))
        if action.get("fallback_device"):
            await _own_device(
                session, account_id, action["fallback_device"], "action.fallback_device"
            )
    elif what == "mqtt":
        await _own_device(session, account_id, action["device"], "action.device")
        topic = action["topic"]
        problem = (
            validate_topic_name(_PLACEHOLDER.sub("x", topic))
            if isinstance(topic, str)
            else "must be a string"
        )
        if problem:
            raise ApiError(400, f"action.topic: {problem}")
        if not isinstance(action.get("payload", ""), str | dict | list):
            raise ApiError(400, "action.payload must be a string (templates allowed) or JSON")
        if action.get("qos", 0) not in (0, 1, 2):
            raise ApiError(400, "action.qos must be 0, 1 or 2")
        if not isinstance(action.get("retain", False), bool):
            raise ApiError(400, "action.retain must be true or false")
    elif what == "email":
        to = action["to"]
        addresses = to if isinstance(to, list) else str(to).replace(";", ",").split(",")
        if not all(isinstance(a, str) and "@" in a.strip(" <>") for a in addresses if a):
            raise ApiError(400, "action.to must hold e-mail addresses, separated by ';' or ','")
        for name in ("subject", "message"):
            if not isinstance(action.get(name, ""), str):
                raise ApiError(400, f"action.{name} must be a string")


async def validate_action(
    session: SessionDep,
    account_id: str,
    kind: str,
    triggers: list[dict[str, Any]],
    action: dict[str, Any],
) -> None:
    """Reject a definition the actions service could not run, naming the field at fault."""
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
            if trigger.get("unlock"):
                raise ApiError(400, f"trigger {n}: 'unlock' is for condition triggers")
        else:
            _check_condition(trigger, n)
    if kind == "condition" and all(t.get("unlock") is True for t in triggers):
        raise ApiError(400, "a condition action needs at least one trigger without 'unlock'")
    await _check_action(session, account_id, kind, action)


async def owned_action(session: SessionDep, account_id: str, action_id: str) -> Action:
    action = await session.get(Action, action_id)
    if action is None or action.account_id != account_id:
        raise ApiError(404, f"Action {action_id} not found")
    return action


async def _changed(ctx: ContextDep, action_id: str, account_id: str) -> None:
    await ctx.publish_control(
        config.ACTION_CHANGED, key=action_id, action=action_id, account=account_id
    )


@router.post(
    "/action",
    response_model=Envelope[ActionCreated],
    status_code=201,
    responses=documented({"action": EXAMPLE_ID}, status_code=201),
)
async def create_action(
    body: ActionCreate, account: AccountDep, session: SessionDep, ctx: ContextDep
) -> dict[str, Any]:
    """Create an action; it runs on the next matching message (within a second)."""
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
    await _changed(ctx, action.id, account.id)
    return ok({"action": action.id})


@router.get(
    "/action", response_model=Envelope[list[ActionPublic]], responses=documented([EXAMPLE_ACTION])
)
async def list_actions(account: AccountDep, session: SessionDep) -> dict[str, Any]:
    """The account's actions, oldest first, with their lock state."""
    actions = (
        await session.scalars(
            select(Action)
            .where(Action.account_id == account.id)
            .order_by(Action.created_at, Action.id)
        )
    ).all()
    return ok([action_public(a) for a in actions])


@router.get(
    "/action/{action_id}",
    response_model=Envelope[ActionPublic],
    responses=documented(EXAMPLE_ACTION),
)
async def get_action(action_id: str, account: AccountDep, session: SessionDep) -> dict[str, Any]:
    """One action, with its lock state."""
    return ok(action_public(await owned_action(session, account.id, action_id)))


@router.put(
    "/action/{action_id}",
    response_model=Envelope[ActionPublic],
    responses=documented(EXAMPLE_ACTION),
)
async def update_action(
    action_id: str, body: ActionUpdate, account: AccountDep, session: SessionDep, ctx: ContextDep
) -> dict[str, Any]:
    """Change any part of an action; the lock state is kept (set it with PUT …/lock)."""
    action = await owned_action(session, account.id, action_id)
    kind = body.type or action.type
    triggers = body.trigger if body.trigger is not None else action.trigger
    what = body.action if body.action is not None else action.action
    await validate_action(session, account.id, kind, triggers, what)
    for name in ("name", "active", "type", "trigger", "action", "tags"):
        value = getattr(body, name)
        if value is not None:
            setattr(action, name, value)
    await session.commit()
    await _changed(ctx, action.id, account.id)
    return ok(action_public(action))


@router.put(
    "/action/{action_id}/lock",
    response_model=Envelope[ActionPublic],
    responses=documented({**EXAMPLE_ACTION, "locked": True}),
)
async def lock_action(
    action_id: str, body: ActionLock, account: AccountDep, session: SessionDep, ctx: ContextDep
) -> dict[str, Any]:
    """Lock or unlock an action: while locked only its unlock conditions are checked."""
    action = await owned_action(session, account.id, action_id)
    action.locked = body.locked
    action.lock_changed_by = None
    await session.commit()
    await _changed(ctx, action.id, account.id)
    return ok(action_public(action))


@router.delete("/action/{action_id}", responses=documented("Action Successfully Removed"))
async def delete_action(
    action_id: str, account: AccountDep, session: SessionDep, ctx: ContextDep
) -> dict[str, Any]:
    """Delete an action; its pending webhook and e-mail retries stop."""
    action = await owned_action(session, account.id, action_id)
    await session.delete(action)
    await session.commit()
    await _changed(ctx, action_id, account.id)
    return ok("Action Successfully Removed")
