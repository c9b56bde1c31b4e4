"""One runner for every long operation (cleanup, diagnostics, backups, scans): each runs as a task
with an id, a status, progress, named steps and log lines that an operator can follow over the API
and the event stream, and cancel.

A task is committed as `pending` before `submit` returns and every status change is committed
before it is published, so what an operator was told survives a `kill -9`; progress and log lines
are written at most once a second per task. Tasks a previous run left unfinished are marked
`interrupted` by `recover` at start-up, and a clean stop marks those still running `interrupted`
too: nothing stays `running` that is not.

Cancelling sets a flag that `ctx.checkpoint()` turns into TaskCancelled (and work in a thread can
read as `ctx.cancelled`), and cancels the asyncio task running the work, so an `await` anywhere in it
raises CancelledError: either way the work's `finally` blocks run and clean up.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import json
import math
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import structlog

from agent.api.formats import iso
from agent.config.schema import TasksConfig
from agent.events import EventBus
from agent.store import Store, StoreError
from agent.store import tasks as rows
from agent.tasks.model import Task, TaskLogLine, TaskStatus, TaskStep, from_row, to_row

T = TypeVar("T")

log = structlog.get_logger("vigil.tasks")

MAX_LOG_LINES = 500
MAX_LOG_LINE_CHARS = 2000
FLUSH_INTERVAL = 1.0  # seconds between writes of one task's progress and log lines
PUBLISH_INTERVAL = 0.1  # seconds between task_progress events of one task (a new message always goes out)
CANCEL_GRACE = 5.0  # how long `cancel` waits for the work to unwind before answering
STOP_GRACE = 5.0  # how long `close` waits for cancelled work before marking it interrupted anyway
STOPPED = "daemon stopped"


class TaskCancelled(Exception):
    """Raised inside work by `ctx.checkpoint()` once cancelling was asked for."""


class TaskNotFound(LookupError):
    """No task with this id (never submitted, or pruned after its retention)."""


class TaskFinished(Exception):
    """The task has already finished: it cannot be cancelled any more."""

    def __init__(self, task: Task):
        super().__init__(f"task {task.id} already {task.status}")
        self.task = task


class RunnerStopped(Exception):
    """The daemon is stopping: no new tasks are taken."""


Work = Callable[["TaskContext"], Awaitable[dict[str, Any] | None]]


@dataclass
class _Active:
    task: Task
    work: Work
    outer: asyncio.Task[None] | None = None  # the runner's bookkeeping around the work
    inner: asyncio.Task[Any] | None = None  # the work itself: what cancelling cancels
    done: asyncio.Event = field(default_factory=asyncio.Event)
    dirty: bool = False
    last_flush: float = 0.0
    last_publish: float = 0.0
    flush_timer: asyncio.TimerHandle | None = None


class TaskContext:
    """What work gets: report steps, progress and log lines, and notice a cancel."""

    def __init__(self, runner: TaskRunner, active: _Active):
        self._runner = runner
        self._active = active

    @property
    def task_id(self) -> str:
        return self._active.task.id

    @property
    def cancelled(self) -> bool:
        """True once cancelling was asked for; a plain read, so work running in a thread may poll it."""
        return self._active.task.cancel_requested or self._runner._closing

    @contextlib.asynccontextmanager
    async def step(self, name: str) -> AsyncIterator[None]:
        """Mark the step `name` running, then completed when the block ends (failed or cancelled when it
        raises). A name not declared at submit is appended to the task's steps."""
        task = self._active.task
        step = task.step(name)
        if step is None:
            step = TaskStep(name)
            task.steps.append(step)
        step.status, step.started_at, step.completed_at, step.error = "running", time.time(), None, None
        await self._runner._step_changed(self._active, step)
        try:
            yield
        except (TaskCancelled, asyncio.CancelledError):
            step.status = "interrupted" if self._runner._stopping(task) else "cancelled"
            step.completed_at = time.time()
            raise  # the task's end is written once the work has unwound
        except Exception as exc:
            step.status, step.completed_at, step.error = "failed", time.time(), _describe(exc)
            self._runner._mark_dirty(self._active)
            raise
        step.status, step.completed_at = "completed", time.time()
        await self._runner._step_changed(self._active, step)

    async def progress(self, fraction: float, message: str | None = None) -> None:
        """Report how far the work is (0..1, clamped) and optionally what it does now."""
        if math.isnan(fraction):
            raise ValueError("progress must be a number between 0 and 1")
        task = self._active.task
        if task.finished:
            return
        task.progress = min(max(float(fraction), 0.0), 1.0)
        changed = message is not None and message != task.message
        if message is not None:
            task.message = message[:MAX_LOG_LINE_CHARS]
        now = time.time()
        if task.started_at is not None and task.progress >= 0.05:
            # Extrapolate once there is enough progress to go by; before, keep the submitter's estimate.
            task.estimated_completion = task.started_at + (now - task.started_at) / task.progress
        self._runner._mark_dirty(self._active)
        if changed or task.progress >= 1.0 or now - self._active.last_publish >= PUBLISH_INTERVAL:
            self._runner._publish_progress(self._active)

    def log(self, line: str) -> None:
        """Add a line to the task's log (the last MAX_LOG_LINES are kept)."""
        task = self._active.task
        if task.finished:
            return
        self._runner._append_log(self._active, line)

    async def checkpoint(self) -> None:
        """Raise TaskCancelled if cancelling was asked for; otherwise let other coroutines run."""
        if self.cancelled:
            raise TaskCancelled(f"task {self.task_id} was cancelled")
        await asyncio.sleep(0)

    async def in_thread(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`fn` in a worker thread. A cancel does not abandon the thread: the task ends only once `fn` has
        returned (it should poll `cancelled`), so nothing it does outlives the task's reported end."""
        pending = asyncio.get_running_loop().run_in_executor(None, functools.partial(fn, *args, **kwargs))
        try:
            return await asyncio.shield(pending)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await pending
            raise


class TaskRunner:
    """Runs submitted work as tasks, at most `tasks.max_concurrent` at a time (the rest wait as pending)."""

    def __init__(self, store: Store, bus: EventBus, config: TasksConfig | None = None,
                 flush_interval: float = FLUSH_INTERVAL):
        self.store = store
        self.bus = bus
        self.config = config or TasksConfig()
        self.flush_interval = flush_interval
        self._active: dict[str, _Active] = {}
        self._running = 0
        self._slots = asyncio.Condition()
        self._closing = False
        self._background: set[asyncio.Task[Any]] = set()

    async def configure(self, config: TasksConfig) -> None:
        self.config = config
        async with self._slots:  # a higher limit lets waiting tasks start now
            self._slots.notify_all()

    @property
    def running_count(self) -> int:
        return self._running

    async def recover(self) -> list[str]:
        """Mark tasks a previous run left pending or running as interrupted (at start-up, before any
        task is submitted); returns their ids."""
        now = time.time()
        found = [from_row(row) for row in await rows.unfinished(self.store)]
        for task in found:
            previous = task.status
            task.status, task.completed_at = "interrupted", now
            task.error = f"Vigil stopped while the task was {previous} (found at start-up)"
            for step in task.steps:
                if step.status == "running":
                    step.status, step.completed_at = "interrupted", now
            _append(task, TaskLogLine(now, f"interrupted: {task.error}"))
            await rows.save(self.store, rows.encode(to_row(task)))
            log.warning("task_interrupted", task_id=task.id, type=task.type, was=previous)
            self._publish_state(task, previous)
        return [t.id for t in found]

    async def submit(
        self, type_: str, work: Work, *, steps: list[str] | None = None, params: dict[str, Any] | None = None,
        actor: str | None = None, estimated_seconds: float | None = None, scope: str | None = None,
    ) -> Task:
        """Record a pending task (committed before this returns) and run `work` in the background; the
        dict it returns becomes the task's `result`. `scope` is what the caller needed to start it:
        cancelling it needs the same (without one, only its creator or an admin may cancel)."""
        if self._closing:
            raise RunnerStopped("Vigil is stopping; no new tasks are started")
        if len(set(steps or [])) != len(steps or []):
            raise ValueError("step names must be unique")
        json.dumps(params or {})  # refuse what cannot be stored before anything is recorded
        now = time.time()
        task = Task(
            id="task_" + secrets.token_hex(8), type=type_, status="pending", created_at=now,
            steps=[TaskStep(name) for name in steps or []], params=dict(params or {}), created_by=actor,
            scope=scope, estimated_completion=now + estimated_seconds if estimated_seconds else None,
        )
        active = _Active(task, work)
        await self._save(active)
        self._active[task.id] = active
        log.info("task_submitted", task_id=task.id, type=type_, by=actor)
        self._publish_state(task, None)
        active.outer = asyncio.create_task(self._run(active, estimated_seconds), name=f"task-{task.id}")
        return copy.deepcopy(task)

    async def get(self, task_id: str) -> Task | None:
        """The task as it is now (a running task's progress from memory: it is ahead of the store)."""
        active = self._active.get(task_id)
        if active is not None:
            return copy.deepcopy(active.task)
        row = await rows.get(self.store, task_id)
        return from_row(row) if row is not None else None

    async def page(
        self, limit: int, offset: int, status: str | None = None, type_: str | None = None,
    ) -> tuple[list[Task], int, dict[str, int]]:
        found, total, counts = await rows.page(self.store, limit, offset, status, type_)
        tasks = []
        for row in found:
            active = self._active.get(row["id"])
            tasks.append(copy.deepcopy(active.task) if active is not None else from_row(row))
        return tasks, total, counts

    async def wait(self, task_id: str) -> Task:
        """The task once finished (bound the wait with `asyncio.timeout`); raises TaskNotFound if unknown."""
        active = self._active.get(task_id)
        if active is not None:
            await active.done.wait()
        task = await self.get(task_id)
        if task is None:
            raise TaskNotFound(task_id)
        return task

    async def cancel(self, task_id: str, actor: str | None = None, grace: float = CANCEL_GRACE) -> Task:
        """Ask the task to stop and wait up to `grace` seconds for its work to unwind; returns the task
        (still `running`, with `cancel_requested`, if its clean-up takes longer)."""
        active = self._active.get(task_id)
        if active is None or active.task.finished:
            task = await self.get(task_id)
            if task is None:
                raise TaskNotFound(task_id)
            raise TaskFinished(task)
        task = active.task
        if not task.cancel_requested:
            # Flag and cancel in one go: work that notices the flag (a thread polling ctx.cancelled) cannot
            # end normally before its asyncio task is cancelled, and so pass for completed.
            task.cancel_requested = True
            if active.inner is not None:
                active.inner.cancel()
            self._append_log(active, f"cancel requested by {actor or 'Vigil'}")
            log.info("task_cancel_requested", task_id=task.id, type=task.type, by=actor)
            if active.inner is None:
                async with self._slots:  # pending: wake it so it ends without running
                    self._slots.notify_all()
            await self._save(active)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(active.done.wait(), grace)
        return copy.deepcopy(task)

    async def prune(self) -> int:
        """Delete finished tasks older than `tasks.retention` (a scheduled job)."""
        removed = await rows.prune(self.store, time.time() - self.config.retention)
        if removed:
            log.info("tasks_pruned", removed=removed)
        return removed

    async def close(self, grace: float = STOP_GRACE) -> None:
        """Stop taking tasks, cancel those running and mark them interrupted ("daemon stopped");
        work that has not unwound within `grace` seconds is marked interrupted anyway."""
        self._closing = True
        actives = list(self._active.values())
        for active in actives:
            if active.inner is not None:
                active.inner.cancel()
        async with self._slots:
            self._slots.notify_all()
        outers = [a.outer for a in actives if a.outer is not None]
        if outers:
            await asyncio.wait(outers, timeout=grace)
        for active in actives:
            if active.outer is not None and not active.outer.done():
                log.warning("task_did_not_stop", task_id=active.task.id, type=active.task.type, grace=grace)
                with contextlib.suppress(StoreError):
                    await self._finish(active, "interrupted", error=f"{STOPPED} (the work did not stop in {grace}s)")
                active.outer.cancel()
        for background in list(self._background):
            with contextlib.suppress(asyncio.CancelledError, StoreError):
                await background

    # The life of one task.

    async def _run(self, active: _Active, estimated_seconds: float | None) -> None:
        task = active.task
        try:
            async with self._slots:
                await self._slots.wait_for(
                    lambda: task.cancel_requested or self._closing or self._running < self.config.max_concurrent)
                start = not (task.cancel_requested or self._closing)
                if start:
                    self._running += 1
            if not start:
                if self._stopping(task):
                    await self._finish(active, "interrupted", error=STOPPED)
                else:
                    await self._finish(active, "cancelled")
                return
            try:
                await self._execute(active, estimated_seconds)
            finally:
                async with self._slots:
                    self._running -= 1
                    self._slots.notify_all()
        except StoreError as exc:  # the row stays as last written; a restart marks it interrupted
            log.error("task_store_failed", task_id=task.id, type=task.type, error=str(exc))
        finally:
            if active.flush_timer is not None:
                active.flush_timer.cancel()
            self._active.pop(task.id, None)
            active.done.set()

    async def _execute(self, active: _Active, estimated_seconds: float | None) -> None:
        task = active.task
        previous = task.status
        task.status, task.started_at = "running", time.time()
        if estimated_seconds:
            task.estimated_completion = task.started_at + estimated_seconds
        await self._save(active)
        log.info("task_started", task_id=task.id, type=task.type)
        self._publish_state(task, previous)
        ctx = TaskContext(self, active)

        async def call() -> dict[str, Any] | None:  # any awaitable, not only a coroutine
            return await active.work(ctx)

        active.inner = asyncio.create_task(call(), name=f"task-work-{task.id}")
        if task.cancel_requested or self._closing:
            active.inner.cancel()
        await asyncio.wait({active.inner})
        inner = active.inner
        exc = None if inner.cancelled() else inner.exception()
        if inner.cancelled() or isinstance(exc, TaskCancelled):
            if self._stopping(task):
                await self._finish(active, "interrupted", error=STOPPED)
            else:
                await self._finish(active, "cancelled")
            return
        if exc is not None:
            log.warning("task_failed", task_id=task.id, type=task.type, error=_describe(exc), exc_info=exc)
            await self._finish(active, "failed", error=_describe(exc))
            return
        result = inner.result()
        try:
            json.dumps(result)
        except (TypeError, ValueError) as err:
            await self._finish(active, "failed", error=f"the task's result cannot be stored: {err}")
            return
        if task.cancel_requested:
            self._append_log(active, "cancel came too late: the work had already finished")
        task.progress = 1.0
        await self._finish(active, "completed", result=result)

    async def _finish(self, active: _Active, status: TaskStatus, *, error: str | None = None,
                      result: dict[str, Any] | None = None) -> None:
        task = active.task
        if task.finished:
            return
        previous = task.status
        now = time.time()
        task.status, task.completed_at, task.error, task.result = status, now, error, result
        for step in task.steps:
            if step.status == "running":
                step.status = {"failed": "failed", "cancelled": "cancelled"}.get(status, "interrupted")
                step.completed_at = now
        if status == "cancelled":
            _append(task, TaskLogLine(now, "cancelled"))
        elif status != "completed":
            _append(task, TaskLogLine(now, f"{status}: {error}"))
        if active.flush_timer is not None:
            active.flush_timer.cancel()
            active.flush_timer = None
        await self._save(active)
        duration = now - task.started_at if task.started_at is not None else 0.0
        log.info("task_finished", task_id=task.id, type=task.type, status=status, error=error,
                 duration_seconds=round(duration, 3))
        self._publish_state(task, previous)

    def _stopping(self, task: Task) -> bool:
        """Ended by the daemon stopping rather than by an operator's cancel."""
        return self._closing and not task.cancel_requested

    # Writes and events.

    async def _save(self, active: _Active) -> None:
        active.dirty = False
        active.last_flush = time.monotonic()
        await rows.save(self.store, rows.encode(to_row(active.task)))

    def _mark_dirty(self, active: _Active) -> None:
        """Write the task soon: at most once per flush interval, so a chatty task costs little."""
        active.dirty = True
        if active.flush_timer is not None or active.task.finished:
            return
        delay = max(active.last_flush + self.flush_interval - time.monotonic(), 0.0)
        active.flush_timer = asyncio.get_running_loop().call_later(delay, self._flush_later, active)

    def _flush_later(self, active: _Active) -> None:
        active.flush_timer = None
        background = asyncio.get_running_loop().create_task(self._flush(active))
        self._background.add(background)
        background.add_done_callback(self._background.discard)

    async def _flush(self, active: _Active) -> None:
        if not active.dirty or active.task.finished:
            return
        try:
            await self._save(active)
        except StoreError as exc:
            log.warning("task_flush_failed", task_id=active.task.id, error=str(exc))

    def _append_log(self, active: _Active, line: str) -> None:
        _append(active.task, TaskLogLine(time.time(), line[:MAX_LOG_LINE_CHARS]))
        log.debug("task_log", task_id=active.task.id, line=line[:MAX_LOG_LINE_CHARS])
        self._mark_dirty(active)

    async def _step_changed(self, active: _Active, step: TaskStep) -> None:
        await self._save(active)
        self._publish_progress(active, step)

    def _publish_progress(self, active: _Active, step: TaskStep | None = None) -> None:
        task = active.task
        active.last_publish = time.time()
        data: dict[str, Any] = {
            "id": task.id, "type": task.type, "progress": round(task.progress, 4), "message": task.message,
            "estimated_completion": iso(task.estimated_completion),
        }
        if step is not None:
            data["step"] = {"name": step.name, "status": step.status}
        self.bus.publish("task_progress", **data)

    def _publish_state(self, task: Task, previous: str | None) -> None:
        self.bus.publish("task_state_changed", id=task.id, type=task.type, status=task.status, previous=previous,
                         progress=round(task.progress, 4), error=task.error, created_by=task.created_by)


def _append(task: Task, line: TaskLogLine) -> None:
    task.logs.append(line)
    overflow = len(task.logs) - MAX_LOG_LINES
    if overflow > 0:
        del task.logs[:overflow]
        task.logs_dropped += overflow


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
