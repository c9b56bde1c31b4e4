"""/metrics, guarded the way node_exporter's web config guards it (basic auth with bcrypt hashes,
or a bearer token), optionally by an API key with read:metrics."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac

import bcrypt
from aiohttp import web

from agent.api.errors import ApiError
from agent.api.middlewares import bearer_token
from agent.api.routes import ROUTES
from agent.api.services import Services, services
from agent.auth.keys import AuthFailure
from agent.auth.roles import scopes_of

_verified: set[tuple[str, str, str]] = set()
_bcrypt_slots = asyncio.Semaphore(2)  # (user, bcrypt hash, sha256 of password) seen valid


@ROUTES.route("GET", "/metrics", summary="Prometheus exposition (text or OpenMetrics)", scope=None,
              tag="metrics", responses={401: "credentials required (when configured)"}, envelope=False)
async def metrics(request: web.Request) -> web.Response:
    svc = services(request)
    cfg = svc.config.config.metrics
    if not cfg.enabled:
        raise ApiError(404, "/metrics is disabled (metrics.enabled: false)")
    if cfg.basic_auth_users or cfg.bearer_token or cfg.require_api_key:
        await _authorize(request, svc)
    body, content_type = svc.exporter.render(request.headers.get("Accept", ""))
    response = web.Response(body=body)
    response.headers["Content-Type"] = content_type
    return response


async def _authorize(request: web.Request, svc: Services) -> None:
    cfg = svc.config.config.metrics
    header = request.headers.get("Authorization", "")
    if header[:6].lower() == "basic " and cfg.basic_auth_users:
        try:
            user, _, password = base64.b64decode(header[6:].strip()).decode().partition(":")
        except (binascii.Error, ValueError):  # ValueError: non-ASCII in the header, or not UTF-8
            user, password = "", ""
        hashed = cfg.basic_auth_users.get(user)
        if hashed is not None and await _bcrypt_ok(user, password, hashed.get_secret_value()):
            return
    token = bearer_token(request)
    if token and cfg.bearer_token and hmac.compare_digest(
        token.encode("utf-8", "surrogateescape"), cfg.bearer_token.get_secret_value().encode()
    ):
        return
    if token and cfg.require_api_key:
        found = svc.keys.authenticate(token)
        if not isinstance(found, AuthFailure) and "read:metrics" in scopes_of(found.role):
            return
    svc.metrics.auth_failures.labels("metrics").inc()
    challenge = 'Basic realm="vigil"' if cfg.basic_auth_users else 'Bearer realm="vigil"'
    raise ApiError(401, "/metrics requires credentials", headers={"WWW-Authenticate": challenge})


async def _bcrypt_ok(user: str, password: str, hashed: str) -> bool:
    """bcrypt is slow on purpose; remember passwords already checked so scrapes stay fast."""
    key = (user, hashed, hashlib.sha256(password.encode()).hexdigest())
    if key in _verified:
        return True
    async with _bcrypt_slots:  # unauthenticated guesses must not tie up the shared thread pool
        good = await asyncio.to_thread(bcrypt.checkpw, password.encode("utf-8", "surrogateescape"), hashed.encode())
    if good:
        _verified.add(key)
    return good
