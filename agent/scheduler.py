"""APScheduler (3.x) with Vigil's rules: jobs never overlap themselves, late runs coalesce, and
every run, error and miss shows up in `vigil_scheduler_*` rather than piling up silently."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
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


@dataclass
class _Job:
    seconds: float
    run: JobFn  # the timed wrapper, as added to APScheduler


class Scheduler:
    HEARTBEAT_SECONDS = 5.0

    def __init__(self, metrics: SelfMetrics):
        self.metrics = metrics
        self._aps = self._new_aps()
        self._scheduled: dict[str, float] = {}  # job id -> time its pending run was due (Unix seconds)
        self._groups: dict[str, str] = {}  # job id -> the label its metrics carry
        self._jobs: dict[str, _Job] = {}  # what `every` added, so a restart can add it all again
        self._running: dict[str, asyncio.Task[Any]] = {}  # job id -> its run in progress
        self._retired: set[AsyncIOScheduler] = set()  # replaced by a restart, waiting for their runs
        self._retiring: set[asyncio.Task[None]] = set()
        self.last_heartbeat = 0.0
        self.heartbeat_delay: float | None = None
        self.started_at: float | None = None

    def _new_aps(self) -> AsyncIOScheduler:
        aps = AsyncIOScheduler(job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": 30})
        aps.add_listener(self._on_missed, EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES)
        aps.add_listener(self._on_submitted, EVENT_JOB_SUBMITTED)
        return aps

    @property
    def running(self) -> bool:
        return bool(self._aps.running)

    def start(self) -> None:
        self.every("vigil.heartbeat", self.HEARTBEAT_SECONDS, self._beat, run_now=True)
        self._aps.start()
        self.started_at = time.time()

    def restart(self) -> None:
        """Restart in place (components API): a fresh APScheduler takes over every job at its next run
        time. The old one stops taking jobs at once but is shut down only once the runs it started have
        returned: shutting it down now would cancel them (a flush cut halfway loses its rows)."""
        old = self._aps
        upcoming = {job.id: job.next_run_time for job in old.get_jobs()}
        if old.running:
            old.pause()
        old.remove_all_jobs()
        self._aps = self._new_aps()
        now = datetime.now(UTC)
        for job_id, job in self._jobs.items():
            due = upcoming.get(job_id)
            self._aps.add_job(
                job.run, "interval", seconds=job.seconds, id=job_id, name=job_id, replace_existing=True,
                next_run_time=max(due, now) if due is not None else now,
            )
        self._scheduled.clear()
        self._aps.start()
        self.started_at = time.time()
        pending = [task for task in self._running.values() if not task.done()]
        if not pending:
            if old.running:
                old.shutdown(wait=False)
            return
        self._retired.add(old)

        async def retire() -> None:
            await asyncio.wait(pending)
            if old in self._retired:
                self._retired.discard(old)
                old.shutdown(wait=False)

        task = asyncio.get_running_loop().create_task(retire(), name="scheduler-retire")
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

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
        run = self._timed(job_id, fn)
        self._jobs[job_id] = _Job(seconds, run)
        self._aps.add_job(run, "interval", seconds=seconds, id=job_id, name=job_id, replace_existing=True, **kwargs)

    def remove(self, job_id: str) -> None:
        if self._aps.get_job(job_id) is not None:
            self._aps.remove_job(job_id)
        self._groups.pop(job_id, None)
        self._scheduled.pop(job_id, None)
        self._jobs.pop(job_id, None)

    def job_ids(self) -> list[str]:
        return [job.id for job in self._aps.get_jobs()]

    def _timed(self, job_id: str, fn: JobFn) -> JobFn:
        async def run() -> None:
            label = self._groups.get(job_id, job_id)
            previous = self._running.get(job_id)
            if previous is not None and not previous.done():
                # Still running under the scheduler a restart replaced: jobs never overlap themselves.
                self._scheduled.pop(job_id, None)
                self.metrics.job_misses.labels(label).inc()
                return
            task = asyncio.current_task()
            if task is not None:
                self._running[job_id] = task
            started = time.perf_counter()
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
                if self._running.get(job_id) is task:
                    del self._running[job_id]
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
        for task in list(self._retiring):
            task.cancel()
        for old in list(self._retired):
            self._retired.discard(old)
            old.shutdown(wait=False)
        if self._aps.running:
            self._aps.shutdown(wait=False)
