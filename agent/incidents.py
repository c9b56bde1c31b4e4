"""Incidents: a failing check opens one and its recovery resolves it; operators open their own and
work both through investigating, identified, monitoring, resolved (the seed's workflow)."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import aiosqlite

from agent.checks.base import Status
from agent.store import Store
from agent.store import incidents as rows
from agent.store.incidents import IncidentRow

STATUSES = ("investigating", "identified", "monitoring", "resolved")
SEVERITIES = ("critical", "warning", "info")


def severity_of(state: Status) -> str:
    return "critical" if state is Status.CRITICAL else "warning"


async def open_for_check(db: aiosqlite.Connection, check: str, state: Status, message: str, now: float) -> int:
    """Inside the writer's transaction of the state change that caused it."""
    return await rows.insert(db, IncidentRow(
        0, f"{check}: {message}"[:300], message, severity_of(state), "investigating", "check", check, now, now,
        None, "vigil", None, [{"at": now, "by": "vigil", "text": f"check {check} turned {state.label}: {message}"}],
    ))


async def follow_check(db: aiosqlite.Connection, incident_id: int, state: Status, message: str,
                       now: float) -> bool:
    """The check changed state while its incident is open: resolve it on OK, else follow the severity.
    Returns False when the incident is gone or was already resolved by an operator."""
    row = await rows.fetch(db, incident_id)
    if row is None or row.status == "resolved":
        return False
    note = {"at": now, "by": "vigil", "text": f"check {row.check_name} turned {state.label}: {message}"}
    if state is Status.OK:
        updated = replace(row, status="resolved", resolved_at=now, updated_at=now, notes=[*row.notes, note])
    else:
        updated = replace(row, severity=severity_of(state), updated_at=now, notes=[*row.notes, note])
    await rows.update(db, updated)
    return True


async def create(store: Store, title: str, severity: str, description: str, assigned_to: str | None,
                 created_by: str, status: str = "investigating") -> IncidentRow:
    now = time.time()
    row = IncidentRow(0, title, description, severity, status, "manual", None, now, now,
                      now if status == "resolved" else None, created_by, assigned_to, [])

    async def op(db: aiosqlite.Connection) -> IncidentRow:
        return replace(row, id=await rows.insert(db, row))

    result: IncidentRow = await store.write(op)
    return result


async def update(store: Store, incident_id: int, changes: dict[str, Any], actor: str,
                 note: str | None) -> IncidentRow | None:
    """Apply an operator's changes; None when there is no such incident."""

    async def op(db: aiosqlite.Connection) -> IncidentRow | None:
        row = await rows.fetch(db, incident_id)
        if row is None:
            return None
        now = time.time()
        updated = replace(row, **changes, updated_at=now)
        if "status" in changes:
            updated.resolved_at = now if changes["status"] == "resolved" else None
        notes = list(row.notes)
        for key, value in changes.items():
            if getattr(row, key) != value:
                notes.append({"at": now, "by": actor, "text": f"{key}: {getattr(row, key)} -> {value}"})
        if note:
            notes.append({"at": now, "by": actor, "text": note})
        updated.notes = notes
        await rows.update(db, updated)
        return updated

    result: IncidentRow | None = await store.write(op)
    return result
