"""SQL for rule evaluation: each group's state between evaluations, and alert instances with the
operator's workflow (acknowledged, resolved by hand)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import aiosqlite

from agent.store.db import Store


@dataclass
class AlertRow:
    id: int
    fingerprint: str
    group_key: str
    alertname: str
    labels: dict[str, str]
    annotations: dict[str, str]
    severity: str
    value: float | None
    state: str
    """pending, firing or resolved."""
    active_at: float
    fired_at: float | None = None
    resolved_at: float | None = None
    resolved_by: str | None = None
    resolution: str | None = None
    resolution_notes: str | None = None
    preventive_measures: str | None = None
    ack_by: str | None = None
    ack_at: float | None = None
    ack_notes: str | None = None
    assigned_to: str | None = None
    estimated_resolution: str | None = None
    updated_at: float = 0.0


_COLUMNS = ("id, fingerprint, group_key, alertname, labels, annotations, severity, value, state, active_at, fired_at,"
            " resolved_at, resolved_by, resolution, resolution_notes, preventive_measures, ack_by, ack_at, ack_notes,"
            " assigned_to, estimated_resolution, updated_at")


def _row(r: Any) -> AlertRow:
    return AlertRow(r[0], r[1], r[2], r[3], json.loads(r[4]), json.loads(r[5]), *r[6:22])


def _values(row: AlertRow) -> tuple[Any, ...]:
    return (row.fingerprint, row.group_key, row.alertname, json.dumps(row.labels, sort_keys=True),
            json.dumps(row.annotations, sort_keys=True), row.severity, row.value, row.state, row.active_at,
            row.fired_at, row.resolved_at, row.resolved_by, row.resolution, row.resolution_notes,
            row.preventive_measures, row.ack_by, row.ack_at, row.ack_notes, row.assigned_to, row.estimated_resolution,
            row.updated_at)


async def insert(db: aiosqlite.Connection, row: AlertRow) -> int:
    cursor = await db.execute(
        f"INSERT INTO alerts ({_COLUMNS.removeprefix('id, ')}) VALUES ({','.join('?' * 21)})", _values(row))
    row.id = int(cursor.lastrowid or 0)
    return row.id


async def update(db: aiosqlite.Connection, row: AlertRow) -> None:
    names = _COLUMNS.removeprefix("id, ").split(", ")
    await db.execute(f"UPDATE alerts SET {', '.join(f'{n}=?' for n in names)} WHERE id=?", (*_values(row), row.id))


async def save_group_state(db: aiosqlite.Connection, group_key: str, state: dict[str, Any], now: float) -> None:
    await db.execute(
        "INSERT INTO rule_group_state (group_key, state, updated_at) VALUES (?,?,?)"
        " ON CONFLICT(group_key) DO UPDATE SET state=excluded.state, updated_at=excluded.updated_at",
        (group_key, json.dumps(state, separators=(",", ":")), now),
    )


async def delete_group_states(db: aiosqlite.Connection, keys: Iterable[str]) -> None:
    await db.executemany("DELETE FROM rule_group_state WHERE group_key=?", [(k,) for k in keys])


async def load_group_states(store: Store) -> dict[str, tuple[dict[str, Any], float]]:
    async def op(db: aiosqlite.Connection) -> dict[str, tuple[dict[str, Any], float]]:
        cursor = await db.execute("SELECT group_key, state, updated_at FROM rule_group_state")
        return {r[0]: (json.loads(r[1]), r[2]) for r in await cursor.fetchall()}

    return await store.read(op)


async def open_alerts(store: Store) -> list[AlertRow]:
    """Instances not resolved yet (the rule manager's view of what is going on after a restart)."""

    async def op(db: aiosqlite.Connection) -> list[AlertRow]:
        cursor = await db.execute(f"SELECT {_COLUMNS} FROM alerts WHERE resolved_at IS NULL ORDER BY id")
        return [_row(r) for r in await cursor.fetchall()]

    return await store.read(op)


async def fetch(db: aiosqlite.Connection, alert_id: int) -> AlertRow | None:
    r = await (await db.execute(f"SELECT {_COLUMNS} FROM alerts WHERE id=?", (alert_id,))).fetchone()
    return _row(r) if r else None


async def get(store: Store, alert_id: int) -> AlertRow | None:
    async def op(db: aiosqlite.Connection) -> AlertRow | None:
        return await fetch(db, alert_id)

    return await store.read(op)


# Statuses of the API: an open instance is "acknowledged" once an operator took it, else its rule state.
_STATUS_SQL = {
    "pending": "state='pending' AND ack_at IS NULL",
    "firing": "state='firing' AND ack_at IS NULL",
    "active": "resolved_at IS NULL AND ack_at IS NULL",
    "acknowledged": "resolved_at IS NULL AND ack_at IS NOT NULL",
    "open": "resolved_at IS NULL",
    "resolved": "resolved_at IS NOT NULL",
    "all": "1=1",
}
STATUSES = tuple(_STATUS_SQL)


async def page(
    store: Store, limit: int, offset: int, status: str = "open", severity: str | None = None,
    service: str | None = None, alertname: str | None = None,
) -> tuple[list[AlertRow], int, dict[str, int], dict[str, int]]:
    """Newest first; the total of the filtered set, and counts by status and by severity over all
    instances matching the other filters (so the summary does not shrink with the status filter)."""

    async def op(db: aiosqlite.Connection) -> tuple[list[AlertRow], int, dict[str, int], dict[str, int]]:
        where, args = ["1=1"], []
        if severity is not None:
            where.append("severity=?")
            args.append(severity)
        if alertname is not None:
            where.append("alertname=?")
            args.append(alertname)
        if service is not None:
            where.append("(json_extract(labels, '$.service')=? OR json_extract(labels, '$.job')=?"
                         " OR json_extract(labels, '$.check')=?)")
            args.extend([service] * 3)
        base = " AND ".join(where)
        counts: dict[str, int] = {}
        for name in ("active", "acknowledged", "resolved", "pending", "firing"):
            r = await (await db.execute(f"SELECT count(*) FROM alerts WHERE {base} AND {_STATUS_SQL[name]}",
                                        args)).fetchone()
            counts[name] = int(r[0])
        by_severity = {r[0]: r[1] for r in await (await db.execute(
            f"SELECT severity, count(*) FROM alerts WHERE {base} AND resolved_at IS NULL GROUP BY severity",
            args)).fetchall()}
        clause = f"{base} AND {_STATUS_SQL[status]}"
        total = int((await (await db.execute(f"SELECT count(*) FROM alerts WHERE {clause}", args)).fetchone())[0])
        cursor = await db.execute(
            f"SELECT {_COLUMNS} FROM alerts WHERE {clause} ORDER BY id DESC LIMIT ? OFFSET ?", (*args, limit, offset))
        return [_row(r) for r in await cursor.fetchall()], total, counts, by_severity

    return await store.read(op)


async def open_counts_by_severity(store: Store) -> dict[str, dict[str, int]]:
    """For /api/v1/health: open instances by severity and state."""

    async def op(db: aiosqlite.Connection) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        cursor = await db.execute(
            "SELECT severity, CASE WHEN ack_at IS NOT NULL THEN 'acknowledged' ELSE state END, count(*)"
            " FROM alerts WHERE resolved_at IS NULL GROUP BY 1, 2")
        for sev, state, n in await cursor.fetchall():
            out.setdefault(sev, {})[state] = n
        return out

    return await store.read(op)


async def prune(store: Store, resolved_before: float) -> int:
    async def op(db: aiosqlite.Connection) -> int:
        cursor = await db.execute("DELETE FROM alerts WHERE resolved_at IS NOT NULL AND resolved_at<?",
                                  (resolved_before,))
        return cursor.rowcount

    return int(await store.write(op))
