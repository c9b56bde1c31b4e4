"""Config over the API, through the real daemon: changes keep the operator's file byte for byte outside the
changed lines, are validated whole (nothing written when invalid), can be tested without applying, are
versioned and rolled back, refuse to lock the caller out, and are undone by themselves when a component
fails to take them. The in-place YAML editor is also checked alone, on the cases the daemon tests do not reach."""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.config.yamledit import REMOVE, EditError, apply_edits
from tests.conftest import Response, Vigil, free_port, require_binary, wait_for

HIGH_LIMITS = {"rate_limit": {"categories": {"config": 100_000}}}

COMMENTED = """\
# Vigil on web1: edited by hand, comments matter
listen: 127.0.0.1:{port}      # API and /metrics
state_dir: {state}
environment:   staging        # aligned on purpose

log:
  level: info                 # debug | info | warning | error
  format: json

api:
  rate_limit:
    categories: {{health: 100, config: 100000}}   # per minute

# drop-ins
include:
  - conf.d/*.yaml             # local overrides

collectors:
  interval: 15s
"""


def put(v: Vigil, body: dict[str, Any], key: str | bool | None = True) -> Response:
    return v.request("PUT", "/api/v1/config", body=body, key=key)


def key_of(v: Vigil, role: str) -> str:
    return str(v.post("/api/v1/api-keys", {"name": f"{role} key", "role": role}).json()["data"]["key"])


def running(v: Vigil, section: str) -> Any:
    return v.get(f"/api/v1/config?section={section}").json()["data"]["config"]


def commented_vigil(make_vigil: Callable[..., Vigil]) -> Vigil:
    v = make_vigil()
    v.write_config(COMMENTED.format(port=v.port, state=v.state_dir))
    os.chmod(v.config_path, 0o640)
    return v.start()


def test_a_change_keeps_the_file_byte_for_byte_outside_the_changed_lines(make_vigil) -> None:  # type: ignore[no-untyped-def]
    v = commented_vigil(make_vigil)
    before = v.config_path.read_text()
    r = put(v, {"environment": "prod", "log": {"level": "debug"},
                "api": {"rate_limit": {"categories": {"config": 500}}},
                "security": {"max_failed_auth": 3}, "reason": "tune"})
    assert r.status == 200, r
    data = r.json()["data"]
    expected = before.replace(
        "environment:   staging        # aligned", "environment:   prod           # aligned").replace(
        "  level: info                 # debug", "  level: debug                # debug").replace(
        "{health: 100, config: 100000}   # per", "{health: 100, config: 500}   # per",
    ) + "security:\n  max_failed_auth: 3\n"
    assert v.config_path.read_text() == expected
    assert stat.S_IMODE(os.stat(v.config_path).st_mode) == 0o640  # a file holding secrets stays private
    assert {"path": "log.level", "old_value": "info", "new_value": "debug"} in data["changes"]
    assert {"path": "environment", "old_value": "staging", "new_value": "prod"} in data["changes"]
    assert {"path": "security.max_failed_auth", "old_value": 5, "new_value": 3} in data["changes"]
    assert data["requires_restart"] == [] and data["rollback_id"] == 1 and data["version_id"] == 2
    assert "logging" in data["restarted_services"] and data["applied_at"].endswith("Z")
    assert running(v, "log")["level"] == "debug" and running(v, "security")["max_failed_auth"] == 3
    # The seed's form: a category (here a dotted one) and its settings.
    r = put(v, {"category": "api.rate_limit", "settings": {"default": 700}, "reason": "seed form"})
    assert r.status == 200, r
    assert "    default: 700\n" in v.config_path.read_text()
    assert running(v, "api.rate_limit")["default"] == 700
    # null takes a key out of the file: the setting is back at its default.
    r = put(v, {"security": {"max_failed_auth": None}})
    assert r.status == 200, r
    assert v.config_path.read_text() == expected.replace("security:\n  max_failed_auth: 3\n", "").replace(
        "   # per minute\n", "   # per minute\n    default: 700\n")
    assert running(v, "security")["max_failed_auth"] == 5
    assert v.stop() == 0


