"""The check runner through its doors: config, the checks/incidents/uptime API, /metrics, PromQL,
the CLI, and restarts (state kept, no re-alert). Targets are real TCP listeners opened here."""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO, Vigil, free_port, wait_for


class Listener:
    """A real TCP port that accepts connections until closed (then connects are refused)."""

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.sock: socket.socket | None = None
        self.open()

    def open(self) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.listen(64)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


@pytest.fixture
def listener() -> Any:
    lst = Listener()
    yield lst
    lst.close()


def with_checks(*checks: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """Config with these checks; the tests poll the API far faster than an operator would."""
    return {"checks": list(checks), "api": {"rate_limit": {"categories": {"health": 100_000}}}, **extra}


def tcp_check(name: str, port: int, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": "tcp", "host": "127.0.0.1", "port": port, "interval": "1h", "timeout": "2s",
            **extra}


def run(v: Vigil, name: str) -> dict[str, Any]:
    r = v.post(f"/api/v1/checks/{name}/run")
    assert r.status == 200, r
    return r.json()["data"]


def check(v: Vigil, name: str) -> dict[str, Any]:
    r = v.get(f"/api/v1/checks/{name}")
    assert r.status == 200, r
    return r.json()["data"]


def incidents(v: Vigil, **params: str) -> dict[str, Any]:
    query = "&".join(f"{k}={val}" for k, val in params.items())
    r = v.get("/api/v1/incidents" + (f"?{query}" if query else ""))
    assert r.status == 200, r
    return r.json()["data"]


def test_flap_protection_incident_and_recovery(make_vigil, listener) -> None:
    v = make_vigil(with_checks(tcp_check("db", listener.port, fall=2, rise=2))).start()
    first = run(v, "db")
    assert first["result"]["status"] == "ok"
    assert first["state"]["state"] == "ok"  # the first result sets the state: nothing to flap from

    listener.close()
    one = run(v, "db")
    assert one["result"]["status"] == "critical" and "cannot connect" in one["result"]["message"]
    assert one["state"]["state"] == "ok" and one["state"]["consecutive_failures"] == 1  # one failure is a blip
    assert incidents(v)["pagination"]["total"] == 0
    two = run(v, "db")
    assert two["state"]["state"] == "critical"
    opened = incidents(v)["incidents"]
    assert len(opened) == 1 and opened[0]["check"] == "db" and opened[0]["status"] == "investigating"
    assert opened[0]["severity"] == "critical"
    assert v.metric("vigil_check_status", {"check": "db", "type": "tcp"}) == 2
    assert v.metric("vigil_check_up", {"check": "db"}) == 0
    health = v.get("/api/v1/health").json()["data"]
    assert health["checks"] == {"total": 1, "by_state": {"critical": 1}, "failing": ["db"]}
    assert health["overall"]["status"] == "healthy"  # the host's trouble, not Vigil's

    listener.open()
    assert run(v, "db")["state"]["state"] == "critical"  # one success does not end an outage
    assert run(v, "db")["state"]["state"] == "ok"
    resolved = incidents(v)["incidents"][0]
    assert resolved["status"] == "resolved" and resolved["resolved_at"]
    detail = check(v, "db")
    assert [h["status"] for h in detail["history"]] == ["ok", "ok", "critical", "critical", "ok"]
    assert detail["uptime"]["last_downtime"] is not None
    assert 0 < detail["uptime"]["uptime_percent_24h"] < 100
    assert v.stop() == 0


def test_state_survives_kill9_without_realerting(make_vigil, listener) -> None:
    v = make_vigil(with_checks(tcp_check("web", listener.port, fall=1, rise=1))).start()
    listener.close()
    assert run(v, "web")["state"]["state"] == "critical"
    before = check(v, "web")
    v.kill9()
    v.start()
    after = check(v, "web")
    assert after["state"] == "critical" and after["state_since"] == before["state_since"]
    assert after["incident_id"] == before["incident_id"]
    assert run(v, "web")["state"]["state"] == "critical"
    assert incidents(v)["pagination"]["total"] == 1  # still the same outage: no second incident
    listener.open()
    assert run(v, "web")["state"]["state"] == "ok"
    assert incidents(v)["incidents"][0]["status"] == "resolved"
    assert v.stop() == 0


def test_dependency_down_suppresses_incident(make_vigil) -> None:
    router, app = free_port(), free_port()
    v = make_vigil(with_checks(
        tcp_check("router", router, fall=1),
        tcp_check("app", app, fall=1, depends_on=["router"]),
    )).start()
    assert run(v, "router")["state"]["state"] == "critical"
    app_run = run(v, "app")
    assert app_run["state"]["state"] == "critical"
    assert app_run["state"]["suppressed_by"] == ["router"]
    assert v.metric("vigil_check_suppressed", {"check": "app"}) == 1
    assert [i["check"] for i in incidents(v)["incidents"]] == ["router"]  # only the cause pages
    assert v.stop() == 0


def test_remediation_stops_after_max_attempts_and_resets_on_recovery(make_vigil, listener, tmp_path: Path) -> None:
    marker = tmp_path / "restarts.log"
    script = tmp_path / "fix.sh"
    script.write_text(f"#!/bin/sh\necho fixed >> {marker}\n")
    script.chmod(0o755)
    action = {"exec": [str(script)], "after": 2, "max_attempts": 2, "window": "1h"}
    v = make_vigil(with_checks(tcp_check("svc", listener.port, fall=1, rise=2, on_failure=[action]))).start()
    listener.close()

    def attempts() -> int:
        return len(marker.read_text().splitlines()) if marker.exists() else 0

    for expected in (0, 1, 1, 2, 2, 2, 2):  # after 2 bad results, then every 2 more, at most 2 times
        run(v, "svc")
        wait_for(lambda e=expected: attempts() == e, 10, f"{expected} remediation runs")
    wait_for(lambda: v.metric("vigil_check_remediation_exhausted", {"check": "svc"}) == 1, 10,
             "remediation to be exhausted")
    assert attempts() == 2
    view = check(v, "svc")["remediation"][0]
    assert view["exhausted"] is True and view["attempts_in_window"] == 2
    assert v.metric("vigil_check_remediations_total", {"check": "svc", "outcome": "success"}) == 2

    v.stop()
    v.start()  # exhaustion survives a restart: a restart loop cannot start again by restarting Vigil
    assert check(v, "svc")["remediation"][0]["exhausted"] is True
    run(v, "svc")
    run(v, "svc")
    assert attempts() == 2

    listener.open()
    run(v, "svc")
    assert check(v, "svc")["remediation"][0]["exhausted"] is True  # recovered for 1 of rise=2 results
    run(v, "svc")
    view = check(v, "svc")["remediation"][0]
    assert view["exhausted"] is False and view["attempts_in_window"] == 0
    assert v.metric("vigil_check_remediation_exhausted", {"check": "svc"}) == 0
    v.stop()
    db = sqlite3.connect(v.state_dir / "vigil.db")
    events = [r[0] for r in db.execute(
        "SELECT event_type FROM audit_log WHERE target='check:svc' ORDER BY id")]
    assert events.count("check_remediation") == 4  # started + success, twice
    assert "check_remediation_exhausted" in events


def test_pause_resume_and_scheduled_runs(make_vigil, listener) -> None:
    v = make_vigil(with_checks(tcp_check("fast", listener.port, interval="0.2s", timeout="0.2s"))).start()
    wait_for(lambda: check(v, "fast")["consecutive_successes"] >= 3, 10, "scheduled runs")
    assert v.metric("vigil_scheduler_job_lateness_seconds_count", {"job": "check"}) >= 3
    r = v.post("/api/v1/checks/fast/pause")
    assert r.status == 200 and r.json()["data"]["paused"] is True
    count = check(v, "fast")["pagination"]["total"]
    listener.close()
    wait_for(lambda: v.metric("vigil_check_paused", {"check": "fast"}) == 1, 5, "paused metric")
    assert check(v, "fast")["pagination"]["total"] in (count, count + 1)  # at most the run already under way
    assert v.post("/api/v1/checks/fast/resume").json()["data"]["paused"] is False
    wait_for(lambda: check(v, "fast")["state"] == "critical", 10, "the resumed check to see the port closed")
    assert v.post("/api/v1/checks/nope/pause").status == 404
    assert v.stop() == 0


def test_check_history_is_paginated_with_a_cursor(make_vigil, listener) -> None:
    v = make_vigil(with_checks(tcp_check("p", listener.port))).start()
    for _ in range(5):
        run(v, "p")
    wait_for(lambda: check(v, "p")["pagination"]["total"] == 5, 10, "results to be written")
    page1 = v.get("/api/v1/checks/p?limit=2").json()["data"]
    assert len(page1["history"]) == 2 and page1["pagination"]["has_more"] is True
    cursor = page1["pagination"]["next_cursor"]
    page2 = v.get(f"/api/v1/checks/p?limit=2&cursor={cursor}").json()["data"]
    page3 = v.get(f"/api/v1/checks/p?limit=2&cursor={page2['pagination']['next_cursor']}").json()["data"]
    ids = [h["id"] for h in page1["history"] + page2["history"] + page3["history"]]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == 5
    assert page3["pagination"]["has_more"] is False
    bad = v.get("/api/v1/checks/p?cursor=!!!")
    assert bad.status == 400 and bad.json()["errorType"] == "bad_data"
    assert v.get("/api/v1/checks/p?limit=0").status == 400
    assert v.stop() == 0


def test_check_metrics_reach_the_history(make_vigil, listener) -> None:
    v = make_vigil(with_checks(tcp_check("hist", listener.port, labels={"team": "web"}))).start()
    run(v, "hist")
    body = v.get('/api/v1/query?query=vigil_check_status{check="hist"}').json()
    assert body["status"] == "success"
    assert body["data"]["result"][0]["metric"]["team"] == "web"
    perf = v.get('/api/v1/query?query=vigil_check_perfdata{check="hist",label="time"}').json()
    assert perf["data"]["result"][0]["metric"]["unit"] == "seconds"
    assert v.stop() == 0


def test_incident_workflow(make_vigil) -> None:
    v = make_vigil().start()
    r = v.post("/api/v1/incidents", {"title": "Disk controller errors", "severity": "critical",
                                     "description": "dmesg shows resets", "assigned_to": "ops-1"})
    assert r.status == 201, r
    created = r.json()["data"]
    assert created["status"] == "investigating" and created["source"] == "manual"
    iid = created["id"]
    r = v.request("PUT", f"/api/v1/incidents/{iid}", body={"status": "identified", "notes": "bad cable"})
    assert r.status == 200 and r.json()["data"]["status"] == "identified"
    assert any(n["text"] == "bad cable" for n in r.json()["data"]["notes"])
    r = v.request("PUT", f"/api/v1/incidents/{iid}", body={"status": "resolved"})
    assert r.json()["data"]["resolved_at"] is not None
    listed = incidents(v, status="resolved")
    assert [i["id"] for i in listed["incidents"]] == [iid] and listed["summary"]["resolved"] == 1
    assert v.get(f"/api/v1/incidents/{iid}").json()["data"]["title"] == "Disk controller errors"
    assert v.get("/api/v1/incidents/999").status == 404
    bad = v.request("PUT", f"/api/v1/incidents/{iid}", body={"status": "done"})
    assert bad.status == 400 and "status" in bad.json()["error"]
    assert v.post("/api/v1/incidents", {"title": ""}).status == 400
    viewer = v.post("/api/v1/api-keys", {"name": "ro", "role": "viewer"}).json()["data"]["key"]
    assert v.request("POST", "/api/v1/incidents", key=viewer, body={"title": "x"}).status == 403
    assert v.request("GET", "/api/v1/incidents", key=viewer).status == 200
    assert v.stop() == 0


def test_uptime_overall_and_per_check(make_vigil, listener) -> None:
    down = free_port()
    v = make_vigil(with_checks(tcp_check("up", listener.port), tcp_check("down", down, fall=1))).start()
    run(v, "up")
    run(v, "down")
    data = v.get("/api/v1/uptime").json()["data"]
    per = {c["check"]: c for c in data["checks"]}
    assert per["up"]["uptime_percent_24h"] == 100.0 and per["up"]["last_downtime"] is None
    assert per["down"]["uptime_percent_24h"] == 0.0 and per["down"]["current_uptime_hours"] == 0.0
    assert per["down"]["incidents_count"] == 1
    assert data["incidents_count"] == 1 and data["last_downtime"] is not None
    assert v.stop() == 0


def test_bad_check_config_is_rejected_with_file_and_line(make_vigil, tmp_path: Path) -> None:
    v = make_vigil(with_checks(tcp_check("ok", free_port())))
    dropin = v.config_dir / "checks.d"
    dropin.mkdir()
    (dropin / "bad.yaml").write_text(yaml.safe_dump({"checks": [
        {"name": "x", "type": "tcp", "host": "h", "port": 1},
        {"name": "y", "type": "smtp"},
    ]}, sort_keys=False))
    out = subprocess.run([sys.executable, "-m", "agent", "check-config", "--config", str(v.config_path)],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert f"{dropin / 'bad.yaml'}:6: checks[2].type: unknown type 'smtp'" in out.stderr, out.stderr
    (dropin / "bad.yaml").write_text(yaml.safe_dump({"checks": [
        {"name": "x", "type": "tcp", "host": "h", "port": 1, "depends_on": ["ghost"]}]}, sort_keys=False))
    out = subprocess.run([sys.executable, "-m", "agent", "check-config", "--config", str(v.config_path)],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert "checks[1].depends_on[0]: no check named 'ghost'" in out.stderr, out.stderr
    assert "bad.yaml:7: " in out.stderr  # the line of the unknown name itself


def test_reload_adds_and_removes_checks(make_vigil, listener) -> None:
    v = make_vigil(with_checks(tcp_check("a", listener.port))).start()
    run(v, "a")
    doc = yaml.safe_load(v.config_path.read_text())
    doc["checks"] = [tcp_check("b", listener.port)]
    v.write_config(doc)
    wait_for(lambda: [c["name"] for c in v.get("/api/v1/checks").json()["data"]["checks"]] == ["b"], 10,
             "the reload to swap the checks")
    assert v.get("/api/v1/checks/a").status == 404
    doc["checks"] = [tcp_check("c", 70000)]
    v.write_config(doc)
    wait_for(lambda: v.metric("vigil_config_last_reload_successful") == 0, 10, "the bad edit to be rejected")
    assert [c["name"] for c in v.get("/api/v1/checks").json()["data"]["checks"]] == ["b"]
    assert v.stop() == 0


def test_cli_checks_and_check_run_exit_status(make_vigil, listener) -> None:
    closed = free_port()
    v = make_vigil(with_checks(tcp_check("open", listener.port), tcp_check("shut", closed, fall=1))).start()

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "agent", *args, "--config", str(v.config_path)],
                              cwd=REPO, capture_output=True, text=True, timeout=60)

    ok = cli("check", "run", "open")
    assert ok.returncode == 0 and ok.stdout.startswith("OK: 127.0.0.1:"), ok
    bad = cli("check", "run", "shut")
    assert bad.returncode == 2 and bad.stdout.startswith("CRITICAL: cannot connect"), bad
    table = cli("checks")
    assert table.returncode == 0
    lines = table.stdout.splitlines()
    assert lines[0].split()[:3] == ["NAME", "TYPE", "STATE"]
    assert any(line.split()[:3] == ["shut", "tcp", "critical"] for line in lines), table.stdout
    missing = cli("check", "run", "ghost")
    assert missing.returncode == 1 and "no check named 'ghost'" in missing.stderr
    assert v.stop() == 0


def test_state_change_is_published_on_the_event_stream(make_vigil) -> None:
    import asyncio

    import aiohttp

    v = make_vigil(with_checks(tcp_check("ev", free_port(), fall=1, labels={"team": "db"}))).start()

    async def scenario() -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {v.admin_key}"}
        async with aiohttp.ClientSession() as session, session.ws_connect(
            v.url + "/api/v1/events?types=check_state_changed", headers=headers
        ) as ws:
            assert (await ws.receive_json(timeout=5))["type"] == "hello"
            async with session.post(v.url + "/api/v1/checks/ev/run", headers=headers) as r:
                assert r.status == 200
            return await ws.receive_json(timeout=5)

    event = asyncio.run(scenario())
    assert event["type"] == "check_state_changed"
    data = event["data"]
    assert (data["check"], data["previous"], data["state"]) == ("ev", None, "critical")
    assert data["labels"] == {"team": "db"} and data["incident_id"] is not None
    assert v.stop() == 0


def test_hanging_check_is_cut_at_its_timeout(make_vigil, listener) -> None:
    # The listener accepts (backlog) but never answers: the expected banner never comes.
    v = make_vigil(with_checks(tcp_check("hang", listener.port, timeout="0.5s", expect="220 ", fall=1))).start()
    result = run(v, "hang")["result"]
    assert result["status"] == "critical" and result["message"] == "timed out after 0.5s"
    assert 450 <= result["duration_ms"] < 2000
    assert v.get("/healthz").status == 200
    assert v.stop() == 0


TOKEN = "cron-token-0123456789abcdef"


def test_heartbeat_pings_over_the_api(make_vigil) -> None:
    import urllib.request

    beat = {"name": "backup", "type": "heartbeat", "token": TOKEN, "period": "2s", "grace": "1s",
            "interval": "0.25s", "timeout": "0.2s"}
    v = make_vigil(with_checks(beat, tcp_check("other", free_port()))).start()

    def ping(kind: str, token: str | None = TOKEN, name: str = "backup", query: str = "", body: bytes = b"") -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return v.request("POST", f"/api/v1/checks/{name}/{kind}{query}", key=None, raw=body, headers=headers)

    wrong = ping("ping", token="not-the-token-at-all")
    missing = ping("ping", name="no-such-check")
    not_heartbeat = ping("ping", name="other")
    for r in (wrong, missing, not_heartbeat):  # the same answer: nothing tells which checks exist
        assert r.status == 401 and r.json()["error"] == "invalid heartbeat token", r
    assert ping("ping", token=None).status == 401

    assert ping("start").status == 200
    r = ping("ping", query="?run_time=12.5", body=b"backup done: 3 GB\n")
    assert r.status == 200 and r.json()["data"]["last_ping"] is not None
    wait_for(lambda: check(v, "backup")["state"] == "ok", 10, "the ping to make the check ok")
    assert check(v, "backup")["heartbeat"]["run_time"] == 12.5

    assert ping("fail", query="?exit_status=3", body=b"disk full").status == 200
    wait_for(lambda: check(v, "backup")["state"] == "critical", 10, "/fail to make the check critical")
    assert "exit status 3" in check(v, "backup")["message"] and "disk full" in check(v, "backup")["message"]

    req = urllib.request.Request(f"{v.url}/api/v1/checks/backup/ping?token={TOKEN}", data=b"", method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:  # the token may also be a query parameter
        assert resp.status == 200
    wait_for(lambda: check(v, "backup")["state"] == "ok", 10, "a ping after the failure to recover")
    wait_for(lambda: check(v, "backup")["state"] == "critical", 15, "a missing ping to make the check late")
    assert check(v, "backup")["message"].startswith("late")

    v.kill9()  # a ping that got 200 survives a crash
    v.start()
    assert ping("ping").status == 200
    last = check(v, "backup")["heartbeat"]["last_ping"]
    v.kill9()
    v.start()
    assert check(v, "backup")["heartbeat"]["last_ping"] == last
    assert v.stop() == 0
