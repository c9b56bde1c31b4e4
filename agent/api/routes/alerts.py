"""Alerts: Prometheus's `/api/v1/alerts`, extended with the stored instances and the operator's workflow
(acknowledge, resolve) of the seed's system management API."""

from __future__ import annotations

from typing import Any, Literal

from aiohttp import web
from pydantic import Field

from agent.alerting.manager import Conflict, NotFound
from agent.api.errors import ApiError, ok
from agent.api.formats import iso
from agent.api.pagination import PageQuery, decode_cursor, pagination
from agent.api.routes import ROUTES
from agent.api.routes.rules import rules_of  # also registers /api/v1/alerts/rules before /api/v1/alerts/{id}
from agent.api.routing import BodyModel, parse_body, parse_query
from agent.api.services import services
from agent.promql.values import format_sample_value
from agent.store import alerts as rows
from agent.store.alerts import AlertRow


def status_of(row: AlertRow) -> str:
    if row.resolved_at is not None:
        return "resolved"
    return "acknowledged" if row.ack_at is not None else "active"


def alert_row_view(row: AlertRow) -> dict[str, Any]:
    """Prometheus's alert fields (labels, annotations, state, activeAt, value) plus the instance's."""
    return {
        "id": row.id, "fingerprint": row.fingerprint, "labels": row.labels, "annotations": row.annotations,
        "state": "inactive" if row.state == "resolved" else row.state, "status": status_of(row),
        "activeAt": iso(row.active_at), "value": format_sample_value(row.value) if row.value is not None else None,
        "alertname": row.alertname, "severity": row.severity,
        "service": row.labels.get("service") or row.labels.get("job") or row.labels.get("check"),
        "title": row.annotations.get("summary") or row.alertname,
        "description": row.annotations.get("description", ""),
        "active_at": iso(row.active_at), "fired_at": iso(row.fired_at), "resolved_at": iso(row.resolved_at),
        "updated_at": iso(row.updated_at),
        "acknowledged": None if row.ack_at is None else {
            "by": row.ack_by, "at": iso(row.ack_at), "notes": row.ack_notes, "assigned_to": row.assigned_to,
            "estimated_resolution": row.estimated_resolution,
        },
        "acknowledged_by": row.ack_by, "acknowledged_at": iso(row.ack_at),
        "resolution": None if row.resolved_by is None else {
            "by": row.resolved_by, "resolution": row.resolution, "notes": row.resolution_notes,
            "preventive_measures": row.preventive_measures,
        },
    }


class AlertsQuery(PageQuery):
    status: Literal["active", "acknowledged", "resolved", "pending", "firing", "open", "all"] = Field(
        "open", description="open (default: active and acknowledged), active, acknowledged, resolved, pending, "
                            "firing, all")
    severity: str | None = Field(None, max_length=100)
    service: str | None = Field(None, max_length=200, description="the service, job or check label")
    alertname: str | None = Field(None, max_length=200)


@ROUTES.route("GET", "/api/v1/alerts", summary="Alert instances, newest first, with a summary by status and "
              "severity", scope="read:alerts", query=AlertsQuery, tag="alerts")
async def list_alerts(request: web.Request) -> web.Response:
    svc = services(request)
    q = parse_query(request, AlertsQuery)
    offset = int(decode_cursor(q.cursor).get("offset", 0)) if q.cursor else q.offset
    found, total, counts, by_severity = await rows.page(svc.store, q.limit, offset, q.status, q.severity, q.service,
                                                        q.alertname)
    return ok({
        "alerts": [alert_row_view(r) for r in found],
        "summary": {
            "total_alerts": counts["active"] + counts["acknowledged"] + counts["resolved"],
            "active_alerts": counts["active"], "acknowledged_alerts": counts["acknowledged"],
            "resolved_alerts": counts["resolved"], "pending_alerts": counts["pending"],
            "firing_alerts": counts["firing"], "by_severity": by_severity,
        },
        "pagination": pagination(total, q.limit, offset, len(found),
                                 {"offset": offset + len(found)} if offset + len(found) < total else None),
    })


def _alert_id(request: web.Request) -> int:
    raw = request.match_info["id"]
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 18):  # "³" is a digit to str.isdigit
        raise ApiError(404, f"no alert with id {raw!r}")
    return int(raw)


@ROUTES.route("GET", "/api/v1/alerts/{id}", summary="One alert instance", scope="read:alerts", tag="alerts",
              responses={404: "no such alert"})
async def get_alert(request: web.Request) -> web.Response:
    svc = services(request)
    row = await rows.get(svc.store, _alert_id(request))
    if row is None:
        raise ApiError(404, f"no alert with id {request.match_info['id']}")
    return ok(alert_row_view(row))


class Acknowledge(BodyModel):
    notes: str | None = Field(None, max_length=10_000)
    assigned_to: str | None = Field(None, max_length=200)
    estimated_resolution: str | None = Field(None, max_length=100, description="when it should be fixed (ISO 8601)")


class Resolve(BodyModel):
    resolution: str | None = Field(None, max_length=10_000)
    notes: str | None = Field(None, max_length=10_000)
    preventive_measures: str | None = Field(None, max_length=10_000)


@ROUTES.route("PUT", "/api/v1/alerts/{id}/acknowledge", summary="Acknowledge an alert: no more repeat "
              "notifications for it", scope="write:alerts", body=Acknowledge, tag="alerts",
              responses={404: "no such alert", 409: "the alert is resolved"})
async def acknowledge(request: web.Request) -> web.Response:
    svc = services(request)
    alert_id = _alert_id(request)
    body = await parse_body(request, Acknowledge, svc.config.config.api.max_body_bytes)
    try:
        row = await rules_of(svc).acknowledge(alert_id, request["key"].id, request.remote, body.notes,
                                              body.assigned_to, body.estimated_resolution)
    except NotFound as exc:
        raise ApiError(404, str(exc)) from None
    except Conflict as exc:
        raise ApiError(409, str(exc)) from None
    return ok(alert_row_view(row))


@ROUTES.route("PUT", "/api/v1/alerts/{id}/resolve", summary="Resolve an alert by hand; if its condition still "
              "holds, a new instance fires after `for` again", scope="write:alerts", body=Resolve, tag="alerts",
              responses={404: "no such alert", 409: "the alert is resolved already"})
async def resolve(request: web.Request) -> web.Response:
    svc = services(request)
    alert_id = _alert_id(request)
    body = await parse_body(request, Resolve, svc.config.config.api.max_body_bytes)
    try:
        row = await rules_of(svc).resolve(alert_id, request["key"].id, request.remote, body.resolution, body.notes,
                                          body.preventive_measures)
    except NotFound as exc:
        raise ApiError(404, str(exc)) from None
    except Conflict as exc:
        raise ApiError(409, str(exc)) from None
    return ok(alert_row_view(row))
