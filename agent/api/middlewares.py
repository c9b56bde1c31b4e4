"""Request id, error envelope + access log + request metrics, then auth with scopes, then
rate limits, then the maintenance gate. Order matters: every answer, even a 404 or a crash, leaves
through the envelope."""

from __future__ import annotations

import re
import time
import uuid

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from agent.api.errors import ApiError, error_response
from agent.api.formats import iso
from agent.api.routing import Endpoint
from agent.api.services import services
from agent.auth.keys import AuthFailure
from agent.auth.roles import scopes_of
from agent.security.policy import KeyTooOld
from agent.store import StoreError
from agent.store.apikeys import ApiKeyRow

log = structlog.get_logger("vigil.api")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_QUIET_ROUTES = {"/healthz", "/readyz", "/metrics"}
ENDPOINTS = web.AppKey("endpoints", dict)


def endpoint_of(request: web.Request) -> Endpoint | None:
    route = request.match_info.route
    resource = route.resource
    if resource is None:
        return None
    table: dict[tuple[str, str], Endpoint] = request.app[ENDPOINTS]
    return table.get((route.method, resource.canonical))


@web.middleware
async def envelope(request: web.Request, handler: Handler) -> web.StreamResponse:
    supplied = request.headers.get("X-Request-ID", "")
    request_id = supplied if _REQUEST_ID.match(supplied) else uuid.uuid4().hex
    request["request_id"] = request_id
    started = time.perf_counter()
    try:
        response = await handler(request)
    except ApiError as exc:
        response = error_response(request, exc)
    except web.HTTPException as exc:
        message = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
        if exc.status == 404:
            message = f"no route {request.method} {request.path}"
        elif exc.status == 405:
            message = f"method {request.method} not allowed on {request.path}"
        elif exc.status == 413:
            message = "request body is too large"
        headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
        response = error_response(request, ApiError(exc.status, message, headers=headers))
    except StoreError as exc:
        log.error("store_unavailable", method=request.method, path=request.path, error=str(exc))
        response = error_response(request, ApiError(503, f"store unavailable: {exc}", headers={"Retry-After": "30"}))
    except Exception:
        log.exception("request_failed", method=request.method, path=request.path, request_id=request_id)
        response = error_response(request, ApiError(500, f"internal error (request id {request_id})"))
    elapsed = time.perf_counter() - started
    if not response.prepared:
        response.headers["X-Request-ID"] = request_id
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    svc = services(request)
    svc.metrics.http_requests.labels(route, request.method, str(response.status)).inc()
    svc.metrics.http_duration.labels(route, request.method).observe(elapsed)
    key = request.get("key")
    (log.debug if route in _QUIET_ROUTES else log.info)(
        "http_request", method=request.method, path=request.path, status=response.status,
        duration_ms=round(elapsed * 1000, 2), remote=request.remote, key_id=key.id if key else None,
        request_id=request_id,
    )
    if key is not None and request.method not in _SAFE_METHODS and not request.get("audited"):
        await _audit_request(request, key.id, route, response.status, elapsed)
    return response


