"""The database (seed's database information): file, WAL, tables with rows and bytes, last vacuum, and
an on-demand integrity check as a task. The work is in agent/diagnostics/storeinfo.py."""

from __future__ import annotations

from aiohttp import web
from pydantic import Field

from agent.api.errors import ok
from agent.api.longops import optional_body, start
from agent.api.routes import ROUTES
from agent.api.routing import BodyModel
from agent.api.services import services
from agent.diagnostics.storeinfo import estimated_seconds, run_integrity_check, store_info


class IntegrityBody(BodyModel):
    quick: bool = Field(False, description="PRAGMA quick_check: skips index-against-table checks, much faster")
    max_errors: int = Field(100, ge=1, le=10_000, description="stop after this many problems")


@ROUTES.route("GET", "/api/v1/store",
              summary="The database: file and WAL size, pages, tables with rows and bytes, last vacuum and checks",
              scope="read:system", category="health", tag="diagnostics")
async def store(request: web.Request) -> web.Response:
    return ok(await store_info(services(request)))


@ROUTES.route("POST", "/api/v1/store/integrity_check",
              summary="Run PRAGMA integrity_check (or quick_check) on a read connection, as a task",
              scope="admin:config", category="maintenance", body=IntegrityBody, tag="diagnostics",
              responses={202: "started: the task's result says ok or lists the problems",
                         503: "Vigil is stopping (no new tasks), maintenance mode, or the store is unavailable"})
async def integrity_check(request: web.Request) -> web.Response:
    svc = services(request)
    body = await optional_body(request, IntegrityBody)
    return await start(request, "integrity_check",
                       lambda ctx: run_integrity_check(svc, ctx, body.quick, body.max_errors),
                       body, steps=["integrity_check"], estimated_seconds=estimated_seconds(svc))
