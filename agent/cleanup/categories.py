"""The cleanup task (`POST /api/v1/maintenance/cleanup`): one step per category, each reporting the
items it cleared and the bytes that freed, or in a dry run what it would clear.

- `temp_files`: regular files older than the cut-off inside `cleanup.temp_dirs` (agent/cleanup/tempfiles.py).
- `history`, `check_results`, `alerts`, `tasks`, `logs`: what is past its configured retention, by the same
  prune functions the scheduled jobs call; the request cannot shorten a retention.
- `database`: `PRAGMA optimize`, then VACUUM through the store's writer (writes wait meanwhile; the event loop
  does not), recorded as the last vacuum for `GET /api/v1/store`.

The audit log is never pruned here. A category that fails is reported with its error and the others still
run; a cancel stops between categories, or between files of a temp directory.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from agent.cleanup.tempfiles import Cancelled, FileId, clean_dir, file_id
from agent.store import alerts as alert_rows
from agent.store import checks as check_rows
from agent.store import diagnostics as diag_rows
from agent.store import incidents as incident_rows
from agent.store import logbook as log_rows
from agent.tasks import TaskCancelled, TaskContext

if TYPE_CHECKING:
    from agent.api.services import Services

log = structlog.get_logger("vigil.cleanup")

CATEGORIES = ("temp_files", "history", "check_results", "alerts", "tasks", "logs", "database")
DAY = 86400.0
VACUUM_SPACE_FACTOR = 1.1  # VACUUM writes a full copy first: refuse without that much free space


@dataclass(frozen=True)
class CleanupRequest:
    categories: tuple[str, ...]
    older_than_days: float | None  # temp files only; None: cleanup.temp_max_age
    dry_run: bool


def _outcome(items: int | None, bytes_: int | None, **details: Any) -> dict[str, Any]:
    return {"status": "completed", "items": items, "bytes": bytes_, "details": details}


def _skipped(message: str) -> dict[str, Any]:
    return {"status": "skipped", "items": 0, "bytes": 0, "details": {}, "message": message}


async def run_cleanup(svc: Services, ctx: TaskContext, request: CleanupRequest) -> dict[str, Any]:
    """The task's work; its result is the report."""
    started = time.time()
    report: dict[str, dict[str, Any]] = {}
    for i, category in enumerate(request.categories):
        await ctx.checkpoint()
        try:
            async with ctx.step(category):
                outcome = await _HANDLERS[category](svc, ctx, request)
        except (TaskCancelled, asyncio.CancelledError):
            raise
        except Exception as exc:
            log.warning("cleanup_category_failed", category=category, error=f"{type(exc).__name__}: {exc}")
            outcome = {"status": "failed", "items": None, "bytes": None, "details": {},
                       "error": f"{type(exc).__name__}: {exc}"}
        report[category] = outcome
        ctx.log(f"{category}: {outcome['status']}, {outcome['items']} items, {outcome['bytes']} bytes"
                + (" (dry run)" if request.dry_run else ""))
        await ctx.progress((i + 1) / len(request.categories), f"{category} done")
    totals = {"items": sum(c["items"] or 0 for c in report.values()),
              "bytes": sum(c["bytes"] or 0 for c in report.values())}
    failed = [name for name, c in report.items() if c["status"] == "failed"]
    log.info("cleanup_finished", dry_run=request.dry_run, items=totals["items"], bytes=totals["bytes"],
             failed=failed)
    return {"dry_run": request.dry_run, "categories": report, "totals": totals, "failed": failed,
            "duration_seconds": round(time.time() - started, 3)}


# --- temp files -------------------------------------------------------------------------------


def _protected(svc: Services) -> tuple[set[FileId], set[FileId]]:
    """Vigil's own directories and database files: skipped even inside a configured temp dir."""
    state_dir = svc.config.running.config.state_dir  # restart-only: the one in use, not a pending edit
    dirs = {fid for fid in (file_id(state_dir), file_id(os.path.dirname(os.path.abspath(svc.config.path))))
            if fid is not None}
    files = {fid for fid in (file_id(p) for p in (svc.store.path, svc.store.path + "-wal", svc.store.path + "-shm"))
             if fid is not None}
    return dirs, files


