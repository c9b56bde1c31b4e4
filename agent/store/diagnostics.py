"""SQL for diagnostics and cleanup: stored health reports, the record of the last VACUUM, optimize and
integrity check, the database's own figures (file, pages, tables with rows and bytes), and the
operations that act on the whole file (VACUUM, `PRAGMA optimize`, `PRAGMA integrity_check`).

What reads the whole file (table sizes, integrity) runs on a read-only connection of its own in a
worker thread: on the store's shared reader it would hold up every other read for as long.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
import urllib.parse
from typing import Any

import aiosqlite

from agent.store.db import Store

KEEP_REPORTS = 100  # stored health reports; older ones are dropped when a new one is saved
REPORT_COLUMNS = ("id", "task_id", "created_at", "completed_at", "created_by", "overall", "summary")


# --- health reports ---------------------------------------------------------------------------


async def save_report(store: Store, row: dict[str, Any], keep: int = KEEP_REPORTS) -> None:
    """Insert a report (`REPORT_COLUMNS` plus `report`), then drop all but the newest `keep`."""

    async def op(db: aiosqlite.Connection) -> None:
        await db.execute(
            "INSERT INTO health_reports (id, task_id, created_at, completed_at, created_by, overall, summary, report)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (row["id"], row["task_id"], row["created_at"], row["completed_at"], row["created_by"], row["overall"],
             json.dumps(row["summary"]), json.dumps(row["report"])),
        )
        await db.execute(
            "DELETE FROM health_reports WHERE id NOT IN"
            " (SELECT id FROM health_reports ORDER BY created_at DESC, id DESC LIMIT ?)", (keep,))

    await store.write(op)


def _report_row(r: Any, with_report: bool) -> dict[str, Any]:
    out = dict(zip(REPORT_COLUMNS, r[: len(REPORT_COLUMNS)], strict=True))
    out["summary"] = json.loads(out["summary"])
    if with_report:
        out["report"] = json.loads(r[len(REPORT_COLUMNS)])
    return out


async def get_report(store: Store, report_id: str) -> dict[str, Any] | None:
    async def op(db: aiosqlite.Connection) -> dict[str, Any] | None:
        cursor = await db.execute(
            f"SELECT {', '.join(REPORT_COLUMNS)}, report FROM health_reports WHERE id=?", (report_id,))
        r = await cursor.fetchone()
        return _report_row(r, True) if r else None

    return await store.read(op)


async def page_reports(
    store: Store, limit: int, offset: int, overall: str | None = None,
) -> tuple[list[dict[str, Any]], int, dict[str, int]]:
    """Newest first, without the full report; the filtered total and counts by overall status."""

    async def op(db: aiosqlite.Connection) -> tuple[list[dict[str, Any]], int, dict[str, int]]:
        counts = {r[0]: int(r[1]) for r in await (await db.execute(
            "SELECT overall, count(*) FROM health_reports GROUP BY overall")).fetchall()}
        where, args = ("overall=?", [overall]) if overall is not None else ("1=1", [])
        total = counts.get(overall, 0) if overall is not None else sum(counts.values())
        cursor = await db.execute(
            f"SELECT {', '.join(REPORT_COLUMNS)} FROM health_reports WHERE {where}"
            " ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?", (*args, limit, offset))
        return [_report_row(r, False) for r in await cursor.fetchall()], total, counts

    return await store.read(op)


# --- maintenance records ----------------------------------------------------------------------


async def record(store: Store, name: str, at: float, duration: float, details: dict[str, Any]) -> None:
    """Remember the last run of `name` (vacuum, optimize, integrity_check)."""

    async def op(db: aiosqlite.Connection) -> None:
        await db.execute(
            "INSERT OR REPLACE INTO store_maintenance (name, at, duration, details) VALUES (?, ?, ?, ?)",
            (name, at, duration, json.dumps(details)))

    await store.write(op)


async def records(store: Store) -> dict[str, dict[str, Any]]:
    async def op(db: aiosqlite.Connection) -> dict[str, dict[str, Any]]:
        cursor = await db.execute("SELECT name, at, duration, details FROM store_maintenance")
        return {r[0]: {"at": r[1], "duration": r[2], "details": json.loads(r[3])} for r in await cursor.fetchall()}

    return await store.read(op)


# --- whole-file operations through the writer -------------------------------------------------


async def optimize(store: Store) -> None:
    """`PRAGMA optimize`: SQLite refreshes the statistics its query planner uses where they are stale."""

    async def op(db: aiosqlite.Connection) -> None:
        await db.execute("PRAGMA optimize")

    await store.write_alone(op)


async def vacuum(store: Store) -> dict[str, Any]:
    """Rewrite the file without its free pages, then checkpoint the WAL that VACUUM filled. A database
    created before incremental vacuum existed is switched to it on the way (the mode can only change
    with a VACUUM)."""

    async def op(db: aiosqlite.Connection) -> dict[str, Any]:
        mode = (await (await db.execute("PRAGMA auto_vacuum")).fetchone() or (0,))[0]
        switched = mode != 2
        if switched:
            await db.execute("PRAGMA auto_vacuum=INCREMENTAL")
        await db.execute("VACUUM")
        row = await (await db.execute("PRAGMA wal_checkpoint(TRUNCATE)")).fetchone() or (0, 0, 0)
        return {"auto_vacuum_switched": switched, "checkpoint_busy": bool(row[0])}

    result: dict[str, Any] = await store.write_alone(op)
    return result


# --- load for the store's stress test: a TEMP table of the writer's connection -----------------


async def stress_write(store: Store, payload: bytes) -> None:
    """One write through the writer's queue and transaction into a table that lives only in the writer
    connection's temp database: the load is real, the database file is not touched."""

    async def op(db: aiosqlite.Connection) -> None:
        await db.execute("CREATE TEMP TABLE IF NOT EXISTS diagnostics_stress (data BLOB)")
        await db.execute("INSERT INTO temp.diagnostics_stress (data) VALUES (?)", (payload,))

    await store.write(op)


