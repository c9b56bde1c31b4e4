"""The database as `GET /api/v1/store` shows it, and the integrity check task
(`POST /api/v1/store/integrity_check`).

Both read the whole file, so both run on a read-only connection of their own in a worker thread:
the event loop and the store's shared reader stay free. The check can be cancelled mid-way
(SQLite is interrupted); its outcome is recorded and shown as `last_integrity_check`.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import TYPE_CHECKING, Any

import structlog

from agent.api.formats import iso
from agent.store import diagnostics as diag_rows
from agent.tasks import TaskContext

if TYPE_CHECKING:
    from agent.api.services import Services

log = structlog.get_logger("vigil.store")
CHECK_BYTES_PER_SECOND = 200 * 1024 * 1024  # a rough rate for the task's first estimate
INTERRUPT_GRACE = 5.0


def _last(record: dict[str, Any] | None) -> dict[str, Any] | None:
    if record is None:
        return None
    return {"at": iso(record["at"]), "duration_seconds": round(record["duration"], 3), **record["details"]}


async def store_info(svc: Services) -> dict[str, Any]:
    info = await asyncio.to_thread(diag_rows.database_info, svc.store.path)
    done = await diag_rows.records(svc.store)
    tables = info["tables"]
    info["totals"] = {"tables": len(tables), "rows": sum(t["rows"] for t in tables),
                      "bytes": sum((t["bytes"] or 0) + (t["index_bytes"] or 0) for t in tables)}
    info["last_vacuum"] = _last(done.get("vacuum"))
    info["last_optimize"] = _last(done.get("optimize"))
    info["last_integrity_check"] = _last(done.get("integrity_check"))
    info["write_queue_length"] = int(sum(s.value for f in svc.metrics.store_queue.collect() for s in f.samples))
    info["measured_at"] = iso(time.time())
    return info


def estimated_seconds(svc: Services) -> float:
    try:
        size = os.path.getsize(svc.store.path)
    except OSError:
        size = 0
    return max(1.0, size / CHECK_BYTES_PER_SECOND)


async def check_integrity(path: str, quick: bool, max_errors: int) -> dict[str, Any]:
    """The check in a worker thread; cancelling the caller interrupts SQLite (a thread cannot be cancelled)."""
    check = diag_rows.IntegrityCheck(path)
    running = asyncio.ensure_future(asyncio.to_thread(check.run, quick, max_errors))
    try:
        return await asyncio.shield(running)
    except asyncio.CancelledError:
        check.interrupt()
        await asyncio.wait({running}, timeout=INTERRUPT_GRACE)
        if running.done() and not running.cancelled():
            running.exception()  # the interrupted run's error is expected: retrieve it
        raise


async def run_integrity_check(svc: Services, ctx: TaskContext, quick: bool, max_errors: int) -> dict[str, Any]:
    started = time.time()
    async with ctx.step("integrity_check"):
        ctx.log(f"PRAGMA {'quick_check' if quick else 'integrity_check'} on {svc.store.path}")
        result = await check_integrity(svc.store.path, quick, max_errors)
    await diag_rows.record(svc.store, "integrity_check", time.time(), time.time() - started,
                           {**result, "task_id": ctx.task_id})
    if result["ok"]:
        log.info("store_integrity_ok", mode=result["mode"], duration_seconds=result["duration_seconds"])
    else:
        log.error("store_integrity_problems", mode=result["mode"], errors=result["errors"][:5],
                  foreign_key_errors=len(result["foreign_key_errors"]))
    ctx.log("ok" if result["ok"] else f"{len(result['errors'])} problem(s), "
                                      f"{len(result['foreign_key_errors'])} foreign key error(s)")
    return result
