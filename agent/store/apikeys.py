"""SQL for the api_keys table; callers go through agent.auth.keys."""

from __future__ import annotations

from dataclasses import dataclass

import aiosqlite

from agent.store.db import Store

_COLUMNS = "id, name, role, key_hash, preview, created_at, created_by, last_used, expires_at, revoked_at"


@dataclass
class ApiKeyRow:
    id: str
    name: str
    role: str
    key_hash: str
    preview: str
    created_at: float
    created_by: str | None
    last_used: float | None
    expires_at: float | None
    revoked_at: float | None


async def insert(store: Store, row: ApiKeyRow) -> None:
    async def op(db: aiosqlite.Connection) -> None:
        await db.execute(
            f"INSERT INTO api_keys ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (row.id, row.name, row.role, row.key_hash, row.preview, row.created_at, row.created_by,
             row.last_used, row.expires_at, row.revoked_at),
        )

    await store.write(op)


async def revoke(store: Store, key_id: str, at: float) -> bool:
    """True when a live key was revoked by this call."""

    async def op(db: aiosqlite.Connection) -> bool:
        cursor = await db.execute(
            "UPDATE api_keys SET revoked_at=? WHERE id=? AND revoked_at IS NULL", (at, key_id)
        )
        return cursor.rowcount == 1

    return bool(await store.write(op))


async def touch(store: Store, last_used: dict[str, float]) -> None:
    async def op(db: aiosqlite.Connection) -> None:
        await db.executemany(
            "UPDATE api_keys SET last_used=? WHERE id=? AND (last_used IS NULL OR last_used < ?)",
            [(ts, key_id, ts) for key_id, ts in last_used.items()],
        )

    await store.write(op)


async def all_keys(store: Store) -> list[ApiKeyRow]:
    async def op(db: aiosqlite.Connection) -> list[ApiKeyRow]:
        cursor = await db.execute(f"SELECT {_COLUMNS} FROM api_keys ORDER BY created_at, id")
        return [ApiKeyRow(*row) for row in await cursor.fetchall()]

    return await store.read(op)
