"""Vigil's own components as the admin API shows them (`/api/v1/services`): what runs, whether it
is well, its few telling counters, its config, its recent errors, and a restart in place.

The registry is built from the daemon's Services object and reads the components' public figures;
it never owns them. Restarting is per component and means what the component can do safely
without stopping the process (see each `_restart_*`); for the API, the event bus and the config
manager a restart in place means nothing or would cut the request asking for it, so they say so
and point at `systemctl restart vigil`.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog
from prometheus_client.metrics import MetricWrapperBase

from agent import __version__, logs
from agent.api.formats import iso
from agent.collectors.base import REGISTRY

if TYPE_CHECKING:
    from agent.api.services import Services

STATUSES = ("running", "stopped", "degraded")
HEALTH = ("healthy", "degraded", "unhealthy")
ERROR_WINDOW = 300.0  # error-level log events this recent (and since the last restart) degrade health
STORE_QUEUE_DEGRADED = 1000
UNITS_STATUS_TIMEOUT = 5.0
RESTART_HINT = "use `systemctl restart vigil` to restart the whole daemon"


@dataclass(frozen=True)
class State:
    status: str  # running, stopped, degraded
    health: str  # healthy, degraded, unhealthy
    reason: str | None  # why, when not healthy
    metrics: dict[str, Any]


@dataclass
class Component:
    name: str
    type: str  # the class doing the work
    logger: str  # its structlog name: a failed restart is filed with its other errors
    dependencies: tuple[str, ...]
    state: Callable[[], Awaitable[State]]
    config_section: Callable[[dict[str, Any]], Any]  # masked effective config -> this component's part
    restart: Callable[[], Awaitable[str]] | None  # returns what it did; None: not restartable in place
    not_restartable: str | None = None  # why, when `restart` is None
    started_at: Callable[[], float | None] | None = None  # its own clock, when it keeps one


class UnknownComponent(KeyError):
    """No component of that name; `names` lists the known ones."""

    def __init__(self, name: str, names: list[str]):
        super().__init__(name)
        self.name = name
        self.names = names


class NotRestartable(Exception):
    """A restart in place is refused; the message says why and what to do instead."""


class Components:
    def __init__(self, items: Iterable[Component], started_at: float):
        self._items = {c.name: c for c in items}
        self._started = dict.fromkeys(self._items, started_at)
        self._locks = {name: asyncio.Lock() for name in self._items}

    def names(self) -> list[str]:
        return list(self._items)

    def get(self, name: str) -> Component:
        component = self._items.get(name)
        if component is None:
            raise UnknownComponent(name, self.names())
        return component

    def dependents(self, name: str) -> list[str]:
        return [c.name for c in self._items.values() if name in c.dependencies]

    def started_at(self, name: str) -> float:
        own = self._items[name].started_at
        value = own() if own is not None else None
        return value if value is not None else self._started[name]

    async def describe_all(self) -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(self.describe(name) for name in self._items)))

    async def describe(self, name: str, config: dict[str, Any] | None = None) -> dict[str, Any]:
        """The list entry; with `config` (the masked effective config) also the detail's extras."""
        component = self.get(name)
        try:
            state = await component.state()
        except Exception as exc:  # a figure that cannot be read is itself the news
            state = State("degraded", "unhealthy", f"cannot read its state: {type(exc).__name__}: {exc}", {})
        started = self.started_at(name)
        now = time.time()
        health, reason = state.health, state.reason
        if health == "healthy":
            errors = [e for e in logs.recent_errors(name, max(started, now - ERROR_WINDOW)) if e["level"] == "error"]
            if errors:
                count = sum(e["count"] for e in errors)
                last = errors[0]
                health = "degraded"
                reason = f"{count} error(s) in the last {ERROR_WINDOW / 60:g} min, last: {last['event']}" + (
                    f": {last['error']}" if last["error"] else "")
        view: dict[str, Any] = {
            "name": name,
            "type": component.type,
            "status": state.status,
            "health": health,
            "health_reason": reason,
            "version": __version__,
            "uptime": round(now - started, 3),
            "started_at": iso(started),
            "dependencies": list(component.dependencies),
            "restartable": component.restart is not None,
            "metrics": state.metrics,
        }
        if config is not None:
            view["config"] = component.config_section(config)
            view["dependents"] = self.dependents(name)
            view["recent_errors"] = [_error_view(e) for e in logs.recent_errors(name)]
        return view

    async def restart(self, name: str) -> dict[str, Any]:
        """Restart one component in place; the answer has the seed's shape. Raises UnknownComponent,
        NotRestartable (also while a restart of it is already running)."""
        component = self.get(name)
        if component.restart is None:
            raise NotRestartable(component.not_restartable or f"{name} cannot be restarted in place; {RESTART_HINT}")
        lock = self._locks[name]
        if lock.locked():
            raise NotRestartable(f"a restart of {name} is already in progress")
        async with lock:
            started = time.perf_counter()
            log = structlog.get_logger(component.logger)
            try:
                # Shielded: a client hanging up must not leave a component half restarted.
                message = await asyncio.shield(component.restart())
            except Exception as exc:
                duration_ms = round((time.perf_counter() - started) * 1000, 1)
                message = f"restart failed: {type(exc).__name__}: {exc}"
                log.error("service_restart_failed", service=name, error=f"{type(exc).__name__}: {exc}",
                          duration_ms=duration_ms)
                return {"service": name, "action": "restart", "status": "failed", "duration_ms": duration_ms,
                        "message": message}
            duration_ms = round((time.perf_counter() - started) * 1000, 1)
            self._started[name] = time.time()
            log.info("service_restarted", service=name, duration_ms=duration_ms, message=message)
            return {"service": name, "action": "restart", "status": "completed", "duration_ms": duration_ms,
                    "message": message}


