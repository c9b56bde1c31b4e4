"""SQL for audit_log: append-only rows, each carrying the hash of the previous one.

The chain is built inside the writer's transaction (one writer, so the previous row cannot change
under us): `hash = sha256(prev_hash + canonical JSON of the row)`. Editing or deleting a row
breaks every later hash, which `verify` finds.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import urllib.parse
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


@dataclass
class AuditFilter:
    since: float | None = None
    until: float | None = None
    event_types: list[str] | None = None
    actor: str | None = None


def _where(f: AuditFilter, with_types: bool, before_id: int | None = None) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if f.since is not None:
        clauses.append("ts >= ?")
        params.append(f.since)
    if f.until is not None:
        clauses.append("ts <= ?")
        params.append(f.until)
    if with_types and f.event_types:
        clauses.append(f"event_type IN ({','.join('?' * len(f.event_types))})")
        params.extend(f.event_types)
    if f.actor is not None:
        clauses.append("actor = ?")
        params.append(f.actor)
    if before_id is not None:
        clauses.append("id < ?")
        params.append(before_id)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


async def page(store: Store, f: AuditFilter, before_id: int | None, offset: int, limit: int) -> list[AuditRow]:
    """Newest first (ids only grow, and follow time)."""
    where, params = _where(f, True, before_id)

    async def op(db: aiosqlite.Connection) -> list[AuditRow]:
        cursor = await db.execute(f"SELECT {_COLUMNS} FROM audit_log{where} ORDER BY id DESC LIMIT ? OFFSET ?",
                                  (*params, limit, offset))
        return [_row(r) for r in await cursor.fetchall()]

    return await store.read(op)


async def type_counts(store: Store, f: AuditFilter) -> dict[str, int]:
    """Rows matching `f` except its event types, by event type."""
    where, params = _where(f, False)

    async def op(db: aiosqlite.Connection) -> dict[str, int]:
        cursor = await db.execute(f"SELECT event_type, count(*) FROM audit_log{where} GROUP BY event_type", params)
        return {str(r[0]): int(r[1]) for r in await cursor.fetchall()}

    return await store.read(op)


@dataclass
class ChainBreak:
    id: int
    ts: float | None
    event_type: str | None
    problem: str


@dataclass
class ChainReport:
    rows: int  # verified before the first break (all of them when intact)
    last_id: int | None
    broken: ChainBreak | None


def verify_chain(db: sqlite3.Connection) -> ChainReport:
    """Walk the chain in id order; the first row whose content does not give its hash, or whose
    prev_hash is not the hash of the row before it, is the first broken row. Rows deleted from the
    end leave no break in the chain, but AUTOINCREMENT's sqlite_sequence remembers the highest id used."""
    expected_prev = GENESIS
    previous: int | None = None
    verified = 0
    cursor = db.execute(f"SELECT {_COLUMNS} FROM audit_log ORDER BY id")
    for r in cursor:
        row_id, ts, event_type, actor, remote, target, outcome, details, prev_hash, stored = r
        computed = row_hash(prev_hash, ts, event_type, actor, remote, target, outcome, details)
        if computed != stored:
            return ChainReport(verified, previous, ChainBreak(
                row_id, ts, event_type,
                f"its columns do not give its stored hash (stored {str(stored)[:16]}…, computed {computed[:16]}…): "
                "the row was changed after it was written"))
        if prev_hash != expected_prev:
            if previous is None:
                problem = (f"it is the first row but its prev_hash {str(prev_hash)[:16]}… is not the chain's start: "
                           "the rows before it were deleted")
            elif row_id != previous + 1:
                problem = (f"its prev_hash {str(prev_hash)[:16]}… is not the hash of row {previous} "
                           f"({expected_prev[:16]}…): rows {previous + 1}-{row_id - 1} were deleted")
            else:
                problem = (f"its prev_hash {str(prev_hash)[:16]}… is not the hash of row {previous} "
                           f"({expected_prev[:16]}…): row {previous} was changed and its hash rewritten")
            return ChainReport(verified, previous, ChainBreak(row_id, ts, event_type, problem))
        expected_prev = stored
        previous = row_id
        verified += 1
    used = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'audit_log'").fetchone()
    if used is not None and int(used[0]) > (previous or 0):
        first_missing = (previous or 0) + 1
        return ChainReport(verified, previous, ChainBreak(
            first_missing, None, None,
            f"rows {first_missing}-{int(used[0])} were deleted from the end (sqlite_sequence shows id {int(used[0])} "
            "was used)"))
    return ChainReport(verified, previous, None)


def verify_file(path: str) -> ChainReport:
    """`verify_chain` on a database file opened read-only: safe while the daemon writes to it (WAL
    readers see the last commit), and nothing is ever written. Raises sqlite3.Error (e.g. no such file)."""
    uri = "file:" + urllib.parse.quote(os.path.abspath(path)) + "?mode=ro"
    db = sqlite3.connect(uri, uri=True, timeout=5.0)
    try:
        db.execute("PRAGMA query_only=ON")
        return verify_chain(db)
    finally:
        db.close()
