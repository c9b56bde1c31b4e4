"""API keys: create (the token is shown once), list, revoke."""

from __future__ import annotations

import time
from typing import Any, Literal

from aiohttp import web
from pydantic import Field, field_validator

from agent.api.errors import ApiError, ok
from agent.api.formats import iso, parse_iso
from agent.api.routes import ROUTES
from agent.api.routing import BodyModel, parse_body
from agent.api.services import services
from agent.auth.roles import scopes_of
from agent.store.apikeys import ApiKeyRow

_LATEST = parse_iso("9999-01-01T00:00:00Z")


class CreateKey(BodyModel):
    name: str = Field(min_length=1, max_length=100)
    role: Literal["viewer", "operator", "admin"] = "viewer"
    expires_at: str | None = Field(None, description="ISO 8601 time; omit for a key that does not expire")

    @field_validator("expires_at")
    @classmethod
    def _future(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            ts = parse_iso(value)
        except ValueError:
            raise ValueError(f"not an ISO 8601 time: {value!r}") from None
        if ts <= time.time():
            raise ValueError("must be in the future")
        if ts >= _LATEST:
            raise ValueError("must be before the year 9999")
        return value


def key_view(row: ApiKeyRow) -> dict[str, Any]:
    now = time.time()
    state = "active"
    if row.revoked_at is not None:
        state = "revoked"
    elif row.expires_at is not None and row.expires_at <= now:
        state = "expired"
    return {
        "id": row.id, "name": row.name, "key_preview": row.preview, "role": row.role,
        "scopes": sorted(scopes_of(row.role)), "status": state, "created_at": iso(row.created_at),
        "created_by": row.created_by, "last_used": iso(row.last_used), "expires_at": iso(row.expires_at),
        "revoked_at": iso(row.revoked_at),
    }


@ROUTES.route("GET", "/api/v1/api-keys", summary="List API keys (never the keys themselves)",
              scope="admin:keys", tag="keys")
async def list_keys(request: web.Request) -> web.Response:
    rows = services(request).keys.all()
    return ok({"api_keys": [key_view(r) for r in rows], "total": len(rows)})


@ROUTES.route("POST", "/api/v1/api-keys", summary="Create an API key; the answer shows it once",
              scope="admin:keys", body=CreateKey, responses={201: "created"}, tag="keys")
async def create_key(request: web.Request) -> web.Response:
    svc = services(request)
    body = await parse_body(request, CreateKey, svc.config.config.api.max_body_bytes)
    expires = parse_iso(body.expires_at) if body.expires_at else None
    creator = request["key"].id
    row, token = await svc.keys.create(body.name, body.role, expires, created_by=creator)
    svc.bus.publish("api_key_created", key_id=row.id, role=row.role, by=creator)
    await svc.audit.record("api_key_created", actor=creator, remote=request.remote, target=f"api_key:{row.id}",
                           outcome="success", details={"name": row.name, "role": row.role,
                                                       "expires_at": iso(row.expires_at)})
    return ok({**key_view(row), "key": token}, status=201)


@ROUTES.route("DELETE", "/api/v1/api-keys/{id}", summary="Revoke an API key", scope="admin:keys",
              responses={404: "no such key", 409: "already revoked"}, tag="keys")
async def revoke_key(request: web.Request) -> web.Response:
    svc = services(request)
    key_id = request.match_info["id"]
    row = svc.keys.get(key_id)
    if row is None:
        raise ApiError(404, f"no API key with id {key_id!r}")
    if row.revoked_at is not None:
        raise ApiError(409, f"API key {key_id} was already revoked at {iso(row.revoked_at)}")
    await svc.keys.revoke(key_id)
    svc.bus.publish("api_key_revoked", key_id=key_id, by=request["key"].id)
    await svc.audit.record("api_key_revoked", actor=request["key"].id, remote=request.remote,
                           target=f"api_key:{key_id}", outcome="success", details={"name": row.name, "role": row.role})
    return ok(key_view(row))
