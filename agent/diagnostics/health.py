"""Health of Vigil's own components as named checks (`GET /api/v1/components/health`): each check passes,
warns or fails on a measurement, and says which.

Reading it is cheap and changes nothing: the only probes are a trivial read, an empty write transaction
(the writer's round trip, no fsync: nothing changes) and a 10 ms sleep measuring the event loop's lag.
Everything else comes from figures the components keep anyway. A component is `healthy` when all its
checks pass, `degraded` with a warning, `unhealthy` with a failure; the overall status is the worst.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiosqlite

from agent.api.formats import iso
from agent.components import metric_sum

if TYPE_CHECKING:
    from agent.api.services import Services

STATUS_OF = {"pass": "healthy", "warn": "degraded", "fail": "unhealthy"}
ORDER = {"pass": 0, "warn": 1, "fail": 2}
WRITE_TIMEOUT = 2.0
LAG_PROBE = 0.01
MiB = 1024 * 1024


@dataclass
class Check:
    name: str
    status: str  # pass, warn, fail
    message: str | None = None
    measurements: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "message": self.message, "measurements": self.measurements}


def grade(value: float | None, warn: float, fail: float) -> str:
    """pass below `warn`, warn from it, fail from `fail` (None: nothing measured, pass)."""
    if value is None:
        return "pass"
    return "fail" if value >= fail else "warn" if value >= warn else "pass"


def worst(statuses: list[str]) -> str:
    return max(statuses, key=ORDER.__getitem__, default="pass")


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


async def _noop(db: aiosqlite.Connection) -> None:
    return None


async def write_round_trip(svc: Services, limit: float = WRITE_TIMEOUT) -> float:
    """Seconds for an empty write to pass the writer's queue and transaction (TimeoutError past `limit`)."""
    started = time.perf_counter()
    await asyncio.wait_for(svc.store.write(_noop), limit)
    return time.perf_counter() - started


async def loop_lag(probe: float = LAG_PROBE) -> float:
    """How much later than asked a short sleep wakes: what every request waits on top of its work."""
    started = time.perf_counter()
    await asyncio.sleep(probe)
    return max(time.perf_counter() - started - probe, 0.0)


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


# --- per component ----------------------------------------------------------------------------


async def store_checks(svc: Services) -> list[Check]:
    store = svc.store
    out = []
    try:
        ping = await store.ping()
        out.append(Check("connectivity", grade(ping, 0.1, 1.0), None, {"response_time_ms": _ms(ping)}))
    except Exception as exc:
        out.append(Check("connectivity", "fail", f"a trivial read failed: {exc}"))
    errors = int(metric_sum(svc.metrics.store_errors, "_total"))
    try:
        rtt = await write_round_trip(svc)
        out.append(Check("write_latency", grade(rtt, 0.25, WRITE_TIMEOUT), None, {
            "round_trip_ms": _ms(rtt), "last_commit_ms": _ms(store.last_commit_seconds),
            "write_errors_since_start": errors}))
    except TimeoutError:
        out.append(Check("write_latency", "fail", f"an empty write did not commit within {WRITE_TIMEOUT:g}s "
                         "(the writer is busy or stuck)", {"write_errors_since_start": errors}))
    except Exception as exc:
        out.append(Check("write_latency", "fail", f"an empty write failed: {exc}",
                         {"write_errors_since_start": errors}))
    queue = int(metric_sum(svc.metrics.store_queue, ""))
    out.append(Check("write_queue", grade(queue, 1000, 10_000), None, {"length": queue}))
    wal = await asyncio.to_thread(_size, store.path + "-wal")
    out.append(Check("wal_size", grade(wal, 64 * MiB, 1024 * MiB),
                     "the WAL is not being checkpointed (a long read holds it?)" if wal >= 64 * MiB else None,
                     {"bytes": wal, "db_bytes": await asyncio.to_thread(_size, store.path)}))
    usage = await asyncio.to_thread(shutil.disk_usage, os.path.dirname(os.path.abspath(store.path)))
    free_pct = usage.free / usage.total * 100 if usage.total else 0.0
    status = "fail" if free_pct < 3 or usage.free < 50 * MiB else "warn" if free_pct < 10 else "pass"
    out.append(Check("disk_space", status, None if status == "pass" else
                     f"{usage.free // MiB} MiB free ({free_pct:.1f}%) where the database lives",
                     {"free_bytes": usage.free, "total_bytes": usage.total, "free_percent": round(free_pct, 2)}))
    return out


