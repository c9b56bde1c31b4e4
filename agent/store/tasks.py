"""SQL for tasks: one row per task, rewritten whole at each change (steps and log lines as JSON).

Rows go in and come out as plain dicts of column name to (JSON-decoded) value; agent/tasks turns
them into its Task, so the store stays below the packages that use it."""

from __future__ import annotations

import json
from typing import Any

import aiosqlite

from agent.store.db import Store

FINISHED = ("completed", "failed", "cancelled", "interrupted")
COLUMNS = ("id", "type", "status", "progress", "message", "steps", "logs", "logs_dropped", "result", "error",
           "params", "created_by", "scope", "cancel_requested", "created_at", "started_at",
           "estimated_completion", "completed_at")
_JSON = frozenset({"steps", "logs", "result", "params"})
_SELECT = ", ".join(COLUMNS)
_FINISHED_SQL = ", ".join(f"'{s}'" for s in FINISHED)

TaskRow = dict[str, Any]


def encode(row: TaskRow) -> tuple[Any, ...]:
    """The row's values as stored. Callers encode when they queue the write, so a later change of the
    task in memory cannot slip into an earlier write and writes land in the order they were asked."""
    return tuple(
        (json.dumps(row[c]) if row[c] is not None else None) if c in _JSON else
        int(row[c]) if c == "cancel_requested" else row[c]
        for c in COLUMNS
    )


def _decode(r: Any) -> TaskRow:
    return {c: (json.loads(v) if v is not None else None) if c in _JSON else v for c, v in zip(COLUMNS, r, strict=True)}


async def save(store: Store, values: tuple[Any, ...]) -> None:
    """Insert or replace one task from its `encode`d values; returns once committed."""

    async def op(db: aiosqlite.Connection) -> None:
        await db.execute(f"INSERT OR REPLACE INTO tasks ({_SELECT}) VALUES ({','.join('?' * len(values))})", values)

    await store.write(op)


async def get(store: Store, task_id: str) -> TaskRow | None:
    async def op(db: aiosqlite.Connection) -> TaskRow | None:
        r = await (await db.execute(f"SELECT {_SELECT} FROM tasks WHERE id=?", (task_id,))).fetchone()
        return _decode(r) if r else None

    return await store.read(op)


async def page(
    store: Store, limit: int, offset: int, status: str | None = None, type_: str | None = None,
) -> tuple[list[TaskRow], int, dict[str, int]]:
    """Newest first; the total of the filtered set, and counts by status of the tasks of `type_`
    (all statuses, so a list filtered by status still shows how many are running)."""

    async def op(db: aiosqlite.Connection) -> tuple[list[TaskRow], int, dict[str, int]]:
        type_clause, type_args = ("type=?", [type_]) if type_ is not None else ("1=1", [])
        counts = {r[0]: int(r[1]) for r in await (await db.execute(
            f"SELECT status, count(*) FROM tasks WHERE {type_clause} GROUP BY status", type_args)).fetchall()}
        where, args = type_clause, list(type_args)
        if status is not None:
            where += " AND status=?"
            args.append(status)
            total = counts.get(status, 0)
        else:
            total = sum(counts.values())
        cursor = await db.execute(
            f"SELECT {_SELECT} FROM tasks WHERE {where} ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?",
            (*args, limit, offset),
        )
        return [_decode(r) for r in await cursor.fetchall()], total, counts

    return await store.read(op)


async def unfinished(store: Store) -> list[TaskRow]:
    """Tasks not finished: at start-up, those a previous run left behind."""

    async def op(db: aiosqlite.Connection) -> list[TaskRow]:
        cursor = await db.execute(
            f"SELECT {_SELECT} FROM tasks WHERE completed_at IS NULL AND status NOT IN ({_FINISHED_SQL})"
            " ORDER BY created_at")
        return [_decode(r) for r in await cursor.fetchall()]

    return await store.read(op)


async def prune(store: Store, finished_before: float) -> int:
    """Delete finished tasks that ended before `finished_before`; returns how many."""

    async def op(db: aiosqlite.Connection) -> int:
        cursor = await db.execute(
            f"DELETE FROM tasks WHERE completed_at<? AND status IN ({_FINISHED_SQL})", (finished_before,))
        return cursor.rowcount

    return int(await store.write(op))
