"""Tasks through the daemon: the routes, scopes, events, the CLI (progress bar included), a cancel mid-way,
and tasks left `interrupted` by a clean stop or a `kill -9` of the daemon running them.

The tasks come from the routes that start them: a cleanup of old temp files (quick) and the components'
stress diagnostics (each stress test runs for a fixed time, so the task is reliably still running when
it is cancelled or the daemon is killed)."""

from __future__ import annotations

import asyncio
import os
import pty
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, Vigil, wait_for
from tests.test_cli import vigil_cli

STATUSES = ("pending", "running", "completed", "failed", "cancelled", "interrupted")
STRESSED = ["store", "history", "api"]  # the components with a stress test: about 2 s each


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Vigil]:
    root = tmp_path_factory.mktemp("tasks")
    scratch = root / "scratch"
    scratch.mkdir()
    v = Vigil(root, {"cleanup": {"temp_dirs": [str(scratch)]}, "collectors": {"interval": "1h"}})
    v.start()
    yield v
    assert v.stop() == 0


def make_key(v: Vigil, role: str) -> str:
    r = v.post("/api/v1/api-keys", {"name": f"tasks {role}", "role": role})
    assert r.status == 201, r
    return str(r.json()["data"]["key"])


def task(v: Vigil, task_id: str) -> dict[str, Any]:
    r = v.get(f"/api/v1/tasks/{task_id}")
    assert r.status == 200, r
    return dict(r.json()["data"])


def started(r: Any, type_: str) -> str:
    """The task id of a 202 answer, after checking its shape."""
    assert r.status == 202, r
    data = r.json()["data"]
    assert data["type"] == type_ and data["status"] == "pending"
    assert r.headers["Location"] == data["links"]["self"] == f"/api/v1/tasks/{data['task_id']}"
    return str(data["task_id"])


def start_stress(v: Vigil, key: str | bool = True) -> str:
    return started(v.post("/api/v1/components/diagnostics", {"components": STRESSED, "tests": ["stress"]}, key=key),
                   "diagnostics")


def wait_running_step(v: Vigil, task_id: str) -> dict[str, Any]:
    def running() -> dict[str, Any] | None:
        t = task(v, task_id)
        return t if t["status"] == "running" and any(s["status"] == "running" for s in t["steps"]) else None

    return wait_for(running, 20, f"a step of {task_id} to run")


def old_files(scratch: Path, count: int) -> None:
    month_ago = time.time() - 30 * 86400
    for i in range(count):
        path = scratch / f"old-{i}.tmp"
        path.write_bytes(b"x" * 100)
        os.utime(path, (month_ago, month_ago))


def test_routes_answer_for_unknown_tasks_and_bad_input(agent: Vigil) -> None:
    listed = agent.get("/api/v1/tasks?type=no-such-type")
    assert listed.status == 200, listed
    data = listed.json()["data"]
    assert data["tasks"] == [] and data["pagination"]["total"] == 0 and data["pagination"]["has_more"] is False
    assert data["summary"] == {s: 0 for s in STATUSES}
    for method in ("GET", "DELETE"):
        r = agent.request(method, "/api/v1/tasks/task_0000000000000000")
        assert r.status == 404 and r.json()["errorType"] == "not_found", r
    assert agent.get("/api/v1/tasks?status=done").status == 400
    assert agent.get("/api/v1/tasks?cursor=not-a-cursor").status == 400
    assert agent.get("/api/v1/tasks?limit=0").status == 400
    viewer = make_key(agent, "viewer")
    assert agent.get("/api/v1/tasks?status=running&type=cleanup", key=viewer).status == 200
    assert agent.get("/api/v1/tasks", key=False).status == 401

    doc = agent.get("/api/v1/openapi.json").json()
    assert set(doc["paths"]["/api/v1/tasks"]) == {"get"}
    assert set(doc["paths"]["/api/v1/tasks/{id}"]) == {"get", "delete"}
    assert "409" in doc["paths"]["/api/v1/tasks/{id}"]["delete"]["responses"]


