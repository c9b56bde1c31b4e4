"""Managed services: status of the allowlisted units, and start/stop/restart for admins.

A name that is not in the `units:` allowlist is 403 on every route, never 404: the answer must
not differ between "no such unit on this host" and "a unit Vigil may not touch", and the API must
not become a way to probe or control arbitrary units.
"""

from __future__ import annotations

from typing import Literal

import structlog
from aiohttp import web
from pydantic import Field

from agent.api.errors import ApiError, ok
from agent.api.routes import ROUTES
from agent.api.routing import BodyModel, QueryModel, parse_body, parse_query
from agent.api.services import services
from agent.units.manager import STATUSES, UnitManager

log = structlog.get_logger("vigil.api")

_NOT_ALLOWED = {403: "the unit is not in the units allowlist (config `units:`), or the key lacks the scope"}


class UnitAction(BodyModel):
    action: Literal["start", "stop", "restart"]


class UnitsQuery(QueryModel):
    status: Literal["running", "stopped", "failed", "starting", "unknown"] | None = Field(
        None, description="only units in this state")
    search: str | None = Field(None, description="case-insensitive substring of the name, unit, command or description")


def _forbidden(units: UnitManager, name: str) -> ApiError:
    return ApiError(403, f"unit {name!r} is not in the units allowlist (config `units:`)",
                    {"unit": name, "allowed": units.names()})


def _allowed(units: UnitManager, name: str) -> None:
    if units.get(name) is None:
        raise _forbidden(units, name)


@ROUTES.route("GET", "/api/v1/units", summary="Managed services: status, uptime, restarts, memory",
              scope="read:system", category="health", query=UnitsQuery, tag="units")
async def list_units(request: web.Request) -> web.Response:
    q = parse_query(request, UnitsQuery)
    rows = await services(request).units.statuses()
    counts = {s: sum(1 for r in rows if r["status"] == s) for s in STATUSES}
    if q.status:
        rows = [r for r in rows if r["status"] == q.status]
    if q.search:
        needle = q.search.lower()
        rows = [r for r in rows if needle in " ".join(
            [r["name"], r["unit"] or "", " ".join(r["command"] or []), r["description"]]).lower()]
    return ok({"units": rows, "total": len(rows), "counts": counts})


@ROUTES.route("GET", "/api/v1/units/{name}", summary="One managed service's status",
              scope="read:system", category="health", responses=_NOT_ALLOWED, tag="units")
async def get_unit(request: web.Request) -> web.Response:
    units = services(request).units
    name = request.match_info["name"]
    _allowed(units, name)
    try:
        return ok(await units.status(name))
    except KeyError:  # removed by a reload since the check above
        raise _forbidden(units, name) from None


@ROUTES.route("POST", "/api/v1/units/{name}/action", summary="Start, stop or restart a managed service",
              scope="admin:services", category="services", body=UnitAction, responses=_NOT_ALLOWED, tag="units")
async def unit_action(request: web.Request) -> web.Response:
    svc = services(request)
    name = request.match_info["name"]
    _allowed(svc.units, name)
    body = await parse_body(request, UnitAction, svc.config.config.api.max_body_bytes)
    key_id = request["key"].id
    try:
        result = await svc.units.action(name, body.action)
    except KeyError:  # removed by a reload since the check above
        raise _forbidden(svc.units, name) from None
    svc.bus.publish("unit_action", unit=name, action=body.action, status=result["status"], by=key_id)
    event = log.info if result["status"] == "completed" else log.warning
    event("unit_action", unit=name, action=body.action, status=result["status"], by=key_id,
          duration_ms=result["duration_ms"], message=result["message"])
    return ok(result)
