"""How a route starts a long operation: an optional JSON body (empty means every default), the work
submitted to the task runner, and the 202 answer pointing at `/api/v1/tasks/{id}`."""

from __future__ import annotations

from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel

from agent.api.errors import ApiError, accepted
from agent.api.middlewares import endpoint_of
from agent.api.routing import decode_body, read_body
from agent.api.services import services
from agent.tasks import RunnerStopped, Work

M = TypeVar("M", bound=BaseModel)


async def optional_body(request: web.Request, model: type[M]) -> M:
    """The body as `model`; an absent or empty body gives the model's defaults."""
    raw = await read_body(request, services(request).config.config.api.max_body_bytes)
    if not raw.strip():
        return model()
    return decode_body(raw, model)


async def start(request: web.Request, type_: str, work: Work, body: BaseModel, *, steps: list[str],
                estimated_seconds: float | None = None) -> web.Response:
    """Submit `work` as a task started by the request's key, with `body` as its params; 202 with the
    task's id and link. The task keeps the scope of the route that started it: cancelling needs the same."""
    endpoint = endpoint_of(request)
    try:
        task = await services(request).tasks.submit(
            type_, work, steps=steps, params=body.model_dump(), actor=request["key"].id,
            estimated_seconds=estimated_seconds, scope=endpoint.scope if endpoint is not None else None)
    except RunnerStopped as exc:
        raise ApiError(503, str(exc)) from None
    return accepted(task)
