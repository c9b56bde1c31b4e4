"""Health and diagnostics of Vigil's own components (the seed's component status): named checks with
measurements, and on-demand tests run as a task. The work is in agent/diagnostics/."""

from __future__ import annotations

from typing import Literal

from aiohttp import web
from pydantic import Field, field_validator

from agent.api.errors import ok
from agent.api.longops import optional_body, start
from agent.api.routes import ROUTES
from agent.api.routing import BodyModel
from agent.api.services import services
from agent.diagnostics.health import components_health
from agent.diagnostics.probes import PROBES, STRESS_SECONDS, run_diagnostics

Test = Literal["connectivity", "performance", "stress"]


class DiagnosticsBody(BodyModel):
    components: list[str] = Field(default_factory=lambda: list(PROBES), min_length=1, max_length=len(PROBES),
                                  description=f"any of {', '.join(PROBES)} (default: all)")
    tests: list[Test] = Field(default_factory=lambda: ["connectivity", "performance"], min_length=1, max_length=3,
                              description=f"connectivity, performance, stress (bounded to about {STRESS_SECONDS:g}s "
                                          "per component); default connectivity and performance")

    @field_validator("components")
    @classmethod
    def _known(cls, names: list[str]) -> list[str]:
        unknown = [n for n in names if n not in PROBES]
        if unknown:
            raise ValueError(f"unknown component(s) {', '.join(map(repr, unknown))}; known: {', '.join(PROBES)}")
        return list(dict.fromkeys(names))

    @field_validator("tests")
    @classmethod
    def _unique(cls, tests: list[Test]) -> list[Test]:
        return list(dict.fromkeys(tests))


@ROUTES.route("GET", "/api/v1/components/health",
              summary="Each component's named checks (pass, warn, fail) with their measurements",
              scope="read:system", category="health", tag="diagnostics")
async def health(request: web.Request) -> web.Response:
    return ok(await components_health(services(request)))


@ROUTES.route("POST", "/api/v1/components/diagnostics",
              summary="Run connectivity, performance and (bounded) stress tests on components, as a task",
              scope="write:maintenance", category="maintenance", body=DiagnosticsBody, tag="diagnostics",
              responses={202: "started: follow links.self (the result has each component's tests)",
                         503: "Vigil is stopping (no new tasks), or the store is unavailable"})
async def diagnostics(request: web.Request) -> web.Response:
    svc = services(request)
    body = await optional_body(request, DiagnosticsBody)
    estimate = len(body.components) * (1.5 + (STRESS_SECONDS * 1.5 if "stress" in body.tests else 0))
    return await start(request, "diagnostics", lambda ctx: run_diagnostics(svc, ctx, body.components, list(body.tests)),
                       body, steps=body.components, estimated_seconds=estimate)
