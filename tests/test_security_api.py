"""API access policy through the real daemon: lockouts after failed keys (and their expiry, persistence and
lifting), the address allowlist, the maximum key age, and the settings and status routes.

The daemon listens on 127.0.0.1; the "other" client connects from 127.0.0.2 (any 127/8 address is local on
Linux), so the test's own admin requests from 127.0.0.1 are not caught by the lockouts they cause.
"""

from __future__ import annotations

import http.client
import json
import sqlite3
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from agent.api.formats import parse_iso
from tests.conftest import Response, Vigil, wait_for

OTHER = "127.0.0.2"
WRONG = "vgl_this-key-does-not-exist"


def request_from(source: str, vigil: Vigil, method: str, path: str, key: str | None = None,
                 body: Any = None) -> Response:
    """A request whose connection comes from `source` (a loopback address other than 127.0.0.1)."""
    url = urlsplit(vigil.url)
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=10, source_address=(source, 0))
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    data = json.dumps(body).encode() if body is not None else None
    if data is not None:
        headers["Content-Type"] = "application/json"
    try:
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        return Response(resp.status, dict(resp.getheaders()), resp.read())
    finally:
        conn.close()


def status(vigil: Vigil) -> dict[str, Any]:
    resp = vigil.get("/api/v1/security/status")
    assert resp.status == 200, resp
    return resp.json()["data"]


