"""SQL for checks: the state of each check (what survives a restart), every result (with
retention), and state changes (uptime and last downtime are computed from these)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiosqlite

from agent.store.db import Store


@dataclass
class StateRow:
    name: str
    type: str
    state: str | None
    since: float | None
    fails: int
    passes: int
    last_result: dict[str, Any] | None
    paused_at: float | None
    paused_by: str | None
    memo: dict[str, Any]
    remediation: dict[str, Any]
    heartbeat: dict[str, Any] | None
    incident_id: int | None
    updated_at: float


@dataclass
class ResultRow:
    check_name: str
    ts: float
    status: str
    state: str | None
    message: str
    duration: float
    perfdata: list[dict[str, Any]]
    details: dict[str, Any]
    id: int | None = None


@dataclass
class TransitionRow:
    check_name: str
    ts: float
    from_state: str | None
    to_state: str
    message: str = ""
    id: int | None = None


def _dump(value: Any) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"), default=str)


_STATE_COLUMNS = (
    "name, type, state, since, fails, passes, last_result, paused_at, paused_by, memo, remediation,"
    " heartbeat, incident_id, updated_at"
)


async def upsert_states(db: aiosqlite.Connection, states: list[StateRow]) -> None:
    await db.executemany(
        f"INSERT OR REPLACE INTO check_state ({_STATE_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        [(s.name, s.type, s.state, s.since, s.fails, s.passes, _dump(s.last_result), s.paused_at, s.paused_by,
          _dump(s.memo) or "{}", _dump(s.remediation) or "{}", _dump(s.heartbeat), s.incident_id, s.updated_at)
         for s in states],
    )


async def insert_results(db: aiosqlite.Connection, results: list[ResultRow]) -> None:
    await db.executemany(
        "INSERT INTO check_results (check_name, ts, status, state, message, duration, perfdata, details)"
        " VALUES (?,?,?,?,?,?,?,?)",
        [(r.check_name, r.ts, r.status, r.state, r.message, r.duration, _dump(r.perfdata or None),
          _dump(r.details or None)) for r in results],
    )


async def insert_transitions(db: aiosqlite.Connection, transitions: list[TransitionRow]) -> None:
    await db.executemany(
        "INSERT INTO check_transitions (check_name, ts, from_state, to_state, message) VALUES (?,?,?,?,?)",
        [(t.check_name, t.ts, t.from_state, t.to_state, t.message) for t in transitions],
    )


async def delete_state(db: aiosqlite.Connection, name: str) -> None:
    await db.execute("DELETE FROM check_state WHERE name=?", (name,))


async def load_states(store: Store) -> list[StateRow]:
    async def op(db: aiosqlite.Connection) -> list[StateRow]:
        cursor = await db.execute(f"SELECT {_STATE_COLUMNS} FROM check_state")
        out = []
        for r in await cursor.fetchall():
            out.append(StateRow(
                r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6]) if r[6] else None, r[7], r[8],
                json.loads(r[9] or "{}"), json.loads(r[10] or "{}"), json.loads(r[11]) if r[11] else None,
                r[12], r[13],
            ))
        return out

    return await store.read(op)


def _result(r: Any) -> ResultRow:
    return ResultRow(r[1], r[2], r[3], r[4], r[5], r[6], json.loads(r[7]) if r[7] else [],
                     json.loads(r[8]) if r[8] else {}, r[0])


async def results_page(
    store: Store, name: str, limit: int, offset: int = 0, before_id: int | None = None,
    since: float | None = None,
) -> tuple[list[ResultRow], int]:
    """Newest first; `before_id` pages by keyset (a cursor), `offset` by position."""

    async def op(db: aiosqlite.Connection) -> tuple[list[ResultRow], int]:
        where, args = ["check_name=?"], [name]
        if since is not None:
            where.append("ts>=?")
            args.append(since)
        total = (await (await db.execute(
            f"SELECT count(*) FROM check_results WHERE {' AND '.join(where)}", args)).fetchone() or (0,))[0]
        if before_id is not None:
            where.append("id<?")
            args.append(before_id)
        cursor = await db.execute(
            "SELECT id, check_name, ts, status, state, message, duration, perfdata, details FROM check_results"
            f" WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ? OFFSET ?", (*args, limit, offset),
        )
        return [_result(r) for r in await cursor.fetchall()], int(total)

    return await store.read(op)


async def transitions_since(store: Store, since: float, name: str | None = None) -> list[TransitionRow]:
    """State changes after `since`, plus, per check, the last one before it (the state at `since`)."""

    async def op(db: aiosqlite.Connection) -> list[TransitionRow]:
        filt, args = ("AND check_name=?", [name]) if name is not None else ("", [])
        cursor = await db.execute(
            "SELECT id, check_name, ts, from_state, to_state, message FROM check_transitions"
            f" WHERE id IN (SELECT max(id) FROM check_transitions WHERE ts<? {filt} GROUP BY check_name)"
            f" OR (ts>=? {filt}) ORDER BY ts, id",
            (since, *args, since, *args),
        )
        return [TransitionRow(r[1], r[2], r[3], r[4], r[5], r[0]) for r in await cursor.fetchall()]

    return await store.read(op)


async def prune(store: Store, results_before: float, transitions_before: float) -> tuple[int, int]:
    """Retention; keeps each check's last state change however old (it is the current state)."""

    async def op(db: aiosqlite.Connection) -> tuple[int, int]:
        results = await db.execute("DELETE FROM check_results WHERE ts<?", (results_before,))
        transitions = await db.execute(
            "DELETE FROM check_transitions WHERE ts<? AND id NOT IN"
            " (SELECT max(id) FROM check_transitions GROUP BY check_name)", (transitions_before,),
        )
        return results.rowcount, transitions.rowcount

    return await store.write(op)
