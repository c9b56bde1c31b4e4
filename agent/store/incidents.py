"""SQL for incidents: opened by failing checks or by operators, worked through to resolved."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import aiosqlite

from agent.store.db import Store


@dataclass
class IncidentRow:
    id: int
    title: str
    description: str
    severity: str
    status: str
    source: str
    check_name: str | None
    created_at: float
    updated_at: float
    resolved_at: float | None
    created_by: str | None
    assigned_to: str | None
    notes: list[dict[str, Any]] = field(default_factory=list)


_COLUMNS = ("id, title, description, severity, status, source, check_name, created_at, updated_at, resolved_at,"
            " created_by, assigned_to, notes")


def _row(r: Any) -> IncidentRow:
    return IncidentRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], json.loads(r[12]))


async def insert(db: aiosqlite.Connection, row: IncidentRow) -> int:
    cursor = await db.execute(
        "INSERT INTO incidents (title, description, severity, status, source, check_name, created_at, updated_at,"
        " resolved_at, created_by, assigned_to, notes) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        (row.title, row.description, row.severity, row.status, row.source, row.check_name, row.created_at,
         row.updated_at, row.resolved_at, row.created_by, row.assigned_to, json.dumps(row.notes)),
    )
    return int(cursor.lastrowid or 0)


async def update(db: aiosqlite.Connection, row: IncidentRow) -> None:
    await db.execute(
        "UPDATE incidents SET title=?, description=?, severity=?, status=?, updated_at=?, resolved_at=?,"
        " assigned_to=?, notes=? WHERE id=?",
        (row.title, row.description, row.severity, row.status, row.updated_at, row.resolved_at, row.assigned_to,
         json.dumps(row.notes), row.id),
    )


async def fetch(db: aiosqlite.Connection, incident_id: int) -> IncidentRow | None:
    r = await (await db.execute(f"SELECT {_COLUMNS} FROM incidents WHERE id=?", (incident_id,))).fetchone()
    return _row(r) if r else None


async def get(store: Store, incident_id: int) -> IncidentRow | None:
    async def op(db: aiosqlite.Connection) -> IncidentRow | None:
        return await fetch(db, incident_id)

    return await store.read(op)


async def page(
    store: Store, limit: int, offset: int, status: str | None = None, severity: str | None = None,
    check_name: str | None = None, since: float | None = None,
) -> tuple[list[IncidentRow], int, dict[str, int]]:
    """Newest first, with the total and counts by status of the filtered set."""

    async def op(db: aiosqlite.Connection) -> tuple[list[IncidentRow], int, dict[str, int]]:
        where, args = ["1=1"], []
        for column, value in (("status", status), ("severity", severity), ("check_name", check_name)):
            if value is not None:
                where.append(f"{column}=?")
                args.append(value)
        if since is not None:
            where.append("created_at>=?")
            args.append(since)
        clause = " AND ".join(where)
        counts = {r[0]: r[1] for r in await (await db.execute(
            f"SELECT status, count(*) FROM incidents WHERE {clause} GROUP BY status", args)).fetchall()}
        cursor = await db.execute(
            f"SELECT {_COLUMNS} FROM incidents WHERE {clause} ORDER BY id DESC LIMIT ? OFFSET ?",
            (*args, limit, offset),
        )
        return [_row(r) for r in await cursor.fetchall()], sum(counts.values()), counts

    return await store.read(op)


async def prune(store: Store, resolved_before: float) -> int:
    async def op(db: aiosqlite.Connection) -> int:
        cursor = await db.execute(
            "DELETE FROM incidents WHERE status='resolved' AND resolved_at<?", (resolved_before,))
        return cursor.rowcount

    return int(await store.write(op))