def test_the_drop_in_that_defines_a_key_is_edited_and_stale_files_are_not_overwritten(make_vigil) -> None:  # type: ignore[no-untyped-def]
    v = make_vigil({"api": HIGH_LIMITS, "units": []})
    drop_in = v.config_dir / "conf.d" / "10-local.yaml"
    drop_in.parent.mkdir()
    drop_in.write_text("log:\n  level: warning   # local\nunits: []\n")
    v.start()
    main = v.config_path.read_text()
    r = put(v, {"log": {"level": "error"}})
    assert r.status == 200, r
    assert drop_in.read_text() == "log:\n  level: error     # local\nunits: []\n"
    assert v.config_path.read_text() == main
    assert r.json()["data"]["files"] == [str(drop_in)]
    # A list written in two files adds up: replacing it over the API is refused, not half done.
    r = put(v, {"units": [{"name": "x", "unit": "x.service"}]})
    assert r.status == 409 and "change it in the files" in r.json()["error"], r
    # An edit on disk that was not loaded (here: rejected) is never overwritten by an API change.
    v.write_config(main.replace("interval: 15s", "interval: soon"))
    wait_for(lambda: v.get("/api/v1/config/status").json()["data"]["status"] == "failed", 5, "the reload to fail")
    r = put(v, {"environment": "api"})
    assert r.status == 409 and r.json()["details"]["files"] == [str(v.config_path)], r
    assert "soon" in v.config_path.read_text()
    status = v.get("/api/v1/config/status").json()["data"]
    assert status["last_reload"]["successful"] is False
    assert any(e["path"] == "collectors.interval" and e["line"] for e in status["last_reload"]["errors"])
    assert v.stop() == 0


def test_invalid_change_writes_nothing_and_names_every_error(make_vigil) -> None:  # type: ignore[no-untyped-def]
    v = commented_vigil(make_vigil)
    before = v.config_path.read_bytes()
    mtime = os.stat(v.config_path).st_mtime_ns
    r = put(v, {"collectors": {"interval": "soon"}, "log": {"level": "loud"}, "nonsense": 1})
    assert r.status == 422 and r.json()["errorType"] == "invalid_config", r
    errors = r.json()["details"]["errors"]
    assert {e["path"] for e in errors} == {"collectors.interval", "log.level", "nonsense"}
    assert all(e["message"] and e["file"] == str(v.config_path) for e in errors)
    assert v.config_path.read_bytes() == before and os.stat(v.config_path).st_mtime_ns == mtime
    assert not list(v.config_dir.glob("*.vigil-tmp"))
    status = v.get("/api/v1/config/status").json()["data"]
    assert status["version"] == 1 and status["status"] == "ok"
    assert put(v, {"category": "log", "reason": "x"}).status == 400
    assert put(v, {"reason": "nothing"}).status == 400
    assert v.stop() == 0


