"""Vigil's own components through the API (`/api/v1/services`): list, detail with masked config and
recent errors, restarts in place that keep the daemon working, and the refusals (409, 404, 403)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import signal
import sqlite3
from typing import Any

import aiohttp
import yaml

from agent.config.secrets import MASK
from tests.conftest import Vigil, free_port, wait_for

NAMES = ["store", "scheduler", "collectors", "checks", "history", "events", "config", "units", "api"]
RESTARTABLE = {"store", "scheduler", "collectors", "checks", "history", "units"}


def base(**extra: Any) -> dict[str, Any]:
    """The tests poll faster than an operator would: lift the per-minute limits."""
    return {"api": {"rate_limit": {"categories": {"health": 100_000, "services": 100_000}}}, **extra}


def sleeper(name: str = "worker", **extra: Any) -> dict[str, Any]:
    """A supervised command that runs until stopped, with a secret in its environment."""
    return {"name": name, "command": ["/bin/sleep", "300"], "environment": {"TOKEN": "${env:VIGIL_TEST_SECRET}"},
            "stop_timeout": "2s", **extra}


def services(v: Vigil, key: str | bool = True) -> dict[str, dict[str, Any]]:
    r = v.get("/api/v1/services", key=key)
    assert r.status == 200, r
    return {s["name"]: s for s in r.json()["data"]["services"]}


def service(v: Vigil, name: str) -> dict[str, Any]:
    r = v.get(f"/api/v1/services/{name}")
    assert r.status == 200, r
    return r.json()["data"]


def restart(v: Vigil, name: str) -> dict[str, Any]:
    r = v.post(f"/api/v1/services/{name}/restart")
    assert r.status == 200, r
    data = r.json()["data"]
    assert data["status"] == "completed", data
    return data


def unit_pid(v: Vigil, name: str) -> int | None:
    r = v.get(f"/api/v1/units/{name}")
    assert r.status == 200, r
    unit = r.json()["data"]
    return unit["pid"] if unit["status"] == "running" else None


def test_list_detail_and_refusals(make_vigil) -> None:
    v = make_vigil(base(units=[sleeper()]), env={"VIGIL_TEST_SECRET": "s3cret-value"}).start()
    wait_for(lambda: unit_pid(v, "worker"), 10, "the supervised command to run")
    listed = services(v)
    assert list(listed) == NAMES
    for name, s in listed.items():
        assert (s["status"], s["health"], s["health_reason"]) == ("running", "healthy", None), s
        assert s["uptime"] >= 0 and s["started_at"].endswith("Z")
        assert s["restartable"] == (name in RESTARTABLE)
    assert listed["store"]["type"] == "Store" and listed["checks"]["type"] == "CheckRunner"
    assert listed["checks"]["dependencies"] == ["store", "scheduler", "events"]
    assert listed["store"]["metrics"]["write_queue_length"] == 0 and listed["store"]["metrics"]["db_bytes"] > 0
    assert listed["scheduler"]["metrics"]["jobs"] > 0
    assert "cpu" in listed["collectors"]["metrics"]["enabled"] and listed["collectors"]["metrics"]["failing"] == {}
    assert listed["units"]["metrics"] == {"count": 1, "running": 1, "failed": []}
    assert listed["api"]["metrics"]["requests_served"] > 0

    store = service(v, "store")
    assert store["config"]["path"] == str(v.state_dir / "vigil.db")
    assert set(store["dependents"]) >= {"checks", "history", "config", "api"}
    assert store["recent_errors"] == []
    units = service(v, "units")
    assert units["config"]["units"][0]["environment"] == {"TOKEN": MASK}
    assert "s3cret-value" not in v.get("/api/v1/services/units").body.decode()

    # A viewer may look, not restart.
    r = v.post("/api/v1/api-keys", {"name": "viewer", "role": "viewer"})
    assert r.status == 201, r
    viewer = r.json()["data"]["key"]
    assert set(services(v, key=viewer)) == set(NAMES)
    r = v.post("/api/v1/services/checks/restart", key=viewer)
    assert r.status == 403 and r.json()["errorType"] == "forbidden", r

    for name in ("api", "events", "config"):
        r = v.post(f"/api/v1/services/{name}/restart")
        body = r.json()
        assert r.status == 409 and body["status"] == "error" and body["errorType"] == "conflict", r
        assert "cannot be restarted in place" in body["error"] and "systemctl restart vigil" in body["error"]
        assert body["details"] == {"service": name} and body["request_id"]
    for r in (v.get("/api/v1/services/nope"), v.post("/api/v1/services/nope/restart")):
        assert r.status == 404 and r.json()["details"]["known"] == NAMES, r
    assert v.stop() == 0


def test_recent_errors_are_filed_by_component(make_vigil) -> None:
    v = make_vigil(base()).start()
    for _ in range(3):  # the same warning three times: one entry, counted
        assert v.get("/api/v1/services", key="not-a-key").status == 401
    api = service(v, "api")
    [entry] = [e for e in api["recent_errors"] if e["event"] == "auth_failed"]
    assert entry["count"] == 3 and entry["level"] == "warning" and entry["timestamp"].endswith("Z")
    assert entry["error"] and entry["context"]["path"] == "/api/v1/services"
    assert api["health"] == "healthy"  # warnings are news, not a sickness

    # A real config mistake: the reload is rejected, the config component says so with file:line.
    doc = yaml.safe_load(v.config_path.read_text())
    doc["collectors"]["interval"] = "soon"
    v.write_config(doc)
    v.signal(signal.SIGHUP)
    config = wait_for(lambda: (s := service(v, "config"))["recent_errors"] and s, 10, "config_rejected on file")
    [rejected] = config["recent_errors"]
    assert rejected["event"] == "config_rejected" and rejected["level"] == "error"
    assert str(v.config_path) in rejected["error"] and "interval" in rejected["error"]
    assert config["health"] == "degraded" and "rejected" in config["health_reason"]
    assert config["metrics"]["last_reload_ok"] is False
    assert service(v, "store")["recent_errors"] == []  # filed under its own component only
    assert v.stop() == 0


def test_restart_checks_keeps_state_and_is_audited(make_vigil) -> None:
    port = free_port()  # nothing listens: the check fails
    check = {"name": "db", "type": "tcp", "host": "127.0.0.1", "port": port, "interval": "1h", "fall": 1}
    v = make_vigil(base(checks=[check])).start()
    r = v.post("/api/v1/checks/db/run")
    assert r.status == 200, r
    before = v.get("/api/v1/checks/db").json()["data"]
    assert before["state"] == "critical" and before["incident_id"] is not None
    uptime_before = service(v, "checks")["uptime"]

    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        headers = {"Authorization": f"Bearer {v.admin_key}"}
        async with aiohttp.ClientSession() as session, session.ws_connect(
            v.url + "/api/v1/events?types=service_restarted", headers=headers
        ) as ws:
            assert (await ws.receive_json(timeout=5))["type"] == "hello"
            async with session.post(v.url + "/api/v1/services/checks/restart", headers=headers) as resp:
                assert resp.status == 200
                answer = await resp.json()
            return answer["data"], await ws.receive_json(timeout=5)

    answer, event = asyncio.run(scenario())
    assert answer["service"] == "checks" and answer["action"] == "restart" and answer["status"] == "completed"
    assert answer["duration_ms"] >= 0 and "1 checks" in answer["message"]
    assert event["type"] == "service_restarted"
    assert event["data"]["service"] == "checks" and event["data"]["status"] == "completed"

    after = v.get("/api/v1/checks/db").json()["data"]
    for key in ("state", "state_since", "last_result", "incident_id", "consecutive_failures"):
        assert after[key] == before[key], key
    checks = service(v, "checks")
    assert checks["uptime"] < uptime_before + 1 and checks["metrics"]["by_state"] == {"critical": 1}

    db = sqlite3.connect(v.state_dir / "vigil.db")
    try:
        rows = db.execute("SELECT actor, target, outcome, details FROM audit_log WHERE event_type='service_restarted'"
                          ).fetchall()
    finally:
        db.close()
    assert len(rows) == 1 and rows[0][1:3] == ("service:checks", "success") and rows[0][0].startswith("key_")
    assert json.loads(rows[0][3])["message"] == answer["message"]
    assert v.stop() == 0


def test_restarts_leave_the_daemon_working(make_vigil) -> None:
    port = free_port()
    check = {"name": "tick", "type": "tcp", "host": "127.0.0.1", "port": port, "interval": "1s", "timeout": "1s"}
    v = make_vigil(base(checks=[check], units=[sleeper()]), env={"VIGIL_TEST_SECRET": "x"}).start()
    jobs = services(v)["scheduler"]["metrics"]["jobs"]

    # Store: writes sent while it restarts wait for the new connection; none fails.
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        writes = [pool.submit(v.post, "/api/v1/api-keys", {"name": f"k{i}"}) for i in range(12)]
        restarted = pool.submit(restart, v, "store")
        assert restarted.result()["service"] == "store"
        assert [w.result().status for w in writes] == [201] * 12
    assert v.post("/api/v1/api-keys", {"name": "after"}).status == 201
    assert service(v, "store")["health"] == "healthy"

    # Scheduler: the same jobs, and they still run.
    runs = lambda: v.metric("vigil_scheduler_job_runs_total", {"job": "check", "outcome": "success"}) or 0.0  # noqa: E731
    restart(v, "scheduler")
    after_restart = runs()
    wait_for(lambda: runs() >= after_restart + 2, 10, "the check job to run under the new scheduler")
    scheduler = services(v)["scheduler"]
    assert scheduler["metrics"]["jobs"] == jobs and scheduler["health"] == "healthy" and scheduler["uptime"] < 10

    # Collectors come back with a fresh snapshot.
    restart(v, "collectors")
    wait_for(lambda: v.get("/api/v1/status").json()["data"]["collectors"].get("cpu"), 10, "a new cpu snapshot")

    # History: flushed, queries answer.
    assert "flushed" in restart(v, "history")["message"]
    r = v.get("/api/v1/query?query=vigil_build_info")
    assert r.status == 200 and r.json()["data"]["result"], r

    # Units: the supervised command is stopped and started again (a new process).
    pid = wait_for(lambda: unit_pid(v, "worker"), 10, "the supervised command to run")
    assert "stopped 1 supervised" in restart(v, "units")["message"]
    new_pid = wait_for(lambda: unit_pid(v, "worker"), 10, "the supervised command to run again")
    assert new_pid != pid

    assert all(s["health"] == "healthy" for s in services(v).values()), services(v)
    assert v.stop() == 0
