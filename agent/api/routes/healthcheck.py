"""The full health check (the seed's system health check): started as a task, kept as a report.
The work is in agent/diagnostics/report.py."""

from __future__ import annotations

from typing import Literal

from aiohttp import web
from pydantic import Field, field_validator

from agent.api.errors import ApiError, ok
from agent.api.longops import optional_body, start
from agent.api.pagination import PageQuery, decode_cursor, pagination
from agent.api.routes import ROUTES
from agent.api.routing import BodyModel, parse_query
from agent.api.services import services
from agent.diagnostics.report import SECTIONS, report_view, run_health_check
from agent.store import diagnostics as diag_rows

Section = Literal["database", "authentication", "storage", "performance", "security", "backups", "logs"]
Overall = Literal["healthy", "warning", "critical"]


class CheckBody(BodyModel):
    checks: list[Section] = Field(default_factory=lambda: list(SECTIONS), min_length=1, max_length=len(SECTIONS),
                                  description=f"sections to check (default all: {', '.join(SECTIONS)})")
    integrity_check: bool = Field(False, description="also run PRAGMA quick_check on the database (reads all of it)")

    @field_validator("checks")
    @classmethod
    def _unique(cls, checks: list[Section]) -> list[Section]:
        return list(dict.fromkeys(checks))


class ReportsQuery(PageQuery):
    overall: Overall | None = Field(None, description="only reports with this overall status")


@ROUTES.route("POST", "/api/v1/health/check",
              summary="Full health check (database, authentication, storage, performance, security, backups, "
                      "logs) as a task that stores a report",
              scope="write:maintenance", category="maintenance", body=CheckBody, tag="diagnostics",
              responses={202: "started: the task's result names the stored report",
                         503: "Vigil is stopping (no new tasks), or the store is unavailable"})
async def check(request: web.Request) -> web.Response:
    svc = services(request)
    body = await optional_body(request, CheckBody)
    actor = request["key"].id
    return await start(request, "health_check",
                       lambda ctx: run_health_check(svc, ctx, list(body.checks), body.integrity_check, actor),
                       body, steps=list(body.checks), estimated_seconds=5.0)


@ROUTES.route("GET", "/api/v1/health/reports", summary="Stored health check reports, newest first",
              scope="read:system", category="health", query=ReportsQuery, tag="diagnostics")
async def reports(request: web.Request) -> web.Response:
    svc = services(request)
    q = parse_query(request, ReportsQuery)
    offset = int(decode_cursor(q.cursor).get("offset", 0)) if q.cursor else q.offset
    rows, total, counts = await diag_rows.page_reports(svc.store, q.limit, offset, q.overall)
    return ok({
        "reports": [report_view(r) for r in rows],
        "summary": {s: counts.get(s, 0) for s in ("healthy", "warning", "critical")},
        "pagination": pagination(total, q.limit, offset, len(rows),
                                 {"offset": offset + len(rows)} if offset + len(rows) < total else None),
    })


@ROUTES.route("GET", "/api/v1/health/reports/{id}", summary="One stored health check report",
              scope="read:system", category="health", tag="diagnostics", responses={404: "no such report"})
async def report(request: web.Request) -> web.Response:
    report_id = request.match_info["id"]
    row = await diag_rows.get_report(services(request).store, report_id)
    if row is None:
        raise ApiError(404, f"no health report with id {report_id!r} (the newest {diag_rows.KEEP_REPORTS} are kept)")
    return ok(report_view(row))
