"""Cleanup (the seed's cache and temp-file clearing): old temp files in configured directories, Vigil's
data past retention, the database's optimize and VACUUM, as a task reporting each category. The work
is in agent/cleanup/."""

from __future__ import annotations

from typing import Literal

from aiohttp import web
from pydantic import Field, field_validator

from agent.api.longops import optional_body, start
from agent.api.routes import ROUTES
from agent.api.routing import BodyModel
from agent.api.services import services
from agent.cleanup.categories import CATEGORIES, CleanupRequest, run_cleanup

Category = Literal["temp_files", "history", "check_results", "alerts", "tasks", "logs", "database"]


class CleanupBody(BodyModel):
    categories: list[Category] = Field(
        default_factory=lambda: list(CATEGORIES), min_length=1, max_length=len(CATEGORIES),
        description=f"any of {', '.join(CATEGORIES)} (default: all, in that order)")
    older_than_days: float | None = Field(
        None, ge=0, le=36_500, description="temp files only: age cut-off in days (default cleanup.temp_max_age)")
    dry_run: bool = Field(False, description="report what would be cleared; delete nothing")

    @field_validator("categories")
    @classmethod
    def _in_order(cls, categories: list[Category]) -> list[Category]:
        return [c for c in CATEGORIES if c in categories]  # type: ignore[misc]


@ROUTES.route("POST", "/api/v1/maintenance/cleanup",
              summary="Clean up temp files, data past retention and the database file, as a task",
              scope="write:maintenance", category="maintenance", body=CleanupBody, tag="maintenance",
              responses={202: "started: the task's result has items and bytes per category",
                         503: "Vigil is stopping (no new tasks), or the store is unavailable"})
async def cleanup(request: web.Request) -> web.Response:
    svc = services(request)
    body = await optional_body(request, CleanupBody)
    req = CleanupRequest(tuple(body.categories), body.older_than_days, body.dry_run)
    return await start(request, "cleanup", lambda ctx: run_cleanup(svc, ctx, req), body, steps=list(req.categories))
