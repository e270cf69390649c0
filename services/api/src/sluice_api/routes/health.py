"""Health, readiness and metrics of the API process."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from sluice_api.context import ApiContext
from sluice_api.deps import ContextDep
from sluice_api.errors import documented, error_doc

router = APIRouter(tags=["health"])

CHECK_TIMEOUT = 2.0


@router.get("/healthz", responses=documented("ok"))
async def healthz() -> dict[str, Any]:
    """Liveness: the process answers (no dependency is checked)."""
    return {"status": True, "result": "ok"}


async def _database(ctx: ApiContext) -> None:
    async with ctx.engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


async def _kafka(ctx: ApiContext) -> None:
    await ctx.producer.client.fetch_all_metadata()


async def readiness(ctx: ApiContext) -> dict[str, str]:
    """Why the API is not ready, by dependency (empty when ready)."""
    problems: dict[str, str] = {}
    for name, check in (("database", _database), ("kafka", _kafka)):
        try:
            await asyncio.wait_for(check(ctx), CHECK_TIMEOUT)
        except Exception as exc:
            problems[name] = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    hub_problem = ctx.hub.ready() if ctx.hub else "live inspector not started"
    if hub_problem:
        problems["inspector"] = hub_problem
    return problems


@router.get(
    "/readyz",
    responses={**documented("ready"), 503: error_doc(503)},
)
async def readyz(ctx: ContextDep, response: Response) -> dict[str, Any]:
    """Readiness: the database and Kafka answer, and the inspector tail is assigned."""
    problems = await readiness(ctx)
    if problems:
        response.status_code = 503
        return {"status": False, "message": "; ".join(f"{k}: {v}" for k, v in problems.items())}
    return {"status": True, "result": "ready"}


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    """Prometheus exposition of every metric of this process."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