async def scheduler_checks(svc: Services) -> list[Check]:
    sched = svc.scheduler
    age = time.monotonic() - sched.last_heartbeat if sched.last_heartbeat else None
    beat = Check("heartbeat", "pass" if sched.healthy() else "fail",
                 None if sched.healthy() else "its heartbeat job is not running: scheduled jobs are not running",
                 {"running": sched.running, "last_heartbeat_seconds_ago": None if age is None else round(age, 3),
                  "interval_seconds": sched.HEARTBEAT_SECONDS})
    delay = sched.heartbeat_delay
    late_sum = metric_sum(svc.metrics.job_lateness, "_sum")
    late_count = metric_sum(svc.metrics.job_lateness, "_count")
    lag = Check("job_lag", grade(delay, 1.0, 5.0), None, {
        "heartbeat_delay_ms": _ms(delay),
        "average_lateness_ms": _ms(late_sum / late_count) if late_count else None,
    })
    jobs = Check("jobs", "pass", None, {
        "jobs": len(sched.job_ids()), "runs": int(metric_sum(svc.metrics.job_runs, "_total")),
        "errors": int(metric_sum(svc.metrics.job_runs, "_total", outcome="error")),
        "missed_runs": int(metric_sum(svc.metrics.job_misses, "_total")),
    })
    return [beat, lag, jobs]


async def collectors_checks(svc: Services) -> list[Check]:
    runner = svc.collectors
    latest = dict(runner.latest)
    failing = runner.failing()
    status = "pass" if not failing else "fail" if len(failing) == len(latest) else "warn"
    failures = Check("failures", status, None if not failing else f"{len(failing)} of {len(latest)} failing",
                     {"collectors": len(latest), "failing": {n: latest[n].error for n in failing if n in latest}})
    config = svc.config.config.collectors
    slow = {n: r.duration for n, r in latest.items() if n in config.model_fields and
            r.duration >= 0.8 * config.timeout_of(n)}
    durations = [r.duration for r in latest.values()]
    duration = Check("duration", "warn" if slow else "pass",
                     f"near their timeout: {', '.join(sorted(slow))}" if slow else None,
                     {"slowest_ms": _ms(max(durations)) if durations else None,
                      "near_timeout": {n: _ms(d) for n, d in slow.items()}})
    return [failures, duration]


async def checks_checks(svc: Services) -> list[Check]:
    errors = list(svc.checks.errors)
    recent = [e for e in errors if e["at"] > time.time() - 3600]
    return [Check("runner", "warn" if recent else "pass",
                  f"{len(recent)} internal error(s) in the last hour, last: {recent[-1]['error']}" if recent else None,
                  {"checks": len(svc.checks.entries), "internal_errors_last_hour": len(recent)})]


async def history_checks(svc: Services) -> list[Check]:
    stats = svc.tsdb.stats()
    limit = svc.config.config.history.max_series
    used = stats["series"] / limit if limit else 0.0
    series = Check("series", grade(used, 0.9, 1.0),
                   f"{stats['series']} of history.max_series {limit}" if used >= 0.9 else None,
                   {"series": stats["series"], "max_series": limit, "head_series": stats["head_series"]})
    flush_seconds = stats["last_flush_seconds"]
    flush = Check("flush", grade(flush_seconds, 5.0, 30.0), None, {
        "pending_samples": stats["pending_samples"], "last_flush_ms": _ms(flush_seconds),
        "flushes": stats["flushes_total"]})
    dropped = stats["samples_too_many_series_total"]
    drops = Check("dropped_samples", "warn" if dropped else "pass",
                  f"{dropped} samples dropped since start: history.max_series reached" if dropped else None,
                  {"too_many_series": dropped, "out_of_bounds": stats["samples_out_of_bounds_total"]})
    return [series, flush, drops]


async def notifications_checks(svc: Services) -> list[Check]:
    if svc.notifier is None:
        return [Check("queue", "pass", "notifications are not running", {})]
    lengths = svc.notifier.outbox.queue_lengths()
    total = sum(lengths.values())
    return [Check("queue", grade(total, 1000, 10_000),
                  f"{total} messages waiting for delivery" if total >= 1000 else None,
                  {"length": total, "by_receiver": lengths})]


