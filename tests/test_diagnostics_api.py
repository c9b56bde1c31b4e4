"""Diagnostics through the daemon: Vigil's caches (list, hit counts, clear by pattern and level), the
components' named health checks, component tests as a task, the full health check with its stored
report, the database's figures and the integrity check task; plus the integrity check on a damaged
file and the scopes these routes need."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.store.diagnostics import IntegrityCheck
from tests.conftest import Vigil, wait_for

COMPONENTS = ["store", "scheduler", "collectors", "checks", "history", "notifications", "events", "config", "units",
              "api", "tasks"]
CPU_BY_MODE = "sum+by+(mode)+(node_cpu_seconds_total)"
SECTIONS = ["database", "authentication", "storage", "performance", "security", "backups", "logs"]


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Vigil]:
    root = tmp_path_factory.mktemp("diagnostics")
    limits = {c: 100_000 for c in ("health", "maintenance", "query")}
    v = Vigil(root, {"api": {"rate_limit": {"default": 100_000, "categories": limits}}})
    v.start()
    wait_for(lambda: v.get(f"/api/v1/query?query={CPU_BY_MODE}").json()["data"]["result"], 20,
             "the first collected samples in the history")
    yield v
    assert v.stop() == 0


def data(r: Any, status: int = 200) -> Any:
    assert r.status == status, r
    return r.json()["data"]


def finished(v: Vigil, r: Any, type_: str, timeout: float = 60) -> dict[str, Any]:
    started = data(r, 202)
    assert started["type"] == type_

    def done() -> dict[str, Any] | None:
        task = data(v.get(f"/api/v1/tasks/{started['task_id']}"))
        return task if task["status"] not in ("pending", "running") else None

    task = wait_for(done, timeout, f"{type_} task")
    assert task["status"] == "completed", task
    return task


def caches(v: Vigil) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in data(v.get("/api/v1/cache"))["caches"]}


def test_caches_are_listed_counted_and_cleared_by_pattern_and_level(agent: Vigil) -> None:
    listed = data(agent.get("/api/v1/cache"))
    names = {c["name"] for c in listed["caches"]}
    assert {"processes.scan", "history.decoded_chunks", "history.recent_selects", "promql.labels",
            "alerting.templates", "exporter.rendered"} <= names
    assert all(c["level"] in ("L1", "L2") for c in listed["caches"])
    assert listed["summary"]["caches"] == len(names)

    before = caches(agent)["processes.scan"]
    data(agent.get("/api/v1/processes?limit=5"))
    data(agent.get("/api/v1/processes?limit=5"))  # within processes.cache_ttl (1s): the shared scan
    scan = caches(agent)["processes.scan"]
    assert scan["entries"] > 0 and scan["bytes"] > 0 and scan["misses"] >= before["misses"] + 1
    assert scan["hits"] >= before["hits"] + 1 and 0 < scan["hit_rate"] <= 1
    data(agent.get(f"/api/v1/query?query={CPU_BY_MODE}"))
    assert caches(agent)["promql.labels"]["entries"] > 0

    assert agent.delete("/api/v1/cache?pattern=processes.*&level=L1").status == 404  # both are L2
    cleared = data(agent.delete("/api/v1/cache?pattern=processes.*&level=L2"))
    assert {c["name"] for c in cleared["cleared"]} == {"processes.scan", "processes.users"}
    assert cleared["cleared_keys"] >= scan["entries"] and cleared["levels"] == ["L2"]
    assert caches(agent)["processes.scan"]["entries"] == 0
    everything = data(agent.delete("/api/v1/cache"))
    assert {c["name"] for c in everything["cleared"]} == names
    assert caches(agent)["promql.labels"]["entries"] == 0

    missing = agent.delete("/api/v1/cache?pattern=redis.*")
    assert missing.status == 404 and "processes.scan" in missing.json()["details"]["known"]
    assert agent.delete("/api/v1/cache?level=L3").status == 400


def test_components_health_has_named_checks_with_measurements(agent: Vigil) -> None:
    health = data(agent.get("/api/v1/components/health"))
    assert health["overall_status"] in ("healthy", "degraded", "unhealthy")
    parts = {c["name"]: c for c in health["components"]}
    assert list(parts) == COMPONENTS
    for part in parts.values():
        assert part["status"] in ("healthy", "degraded", "unhealthy") and part["checks"]
        for check in part["checks"]:
            assert check["status"] in ("pass", "warn", "fail") and isinstance(check["measurements"], dict)
    store = {c["name"]: c for c in parts["store"]["checks"]}
    assert store["write_latency"]["status"] == "pass" and store["write_latency"]["measurements"]["round_trip_ms"] > 0
    assert store["wal_size"]["measurements"]["bytes"] >= 0
    assert {c["name"] for c in parts["scheduler"]["checks"]} == {"heartbeat", "job_lag", "jobs"}
    assert parts["history"]["checks"][0]["measurements"]["series"] > 0
    assert sum(health["summary"].values()) == sum(len(p["checks"]) for p in parts.values())


def test_diagnostics_task_has_results_per_component_and_test(agent: Vigil) -> None:
    task = finished(agent, agent.post("/api/v1/components/diagnostics", {}), "diagnostics")
    result = task["result"]
    assert [r["component"] for r in result["results"]] == COMPONENTS and result["tests"] == ["connectivity",
                                                                                             "performance"]
    by = {r["component"]: {t["name"]: t for t in r["tests"]} for r in result["results"]}
    assert by["store"]["performance"]["details"]["reads"]["count"] == 100
    assert by["api"]["connectivity"]["status"] == "pass" and by["api"]["connectivity"]["details"]["url"].endswith(
        "/healthz")
    assert by["events"]["connectivity"]["status"] == "pass"
    assert by["config"]["performance"]["status"] == "skipped"
    assert [s["name"] for s in task["steps"]] == COMPONENTS

    stressed = finished(agent, agent.post("/api/v1/components/diagnostics",
                                          {"components": ["store", "events"], "tests": ["stress"]}), "diagnostics")
    by = {r["component"]: r["tests"][0] for r in stressed["result"]["results"]}
    writes = by["store"]["details"]["writes"]
    assert by["store"]["status"] in ("pass", "warn") and writes["operations"] > 0 and writes["errors"] == 0
    assert writes["seconds"] <= 3.0
    assert by["events"]["status"] == "skipped" and "flood" in by["events"]["message"]
    tables = {t["name"] for t in data(agent.get("/api/v1/store"))["tables"]}
    assert "diagnostics_stress" not in tables  # the load went to a temporary table, never the file

    bad = agent.post("/api/v1/components/diagnostics", {"components": ["redis"]})
    assert bad.status == 400 and "known: store" in bad.json()["error"]
    assert agent.post("/api/v1/components/diagnostics", {"tests": ["chaos"]}).status == 400


def test_full_health_check_stores_a_report(agent: Vigil) -> None:
    task = finished(agent, agent.post("/api/v1/health/check", {"integrity_check": True}), "health_check")
    result = task["result"]
    assert result["overall"] in ("healthy", "warning", "critical")
    assert list(result["checks"]) == SECTIONS and result["checks"]["backups"] == "not_configured"

    report = data(agent.get(result["links"]["report"]))
    assert report["id"] == result["report_id"] and report["task_id"] == task["id"]
    sections = {c["name"]: c for c in report["checks"]}
    assert list(sections) == SECTIONS
    assert sections["database"]["metrics"]["quick_check"]["ok"] is True
    assert sections["database"]["metrics"]["schema_version"] > 0
    assert sections["authentication"]["metrics"]["admin_keys"] >= 1
    assert sections["logs"]["metrics"]["audit_chain_intact"] is True
    assert all(c["status"] in ("healthy", "warning", "critical", "not_configured") for c in report["checks"])
    assert report["issues"] == [f"{c['name']}: {i}" for c in report["checks"] for i in c["issues"]]

    only = finished(agent, agent.post("/api/v1/health/check", {"checks": ["backups"]}), "health_check")
    listed = data(agent.get("/api/v1/health/reports?limit=1"))
    assert listed["pagination"]["total"] >= 2 and listed["pagination"]["has_more"] is True
    assert listed["reports"][0]["id"] == only["result"]["report_id"] and "checks" not in listed["reports"][0]
    nxt = data(agent.get(f"/api/v1/health/reports?limit=1&cursor={listed['pagination']['next_cursor']}"))
    assert nxt["reports"][0]["id"] == result["report_id"]
    assert agent.get("/api/v1/health/reports/hc_nope").status == 404
    assert agent.post("/api/v1/health/check", {"checks": ["mood"]}).status == 400


def test_store_info_and_integrity_check(agent: Vigil) -> None:
    info = data(agent.get("/api/v1/store"))
    assert info["file_bytes"] > 0 and info["journal_mode"] == "wal" and info["bytes_source"] == "dbstat"
    tables = {t["name"]: t for t in info["tables"]}
    assert {"tasks", "health_reports", "audit_log", "tsdb_chunks"} <= set(tables)
    assert tables["api_keys"]["rows"] >= 1 and tables["api_keys"]["bytes"] > 0
    assert info["totals"]["rows"] == sum(t["rows"] for t in info["tables"])

    task = finished(agent, agent.post("/api/v1/store/integrity_check", {}), "integrity_check")
    assert task["result"]["ok"] is True and task["result"]["mode"] == "integrity_check"
    last = data(agent.get("/api/v1/store"))["last_integrity_check"]
    assert last["ok"] is True and last["task_id"] == task["id"]
    quick = finished(agent, agent.post("/api/v1/store/integrity_check", {"quick": True}), "integrity_check")
    assert quick["result"]["mode"] == "quick_check"


def test_scopes(agent: Vigil) -> None:
    viewer = data(agent.post("/api/v1/api-keys", {"name": "diag viewer", "role": "viewer"}), 201)["key"]
    operator = data(agent.post("/api/v1/api-keys", {"name": "diag operator", "role": "operator"}), 201)["key"]
    for path in ("/api/v1/cache", "/api/v1/components/health", "/api/v1/store", "/api/v1/health/reports"):
        assert agent.get(path, key=viewer).status == 200
    assert agent.delete("/api/v1/cache", key=viewer).status == 403
    assert agent.post("/api/v1/components/diagnostics", {}, key=viewer).status == 403
    assert agent.post("/api/v1/store/integrity_check", {}, key=operator).status == 403
    assert agent.delete("/api/v1/cache?pattern=exporter.*", key=operator).status == 200


def test_integrity_check_reports_a_damaged_file_and_stops_when_interrupted(tmp_path: Path) -> None:
    path = tmp_path / "damaged.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    db.execute("CREATE INDEX t_v ON t (v)")
    db.executemany("INSERT INTO t (v) VALUES (?)", [(f"value {i:06d}",) for i in range(5000)])
    db.commit()
    page_size = db.execute("PRAGMA page_size").fetchone()[0]
    pages = [p for (p,) in db.execute("SELECT pageno FROM dbstat WHERE name='t_v' AND pagetype='leaf'")]
    db.close()
    assert IntegrityCheck(str(path)).run(False, 10)["ok"] is True
    with open(path, "r+b") as f:  # scramble cells of an index leaf page: the index no longer matches the table
        f.seek((pages[len(pages) // 2] - 1) * page_size + page_size // 2)
        f.write(b"\x7f" * 64)
    found = IntegrityCheck(str(path)).run(False, 10)
    assert found["ok"] is False and found["errors"]

    stopped = IntegrityCheck(str(path))
    stopped.interrupt()
    with pytest.raises(sqlite3.OperationalError):
        stopped.run(False, 10)
