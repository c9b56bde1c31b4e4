"""Checks: state and history, run now, pause and resume, uptime, and the heartbeat pings of cron jobs."""

from __future__ import annotations

import hmac
import time
from typing import Any, Literal

import structlog
from aiohttp import web
from pydantic import Field, SecretStr

from agent.api.errors import ApiError, ok
from agent.api.formats import iso, parse_iso
from agent.api.middlewares import bearer_token
from agent.api.pagination import PageQuery, decode_cursor, pagination
from agent.api.routes import ROUTES
from agent.api.routing import QueryModel, parse_query, read_body
from agent.api.services import Services, services
from agent.checks.base import Status
from agent.checks.remediation import attempts_in_window
from agent.checks.runner import Entry, Outcome
from agent.checks.uptime import Timeline, overall
from agent.config.secrets import MASK
from agent.store import checks as check_rows
from agent.store import incidents as incident_rows

log = structlog.get_logger("vigil.api")
DAY = 86400.0
WINDOWS = {"24h": DAY, "7d": 7 * DAY, "30d": 30 * DAY}
HEARTBEAT_BODY_MAX = 10_000
_DUMMY_TOKEN = "x" * 32  # compared against when the check does not exist, so timing tells nothing


def outcome_view(outcome: Outcome | None) -> dict[str, Any] | None:
    if outcome is None:
        return None
    return {
        "status": outcome.status.label, "message": outcome.message, "started_at": iso(outcome.started_at),
        "duration_ms": round(outcome.duration * 1000, 3), "perfdata": [p.as_dict() for p in outcome.perfdata],
        "details": outcome.details,
    }


def check_view(svc: Services, entry: Entry, timeline: Timeline | None = None) -> dict[str, Any]:
    cfg = entry.config
    flap = entry.flap
    now = time.time()
    view: dict[str, Any] = {
        "name": cfg.name, "type": cfg.type, "description": cfg.description, "labels": cfg.labels,
        "state": flap.state.label if flap.state is not None else "pending",
        "state_since": iso(flap.since), "up": None if flap.state is None else flap.state in (Status.OK, Status.WARNING),
        "message": entry.last.message if entry.last else "not run yet",
        "last_result": outcome_view(entry.last),
        "interval_seconds": cfg.interval, "timeout_seconds": cfg.timeout, "fall": cfg.fall, "rise": cfg.rise,
        "consecutive_failures": flap.fails, "consecutive_successes": flap.passes,
        "paused": entry.paused_at is not None, "paused_at": iso(entry.paused_at), "paused_by": entry.paused_by,
        "depends_on": cfg.depends_on, "suppressed_by": svc.checks.suppressed_by(entry),
        "incident_id": entry.incident_id,
        "remediation": [
            {"index": i, "action": a.kind, "target": a.target, "after": a.after, "max_attempts": a.max_attempts,
             "window_seconds": a.window, "attempts_in_window": attempts_in_window(a, i, entry.remediation, now),
             "exhausted": bool(entry.remediation.get(str(i), {}).get("exhausted"))}
            for i, a in enumerate(cfg.on_failure)
        ],
    }
    if timeline is not None:
        view["uptime_percent_24h"] = timeline.percent(now - DAY, now)
    return view


def config_view(entry: Entry) -> dict[str, Any]:
    data = entry.config.model_dump(mode="json")
    for key in type(entry.config).model_fields:
        if isinstance(getattr(entry.config, key), SecretStr):
            data[key] = MASK
    return data


def entry_or_404(svc: Services, name: str) -> Entry:
    entry = svc.checks.entries.get(name)
    if entry is None:
        known = any(c.name == name for c in svc.config.config.checks)
        hint = " (it is disabled in config)" if known else ""
        raise ApiError(404, f"no check named {name!r}{hint}")
    return entry


async def timelines(svc: Services, window: float, name: str | None = None) -> dict[str, Timeline]:
    now = time.time()
    changes = await check_rows.transitions_since(svc.store, now - window, name)
    by_check: dict[str, list[check_rows.TransitionRow]] = {}
    for change in changes:
        by_check.setdefault(change.check_name, []).append(change)
    return {n: Timeline.build(c, now - window, now) for n, c in by_check.items()}


class ChecksQuery(QueryModel):
    state: Literal["ok", "warning", "critical", "unknown", "pending"] | None = None
    type: str | None = None