async def events_checks(svc: Services) -> list[Check]:
    return [Check("subscribers", "pass", None, {
        "subscribers": svc.bus.subscriber_count, "dropped_since_start": int(metric_sum(svc.metrics.events_dropped,
                                                                                      "_total"))})]


async def config_checks(svc: Services) -> list[Check]:
    manager = svc.config
    reload = manager.last_reload
    ok = reload is None or reload.ok
    first = str(reload.errors[0]) if reload is not None and reload.errors else None
    last = Check("last_reload", "pass" if ok else "warn",
                 None if ok else f"the last reload ({reload.source if reload else '?'}) was rejected: {first}",
                 {"version": manager.version_id, "loaded_at": iso(manager.loaded_at),
                  "last_reload_at": iso(reload.at) if reload else None,
                  "last_reload_ok": None if reload is None else reload.ok})
    pending = list(manager.pending_restart)
    restart = Check("pending_restart", "warn" if pending else "pass",
                    f"settings waiting for a restart: {', '.join(map(str, pending))}" if pending else None,
                    {"settings": pending})
    return [last, restart]


async def units_checks(svc: Services) -> list[Check]:
    names = svc.units.names()
    if not names:
        return [Check("status", "pass", None, {"units": 0})]
    try:
        rows = await asyncio.wait_for(svc.units.statuses(), 5.0)
    except TimeoutError:
        return [Check("status", "warn", "unit status did not answer within 5s", {"units": len(names)})]
    failed = [r["name"] for r in rows if r["status"] == "failed"]
    return [Check("status", "warn" if failed else "pass", f"failed: {', '.join(failed)}" if failed else None,
                  {"units": len(rows), "running": sum(1 for r in rows if r["status"] == "running"), "failed": failed})]


async def api_checks(svc: Services) -> list[Check]:
    lag = await loop_lag()
    loop = Check("event_loop_lag", grade(lag, 0.1, 1.0), None, {"lag_ms": _ms(lag)})
    total = metric_sum(svc.metrics.http_requests, "_total")
    server_errors = sum(s.value for f in svc.metrics.http_requests.collect() for s in f.samples
                        if s.name.endswith("_total") and s.labels.get("code", "").startswith("5"))
    ratio = server_errors / total if total else 0.0
    errors = Check("server_errors", "warn" if total >= 100 and ratio > 0.01 else "pass", None, {
        "requests": int(total), "server_errors": int(server_errors), "ratio": round(ratio, 4),
        "auth_failures": int(metric_sum(svc.metrics.auth_failures, "_total")),
        "rate_limited": int(metric_sum(svc.metrics.rate_limited, "_total"))})
    ready = svc.is_ready() and not svc.stopping.is_set()
    listening = Check("listening", "pass" if ready else "fail", None if ready else "starting or stopping",
                      {"listen": svc.config.running.config.listen})
    return [listening, loop, errors]


async def tasks_checks(svc: Services) -> list[Check]:
    runner = svc.tasks
    return [Check("runner", "pass", None, {"running": runner.running_count,
                                           "max_concurrent": runner.config.max_concurrent})]


COMPONENTS: dict[str, Callable[[Services], Awaitable[list[Check]]]] = {
    "store": store_checks, "scheduler": scheduler_checks, "collectors": collectors_checks, "checks": checks_checks,
    "history": history_checks, "notifications": notifications_checks, "events": events_checks,
    "config": config_checks, "units": units_checks, "api": api_checks, "tasks": tasks_checks,
}


async def component(svc: Services, name: str) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        checks = await COMPONENTS[name](svc)
    except Exception as exc:  # a figure that cannot be read is itself the news
        checks = [Check("readable", "fail", f"its figures cannot be read: {type(exc).__name__}: {exc}")]
    status = worst([c.status for c in checks])
    return {"name": name, "status": STATUS_OF[status], "checks": [c.as_dict() for c in checks],
            "duration_ms": _ms(time.perf_counter() - started)}


async def components_health(svc: Services) -> dict[str, Any]:
    started = time.perf_counter()
    parts = list(await asyncio.gather(*(component(svc, name) for name in COMPONENTS)))
    counts = {s: sum(1 for p in parts for c in p["checks"] if c["status"] == s) for s in ORDER}
    overall = worst([next(k for k, v in STATUS_OF.items() if v == p["status"]) for p in parts])
    return {"overall_status": STATUS_OF[overall], "checked_at": iso(time.time()), "components": parts,
            "summary": counts, "duration_ms": _ms(time.perf_counter() - started)}
