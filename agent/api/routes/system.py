"""Liveness, readiness, health and status."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from agent import __version__
from agent.api.errors import ok
from agent.api.formats import human_duration, iso
from agent.api.routes import ROUTES
from agent.api.services import Services, services
from agent.store import alerts as alert_rows


@ROUTES.route("GET", "/healthz", summary="Liveness: the process answers", scope=None, tag="probes",
              envelope=False)
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@ROUTES.route("GET", "/readyz", summary="Readiness: 200 while the store is open and the scheduler runs",
              scope=None, tag="probes", responses={503: "not ready"}, envelope=False)
async def readyz(request: web.Request) -> web.Response:
    svc = services(request)
    checks = {"store": svc.store.is_open, "scheduler": svc.scheduler.running, "started": svc.is_ready()}
    ready = all(checks.values())
    return web.json_response({"status": "ready" if ready else "not_ready", "checks": checks},
                             status=200 if ready else 503)


async def components(svc: Services) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    try:
        rtt = await svc.store.ping()
        out["store"] = {"status": "healthy", "response_time_ms": round(rtt * 1000, 3),
                        "last_commit_ms": _ms(svc.store.last_commit_seconds)}
    except Exception as exc:
        out["store"] = {"status": "unhealthy", "error": str(exc)}
    sched_ok = svc.scheduler.healthy()
    out["scheduler"] = {
        "status": "healthy" if sched_ok else "unhealthy",
        "jobs": len(svc.scheduler.job_ids()),
        # How late its heartbeat job is: the scheduler's own "response time".
        "response_time_ms": _ms(svc.scheduler.heartbeat_delay),
    }
    failing = svc.collectors.failing()
    durations = [r.duration for r in svc.collectors.latest.values()]
    out["collectors"] = {
        "status": "degraded" if failing else "healthy",
        "enabled": sorted(svc.collectors.latest),
        "failing": {name: svc.collectors.latest[name].error for name in failing},
        "response_time_ms": _ms(max(durations) if durations else None),
    }
    out["api"] = {"status": "healthy", "listen": svc.config.running.config.listen}
    reload = svc.config.last_reload
    out["config"] = {
        "status": "healthy" if reload is None or reload.ok else "degraded",
        "version": svc.config.version_id,
    }
    return out


def overall(parts: dict[str, dict[str, Any]]) -> str:
    states = {p["status"] for p in parts.values()}
    if "unhealthy" in states:
        return "unhealthy"
    return "degraded" if "degraded" in states else "healthy"


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


@ROUTES.route("GET", "/api/v1/health", summary="Overall and per-component health, host resources",
              scope="read:system", category="health")
async def health(request: web.Request) -> web.Response:
    svc = services(request)
    started = time.perf_counter()
    parts = await components(svc)
    parts["api"]["response_time_ms"] = _ms(time.perf_counter() - started)
    uptime = time.time() - svc.started_at
    return ok({
        "overall": {
            "status": overall(parts),
            "uptime": human_duration(uptime),
            "uptime_seconds": round(uptime, 3),
            "last_health_check": iso(time.time()),
            "version": __version__,
            "environment": svc.config.config.environment,
            "hostname": svc.hostname,
        },
        "components": parts,
        "checks": checks_summary(svc),
        "alerts": await alerts_summary(svc),
        "maintenance": maintenance_summary(svc),
        "resources": svc.hostview.resources(),
    })


async def alerts_summary(svc: Services) -> dict[str, Any]:
    """Open alert instances by severity (and within it by state), and the rules' health."""
    by_severity = await alert_rows.open_counts_by_severity(svc.store)
    totals = {state: sum(c.get(state, 0) for c in by_severity.values())
              for state in ("firing", "pending", "acknowledged")}
    rules = svc.rules.counts() if svc.rules is not None else {"groups": 0, "rules": 0, "unhealthy": 0}
    return {**totals, "by_severity": {sev: sum(c.values()) for sev, c in by_severity.items()},
            "by_severity_state": by_severity, "rules": rules}


def maintenance_summary(svc: Services) -> dict[str, Any]:
    period = svc.maintenance.active()
    return {"active": period is not None, "id": period.id if period else None,
            "reason": period.reason if period else None,
            "estimated_completion": iso(period.ends_at) if period else None}


def checks_summary(svc: Services) -> dict[str, Any]:
    """The host's checks at a glance; they say how the host is, so they do not change Vigil's own status."""
    by_state: dict[str, int] = {}
    failing = []
    for name, entry in sorted(svc.checks.entries.items()):
        state = entry.flap.state.label if entry.flap.state is not None else "pending"
        by_state[state] = by_state.get(state, 0) + 1
        if state in ("critical", "unknown"):
            failing.append(name)
    return {"total": len(svc.checks.entries), "by_state": by_state, "failing": failing}


@ROUTES.route("GET", "/api/v1/status", summary="Version, hostname, uptime, config version, components",
              scope="read:system", category="health")
async def status(request: web.Request) -> web.Response:
    svc = services(request)
    parts = await components(svc)
    uptime = time.time() - svc.started_at
    reload = svc.config.last_reload
    return ok({
        "version": __version__,
        "hostname": svc.hostname,
        "environment": svc.config.config.environment,
        "status": overall(parts),
        "started_at": iso(svc.started_at),
        "uptime": human_duration(uptime),
        "uptime_seconds": round(uptime, 3),
        "config": {
            "path": svc.config.path,
            "version": svc.config.version_id,
            "loaded_at": iso(svc.config.loaded_at),
            "last_reload": None if reload is None else {**reload.as_dict(), "at": iso(reload.at)},
            "pending_restart": svc.config.pending_restart,
        },
        "components": {name: part["status"] for name, part in parts.items()},
        "collectors": {
            name: {"success": r.success, "duration_ms": _ms(r.duration), "last_run": iso(r.timestamp),
                   "error": r.error}
            for name, r in sorted(svc.collectors.latest.items())
        },
    })
