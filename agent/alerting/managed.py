"""The rule file Vigil writes for rules created over the API: a Prometheus rule file like any other,
edited as a document (groups by name, rules by their `alert`/`record` name within a group)."""

from __future__ import annotations

from typing import Any

import yaml

HEADER = (
    "# Rules managed through Vigil's API (/api/v1/alerts/rules). Edits here are kept, but comments are not:\n"
    "# the API rewrites this file. It is a Prometheus rule file (promtool check rules works on it).\n"
)


class RuleConflict(Exception):
    """The change does not fit the file as it is (a rule that exists already, or does not exist)."""


def load(text: str | None) -> dict[str, Any]:
    doc = yaml.safe_load(text) if text else None
    if not isinstance(doc, dict) or not isinstance(doc.get("groups"), list):
        return {"groups": []}
    return doc


def dump(doc: dict[str, Any]) -> str:
    groups = [g for g in doc["groups"] if g.get("rules")]
    return HEADER + yaml.safe_dump({"groups": groups}, sort_keys=False, allow_unicode=True, width=1000)


def rule_name(rule: dict[str, Any]) -> str:
    return str(rule.get("alert") or rule.get("record") or "")


def _group(doc: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((g for g in doc["groups"] if isinstance(g, dict) and g.get("name") == name), None)


def find(doc: dict[str, Any], group: str, name: str) -> dict[str, Any] | None:
    found = _group(doc, group)
    if found is None:
        return None
    return next((r for r in found.get("rules") or [] if rule_name(r) == name), None)


def add(doc: dict[str, Any], group: str, rule: dict[str, Any], interval: str | None) -> None:
    target = _group(doc, group)
    if target is None:
        target = {"name": group}
        if interval:
            target["interval"] = interval
        target["rules"] = []
        doc["groups"].append(target)
    elif interval:
        target["interval"] = interval
    if any(rule_name(r) == rule_name(rule) for r in target["rules"]):
        raise RuleConflict(f"group {group!r} already has a rule named {rule_name(rule)!r}; use PUT to change it")
    target["rules"].append(rule)


def replace(doc: dict[str, Any], group: str, name: str, rule: dict[str, Any]) -> None:
    target = _group(doc, group)
    rules = target.get("rules") or [] if target is not None else []
    for i, existing in enumerate(rules):
        if rule_name(existing) == name:
            if rule_name(rule) != name and any(rule_name(r) == rule_name(rule) for r in rules):
                raise RuleConflict(f"group {group!r} already has a rule named {rule_name(rule)!r}")
            rules[i] = rule
            return
    raise RuleConflict(f"no managed rule {name!r} in group {group!r}")


def remove(doc: dict[str, Any], group: str, name: str) -> None:
    target = _group(doc, group)
    rules = target.get("rules") or [] if target is not None else []
    for i, existing in enumerate(rules):
        if rule_name(existing) == name:
            del rules[i]
            return
    raise RuleConflict(f"no managed rule {name!r} in group {group!r}")