@contextlib.contextmanager
def mosquitto(root: Path) -> Iterator[int]:
    binary = require_binary("mosquitto")
    port = free_port()
    conf = root / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\npersistence false\nallow_anonymous true\n")
    with (root / "mosquitto.log").open("ab") as log:
        proc = subprocess.Popen([binary, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)

    def accepting() -> bool:
        assert proc.poll() is None, (root / "mosquitto.log").read_text()
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
        return False

    try:
        wait_for(accepting, 10, "mosquitto to listen")
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def test_dry_run_and_test_change_nothing_and_try_connections(make_vigil, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    v = make_vigil({"api": HIGH_LIMITS}).start()
    before = v.config_path.read_bytes()
    r = put(v, {"environment": "dry", "dry_run": True})
    assert r.status == 200 and r.json()["data"]["dry_run"] is True, r
    assert r.json()["data"]["changes"] == [{"path": "environment", "old_value": "test", "new_value": "dry"}]
    closed = free_port()
    with mosquitto(tmp_path) as broker:
        receivers = [
            {"name": "broker", "type": "mqtt", "host": "127.0.0.1", "port": broker},
            {"name": "gone", "type": "mqtt", "host": "127.0.0.1", "port": closed},
            {"name": "hook", "type": "webhook", "url": f"http://127.0.0.1:{v.port}/hook/secret-path"},
            {"name": "dead-hook", "type": "webhook", "url": f"http://127.0.0.1:{closed}/x"},
        ]
        r = v.post("/api/v1/config/test", {"notifications": {"receivers": receivers}, "timeout": 3})
    assert r.status == 200, r
    data = r.json()["data"]
    assert data["valid"] and data["applicable"] and data["changes"][0]["path"] == "notifications.receivers"
    results = {c["receiver"]: c for c in data["connectivity"]}
    assert results["broker"]["status"] == "ok", results["broker"]
    assert results["hook"]["status"] == "ok" and results["hook"]["target"] == f"http://127.0.0.1:{v.port}"
    assert results["gone"]["status"] == "error" and results["gone"]["error"]
    assert results["dead-hook"]["status"] == "error" and "cannot connect" in results["dead-hook"]["error"]
    r = v.post("/api/v1/config/test", {"log": {"level": "loud"}})
    assert r.status == 200 and r.json()["data"]["valid"] is False, r
    assert [e["path"] for e in r.json()["data"]["errors"]] == ["log.level"]
    assert v.post("/api/v1/config/test", {}).json()["data"]["valid"] is True  # the running config
    assert v.config_path.read_bytes() == before
    status = v.get("/api/v1/config/status").json()["data"]
    assert status["version"] == 1 and running(v, "environment") == "test"
    versions = v.get("/api/v1/config/versions").json()["data"]["versions"]
    assert [x["id"] for x in versions] == [1]
    assert v.stop() == 0


def test_rollback_restores_the_file_and_the_running_config(make_vigil) -> None:  # type: ignore[no-untyped-def]
    v = commented_vigil(make_vigil)
    original = v.config_path.read_text()
    first = put(v, {"environment": "two", "log": {"level": "debug"}, "reason": "first"}).json()["data"]
    second = put(v, {"collectors": {"interval": "30s"}, "reason": "second"}).json()["data"]
    assert (first["version_id"], second["version_id"], second["rollback_id"]) == (2, 3, 2)
    page = v.get("/api/v1/config/versions?limit=2").json()["data"]
    assert [x["id"] for x in page["versions"]] == [3, 2] and page["pagination"]["has_more"]
    assert page["versions"][0]["reason"] == "second" and page["versions"][0]["source"] == "api"
    assert page["versions"][0]["actor"] and page["versions"][0]["current"] is True
    assert page["versions"][0]["diff"] == [{"path": "collectors.interval", "old_value": "15s", "new_value": "30s"}]
    rest = v.get(f"/api/v1/config/versions?limit=2&cursor={page['pagination']['next_cursor']}").json()["data"]
    assert [x["id"] for x in rest["versions"]] == [1] and not rest["pagination"]["has_more"]
    r = v.post(f"/api/v1/config/rollback/{first['rollback_id']}", {"reason": "undo both"})
    assert r.status == 200, r
    data = r.json()["data"]
    assert data["rollback_id"] == 1 and data["version_id"] == 4 and data["changes_reverted"] == 3
    assert {"collectors", "logging"} <= set(data["restarted_services"]) and data["completed_at"].endswith("Z")
    assert v.config_path.read_text() == original
    assert running(v, "environment") == "staging" and running(v, "log")["level"] == "info"
    assert running(v, "collectors")["interval"] == 15.0
    latest = v.get("/api/v1/config/versions?limit=1").json()["data"]["versions"][0]
    assert (latest["source"], latest["reason"]) == ("rollback", "undo both")
    assert v.post("/api/v1/config/rollback/999").status == 404
    assert v.post("/api/v1/config/rollback/abc").status == 404
    # Rolling forward again is a rollback too (to version 3), and needs no body.
    assert v.post("/api/v1/config/rollback/3").status == 200
    assert running(v, "collectors")["interval"] == 30.0
    assert v.stop() == 0


def test_secrets_masked_unless_admin_asks_and_kept_when_sent_back_masked(make_vigil, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    token_file = tmp_path / "metrics.token"
    token_file.write_text("tok-from-file\n")
    hook = {"name": "hook", "type": "webhook", "url": "http://127.0.0.1:9/x", "hmac_secret": "inline-s3"}
    v = make_vigil({"api": HIGH_LIMITS, "metrics": {"bearer_token": f"${{file:{token_file}}}"},
                    "notifications": {"receivers": [hook]}}).start()
    viewer = key_of(v, "viewer")
    shown = v.get("/api/v1/config", key=viewer)
    assert shown.status == 200 and "tok-from-file" not in shown.body.decode() and "inline-s3" not in shown.body.decode()
    config = shown.json()["data"]["config"]
    assert config["metrics"]["bearer_token"] == "***"
    assert config["notifications"]["receivers"][0]["hmac_secret"] == "***"
    assert v.get("/api/v1/config?include_sensitive=true", key=viewer).status == 403
    clear = v.get("/api/v1/config?include_sensitive=true").json()["data"]["config"]
    assert clear["metrics"]["bearer_token"] == "tok-from-file"
    assert clear["notifications"]["receivers"][0]["hmac_secret"] == "inline-s3"
    assert v.get("/api/v1/config?section=nope").status == 404
    # What GET showed, sent back with one change: the masked secrets keep their values and references.
    receivers = config["notifications"]["receivers"]
    receivers[0]["timeout"] = 3
    r = put(v, {"metrics": {"bearer_token": "***"}, "notifications": {"receivers": receivers}})
    assert r.status == 200, r
    text = v.config_path.read_text()
    assert f"${{file:{token_file}}}" in text and "inline-s3" in text and "***" not in text
    assert "inline-s3" not in r.body.decode()
    r = put(v, {"metrics": {"basic_auth_users": {"prometheus": "***"}}})
    assert r.status == 422 and r.json()["details"]["errors"][0]["path"] == "metrics.basic_auth_users.prometheus"
    assert v.stop() == 0


def test_listen_requires_a_restart(make_vigil) -> None:  # type: ignore[no-untyped-def]
    v = make_vigil({"api": HIGH_LIMITS}).start()
    other = f"127.0.0.1:{free_port()}"
    r = put(v, {"listen": other})
    assert r.status == 200, r
    assert r.json()["data"]["requires_restart"] == ["listen"] and r.json()["data"]["restarted_services"] == []
    assert v.get("/api/v1/config/status").json()["data"]["pending_restart"] == ["listen"]
    assert v.get("/readyz", key=None).status == 200  # still on the old address until a restart
    assert v.stop() == 0


def test_a_change_that_would_lock_the_caller_out_is_refused(make_vigil) -> None:  # type: ignore[no-untyped-def]
    v = make_vigil({"api": HIGH_LIMITS}).start()
    before = v.config_path.read_bytes()
    r = put(v, {"security": {"allowlist": ["10.0.0.0/8"]}})
    assert r.status == 409, r
    assert "127.0.0.1" in r.json()["error"] and r.json()["details"]["reasons"]
    assert v.config_path.read_bytes() == before
    data = v.post("/api/v1/config/test", {"security": {"allowlist": ["10.0.0.0/8"]}}).json()["data"]
    assert data["valid"] is True and data["applicable"] is False and "127.0.0.1" in data["refusals"][0]
    r = put(v, {"security": {"allowlist": ["127.0.0.0/8", "::1"]}})
    assert r.status == 200, r
    assert v.get("/api/v1/config?section=security").json()["data"]["config"]["allowlist"] == ["127.0.0.0/8", "::1"]
    assert v.stop() == 0


def test_a_change_a_component_fails_to_take_is_undone(make_vigil) -> None:  # type: ignore[no-untyped-def]
    v = make_vigil({"api": HIGH_LIMITS}).start()
    before = v.config_path.read_bytes()
    bad_unit = [{"name": "broken", "command": ["/nonexistent/vigil-test-program"]}]
    r = put(v, {"units": bad_unit, "environment": "never"})
    assert r.status == 422 and r.json()["errorType"] == "apply_failed", r
    assert r.json()["details"]["rolled_back"] is True and "broken" in r.json()["error"]
    assert v.config_path.read_bytes() == before
    assert running(v, "environment") == "test" and running(v, "units") == []
    assert v.get("/api/v1/units").json()["data"]["total"] == 0
    assert v.get("/api/v1/config/versions").json()["data"]["pagination"]["total"] == 1
    # Without rollback_on_failure the files keep the change for the operator; the components do not.
    r = put(v, {"units": bad_unit, "rollback_on_failure": False})
    assert r.status == 422 and r.json()["details"]["rolled_back"] is False, r
    assert "/nonexistent/vigil-test-program" in v.config_path.read_text()
    assert running(v, "units") == [] and v.get("/api/v1/units").json()["data"]["total"] == 0
    assert v.stop() == 0


# --- the in-place editor alone ------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "edits", "expected"), [
    ("a:\n  b: 1   # one\n  c: 2\n", [(("a", "d"), "x")], "a:\n  b: 1   # one\n  c: 2\n  d: x\n"),
    ("a:\n    b: 1\n", [(("a", "c", "d"), [1, 2])], "a:\n    b: 1\n    c:\n        d:\n          - 1\n          - 2\n"),
    ("a:\n- x\nb: 1\n", [(("c",), ["y"])], "a:\n- x\nb: 1\nc:\n- y\n"),
    ("a: {b: 1, c: 2}\n", [(("a", "b"), REMOVE)], "a: {c: 2}\n"),
    ("a:\n  b: 1\nz: 0\n", [(("a", "b"), REMOVE)], "z: 0\n"),
    ("k: v\n", [(("k",), "yes"), (("n",), "1:20"), (("f",), 1e20)], "k: 'yes'\nn: '1:20'\nf: 1.0e+20\n"),
    ("a: 1\r\nb:\r\n  c: 2\r\n", [(("b", "d"), 3)], "a: 1\r\nb:\r\n  c: 2\r\n  d: 3\r\n"),
    ("# only a comment\n", [(("a", "b"), True)], "# only a comment\na:\n  b: true\n"),
    ("l:\n  - a\n  - b   # last\nm: 1\n", [(("l",), "s")], "l: s\nm: 1\n"),
    ("e:\nf: 1\n", [(("e",), {"g": "multi\nline"})], "e:\n  g: \"multi\\nline\"\nf: 1\n"),
])
def test_yaml_editor_changes_only_what_it_must(text: str, edits: list[Any], expected: str) -> None:
    out = apply_edits(text, edits)
    assert out == expected
    assert yaml.safe_load(out) is not None


def test_yaml_editor_refuses_to_break_anchors() -> None:
    with pytest.raises(EditError, match="alias"):
        apply_edits("a: &x {p: 1}\nb: *x\n", [(("b", "p"), 2)])
    with pytest.raises(EditError, match="anchored"):
        apply_edits("a: &x 1\nb: *x\n", [(("a",), 2)])