def _error_view(entry: dict[str, Any]) -> dict[str, Any]:
    return {
        "timestamp": iso(entry["at"]),
        "first_seen": iso(entry["first_at"]),
        "level": entry["level"],
        "event": entry["event"],
        "error": entry["error"],
        "count": entry["count"],
        "context": entry["context"],
    }


def metric_sum(metric: MetricWrapperBase, suffix: str, **labels: str) -> float:
    """Sum of a metric's samples named `<name><suffix>` whose labels match (a counter's `_total`,
    a histogram's `_count`), over every label set."""
    total = 0.0
    for family in metric.collect():
        for sample in family.samples:
            if sample.name.endswith(suffix) and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def _file_bytes(path: str) -> int:
    return sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p))


def _pick(config: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: config.get(k) for k in keys}


def build(svc: Services) -> Components:
    """The registry over a daemon's Services (the API builds it once, on first use)."""
    return Components([
        Component("store", type(svc.store).__name__, "vigil.store", (), lambda: _store_state(svc),
                  lambda c: {**_pick(c, "store", "state_dir"), "path": svc.store.path},
                  lambda: _restart_store(svc)),
        Component("scheduler", type(svc.scheduler).__name__, "vigil.scheduler", (), lambda: _scheduler_state(svc),
                  lambda c: {"heartbeat_seconds": svc.scheduler.HEARTBEAT_SECONDS, "max_instances": 1,
                             "coalesce": True, "misfire_grace_time": 30},
                  lambda: _restart_scheduler(svc), started_at=lambda: svc.scheduler.started_at),
        Component("collectors", type(svc.collectors).__name__, "vigil.collectors", ("scheduler", "events"),
                  lambda: _collectors_state(svc), lambda c: c.get("collectors"), lambda: _restart_collectors(svc)),
        Component("checks", type(svc.checks).__name__, "vigil.checks", ("store", "scheduler", "events"),
                  lambda: _checks_state(svc),
                  lambda c: {"check_runner": c.get("check_runner"), "checks": len(c.get("checks") or [])},
                  lambda: _restart_checks(svc), started_at=lambda: svc.checks.started_at),
        Component("history", type(svc.tsdb).__name__, "vigil.history", ("store", "scheduler", "collectors"),
                  lambda: _history_state(svc), lambda c: c.get("history"), lambda: _restart_history(svc)),
        Component("events", type(svc.bus).__name__, "vigil.events", (), lambda: _events_state(svc),
                  lambda c: {}, None,
                  "the event bus cannot be restarted in place: it keeps no state beyond its subscribers, the "
                  f"open event streams, and a restart could only cut them; {RESTART_HINT}"),
        Component("config", type(svc.config).__name__, "vigil.config", ("store", "events"),
                  lambda: _config_state(svc),
                  lambda c: {"path": svc.config.path, **_pick(c, "include", "reload")}, None,
                  "the config manager cannot be restarted in place: to apply edited files, reload "
                  f"(`systemctl reload vigil`, SIGHUP); {RESTART_HINT}"),
        Component("units", type(svc.units).__name__, "vigil.units", (), lambda: _units_state(svc),
                  lambda c: {"units": c.get("units"), "systemctl": (c.get("check_runner") or {}).get("systemctl")},
                  lambda: _restart_units(svc)),
        Component("api", "AppRunner", "vigil.api", ("store", "config", "events"), lambda: _api_state(svc),
                  lambda c: _pick(c, "listen", "api", "tls_server_config", "metrics"), None,
                  "the API cannot be restarted in place: it would cut the very request asking for it; "
                  + RESTART_HINT),
    ], svc.started_at)