async def _temp_files(svc: Services, ctx: TaskContext, request: CleanupRequest) -> dict[str, Any]:
    config = svc.config.config.cleanup
    if not config.temp_dirs:
        return _skipped("no directories configured (cleanup.temp_dirs)")
    max_age = request.older_than_days * DAY if request.older_than_days is not None else config.temp_max_age
    cutoff = time.time() - max_age
    protected_dirs, protected_files = await asyncio.to_thread(_protected, svc)
    results = []
    for i, directory in enumerate(config.temp_dirs):
        await ctx.checkpoint()
        try:
            found = await ctx.in_thread(
                clean_dir, directory, cutoff, dry_run=request.dry_run, protected_dirs=protected_dirs,
                protected_files=protected_files, cancelled=lambda: ctx.cancelled)
        except Cancelled as exc:
            ctx.log(f"cancelled in {directory}: {exc.partial.files} files, {exc.partial.bytes} bytes so far")
            raise TaskCancelled(str(exc)) from None
        results.append(found.as_dict())
        ctx.log(f"{directory}: {found.files} files, {found.bytes} bytes" + (f", {found.error_count} errors"
                                                                           if found.error_count else ""))
        await ctx.progress(ctx_fraction(request, "temp_files", (i + 1) / len(config.temp_dirs)))
    return _outcome(sum(r["files"] for r in results), sum(r["bytes"] for r in results),
                    older_than_seconds=max_age, directories=results)


def ctx_fraction(request: CleanupRequest, category: str, within: float) -> float:
    """Overall progress while `category` is `within` (0..1) done."""
    index = request.categories.index(category)
    return (index + within) / len(request.categories)


# --- retention --------------------------------------------------------------------------------


async def _history(svc: Services, ctx: TaskContext, request: CleanupRequest) -> dict[str, Any]:
    retention = svc.config.config.history.retention
    horizons = {"raw": retention.raw, "1m": retention.minute, "1h": retention.hour}
    before = svc.tsdb.stats()
    if request.dry_run:
        now_ms = time.time() * 1000
        past = [tier for tier, oldest in before["oldest_ms"].items()
                if oldest is not None and oldest < now_ms - horizons[tier] * 1000]
        return _outcome(None, None, retention_seconds=horizons, tiers_past_retention=past,
                        note="a dry run does not count chunks; these tiers hold data past their retention")
    await svc.tsdb.maintain()  # compaction and rollups first, as the scheduled job does, then retention
    pages = await svc.store.reclaim()
    after = svc.tsdb.stats()
    chunks = {t: before["chunks"][t] - after["chunks"][t] for t in before["chunks"]}
    freed = {t: before["chunk_bytes"][t] - after["chunk_bytes"][t] for t in before["chunk_bytes"]}
    return _outcome(
        sum(max(n, 0) for n in chunks.values()), sum(max(n, 0) for n in freed.values()),
        retention_seconds=horizons, chunks_removed_by_tier=chunks, bytes_freed_by_tier=freed,
        series_removed=after["series_removed_total"] - before["series_removed_total"],
        pages_returned_to_filesystem=pages,
        note="net change per tier: compaction and rollups in the same run add chunks",
    )


async def _check_results(svc: Services, ctx: TaskContext, request: CleanupRequest) -> dict[str, Any]:
    config = svc.config.config.check_runner
    now = time.time()
    results_before, states_before = now - config.result_retention, now - config.state_retention
    if request.dry_run:
        counts = await diag_rows.expired_counts(
            svc.store, results_before=results_before, transitions_before=states_before,
            incidents_before=states_before, alerts_before=now, tasks_before=0.0)
        results, transitions, incidents = counts["check_results"], counts["check_transitions"], counts["incidents"]
    else:
        results, transitions = await check_rows.prune(svc.store, results_before, states_before)
        incidents = await incident_rows.prune(svc.store, states_before)
    return _outcome(results + transitions + incidents, None, results=results, state_changes=transitions,
                    resolved_incidents=incidents, result_retention_seconds=config.result_retention,
                    state_retention_seconds=config.state_retention)