async def stress_cleanup(store: Store) -> None:
    async def op(db: aiosqlite.Connection) -> None:
        await db.execute("DROP TABLE IF EXISTS temp.diagnostics_stress")

    await store.write(op)


# --- expired rows, counted for a dry run (the same conditions as the prune functions) ----------


async def expired_counts(
    store: Store, *, results_before: float, transitions_before: float, incidents_before: float,
    alerts_before: float, tasks_before: float,
) -> dict[str, int]:
    """What checks.prune, incidents.prune, alerts.prune and tasks.prune would delete now."""

    async def op(db: aiosqlite.Connection) -> dict[str, int]:
        async def one(query: str, *args: Any) -> int:
            return int((await (await db.execute(query, args)).fetchone() or (0,))[0])

        return {
            "check_results": await one("SELECT count(*) FROM check_results WHERE ts<?", results_before),
            "check_transitions": await one(
                "SELECT count(*) FROM check_transitions WHERE ts<? AND id NOT IN"
                " (SELECT max(id) FROM check_transitions GROUP BY check_name)", transitions_before),
            "incidents": await one(
                "SELECT count(*) FROM incidents WHERE status='resolved' AND resolved_at<?", incidents_before),
            "alerts": await one(
                "SELECT count(*) FROM alerts WHERE resolved_at IS NOT NULL AND resolved_at<?", alerts_before),
            "tasks": await one(
                "SELECT count(*) FROM tasks WHERE completed_at<? AND status IN"
                " ('completed', 'failed', 'cancelled', 'interrupted')", tasks_before),
        }

    return await store.read(op)


# --- the file itself, on a connection of its own (worker threads) ------------------------------


