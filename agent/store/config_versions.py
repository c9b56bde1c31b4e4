"""SQL for config_versions: every applied config, with its diff and file texts for rollback."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiosqlite

from agent.store.db import Store


@dataclass
class ConfigVersionRow:
    id: int
    created_at: float
    source: str
    actor: str | None
    reason: str | None
    diff: list[dict[str, Any]]
    sources: dict[str, str]


async def insert(
    store: Store, created_at: float, source: str, actor: str | None, reason: str | None,
    diff: list[dict[str, Any]], sources: dict[str, str],
) -> int:
    async def op(db: aiosqlite.Connection) -> int:
        cursor = await db.execute(
            "INSERT INTO config_versions (created_at, source, actor, reason, diff, sources)"
            " VALUES (?,?,?,?,?,?)",
            (created_at, source, actor, reason, json.dumps(diff), json.dumps(sources)),
        )
        return int(cursor.lastrowid or 0)

    return int(await store.write(op))


def _row(row: tuple[Any, ...]) -> ConfigVersionRow:
    return ConfigVersionRow(row[0], row[1], row[2], row[3], row[4], json.loads(row[5]), json.loads(row[6]))


async def latest(store: Store) -> ConfigVersionRow | None:
    async def op(db: aiosqlite.Connection) -> ConfigVersionRow | None:
        cursor = await db.execute(
            "SELECT id, created_at, source, actor, reason, diff, sources FROM config_versions"
            " ORDER BY id DESC LIMIT 1"
        )
        row = await cursor.fetchone()
        return _row(tuple(row)) if row else None

    return await store.read(op)


async def list_versions(
    store: Store, limit: int, offset: int, before: int | None = None,
) -> tuple[list[ConfigVersionRow], int]:
    """Newest first; `before` (an id) pages without drifting when new versions arrive meanwhile."""

    async def op(db: aiosqlite.Connection) -> tuple[list[ConfigVersionRow], int]:
        total = (await (await db.execute("SELECT count(*) FROM config_versions")).fetchone() or (0,))[0]
        cursor = await db.execute(
            "SELECT id, created_at, source, actor, reason, diff, sources FROM config_versions"
            " WHERE ? IS NULL OR id < ? ORDER BY id DESC LIMIT ? OFFSET ?",
            (before, before, limit, offset),
        )
        return [_row(tuple(r)) for r in await cursor.fetchall()], int(total)

    return await store.read(op)


async def get(store: Store, version_id: int) -> ConfigVersionRow | None:
    async def op(db: aiosqlite.Connection) -> ConfigVersionRow | None:
        cursor = await db.execute(
            "SELECT id, created_at, source, actor, reason, diff, sources FROM config_versions WHERE id=?",
            (version_id,),
        )
        row = await cursor.fetchone()
        return _row(tuple(row)) if row else None

    return await store.read(op)
