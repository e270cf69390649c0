"""What a device does with its own token besides data: read its params, publish MQTT.

Registered before ``devices``: ``/device/params`` must not be taken for a device id.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from aiokafka.errors import KafkaError
from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from sqlalchemy import select

from sluice import config, records
from sluice.db.models import Device, DeviceParam
from sluice.ids import new_id
from sluice.topicfilter import validate_topic_name
from sluice_api.deps import ContextDep, DeviceDep, SessionDep, enforce_limit
from sluice_api.errors import ERROR_RESPONSES, ApiError, documented, ok

log = logging.getLogger("sluice.api.device")

router = APIRouter(tags=["device services"], responses=ERROR_RESPONSES)

MAX_MESSAGE_BYTES = 256 * 1024
PARAM_EXAMPLE = {"id": "6743a1f0c2d4e5f6a7b8c9e1", "key": "interval", "value": "60", "sent": False}


@router.get("/device/params", responses=documented([PARAM_EXAMPLE]))
async def device_params(
    device: DeviceDep,
    session: SessionDep,
    sent_status: Annotated[
        bool | None, Query(description="only params already sent (true) or not yet (false)")
    ] = None,
) -> dict[str, Any]:
    """The params of the token's device, by key."""
    device.require("read")
    stmt = select(DeviceParam).where(DeviceParam.device_id == device.device.id)
    if sent_status is not None:
        stmt = stmt.where(DeviceParam.sent.is_(sent_status))
    params = (await session.scalars(stmt.order_by(DeviceParam.key, DeviceParam.id))).all()
    return ok([{"id": p.id, "key": p.key, "value": p.value, "sent": p.sent} for p in params])


@router.put("/device/params/{param_id}", responses=documented("Param Successfully Updated"))
async def mark_param_sent(
    param_id: str, device: DeviceDep, session: SessionDep, ctx: ContextDep
) -> dict[str, Any]:
    """Mark a param as sent (read by the device)."""
    device.require("read")
    param = await session.get(DeviceParam, param_id)
    if param is None or param.device_id != device.device.id:
        raise ApiError(404, f"Param {param_id} not found on this device")
    if not param.sent:
        param.sent = True
        await session.commit()
        # Payload parsers see params (device.params): their caches must drop this device.
        await ctx.publish_control(
            config.DEVICE_CHANGED,
            key=device.device.id,
            device=device.device.id,
            account=device.account.id,
        )
    return ok("Param Successfully Updated")


class PublishOptions(BaseModel):
    qos: int = Field(default=0, ge=0, le=2)
    retain: bool = False


class Publish(BaseModel):
    topic: str = Field(min_length=1, examples=["commands/valve"])
    message: Any = Field(description="text sent as it is; anything else as JSON")
    bucket: str | None = Field(default=None, description="target device id (TagoIO's name)")
    device: str | None = Field(default=None, description="target device id; default: this one")
    options: PublishOptions | None = None


@router.post("/mqtt/publish", responses=documented("Message published", 413, 503))
@router.post(
    "/analysis/services/mqtt/publish",
    responses=documented("Message published", 413, 503),
    include_in_schema=False,
)
async def publish(
    body: Publish, device: DeviceDep, session: SessionDep, ctx: ContextDep
) -> dict[str, Any]:
    """Publish an MQTT message to a device of this account (this one by default)."""
    device.require("write")
    await enforce_limit(ctx, session, device.account, "mqtt_publish_per_min")
    problem = validate_topic_name(body.topic)
    if problem:
        raise ApiError(400, f"Invalid topic '{body.topic}': {problem}")
    target = body.device or body.bucket or device.device.id
    if target != device.device.id:
        other = await session.get(Device, target)
        if other is None or other.account_id != device.account.id:
            raise ApiError(404, f"Device {target} not found")
    payload = (
        body.message.encode() if isinstance(body.message, str) else records.dumps(body.message)
    )
    if len(payload) > MAX_MESSAGE_BYTES:
        raise ApiError(413, f"message is larger than {MAX_MESSAGE_BYTES // 1024} kB")
    options = body.options or PublishOptions()
    envelope = records.Envelope(
        message_id=new_id(),
        account=device.account.id,
        device=target,
        topic=body.topic,
        qos=options.qos,
        retain=options.retain,
        origin=f"api:{ctx.settings.node_id}",
    )
    await session.commit()  # no read transaction held while waiting on Kafka
    try:
        await ctx.producer.send_and_wait(
            ctx.topics.downlink, payload, key=target.encode(), headers=envelope.to_headers()
        )
    except KafkaError as exc:
        raise ApiError(
            503, f"Not published: the message bus is unavailable ({type(exc).__name__}); retry"
        ) from None
    log.info(
        "published to device",
        extra={"device": target, "account": device.account.id, "message_id": envelope.message_id},
    )
    return ok("Message published")
