"""Silences with Alertmanager's API v2 semantics and shapes, inside Vigil's envelope.

A silence in an answer has Alertmanager's fields (`id`, `status.state`, `updatedAt`, `matchers` as
`{name, value, isRegex, isEqual}`, `startsAt`, `endsAt`, `createdBy`, `comment`), so tools written for
Alertmanager read it; a POST takes Alertmanager's body, or the same with snake_case names and matchers
written as strings (`severity=~"crit.*"`).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from agent.alerting.matchers import Matcher, parse_matchers
from agent.alerting.silencebook import SilenceExpired, SilenceNotFound
from agent.alerting.silences import Silence
from agent.api.errors import ApiError, ok
from agent.api.pagination import PageQuery, decode_cursor, pagination
from agent.api.routes import ROUTES
from agent.api.routing import parse_query, read_body
from agent.api.services import services


def _rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def silence_view(s: Silence, now: float) -> dict[str, Any]:
    """Alertmanager's GettableSilence, plus `matchersText` (the amtool spelling of the matchers)."""
    return {
        "id": s.id,
        "status": {"state": s.state(now)},
        "updatedAt": _rfc3339(s.updated_at),
        "matchers": [m.to_api() for m in s.matchers],
        "matchersText": "{" + ",".join(str(m) for m in s.matchers) + "}",
        "startsAt": _rfc3339(s.starts_at),
        "endsAt": _rfc3339(s.ends_at),
        "createdBy": s.created_by,
        "comment": s.comment,
    }


class SilencesQuery(PageQuery):
    state: Literal["active", "pending", "expired"] | None = None
    filter: list[str] | str | None = Field(
        None, description='matchers a silence\'s own matchers must satisfy (Alertmanager\'s filter), e.g. '
                          'alertname="DiskFull"; repeat for several')
    matcher: list[str] | str | None = Field(None, description="the same as filter")


def _filters(q: SilencesQuery) -> list[Matcher]:
    texts: list[str] = []
    for value in (q.filter, q.matcher):
        if value is not None:
            texts.extend([value] if isinstance(value, str) else value)
    out: list[Matcher] = []
    for text in texts:
        try:
            out.extend(parse_matchers(text))
        except ValueError as exc:
            raise ApiError(400, f"invalid query parameter: filter: {exc}",
                           {"errors": [{"field": "filter", "message": str(exc)}]}) from None
    return out


@ROUTES.route("GET", "/api/v1/silences", summary="Silences (Alertmanager's order: active, pending, expired)",
              scope="read:alerts", query=SilencesQuery, tag="silences")
async def list_silences(request: web.Request) -> web.Response:
    svc = services(request)
    q = parse_query(request, SilencesQuery)
    offset = int(decode_cursor(q.cursor).get("offset", 0)) if q.cursor else q.offset
    found = svc.silences.list(q.state, _filters(q))
    now = time.time()
    page = found[offset:offset + q.limit]
    return ok({
        "silences": [silence_view(s, now) for s in page],
        "summary": svc.silences.counts(),
        "pagination": pagination(len(found), q.limit, offset, len(page),
                                 {"offset": offset + len(page)} if offset + len(page) < len(found) else None),
    })


@ROUTES.route("GET", "/api/v1/silences/{id}", summary="One silence", scope="read:alerts", tag="silences",
              responses={404: "no such silence"})
async def get_silence(request: web.Request) -> web.Response:
    svc = services(request)
    silence = svc.silences.get(request.match_info["id"])
    if silence is None:
        raise ApiError(404, f"no silence with id {request.match_info['id']!r}")
    return ok(silence_view(silence, time.time()))


class MatcherObject(BaseModel):
    name: str
    value: str
    isRegex: bool = False
    isEqual: bool = True


class SilenceBody(BaseModel):
    """Alertmanager's PostableSilence; snake_case names and string matchers are accepted too."""

    model_config = ConfigDict(extra="allow")

    id: str | None = Field(None, description="edit this silence (in place when Alertmanager would, otherwise "
                                             "it is expired and replaced by a new one)")
    matchers: list[MatcherObject | str] | str = Field(
        description='[{"name","value","isRegex","isEqual"}] or ["severity=~\\"crit.*\\""] or "{a=\\"b\\"}"')
    startsAt: str | float | None = Field(None, description="RFC 3339 or Unix seconds; default now (or starts_at)")
    endsAt: str | float | None = Field(None, description="RFC 3339 or Unix seconds; required (or ends_at)")
    createdBy: str | None = Field(None, description="required (or created_by)")
    comment: str = Field(description="required, may be empty")


@ROUTES.route("POST", "/api/v1/silences", summary="Create a silence, or edit one by id (Alertmanager semantics)",
              scope="write:alerts", body=SilenceBody, tag="silences",
              responses={201: "created (also when an edit replaced the silence with a new one)",
                         200: "edited in place", 404: "no silence with the given id"})
async def post_silence(request: web.Request) -> web.Response:
    svc = services(request)
    data = await read_body(request, svc.config.config.api.max_body_bytes)
    try:
        body = json.loads(data) if data else None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "request body must be a JSON object (a silence)")
    try:
        silence = await svc.silences.create_or_update(body, request["key"].id, request.remote)
    except SilenceNotFound as exc:
        raise ApiError(404, f"{exc}: it cannot be edited (leave id out to create a silence)") from None
    except ValueError as exc:
        raise ApiError(400, f"invalid silence: {exc}", {"reason": str(exc)}) from None
    edited = body.get("id") == silence.id
    return ok({"silenceID": silence.id, **silence_view(silence, time.time())}, status=200 if edited else 201)


@ROUTES.route("DELETE", "/api/v1/silences/{id}", summary="Expire a silence (it stays listed as expired)",
              scope="write:alerts", tag="silences",
              responses={404: "no such silence", 409: "the silence has already expired"})
async def delete_silence(request: web.Request) -> web.Response:
    svc = services(request)
    silence_id = request.match_info["id"]
    try:
        silence = await svc.silences.expire(silence_id, request["key"].id, request.remote)
    except SilenceNotFound as exc:
        raise ApiError(404, str(exc)) from None
    except SilenceExpired as exc:
        raise ApiError(409, str(exc), {"id": silence_id}) from None
    return ok(silence_view(silence, time.time()))
