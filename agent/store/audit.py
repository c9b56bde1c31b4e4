"""SQL for audit_log: append-only rows, each carrying the hash of the previous one.

The chain is built inside the writer's transaction (one writer, so the previous row cannot change
under us): `hash = sha256(prev_hash + canonical JSON of the row)`. Editing or deleting a row
breaks every later hash, which `verify` finds.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import aiosqlite

from agent.store.db import Store

GENESIS = "0" * 64


@dataclass
class AuditRow:
    id: int
    ts: float
    event_type: str
    actor: str | None
    remote: str | None
    target: str | None
    outcome: str | None
    details: dict[str, Any]
    prev_hash: str
    hash: str


def row_hash(prev_hash: str, ts: float, event_type: str, actor: str | None, remote: str | None,
             target: str | None, outcome: str | None, details_json: str) -> str:
    canonical = json.dumps([ts, event_type, actor, remote, target, outcome, details_json], separators=(",", ":"))
    return hashlib.sha256((prev_hash + canonical).encode()).hexdigest()


async def append(
    store: Store, ts: float, event_type: str, actor: str | None, remote: str | None, target: str | None,
    outcome: str | None, details: dict[str, Any],
) -> int:
    details_json = json.dumps(details, sort_keys=True, separators=(",", ":"), default=str)

    async def op(db: aiosqlite.Connection) -> int:
        row = await (await db.execute("SELECT hash FROM audit_log ORDER BY id DESC LIMIT 1")).fetchone()
        prev = row[0] if row else GENESIS
        digest = row_hash(prev, ts, event_type, actor, remote, target, outcome, details_json)
        cursor = await db.execute(
            "INSERT INTO audit_log (ts, event_type, actor, remote, target, outcome, details, prev_hash, hash)"
            " VALUES (?,?,?,?,?,?,?,?,?)",
            (ts, event_type, actor, remote, target, outcome, details_json, prev, digest),
        )
        return int(cursor.lastrowid or 0)

    return int(await store.write(op))


_COLUMNS = "id, ts, event_type, actor, remote, target, outcome, details, prev_hash, hash"


def _row(r: Any) -> AuditRow:
    return AuditRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], json.loads(r[7]), r[8], r[9])


async def recent(store: Store, limit: int = 100, event_type: str | None = None) -> list[AuditRow]:
    async def op(db: aiosqlite.Connection) -> list[AuditRow]:
        if event_type is None:
            cursor = await db.execute(f"SELECT {_COLUMNS} FROM audit_log ORDER BY id DESC LIMIT ?", (limit,))
        else:
            cursor = await db.execute(
                f"SELECT {_COLUMNS} FROM audit_log WHERE event_type=? ORDER BY id DESC LIMIT ?", (event_type, limit)
            )
        return [_row(r) for r in await cursor.fetchall()]

    return await store.read(op)
