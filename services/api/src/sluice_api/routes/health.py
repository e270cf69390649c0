"""Health, readiness and metrics of the API process."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from sluice_api.deps import ContextDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, Any]:
    return {"status": True, "result": "ok"}


@router.get("/readyz")
async def readyz(ctx: ContextDep, response: Response) -> dict[str, Any]:
    problems = {}
    try:
        async with ctx.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as exc:
        problems["database"] = f"{type(exc).__name__}: {exc}"
    try:
        await ctx.producer.client.fetch_all_metadata()
    except Exception as exc:
        problems["kafka"] = f"{type(exc).__name__}: {exc}"
    if problems:
        response.status_code = 503
        return {"status": False, "message": "; ".join(f"{k}: {v}" for k, v in problems.items())}
    return {"status": True, "result": "ready"}


@router.get("/metrics", include_in_schema=False)
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
