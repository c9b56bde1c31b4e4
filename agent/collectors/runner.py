"""Runs each enabled collector on its own schedule and keeps the latest snapshot.

A collector runs in a worker thread under its timeout. One that overruns keeps its thread (Python
cannot kill it) but is not started again until that thread returns, so a stuck /proc read or
statfs costs one thread, not one per interval. Failures never touch other collectors.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

from agent.collectors.base import REGISTRY, Collector, CollectorContext, Family
from agent.config.schema import CollectorsConfig
from agent.events import EventBus
from agent.scheduler import Scheduler
from agent.selfmetrics import SelfMetrics

log = structlog.get_logger("vigil.collectors")
SnapshotHook = Callable[[str, list[Family], float], None]


@dataclass
class CollectorResult:
    name: str
    success: bool
    timestamp: float
    duration: float
    families: list[Family]
    error: str | None = None


class CollectorRunner:
    def __init__(self, ctx: CollectorContext, scheduler: Scheduler, bus: EventBus, metrics: SelfMetrics):
        self.ctx = ctx
        self.scheduler = scheduler
        self.bus = bus
        self.metrics = metrics
        self.latest: dict[str, CollectorResult] = {}
        self.version = 0  # bumped on every change, so renderers can cache
        self._collectors: dict[str, Collector] = {}
        self._inflight: dict[str, concurrent.futures.Future[list[Family]]] = {}
        # A thread per collector at most (created only when needed): one stuck collector holds its
        # own thread and never makes the others queue behind it.
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=len(REGISTRY), thread_name_prefix="collector"
        )
        self._config: CollectorsConfig | None = None
        self._hooks: list[SnapshotHook] = []

    def add_hook(self, hook: SnapshotHook) -> None:
        """`hook(collector, families, timestamp)` after every run (the metrics history). `families` is
        empty when the run failed or the collector was disabled: its series end there, as the series
        of a failed scrape do in Prometheus."""
        self._hooks.append(hook)

    def configure(self, config: CollectorsConfig) -> None:
        """Apply a (new) collectors section: start, reschedule or stop collectors to match."""
        old = self._config
        self._config = config
        for name, cls in REGISTRY.items():
            settings = config.settings(name)
            job_id = f"collector.{name}"
            if not settings.enabled:
                if name in self._collectors:
                    self.scheduler.remove(job_id)
                    self._collectors.pop(name).close()
                    self.latest.pop(name, None)
                    self._run_hooks(name, [], time.time())
                    for gauge in (self.metrics.collector_success, self.metrics.collector_duration,
                                  self.metrics.collector_last_success):
                        with contextlib.suppress(KeyError):
                            gauge.remove(name)
                    self.version += 1
                continue
            fresh = name not in self._collectors
            if fresh:
                self._collectors[name] = cls(self.ctx)
            if fresh or old is None or old.interval_of(name) != config.interval_of(name):
                self.scheduler.every(job_id, config.interval_of(name), self._job(name), run_now=fresh)

    def _job(self, name: str) -> Callable[[], Awaitable[None]]:
        async def job() -> None:
            await self.run_once(name)

        return job

    async def run_once(self, name: str) -> CollectorResult:
        assert self._config is not None
        collector = self._collectors[name]
        settings = self._config.settings(name)
        timeout = self._config.timeout_of(name)
        started = time.perf_counter()
        previous = self._inflight.get(name)
        error: str | None = None
        families: list[Family] = []
        if previous is not None and not previous.done():
            error = "previous run has not returned yet (it timed out); skipped"
        else:
            future = self._executor.submit(collector.collect, settings)
            self._inflight[name] = future
            try:
                families = await asyncio.wait_for(asyncio.wrap_future(future), timeout)
            except TimeoutError:
                error = f"timed out after {timeout:g}s"
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
        duration = time.perf_counter() - started
        result = CollectorResult(name, error is None, time.time(), duration, families, error)
        if self._collectors.get(name) is collector:  # else a restart replaced it while this run went on
            self._record(result)
        return result

    def _record(self, result: CollectorResult) -> None:
        before = self.latest.get(result.name)
        if result.name not in self._collectors:
            return  # disabled by a reload while it ran
        self.latest[result.name] = result
        self.version += 1
        self.metrics.collector_success.labels(result.name).set(1 if result.success else 0)
        self.metrics.collector_duration.labels(result.name).set(result.duration)
        if result.success:
            self.metrics.collector_last_success.labels(result.name).set(result.timestamp)
        self._run_hooks(result.name, result.families if result.success else [], result.timestamp)
        was_ok = before is None or before.success
        if was_ok and not result.success:
            log.warning("collector_failed", collector=result.name, error=result.error)
            self.bus.publish("collector_failed", collector=result.name, error=result.error)
        elif not was_ok and result.success:
            log.info("collector_recovered", collector=result.name)
            self.bus.publish("collector_recovered", collector=result.name)

    def _run_hooks(self, name: str, families: list[Family], timestamp: float) -> None:
        for hook in self._hooks:
            try:
                hook(name, families, timestamp)
            except Exception:
                log.exception("snapshot_hook_failed", collector=name)

    def restart(self) -> None:
        """Restart in place (components API): close every collector, forget the snapshot and build them
        again from the config, each running at once. A run stuck in its thread keeps that thread, but
        the new collectors get a pool of their own and do not wait behind it."""
        config = self._config
        for name, collector in self._collectors.items():
            self.scheduler.remove(f"collector.{name}")
            collector.close()
        self._collectors.clear()
        self.latest.clear()
        self._inflight.clear()
        old, self._executor = self._executor, concurrent.futures.ThreadPoolExecutor(
            max_workers=len(REGISTRY), thread_name_prefix="collector"
        )
        old.shutdown(wait=False, cancel_futures=True)
        self.version += 1
        self._config = None
        if config is not None:
            self.configure(config)
        log.info("collectors_restarted", collectors=sorted(self._collectors))

    def failing(self) -> list[str]:
        return sorted(name for name, r in self.latest.items() if not r.success)

    def value(self, family: str, **labels: str) -> float | None:
        """First sample of `family` matching `labels` in the snapshot (for health and status)."""
        for result in self.latest.values():
            for fam in result.families:
                if fam.name != family:
                    continue
                for values, value in fam.samples:
                    got = dict(zip(fam.label_names, values, strict=False))
                    if all(got.get(k) == v for k, v in labels.items()):
                        return value
        return None

    def samples(self, family: str) -> list[tuple[dict[str, str], float]]:
        out: list[tuple[dict[str, str], float]] = []
        for result in self.latest.values():
            for fam in result.families:
                if fam.name == family:
                    out.extend((dict(zip(fam.label_names, v, strict=False)), x) for v, x in fam.samples)
        return out

    def close(self) -> None:
        for collector in self._collectors.values():
            collector.close()
        self._executor.shutdown(wait=False, cancel_futures=True)
