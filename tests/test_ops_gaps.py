"""Issue 6's bad-input cases that the route tests leave out, through a real daemon: a key-age policy that
would leave no admin key usable is refused by every way of changing the config (an operator's old key,
aged in the SQLite file as time would have aged it); log search on stored events treats regex and SQL
LIKE metacharacters as text, even where a regex would backtrack without end; an edited cursor is a 400
on the issue's lists not covered elsewhere; a health check in the first seconds after start is judged
like any other."""

from __future__ import annotations

import base64
import json
import sqlite3
import urllib.parse
import uuid
from collections.abc import Callable
from typing import Any

from tests.conftest import Vigil, wait_for
from tests.test_cli import vigil_cli

DAY = 86400.0
HIGH_LIMITS = {"rate_limit": {"categories": {"config": 100_000, "maintenance": 100_000, "health": 100_000}}}


def data(r: Any, status: int = 200) -> Any:
    assert r.status == status, r
    return r.json()["data"]


def finished_task(v: Vigil, r: Any) -> dict[str, Any]:
    task_id = data(r, 202)["task_id"]

    def done() -> dict[str, Any] | None:
        task = data(v.get(f"/api/v1/tasks/{task_id}"))
        return task if task["status"] not in ("pending", "running") else None

    task = wait_for(done, 30, f"task {task_id}")
    assert task["status"] == "completed", task
    return dict(task)


def test_a_key_age_that_leaves_no_admin_key_is_refused_by_every_way_of_changing_the_config(
        make_vigil: Callable[..., Vigil]) -> None:
    v = make_vigil({"security": {"max_key_age": "5d"}, "api": HIGH_LIMITS}).start()
    first_version = data(v.get("/api/v1/config/status"))["version"]
    data(v.request("PUT", "/api/v1/config", body={"security": {"max_key_age": "60d"}}))
    assert v.stop() == 0
    # Ten days later, as far as the keys know: every admin key (the bootstrap admin.key) was made then.
    with sqlite3.connect(v.state_dir / "vigil.db") as db:
        aged = db.execute("UPDATE api_keys SET created_at = created_at - ? WHERE role = 'admin'", (10 * DAY,))
        assert aged.rowcount >= 1
    db.close()
    v.start()
    before = v.config_path.read_bytes()
    assert data(v.get("/api/v1/config?section=security"))["config"]["max_key_age"] == 60 * DAY

    put = v.request("PUT", "/api/v1/config", body={"security": {"max_key_age": "5d"}})
    assert put.status == 409, put
    [reason] = put.json()["details"]["reasons"]
    assert "security.max_key_age of 5d would leave no usable admin key" in reason
    tested = data(v.post("/api/v1/config/test", {"security": {"max_key_age": "5d"}, "connectivity": False}))
    assert tested["valid"] is True and tested["applicable"] is False and tested["refusals"] == [reason]
    settings = v.request("PUT", "/api/v1/security/settings", body={"max_key_age": "5d"})
    assert settings.status == 409 and settings.json()["details"]["reasons"] == [reason], settings
    # The version the daemon started with had 5d: going back to it now would lock every admin out.
    back = v.post(f"/api/v1/config/rollback/{first_version}", {"reason": "undo"})
    assert back.status == 409 and back.json()["details"]["reasons"] == [reason], back
    cli_set = vigil_cli(v, "config", "set", "security.max_key_age", "5d")
    assert cli_set.returncode == 1 and "HTTP 409" in cli_set.stderr and "no usable admin key" in cli_set.stderr
    cli_back = vigil_cli(v, "config", "rollback", str(first_version))
    assert cli_back.returncode == 1 and "no usable admin key" in cli_back.stderr
    assert v.config_path.read_bytes() == before
    assert data(v.get("/api/v1/config?section=security"))["config"]["max_key_age"] == 60 * DAY
    refused = [e for e in data(v.get("/api/v1/security/audit?event_type=config_changed,config_rollback,"
                                      "security_settings_changed"))["events"] if e["outcome"] == "refused"]
    # PUT config, rollback, and the CLI's set and rollback (the settings route's refusal is its api_request row).
    assert [e["event_type"] for e in refused] == ["config_rollback", "config_changed", "config_rollback",
                                                  "config_changed"], refused
    assert all(reason in e["details"]["reasons"] for e in refused)

    # The refusal is about the admin keys, not the age as such: with a fresh admin key the change goes through,
    # and from then on the old key is refused for its age.
    fresh = data(v.post("/api/v1/api-keys", {"name": "fresh admin", "role": "admin"}), 201)["key"]
    assert data(v.request("PUT", "/api/v1/config", body={"security": {"max_key_age": "5d"}}, key=fresh))
    old = v.get("/api/v1/status")
    assert old.status == 401 and old.json()["details"]["reason"] == "too_old", old
    assert v.get("/api/v1/status", key=fresh).status == 200
    assert v.stop() == 0


