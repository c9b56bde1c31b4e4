"""Vigil's own components (the seed's service management): list, detail, restart in place.

Not to be confused with `/api/v1/units`, the host's managed services: these are the parts of the
agent itself (store, scheduler, collectors, checks, ...). The work is in agent/components.py.
"""

from __future__ import annotations

from aiohttp import web

from agent.api.errors import ApiError, ok
from agent.api.routes import ROUTES
from agent.api.services import services
from agent.components import Components, NotRestartable, UnknownComponent

_UNKNOWN = {404: "no component of that name (the answer lists the known ones)"}


def _unknown(components: Components, name: str) -> ApiError:
    return ApiError(404, f"no component named {name!r}; known: {', '.join(components.names())}",
                    {"service": name, "known": components.names()})


@ROUTES.route("GET", "/api/v1/services", summary="Vigil's own components: status, health, uptime, counters",
              scope="read:system", category="health", tag="services")
async def list_services(request: web.Request) -> web.Response:
    rows = await services(request).components.describe_all()
    return ok({"services": rows, "total": len(rows)})


@ROUTES.route("GET", "/api/v1/services/{name}",
              summary="One component with its config (secrets masked), dependents and recent errors",
              scope="read:system", category="health", responses=_UNKNOWN, tag="services")
async def get_service(request: web.Request) -> web.Response:
    svc = services(request)
    name = request.match_info["name"]
    try:
        return ok(await svc.components.describe(name, config=svc.config.current.masked()))
    except UnknownComponent:
        raise _unknown(svc.components, name) from None


@ROUTES.route("POST", "/api/v1/services/{name}/restart", summary="Restart one of Vigil's components in place",
              scope="admin:services", category="services", tag="services",
              responses={**_UNKNOWN, 409: "this component cannot be restarted in place (the message says why), "
                                          "or a restart of it is already running"})
async def restart_service(request: web.Request) -> web.Response:
    svc = services(request)
    name = request.match_info["name"]
    actor = request["key"].id
    try:
        result = await svc.components.restart(name)
    except UnknownComponent:
        raise _unknown(svc.components, name) from None
    except NotRestartable as exc:
        raise ApiError(409, str(exc), {"service": name}) from None
    outcome = "success" if result["status"] == "completed" else "failure"
    await svc.audit.record("service_restarted", actor=actor, remote=request.remote, target=f"service:{name}",
                           outcome=outcome, details={"duration_ms": result["duration_ms"],
                                                     "message": result["message"]})
    svc.bus.publish("service_restarted", service=name, status=result["status"], duration_ms=result["duration_ms"],
                    message=result["message"], by=actor)
    return ok(result)