# --- state ------------------------------------------------------------------------------------


async def _store_state(svc: Services) -> State:
    store = svc.store
    queue = int(metric_sum(svc.metrics.store_queue, ""))
    metrics: dict[str, Any] = {
        "write_queue_length": queue,
        "commits": int(metric_sum(svc.metrics.store_batch, "_count")),
        "write_errors": int(metric_sum(svc.metrics.store_errors, "_total")),
        "last_commit_ms": _ms(store.last_commit_seconds),
        "db_bytes": await asyncio.to_thread(_file_bytes, store.path),
        "ping_ms": None,
    }
    if not store.is_open:
        return State("stopped", "unhealthy", "the store is closed", metrics)
    try:
        metrics["ping_ms"] = _ms(await store.ping())
    except Exception as exc:
        return State("degraded", "unhealthy", f"a trivial read failed: {exc}", metrics)
    if queue > STORE_QUEUE_DEGRADED:
        return State("running", "degraded", f"{queue} writes waiting for the writer", metrics)
    return State("running", "healthy", None, metrics)


async def _scheduler_state(svc: Services) -> State:
    sched = svc.scheduler
    age = time.monotonic() - sched.last_heartbeat if sched.last_heartbeat else None
    metrics = {
        "jobs": len(sched.job_ids()),
        "heartbeat_delay_ms": _ms(sched.heartbeat_delay),
        "last_heartbeat_seconds_ago": None if age is None else round(age, 3),
        "misses": int(metric_sum(svc.metrics.job_misses, "_total")),
        "job_errors": int(metric_sum(svc.metrics.job_runs, "_total", outcome="error")),
        "job_runs": int(metric_sum(svc.metrics.job_runs, "_total")),
    }
    if not sched.running:
        return State("stopped", "unhealthy", "the scheduler is not running", metrics)
    if not sched.healthy():
        why = "its heartbeat job has not run yet" if age is None else f"its heartbeat job last ran {age:.0f}s ago"
        return State("degraded", "unhealthy", f"{why} (every {sched.HEARTBEAT_SECONDS:g}s): jobs are not running",
                      metrics)
    return State("running", "healthy", None, metrics)


async def _collectors_state(svc: Services) -> State:
    runner = svc.collectors
    failing = runner.failing()
    durations = [r.duration for r in runner.latest.values()]
    config = svc.config.config.collectors
    enabled = sorted(name for name in REGISTRY if config.settings(name).enabled)
    metrics = {
        "enabled": enabled,
        "failing": {name: runner.latest[name].error for name in failing},
        "slowest_ms": _ms(max(durations) if durations else None),
    }
    if failing:
        first = failing[0]
        return State("degraded", "degraded", f"{len(failing)} failing: {first}: {runner.latest[first].error}"
                     + (f" (and {', '.join(failing[1:])})" if len(failing) > 1 else ""), metrics)
    return State("running", "healthy", None, metrics)


async def _checks_state(svc: Services) -> State:
    entries = list(svc.checks.entries.values())
    by_state: dict[str, int] = {}
    for entry in entries:
        label = entry.flap.state.label if entry.flap.state is not None else "pending"
        by_state[label] = by_state.get(label, 0) + 1
    metrics = {
        "total": len(entries),
        "by_state": dict(sorted(by_state.items())),
        "paused": sum(1 for e in entries if e.paused_at is not None),
        "runs": sum(e.runs for e in entries),
        "internal_errors": len(svc.checks.errors),
    }
    return State("running", "healthy", None, metrics)


