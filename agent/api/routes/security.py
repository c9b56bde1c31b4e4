"""API access policy (seed: security settings and status): who may call the API, lockouts after failed
keys, the maximum key age, and the rate limits per category.

The settings live in the config (`security:` and `api.rate_limit`), so a change made here is a config
change like any other: validated whole, written to the YAML file keeping its comments, versioned, and
undone by `POST /api/v1/config/rollback/{id}`. A change that would lock the caller out is refused.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from aiohttp import web
from pydantic import AfterValidator, Field, WithJsonSchema

from agent.api.errors import ApiError, ok
from agent.api.formats import iso
from agent.api.routes import ROUTES
from agent.api.routing import BodyModel, parse_body
from agent.api.services import services
from agent.config.durations import parse_duration
from agent.config.edit import ChangeError, apply_change
from agent.config.schema import Config
from agent.security.policy import NEAR_EXPIRY, key_deadline, parse_address, usable, warnings


def _duration(value: str | float) -> str | float:
    parse_duration(value)
    return value


# Kept as written ("90d"), so the YAML file reads as the operator would have written it.
DurationText = Annotated[
    str | float, AfterValidator(_duration),
    WithJsonSchema({"anyOf": [{"type": "string", "pattern": r"^(\d+(\.\d+)?(ms|s|m|h|d|w|y))+$"},
                              {"type": "number", "minimum": 0}],
                    "description": "seconds, or a duration such as 15m, 2h, 90d"}),
]


class RateLimitChange(BodyModel):
    window: DurationText | None = Field(None, description="length of the fixed window")
    default: int | None = Field(None, description="limit of the categories not listed")
    categories: dict[str, int | None] | None = Field(
        None, description="limit per window by category (health, metrics, config, backup, maintenance, ...); "
                          "the ones given are changed, null removes a category's own limit (back to default)",
    )


class SettingsChange(BodyModel):
    """Only the settings given change."""

    max_failed_auth: int | None = Field(None, description="failed authentications that lock an address")
    failure_window: DurationText | None = Field(None, description="how far back failures are counted")
    lockout_minutes: float | None = Field(None, description="how long a locked address is refused")
    allowlist: list[str] | None = Field(
        None, max_length=1000, description="addresses or CIDR networks allowed to call authenticated routes; "
                                           "[] allows every address")
    lockout_exempt: list[str] | None = Field(
        None, max_length=1000, description="addresses or CIDR networks never locked out (default: loopback)")
    max_key_age: DurationText | None = Field(None, description="older keys are refused; null removes the limit")
    rate_limits: RateLimitChange | None = None
    reason: str = Field("security settings changed over the API", min_length=1, max_length=500)
    dry_run: bool = Field(False, description="validate and show the changes, write nothing")


_SETTINGS = ("max_failed_auth", "failure_window", "lockout_minutes", "allowlist", "lockout_exempt", "max_key_age")


def settings_view(config: Config) -> dict[str, Any]:
    sec, limits = config.security, config.api.rate_limit
    return {
        "max_failed_auth": sec.max_failed_auth,
        "failure_window": sec.failure_window,
        "lockout_minutes": sec.lockout_minutes,
        "allowlist": list(sec.allowlist),
        "allowlist_enabled": bool(sec.allowlist),
        "lockout_exempt": list(sec.lockout_exempt),
        "max_key_age": sec.max_key_age,
        "rate_limits": {"window": limits.window, "default": limits.default, "categories": dict(limits.categories)},
    }


@ROUTES.route("GET", "/api/v1/security/settings", summary="API access policy and rate limits per category",
              scope="admin:security", tag="security")
async def get_settings(request: web.Request) -> web.Response:
    return ok(settings_view(services(request).config.config))


def _partial(body: SettingsChange, config: Config) -> dict[str, Any]:
    """The change as a nested partial config document; null puts a setting back to its default."""
    given = body.model_fields_set
    partial: dict[str, Any] = {}
    security = {name: getattr(body, name) for name in _SETTINGS if name in given}
    if security:
        partial["security"] = security
    if body.rate_limits is not None:
        change = body.rate_limits
        limits: dict[str, Any] = {k: getattr(change, k) for k in ("window", "default", "categories")
                                  if k in change.model_fields_set}
        if change.categories == {}:
            del limits["categories"]
        elif change.categories:
            # The whole set is written: a file without categories has the default set, which one given
            # category must not replace. Null removes a category (its limit becomes `default`).
            kept = {**config.api.rate_limit.categories, **change.categories}
            categories = {k: v for k, v in kept.items() if v is not None}
            removed = {k: None for k, v in change.categories.items() if v is None}
            limits["categories"] = {**categories, **removed} if categories else {}
        if limits:
            partial["api"] = {"rate_limit": limits}
    if not partial:
        raise ApiError(400, "no settings given: send at least one of " + ", ".join([*_SETTINGS, "rate_limits"]))
    return partial


@ROUTES.route("PUT", "/api/v1/security/settings", summary="Change the access policy or rate limits (partial)",
              scope="admin:security", category="config", body=SettingsChange, tag="security",
              responses={409: "the change would lock the caller out (details.reasons), or the config files "
                              "differ from the running config",
                         422: "invalid settings (details.errors with each path)"})
async def put_settings(request: web.Request) -> web.Response:
    svc = services(request)
    body = await parse_body(request, SettingsChange, svc.config.config.api.max_body_bytes)
    key = request["key"]
    try:
        result = await apply_change(svc.config, _partial(body, svc.config.config), actor=key.id,
                                    remote=request.remote, reason=body.reason, dry_run=body.dry_run)
    except ChangeError as exc:
        raise ApiError(exc.status, exc.message, exc.details, error_type=exc.error_type) from None
    config = result.proposed.config if result.proposed is not None else svc.config.config
    if result.changes and not result.dry_run:
        await svc.audit.record("security_settings_changed", actor=key.id, remote=request.remote,
                               target="config:security", outcome="success",
                               details={"changes": result.changes, "reason": body.reason,
                                        "version_id": result.version_id})
    return ok({
        "changes": result.changes, "dry_run": result.dry_run, "applied_at": iso(result.applied_at),
        "requires_restart": result.requires_restart, "rollback_id": result.rollback_id,
        "version_id": result.version_id, "settings": settings_view(config),
        "warnings": warnings(config.security, key),
    })


@ROUTES.route("GET", "/api/v1/security/status", summary="Failed authentications, locked addresses, keys",
              scope="admin:security", tag="security")
async def get_status(request: web.Request) -> web.Response:
    svc = services(request)
    now = time.time()
    settings = svc.config.config.security
    failures = await svc.security.failures_since(now - 86400.0)
    locks = svc.security.lockouts.all_active()
    keys = [k for k in svc.keys.all() if usable(k, settings, now)]
    near = []
    for key in keys:
        deadline = key_deadline(key, settings)
        if deadline is not None and deadline[0] - now <= NEAR_EXPIRY:
            near.append({"id": key.id, "name": key.name, "role": key.role, "expires_at": iso(deadline[0]),
                         "expires_in_seconds": round(deadline[0] - now), "cause": deadline[1]})
    near.sort(key=lambda k: k["expires_in_seconds"])
    return ok({
        "status": "attention" if locks or near else "secure",
        "failed_auth_24h": sum(failures.values()),
        "failed_auth_by_reason": failures,
        "locked_addresses": [
            {"address": lock.address, "locked_at": iso(lock.locked_at), "until": iso(lock.until),
             "retry_after": lock.retry_after(now), "failures": lock.failures} for lock in locks
        ],
        "active_keys": len(keys),
        "keys_near_expiry": near,
        "last_scan": None,
    })


@ROUTES.route("DELETE", "/api/v1/security/lockouts/{address}", summary="Lift the lockout of an address",
              scope="admin:security", tag="security", responses={404: "the address is not locked"})
async def lift_lockout(request: web.Request) -> web.Response:
    svc = services(request)
    text = request.match_info["address"]
    if parse_address(text) is None:
        raise ApiError(400, f"{text!r} is not an IP address")
    lock = await svc.security.lift(text, request["key"].id, request.remote)
    if lock is None:
        raise ApiError(404, f"address {parse_address(text)} is not locked out")
    return ok({"address": lock.address, "lifted_at": iso(time.time()), "locked_at": iso(lock.locked_at),
               "was_locked_until": iso(lock.until), "failures": lock.failures})