async def _alerts(svc: Services, ctx: TaskContext, request: CleanupRequest) -> dict[str, Any]:
    retention = svc.config.config.alerting.retention
    now = time.time()
    if request.dry_run:
        counts = await diag_rows.expired_counts(
            svc.store, results_before=0.0, transitions_before=0.0, incidents_before=0.0,
            alerts_before=now - retention, tasks_before=0.0)
        return _outcome(counts["alerts"], None, resolved_alerts=counts["alerts"], expired_silences=None,
                        retention_seconds=retention)
    alerts = await alert_rows.prune(svc.store, now - retention)
    silences = await svc.silences.prune()
    return _outcome(alerts + silences, None, resolved_alerts=alerts, expired_silences=silences,
                    retention_seconds=retention)


async def _tasks(svc: Services, ctx: TaskContext, request: CleanupRequest) -> dict[str, Any]:
    retention = svc.config.config.tasks.retention
    if request.dry_run:
        counts = await diag_rows.expired_counts(
            svc.store, results_before=0.0, transitions_before=0.0, incidents_before=0.0, alerts_before=0.0,
            tasks_before=time.time() - retention)
        removed = counts["tasks"]
    else:
        removed = await svc.tasks.prune()
    return _outcome(removed, None, finished_tasks=removed, retention_seconds=retention)


async def _logs(svc: Services, ctx: TaskContext, request: CleanupRequest) -> dict[str, Any]:
    book = svc.logbook
    retention = svc.config.config.log.store.retention
    if book is None:
        return _skipped("Vigil's log events are not stored")
    if request.dry_run:
        counts = await log_rows.level_counts(svc.store, log_rows.LogFilter(until=time.time() - retention))
        removed = sum(counts.values())
    else:
        removed = await book.prune()
    return _outcome(removed, None, log_events=removed, retention_seconds=retention)


# --- the database file ------------------------------------------------------------------------


def _file_bytes(path: str) -> int:
    return sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p))


async def _database(svc: Services, ctx: TaskContext, request: CleanupRequest) -> dict[str, Any]:
    path = svc.store.path
    info = await asyncio.to_thread(diag_rows.database_info, path)
    size = info["file_bytes"] + info["wal_bytes"]
    if request.dry_run:
        return _outcome(info["freelist_count"], info["free_bytes"], file_bytes=size,
                        note="VACUUM would return the free pages; it also defragments the rest")
    started = time.time()
    await diag_rows.optimize(svc.store)
    optimized = time.time()
    await diag_rows.record(svc.store, "optimize", optimized, optimized - started, {})
    ctx.log("PRAGMA optimize done")
    await ctx.checkpoint()
    free = (await asyncio.to_thread(shutil.disk_usage, os.path.dirname(os.path.abspath(path)))).free
    if free < size * VACUUM_SPACE_FACTOR:
        return {**_outcome(0, 0, file_bytes=size, disk_free_bytes=free, optimized=True, vacuumed=False),
                "message": f"VACUUM skipped: it needs about {int(size * VACUUM_SPACE_FACTOR)} bytes free for its "
                           f"copy of the database, {free} are"}
    ctx.log(f"VACUUM of {size} bytes started (writes wait until it is done)")
    vacuum_started = time.time()
    outcome = await diag_rows.vacuum(svc.store)
    duration = time.time() - vacuum_started
    after = await asyncio.to_thread(_file_bytes, path)
    details = {"bytes_before": size, "bytes_after": after, "pages_freed": info["freelist_count"], **outcome}
    await diag_rows.record(svc.store, "vacuum", time.time(), duration, details)
    log.info("store_vacuumed", bytes_before=size, bytes_after=after, duration_seconds=round(duration, 3))
    return _outcome(info["freelist_count"], max(size - after, 0), optimized=True, vacuumed=True,
                    vacuum_seconds=round(duration, 3), **details)


_HANDLERS: dict[str, Callable[[Services, TaskContext, CleanupRequest], Awaitable[dict[str, Any]]]] = {
    "temp_files": _temp_files, "history": _history, "check_results": _check_results, "alerts": _alerts,
    "tasks": _tasks, "logs": _logs, "database": _database,
}