async def _history_state(svc: Services) -> State:
    stats = svc.tsdb.stats()
    enabled = svc.config.config.history.enabled
    metrics = {
        "recording": enabled,
        "series": stats["series"],
        "head_samples": stats["head_samples"],
        "pending_samples": stats["pending_samples"],
        "disk_bytes": stats["disk_bytes"],
        "flushes": stats["flushes_total"],
        "last_flush_ms": _ms(stats["last_flush_seconds"]),
        "query_concurrency": svc.queries.config.concurrency,
    }
    return State("running", "healthy", None, metrics)


async def _events_state(svc: Services) -> State:
    metrics = {"subscribers": svc.bus.subscriber_count,
               "dropped": int(metric_sum(svc.metrics.events_dropped, "_total"))}
    return State("running", "healthy", None, metrics)


async def _config_state(svc: Services) -> State:
    manager = svc.config
    reload = manager.last_reload
    metrics = {
        "version": manager.version_id,
        "loaded_at": iso(manager.loaded_at),
        "last_reload_ok": None if reload is None else reload.ok,
        "last_reload_at": None if reload is None else iso(reload.at),
        "pending_restart": manager.pending_restart,
    }
    if reload is not None and not reload.ok:
        first = str(reload.errors[0]) if reload.errors else "no reason given"
        return State("running", "degraded", f"the last reload ({reload.source}) was rejected: {first}", metrics)
    return State("running", "healthy", None, metrics)


async def _units_state(svc: Services) -> State:
    names = svc.units.names()
    metrics: dict[str, Any] = {"count": len(names), "running": None, "failed": []}
    if not names:
        metrics["running"] = 0
        return State("running", "healthy", None, metrics)
    try:
        rows = await asyncio.wait_for(svc.units.statuses(), UNITS_STATUS_TIMEOUT)
    except TimeoutError:
        return State("running", "degraded", f"unit status did not answer within {UNITS_STATUS_TIMEOUT:g}s", metrics)
    metrics["running"] = sum(1 for r in rows if r["status"] == "running")
    metrics["failed"] = [r["name"] for r in rows if r["status"] == "failed"]
    return State("running", "healthy", None, metrics)


async def _api_state(svc: Services) -> State:
    metrics = {
        "listen": svc.config.running.config.listen,
        "requests_served": int(metric_sum(svc.metrics.http_requests, "_total")),
        "server_errors": int(sum(
            s.value for f in svc.metrics.http_requests.collect() for s in f.samples
            if s.name.endswith("_total") and s.labels.get("code", "").startswith("5")
        )),
    }
    if svc.stopping.is_set() or not svc.is_ready():
        return State("stopped", "unhealthy", "the daemon is starting or stopping", metrics)
    return State("running", "healthy", None, metrics)


# --- restarts ---------------------------------------------------------------------------------


async def _restart_store(svc: Services) -> str:
    await svc.store.restart()
    return "closed (queued writes committed) and opened again; writes that arrived meanwhile waited for it"


async def _restart_scheduler(svc: Services) -> str:
    svc.scheduler.restart()
    return (f"a fresh scheduler took over {len(svc.scheduler.job_ids())} jobs at their next run times; "
            "runs in progress finish under the old one")


async def _restart_collectors(svc: Services) -> str:
    svc.collectors.restart()
    count = len([j for j in svc.scheduler.job_ids() if j.startswith("collector.")])
    return f"closed and re-created {count} collectors from config; each runs again now"


async def _restart_checks(svc: Services) -> str:
    await svc.checks.restart()
    return f"stopped and re-created {len(svc.checks.entries)} checks from config; their state was kept"


async def _restart_history(svc: Services) -> str:
    before = svc.tsdb.stats()["head_samples"]
    await svc.tsdb.flush()
    svc.tsdb.clear_query_cache()
    svc.queries.configure(svc.queries.config)
    return (f"flushed the in-memory head ({before} samples) to disk, dropped the query cache and rebuilt "
            "the query engine; recorded data is untouched")


async def _restart_units(svc: Services) -> str:
    supervised = [u.name for u in svc.config.config.units if u.kind == "supervised"]
    autostart = [u.name for u in svc.config.config.units if u.kind == "supervised" and u.autostart]
    await svc.units.close()
    await svc.units.start()
    return (f"stopped {len(supervised)} supervised commands and started the {len(autostart)} marked autostart; "
            "systemd units are not touched")