def logs(v: Vigil, **params: Any) -> dict[str, Any]:
    return dict(data(v.get("/api/v1/logs?" + urllib.parse.urlencode(params))))


def test_stored_log_search_is_text_even_where_a_regex_or_like_pattern_would_misbehave(
        make_vigil: Callable[..., Vigil]) -> None:
    v = make_vigil({"log": {"store": {"flush_interval": "100ms"}}, "collectors": {"interval": "1h"}}).start()
    marker = uuid.uuid4().hex[:10]
    long_run = f"{marker}-" + "a" * 1000 + "!"  # "(a+)+$" backtracks exponentially on this as a regex
    assert v.get(f"/api/v1/{long_run}").status == 404
    assert v.get(f"/api/v1/{marker}-aQQb").status == 404
    wait_for(lambda: logs(v, source="vigil", search=f"{marker}-aaaa")["logs"], 10, "the long request to be stored")
    # Each of these takes milliseconds as text; as a regex the first would not end before the request's timeout.
    assert logs(v, source="vigil", search="(a+)+$")["logs"] == []
    assert logs(v, source="vigil", search="aaaaaaaaaa!")["pagination"]["total"] == 1
    assert logs(v, source="vigil", search=f"{marker}-a%b")["logs"] == []  # % is not LIKE's wildcard
    assert logs(v, source="vigil", search=f"{marker}-a__b")["logs"] == []  # nor _
    assert logs(v, source="vigil", search=f"{marker}-AQQB")["pagination"]["total"] == 1  # case-insensitive
    too_long = v.get("/api/v1/logs?" + urllib.parse.urlencode({"search": "a" * 501}))
    assert too_long.status == 400, too_long
    assert v.stop() == 0


def _edited(cursor: str) -> str:
    """The same signature on a position moved by one: what a client guessing pages would send."""
    payload, _, signature = cursor.partition(".")
    position = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    for key, value in position.items():
        if isinstance(value, int):
            position[key] = value + 1
    edited = base64.urlsafe_b64encode(json.dumps(position, separators=(",", ":")).encode()).decode().rstrip("=")
    assert edited != payload
    return f"{edited}.{signature}"


def test_edited_cursors_of_config_versions_and_health_reports_are_400(make_vigil: Callable[..., Vigil]) -> None:
    v = make_vigil({"api": HIGH_LIMITS, "collectors": {"interval": "1h"}}).start()
    data(v.request("PUT", "/api/v1/config", body={"log": {"level": "debug"}}))
    for _ in range(2):
        finished_task(v, v.post("/api/v1/health/check", {"checks": ["database"]}))
    for route in ("/api/v1/config/versions", "/api/v1/health/reports"):
        cursor = data(v.get(f"{route}?limit=1"))["pagination"]["next_cursor"]
        assert cursor, route
        assert v.get(f"{route}?limit=1&cursor={cursor}").status == 200
        for bad in (_edited(cursor), cursor.partition(".")[0], "garbage"):
            r = v.get(f"{route}?" + urllib.parse.urlencode({"limit": 1, "cursor": bad}))
            assert r.status == 400 and r.json()["details"]["errors"][0]["field"] == "cursor", (route, bad, r)
    assert v.stop() == 0


def test_a_health_check_right_after_start_judges_performance_like_any_other(
        make_vigil: Callable[..., Vigil]) -> None:
    """The scheduler's heartbeat delay is unknown until its job has run twice (5 s apart): the performance
    section must not fail on that, nor call the daemon critical."""
    v = make_vigil({"api": HIGH_LIMITS, "collectors": {"interval": "1h"}}).start()
    task = finished_task(v, v.post("/api/v1/health/check", {"checks": ["performance"]}))
    report = data(v.get(task["result"]["links"]["report"]))
    [section] = report["checks"]
    assert section["issues"] == [] and section["status"] in ("healthy", "warning"), section
    assert report["overall"] != "critical"
    assert v.stop() == 0