def test_a_cleanup_task_from_202_to_its_result_with_events_and_cli(agent: Vigil) -> None:
    import aiohttp

    old_files(Path(agent.root) / "scratch", 5)
    headers = {"Authorization": f"Bearer {agent.admin_key}"}

    async def scenario() -> tuple[str, list[dict[str, Any]]]:
        async with aiohttp.ClientSession() as session, session.ws_connect(
            agent.url + "/api/v1/events?types=task_state_changed,task_progress", headers=headers,
        ) as ws:
            assert (await ws.receive_json(timeout=5))["type"] == "hello"
            async with session.post(agent.url + "/api/v1/maintenance/cleanup", headers=headers,
                                    json={"categories": ["temp_files"]}) as r:
                assert r.status == 202
                task_id = (await r.json())["data"]["task_id"]
            events = []
            while True:
                event = await ws.receive_json(timeout=20)
                if event["data"]["id"] != task_id:
                    continue
                events.append(event)
                if event["type"] == "task_state_changed" and event["data"]["status"] in STATUSES[2:]:
                    return task_id, events

    task_id, events = asyncio.run(scenario())
    states = [(e["data"]["previous"], e["data"]["status"]) for e in events if e["type"] == "task_state_changed"]
    assert states == [(None, "pending"), ("pending", "running"), ("running", "completed")]
    steps = [e["data"]["step"] for e in events if e["type"] == "task_progress" and "step" in e["data"]]
    assert steps == [{"name": "temp_files", "status": "running"}, {"name": "temp_files", "status": "completed"}]

    done = task(agent, task_id)
    assert done["status"] == "completed" and done["progress"] == 1.0 and done["error"] is None
    assert done["result"]["categories"]["temp_files"]["items"] == 5
    assert done["steps"] == [{"name": "temp_files", "status": "completed", "started_at": done["steps"][0]["started_at"],
                              "completed_at": done["steps"][0]["completed_at"], "error": None}]
    assert done["created_at"] <= done["started_at"] <= done["completed_at"]
    assert done["params"]["categories"] == ["temp_files"] and done["created_by"].startswith("key_")
    assert done["logs"] and done["logs_dropped"] == 0

    listed = agent.get("/api/v1/tasks?status=completed&type=cleanup").json()["data"]
    assert task_id in [t["id"] for t in listed["tasks"]] and "logs" not in listed["tasks"][0]
    assert listed["summary"]["completed"] >= 1 and listed["summary"]["running"] == 0

    conflict = agent.delete(f"/api/v1/tasks/{task_id}")
    assert conflict.status == 409 and conflict.json()["details"]["status"] == "completed", conflict

    waited = vigil_cli(agent, "tasks", "wait", task_id)
    assert waited.returncode == 0, waited.stderr
    assert f"{task_id} cleanup: completed 100%" in waited.stderr  # plain lines when not on a terminal
    assert waited.stdout.startswith(f"{task_id} cleanup: completed 100%")
    shown = vigil_cli(agent, "tasks", "show", task_id)
    assert shown.returncode == 0 and "completed   temp_files" in shown.stdout and "result:" in shown.stdout
    listed_cli = vigil_cli(agent, "tasks", "list", "--status", "completed").stdout.splitlines()
    assert listed_cli[0].split() == ["ID", "TYPE", "STATUS", "PROGRESS", "CREATED", "BY"]
    assert any(line.split()[:4] == [task_id, "cleanup", "completed", "100%"] for line in listed_cli[1:-1])
    assert re.fullmatch(r"\d+ tasks; all tasks by status: .*\d+ completed.*", listed_cli[-1]), listed_cli[-1]
    refused = vigil_cli(agent, "tasks", "cancel", task_id)
    assert refused.returncode == 1 and "HTTP 409" in refused.stderr

    bar = on_a_terminal(agent, "tasks", "wait", task_id)
    assert re.search(r"\r\[#{30}\] completed 100%", bar), repr(bar)


def on_a_terminal(v: Vigil, *args: str) -> str:
    """What the CLI writes to stderr when stderr is a terminal (a real pseudo-terminal)."""
    controller, terminal = pty.openpty()
    env = {k: val for k, val in os.environ.items() if k != "VIGIL_API_KEY"}
    try:
        proc = subprocess.run([sys.executable, "-m", "agent", *args, "--config", str(v.config_path)], cwd=REPO,
                              stdout=subprocess.PIPE, stderr=terminal, timeout=60, env=env)
        assert proc.returncode == 0, proc.stdout
    finally:
        os.close(terminal)
    out = b""
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # EIO: the terminal side is closed and everything was read
            break
        if not chunk:
            break
        out += chunk
    os.close(controller)
    return out.decode(errors="replace")


