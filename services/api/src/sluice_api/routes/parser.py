"""The payload-parser playground (account token): run a parser on a payload, store nothing.

Runs go through the parser service's own pipeline and sandbox (same globals and limits), on
a few threads of their own, so a parser that spins to its time limit never holds up other
requests. A parser that fails is a successful call whose ``result.error`` says why.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field, model_validator

from sluice.config import ConfigStore, DeviceInfo
from sluice_api.context import ApiContext
from sluice_api.deps import AccountDep, ContextDep, SessionDep
from sluice_api.errors import ERROR_RESPONSES, ApiError, Envelope, ErrorEnvelope, ok
from sluice_api.parsers import decode_parser_source
from sluice_parser.playground import DEFAULT_TOPIC, SandboxPool, device_from_json, dry_run

router = APIRouter(
    tags=["payload parser"],
    responses={
        **ERROR_RESPONSES,
        413: {"model": ErrorEnvelope, "description": "The code is larger than 64 kB"},
    },
)

PLAYGROUND_THREADS = 2
_POOL_KEY = "parser_playground"

Payload = list[Any] | dict[str, Any] | str | None


class Tag(BaseModel):
    key: str
    value: str = ""


class Param(BaseModel):
    key: str
    value: str = ""
    sent: bool = False


class DeviceContext(BaseModel):
    id: str | None = Field(default=None, examples=["6743a1f0c2d4e5f6a7b8c9d0"])
    name: str | None = None
    tags: list[Tag] = Field(default_factory=list)
    params: list[Param] = Field(default_factory=list)


class MessageInput(BaseModel):
    payload: Payload = Field(
        default=None,
        description="the parser's `payload`: an item array (an object counts as one item); "
        "a string is a raw message, as `raw`",
        examples=[[{"variable": "payload", "value": "0109611395"}]],
    )
    raw: str | None = Field(
        default=None,
        description="a message as published on MQTT `topic`, normalised first (SPEC §3); "
        "the parser also sees it as `raw_payload`",
    )
    encoding: Literal["text", "hex", "base64"] = Field(
        default="text", description="how `raw` is written"
    )
    topic: str = Field(default=DEFAULT_TOPIC, description="MQTT topic `raw` is normalised for")

    @model_validator(mode="after")
    def _one_input(self) -> MessageInput:
        if self.raw is not None and self.payload is not None:
            raise ValueError("send either payload or raw, not both")
        return self

    def raw_bytes(self) -> bytes | None:
        if self.raw is None:
            return None
        try:
            if self.encoding == "hex":
                return bytes.fromhex(self.raw.replace(" ", ""))
            if self.encoding == "base64":
                return base64.b64decode(self.raw, validate=True)
        except (ValueError, binascii.Error):
            raise ApiError(400, f"raw is not valid {self.encoding}") from None
        return self.raw.encode("utf-8", "surrogatepass")


class ParserRunRequest(MessageInput):
    code: str = Field(
        description="JavaScript (≤ 64 kB), base64 of it, or a built-in: @sluice/cayenne-lpp",
        examples=['payload = payload.map((x) => ({ ...x, unit: "C" }));'],
    )
    device: DeviceContext | None = Field(
        default=None, description="the parser's `device` global (default: no tags, no params)"
    )


class DeviceParserRunRequest(MessageInput):
    code: str | None = Field(
        default=None, description="a parser to try instead of the device's saved one"
    )


class ParserRunResult(BaseModel):
    payload: Any = Field(description="what the parser left in `payload`")
    console: list[str] = Field(description='console lines, like "log: decoded 3 readings"')
    error: str | None = Field(description="why the parser failed (with its line), or null")
    duration_ms: float
    validation: str | None = Field(
        description="why the output would be refused when stored, or null"
    )


class DeviceParserRunResult(ParserRunResult):
    input: Any = Field(description="the normalised items the parser got as `payload`")
    stored: list[dict[str, Any]] | None = Field(
        description="the data items that would be stored (null when nothing would be)"
    )


def _pool(ctx: ApiContext) -> SandboxPool:
    pool = ctx.extras.get(_POOL_KEY)
    if pool is None:
        pool = ctx.extras[_POOL_KEY] = SandboxPool(PLAYGROUND_THREADS)
    assert isinstance(pool, SandboxPool)
    return pool


async def _dry_run(
    ctx: ApiContext, session: SessionDep, device: DeviceInfo, body: MessageInput, code: str | None
) -> dict[str, Any]:
    raw = body.raw_bytes()
    # No database connection is held while the run waits for a thread and runs.
    await session.close()
    return await _pool(ctx).call(
        lambda sandbox: dry_run(
            sandbox, device, code=code, payload=body.payload, raw=raw, topic=body.topic
        )
    )


@router.post("/parser/run", response_model=Envelope[ParserRunResult])
async def run_parser(
    body: ParserRunRequest, account: AccountDep, session: SessionDep, ctx: ContextDep
) -> dict[str, Any]:
    """Run parser code on a payload in the parser service's sandbox; nothing is stored."""
    code = decode_parser_source(body.code, "code")
    if code is None:
        raise ApiError(400, "code is empty: send the parser's JavaScript")
    try:
        device = device_from_json(body.device.model_dump() if body.device else None)
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None
    result = await _dry_run(ctx, session, device, body, code)
    return ok({key: result[key] for key in ParserRunResult.model_fields})


@router.post("/device/{device_id}/parser/run", response_model=Envelope[DeviceParserRunResult])
async def run_device_parser(
    device_id: str,
    body: DeviceParserRunRequest,
    account: AccountDep,
    session: SessionDep,
    ctx: ContextDep,
) -> dict[str, Any]:
    """Run the device's parser (or `code`) with its tags and params: see what would be stored."""
    # The device as the parser service loads it.
    device = await ConfigStore(ctx.sessions).device(device_id)
    if device is None or device.account_id != account.id:
        raise ApiError(404, f"Device {device_id} not found")
    code = decode_parser_source(body.code, "code") if body.code is not None else None
    return ok(await _dry_run(ctx, session, device, body, code))
