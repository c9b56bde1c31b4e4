"""SQL for log_events: Vigil's own log events, written in batches, read newest first.

Search is `instr` on an ASCII-lowercased copy of message and context: plain text, never a pattern,
so no input can make it slow beyond one scan of the rows in range.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiosqlite

from agent.store.db import Store

NewLogRow = tuple[float, int, str, str, str]  # ts, level, service, message, context JSON


@dataclass
class LogRow:
    id: int
    ts: float
    level: int
    service: str
    message: str
    context: dict[str, Any]


@dataclass
class LogFilter:
    since: float | None = None
    until: float | None = None
    min_level: int = 0
    services: list[str] | None = None
    search: str | None = None  # already ASCII-lowercased by the caller


# (ts, source, seq): a DB row's source is "" and its seq its id, so rows sort before file lines of the same ts.
LogKey = tuple[float, str, int]


def _where(f: LogFilter, with_level: bool, before: LogKey | None = None) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if f.since is not None:
        clauses.append("ts >= ?")
        params.append(f.since)
    if f.until is not None:
        clauses.append("ts <= ?")
        params.append(f.until)
    if with_level and f.min_level > 0:
        clauses.append("level >= ?")
        params.append(f.min_level)
    if f.services:
        clauses.append(f"service IN ({','.join('?' * len(f.services))})")
        params.extend(f.services)
    if f.search:
        clauses.append("instr(lower(message || ' ' || context), ?) > 0")
        params.append(f.search)
    if before is not None:
        ts, source, seq = before
        # Keys run (ts, source, seq) descending; DB rows have source "": a row is older than `before`
        # when its ts is smaller, or equal with `before` a file line (source > "") or a larger id.
        clauses.append("(ts < ? OR (ts = ? AND (? != '' OR id < ?)))")
        params.extend([ts, ts, source, seq])
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


async def insert_many(store: Store, batch: list[NewLogRow]) -> None:
    async def op(db: aiosqlite.Connection) -> None:
        await db.executemany(
            "INSERT INTO log_events (ts, level, service, message, context) VALUES (?,?,?,?,?)", batch
        )

    await store.write(op)


async def page(store: Store, f: LogFilter, before: LogKey | None, offset: int, limit: int) -> list[LogRow]:
    """Rows matching `f` and older than `before`, newest first, skipping `offset`."""
    where, params = _where(f, True, before)

    async def op(db: aiosqlite.Connection) -> list[LogRow]:
        cursor = await db.execute(
            f"SELECT id, ts, level, service, message, context FROM log_events{where}"
            " ORDER BY ts DESC, id DESC LIMIT ? OFFSET ?", (*params, limit, offset),
        )
        return [LogRow(r[0], r[1], r[2], r[3], r[4], json.loads(r[5])) for r in await cursor.fetchall()]

    return await store.read(op)


async def level_counts(store: Store, f: LogFilter) -> dict[int, int]:
    """Rows matching `f` except its level, by level (the summary, and the total of the levels asked)."""
    where, params = _where(f, False)

    async def op(db: aiosqlite.Connection) -> dict[int, int]:
        cursor = await db.execute(f"SELECT level, count(*) FROM log_events{where} GROUP BY level", params)
        return {int(r[0]): int(r[1]) for r in await cursor.fetchall()}

    return await store.read(op)


async def delete_before(store: Store, cutoff: float, limit: int) -> int:
    async def op(db: aiosqlite.Connection) -> int:
        cursor = await db.execute(
            "DELETE FROM log_events WHERE id IN (SELECT id FROM log_events WHERE ts < ? ORDER BY ts LIMIT ?)",
            (cutoff, limit),
        )
        return int(cursor.rowcount or 0)

    return int(await store.write(op))
