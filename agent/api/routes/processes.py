"""The process list, from the shared scan (see agent.processes)."""

from __future__ import annotations

from typing import Literal

from aiohttp import web
from pydantic import Field

from agent.api.errors import ApiError, ok
from agent.api.formats import iso
from agent.api.routes import ROUTES
from agent.api.routing import QueryModel, parse_query
from agent.api.services import services

SortKey = Literal["cpu_percent", "memory_percent", "rss", "pid", "name", "user", "create_time"]


class ProcessQuery(QueryModel):
    sort: SortKey = "cpu_percent"
    order: Literal["asc", "desc"] | None = Field(None, description="default: desc for numbers, asc for text")
    limit: int = Field(50, ge=1, description="at most processes.max_limit")
    name: str | None = Field(None, description="case-insensitive substring of the name or command line")
    user: str | None = None


@ROUTES.route("GET", "/api/v1/processes", summary="Running processes with CPU and memory use",
              scope="read:system", category="health", query=ProcessQuery)
async def list_processes(request: web.Request) -> web.Response:
    svc = services(request)
    q = parse_query(request, ProcessQuery)
    max_limit = svc.config.config.processes.max_limit
    if q.limit > max_limit:
        raise ApiError(400, f"invalid query parameter: limit: must be at most {max_limit}",
                       {"errors": [{"field": "limit", "message": f"must be at most {max_limit}"}]})
    rows, taken_at = await svc.processes.snapshot()
    if q.name:
        needle = q.name.lower()
        rows = [r for r in rows if needle in r.name.lower() or needle in " ".join(r.cmdline).lower()]
    if q.user:
        rows = [r for r in rows if r.user == q.user]
    descending = q.order == "desc" if q.order else q.sort not in ("name", "user", "pid")
    rows = sorted(rows, key=lambda r: getattr(r, q.sort), reverse=descending)
    return ok({
        "processes": [r.as_dict() for r in rows[: q.limit]],
        "total_processes": len(rows),
        "returned": min(len(rows), q.limit),
        "taken_at": iso(taken_at),
    })
