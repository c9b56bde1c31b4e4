"""Managed services through the real daemon: /api/v1/units and the start/stop/restart action,
the allowlist (403 for anything else), scopes, reloads, and supervised programs across Vigil's
own stop and kill -9. systemd units are served by tests/checks/fake_systemctl.py."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from tests.checks.fake_systemctl import install
from tests.conftest import Vigil, wait_for

PY = sys.executable
SLEEPER = [PY, "-c", "import time; print('worker up', flush=True); time.sleep(600)"]


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def fake_systemctl(root: Path, units: dict[str, dict[str, Any]]) -> str:
    """A systemctl (tests/checks/fake_systemctl.py) that knows these units."""
    return str(install(root / "fake-systemd", units))


def unit_config(systemctl: str) -> dict[str, Any]:
    return {
        "check_runner": {"systemctl": systemctl},
        "units": [
            {"name": "worker", "command": SLEEPER, "description": "a supervised worker", "restart_delay": "100ms"},
            {"name": "idle", "command": SLEEPER, "autostart": False},
            {"name": "web", "unit": "web.service", "description": "the web server"},
            {"name": "db", "unit": "db.service"},
        ],
    }


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Vigil]:
    root = tmp_path_factory.mktemp("units")
    systemctl = fake_systemctl(root, {"web.service": {
        "ActiveState": "active", "SubState": "running", "MainPID": 4242, "NRestarts": 2,
        "MemoryCurrent": 152043520, "Description": "Web server",
        "ActiveEnterTimestamp": int(time.time()) - 3700,
    }, "db.service": {"ActiveState": "failed", "Description": "Database", "ExecMainStatus": 2, "start_fails": True}})
    v = Vigil(root, unit_config(systemctl))
    v.start()
    yield v
    assert v.stop() == 0


def make_key(agent: Vigil, role: str) -> str:
    r = agent.post("/api/v1/api-keys", {"name": f"units {role}", "role": role})
    assert r.status == 201, r
    return r.json()["data"]["key"]


def assert_error(r: Any, status: int, error_type: str) -> dict[str, Any]:
    assert r.status == status, r
    body = r.json()
    assert body["status"] == "error" and body["errorType"] == error_type and body["error"]
    assert body["request_id"] == r.headers["X-Request-ID"]
    return body


def unit(agent: Vigil, name: str) -> dict[str, Any]:
    r = agent.get(f"/api/v1/units/{name}")
    assert r.status == 200, r
    return r.json()["data"]


def test_list_shows_the_configured_units(agent: Vigil) -> None:
    r = agent.get("/api/v1/units")
    assert r.status == 200, r
    data = r.json()["data"]
    by_name = {u["name"]: u for u in data["units"]}
    assert list(by_name) == ["worker", "idle", "web", "db"] and data["total"] == 4

    worker = by_name["worker"]
    assert worker["kind"] == "supervised" and worker["command"] == SLEEPER and worker["unit"] is None
    assert worker["status"] == "running" and alive(worker["pid"])
    assert worker["memory_bytes"] > 0 and worker["memory"].endswith("MB")
    assert worker["uptime_seconds"] >= 0 and worker["uptime"].endswith("s")
    assert worker["description"] == "a supervised worker"
    assert by_name["idle"]["status"] == "stopped" and by_name["idle"]["pid"] is None

    web = by_name["web"]
    assert web["kind"] == "systemd" and web["unit"] == "web.service"
    assert web["status"] == "running" and web["active_state"] == "active" and web["sub_state"] == "running"
    assert web["pid"] == 4242 and web["restarts"] == 2
    assert web["memory_bytes"] == 152043520 and web["memory"] == "145MB"
    assert 3690 <= web["uptime_seconds"] <= 3800 and web["uptime"].startswith("1h 1m")
    assert web["description"] == "the web server"  # config wins over systemd's Description

    db = by_name["db"]
    assert db["status"] == "failed" and db["sub_state"] == "failed" and db["last_exit_code"] == 2
    assert db["description"] == "Database" and db["pid"] is None and db["uptime"] is None
    assert db["memory_bytes"] is None and db["memory"] is None

    assert data["counts"] == {"running": 2, "stopped": 1, "failed": 1, "starting": 0, "unknown": 0}
    stopped = agent.get("/api/v1/units?status=stopped").json()["data"]
    assert [u["name"] for u in stopped["units"]] == ["idle"] and stopped["total"] == 1
    found = agent.get("/api/v1/units?search=WEB.SERV").json()["data"]
    assert [u["name"] for u in found["units"]] == ["web"]
    assert_error(agent.get("/api/v1/units?status=sleeping"), 400, "bad_data")


def test_supervised_log_file(agent: Vigil) -> None:
    log_file = agent.state_dir / "units" / "worker.log"
    wait_for(lambda: log_file.exists() and "worker up" in log_file.read_text().splitlines(), 10,
             "the worker's output in its log file")


def test_restart_changes_the_pid_and_is_an_event(agent: Vigil) -> None:
    import aiohttp

    before = unit(agent, "worker")["pid"]

    async def scenario() -> tuple[Any, dict[str, Any]]:
        headers = {"Authorization": f"Bearer {agent.admin_key}"}
        async with aiohttp.ClientSession() as session, session.ws_connect(
                agent.url + "/api/v1/events?types=unit_action", headers=headers) as ws:
            assert (await ws.receive_json(timeout=5))["type"] == "hello"
            async with session.post(agent.url + "/api/v1/units/worker/action", json={"action": "restart"},
                                    headers=headers) as r:
                body = (r.status, await r.json())
            return body, await ws.receive_json(timeout=5)

    (status, body), event = asyncio.run(scenario())
    assert status == 200, body
    result = body["data"]
    assert result["unit"] == "worker" and result["action"] == "restart" and result["status"] == "completed"
    assert result["duration_ms"] > 0 and result["message"]
    after = result["state"]["pid"]
    assert after != before and alive(after) and not alive(before)
    assert unit(agent, "worker")["pid"] == after
    assert event["type"] == "unit_action"
    assert event["data"]["unit"] == "worker" and event["data"]["action"] == "restart"
    assert event["data"]["status"] == "completed" and event["data"]["by"]
    wait_for(lambda: any("unit_action" in line and "worker" in line for line in agent.log().splitlines()), 5,
             "the action in Vigil's log")


def test_stop_and_start(agent: Vigil) -> None:
    r = agent.post("/api/v1/units/idle/action", {"action": "start"})
    assert r.status == 200, r
    pid = r.json()["data"]["state"]["pid"]
    assert r.json()["data"]["state"]["status"] == "running" and alive(pid)
    r = agent.post("/api/v1/units/idle/action", {"action": "stop"})
    assert r.status == 200 and r.json()["data"]["state"]["status"] == "stopped", r
    assert not alive(pid)


def test_systemd_actions_go_through_systemctl(agent: Vigil) -> None:
    r = agent.post("/api/v1/units/web/action", {"action": "stop"})
    assert r.status == 200, r
    data = r.json()["data"]
    assert data["status"] == "completed" and data["state"]["status"] == "stopped"
    assert data["state"]["active_state"] == "inactive"
    r = agent.post("/api/v1/units/web/action", {"action": "start"})
    assert r.status == 200 and r.json()["data"]["state"]["status"] == "running", r


def test_failed_systemd_action_says_why(agent: Vigil) -> None:
    r = agent.post("/api/v1/units/db/action", {"action": "restart"})
    assert r.status == 200, r
    data = r.json()["data"]
    assert data["status"] == "failed" and "Job for db.service failed" in data["message"]
    assert data["state"]["status"] == "failed" and data["state"]["last_exit_code"] == 1


def test_units_off_the_allowlist_are_403(agent: Vigil) -> None:
    for name in ("nginx", "ssh.service", "web.service", "Worker"):
        body = assert_error(agent.post(f"/api/v1/units/{name}/action", {"action": "restart"}), 403, "forbidden")
        assert "allowlist" in body["error"] and body["details"]["allowed"] == ["worker", "idle", "web", "db"]
        assert_error(agent.get(f"/api/v1/units/{name}"), 403, "forbidden")


def test_viewer_cannot_act(agent: Vigil) -> None:
    viewer = make_key(agent, "viewer")
    assert agent.get("/api/v1/units", key=viewer).status == 200
    assert agent.get("/api/v1/units/worker", key=viewer).status == 200
    body = assert_error(agent.post("/api/v1/units/worker/action", {"action": "stop"}, key=viewer), 403, "forbidden")
    assert body["details"]["required_scope"] == "admin:services"
    operator = make_key(agent, "operator")
    assert_error(agent.post("/api/v1/units/worker/action", {"action": "stop"}, key=operator), 403, "forbidden")
    assert unit(agent, "worker")["status"] == "running"
    assert_error(agent.post("/api/v1/units/worker/action", {"action": "stop"}, key=None), 401, "unauthorized")


def test_bad_action_is_400(agent: Vigil) -> None:
    body = assert_error(agent.post("/api/v1/units/worker/action", {"action": "reload"}), 400, "bad_data")
    assert body["details"]["errors"][0]["field"] == "action"
    assert_error(agent.post("/api/v1/units/worker/action", {}), 400, "bad_data")
    assert_error(agent.post("/api/v1/units/worker/action", {"action": "stop", "force": True}), 400, "bad_data")
    assert_error(agent.request("POST", "/api/v1/units/worker/action", raw=b"stop"), 400, "bad_data")
    assert_error(agent.request("POST", "/api/v1/units/worker/action"), 400, "bad_data")
    assert unit(agent, "worker")["status"] == "running"


def test_openapi_documents_the_routes(agent: Vigil) -> None:
    doc = agent.get("/api/v1/openapi.json").json()
    action = doc["paths"]["/api/v1/units/{name}/action"]["post"]
    assert action["x-required-scope"] == "admin:services" and action["tags"] == ["units"]
    assert "403" in action["responses"]
    schema = doc["components"]["schemas"]["UnitAction"]
    assert schema["properties"]["action"]["enum"] == ["start", "stop", "restart"]
    assert doc["paths"]["/api/v1/units"]["get"]["x-required-scope"] == "read:system"


def test_reload_changes_the_allowlist(make_vigil, tmp_path: Path) -> None:
    v = make_vigil(unit_config(fake_systemctl(tmp_path, {}))).start()
    worker = unit(v, "worker")["pid"]
    doc = yaml.safe_load(v.config_path.read_text())
    doc["units"] = [{"name": "extra", "command": SLEEPER}]
    v.write_config(doc)
    wait_for(lambda: [u["name"] for u in v.get("/api/v1/units").json()["data"]["units"]] == ["extra"], 10,
             "the reloaded allowlist")
    wait_for(lambda: not alive(worker), 10, "the removed worker to be stopped")
    assert_error(v.post("/api/v1/units/worker/action", {"action": "start"}), 403, "forbidden")
    extra = wait_for(lambda: unit(v, "extra")["pid"], 10, "the added unit to autostart")
    assert alive(extra)
    assert v.stop() == 0
    assert not alive(extra)  # Vigil's stop stops what it supervises


def test_kill9_leftover_is_replaced_not_duplicated(make_vigil, tmp_path: Path) -> None:
    v = make_vigil(unit_config(fake_systemctl(tmp_path, {}))).start()
    orphan = unit(v, "worker")["pid"]
    v.kill9()
    assert alive(orphan)  # its own session: it outlives a Vigil killed with SIGKILL
    try:
        v.start()
        fresh = unit(v, "worker")["pid"]
        assert fresh != orphan and alive(fresh)
        wait_for(lambda: not alive(orphan), 10, "the orphan to be stopped")
        assert v.stop() == 0
    finally:
        if alive(orphan):
            os.kill(orphan, signal.SIGKILL)