def test_a_task_is_cancelled_mid_way_with_the_scope_that_started_it(agent: Vigil) -> None:
    starter, other_operator = make_key(agent, "operator"), make_key(agent, "operator")
    viewer = make_key(agent, "viewer")
    task_id = start_stress(agent, key=starter)
    wait_running_step(agent, task_id)

    denied = agent.delete(f"/api/v1/tasks/{task_id}", key=viewer)
    assert denied.status == 403 and denied.json()["details"]["required_scope"] == "write:maintenance", denied
    r = agent.delete(f"/api/v1/tasks/{task_id}", key=other_operator)
    assert r.status == 200, r
    cancelled = r.json()["data"]
    assert cancelled["status"] == "cancelled" and cancelled["cancel_requested"] is True
    assert cancelled["completed_at"] is not None and cancelled["result"] is None
    statuses = [s["status"] for s in cancelled["steps"]]
    cut = statuses.index("cancelled")  # the step that was running: its work was cancelled and unwound
    assert set(statuses[:cut]) <= {"completed"} and set(statuses[cut + 1:]) <= {"pending"}, statuses
    assert any(line["line"].startswith("cancel requested by key_") for line in cancelled["logs"])

    assert task(agent, task_id)["status"] == "cancelled"  # as committed, not only as answered
    again = agent.delete(f"/api/v1/tasks/{task_id}", key=other_operator)
    assert again.status == 409 and again.json()["details"]["status"] == "cancelled"
    summary = agent.get("/api/v1/tasks").json()["data"]["summary"]
    assert summary["running"] == 0 and summary["cancelled"] >= 1
    # The runner took the next task at once: the cancelled one no longer holds a slot.
    follow_up = started(agent.post("/api/v1/maintenance/cleanup", {"categories": ["temp_files"]}), "cleanup")
    assert wait_for(lambda: task(agent, follow_up)["status"] == "completed", 20, "the next task to complete")

    first = agent.get("/api/v1/tasks?limit=1").json()["data"]
    assert first["tasks"][0]["id"] == follow_up and first["pagination"]["has_more"] is True  # newest first
    cursor = first["pagination"]["next_cursor"]
    second = agent.get(f"/api/v1/tasks?limit=1&cursor={cursor}").json()["data"]
    assert second["tasks"][0]["id"] == task_id
    tampered = cursor[:-1] + ("A" if cursor[-1] != "A" else "B")
    assert agent.get(f"/api/v1/tasks?limit=1&cursor={tampered}").status == 400


def test_a_stop_or_a_kill_9_mid_task_leaves_it_interrupted(make_vigil: Any) -> None:
    v = make_vigil({"collectors": {"interval": "1h"}}).start()
    killed = start_stress(v)
    wait_running_step(v, killed)
    v.kill9()
    v.start()
    after_kill = task(v, killed)
    assert after_kill["status"] == "interrupted" and after_kill["completed_at"] is not None, after_kill
    assert after_kill["error"] == "Vigil stopped while the task was running (found at start-up)"
    statuses = [s["status"] for s in after_kill["steps"]]
    assert "running" not in statuses and statuses.count("interrupted") <= 1, statuses
    assert after_kill["logs"][-1]["line"].startswith("interrupted: ")
    assert v.delete(f"/api/v1/tasks/{killed}").status == 409

    stopped = start_stress(v)
    wait_running_step(v, stopped)
    assert v.stop() == 0
    v.start()
    after_stop = task(v, stopped)
    assert after_stop["status"] == "interrupted" and after_stop["error"] == "daemon stopped", after_stop
    statuses = [s["status"] for s in after_stop["steps"]]
    assert statuses.count("interrupted") == 1 and "running" not in statuses, statuses
    summary = v.get("/api/v1/tasks").json()["data"]["summary"]
    assert summary["interrupted"] == 2 and summary["running"] == 0 and summary["pending"] == 0
    shown = vigil_cli(v, "tasks", "show", stopped)
    assert shown.returncode == 0 and "interrupted" in shown.stdout and "error: daemon stopped" in shown.stdout
    assert v.stop() == 0


def test_cli_reports_unknown_tasks(agent: Vigil) -> None:
    for verb in ("show", "wait"):
        out = vigil_cli(agent, "tasks", verb, "task_0000000000000000")
        assert out.returncode == 1 and "HTTP 404" in out.stderr, (verb, out.stderr)
