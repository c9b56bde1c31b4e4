"""SQL for maintenance periods: one row per period, open (`ended_at` NULL) while maintenance is on.

Rows are kept after a period ends: they are the history an operator reads, and they tell a restarted
Vigil which occurrences of a scheduled window were already handled (ran, or were ended early by an
operator), so a window cut short is not entered again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace

import aiosqlite

from agent.store.db import Store

AUTO_END = "auto_disable"
"""`ended_by` of a period that ended by itself (as opposed to an operator's key id)."""


@dataclass(frozen=True)
class PeriodRow:
    id: str
    source: str
    reason: str
    started_at: float
    ends_at: float | None
    allowed_ips: list[str] = field(default_factory=list)
    notification_message: str = ""
    auto_disable: bool = False
    started_by: str | None = None
    ended_at: float | None = None
    ended_by: str | None = None


_COLUMNS = ("id, source, reason, started_at, ends_at, allowed_ips, notification_message, auto_disable, started_by,"
            " ended_at, ended_by")


def _row(r: tuple) -> PeriodRow:
    return PeriodRow(r[0], r[1], r[2], r[3], r[4], list(json.loads(r[5])), r[6], bool(r[7]), r[8], r[9], r[10])


async def insert(store: Store, row: PeriodRow) -> PeriodRow:
    """Insert `row`; its id is made unique inside the transaction (`_2`, `_3`, ... appended when two
    periods start within the same second), and the row as stored is returned."""

    async def op(db: aiosqlite.Connection) -> PeriodRow:
        cursor = await db.execute("SELECT id FROM maintenance WHERE substr(id, 1, ?)=?", (len(row.id), row.id))
        taken = {r[0] for r in await cursor.fetchall()}
        final, n = row.id, 1
        while final in taken:
            n += 1
            final = f"{row.id}_{n}"
        stored = replace(row, id=final)
        await db.execute(
            f"INSERT INTO maintenance ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (stored.id, stored.source, stored.reason, stored.started_at, stored.ends_at,
             json.dumps(stored.allowed_ips), stored.notification_message, int(stored.auto_disable),
             stored.started_by, stored.ended_at, stored.ended_by),
        )
        return stored

    result: PeriodRow = await store.write(op)
    return result


async def end(store: Store, period_id: str, ended_at: float, ended_by: str | None) -> None:
    async def op(db: aiosqlite.Connection) -> None:
        await db.execute("UPDATE maintenance SET ended_at=?, ended_by=? WHERE id=? AND ended_at IS NULL",
                         (ended_at, ended_by, period_id))

    await store.write(op)


async def set_end(store: Store, period_id: str, ends_at: float | None) -> None:
    """Move the expected end of an open period (a scheduled window started while it was on)."""

    async def op(db: aiosqlite.Connection) -> None:
        await db.execute("UPDATE maintenance SET ends_at=? WHERE id=?", (ends_at, period_id))

    await store.write(op)


async def load_open(store: Store) -> list[PeriodRow]:
    """Periods not ended, oldest first (normally none or one)."""

    async def op(db: aiosqlite.Connection) -> list[PeriodRow]:
        cursor = await db.execute(
            f"SELECT {_COLUMNS} FROM maintenance WHERE ended_at IS NULL ORDER BY started_at, id")
        return [_row(r) for r in await cursor.fetchall()]

    return await store.read(op)


async def get(store: Store, period_id: str) -> PeriodRow | None:
    async def op(db: aiosqlite.Connection) -> PeriodRow | None:
        r = await (await db.execute(f"SELECT {_COLUMNS} FROM maintenance WHERE id=?", (period_id,))).fetchone()
        return _row(r) if r else None

    return await store.read(op)


async def occurrence_handled(store: Store, source: str, occurrence_start: float) -> bool:
    """Whether a window's occurrence starting at `occurrence_start` was already entered (a period of that
    source started then), or an operator ended maintenance after it began: in both cases it must not
    start (again)."""

    async def op(db: aiosqlite.Connection) -> bool:
        cursor = await db.execute(
            "SELECT 1 FROM maintenance WHERE (source=? AND started_at=?)"
            " OR (ended_at IS NOT NULL AND ended_at>=? AND ended_by IS NOT ?) LIMIT 1",
            (source, occurrence_start, occurrence_start, AUTO_END),
        )
        return await cursor.fetchone() is not None

    return await store.read(op)
