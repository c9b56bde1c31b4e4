"""SQL for api_cursor_secret: the one secret that signs pagination cursors, made on first start.

Kept in the database (not in memory) so cursors handed out before a restart still work after it."""

from __future__ import annotations

import secrets

import aiosqlite

from agent.store.db import Store


async def load_or_create(store: Store) -> bytes:
    fresh = secrets.token_bytes(32)

    async def op(db: aiosqlite.Connection) -> bytes:
        await db.execute("INSERT OR IGNORE INTO api_cursor_secret (id, secret) VALUES (1, ?)", (fresh,))
        row = await (await db.execute("SELECT secret FROM api_cursor_secret WHERE id = 1")).fetchone()
        return bytes(row[0]) if row else fresh

    return bytes(await store.write(op))
