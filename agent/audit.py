"""The audit log: who did what to this host through Vigil, in a tamper-evident chain.

Writers call `record`; it returns once the row is committed, so an action that is audited before
it runs is never lost by a crash in the middle of it.
"""

from __future__ import annotations

import time
from typing import Any

import structlog

from agent.store import Store, StoreError
from agent.store import audit as rows

log = structlog.get_logger("vigil.audit")

# Summary groups of GET /api/v1/security/audit: an event type belongs to the first group one of
# whose prefixes it starts with (a prefix ending in "_" is a family, otherwise the exact name).
SUMMARY_GROUPS: dict[str, tuple[str, ...]] = {
    "failed_logins": ("auth_failure",),
    "access_denied": ("access_denied",),
    "lockouts": ("address_locked", "lockout_"),
    "permission_changes": ("api_key_", "security_"),
    "config_changes": ("config_", "rule_"),
    "maintenance_toggles": ("maintenance_",),
    "remediation_actions": ("check_remediation", "check_remediation_"),
    "alert_actions": ("alert_", "silence_", "incident_"),
    "service_actions": ("service_", "unit_", "check_paused", "check_resumed"),
    "api_requests": ("api_request",),
}
_MEDIUM = {"auth_failure", "access_denied", "address_locked", "check_remediation_exhausted"}


def group_of(event_type: str) -> str | None:
    for group, prefixes in SUMMARY_GROUPS.items():
        for prefix in prefixes:
            if event_type == prefix or (prefix.endswith("_") and event_type.startswith(prefix)):
                return group
    return None


def summarize(counts: dict[str, int]) -> dict[str, Any]:
    """Counts by event type -> the summary: total, one count per group, and the counts by type."""
    summary: dict[str, Any] = {"total_events": sum(counts.values())}
    summary.update({group: 0 for group in SUMMARY_GROUPS})
    for event_type, n in counts.items():
        group = group_of(event_type)
        if group is not None:
            summary[group] += n
    summary["by_event_type"] = dict(sorted(counts.items()))
    return summary


def severity(event_type: str, outcome: str | None) -> str:
    """medium: refused access and things an attacker or a failing host does; low: changes; info: the rest."""
    if event_type in _MEDIUM or (outcome == "failure" and group_of(event_type) == "remediation_actions"):
        return "medium"
    if event_type == "api_request":
        return "info"
    return "low"


class Audit:
    def __init__(self, store: Store):
        self.store = store

    async def record(
        self, event_type: str, *, actor: str | None = None, remote: str | None = None, target: str | None = None,
        outcome: str | None = None, details: dict[str, Any] | None = None,
    ) -> int:
        row_id = await rows.append(self.store, time.time(), event_type, actor, remote, target, outcome, details or {})
        log.info("audit", event_type=event_type, actor=actor, target=target, outcome=outcome)
        return row_id

    async def record_quietly(
        self, event_type: str, *, actor: str | None = None, remote: str | None = None, target: str | None = None,
        outcome: str | None = None, details: dict[str, Any] | None = None,
    ) -> int | None:
        """`record` for rows about a request that must be answered anyway (its outcome is decided):
        a store that cannot write costs the row, logged, not the answer."""
        try:
            return await self.record(event_type, actor=actor, remote=remote, target=target, outcome=outcome,
                                     details=details)
        except StoreError as exc:
            log.error("audit_not_saved", event_type=event_type, target=target, error=str(exc))
            return None
