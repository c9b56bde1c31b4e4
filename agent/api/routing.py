"""Routes are declared once, with their scope, rate-limit category and parameter models; the
router, the auth middleware and the OpenAPI document all read the same declarations."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, ValidationError

from agent.api.errors import ApiError
from agent.config.schema import Config

Handler = Callable[..., Awaitable[web.StreamResponse]]
M = TypeVar("M", bound=BaseModel)


class QueryModel(BaseModel):
    """Query parameters: unknown ones are an error, so a typo is not silently ignored."""

    model_config = ConfigDict(extra="forbid")


class BodyModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass
class Endpoint:
    method: str
    path: str
    handler: Handler
    summary: str
    scope: str | None  # None: no authentication
    category: str = "general"
    query: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    responses: dict[int, str] = field(default_factory=dict)
    websocket: bool = False
    tag: str = "system"
    body_limit: Callable[[Config], int] | None = None  # default: api.max_body_bytes
    envelope: bool = True  # answers {"status": "success", "data": ...}; the probes, /metrics and OpenAPI do not


class RouteTable:
    def __init__(self) -> None:
        self.endpoints: list[Endpoint] = []

    def route(
        self, method: str, path: str, *, summary: str, scope: str | None, category: str = "general",
        query: type[BaseModel] | None = None, body: type[BaseModel] | None = None,
        responses: dict[int, str] | None = None, websocket: bool = False, tag: str = "system",
        body_limit: Callable[[Config], int] | None = None, envelope: bool = True,
    ) -> Callable[[Handler], Handler]:
        def deco(fn: Handler) -> Handler:
            self.endpoints.append(Endpoint(
                method, path, fn, summary, scope, category, query, body, responses or {}, websocket, tag,
                body_limit, envelope,
            ))
            return fn

        return deco


def parse_query(request: web.Request, model: type[M]) -> M:
    raw: dict[str, Any] = {}
    for key in request.query:
        values = request.query.getall(key)
        raw[key] = values if len(values) > 1 else values[0]
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise bad_input(exc, "query parameter") from None


async def read_body(request: web.Request, max_bytes: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:  # a chunked body arrives in pieces; read to the end, but never past the limit
        chunk = await request.content.read(max_bytes + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if size > max_bytes:
            raise ApiError(413, f"request body is larger than {max_bytes} bytes", {"max_body_bytes": max_bytes})
    return b"".join(chunks)


async def parse_body(request: web.Request, model: type[M], max_bytes: int) -> M:
    data = await read_body(request, max_bytes)
    if not data:
        raise ApiError(400, "request body is empty; expected a JSON object")
    return decode_body(data, model)


def decode_body(data: bytes, model: type[M]) -> M:
    """A body already read, as `model`: 400 naming what is wrong, whether the JSON or a field."""
    try:
        payload = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise ApiError(400, "request body is nested too deeply") from None
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise bad_input(exc, "field") from None


def bad_input(exc: ValidationError, what: str) -> ApiError:
    problems = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "<body>"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = f"unknown {what}"
        problems.append({"field": loc, "message": msg})
    summary = "; ".join(f"{p['field']}: {p['message']}" for p in problems)
    return ApiError(400, f"invalid {what}: {summary}", {"errors": problems})
