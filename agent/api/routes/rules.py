"""Rules: Prometheus's `/api/v1/rules` over the running groups, and rule management over the API.

Rules created here go into one managed rule file, through the same validation and versioning as any
config change: a rule promtool would reject is refused with its problems (422) and nothing is written.
"""

from __future__ import annotations

import os
from typing import Any, Literal

from aiohttp import web
from pydantic import Field, model_validator

from agent.alerting import managed
from agent.alerting.manager import RuleManager
from agent.alerting.rulefile import Rule
from agent.alerting.rules import Alert, RuleState
from agent.api.errors import ApiError, ok
from agent.api.formats import iso
from agent.api.routes import ROUTES
from agent.api.routing import BodyModel, QueryModel, parse_body, parse_query
from agent.api.services import Services, services
from agent.promql.values import format_sample_value


def alert_view(alert: Alert) -> dict[str, Any]:
    return {
        "labels": dict(alert.labels), "annotations": dict(alert.annotations),
        "state": alert.state if alert.resolved_at_ms is None else "inactive",
        "activeAt": iso(alert.active_at_ms / 1000), "value": format_sample_value(alert.value),
        "keepFiringSince": iso(alert.keep_firing_since_ms / 1000) if alert.keep_firing_since_ms else None,
    }


def _rule_view(rule: Rule, rs: RuleState, managed_file: str) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": rule.name, "query": rule.expr, "labels": dict(rule.labels), "health": rs.health,
        "lastError": rs.last_error, "evaluationTime": rs.evaluation_time_s,
        "lastEvaluation": iso(rs.last_evaluation_ms / 1000) if rs.last_evaluation_ms else None,
        "file": rule.file, "line": rule.line, "managed": os.path.abspath(rule.file) == managed_file,
    }
    if rule.kind == "record":
        return {**base, "type": "recording"}
    alerts = [a for a in rs.active.values() if a.resolved_at_ms is None]
    state = "firing" if any(a.state == "firing" for a in alerts) else "pending" if alerts else "inactive"
    return {
        **base, "type": "alerting", "state": state, "duration": rule.for_ms / 1000,
        "keepFiringFor": rule.keep_firing_for_ms / 1000, "annotations": dict(rule.annotations),
        "alerts": [alert_view(a) for a in alerts],
    }


def managed_path(svc: Services) -> str:
    config = svc.config.config.alerting
    base = os.path.dirname(os.path.abspath(svc.config.path))
    return os.path.abspath(os.path.join(base, config.managed_rule_file))


def rules_of(svc: Services) -> RuleManager:
    if svc.rules is None:
        raise ApiError(503, "rule evaluation is not running")
    return svc.rules


class RulesQuery(QueryModel):
    type: Literal["alert", "record"] | None = Field(None, description="only alerting or only recording rules")
    rule_name: list[str] | str | None = Field(None, alias="rule_name[]")
    rule_group: list[str] | str | None = Field(None, alias="rule_group[]")
    file: list[str] | str | None = Field(None, alias="file[]")


def _as_set(value: list[str] | str | None) -> set[str] | None:
    if value is None:
        return None
    return {value} if isinstance(value, str) else set(value)


@ROUTES.route("GET", "/api/v1/rules", summary="Rule groups and their rules, as Prometheus's /api/v1/rules",
              scope="read:alerts", query=RulesQuery, tag="alerts")
async def list_rules(request: web.Request) -> web.Response:
    svc = services(request)
    q = parse_query(request, RulesQuery)
    names, groups_wanted, files = _as_set(q.rule_name), _as_set(q.rule_group), _as_set(q.file)
    managed_file = managed_path(svc)
    groups = []
    for entry in rules_of(svc).rule_groups():
        group = entry.group
        if (groups_wanted and group.name not in groups_wanted) or (files and group.file not in files):
            continue
        rules = [
            _rule_view(rule, rs, managed_file) for rule, rs in zip(group.rules, entry.state.rules, strict=True)
            if (q.type is None or rule.kind == q.type) and (not names or rule.name in names)
        ]
        if (q.type or names) and not rules:
            continue
        groups.append({
            "name": group.name, "file": group.file, "rules": rules,
            "interval": rules_of(svc).interval(group),
            "limit": group.limit, "evaluationTime": entry.state.evaluation_time_s,
            "lastEvaluation": iso(entry.state.last_evaluation_ms / 1000) if entry.state.last_evaluation_ms else None,
        })
    return ok({"groups": groups})


# --- rule management ---


class RuleBody(BodyModel):
    alert: str | None = Field(None, description="name of an alerting rule")
    record: str | None = Field(None, description="name of a recording rule")
    expr: str = Field(min_length=1, max_length=10_000)
    for_: str | None = Field(None, alias="for", description="e.g. 5m")
    keep_firing_for: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_name(self) -> RuleBody:
        if bool(self.alert) == bool(self.record):
            raise ValueError("give exactly one of alert and record")
        return self

    def document(self) -> dict[str, Any]:
        """The rule as written in the file (keys in Prometheus's usual order, empty ones left out)."""
        doc: dict[str, Any] = {"alert": self.alert} if self.alert else {"record": self.record}
        doc["expr"] = self.expr
        if self.for_:
            doc["for"] = self.for_
        if self.keep_firing_for:
            doc["keep_firing_for"] = self.keep_firing_for
        if self.labels:
            doc["labels"] = dict(self.labels)
        if self.annotations:
            doc["annotations"] = dict(self.annotations)
        return doc


class NewRule(BodyModel):
    group: str = Field(min_length=1, max_length=200, description="group in the managed rule file (created if new)")
    interval: str | None = Field(None, description="the group's evaluation interval, e.g. 1m")
    rule: RuleBody
    reason: str | None = Field(None, max_length=1000, description="kept with the config version")


