"""APScheduler (3.x) with Vigil's rules: jobs never overlap themselves, late runs coalesce, and
every run, error and miss shows up in `vigil_scheduler_*` rather than piling up silently."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import structlog
from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from agent.selfmetrics import SelfMetrics

log = structlog.get_logger("vigil.scheduler")
JobFn = Callable[[], Awaitable[Any]]


class Scheduler:
    HEARTBEAT_SECONDS = 5.0

    def __init__(self, metrics: SelfMetrics):
        self.metrics = metrics
        self._aps = AsyncIOScheduler(
            job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": 30}
        )
        self._aps.add_listener(self._on_missed, EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES)
        self.last_heartbeat = 0.0
        self.heartbeat_delay: float | None = None

    @property
    def running(self) -> bool:
        return bool(self._aps.running)

    def start(self) -> None:
        self.every("vigil.heartbeat", self.HEARTBEAT_SECONDS, self._beat, run_now=True)
        self._aps.start()

    async def _beat(self) -> None:
        now = time.monotonic()
        if self.last_heartbeat:
            self.heartbeat_delay = max(now - self.last_heartbeat - self.HEARTBEAT_SECONDS, 0.0)
        self.last_heartbeat = now

    def healthy(self) -> bool:
        """Running, and its heartbeat job ran recently (so jobs actually get to run)."""
        return self.running and time.monotonic() - self.last_heartbeat < 3 * self.HEARTBEAT_SECONDS

    def every(self, job_id: str, seconds: float, fn: JobFn, run_now: bool = False) -> None:
        """Schedule (or reschedule) `fn` every `seconds`; `run_now` also runs it right away."""
        kwargs: dict[str, Any] = {}
        if run_now:
            kwargs["next_run_time"] = datetime.now(UTC)
        self._aps.add_job(
            self._timed(job_id, fn), "interval", seconds=seconds, id=job_id, name=job_id,
            replace_existing=True, **kwargs,
        )

    def remove(self, job_id: str) -> None:
        if self._aps.get_job(job_id) is not None:
            self._aps.remove_job(job_id)

    def job_ids(self) -> list[str]:
        return [job.id for job in self._aps.get_jobs()]

    def _timed(self, job_id: str, fn: JobFn) -> JobFn:
        async def run() -> None:
            started = time.perf_counter()
            outcome = "success"
            try:
                await fn()
            except Exception:
                outcome = "error"
                log.exception("job_failed", job=job_id)
            finally:
                self.metrics.job_runs.labels(job_id, outcome).inc()
                self.metrics.job_duration.labels(job_id).observe(time.perf_counter() - started)

        return run

    def _on_missed(self, event: JobExecutionEvent) -> None:
        self.metrics.job_misses.labels(event.job_id).inc()
        log.warning("job_missed", job=event.job_id)

    def shutdown(self) -> None:
        if self._aps.running:
            self._aps.shutdown(wait=False)
