"""SQL for the access policy's state (callers go through agent.security): failed authentications per
address, and one lockout row per address (its latest lock, kept after it ends so that a restart knows
which failures were already paid for by a lock)."""

from __future__ import annotations

from dataclasses import dataclass

import aiosqlite

from agent.store.db import Store


@dataclass(frozen=True)
class FailureRow:
    ts: float
    remote: str
    reason: str
    key_id: str | None
    route: str | None


@dataclass(frozen=True)
class LockoutRow:
    remote: str
    locked_at: float
    until: float
    failures: int
    lifted_at: float | None = None
    lifted_by: str | None = None


_LOCK_COLUMNS = "remote, locked_at, until, failures, lifted_at, lifted_by"


async def record_failure(
    store: Store, failure: FailureRow, lock: LockoutRow | None, prune_before: float | None,
) -> None:
    """One transaction: the failure, the lock it caused (if it did), and the pruning of rows older
    than `prune_before` (failures, and lockouts that ended before it)."""

    async def op(db: aiosqlite.Connection) -> None:
        await db.execute(
            "INSERT INTO auth_failures (ts, remote, reason, key_id, route) VALUES (?,?,?,?,?)",
            (failure.ts, failure.remote, failure.reason, failure.key_id, failure.route),
        )
        if lock is not None:
            await db.execute(
                f"INSERT OR REPLACE INTO lockouts ({_LOCK_COLUMNS}) VALUES (?,?,?,?,?,?)",
                (lock.remote, lock.locked_at, lock.until, lock.failures, lock.lifted_at, lock.lifted_by),
            )
        if prune_before is not None:
            await db.execute("DELETE FROM auth_failures WHERE ts < ?", (prune_before,))
            await db.execute("DELETE FROM lockouts WHERE until < ?", (prune_before,))

    await store.write(op)


async def lift(store: Store, remote: str, at: float, by: str | None) -> bool:
    """End an active lock now; True when there was one."""

    async def op(db: aiosqlite.Connection) -> bool:
        cursor = await db.execute(
            "UPDATE lockouts SET until=?, lifted_at=?, lifted_by=? WHERE remote=? AND until > ? AND lifted_at IS NULL",
            (at, at, by, remote, at),
        )
        return cursor.rowcount == 1

    return bool(await store.write(op))


async def lockouts(store: Store) -> list[LockoutRow]:
    async def op(db: aiosqlite.Connection) -> list[LockoutRow]:
        cursor = await db.execute(f"SELECT {_LOCK_COLUMNS} FROM lockouts ORDER BY locked_at")
        return [LockoutRow(*r) for r in await cursor.fetchall()]

    return await store.read(op)


async def failures_since(store: Store, since: float) -> list[FailureRow]:
    async def op(db: aiosqlite.Connection) -> list[FailureRow]:
        cursor = await db.execute(
            "SELECT ts, remote, reason, key_id, route FROM auth_failures WHERE ts >= ? ORDER BY ts", (since,)
        )
        return [FailureRow(*r) for r in await cursor.fetchall()]

    return await store.read(op)


async def failure_counts(store: Store, since: float) -> dict[str, int]:
    """Failures since `since` by reason."""

    async def op(db: aiosqlite.Connection) -> dict[str, int]:
        cursor = await db.execute(
            "SELECT reason, count(*) FROM auth_failures WHERE ts >= ? GROUP BY reason ORDER BY reason", (since,)
        )
        return {str(r[0]): int(r[1]) for r in await cursor.fetchall()}

    return await store.read(op)