class ChangedRule(RuleBody):
    reason: str | None = Field(None, max_length=1000)


def _all_rules(svc: Services) -> list[tuple[Any, Rule, RuleState]]:
    return [(entry, rule, rs) for entry in rules_of(svc).rule_groups()
            for rule, rs in zip(entry.group.rules, entry.state.rules, strict=True)]


@ROUTES.route("GET", "/api/v1/alerts/rules", summary="Every rule, with the file it comes from and whether the API "
              "manages it", scope="read:alerts", tag="alerts")
async def list_managed_rules(request: web.Request) -> web.Response:
    svc = services(request)
    managed_file = managed_path(svc)
    out = [{**_rule_view(rule, rs, managed_file), "group": entry.group.name} for entry, rule, rs in _all_rules(svc)]
    return ok({"rules": out, "managed_file": managed_file, "total": len(out)})


def _find(svc: Services, group: str, name: str) -> dict[str, Any]:
    """The first rule of that name in the group, and under `same_name` every one: a group may hold several
    (a warning and a critical variant of one alert, as the shipped host rules do)."""
    managed_file = managed_path(svc)
    found = [{**_rule_view(rule, rs, managed_file), "group": group} for entry, rule, rs in _all_rules(svc)
             if entry.group.name == group and rule.name == name]
    if not found:
        raise ApiError(404, f"no rule {name!r} in a group {group!r}")
    return {**found[0], "same_name": found}


@ROUTES.route("GET", "/api/v1/alerts/rules/{group}/{name}", summary="One rule", scope="read:alerts", tag="alerts",
              responses={404: "no such rule"})
async def get_rule(request: web.Request) -> web.Response:
    svc = services(request)
    return ok(_find(svc, request.match_info["group"], request.match_info["name"]))


async def _write_managed(request: web.Request, svc: Services, edit: Any, reason: str | None,
                         action: str, target: str) -> dict[str, Any]:
    path = managed_path(svc)
    doc = managed.load(svc.config.current.sources.get(path))
    try:
        edit(doc)
    except managed.RuleConflict as exc:
        status = 404 if str(exc).startswith("no managed rule") else 409
        raise ApiError(status, str(exc)) from None
    actor = request["key"].id
    result = await svc.config.write_files({path: managed.dump(doc)}, "api", actor, reason)
    if not result.ok:
        raise ApiError(422, "the rule is not valid: " + "; ".join(str(e) for e in result.errors),
                       {"errors": [e.as_dict() for e in result.errors]})
    await svc.audit.record(f"rule_{action}", actor=actor, remote=request.remote, target=target, outcome="success",
                           details={"version": result.version_id, "reason": reason})
    return {"version_id": result.version_id, "changes": result.changes, "file": path}


def _managed_only(svc: Services, group: str, name: str) -> None:
    """Rules from the operator's own files are edited in those files, not over the API."""
    managed_file = managed_path(svc)
    for entry, rule, _rs in _all_rules(svc):
        if entry.group.name == group and rule.name == name and os.path.abspath(rule.file) != managed_file:
            raise ApiError(409, f"rule {name!r} of group {group!r} is defined in {rule.file}:{rule.line}, "
                                "not in the managed rule file; change it in that file")


@ROUTES.route("POST", "/api/v1/alerts/rules", summary="Add a rule to the managed rule file", scope="admin:config",
              category="config", body=NewRule, tag="alerts",
              responses={201: "created", 409: "a rule of that name exists", 422: "the rule is not valid"})
async def create_rule(request: web.Request) -> web.Response:
    svc = services(request)
    body = await parse_body(request, NewRule, svc.config.config.api.max_body_bytes)
    rule = body.rule.document()
    name = managed.rule_name(rule)
    _managed_only(svc, body.group, name)
    outcome = await _write_managed(request, svc, lambda doc: managed.add(doc, body.group, rule, body.interval),
                                   body.reason, "created", f"rule:{body.group}/{name}")
    return ok({**outcome, "rule": _find(svc, body.group, name)}, status=201)


@ROUTES.route("PUT", "/api/v1/alerts/rules/{group}/{name}", summary="Replace a rule of the managed rule file",
              scope="admin:config", category="config", body=ChangedRule, tag="alerts",
              responses={404: "no such managed rule", 409: "not a managed rule", 422: "the rule is not valid"})
async def replace_rule(request: web.Request) -> web.Response:
    svc = services(request)
    group, name = request.match_info["group"], request.match_info["name"]
    body = await parse_body(request, ChangedRule, svc.config.config.api.max_body_bytes)
    _managed_only(svc, group, name)
    rule = RuleBody.model_validate(body.model_dump(by_alias=True, exclude={"reason"})).document()
    outcome = await _write_managed(request, svc, lambda doc: managed.replace(doc, group, name, rule), body.reason,
                                   "changed", f"rule:{group}/{name}")
    return ok({**outcome, "rule": _find(svc, group, managed.rule_name(rule))})


@ROUTES.route("DELETE", "/api/v1/alerts/rules/{group}/{name}", summary="Remove a rule from the managed rule file",
              scope="admin:config", category="config", tag="alerts",
              responses={404: "no such managed rule", 409: "not a managed rule"})
async def delete_rule(request: web.Request) -> web.Response:
    svc = services(request)
    group, name = request.match_info["group"], request.match_info["name"]
    _managed_only(svc, group, name)
    outcome = await _write_managed(request, svc, lambda doc: managed.remove(doc, group, name), None, "deleted",
                                   f"rule:{group}/{name}")
    return ok({**outcome, "deleted": {"group": group, "name": name}})

