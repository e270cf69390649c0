"""The response envelope and the mapping of every error onto it."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

T = TypeVar("T")


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


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorEnvelope, "description": text}
    for code, text in {
        400: "Invalid input; the message says which field",
        401: "Missing or invalid token",
        403: "The token may not do this",
        404: "Not found (or not in your account)",
        422: "Malformed request",
        429: "Too many requests",
    }.items()
}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status_code, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, _describe_validation(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "Request failed"
        if exc.status_code == 404 and message == "Not Found":
            message = "Route not found"
        return error_response(exc.status_code, message, getattr(exc, "headers", None))
