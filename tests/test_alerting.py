"""Rules and alerts through their doors: rule files in rules.d/, /api/v1/rules, /api/v1/alerts and the
operator's workflow, PromQL on ALERTS and recording rules, restarts and kill -9, rule management.

The alert's condition is a real check: a `file` check that goes critical while a flag file exists,
run on demand through the API, so each test decides when the condition holds."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import Vigil, wait_for

RULES = """\
groups:
  - name: flags
    interval: 1s
    rules:
      - record: test:flag_up
        expr: vigil_check_up{check="flag"}
      - alert: FlagRaised
        expr: vigil_check_up{check="flag"} == 0
        for: %(for)s
        labels:
          severity: critical
          service: demo
        annotations:
          summary: "flag {{ $labels.check }} raised"
          description: "up is {{ $value }}"
"""


def flag_config(v_root: Path) -> dict[str, Any]:
    return {
        "checks": [{"name": "flag", "type": "file", "path": str(v_root / "flag"), "exists": False,
                    "interval": "1h", "fall": 1, "rise": 1}],
        "api": {"rate_limit": {"categories": {"health": 100_000}, "default": 100_000}},
    }


def start(make_vigil: Any, for_: str = "0s", rules: str | None = None) -> Vigil:
    v: Vigil = make_vigil()
    v.write_config({**yaml.safe_load(v.config_path.read_text()), **flag_config(v.root)})
    (v.config_dir / "rules.d").mkdir()
    (v.config_dir / "rules.d" / "flags.yml").write_text(rules if rules is not None else RULES % {"for": for_})
    return v.start()


def set_flag(v: Vigil, raised: bool) -> None:
    flag = v.root / "flag"
    if raised:
        flag.write_text("x")
    else:
        flag.unlink(missing_ok=True)
    r = v.post("/api/v1/checks/flag/run")
    assert r.status == 200, r


def alerts(v: Vigil, status: str = "open") -> list[dict[str, Any]]:
    r = v.get(f"/api/v1/alerts?status={status}")
    assert r.status == 200, r
    return r.json()["data"]["alerts"]


def wait_alert(v: Vigil, state: str, timeout: float = 15) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        return next((a for a in alerts(v, "all") if a["state"] == state), None)

    return wait_for(found, timeout, f"an alert in state {state}")


def query(v: Vigil, expr: str) -> list[dict[str, Any]]:
    r = v.get(f"/api/v1/query?query={expr}")
    assert r.status == 200, r
    return r.json()["data"]["result"]


def test_alert_fires_is_queryable_and_resolves(make_vigil: Any) -> None:
    v = start(make_vigil)
    set_flag(v, False)
    wait_for(lambda: query(v, "test:flag_up"), 15, "the recording rule's series")
    assert alerts(v) == []
    set_flag(v, True)
    firing = wait_alert(v, "firing")
    assert firing["labels"] == {"alertname": "FlagRaised", "check": "flag", "severity": "critical",
                                "service": "demo", "type": "file"}
    assert firing["annotations"] == {"summary": "flag flag raised", "description": "up is 0"}
    assert firing["severity"] == "critical" and firing["status"] == "active" and firing["service"] == "demo"
    assert len(firing["fingerprint"]) == 16 and firing["fired_at"] is not None

    rules = v.get("/api/v1/rules").json()["data"]["groups"]
    assert [g["name"] for g in rules] == ["flags"]
    alert_rule = next(r for r in rules[0]["rules"] if r["type"] == "alerting")
    assert alert_rule["health"] == "ok" and alert_rule["lastError"] == "" and alert_rule["state"] == "firing"
    assert alert_rule["alerts"][0]["state"] == "firing"
    assert rules[0]["rules"][0]["type"] == "recording" and rules[0]["interval"] == 1.0

    series = wait_for(lambda: query(v, 'ALERTS{alertname="FlagRaised"}'), 10, "ALERTS in the history")
    assert series[0]["metric"]["alertstate"] == "firing"
    assert wait_for(lambda: [s for s in query(v, "test:flag_up") if s["value"][1] == "0"], 10, "recorded 0")

    health = v.get("/api/v1/health").json()["data"]["alerts"]
    assert health["firing"] == 1 and health["by_severity"] == {"critical": 1}
    assert health["rules"] == {"groups": 1, "rules": 2, "unhealthy": 0}

    set_flag(v, False)
    resolved = wait_for(lambda: alerts(v, "resolved"), 15, "the alert to resolve")
    assert resolved[0]["id"] == firing["id"] and resolved[0]["state"] == "inactive"
    assert resolved[0]["resolution"] is None  # resolved by its rule, not by an operator
    summary = v.get("/api/v1/alerts?status=all").json()["data"]["summary"]
    assert summary["resolved_alerts"] == 1 and summary["active_alerts"] == 0


def test_acknowledge_then_resolve_by_hand_restarts_for(make_vigil: Any) -> None:
    v = start(make_vigil, for_="2s")
    set_flag(v, True)
    pending = wait_alert(v, "pending")
    firing = wait_alert(v, "firing")
    assert firing["id"] == pending["id"]

    r = v.request("PUT", f"/api/v1/alerts/{firing['id']}/acknowledge",
                  body={"notes": "looking", "assigned_to": "ops", "estimated_resolution": "2026-12-01T10:00:00Z"})
    assert r.status == 200, r
    ack = r.json()["data"]
    assert ack["status"] == "acknowledged" and ack["acknowledged"]["notes"] == "looking"
    assert ack["acknowledged"]["assigned_to"] == "ops" and ack["acknowledged_by"]
    assert [a["id"] for a in alerts(v, "acknowledged")] == [firing["id"]]
    assert alerts(v, "active") == []

    r = v.request("PUT", f"/api/v1/alerts/{firing['id']}/resolve",
                  body={"resolution": "restarted it", "notes": "n", "preventive_measures": "watch it"})
    assert r.status == 200, r
    done = r.json()["data"]
    assert done["status"] == "resolved" and done["resolution"]["resolution"] == "restarted it"
    assert done["resolution"]["preventive_measures"] == "watch it"
    assert v.request("PUT", f"/api/v1/alerts/{firing['id']}/resolve", body={}).status == 409
    assert v.request("PUT", f"/api/v1/alerts/{firing['id']}/acknowledge", body={}).status == 409

    # The condition still holds: a new instance, pending first, firing only after `for` again.
    again = wait_for(lambda: [a for a in alerts(v) if a["id"] != firing["id"]], 10, "a new instance")[0]
    assert again["state"] == "pending"
    fired = wait_alert(v, "firing")
    assert fired["id"] == again["id"]
    from agent.api.formats import parse_iso

    assert parse_iso(fired["fired_at"]) - parse_iso(done["resolved_at"]) >= 1.0


def test_bad_ids_and_bodies(make_vigil: Any) -> None:
    v = start(make_vigil)
    assert v.get("/api/v1/alerts/999").status == 404
    assert v.get("/api/v1/alerts/abc").status == 404
    assert v.request("PUT", "/api/v1/alerts/999/acknowledge", body={}).status == 404
    assert v.request("PUT", "/api/v1/alerts/1/resolve", body={"bogus": 1}).status == 400
    assert v.get("/api/v1/alerts?status=sideways").status == 400
    r = v.get("/api/v1/alerts?limit=5000")
    assert r.status == 400 and "limit" in r.json()["error"]


def test_firing_alert_survives_kill9_without_a_new_instance(make_vigil: Any) -> None:
    v = start(make_vigil, for_="1s")
    set_flag(v, True)
    firing = wait_alert(v, "firing")
    v.kill9()
    v.start()
    assert [a["id"] for a in alerts(v)] == [firing["id"]]
    rules = v.get("/api/v1/rules").json()["data"]["groups"][0]["rules"]
    state = next(r for r in rules if r["type"] == "alerting")["alerts"]
    assert state and state[0]["state"] == "firing"  # restored, not pending again
    set_flag(v, True)
    wait_for(lambda: next(r for r in v.get("/api/v1/rules").json()["data"]["groups"][0]["rules"]
                          if r["type"] == "alerting")["lastEvaluation"], 10, "an evaluation after restart")
    db = sqlite3.connect(v.state_dir / "vigil.db")
    assert db.execute("SELECT count(*) FROM alerts").fetchone()[0] == 1
    db.close()


def test_broken_rule_file_is_rejected_with_file_line_and_old_rules_keep_running(make_vigil: Any) -> None:
    v = start(make_vigil)
    path = v.config_dir / "rules.d" / "flags.yml"
    path.write_text(RULES.replace("== 0", "== ") % {"for": "0s"})

    def rejected() -> dict[str, Any] | None:
        last = v.get("/api/v1/status").json()["data"]["config"]["last_reload"]
        return last if last and not last["successful"] else None

    last = wait_for(rejected, 10, "the reload to be rejected")
    assert any(f"{path}:8: groups[0].rules[1].expr" in e for e in last["errors"]), last["errors"]
    groups = v.get("/api/v1/rules").json()["data"]["groups"]
    assert groups and groups[0]["rules"][1]["query"] == 'vigil_check_up{check="flag"} == 0'
    assert v.metric("vigil_config_last_reload_successful") == 0


def test_template_error_shows_in_last_error_and_the_alert_still_fires(make_vigil: Any) -> None:
    rules = (RULES % {"for": "0s"}).replace('"up is {{ $value }}"', '"{{ humanize \\"abc\\" }}"')
    v = start(make_vigil, rules=rules)
    set_flag(v, True)
    wait_alert(v, "firing")
    rule = next(r for r in v.get("/api/v1/rules").json()["data"]["groups"][0]["rules"] if r["type"] == "alerting")
    assert rule["health"] == "err" and "error expanding template" in rule["lastError"]


def test_manage_rules_over_the_api(make_vigil: Any) -> None:
    v = start(make_vigil)
    managed = v.config_dir / "rules.d" / "vigil-managed.yml"
    body = {"group": "api", "interval": "1s", "reason": "test",
            "rule": {"alert": "AlwaysOn", "expr": "vector(1)", "for": "0s", "labels": {"severity": "info"},
                     "annotations": {"summary": "always"}}}
    r = v.post("/api/v1/alerts/rules", body)
    assert r.status == 201, r
    created = r.json()["data"]
    assert created["rule"]["managed"] is True and created["version_id"]
    assert "AlwaysOn" in managed.read_text()
    assert v.post("/api/v1/alerts/rules", body).status == 409
    wait_for(lambda: [a for a in alerts(v) if a["alertname"] == "AlwaysOn" and a["state"] == "firing"], 15,
             "the API's rule to fire")

    before = managed.read_text()
    bad = {**body, "rule": {"alert": "Broken", "expr": "sum(", "for": "0s"}}
    r = v.post("/api/v1/alerts/rules", bad)
    assert r.status == 422 and "vigil-managed.yml" in r.json()["error"], r
    assert managed.read_text() == before
    assert v.post("/api/v1/alerts/rules", {**body, "rule": {"alert": "X", "record": "y", "expr": "1"}}).status == 400

    r = v.request("PUT", "/api/v1/alerts/rules/api/AlwaysOn",
                  body={"alert": "AlwaysOn", "expr": "vector(2)", "labels": {"severity": "warning"}})
    assert r.status == 200, r
    assert r.json()["data"]["rule"]["query"] == "vector(2)"
    assert v.get("/api/v1/alerts/rules/api/AlwaysOn").json()["data"]["labels"] == {"severity": "warning"}
    assert v.request("PUT", "/api/v1/alerts/rules/flags/FlagRaised",
                     body={"alert": "FlagRaised", "expr": "vector(1)"}).status == 409
    assert v.delete("/api/v1/alerts/rules/flags/FlagRaised").status == 409
    assert v.delete("/api/v1/alerts/rules/api/Nope").status == 404

    r = v.delete("/api/v1/alerts/rules/api/AlwaysOn")
    assert r.status == 200, r
    assert "AlwaysOn" not in managed.read_text()
    assert v.get("/api/v1/alerts/rules/api/AlwaysOn").status == 404
    listed = v.get("/api/v1/alerts/rules").json()["data"]
    assert {r["name"] for r in listed["rules"]} == {"test:flag_up", "FlagRaised"}
    # The removed rule's open alert is resolved, not left open forever.
    wait_for(lambda: [a for a in alerts(v, "resolved") if a["alertname"] == "AlwaysOn"], 10, "AlwaysOn resolved")


@pytest.mark.parametrize("path", ["/api/v1/rules", "/api/v1/alerts", "/api/v1/alerts/rules"])
def test_reads_need_a_key(make_vigil: Any, path: str) -> None:
    v = start(make_vigil)
    assert v.get(path, key=None).status == 401


def test_a_rule_name_used_twice_in_a_group_shows_every_variant(make_vigil: Any) -> None:
    rules = """\
