"""Roles map to scopes; routes ask for a scope, never for a role, so roles can grow."""

from __future__ import annotations

SCOPES: dict[str, str] = {
    "read:system": "health, status, processes, units, tasks, the event stream",
    "read:metrics": "metrics history and PromQL queries",
    "read:alerts": "alerts, rules, silences, incidents",
    "read:logs": "Vigil's logs and configured log files",
    "read:config": "configuration (secrets masked) and its versions",
    "write:alerts": "acknowledge and resolve alerts, silences, incidents",
    "write:checks": "run, pause and resume checks",
    "write:maintenance": "maintenance mode",
    "write:metrics": "import samples into the history",
    "admin:config": "change and roll back configuration, see secrets",
    "admin:keys": "create, list and revoke API keys",
    "admin:services": "start, stop, restart managed services",
    "admin:backup": "backups and restores",
    "admin:security": "audit log, security settings and scans",
}

_VIEWER = {s for s in SCOPES if s.startswith("read:")}
_OPERATOR = _VIEWER | {"write:alerts", "write:checks", "write:maintenance", "write:metrics"}

ROLES: dict[str, frozenset[str]] = {
    "viewer": frozenset(_VIEWER),
    "operator": frozenset(_OPERATOR),
    "admin": frozenset(SCOPES),
}


def scopes_of(role: str) -> frozenset[str]:
    return ROLES.get(role, frozenset())
