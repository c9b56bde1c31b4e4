"""APScheduler (3.x) with Vigil's rules: jobs never overlap themselves, late runs coalesce, and
every run, error and miss shows up in `vigil_scheduler_*` rather than piling up silently."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import structlog
from apscheduler.events import (
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    EVENT_JOB_SUBMITTED,
    JobExecutionEvent,
    JobSubmissionEvent,
)
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
        self._aps.add_listener(self._on_submitted, EVENT_JOB_SUBMITTED)
        self._scheduled: dict[str, float] = {}  # job id -> time its pending run was due (Unix seconds)
        self._groups: dict[str, str] = {}  # job id -> the label its metrics carry
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

    def every(
        self, job_id: str, seconds: float, fn: JobFn, run_now: bool = False, first_in: float | None = None,
        group: str | None = None,
    ) -> None:
        """Schedule (or reschedule) `fn` every `seconds`; `run_now` also runs it right away, `first_in`
        runs it first after that many seconds (spreading many jobs over their interval). `group`
        names the job in metrics instead of its id, for jobs that come by the hundred (checks)."""
        kwargs: dict[str, Any] = {}
        if run_now:
            kwargs["next_run_time"] = datetime.now(UTC)
        elif first_in is not None:
            kwargs["next_run_time"] = datetime.fromtimestamp(time.time() + first_in, UTC)
        self._groups[job_id] = group or job_id
        self._aps.add_job(
            self._timed(job_id, fn), "interval", seconds=seconds, id=job_id, name=job_id,
            replace_existing=True, **kwargs,
        )

    def remove(self, job_id: str) -> None:
        if self._aps.get_job(job_id) is not None:
            self._aps.remove_job(job_id)
        self._groups.pop(job_id, None)
        self._scheduled.pop(job_id, None)

    def job_ids(self) -> list[str]:
        return [job.id for job in self._aps.get_jobs()]

    def _timed(self, job_id: str, fn: JobFn) -> JobFn:
        async def run() -> None:
            started = time.perf_counter()
            label = self._groups.get(job_id, job_id)
            due = self._scheduled.pop(job_id, None)
            if due is not None:
                self.metrics.job_lateness.labels(label).observe(max(time.time() - due, 0.0))
            outcome = "success"
            try:
                await fn()
            except Exception:
                outcome = "error"
                log.exception("job_failed", job=job_id)
            finally:
                self.metrics.job_runs.labels(label, outcome).inc()
                self.metrics.job_duration.labels(label).observe(time.perf_counter() - started)

        return run

    def _on_submitted(self, event: JobSubmissionEvent) -> None:
        if event.scheduled_run_times:
            self._scheduled[event.job_id] = event.scheduled_run_times[-1].timestamp()

    def _on_missed(self, event: JobExecutionEvent) -> None:
        self.metrics.job_misses.labels(self._groups.get(event.job_id, event.job_id)).inc()
        log.warning("job_missed", job=event.job_id)

    def shutdown(self) -> None:
        if self._aps.running:
            self._aps.shutdown(wait=False)
