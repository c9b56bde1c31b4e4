"""The security audit log: who did what through Vigil, newest first, with a summary by kind."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import Field

from agent.api.errors import ApiError, ok
from agent.api.pagination import PageQuery, decode_cursor, pagination
from agent.api.routes import ROUTES
from agent.api.routes.logs import TimeRange, iso_ms, time_window
from agent.api.routing import parse_query
from agent.api.services import services
from agent.audit import severity, summarize
from agent.store import audit as rows
from agent.store.audit import AuditFilter, AuditRow

MAX_TYPES = 50


class AuditQuery(PageQuery):
    event_type: str | None = Field(
        None, max_length=2000,
        description="comma-separated: api_request, auth_failure, access_denied, api_key_created, config_*, ...")
    key: str | None = Field(None, max_length=200, description="only rows of this actor (an API key id, or vigil)")
    from_: str | None = Field(None, alias="from", max_length=64, description="ISO 8601 time or Unix seconds")
    to: str | None = Field(None, max_length=64, description="ISO 8601 time or Unix seconds")
    time_range: TimeRange | None = Field(None, description="instead of from/to: this far back from now")


def event_view(row: AuditRow) -> dict[str, Any]:
    return {
        "id": row.id, "timestamp": iso_ms(row.ts), "event_type": row.event_type, "actor": row.actor,
        "ip_address": row.remote, "target": row.target, "outcome": row.outcome, "details": row.details,
        "severity": severity(row.event_type, row.outcome), "prev_hash": row.prev_hash, "hash": row.hash,
    }


def _before_id(cursor: str) -> int:
    value = decode_cursor(cursor).get("before_id")
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ApiError(400, "invalid query parameter: cursor: not a cursor of this list",
                   {"errors": [{"field": "cursor", "message": "not a cursor of this list"}]})


@ROUTES.route("GET", "/api/v1/security/audit", summary="The audit log, newest first, with a summary by kind",
              scope="admin:security", query=AuditQuery, tag="security")
async def list_audit(request: web.Request) -> web.Response:
    svc = services(request)
    q = parse_query(request, AuditQuery)
    since, until = time_window(q.from_, q.to, q.time_range)
    types = [t.strip() for t in (q.event_type or "").split(",") if t.strip()]
    if len(types) > MAX_TYPES:
        raise ApiError(400, f"invalid query parameter: event_type: at most {MAX_TYPES} types",
                       {"errors": [{"field": "event_type", "message": f"at most {MAX_TYPES} types"}]})
    f = AuditFilter(since, until, types or None, q.key)
    before = _before_id(q.cursor) if q.cursor else None
    found = await rows.page(svc.store, f, before, q.offset, q.limit + 1)
    counts = await rows.type_counts(svc.store, f)
    total = sum(n for t, n in counts.items() if not types or t in types)
    page, more = found[:q.limit], len(found) > q.limit
    return ok({
        "events": [event_view(r) for r in page],
        "summary": {**summarize(counts), "time_range": q.time_range},
        "filters": {"event_type": types or None, "key": q.key,
                    "from": iso_ms(since) if since is not None else None,
                    "to": iso_ms(until) if until is not None else None, "time_range": q.time_range},
        "pagination": pagination(total, q.limit, q.offset, len(page), {"before_id": page[-1].id} if more else None),
    })
