"""The response envelope and the mapping of every error onto it."""

from __future__ import annotations

import logging
from typing import Any, Generic, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

T = TypeVar("T")

log = logging.getLogger("sluice.api")


class Envelope(BaseModel, Generic[T]):
    status: bool = True
    result: T


class ErrorEnvelope(BaseModel):
    status: bool = False
    message: str


class ApiError(Exception):
    """An error a client can fix; ``message`` says how."""

    def __init__(self, status_code: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.headers = headers


def ok(result: Any) -> dict[str, Any]:
    return {"status": True, "result": result}


def error_response(
    status_code: int, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"status": False, "message": message}, status_code, headers=headers)


def _describe_validation(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        location = [
            str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "header")
        ]
        where = ".".join(location)
        parts.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
    return "Invalid request: " + "; ".join(parts)


# What each status means, with a message a client could really get.
_ERRORS: dict[int, tuple[str, str]] = {
    400: ("Invalid input; the message says which field", "Unknown plan 'gold'; use one of: free"),
    401: (
        "Missing or invalid token",
        "Authorization required: send an account token in the 'Authorization' header",
    ),
    403: ("The token may not do this", "Account is disabled"),
    404: ("Not found (or not in your account)", "Device 6743a1f0c2d4e5f6a7b8c9d0 not found"),
    409: (
        "Conflicts with the current state; the message says what to change first",
        "Plan 'gold' is used by 2 accounts; move them to another plan first",
    ),
    413: ("Request body too large", "payload_parser is larger than 64 kB"),
    422: ("Malformed request", "Invalid request: name: Field required"),
    429: (
        "Too many requests; retry after the seconds in Retry-After",
        "Too many requests: limit device_token_per_min is 50 per minute; retry in 12 s",
    ),
    503: (
        "A dependency (database or message bus) is unavailable; retry later",
        "kafka: KafkaConnectionError: Unable to bootstrap from [('127.0.0.1', 9092)]",
    ),
}


def error_doc(code: int) -> dict[str, Any]:
    description, example = _ERRORS[code]
    return {
        "model": ErrorEnvelope,
        "description": description,
        "content": {"application/json": {"example": {"status": False, "message": example}}},
    }


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: error_doc(code) for code in (400, 401, 403, 404, 422, 429)
}


def documented(
    example: Any, *extra_errors: int, status_code: int = 200, description: str = "Success"
) -> dict[int | str, dict[str, Any]]:
    """``responses=`` of a route: its success envelope with an example, and extra errors."""
    responses: dict[int | str, dict[str, Any]] = {
        status_code: {
            "description": description,
            "content": {"application/json": {"example": {"status": True, "result": example}}},
        }
    }
    for code in extra_errors:
        responses[code] = error_doc(code)
    return responses


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status_code, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, _describe_validation(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "Request failed"
        if exc.status_code == 404 and message == "Not Found":
            message = f"Route not found: {request.method} {request.url.path}"
        elif exc.status_code == 405:
            message = f"Method {request.method} is not allowed on {request.url.path}"
        return error_response(exc.status_code, message, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error(
            "unhandled error",
            exc_info=exc,
            extra={"method": request.method, "path": request.url.path},
        )
        return error_response(500, "Internal error; the API log has the details")