@ROUTES.route("GET", "/api/v1/checks", summary="Every check with its state, last result and 24 h uptime",
              scope="read:system", category="health", query=ChecksQuery, tag="checks")
async def list_checks(request: web.Request) -> web.Response:
    svc = services(request)
    q = parse_query(request, ChecksQuery)
    lines = await timelines(svc, DAY)
    views = [check_view(svc, e, lines.get(e.name)) for e in svc.checks.entries.values()]
    summary: dict[str, int] = {}
    for v in views:
        summary[v["state"]] = summary.get(v["state"], 0) + 1
    views = [v for v in views if (q.state is None or v["state"] == q.state) and (q.type is None or v["type"] == q.type)]
    views.sort(key=lambda v: v["name"])
    return ok({"checks": views, "total": len(views), "summary": summary})


class CheckQuery(PageQuery):
    since: str | None = Field(None, description="only results after this ISO 8601 time")


@ROUTES.route("GET", "/api/v1/checks/{name}", summary="One check: state, config, uptime and its results, paginated",
              scope="read:system", category="health", query=CheckQuery, tag="checks",
              responses={404: "no such check"})
async def get_check(request: web.Request) -> web.Response:
    svc = services(request)
    entry = entry_or_404(svc, request.match_info["name"])
    q = parse_query(request, CheckQuery)
    since = None
    if q.since is not None:
        try:
            since = parse_iso(q.since)
        except ValueError:
            raise ApiError(400, f"invalid query parameter: since: not an ISO 8601 time: {q.since!r}") from None
    before = decode_cursor(q.cursor).get("before") if q.cursor else None
    if before is not None and not isinstance(before, int):
        raise ApiError(400, "invalid query parameter: cursor: not a cursor this API gave out")
    results, total = await check_rows.results_page(svc.store, entry.name, q.limit, 0 if q.cursor else q.offset,
                                                   before, since)
    line = (await timelines(svc, WINDOWS["30d"], entry.name)).get(entry.name)
    view = check_view(svc, entry, line)
    view["config"] = config_view(entry)
    view["uptime"] = uptime_view(line, await incident_counts(svc, entry.name))
    heartbeat = svc.checks.heartbeats.get(entry.name)
    if heartbeat is not None:
        view["heartbeat"] = {k: (iso(v) if k.startswith(("last_", "first_")) else v)
                             for k, v in heartbeat.as_dict().items()}
    view["history"] = [
        {"id": r.id, "started_at": iso(r.ts), "status": r.status, "state": r.state, "message": r.message,
         "duration_ms": round(r.duration * 1000, 3), "perfdata": r.perfdata, "details": r.details}
        for r in results
    ]
    last_id = results[-1].id if results else None
    view["pagination"] = pagination(total, q.limit, q.offset, len(results),
                                    {"before": last_id} if last_id is not None else None)
    return ok(view)


@ROUTES.route("POST", "/api/v1/checks/{name}/run", summary="Run a check now and return its result",
              scope="write:checks", tag="checks", responses={404: "no such check"})
async def run_check(request: web.Request) -> web.Response:
    svc = services(request)
    entry = entry_or_404(svc, request.match_info["name"])
    outcome = await svc.checks.run(entry.name)
    await svc.checks.flush()  # the answer shows a result: it is committed, as everything acknowledged is
    return ok({"check": entry.name, "result": outcome_view(outcome), "state": check_view(svc, entry)})


async def _pause(request: web.Request, paused: bool) -> web.Response:
    svc = services(request)
    entry = entry_or_404(svc, request.match_info["name"])
    actor = request["key"].id
    entry = await svc.checks.set_paused(entry.name, paused, actor)
    await svc.audit.record("check_paused" if paused else "check_resumed", actor=actor, remote=request.remote,
                           target=f"check:{entry.name}", outcome="success")
    return ok(check_view(svc, entry))


@ROUTES.route("POST", "/api/v1/checks/{name}/pause",
              summary="Stop running a check until resumed (kept across restarts)",
              scope="write:checks", tag="checks", responses={404: "no such check"})
async def pause_check(request: web.Request) -> web.Response:
    return await _pause(request, True)


@ROUTES.route("POST", "/api/v1/checks/{name}/resume",
              summary="Run a paused check again; its remediation counters start over",
              scope="write:checks", tag="checks", responses={404: "no such check"})
async def resume_check(request: web.Request) -> web.Response:
    return await _pause(request, False)


