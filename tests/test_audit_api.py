"""The audit log through a real daemon: every mutating API call and every failed authentication leaves a
row, GET /api/v1/security/audit filters, pages and summarizes them, and `vigil audit verify` finds a row
edited, deleted or cut off directly in the SQLite file."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, Vigil


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Vigil]:
    v = Vigil(tmp_path_factory.mktemp("audit"))
    v.start()
    yield v
    assert v.stop() == 0


def audit(agent: Vigil, **params: Any) -> dict[str, Any]:
    r = agent.get("/api/v1/security/audit?" + urllib.parse.urlencode(params))
    assert r.status == 200, r
    return r.json()["data"]


def admin_id(agent: Vigil) -> str:
    keys = agent.get("/api/v1/api-keys").json()["data"]["api_keys"]
    return next(k["id"] for k in keys if k["name"] == "bootstrap admin")


def test_mutating_call_is_audited_without_its_body(agent: Vigil) -> None:
    r = agent.post("/api/v1/api-keys", {"name": "ci deployer", "role": "operator"},
                   headers={"X-Request-ID": "req-audit-1"})
    assert r.status == 201
    created = r.json()["data"]
    me = admin_id(agent)
    (action,) = audit(agent, event_type="api_key_created", key=me)["events"]
    assert action["target"] == f"api_key:{created['id']}" and action["details"]["role"] == "operator"
    request = next(e for e in audit(agent, event_type="api_request")["events"]
                   if e["details"]["request_id"] == "req-audit-1")
    assert request["actor"] == me and request["ip_address"] == "127.0.0.1"
    assert request["target"] == "/api/v1/api-keys" and request["outcome"] == "success"
    assert request["details"]["method"] == "POST" and request["details"]["status"] == 201
    assert request["details"]["route"] == "/api/v1/api-keys"
    assert "ci deployer" not in str(request)  # no request body
    everything = agent.get("/api/v1/security/audit?limit=1000").body.decode()
    assert created["key"] not in everything  # the token is never recorded


def test_failed_mutation_is_audited_and_reads_are_not(agent: Vigil) -> None:
    key_id = agent.post("/api/v1/api-keys", {"name": "short lived", "role": "viewer"}).json()["data"]["id"]
    assert agent.delete(f"/api/v1/api-keys/{key_id}").status == 200
    assert agent.delete(f"/api/v1/api-keys/{key_id}", headers={"X-Request-ID": "req-twice"}).status == 409
    again = next(e for e in audit(agent, event_type="api_request")["events"]
                 if e["details"]["request_id"] == "req-twice")
    assert again["outcome"] == "failure" and again["details"]["status"] == 409
    assert again["details"]["route"] == "/api/v1/api-keys/{id}" and again["target"] == f"/api/v1/api-keys/{key_id}"
    before = audit(agent)["pagination"]["total"]
    for path in ("/api/v1/health", "/api/v1/api-keys", "/api/v1/logs"):
        assert agent.get(path).status == 200
    assert agent.post("/api/v1/query", raw=b"query=1", headers={"Content-Type": "application/x-www-form-urlencoded"}
                      ).status == 200  # a read-only POST
    assert audit(agent)["pagination"]["total"] == before


def test_authentication_failures_are_audited_with_address_and_route(agent: Vigil) -> None:
    assert agent.get("/api/v1/status", key="vgl_not-a-key", headers={"X-Request-ID": "req-bad-key"}).status == 401
    assert agent.post("/api/v1/api-keys", {"name": "x"}, key=None).status == 401
    revoked = agent.post("/api/v1/api-keys", {"name": "to revoke", "role": "viewer"}).json()["data"]
    assert agent.delete(f"/api/v1/api-keys/{revoked['id']}").status == 200
    assert agent.get("/api/v1/health", key=revoked["key"]).status == 401
    failures = audit(agent, event_type="auth_failure")["events"]
    by_reason = {e["outcome"]: e for e in failures}
    unknown = by_reason["unknown"]
    assert unknown["ip_address"] == "127.0.0.1" and unknown["target"] == "/api/v1/status"
    assert unknown["details"]["route"] == "/api/v1/status" and unknown["details"]["request_id"] == "req-bad-key"
    assert unknown["actor"] is None and unknown["severity"] == "medium"
    missing = by_reason["missing"]
    assert missing["details"]["method"] == "POST" and missing["target"] == "/api/v1/api-keys"
    assert by_reason["revoked"]["actor"] == revoked["id"]  # the key id, when the key is known


def test_scope_refusal_is_audited_once(agent: Vigil) -> None:
    viewer = agent.post("/api/v1/api-keys", {"name": "reader", "role": "viewer"}).json()["data"]
    assert agent.post("/api/v1/api-keys", {"name": "escalate", "role": "admin"}, key=viewer["key"]).status == 403
    assert agent.get("/api/v1/security/audit", key=viewer["key"]).status == 403  # admin:security only
    denied = audit(agent, event_type="access_denied", key=viewer["id"])["events"]
    assert [(e["details"]["method"], e["target"]) for e in denied] == [
        ("GET", "/api/v1/security/audit"), ("POST", "/api/v1/api-keys")]
    assert denied[1]["details"]["required_scope"] == "admin:keys" and denied[1]["details"]["role"] == "viewer"
    assert audit(agent, event_type="api_request", key=viewer["id"])["events"] == []


def test_filters_summary_and_pages(agent: Vigil) -> None:
    for i in range(6):
        assert agent.post("/api/v1/api-keys", {"name": f"batch {i}", "role": "viewer"}).status == 201
    data = audit(agent, time_range="1h")
    summary = data["summary"]
    by_type = summary["by_event_type"]
    assert summary["total_events"] == sum(by_type.values()) == data["pagination"]["total"]
    assert summary["failed_logins"] == by_type.get("auth_failure", 0)
    assert summary["access_denied"] == by_type.get("access_denied", 0)
    assert summary["permission_changes"] == by_type["api_key_created"] + by_type.get("api_key_revoked", 0)
    assert summary["api_requests"] == by_type["api_request"] >= 6
    assert summary["time_range"] == "1h"
    # event_type narrows the list and the total, not the summary
    two = audit(agent, event_type="api_key_created,api_key_revoked")
    assert {e["event_type"] for e in two["events"]} == {"api_key_created", "api_key_revoked"}
    assert two["pagination"]["total"] == by_type["api_key_created"] + by_type.get("api_key_revoked", 0)
    assert two["summary"]["by_event_type"] == by_type
    # cursor pages: newest first, no gaps, no repeats, and the same as offset pages
    seen: list[int] = []
    params: dict[str, Any] = {"limit": 4}
    while True:
        page = audit(agent, **params)
        seen += [e["id"] for e in page["events"]]
        if not page["pagination"]["has_more"]:
            break
        params["cursor"] = page["pagination"]["next_cursor"]
    assert seen == sorted(seen, reverse=True) and len(seen) == len(set(seen))
    assert seen[4:8] == [e["id"] for e in audit(agent, limit=4, offset=4)["events"]]
    # time filters
    future = datetime.fromtimestamp(time.time() + 3600, UTC).isoformat()
    assert audit(agent, **{"from": future})["events"] == []
    assert audit(agent, to="2000-01-01T00:00:00Z")["pagination"]["total"] == 0
    assert agent.get("/api/v1/security/audit?from=soon").status == 400
    cursor = audit(agent, limit=2)["pagination"]["next_cursor"]
    edited = cursor.partition(".")[0][:-1] + ("A" if cursor.partition(".")[0][-1] != "A" else "B")
    assert agent.get(f"/api/v1/security/audit?cursor={edited}.{cursor.partition('.')[2]}").status == 400


def vigil_verify(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", "audit", "verify", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60)


def test_verify_finds_a_row_edited_in_sqlite(make_vigil: Any, tmp_path: Path) -> None:
    v = make_vigil().start()
    for i in range(5):
        assert v.post("/api/v1/api-keys", {"name": f"k{i}", "role": "viewer"}).status == 201
    rows = audit(v, limit=1000)["events"]
    count = len(rows)
    assert count >= 10
    ok = vigil_verify("--config", str(v.config_path))  # the daemon is running: read-only, beside it
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert f"{count} rows verified" in ok.stdout
    victim = sorted(e["id"] for e in rows)[count // 2]
    original_actor = next(e["actor"] for e in rows if e["id"] == victim)
    db = sqlite3.connect(v.state_dir / "vigil.db")
    with db:
        db.execute("UPDATE audit_log SET actor = 'someone else' WHERE id = ?", (victim,))
    db.close()
    broken = vigil_verify("--config", str(v.config_path))
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert f"BROKEN at row {victim} " in broken.stdout and "changed after it was written" in broken.stdout
    assert f"{victim - 1} rows before it verified" in broken.stdout
    assert v.stop() == 0
    stopped = vigil_verify("--db", str(v.state_dir / "vigil.db"), "--json")  # the daemon is stopped
    assert stopped.returncode == 1 and f'"id": {victim}' in stopped.stdout

    # Copies of the file, each tampered another way.
    def tampered(sql: str, *params: Any) -> subprocess.CompletedProcess[str]:
        copy = tmp_path / f"copy-{time.monotonic_ns()}.db"
        shutil.copy(v.state_dir / "vigil.db", copy)
        con = sqlite3.connect(copy)
        with con:
            con.execute("UPDATE audit_log SET actor = ? WHERE id = ?", (original_actor, victim))  # undo the edit
            con.execute(sql, params)
        con.close()
        return vigil_verify("--db", str(copy))

    assert vigil_verify("--db", str(v.state_dir / "vigil.db")).returncode == 1
    restored = tampered("SELECT 1")
    assert restored.returncode == 0 and f"{count} rows verified" in restored.stdout, restored.stdout
    deleted = tampered("DELETE FROM audit_log WHERE id = ?", victim)
    assert deleted.returncode == 1 and f"BROKEN at row {victim + 1} " in deleted.stdout
    assert f"rows {victim}-{victim} were deleted" in deleted.stdout
    last = max(e["id"] for e in rows)
    cut = tampered("DELETE FROM audit_log WHERE id >= ?", last - 1)
    assert cut.returncode == 1 and f"rows {last - 1}-{last} were deleted from the end" in cut.stdout
    missing = vigil_verify("--db", str(tmp_path / "absent.db"))
    assert missing.returncode == 2 and "no database" in missing.stderr