def audit_rows(vigil: Vigil, event_type: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(f"file:{vigil.state_dir / 'vigil.db'}?mode=ro", uri=True) as db:
        return db.execute("SELECT actor, remote, target, outcome, details FROM audit_log WHERE event_type=?"
                          " ORDER BY id", (event_type,)).fetchall()


def test_failed_keys_lock_the_address_until_the_lockout_expires(make_vigil: Callable[..., Vigil]) -> None:
    vigil = make_vigil({"security": {"max_failed_auth": 3, "lockout_minutes": 0.05}}).start()
    admin = vigil.admin_key
    for _ in range(5):  # no key at all is not guessing one: never counted
        resp = request_from(OTHER, vigil, "GET", "/api/v1/status")
        assert resp.status == 401 and resp.json()["details"]["reason"] == "missing", resp
    for _ in range(3):
        resp = request_from(OTHER, vigil, "GET", "/api/v1/status", key=WRONG)
        assert resp.status == 401 and resp.json()["details"]["reason"] == "unknown", resp

    locked = request_from(OTHER, vigil, "GET", "/api/v1/status", key=admin)  # a valid key does not unlock
    assert locked.status == 429, locked
    error = locked.json()
    assert error["details"]["reason"] == "locked_out" and error["details"]["address"] == OTHER
    assert error["details"]["failures"] == 3
    assert "127.0.0.2" in error["error"]
    assert 1 <= int(locked.headers["Retry-After"]) <= 3
    assert request_from(OTHER, vigil, "GET", "/healthz").status == 200  # probes stay open

    data = status(vigil)  # from 127.0.0.1: not locked
    assert data["failed_auth_24h"] == 3 and data["failed_auth_by_reason"] == {"unknown": 3}
    assert [a["address"] for a in data["locked_addresses"]] == [OTHER]
    assert data["status"] == "attention" and data["last_scan"] is None
    until = data["locked_addresses"][0]["until"]
    assert vigil.metric("vigil_api_auth_failures_total", {"reason": "locked_out"}) == 1

    wait_for(lambda: request_from(OTHER, vigil, "GET", "/api/v1/status", key=admin).status == 200, 10,
             "the lockout to expire")
    assert time.time() >= parse_iso(until)  # not a moment before its end
    assert status(vigil)["locked_addresses"] == []
    # The lock paid for the failures before it: one more wrong key is a 401, not a new lock.
    assert request_from(OTHER, vigil, "GET", "/api/v1/status", key=WRONG).status == 401
    assert request_from(OTHER, vigil, "GET", "/api/v1/status", key=admin).status == 200
    [(_actor, remote, target, outcome, details)] = audit_rows(vigil, "address_locked")
    assert (remote, target, outcome) == (OTHER, OTHER, "locked")
    assert json.loads(details)["failures"] == 3 and json.loads(details)["until"] == until


def test_loopback_is_exempt_from_lockouts_by_default(make_vigil: Callable[..., Vigil]) -> None:
    vigil = make_vigil({"security": {"max_failed_auth": 2}}).start()
    for _ in range(4):  # a local script with a stale key must not lock the vigil CLI out
        assert vigil.get("/api/v1/status", key=WRONG).status == 401
    data = status(vigil)
    assert data["failed_auth_24h"] == 4 and data["locked_addresses"] == []  # counted, never locked


def test_a_lockout_survives_a_restart_and_an_admin_can_lift_it(make_vigil: Callable[..., Vigil]) -> None:
    vigil = make_vigil({"security": {"max_failed_auth": 2, "lockout_minutes": 10}}).start()
    admin = vigil.admin_key
    for _ in range(2):
        assert request_from(OTHER, vigil, "GET", "/api/v1/status", key=WRONG).status == 401
    assert request_from(OTHER, vigil, "GET", "/api/v1/status", key=admin).status == 429

    assert vigil.stop() == 0
    vigil.start()
    resp = request_from(OTHER, vigil, "GET", "/api/v1/status", key=admin)
    assert resp.status == 429, resp
    assert 590 <= int(resp.headers["Retry-After"]) <= 600

    assert vigil.delete("/api/v1/security/lockouts/not-an-address").status == 400
    assert vigil.delete("/api/v1/security/lockouts/10.1.2.3").status == 404
    lifted = vigil.delete(f"/api/v1/security/lockouts/{OTHER}")
    assert lifted.status == 200, lifted
    assert lifted.json()["data"]["address"] == OTHER and lifted.json()["data"]["failures"] == 2
    assert request_from(OTHER, vigil, "GET", "/api/v1/status", key=admin).status == 200
    assert vigil.delete(f"/api/v1/security/lockouts/{OTHER}").status == 404
    [(actor, remote, target, outcome, _details)] = audit_rows(vigil, "lockout_lifted")
    assert (remote, target, outcome) == ("127.0.0.1", OTHER, "lifted") and actor.startswith("key_")

    # Lifted also after a restart, and the failures before the lift are not counted again.
    assert vigil.stop() == 0
    vigil.start()
    assert request_from(OTHER, vigil, "GET", "/api/v1/status", key=WRONG).status == 401
    assert request_from(OTHER, vigil, "GET", "/api/v1/status", key=admin).status == 200


def test_the_allowlist_refuses_other_addresses(make_vigil: Callable[..., Vigil]) -> None:
    vigil = make_vigil({"security": {"allowlist": ["127.0.0.1/32", "::1"], "max_failed_auth": 2}}).start()
    for key in (vigil.admin_key, WRONG, WRONG, WRONG):
        resp = request_from(OTHER, vigil, "GET", "/api/v1/status", key=key)
        assert resp.status == 403, resp
        error = resp.json()
        assert error["details"] == {"reason": "address_not_allowed", "address": OTHER}
        assert "address 127.0.0.2 is not in security.allowlist" in error["error"]
    assert request_from(OTHER, vigil, "GET", "/healthz").status == 200
    assert request_from(OTHER, vigil, "GET", "/readyz").status == 200
    assert request_from(OTHER, vigil, "GET", "/metrics").status == 200
    data = status(vigil)
    assert data["failed_auth_24h"] == 0 and data["locked_addresses"] == []  # refused before its key counted
    assert vigil.get("/api/v1/security/settings").json()["data"]["allowlist_enabled"] is True


def test_keys_older_than_max_key_age_are_refused(make_vigil: Callable[..., Vigil]) -> None:
    vigil = make_vigil({"security": {"max_key_age": "30d"}}).start()
    old = vigil.post("/api/v1/api-keys", {"name": "old", "role": "viewer"}).json()["data"]
    aging = vigil.post("/api/v1/api-keys", {"name": "aging", "role": "viewer"}).json()["data"]
    soon = vigil.post("/api/v1/api-keys", {"name": "soon", "role": "viewer",
                                           "expires_at": "2099-01-01T00:00:00Z"}).json()["data"]
    assert vigil.stop() == 0
    day = 86400.0
    with sqlite3.connect(vigil.state_dir / "vigil.db") as db:
        db.execute("UPDATE api_keys SET created_at = created_at - ? WHERE id=?", (31 * day, old["id"]))
        db.execute("UPDATE api_keys SET created_at = created_at - ? WHERE id=?", (27 * day, aging["id"]))
        db.execute("UPDATE api_keys SET expires_at = ? WHERE id=?", (time.time() + 2 * day, soon["id"]))
        db.execute("UPDATE api_keys SET created_at = created_at - ? WHERE role='admin'", (10 * day,))
    vigil.start()

    resp = vigil.get("/api/v1/status", key=old["key"])
    assert resp.status == 401, resp
    assert resp.json()["details"]["reason"] == "too_old"
    assert "max_key_age (30d)" in resp.json()["error"]
    assert vigil.get("/api/v1/status", key=aging["key"]).status == 200
    data = status(vigil)
    assert data["active_keys"] == 3  # admin, aging, soon
    near = {k["name"]: k for k in data["keys_near_expiry"]}
    assert set(near) == {"aging", "soon"}
    assert near["aging"]["cause"] == "max_key_age" and near["soon"]["cause"] == "expires_at"
    assert 2 * 86400 - 60 < near["soon"]["expires_in_seconds"] <= 2 * 86400
    assert data["failed_auth_by_reason"] == {"too_old": 1}

    # Every admin key is 10 days old: a max_key_age below that would leave no way in.
    resp = vigil.request("PUT", "/api/v1/security/settings", body={"max_key_age": "5d"})
    assert resp.status == 409, resp
    assert "would leave no usable admin key" in resp.json()["error"]
    assert vigil.get("/api/v1/security/settings").json()["data"]["max_key_age"] == 30 * day
    resp = vigil.request("PUT", "/api/v1/security/settings", body={"max_key_age": "20d"})
    assert resp.status == 200, resp
    assert resp.json()["data"]["warnings"] == []


@pytest.fixture
def settings_vigil(make_vigil: Callable[..., Vigil]) -> Vigil:
    vigil = make_vigil()
    note = "# the operator's note\nsecurity:\n  max_failed_auth: 5  # seed\n"
    vigil.write_config(vigil.config_path.read_text() + note)
    return vigil.start()


def config_text(vigil: Vigil) -> str:
    return vigil.config_path.read_text()


def test_settings_get_and_put_round_trip(settings_vigil: Vigil) -> None:
    vigil = settings_vigil
    resp = vigil.get("/api/v1/security/settings")
    assert resp.status == 200, resp
    assert resp.json()["data"] == {
        "max_failed_auth": 5, "failure_window": 900.0, "lockout_minutes": 15.0, "allowlist": [],
        "allowlist_enabled": False, "lockout_exempt": ["127.0.0.1/32", "::1/128"], "max_key_age": None,
        "rate_limits": {"window": 60.0, "default": 600, "categories": {
            "health": 100, "metrics": 50, "config": 20, "backup": 10, "maintenance": 10}},
    }
    viewer = vigil.post("/api/v1/api-keys", {"name": "v", "role": "viewer"}).json()["data"]["key"]
    assert vigil.get("/api/v1/security/settings", key=viewer).status == 403
    assert vigil.get("/api/v1/security/status", key=viewer).status == 403
    assert vigil.request("PUT", "/api/v1/security/settings", key=viewer, body={"max_failed_auth": 9}).status == 403

    change = {"max_failed_auth": 7, "lockout_minutes": 30, "failure_window": "10m",
              "allowlist": ["127.0.0.0/8", "10.0.0.0/8"], "max_key_age": "90d",
              "rate_limits": {"categories": {"health": 150, "backup": None}}, "reason": "tighten the API"}
    resp = vigil.request("PUT", "/api/v1/security/settings", body=change)
    assert resp.status == 200, resp
    data = resp.json()["data"]
    assert data["settings"]["max_failed_auth"] == 7 and data["settings"]["failure_window"] == 600.0
    assert data["settings"]["max_key_age"] == 90 * 86400.0
    assert data["settings"]["rate_limits"]["categories"] == {"health": 150, "metrics": 50, "config": 20,
                                                              "maintenance": 10}
    assert data["warnings"] == []
    assert {c["path"] for c in data["changes"]} >= {"security.max_failed_auth", "security.allowlist"}
    assert vigil.get("/api/v1/security/settings").json()["data"] == data["settings"]

    text = config_text(vigil)
    assert "# the operator's note" in text
    written = yaml.safe_load(text)
    assert written["security"]["max_key_age"] == "90d" and written["security"]["failure_window"] == "10m"
    assert "backup" not in written["api"]["rate_limit"]["categories"]
    assert vigil.get("/api/v1/status").headers["X-RateLimit-Limit"] == "150"  # applied to the running limiter
    [(actor, _remote, target, outcome, details)] = audit_rows(vigil, "security_settings_changed")
    assert (target, outcome) == ("config:security", "success") and actor.startswith("key_")
    assert json.loads(details)["reason"] == "tighten the API"

    back = vigil.request("PUT", "/api/v1/security/settings", body={"lockout_minutes": None, "max_key_age": None})
    assert back.status == 200, back  # null: back to the default, the key leaves the file
    assert back.json()["data"]["settings"]["lockout_minutes"] == 15.0
    assert back.json()["data"]["settings"]["max_key_age"] is None
    assert {"lockout_minutes", "max_key_age"}.isdisjoint(yaml.safe_load(config_text(vigil))["security"])


def test_settings_put_refuses_what_would_lock_the_caller_out(settings_vigil: Vigil) -> None:
    vigil = settings_vigil
    before = config_text(vigil)
    resp = vigil.request("PUT", "/api/v1/security/settings", body={"allowlist": ["10.0.0.0/8"]})
    assert resp.status == 409, resp
    assert "does not include your address 127.0.0.1" in resp.json()["error"]
    # The same check guards every way of changing the config, not only this route.
    resp = vigil.request("PUT", "/api/v1/config", body={"security": {"allowlist": ["10.0.0.0/8"]}})
    assert resp.status == 409, resp
    assert "does not include your address 127.0.0.1" in resp.json()["error"]
    for bad, path in (({"max_failed_auth": 0}, "security.max_failed_auth"),
                      ({"max_key_age": "1h"}, "security.max_key_age"),
                      ({"allowlist": ["10.0.0.300/8"]}, "security.allowlist"),
                      ({"rate_limits": {"categories": {"health": 0}}}, "api.rate_limit.categories.health")):
        resp = vigil.request("PUT", "/api/v1/security/settings", body=bad)
        assert resp.status == 422, (bad, resp)
        assert path in [e["path"] for e in resp.json()["details"]["errors"]], resp
    assert vigil.request("PUT", "/api/v1/security/settings", body={"max_failed_auth": "many"}).status == 400
    assert vigil.request("PUT", "/api/v1/security/settings", body={"password_policy": {}}).status == 400
    dry = vigil.request("PUT", "/api/v1/security/settings", body={"max_failed_auth": 9, "dry_run": True})
    assert dry.status == 200, dry
    assert dry.json()["data"]["dry_run"] is True and dry.json()["data"]["settings"]["max_failed_auth"] == 9
    assert config_text(vigil) == before
    assert vigil.get("/api/v1/security/settings").json()["data"]["max_failed_auth"] == 5
