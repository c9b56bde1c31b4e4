"""SQL for what each notification group last told its receiver, so a restart neither re-pages nor forgets."""

from __future__ import annotations

import json
from typing import Any

import aiosqlite

from agent.store.db import Store


async def load(store: Store) -> dict[str, dict[str, Any]]:
    async def op(db: aiosqlite.Connection) -> dict[str, dict[str, Any]]:
        cursor = await db.execute("SELECT key, state FROM notification_groups")
        return {r[0]: json.loads(r[1]) for r in await cursor.fetchall()}

    return await store.read(op)


async def save(store: Store, saves: dict[str, dict[str, Any]], deletes: list[str], now: float) -> None:
    """Upserts and deletes in one transaction."""

    async def op(db: aiosqlite.Connection) -> None:
        await db.executemany(
            "INSERT INTO notification_groups (key, state, updated_at) VALUES (?,?,?)"
            " ON CONFLICT(key) DO UPDATE SET state=excluded.state, updated_at=excluded.updated_at",
            [(k, json.dumps(v, separators=(",", ":")), now) for k, v in saves.items()],
        )
        await db.executemany("DELETE FROM notification_groups WHERE key=?", [(k,) for k in deletes])

    await store.write(op)


async def prune(store: Store, before: float) -> int:
    async def op(db: aiosqlite.Connection) -> int:
        cursor = await db.execute("DELETE FROM notification_groups WHERE updated_at<?", (before,))
        return cursor.rowcount

    return int(await store.write(op))
