"""``GET /device/{id}/inspector``: a device's Live Inspector as Server-Sent Events."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse

from sluice_api.deps import ContextDep, _documented_token, authenticate_account, request_token
from sluice_api.errors import ERROR_RESPONSES, ApiError
from sluice_api.routes.devices import owned_device

router = APIRouter(tags=["live inspector"], responses=ERROR_RESPONSES)

STREAM_EXAMPLE = (
    'id: 41\ndata: {"type":"connect","account":"6743…","device":"6743…","service":"gateway",'
    '"at":1767607200000,"client_id":"boiler-1","protocol":"3.1.1","address":"10.0.0.7:51234"}\n\n'
    'event: live\ndata: {"backlog":1}\n\n'
    'id: 42\ndata: {"type":"publish","account":"6743…","device":"6743…","service":"gateway",'
    '"at":1767607201000,"topic":"sensors/boiler","qos":1,"retain":false,"size":42,'
    '"preview":"{\\"variable\\":\\"temperature\\",\\"value\\":71.5}"}\n\n'
    'event: dropped\ndata: {"dropped":120,"total_dropped":120}\n\n'
)


@router.get(
    "/device/{device_id}/inspector",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": (
                "An endless `text/event-stream`: the device's last events (newest first), "
                "an `event: live` marker, then every new event as it happens. `event: dropped` "
                "says how many events were skipped because the client read too slowly; "
                "`: keepalive` comments keep idle connections open."
            ),
            "content": {"text/event-stream": {"example": STREAM_EXAMPLE}},
        }
    },
    dependencies=[Depends(_documented_token)],
)
async def inspect_device(
    device_id: str,
    request: Request,
    ctx: ContextDep,
    last_event_id: Annotated[
        int | None,
        Query(description="resume: only backlog events after this id (also the header)"),
    ] = None,
    last_event_header: Annotated[int | None, Header(alias="Last-Event-ID")] = None,
) -> StreamingResponse:
    """Watch a device live: connections, subscriptions, publishes with a payload preview,
    parser output and `console` lines, action runs, errors and limit hits.

    Browsers' `EventSource` cannot send headers: pass the account token as `?token=`.
    """
    if ctx.hub is None:
        raise ApiError(503, "The Live Inspector is starting; retry in a moment")
    # Not a SessionDep: the stream outlives the request, and must not hold a connection.
    async with ctx.sessions() as session:
        account = await authenticate_account(session, request_token(request))
        await owned_device(session, account.id, device_id)
    after = last_event_id if last_event_id is not None else (last_event_header or 0)
    return StreamingResponse(
        ctx.hub.stream(account.id, device_id, after),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
