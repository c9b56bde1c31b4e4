"""The one error envelope: {"status":"error","errorType":...,"error":...,"details":...,"request_id":...}."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from agent.tasks.model import Task

STATUS_TYPES = {
    400: "bad_data",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_config",
    429: "rate_limited",
    500: "internal",
    503: "unavailable",
}


class ApiError(Exception):
    def __init__(
        self, status: int, message: str, details: dict[str, Any] | None = None,
        error_type: str | None = None, headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details or {}
        self.error_type = error_type or STATUS_TYPES.get(status, "internal")
        self.headers = headers or {}


def error_response(request: web.Request, error: ApiError) -> web.Response:
    body: dict[str, Any] = {
        "status": "error",
        "errorType": error.error_type,
        "error": error.message,
        "details": error.details,
        "request_id": request.get("request_id"),
    }
    return web.json_response(body, status=error.status, headers=error.headers)


def ok(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"status": "success", "data": data}, status=status, headers=headers)


def accepted(task: Task) -> web.Response:
    """202 for a long operation started as a task: follow it at `links.self` (also the Location header)."""
    link = f"/api/v1/tasks/{task.id}"
    return ok({"task_id": task.id, "status": task.status, "type": task.type, "links": {"self": link}},
              status=202, headers={"Location": link})