def _connect_ro(path: str) -> sqlite3.Connection:
    uri = "file:" + urllib.parse.quote(os.path.abspath(path)) + "?mode=ro"
    conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout=5000")
    conn.execute("PRAGMA query_only=ON")
    return conn


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def database_info(path: str) -> dict[str, Any]:
    """File, WAL and page figures, and each table's rows and bytes (its own pages and its indexes').

    Bytes come from SQLite's dbstat table where it is compiled in (`bytes_source: dbstat`); without
    it they are the used pages shared out by row count (`estimate`)."""
    conn = _connect_ro(path)
    try:
        def pragma(name: str) -> Any:
            return (conn.execute(f"PRAGMA {name}").fetchone() or (None,))[0]

        conn.execute("BEGIN")  # every figure from one snapshot
        page_size, page_count, freelist = pragma("page_size"), pragma("page_count"), pragma("freelist_count")
        info: dict[str, Any] = {
            "path": os.path.abspath(path),
            "file_bytes": _size(path),
            "wal_bytes": _size(path + "-wal"),
            "shm_bytes": _size(path + "-shm"),
            "page_size": page_size,
            "page_count": page_count,
            "freelist_count": freelist,
            "free_bytes": freelist * page_size,
            "auto_vacuum": {0: "none", 1: "full", 2: "incremental"}.get(pragma("auto_vacuum"), "unknown"),
            "journal_mode": pragma("journal_mode"),
            "schema_version": pragma("user_version"),
            "sqlite_version": sqlite3.sqlite_version,
        }
        objects = conn.execute("SELECT type, name, tbl_name FROM sqlite_master WHERE type IN ('table', 'index')"
                               " ORDER BY name").fetchall()
        try:
            sizes = {name: int(total) for name, total in
                     conn.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name").fetchall()}
            source = "dbstat"
        except sqlite3.OperationalError:  # SQLite built without SQLITE_ENABLE_DBSTAT_VTAB
            sizes, source = {}, "estimate"
        tables = []
        for kind, name, _table in objects:
            if kind != "table" or name.startswith("sqlite_"):
                continue
            rows = int(conn.execute(f"SELECT count(*) FROM {_quote(name)}").fetchone()[0])
            indexes = [n for k, n, t in objects if k == "index" and t == name]
            tables.append({
                "name": name, "rows": rows, "bytes": sizes.get(name),
                "index_bytes": sum(sizes.get(n, 0) for n in indexes) if sizes else None, "indexes": indexes,
            })
        conn.execute("COMMIT")
        if source == "estimate":
            used = (page_count - freelist) * page_size
            total_rows = sum(t["rows"] for t in tables) or 1
            for t in tables:
                t["bytes"] = int(used * t["rows"] / total_rows)
        tables.sort(key=lambda t: (-(t["bytes"] or 0) - (t["index_bytes"] or 0), t["name"]))
        info["bytes_source"] = source
        info["tables"] = tables
        return info
    finally:
        conn.close()


class IntegrityCheck:
    """`PRAGMA integrity_check` (or `quick_check`) on a connection of its own: `run` in a worker thread,
    `interrupt` from anywhere to stop it (the run then raises sqlite3.OperationalError)."""

    def __init__(self, path: str):
        self._conn = _connect_ro(path)
        self._stop = False
        # Checked between VM steps; integrity_check itself also notices sqlite3_interrupt.
        self._conn.set_progress_handler(lambda: 1 if self._stop else 0, 1000)

    def run(self, quick: bool, max_errors: int) -> dict[str, Any]:
        started = time.perf_counter()
        pragma = "quick_check" if quick else "integrity_check"
        foreign: list[dict[str, Any]] = []
        try:
            messages = [str(r[0]) for r in self._conn.execute(f"PRAGMA {pragma}({int(max_errors)})").fetchall()]
            if not quick:
                foreign = [{"table": r[0], "rowid": r[1], "parent": r[2]}
                           for r in self._conn.execute("PRAGMA foreign_key_check").fetchmany(max_errors)]
        except sqlite3.DatabaseError as exc:
            if self._stop:
                raise
            messages = [f"the check itself failed: {exc}"]  # damage bad enough that SQLite gives up reading
        finally:
            self._conn.close()
        problems = [] if messages == ["ok"] else messages
        return {"ok": not problems and not foreign, "mode": pragma, "errors": problems,
                "foreign_key_errors": foreign, "duration_seconds": round(time.perf_counter() - started, 3)}

    def interrupt(self) -> None:
        self._stop = True
        with contextlib.suppress(sqlite3.ProgrammingError):  # already finished and closed
            self._conn.interrupt()
