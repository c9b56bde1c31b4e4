"""The task runner against a real SQLite file: steps, progress, results, failures, cancelling (the work's
`finally` runs), bounded concurrency, restart marking unfinished tasks interrupted, retention."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from agent.config.schema import TasksConfig
from agent.events import Event, EventBus
from agent.selfmetrics import SelfMetrics
from agent.store import Store
from agent.store import tasks as rows
from agent.tasks import (
    RunnerStopped,
    Task,
    TaskCancelled,
    TaskContext,
    TaskFinished,
    TaskNotFound,
    TaskRunner,
)
from agent.tasks.model import from_row, to_row
from agent.tasks.runner import MAX_LOG_LINES

DEADLINE = 10.0


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = Store(str(tmp_path / "vigil.db"), SelfMetrics())
    await s.open()
    yield s
    await s.close()


def make_runner(store: Store, max_concurrent: int = 2, flush_interval: float = 0.05) -> tuple[TaskRunner, EventBus]:
    bus = EventBus(SelfMetrics(), queue_size=10_000)
    return TaskRunner(store, bus, TasksConfig(max_concurrent=max_concurrent), flush_interval=flush_interval), bus


async def stored(store: Store, task_id: str) -> Task:
    row = await rows.get(store, task_id)
    assert row is not None, f"{task_id} is not in the store"
    return from_row(row)


async def until(predicate: Callable[[], Any], what: str) -> Any:
    """Poll an async-world condition with a deadline (for state that no event announces)."""
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out after {DEADLINE}s waiting for {what}")


async def finished(runner: TaskRunner, task_id: str) -> Task:
    async with asyncio.timeout(DEADLINE):
        return await runner.wait(task_id)


def drain(sub: Any) -> list[Event]:
    events = []
    while not sub.queue.empty():
        events.append(sub.queue.get_nowait())
    return events


async def test_steps_progress_logs_and_result_are_kept_and_published(store: Store) -> None:
    runner, bus = make_runner(store)
    sub = bus.subscribe({"task_progress", "task_state_changed"})
    seen_ids: list[str] = []

    async def work(ctx: TaskContext) -> dict[str, Any]:
        seen_ids.append(ctx.task_id)
        async with ctx.step("scan"):
            ctx.log("scanning /var/tmp")
            await ctx.progress(0.25, "scanned 1 of 4")
        async with ctx.step("remove"):
            await ctx.progress(0.75, "removed 3 files")
        async with ctx.step("report"):  # not declared at submit: appended
            ctx.log("done")
        return {"removed": 3, "bytes": 1024}

    task = await runner.submit("cleanup", work, steps=["scan", "remove"], params={"older_than_days": 7},
                               actor="key_abc", estimated_seconds=30, scope="write:maintenance")
    assert task.status == "pending" and task.created_by == "key_abc" and task.estimated_completion is not None
    # Committed before submit returned: read at once, without giving the runner a chance to move on.
    with sqlite3.connect(store.path) as db:
        row = db.execute("SELECT status, params, scope, steps FROM tasks WHERE id=?", (task.id,)).fetchone()
    assert row[0] == "pending" and json.loads(row[1]) == {"older_than_days": 7} and row[2] == "write:maintenance"
    assert [s["name"] for s in json.loads(row[3])] == ["scan", "remove"]

    done = await finished(runner, task.id)
    assert seen_ids == [task.id]
    assert done.status == "completed" and done.progress == 1.0 and done.result == {"removed": 3, "bytes": 1024}
    assert [(s.name, s.status) for s in done.steps] == [("scan", "completed"), ("remove", "completed"),
                                                        ("report", "completed")]
    assert all(s.started_at is not None and s.completed_at is not None for s in done.steps)
    assert [line.line for line in done.logs] == ["scanning /var/tmp", "done"]
    assert done.started_at is not None and done.completed_at is not None and done.completed_at >= done.started_at
    assert done.message == "removed 3 files" and done.error is None
    assert to_row(await stored(store, task.id)) == to_row(done)  # the store has the final state, not a stale one

    events = drain(sub)
    states = [(e.data["status"], e.data["previous"]) for e in events if e.type == "task_state_changed"]
    assert states == [("pending", None), ("running", "pending"), ("completed", "running")]
    progress = [e.data for e in events if e.type == "task_progress"]
    reported = [p for p in progress if "step" not in p]
    assert [(p["progress"], p["message"]) for p in reported] == [(0.25, "scanned 1 of 4"), (0.75, "removed 3 files")]
    assert reported[0]["type"] == "cleanup" and reported[0]["estimated_completion"] is not None
    steps = [(p["step"]["name"], p["step"]["status"]) for p in progress if "step" in p]
    assert steps == [("scan", "running"), ("scan", "completed"), ("remove", "running"), ("remove", "completed"),
                     ("report", "running"), ("report", "completed")]
    # A status change is committed before it is published: nothing announced is missing from the store.
    assert all(e.data["id"] == task.id for e in events)


async def test_a_failure_fails_the_task_and_its_step(store: Store) -> None:
    runner, _ = make_runner(store)

    async def work(ctx: TaskContext) -> dict[str, Any]:
        async with ctx.step("one"):
            await ctx.checkpoint()
        async with ctx.step("two"):
            raise ValueError("disk went away")
        return {}

    task = await runner.submit("diagnostics", work, steps=["one", "two", "three"])
    done = await finished(runner, task.id)
    assert done.status == "failed" and done.error == "ValueError: disk went away" and done.result is None
    assert [(s.name, s.status) for s in done.steps] == [("one", "completed"), ("two", "failed"), ("three", "pending")]
    assert done.steps[1].error == "ValueError: disk went away"
    assert (await stored(store, task.id)).status == "failed"
    assert done.logs[-1].line == "failed: ValueError: disk went away"


async def test_a_result_that_cannot_be_stored_fails_the_task(store: Store) -> None:
    runner, _ = make_runner(store)

    async def work(ctx: TaskContext) -> dict[str, Any]:
        return {"when": object()}

    done = await finished(runner, (await runner.submit("x", work)).id)
    assert done.status == "failed" and "cannot be stored" in (done.error or "")


async def test_cancel_mid_way_runs_the_works_cleanup(store: Store, tmp_path: Path) -> None:
    runner, bus = make_runner(store)
    sub = bus.subscribe({"task_state_changed"})
    scratch = tmp_path / "scratch"
    inside = asyncio.Event()

    async def work(ctx: TaskContext) -> dict[str, Any]:
        scratch.mkdir()
        try:
            async with ctx.step("copy"):
                await ctx.progress(0.4, "copying")
                inside.set()
                await asyncio.Event().wait()  # never set: only a cancel ends this
        finally:
            scratch.rmdir()
        return {}

    task = await runner.submit("backup", work, steps=["copy", "verify"], actor="key_op")
    async with asyncio.timeout(DEADLINE):
        await inside.wait()
    assert scratch.exists()
    cancelled = await runner.cancel(task.id, actor="key_admin")
    assert cancelled.status == "cancelled" and cancelled.cancel_requested
    assert not scratch.exists()  # the work's finally ran before the answer
    assert [(s.name, s.status) for s in cancelled.steps] == [("copy", "cancelled"), ("verify", "pending")]
    assert any(line.line == "cancel requested by key_admin" for line in cancelled.logs)
    kept = await stored(store, task.id)
    assert kept.status == "cancelled" and kept.completed_at is not None and kept.progress == pytest.approx(0.4)
    assert [e.data["status"] for e in drain(sub)] == ["pending", "running", "cancelled"]

    with pytest.raises(TaskFinished) as exc:
        await runner.cancel(task.id)
    assert exc.value.task.status == "cancelled"
    with pytest.raises(TaskNotFound):
        await runner.cancel("task_unknown")


async def test_work_in_a_thread_sees_the_cancel_and_checkpoint_raises(store: Store) -> None:
    runner, _ = make_runner(store)
    spinning = threading.Event()
    thread_saw_cancel = threading.Event()
    checkpoints: list[str] = []

    async def threaded(ctx: TaskContext) -> dict[str, Any]:
        def spin() -> None:
            spinning.set()
            while not ctx.cancelled:
                thread_saw_cancel.wait(0.01)
            thread_saw_cancel.set()

        pending = asyncio.get_running_loop().run_in_executor(None, spin)
        try:
            await asyncio.shield(pending)
        finally:
            await pending  # the thread stops by itself once it reads ctx.cancelled
        return {}

    task = await runner.submit("hash", threaded)
    await until(spinning.is_set, "the thread to start")
    done = await runner.cancel(task.id)
    assert done.status == "cancelled" and thread_saw_cancel.is_set()

    async def cooperative(ctx: TaskContext) -> dict[str, Any]:
        try:
            await ctx.checkpoint()  # not cancelled yet: returns
            checkpoints.append("passed")
            ctx._active.task.cancel_requested = True  # what cancel() sets first
            await ctx.checkpoint()
        except TaskCancelled:
            checkpoints.append("raised")
            raise
        return {}

    done = await finished(runner, (await runner.submit("walk", cooperative)).id)
    assert checkpoints == ["passed", "raised"] and done.status == "cancelled"


async def test_cancelling_a_pending_task_never_runs_it(store: Store) -> None:
    runner, _ = make_runner(store, max_concurrent=1)
    gate = asyncio.Event()
    ran: list[str] = []

    async def blocker(ctx: TaskContext) -> dict[str, Any]:
        await gate.wait()
        return {}

    async def second(ctx: TaskContext) -> dict[str, Any]:
        ran.append(ctx.task_id)
        return {}

    first = await runner.submit("a", blocker)
    queued = await runner.submit("b", second)
    await until(lambda: runner.running_count == 1, "the first task to run")
    assert (await runner.get(queued.id)).status == "pending"  # type: ignore[union-attr]
    done = await runner.cancel(queued.id)
    assert done.status == "cancelled" and done.started_at is None and ran == []
    gate.set()
    assert (await finished(runner, first.id)).status == "completed"
    assert ran == []


async def test_concurrency_is_bounded_and_a_higher_limit_applies_at_once(store: Store) -> None:
    runner, _ = make_runner(store, max_concurrent=2)
    gate = asyncio.Event()
    now_running = 0
    most = 0

    async def work(ctx: TaskContext) -> dict[str, Any]:
        nonlocal now_running, most
        now_running += 1
        most = max(most, now_running)
        try:
            await gate.wait()
        finally:
            now_running -= 1
        return {}

    submitted = [await runner.submit("scan", work) for _ in range(5)]
    await until(lambda: now_running == 2, "two tasks to run")
    statuses = [(await runner.get(t.id)).status for t in submitted]  # type: ignore[union-attr]
    assert statuses == ["running", "running", "pending", "pending", "pending"]
    page, total, counts = await runner.page(10, 0, status="pending")
    assert total == 3 and counts == {"running": 2, "pending": 3} and {t.id for t in page} == {
        t.id for t in submitted[2:]}

    await runner.configure(TasksConfig(max_concurrent=3))
    await until(lambda: now_running == 3, "a third task to start after raising the limit")
    gate.set()
    for t in submitted:
        assert (await finished(runner, t.id)).status == "completed"
    assert most == 3


async def test_log_lines_are_bounded_and_progress_is_flushed_without_a_status_change(store: Store) -> None:
    runner, _ = make_runner(store, flush_interval=0.05)
    hold = asyncio.Event()
    logged = asyncio.Event()

    async def work(ctx: TaskContext) -> dict[str, Any]:
        for i in range(MAX_LOG_LINES + 100):
            ctx.log(f"line {i}")
        for i in range(1, 201):  # a chatty task: far more calls than writes
            await ctx.progress(i / 400)
        logged.set()
        await hold.wait()
        return {}

    task = await runner.submit("chatty", work)
    async with asyncio.timeout(DEADLINE):
        await logged.wait()

    async def flushed() -> bool:
        row = await stored(store, task.id)
        return row.progress == 0.5 and row.logs_dropped == 100

    await until(flushed, "progress and log lines to reach the store")
    kept = await stored(store, task.id)
    assert kept.status == "running" and len(kept.logs) == MAX_LOG_LINES
    assert kept.logs[0].line == "line 100" and kept.logs[-1].line == f"line {MAX_LOG_LINES + 99}"
    assert kept.estimated_completion is not None and kept.started_at is not None
    hold.set()
    assert (await finished(runner, task.id)).status == "completed"


async def test_restart_marks_what_was_running_or_pending_interrupted(store: Store, tmp_path: Path) -> None:
    runner, _ = make_runner(store, max_concurrent=1)
    inside = asyncio.Event()

    async def work(ctx: TaskContext) -> dict[str, Any]:
        async with ctx.step("copy"):
            await ctx.progress(0.3, "copying")
            inside.set()
            await asyncio.Event().wait()
        return {}

    running = await runner.submit("backup", work, steps=["copy", "verify"])
    queued = await runner.submit("backup", work)
    async with asyncio.timeout(DEADLINE):
        await inside.wait()
    waiting = await runner.submit("noop", _noop)
    await runner.cancel(queued.id)  # a finished task stays as it is across the restart

    async def progress_flushed() -> bool:
        return (await stored(store, running.id)).progress == pytest.approx(0.3)

    await until(progress_flushed, "the progress to be written")
    await store.close()  # as after a crash: the runner never got to close

    reopened = Store(str(tmp_path / "vigil.db"), SelfMetrics())
    await reopened.open()
    try:
        second, bus = make_runner(reopened)
        sub = bus.subscribe({"task_state_changed"})
        interrupted = await second.recover()
        assert set(interrupted) == {running.id, waiting.id}  # the noop had not run yet (limit 1)
        task = await stored(reopened, running.id)
        assert task.status == "interrupted" and task.completed_at is not None
        assert task.error == "Vigil stopped while the task was running (found at start-up)"
        assert [(s.name, s.status) for s in task.steps] == [("copy", "interrupted"), ("verify", "pending")]
        assert task.logs[-1].line.startswith("interrupted: ")
        assert task.progress == pytest.approx(0.3)
        assert (await stored(reopened, waiting.id)).status == "interrupted"
        assert (await stored(reopened, queued.id)).status == "cancelled"
        assert [e.data["status"] for e in drain(sub)] == ["interrupted", "interrupted"]
        assert await second.recover() == []
    finally:
        await reopened.close()
        await runner.close(grace=1.0)  # its store is closed: it gives up on writes without raising


async def _noop(ctx: TaskContext) -> dict[str, Any]:
    return {}


async def test_a_clean_stop_interrupts_running_tasks_after_their_cleanup(store: Store) -> None:
    runner, _ = make_runner(store, max_concurrent=1)
    inside = asyncio.Event()
    cleaned: list[str] = []

    async def work(ctx: TaskContext) -> dict[str, Any]:
        try:
            inside.set()
            await asyncio.Event().wait()
        finally:
            cleaned.append(ctx.task_id)
        return {}

    running = await runner.submit("scan", work)
    queued = await runner.submit("scan", work)
    async with asyncio.timeout(DEADLINE):
        await inside.wait()
    await runner.close()
    assert cleaned == [running.id]
    for task_id in (running.id, queued.id):
        task = await stored(store, task_id)
        assert task.status == "interrupted" and task.error == "daemon stopped" and task.completed_at is not None
    with pytest.raises(RunnerStopped):
        await runner.submit("scan", work)


async def test_prune_removes_only_finished_tasks_past_retention(store: Store) -> None:
    runner, _ = make_runner(store)
    old = await finished(runner, (await runner.submit("noop", _noop)).id)
    recent = await finished(runner, (await runner.submit("noop", _noop)).id)
    old.completed_at = time.time() - 2 * 86400
    await rows.save(store, rows.encode(to_row(old)))
    gate = asyncio.Event()

    async def slow(ctx: TaskContext) -> dict[str, Any]:
        await gate.wait()
        return {}

    running = await runner.submit("slow", slow)
    await runner.configure(TasksConfig(max_concurrent=2, retention=86400))
    assert await runner.prune() == 1
    assert await rows.get(store, old.id) is None
    assert await rows.get(store, recent.id) is not None and await rows.get(store, running.id) is not None
    gate.set()
    await finished(runner, running.id)


async def test_unknown_ids_and_bad_input(store: Store) -> None:
    runner, _ = make_runner(store)
    assert await runner.get("task_nope") is None
    with pytest.raises(TaskNotFound):
        await runner.wait("task_nope")
    with pytest.raises(ValueError, match="unique"):
        await runner.submit("x", _noop, steps=["a", "a"])
    with pytest.raises(TypeError):
        await runner.submit("x", _noop, params={"f": object()})
    _, total, _ = await runner.page(10, 0)
    assert total == 0  # nothing was recorded for the refused submissions
