"""Configuration over the API (seeds' config management): read it (secrets masked), change it, test a change,
list the versions and roll back to one, and see how the last reload went.

A change is the same as an edit of the YAML files (agent/config/edit.py): validated whole, written keeping the
operator's comments, versioned, and undone by `POST /api/v1/config/rollback/{id}`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent.api.errors import ApiError, ok
from agent.api.formats import iso
from agent.api.pagination import PageQuery, decode_cursor, pagination
from agent.api.routes import ROUTES
from agent.api.routing import QueryModel, bad_input, parse_body, parse_query, read_body
from agent.api.services import Services, services
from agent.auth.roles import scopes_of
from agent.config.edit import (
    ChangeError,
    ChangeRefused,
    ChangeResult,
    InvalidChange,
    apply_change,
    effective_view,
    partial_for,
    rollback_to,
    try_change,
)
from agent.config.loader import LoadedConfig
from agent.config.yamledit import lookup
from agent.notify.probe import probe_all
from agent.store import config_versions as versions

SENSITIVE_SCOPE = "admin:config"
MAX_AUDITED_CHANGES = 100


# --- reading ------------------------------------------------------------------------------------------------


class ConfigQuery(QueryModel):
    section: str | None = Field(
        None, min_length=1, max_length=200,
        description="a top-level section (log, api, notifications, ...) or a dotted path (api.rate_limit)",
    )
    include_sensitive: bool = Field(False, description="secret values in clear; needs scope admin:config")


@ROUTES.route("GET", "/api/v1/config", summary="The running configuration (secrets masked)", scope="read:config",
              category="config", query=ConfigQuery, tag="config",
              responses={403: "include_sensitive needs scope admin:config", 404: "no such section"})
async def get_config(request: web.Request) -> web.Response:
    svc = services(request)
    q = parse_query(request, ConfigQuery)
    key = request["key"]
    if q.include_sensitive and SENSITIVE_SCOPE not in scopes_of(key.role):
        raise ApiError(403, f"include_sensitive=true needs scope {SENSITIVE_SCOPE}, which role {key.role} does not "
                            "have", {"required_scope": SENSITIVE_SCOPE, "role": key.role, "key_id": key.id})
    loaded = svc.config.current
    doc: Any = await asyncio.to_thread(effective_view, loaded, q.include_sensitive)
    if q.section:
        found, doc = lookup(doc, tuple(q.section.split(".")))
        if not found:
            raise ApiError(404, f"no config section {q.section!r} (sections: {', '.join(config_view_keys(loaded))})")
    if q.include_sensitive:
        await svc.audit.record("config_read_sensitive", actor=key.id, remote=request.remote,
                               target=f"config:{q.section or '*'}", outcome="success")
    return ok({
        "version": svc.config.version_id,
        "loaded_at": iso(svc.config.loaded_at),
        "path": svc.config.path,
        "files": [p for p in loaded.sources if p not in loaded.rule_files],
        "section": q.section,
        "sensitive_included": q.include_sensitive,
        "config": doc,
    })


def config_view_keys(loaded: LoadedConfig) -> list[str]:
    return list(loaded.config.model_dump(by_alias=True))


# --- changing -----------------------------------------------------------------------------------------------


class ConfigChange(BaseModel):
    """Either the seed's form, `category` (a section, or a dotted path like api.rate_limit) with `settings`,
    or the changed part of the config document itself at the top level (`{"log": {"level": "debug"}}`).
    Mappings merge, given values and lists replace, null removes a key (back to its default); a secret sent
    back as `***` keeps its value."""

    model_config = ConfigDict(extra="allow")

    category: str | None = Field(None, min_length=1, max_length=200, description="the section the settings are in")
    settings: dict[str, Any] | None = Field(None, description="the settings of `category` to change")
    reason: str = Field("changed over the API", min_length=1, max_length=500, description="kept with the version")
    rollback_on_failure: bool = Field(
        True, description="if a component fails to take the change, put the previous config back by itself")
    dry_run: bool = Field(False, description="validate and show the changes; write nothing")
    expected_version: int | None = Field(
        None, ge=1, description="refuse (409) unless this is still the running version (optimistic locking)")


class ConfigTest(BaseModel):
    """A proposed change, as for PUT /api/v1/config; nothing but the options: test the running config."""

    model_config = ConfigDict(extra="allow")

    category: str | None = Field(None, min_length=1, max_length=200)
    settings: dict[str, Any] | None = None
    connectivity: bool = Field(True, description="also try to connect to each notification receiver (and MQTT)")
    timeout: float = Field(5.0, gt=0, le=30, description="seconds each connection test may take at most")


def _partial(body: ConfigChange | ConfigTest, allow_empty: bool = False) -> dict[str, Any]:
    extra = dict(body.model_extra or {})
    if body.category is not None or body.settings is not None:
        if body.category is None or body.settings is None:
            raise ApiError(400, "category and settings go together")
        if extra:
            raise ApiError(400, f"give either category and settings, or a partial config document, not both "
                                f"(also given: {', '.join(sorted(extra))})")
        try:
            partial = partial_for(body.category, body.settings) if body.settings else {}
        except ChangeError as exc:
            raise ApiError(400, exc.message) from None
    else:
        partial = extra
    if not partial and not allow_empty:
        raise ApiError(400, "no settings given: send a partial config document ({\"log\": {\"level\": \"debug\"}}) "
                            "or category and settings")
    return partial


def _api_error(exc: ChangeError) -> ApiError:
    return ApiError(exc.status, exc.message, exc.details, error_type=exc.error_type)


def result_view(result: ChangeResult) -> dict[str, Any]:
    return {
        "changes": result.changes,
        "applied_at": iso(result.applied_at) if result.applied_at is not None else None,
        "requires_restart": result.requires_restart,
        "rollback_available": result.rollback_id is not None and bool(result.changes) and not result.dry_run,
        "rollback_id": result.rollback_id,
        "version_id": result.version_id,
        "files": result.files,
        "restarted_services": result.restarted_services,
        "dry_run": result.dry_run,
    }


def _outcome(exc: ChangeError) -> str:
    if isinstance(exc, ChangeRefused):
        return "refused"
    if isinstance(exc, InvalidChange):
        return "invalid"
    return "failed" if exc.status >= 422 else "conflict"


async def _audit(request: web.Request, svc: Services, event: str, outcome: str, details: dict[str, Any]) -> None:
    """One row that says it all (no generic api_request row as well)."""
    if "changes" in details:
        details["changes"] = details["changes"][:MAX_AUDITED_CHANGES]
    await svc.audit.record(event, actor=request["key"].id, remote=request.remote, target="config", outcome=outcome,
                           details=details)
    request["audited"] = True


@ROUTES.route("PUT", "/api/v1/config", summary="Change the configuration (partial; validated whole, comments kept)",
              scope="admin:config", category="config", body=ConfigChange, tag="config",
              responses={409: "refused: it would lock the caller out (details.reasons), the files on disk differ "
                              "from the running config, or expected_version is not the running version",
                         422: "invalid (details.errors: path, message, file, line; nothing written), or a component "
                              "failed to take it (errorType apply_failed; details.rolled_back)"})
async def put_config(request: web.Request) -> web.Response:
    svc = services(request)
    body = await parse_body(request, ConfigChange, svc.config.config.api.max_body_bytes)
    partial = _partial(body)
    if body.expected_version is not None and body.expected_version != svc.config.version_id:
        raise ApiError(409, f"the running config is version {svc.config.version_id}, not {body.expected_version}: "
                            "read it again and re-apply the change", {"version": svc.config.version_id})
    key = request["key"]
    try:
        result = await apply_change(svc.config, partial, actor=key.id, remote=request.remote, reason=body.reason,
                                    rollback_on_failure=body.rollback_on_failure, dry_run=body.dry_run)
    except ChangeError as exc:
        if not body.dry_run:
            await _audit(request, svc, "config_changed", _outcome(exc),
                         {"reason": body.reason, "error": exc.message[:2000], **exc.details})
        raise _api_error(exc) from None
    if not body.dry_run and result.changes:
        await _audit(request, svc, "config_changed", "success", {
            "reason": body.reason, "version": result.version_id, "rollback_id": result.rollback_id,
            "files": result.files, "changes": result.changes, "requires_restart": result.requires_restart})
    return ok(result_view(result))


@ROUTES.route("POST", "/api/v1/config/test", summary="Validate a proposed change and test receiver connections",
              scope="admin:config", category="config", body=ConfigTest, tag="config",
              responses={409: "the files on disk differ from the running config"})
async def try_config(request: web.Request) -> web.Response:
    svc = services(request)
    body = await parse_body(request, ConfigTest, svc.config.config.api.max_body_bytes)
    partial = _partial(body, allow_empty=True)
    out: dict[str, Any] = {"valid": True, "applicable": True, "errors": [], "refusals": [], "changes": [],
                           "requires_restart": [], "files": [], "connectivity": []}
    try:
        result = await try_change(svc.config, partial, actor=request["key"].id, remote=request.remote)
    except InvalidChange as exc:
        return ok({**out, "valid": False, "applicable": False, "errors": [i.as_dict() for i in exc.issues]})
    except ChangeRefused as exc:
        return ok({**out, "applicable": False, "refusals": exc.reasons})
    except ChangeError as exc:
        raise _api_error(exc) from None
    out.update(changes=result.changes, requires_restart=result.requires_restart, files=result.files)
    if body.connectivity and result.proposed is not None:
        receivers = result.proposed.config.notifications.receivers
        probes = await probe_all(receivers, result.proposed.config.hostname or svc.hostname, body.timeout)
        out["connectivity"] = [p.as_dict() for p in probes]
    return ok(out)


# --- versions -----------------------------------------------------------------------------------------------


@ROUTES.route("GET", "/api/v1/config/versions", summary="Applied config versions: who, when, source, reason, diff",
              scope="read:config", category="config", query=PageQuery, tag="config")
async def list_config_versions(request: web.Request) -> web.Response:
    svc = services(request)
    q = parse_query(request, PageQuery)
    before: int | None = None
    offset = q.offset
    if q.cursor:  # a position by id: versions added meanwhile do not shift the next page
        position = decode_cursor(q.cursor)
        before, offset = int(position.get("before", 0)) or None, int(position.get("offset", 0))
    rows, total = await versions.list_versions(svc.store, q.limit, 0 if before else offset, before)
    items = [{
        "id": row.id, "created_at": iso(row.created_at), "source": row.source, "actor": row.actor,
        "reason": row.reason, "diff": row.diff, "changes": len(row.diff), "files": sorted(row.sources),
        "current": row.id == svc.config.version_id,
    } for row in rows]
    following = {"before": rows[-1].id, "offset": offset + len(rows)} if rows else None
    return ok({
        "versions": items,
        "current_version": svc.config.version_id,
        "pagination": pagination(total, q.limit, offset, len(rows), following),
    })


class RollbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(None, min_length=1, max_length=500, description="kept with the new version")
    dry_run: bool = Field(False, description="show what would change; write nothing")


@ROUTES.route("POST", "/api/v1/config/rollback/{id}", summary="Put the config back as it was in a version",
              scope="admin:config", category="config", body=RollbackRequest, tag="config",
              responses={404: "no such version", 409: "refused: it would lock the caller out",
                         422: "that version is not valid any more (details.errors), or a component failed to "
                              "take it (apply_failed)"})
async def rollback(request: web.Request) -> web.Response:
    svc = services(request)
    text = request.match_info["id"]
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        raise ApiError(404, f"no config version {text!r}")
    version_id = int(text)
    body = await _rollback_body(request, svc)
    try:
        result = await rollback_to(svc.config, version_id, actor=request["key"].id, remote=request.remote,
                                   reason=body.reason, dry_run=body.dry_run)
    except LookupError:
        raise ApiError(404, f"no config version {version_id}") from None
    except ChangeError as exc:
        if not body.dry_run:
            await _audit(request, svc, "config_rollback", _outcome(exc),
                         {"rollback_id": version_id, "error": exc.message[:2000], **exc.details})
        raise _api_error(exc) from None
    if not body.dry_run and result.changes:
        await _audit(request, svc, "config_rollback", "success", {
            "rollback_id": version_id, "version": result.version_id, "previous_version": result.rollback_id,
            "reason": body.reason, "files": result.files, "changes": result.changes})
    return ok({
        "rollback_id": version_id,
        "version_id": result.version_id,
        "previous_version": result.rollback_id,
        "changes_reverted": len(result.changes),
        "changes": result.changes,
        "restarted_services": result.restarted_services,
        "requires_restart": result.requires_restart,
        "files": result.files,
        "dry_run": result.dry_run,
        "completed_at": iso(result.applied_at) if result.applied_at is not None else None,
    })


async def _rollback_body(request: web.Request, svc: Services) -> RollbackRequest:
    """The body is optional here (the seed's rollback has none)."""
    raw = await read_body(request, svc.config.config.api.max_body_bytes)
    if not raw.strip():
        return RollbackRequest()
    try:
        return RollbackRequest.model_validate_json(raw)
    except ValidationError as exc:
        if any(err["type"] == "json_invalid" for err in exc.errors(include_url=False)):
            raise ApiError(400, "request body is not valid JSON") from None
        raise bad_input(exc, "field") from None


@ROUTES.route("GET", "/api/v1/config/status", summary="The last reload: result, errors, version, pending restart",
              scope="read:config", category="config", tag="config")
async def config_status(request: web.Request) -> web.Response:
    svc = services(request)
    manager = svc.config
    reload = manager.last_reload
    last = None
    if reload is not None:
        last = {
            "successful": reload.ok, "at": iso(reload.at), "source": reload.source, "version_id": reload.version_id,
            "changes": reload.changes, "requires_restart": reload.requires_restart,
            "errors": [i.as_dict() for i in reload.errors],
            "error": "; ".join(str(i) for i in reload.errors) or None,
        }
    return ok({
        "status": "ok" if reload is None or reload.ok else "failed",
        "version": manager.version_id,
        "loaded_at": iso(manager.loaded_at),
        "path": manager.path,
        "files": [p for p in manager.current.sources if p not in manager.current.rule_files],
        "rule_files": list(manager.current.rule_files),
        "last_reload": last,
        "pending_restart": manager.pending_restart,
    })