groups:
  - name: disk
    rules:
      - alert: DiskFull
        expr: vector(85) > 80
        labels: {severity: warning}
      - alert: DiskFull
        expr: vector(95) > 90
        labels: {severity: critical}
"""
    v = start(make_vigil, rules=rules)
    data = v.get("/api/v1/alerts/rules/disk/DiskFull").json()["data"]
    assert data["labels"] == {"severity": "warning"}
    assert [r["labels"]["severity"] for r in data["same_name"]] == ["warning", "critical"]
    assert v.stop() == 0


def test_rule_group_metrics_on_the_metrics_endpoint(make_vigil: Any) -> None:
    rules = """\
groups:
  - name: probe
    interval: 1s
    rules:
      - record: probe:one
        expr: vector(1)
      - record: probe:two
        expr: vector(2)
      - alert: Broken  # both series have the same labels once abs() drops the names: an evaluation error
        expr: abs({__name__=~"probe:.*"})
"""
    v = start(make_vigil, rules=rules)
    key = {"rule_group": f"{v.config_dir / 'rules.d' / 'flags.yml'};probe"}
    wait_for(lambda: v.metric("vigil_rule_group_last_evaluation_timestamp_seconds", key), 15, "an evaluation")
    assert v.metric("vigil_rule_group_rules", key) == 3
    assert (v.metric("vigil_rule_group_last_duration_seconds", key) or 0) > 0
    wait_for(lambda: v.metric("vigil_rule_group_unhealthy_rules", key) == 1, 15, "the failing rule counted")
    assert v.stop() == 0
