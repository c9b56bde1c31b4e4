"""How a route starts a long operation: an optional JSON body (empty means every default), the work
submitted to the task runner, and the 202 answer pointing at `/api/v1/tasks/{id}`."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from agent.api.errors import ApiError, accepted
from agent.api.routing import bad_input, read_body
from agent.api.services import services
from agent.tasks import RunnerStopped, Work

M = TypeVar("M", bound=BaseModel)


async def optional_body(request: web.Request, model: type[M]) -> M:
    """The body as `model`; an absent or empty body gives the model's defaults."""
    raw = await read_body(request, services(request).config.config.api.max_body_bytes)
    if not raw.strip():
        return model()
    try:
        payload = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise ApiError(400, "request body is nested too deeply") from None
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise bad_input(exc, "field") from None


async def start(request: web.Request, type_: str, work: Work, *, scope: str, steps: list[str] | None = None,
                params: dict[str, Any] | None = None, estimated_seconds: float | None = None) -> web.Response:
    """Submit `work` as a task started by the request's key; 202 with the task's id and link."""
    try:
        task = await services(request).tasks.submit(
            type_, work, steps=steps, params=params, actor=request["key"].id, estimated_seconds=estimated_seconds,
            scope=scope)
    except RunnerStopped as exc:
        raise ApiError(503, str(exc)) from None
    return accepted(task)
