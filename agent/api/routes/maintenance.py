"""Maintenance mode (seed: system management API): enable, disable, status.

These routes keep working during maintenance for everyone with the scope (the gate leaves them alone),
so the period can always be ended from anywhere the API is reachable.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from pydantic import Field, ValidationError

from agent.alerting.maintenance import MaintenanceError, Period
from agent.api.errors import ApiError, ok
from agent.api.formats import iso
from agent.api.routes import ROUTES
from agent.api.routing import BodyModel, bad_input, parse_body, read_body
from agent.api.services import services


class EnableBody(BodyModel):
    reason: str = Field(min_length=1, max_length=500)
    estimated_duration: float | None = Field(
        None, gt=0, description="minutes (fractions allowed); sets estimated_completion, and the end when "
                                "auto_disable is set")
    allowed_ips: list[str] = Field(default_factory=list, max_length=100,
                                   description="addresses or CIDR networks that may still change things")
    notification_message: str = Field("", max_length=2000)
    auto_disable: bool = Field(False, description="end by itself after estimated_duration")


class DisableBody(BodyModel):
    maintenance_id: str | None = Field(None, max_length=100, description="must be the active period when given")
    completion_notes: str = Field("", max_length=10_000)


def _error(exc: MaintenanceError) -> ApiError:
    details: dict[str, Any] = {}
    period = exc.period
    if period is not None:
        details = {"maintenance_id": period.id, "reason": period.reason, "source": period.source,
                   "estimated_completion": iso(period.ends_at), "ended_at": iso(period.ended_at)}
    return ApiError(exc.status, str(exc), details)


@ROUTES.route("POST", "/api/v1/maintenance/enable", summary="Enter maintenance mode", scope="write:maintenance",
              category="maintenance", body=EnableBody, tag="maintenance",
              responses={409: "maintenance is already on (details name the active period)"})
async def enable(request: web.Request) -> web.Response:
    svc = services(request)
    body = await parse_body(request, EnableBody, svc.config.config.api.max_body_bytes)
    try:
        period = await svc.maintenance.enable(
            body.reason, body.estimated_duration, body.allowed_ips, body.notification_message, body.auto_disable,
            request["key"].id, request.remote,
        )
    except MaintenanceError as exc:
        raise _error(exc) from None
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None
    return ok({**svc.maintenance.status(), "maintenance_id": period.id, "status": "enabled"})


@ROUTES.route("POST", "/api/v1/maintenance/disable", summary="Leave maintenance mode (the body is optional)",
              scope="write:maintenance", category="maintenance", body=DisableBody, tag="maintenance",
              responses={404: "no period with that id", 409: "maintenance is not on, or that period already ended"})
async def disable(request: web.Request) -> web.Response:
    svc = services(request)
    raw = await read_body(request, svc.config.config.api.max_body_bytes)
    body = _disable_body(raw) if raw.strip() else DisableBody()
    try:
        period = await svc.maintenance.disable(body.maintenance_id, body.completion_notes, request["key"].id,
                                               request.remote)
    except MaintenanceError as exc:
        raise _error(exc) from None
    return ok(_ended(period, body.completion_notes))


def _disable_body(raw: bytes) -> DisableBody:
    try:
        payload = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"request body is not valid JSON: {exc}") from None
    try:
        return DisableBody.model_validate(payload)
    except ValidationError as exc:
        raise bad_input(exc, "field") from None


def _ended(period: Period, notes: str) -> dict[str, Any]:
    ended_at = period.ended_at if period.ended_at is not None else period.started_at
    return {
        "maintenance_id": period.id, "status": "disabled", "reason": period.reason, "source": period.source,
        "enabled_at": iso(period.started_at), "disabled_at": iso(ended_at),
        "duration_seconds": round(ended_at - period.started_at, 3), "completion_notes": notes,
        "maintenance_mode": False,
    }


@ROUTES.route("GET", "/api/v1/maintenance/status", summary="Whether maintenance mode is on, until when, and the "
              "scheduled windows", scope="read:system", category="maintenance", tag="maintenance")
async def status(request: web.Request) -> web.Response:
    return ok(services(request).maintenance.status())