async def _audit_request(request: web.Request, key_id: str, route: str, status: int, elapsed: float) -> None:
    """An `api_request` audit row for a call that may change something (a write or admin scope), once
    it is answered: who, from where, what, and how it ended. Never the body (it may hold secrets)."""
    endpoint = endpoint_of(request)
    if endpoint is None or endpoint.scope is None or endpoint.scope.startswith("read:"):
        return
    await services(request).audit.record_quietly(
        "api_request", actor=key_id, remote=request.remote, target=request.path[:500],
        outcome="success" if status < 400 else "failure",
        details={"method": request.method, "route": route, "status": status, "scope": endpoint.scope,
                 "request_id": request.get("request_id"), "duration_ms": round(elapsed * 1000, 2)},
    )


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip() or None
    return request.headers.get("X-API-Key") or None


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    endpoint = endpoint_of(request)
    if endpoint is None or endpoint.scope is None:
        return await handler(request)
    svc = services(request)
    refusal = svc.security.check_address(request.remote)  # allowlist and lockout, before the key is looked at
    if refusal is not None:
        svc.metrics.auth_failures.labels(refusal.reason).inc()
        log.warning("address_refused", reason=refusal.reason, remote=request.remote, path=request.path)
        raise ApiError(refusal.status, refusal.message, refusal.details,
                       headers={"Retry-After": str(refusal.retry_after)} if refusal.retry_after else None)
    found: ApiKeyRow | AuthFailure | KeyTooOld = svc.keys.authenticate(bearer_token(request))
    if isinstance(found, ApiKeyRow):
        found = svc.security.key_too_old(found) or found
    if not isinstance(found, ApiKeyRow):
        svc.metrics.auth_failures.labels(found.reason).inc()
        log.warning("auth_failed", reason=found.reason, remote=request.remote, path=request.path)
        await svc.security.failed(request.remote, found.reason, getattr(found, "key_id", None), request.path[:500])
        await svc.audit.record_quietly(
            "auth_failure", actor=getattr(found, "key_id", None), remote=request.remote, target=request.path[:500],
            outcome=found.reason, details={"method": request.method, "route": endpoint.path, "reason": found.reason,
                                           "request_id": request.get("request_id")},
        )
        raise ApiError(401, found.message, {"reason": found.reason},
                       headers={"WWW-Authenticate": 'Bearer realm="vigil"'})
    request["key"] = found
    if endpoint.scope not in scopes_of(found.role):
        svc.metrics.auth_failures.labels("forbidden").inc()
        request["audited"] = True  # this row says it all: no api_request row as well
        await svc.audit.record_quietly(
            "access_denied", actor=found.id, remote=request.remote, target=request.path[:500], outcome="forbidden",
            details={"method": request.method, "route": endpoint.path, "required_scope": endpoint.scope,
                     "role": found.role, "request_id": request.get("request_id")},
        )
        raise ApiError(
            403, f"this route needs scope {endpoint.scope}, which role {found.role} does not have",
            {"required_scope": endpoint.scope, "role": found.role, "key_id": found.id},
        )
    verdict = svc.limiter.hit(found.id, endpoint.category)
    if not verdict.allowed:
        svc.metrics.rate_limited.labels(endpoint.category).inc()
        raise ApiError(
            429, f"rate limit of {verdict.limit} requests per {int(verdict.window)}s exceeded "
            f"for category {endpoint.category}; retry in {verdict.retry_after}s",
            {"category": endpoint.category, "limit": verdict.limit, "retry_after": verdict.retry_after},
            headers=verdict.headers(),
        )
    response = await handler(request)
    if not response.prepared:
        response.headers.update(verdict.headers())
    return response


_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@web.middleware
async def maintenance_gate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """In maintenance mode, changes only from allowed addresses: 503 MAINTENANCE_MODE for a mutating
    request to a route that needs a write or admin scope. Reads (also read-only POSTs such as
    /api/v1/query), unauthenticated routes (probes, /metrics, the heartbeat pings of cron jobs, which keep
    their schedule through maintenance) and the maintenance routes themselves are never refused."""
    if request.method in _SAFE_METHODS:
        return await handler(request)
    endpoint = endpoint_of(request)
    if endpoint is None or endpoint.scope is None or endpoint.scope.startswith("read:") or (
        endpoint.scope == "write:maintenance"
    ):
        return await handler(request)
    maintenance = services(request).maintenance
    period = maintenance.active()
    if period is None or maintenance.allows(request.remote):
        return await handler(request)
    retry = maintenance.retry_after()
    log.info("maintenance_refused", method=request.method, path=request.path, remote=request.remote,
             maintenance_id=period.id)
    raise ApiError(
        503, "System is currently in maintenance mode" + (f": {period.notification_message}"
                                                          if period.notification_message else ""),
        {"maintenance_id": period.id, "reason": period.reason,
         "estimated_completion": iso(period.ends_at), "notification_message": period.notification_message},
        error_type="MAINTENANCE_MODE", headers={"Retry-After": str(retry)} if retry is not None else None,
    )


@web.middleware
async def input_limits(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bodies within the configured size; query parameters only where the route declares them."""
    endpoint = endpoint_of(request)
    if endpoint is not None and endpoint.scope is not None and endpoint.query is None and request.query:
        names = sorted(set(request.query))
        raise ApiError(400, f"invalid query parameter: {', '.join(names)}: this route takes no query parameters",
                       {"errors": [{"field": n, "message": "unknown query parameter"} for n in names]})
    config = services(request).config.config
    limit = endpoint.body_limit(config) if endpoint is not None and endpoint.body_limit else config.api.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, f"request body of {request.content_length} bytes is larger than {limit} bytes",
                       {"max_body_bytes": limit})
    return await handler(request)
