"""SQL for the notification outbox: one table of pending messages, a FIFO per receiver.

The functions taking `db` run inside a write or read of the store (`store.write(fn)` / `store.read(fn)`),
so the outbox (agent/notify/outbox.py) can combine several of them in one transaction: an insert and the
trimming of the receiver's queue to its limit are committed together.

Drops always take a prefix of a receiver's queue (the oldest rows by id) and say up to which id they
went (`Dropped.upto_id`): a delivery worker that already read rows ahead can tell which are gone without
asking again.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import aiosqlite

from agent.store.db import Store

_COLUMNS = "id, receiver, kind, body, created_at, attempts, next_attempt_at, last_error"
_DELETE_CHUNK = 500  # well below SQLite's limit of bound variables per statement


@dataclass
class NewRow:
    receiver: str
    kind: str
    body: str
    """JSON text, serialised by the caller before the write so a bad body never reaches the writer."""
    created_at: float


@dataclass
class OutboxRow:
    id: int
    receiver: str
    kind: str
    body: dict[str, Any]
    created_at: float
    attempts: int
    next_attempt_at: float
    last_error: str | None


@dataclass
class Dropped:
    count: int
    upto_id: int
    """Every row of the receiver with an id up to this one is gone (0 when nothing was dropped)."""


def _row(r: Any) -> OutboxRow:
    return OutboxRow(int(r[0]), r[1], r[2], json.loads(r[3]), float(r[4]), int(r[5]), float(r[6]), r[7])


async def insert(db: aiosqlite.Connection, rows: Sequence[NewRow]) -> list[int]:
    """Ids in the order of `rows`. One writer and AUTOINCREMENT inside one transaction: the ids of one
    executemany are consecutive and end at last_insert_rowid()."""
    if not rows:
        return []
    await db.executemany(
        "INSERT INTO outbox (receiver, kind, body, created_at, attempts, next_attempt_at) VALUES (?,?,?,?,0,?)",
        [(r.receiver, r.kind, r.body, r.created_at, r.created_at) for r in rows],
    )
    last = (await (await db.execute("SELECT last_insert_rowid()")).fetchone() or (0,))[0]
    first = int(last) - len(rows) + 1
    return list(range(first, int(last) + 1))


async def pending(db: aiosqlite.Connection, receiver: str, after_id: int = 0, limit: int = 1) -> list[OutboxRow]:
    """The oldest pending rows of a receiver after `after_id`, oldest first."""
    cursor = await db.execute(
        f"SELECT {_COLUMNS} FROM outbox WHERE receiver=? AND id>? ORDER BY id LIMIT ?", (receiver, after_id, limit)
    )
    return [_row(r) for r in await cursor.fetchall()]


async def oldest(store: Store, receiver: str) -> OutboxRow | None:
    async def op(db: aiosqlite.Connection) -> OutboxRow | None:
        rows = await pending(db, receiver)
        return rows[0] if rows else None

    return await store.read(op)


async def heads(db: aiosqlite.Connection, receivers: Iterable[str]) -> dict[str, OutboxRow]:
    """The head of each receiver's queue, for those that have one (one indexed lookup each)."""
    out: dict[str, OutboxRow] = {}
    for receiver in receivers:
        rows = await pending(db, receiver)
        if rows:
            out[receiver] = rows[0]
    return out


async def delete(db: aiosqlite.Connection, ids: Sequence[int]) -> int:
    """Rows actually deleted: an id already dropped by a limit is not counted."""
    deleted = 0
    for start in range(0, len(ids), _DELETE_CHUNK):
        chunk = ids[start:start + _DELETE_CHUNK]
        cursor = await db.execute(f"DELETE FROM outbox WHERE id IN ({','.join('?' * len(chunk))})", tuple(chunk))
        deleted += cursor.rowcount
    return deleted


async def record_attempt(
    db: aiosqlite.Connection, message_id: int, attempts: int, next_attempt_at: float, error: str
) -> bool:
    """False when the row is gone (dropped by a limit while it was being tried)."""
    cursor = await db.execute(
        "UPDATE outbox SET attempts=?, next_attempt_at=?, last_error=? WHERE id=?",
        (attempts, next_attempt_at, error, message_id),
    )
    return cursor.rowcount > 0


async def drop_older_than(db: aiosqlite.Connection, before: float) -> dict[str, Dropped]:
    """Per receiver, drop every row up to its newest one created before `before`: the rows older than the
    limit, and (only if the clock went backwards) rows queued before them, so a drop stays a prefix."""
    cursor = await db.execute("SELECT receiver, max(id) FROM outbox WHERE created_at<? GROUP BY receiver", (before,))
    out: dict[str, Dropped] = {}
    for receiver, upto in await cursor.fetchall():
        deleted = await db.execute("DELETE FROM outbox WHERE receiver=? AND id<=?", (receiver, upto))
        out[receiver] = Dropped(deleted.rowcount, int(upto))
    return out


async def drop_oldest_beyond(db: aiosqlite.Connection, receiver: str, keep: int) -> Dropped:
    """Keep the newest `keep` rows of a receiver, drop the older ones."""
    row = await (await db.execute(
        "SELECT id FROM outbox WHERE receiver=? ORDER BY id DESC LIMIT 1 OFFSET ?", (receiver, keep)
    )).fetchone()
    if row is None:
        return Dropped(0, 0)
    deleted = await db.execute("DELETE FROM outbox WHERE receiver=? AND id<=?", (receiver, row[0]))
    return Dropped(deleted.rowcount, int(row[0]))


async def counts(db: aiosqlite.Connection) -> dict[str, int]:
    cursor = await db.execute("SELECT receiver, count(*) FROM outbox GROUP BY receiver")
    return {r[0]: int(r[1]) for r in await cursor.fetchall()}


async def receivers(db: aiosqlite.Connection) -> list[str]:
    """Receivers with pending rows."""
    cursor = await db.execute("SELECT DISTINCT receiver FROM outbox ORDER BY receiver")
    return [r[0] for r in await cursor.fetchall()]


async def delete_receiver(db: aiosqlite.Connection, receiver: str) -> int:
    cursor = await db.execute("DELETE FROM outbox WHERE receiver=?", (receiver,))
    return cursor.rowcount
