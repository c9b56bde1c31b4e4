"""SQL for silences: every silence, expired ones included until retention drops them (Alertmanager keeps
expired silences for listing too).

Matchers are stored as `[name, op, value]` triples rather than matcher strings, so reading them back
never depends on the escaping rules of the matcher syntax.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import aiosqlite

from agent.store.db import Store


@dataclass(frozen=True)
class SilenceRow:
    id: str
    matchers: list[tuple[str, str, str]]
    starts_at: float
    ends_at: float
    created_by: str
    comment: str
    updated_at: float


async def load(store: Store) -> list[SilenceRow]:
    async def op(db: aiosqlite.Connection) -> list[SilenceRow]:
        cursor = await db.execute(
            "SELECT id, matchers, starts_at, ends_at, created_by, comment, updated_at FROM silences ORDER BY id")
        return [
            SilenceRow(r[0], [(m[0], m[1], m[2]) for m in json.loads(r[1])], r[2], r[3], r[4], r[5], r[6])
            for r in await cursor.fetchall()
        ]

    return await store.read(op)


async def save(store: Store, rows: Sequence[SilenceRow]) -> None:
    """Insert or replace all of `rows` in one transaction: expiring a silence and creating its successor
    commit together or not at all."""

    async def op(db: aiosqlite.Connection) -> None:
        await db.executemany(
            "INSERT INTO silences (id, matchers, starts_at, ends_at, created_by, comment, updated_at)"
            " VALUES (?,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET matchers=excluded.matchers,"
            " starts_at=excluded.starts_at, ends_at=excluded.ends_at, created_by=excluded.created_by,"
            " comment=excluded.comment, updated_at=excluded.updated_at",
            [(r.id, json.dumps([list(m) for m in r.matchers]), r.starts_at, r.ends_at, r.created_by, r.comment,
              r.updated_at) for r in rows],
        )

    await store.write(op)


async def delete_expired(store: Store, ended_before: float) -> list[str]:
    """Drop silences that ended before `ended_before`; returns their ids."""

    async def op(db: aiosqlite.Connection) -> list[str]:
        cursor = await db.execute("SELECT id FROM silences WHERE ends_at<?", (ended_before,))
        ids = [r[0] for r in await cursor.fetchall()]
        if ids:
            await db.execute("DELETE FROM silences WHERE ends_at<?", (ended_before,))
        return ids

    return list(await store.write(op))