class HeartbeatQuery(QueryModel):
    token: str | None = Field(None, description="the check's token, if not sent as Authorization: Bearer")
    exit_status: int | None = Field(None, ge=0, le=255, description="the job's exit status; non-zero is a failure")
    run_time: float | None = Field(None, ge=0, description="how long the job ran, in seconds")


async def _heartbeat(request: web.Request, kind: str) -> web.Response:
    svc = services(request)
    name = request.match_info["name"]
    q = parse_query(request, HeartbeatQuery)
    token = bearer_token(request) or q.token or ""
    entry = svc.checks.entries.get(name)
    expected = getattr(entry.config, "token", None) if entry is not None else None
    secret = expected.get_secret_value() if isinstance(expected, SecretStr) else _DUMMY_TOKEN
    if not hmac.compare_digest(token.encode(), secret.encode()) or expected is None or entry is None:
        svc.metrics.auth_failures.labels("heartbeat_token").inc()
        log.warning("auth_failed", reason="heartbeat_token", remote=request.remote, path=request.path)
        raise ApiError(401, "invalid heartbeat token", {"reason": "invalid_token"},
                       headers={"WWW-Authenticate": 'Bearer realm="vigil-heartbeat"'})
    body = await read_body(request, HEARTBEAT_BODY_MAX)
    text = body.decode("utf-8", "replace").strip()
    message = text.splitlines()[0][:500] if text else None
    beat = await svc.checks.heartbeat(name, kind, q.exit_status, q.run_time, message)
    return ok({"check": name, "received": kind, "at": iso(time.time()), "last_ping": iso(beat.last_ping),
               "last_start": iso(beat.last_start), "last_fail": iso(beat.last_fail)})


_HEARTBEAT_RESPONSES = {401: "wrong token, or no such heartbeat check (not told apart)"}


@ROUTES.route("POST", "/api/v1/checks/{name}/ping",
              summary="A cron job reports success (authenticated by the check's own token, not an API key)",
              scope=None, category="heartbeat", query=HeartbeatQuery, tag="checks", responses=_HEARTBEAT_RESPONSES)
async def heartbeat_ping(request: web.Request) -> web.Response:
    return await _heartbeat(request, "ping")


@ROUTES.route("POST", "/api/v1/checks/{name}/start", summary="A cron job reports that it started",
              scope=None, category="heartbeat", query=HeartbeatQuery, tag="checks", responses=_HEARTBEAT_RESPONSES)
async def heartbeat_start(request: web.Request) -> web.Response:
    return await _heartbeat(request, "start")


@ROUTES.route("POST", "/api/v1/checks/{name}/fail", summary="A cron job reports failure",
              scope=None, category="heartbeat", query=HeartbeatQuery, tag="checks", responses=_HEARTBEAT_RESPONSES)
async def heartbeat_fail(request: web.Request) -> web.Response:
    return await _heartbeat(request, "fail")


async def incident_counts(svc: Services, check: str | None) -> int:
    _rows, total, _counts = await incident_rows.page(svc.store, 1, 0, check_name=check,
                                                     since=time.time() - WINDOWS["30d"])
    return total


def uptime_view(line: Timeline | None, incidents_30d: int) -> dict[str, Any]:
    now = time.time()
    view: dict[str, Any] = {
        "current_uptime_hours": None, "uptime_percent_24h": None, "uptime_percent_7d": None,
        "uptime_percent_30d": None, "incidents_count": incidents_30d, "last_downtime": None,
    }
    if line is None:
        return view
    view["current_uptime_hours"] = round((now - line.up_since) / 3600, 3) if line.up_since is not None else 0.0
    for label, window in WINDOWS.items():
        view[f"uptime_percent_{label}"] = line.percent(now - window, now)
    view["last_downtime"] = iso(line.last_down_start)
    return view


@ROUTES.route("GET", "/api/v1/uptime",
              summary="Uptime over 24 h, 7 d and 30 d, incidents and last downtime: overall and per check",
              scope="read:system", category="health", tag="checks")
async def get_uptime(request: web.Request) -> web.Response:
    svc = services(request)
    lines = await timelines(svc, WINDOWS["30d"])
    lines = {n: t for n, t in lines.items() if n in svc.checks.entries}
    data = uptime_view(overall(list(lines.values())) if lines else None, await incident_counts(svc, None))
    data["checks"] = [
        {"check": name, **uptime_view(lines.get(name), await incident_counts(svc, name))}
        for name in sorted(svc.checks.entries)
    ]
    return ok(data)
