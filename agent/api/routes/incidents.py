"""Incidents: those failing checks opened and those operators open, worked through to resolved."""

from __future__ import annotations

import time
from typing import Any, Literal

from aiohttp import web
from pydantic import Field

from agent import incidents
from agent.api.errors import ApiError, ok
from agent.api.formats import iso
from agent.api.pagination import PageQuery, decode_cursor, pagination
from agent.api.routes import ROUTES
from agent.api.routing import BodyModel, parse_body, parse_query
from agent.api.services import services
from agent.store import incidents as rows
from agent.store.incidents import IncidentRow

Status = Literal["investigating", "identified", "monitoring", "resolved"]
Severity = Literal["critical", "warning", "info"]


def incident_view(row: IncidentRow) -> dict[str, Any]:
    end = row.resolved_at or time.time()
    return {
        "id": row.id, "title": row.title, "description": row.description, "severity": row.severity,
        "status": row.status, "source": row.source, "check": row.check_name,
        "created_at": iso(row.created_at), "updated_at": iso(row.updated_at), "resolved_at": iso(row.resolved_at),
        "duration_seconds": round(end - row.created_at, 3), "created_by": row.created_by,
        "assigned_to": row.assigned_to,
        "notes": [{"at": iso(n.get("at")), "by": n.get("by"), "text": n.get("text")} for n in row.notes],
    }


class IncidentsQuery(PageQuery):
    status: Status | None = None
    severity: Severity | None = None
    check: str | None = None


@ROUTES.route("GET", "/api/v1/incidents", summary="Incidents, newest first, with counts by status",
              scope="read:alerts", query=IncidentsQuery, tag="incidents")
async def list_incidents(request: web.Request) -> web.Response:
    svc = services(request)
    q = parse_query(request, IncidentsQuery)
    offset = int(decode_cursor(q.cursor).get("offset", 0)) if q.cursor else q.offset
    found, total, counts = await rows.page(svc.store, q.limit, offset, q.status, q.severity, q.check)
    return ok({
        "incidents": [incident_view(r) for r in found],
        "summary": {s: counts.get(s, 0) for s in incidents.STATUSES},
        "pagination": pagination(total, q.limit, offset, len(found),
                                 {"offset": offset + len(found)} if offset + len(found) < total else None),
    })


def _incident_id(request: web.Request) -> int:
    raw = request.match_info["id"]
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 18):  # "³" is a digit to str.isdigit
        raise ApiError(404, f"no incident with id {raw!r}")
    return int(raw)


@ROUTES.route("GET", "/api/v1/incidents/{id}", summary="One incident with its notes", scope="read:alerts",
              tag="incidents", responses={404: "no such incident"})
async def get_incident(request: web.Request) -> web.Response:
    svc = services(request)
    row = await rows.get(svc.store, _incident_id(request))
    if row is None:
        raise ApiError(404, f"no incident with id {request.match_info['id']}")
    return ok(incident_view(row))


class NewIncident(BodyModel):
    title: str = Field(min_length=1, max_length=300)
    severity: Severity = "warning"
    status: Status = "investigating"
    description: str = Field("", max_length=10_000)
    assigned_to: str | None = Field(None, max_length=200)


@ROUTES.route("POST", "/api/v1/incidents", summary="Open an incident", scope="write:alerts", body=NewIncident,
              tag="incidents", responses={201: "created"})
async def create_incident(request: web.Request) -> web.Response:
    svc = services(request)
    body = await parse_body(request, NewIncident, svc.config.config.api.max_body_bytes)
    actor = request["key"].id
    row = await incidents.create(svc.store, body.title, body.severity, body.description, body.assigned_to, actor,
                                 body.status)
    await svc.audit.record("incident_created", actor=actor, remote=request.remote, target=f"incident:{row.id}",
                           outcome="success", details={"title": row.title, "severity": row.severity})
    svc.bus.publish("incident_created", id=row.id, title=row.title, severity=row.severity, by=actor)
    return ok(incident_view(row), status=201)


class IncidentChange(BodyModel):
    title: str | None = Field(None, min_length=1, max_length=300)
    severity: Severity | None = None
    status: Status | None = None
    description: str | None = Field(None, max_length=10_000)
    assigned_to: str | None = Field(None, max_length=200)
    notes: str | None = Field(None, max_length=10_000, description="a note appended to the incident's timeline")


@ROUTES.route("PUT", "/api/v1/incidents/{id}", summary="Update an incident (status, severity, assignee, notes)",
              scope="write:alerts", body=IncidentChange, tag="incidents", responses={404: "no such incident"})
async def update_incident(request: web.Request) -> web.Response:
    svc = services(request)
    incident_id = _incident_id(request)
    body = await parse_body(request, IncidentChange, svc.config.config.api.max_body_bytes)
    changes = {k: v for k, v in body.model_dump(exclude_unset=True, exclude={"notes"}).items()
               if v is not None or k == "assigned_to"}
    if not changes and body.notes is None:
        raise ApiError(400, "nothing to change: give title, severity, status, description, assigned_to or notes")
    actor = request["key"].id
    row = await incidents.update(svc.store, incident_id, changes, actor, body.notes)
    if row is None:
        raise ApiError(404, f"no incident with id {incident_id}")
    await svc.audit.record("incident_updated", actor=actor, remote=request.remote, target=f"incident:{row.id}",
                           outcome="success", details={"changes": changes, "note": bool(body.notes)})
    svc.bus.publish("incident_updated", id=row.id, status=row.status, severity=row.severity, by=actor)
    return ok(incident_view(row))
