"""Hot reload: file edits apply by themselves, broken edits are rejected whole, SIGHUP works."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import yaml

from tests.conftest import REPO, Vigil, wait_for


def edit(v: Vigil, change) -> None:  # type: ignore[no-untyped-def]
    doc = yaml.safe_load(v.config_path.read_text())
    change(doc)
    v.write_config(doc)


def test_valid_edit_is_live_within_one_second(make_vigil) -> None:
    v = make_vigil({"environment": "before"}).start()
    first_ts = v.metric("vigil_config_last_reload_success_timestamp_seconds")
    started = time.monotonic()
    edit(v, lambda d: d.update(environment="after"))
    wait_for(lambda: v.get("/api/v1/health").json()["data"]["overall"]["environment"] == "after", 5,
             "the edit to apply")
    elapsed = time.monotonic() - started
    print(f"config edit applied in {elapsed * 1000:.0f} ms")
    assert elapsed < 1.0, f"edit took {elapsed:.3f}s to apply"
    assert v.metric("vigil_config_last_reload_successful") == 1
    assert v.metric("vigil_config_last_reload_success_timestamp_seconds") > first_ts
    status = v.get("/api/v1/status").json()["data"]["config"]
    assert status["version"] == 2
    assert status["last_reload"]["source"] == "file"
    assert {"path": "environment", "old_value": "before", "new_value": "after"} in status["last_reload"]["changes"]
    assert v.stop() == 0


def test_broken_edit_keeps_old_config(make_vigil) -> None:
    v = make_vigil({"environment": "good"}).start()
    wait_for(lambda: v.metric("vigil_config_last_reload_success_timestamp_seconds"), 5, "metric")
    ok_ts = v.metric("vigil_config_last_reload_success_timestamp_seconds")
    text = v.config_path.read_text()
    v.write_config(text.replace("environment: good", "environment: bad\ncollectors:\n  interval: soon"))
    wait_for(lambda: v.metric("vigil_config_last_reload_successful") == 0, 5, "the reload to fail")
    assert v.metric("vigil_config_last_reload_success_timestamp_seconds") == ok_ts
    assert v.get("/api/v1/health").json()["data"]["overall"]["environment"] == "good"
    reload = v.get("/api/v1/status").json()["data"]["config"]["last_reload"]
    assert reload["successful"] is False
    line = next(i for i, ln in enumerate(v.config_path.read_text().splitlines(), 1) if "soon" in ln)
    assert any(f"vigil.yaml:{line}: collectors.interval:" in e for e in reload["errors"]), reload["errors"]
    assert "config_rejected" in v.log()
    out = subprocess.run(
        [sys.executable, "-m", "agent", "status", "--config", str(v.config_path)],
        cwd=REPO, capture_output=True, text=True, timeout=30,
    )
    assert out.returncode == 0, out.stderr
    assert "LAST RELOAD FAILED" in out.stdout and "collectors.interval" in out.stdout
    # Fixing the file recovers.
    v.write_config(text.replace("environment: good", "environment: fixed"))
    wait_for(lambda: v.metric("vigil_config_last_reload_successful") == 1, 5, "the fixed reload")
    assert v.get("/api/v1/health").json()["data"]["overall"]["environment"] == "fixed"
    assert v.stop() == 0


def test_sighup_reloads_and_keeps_state(make_vigil) -> None:
    v = make_vigil({"reload": {"watch": False}}).start()
    token = v.post("/api/v1/api-keys", {"name": "survives reload"}).json()["data"]["key"]
    edit(v, lambda d: d.update(environment="hup"))
    v.signal(signal.SIGHUP)
    wait_for(lambda: v.get("/api/v1/health").json()["data"]["overall"]["environment"] == "hup", 5, "SIGHUP")
    reload = v.get("/api/v1/status").json()["data"]["config"]["last_reload"]
    assert reload["source"] == "signal" and reload["successful"]
    assert v.get("/api/v1/status", key=token).status == 200
    assert v.stop() == 0


def test_restart_only_settings_are_reported(make_vigil) -> None:
    v = make_vigil().start()
    other = f"127.0.0.1:{v.port + 1 if v.port < 65535 else v.port - 1}"
    edit(v, lambda d: d.update(listen=other))
    wait_for(lambda: v.get("/api/v1/status").json()["data"]["config"]["pending_restart"] == ["listen"], 5,
             "the listen change to be reported")
    assert v.get("/readyz", key=None).status == 200  # still serving on the old address
    assert v.stop() == 0


def test_collector_disable_and_interval_change_apply(make_vigil) -> None:
    v = make_vigil().start()
    wait_for(lambda: v.metric("node_load1") is not None, 10, "loadavg metrics")
    edit(v, lambda d: d["collectors"].update(loadavg={"enabled": False}))
    wait_for(lambda: v.metric("node_load1") is None, 5, "loadavg to disappear")
    assert v.metric("vigil_collector_success", {"collector": "loadavg"}) is None
    edit(v, lambda d: d["collectors"].update(loadavg={"enabled": True}))
    wait_for(lambda: v.metric("node_load1") is not None, 5, "loadavg to come back")
    assert v.stop() == 0


def test_config_versions_are_stored(make_vigil) -> None:
    v = make_vigil({"environment": "one"}).start()
    edit(v, lambda d: d.update(environment="two"))
    wait_for(lambda: v.get("/api/v1/status").json()["data"]["config"]["version"] == 2, 5, "version 2")
    assert v.stop() == 0
    import sqlite3

    db = sqlite3.connect(v.state_dir / "vigil.db")
    rows = db.execute("SELECT id, source, diff, sources FROM config_versions ORDER BY id").fetchall()
    assert [r[1] for r in rows] == ["startup", "file"]
    assert '"environment"' in rows[1][2] and "two" in rows[1][3]
    # A restart on the same files does not add a version.
    v.start()
    assert v.get("/api/v1/status").json()["data"]["config"]["version"] == 2
    assert v.stop() == 0


def test_inline_secrets_are_masked_in_diffs_and_events(make_vigil) -> None:
    v = make_vigil().start()
    viewer = v.post("/api/v1/api-keys", {"name": "viewer", "role": "viewer"}).json()["data"]["key"]
    edit(v, lambda d: d.update(metrics={"bearer_token": "hunter2-plaintext"}, hostname="renamed-host"))
    wait_for(lambda: v.get("/api/v1/status").json()["data"]["hostname"] == "renamed-host", 5, "the edit")
    status = v.get("/api/v1/status", key=viewer)
    assert "hunter2" not in status.body.decode()
    changes = status.json()["data"]["config"]["last_reload"]["changes"]
    assert {"path": "metrics.bearer_token", "old_value": None, "new_value": "***"} in changes
    assert "hunter2" not in v.log()
    assert v.stop() == 0


def test_secrets_of_receiver_and_check_types_are_masked_in_diffs(make_vigil) -> None:  # type: ignore[no-untyped-def]
    """Receivers and checks are unions of types: a secret of any member type is masked."""
    v = make_vigil().start()
    receivers = [
        {"name": "mail", "type": "email", "smarthost": "127.0.0.1:25", "from": "a@b.c", "to": ["d@e.f"],
         "tls": "none", "username": "u", "password": "pw-plain-1"},
        {"name": "hook", "type": "webhook", "url": "http://127.0.0.1:9/x", "hmac_secret": "hmac-plain-2",
         "headers": {"X-Token": "hdr-plain-3"}},
    ]
    edit(v, lambda d: d.update(notifications={"receivers": receivers}))
    wait_for(lambda: (v.get("/api/v1/status").json()["data"]["config"]["last_reload"] or {}).get("changes"), 5,
             "the edit")
    body = v.get("/api/v1/status").body.decode()
    for plain in ("pw-plain-1", "hmac-plain-2", "hdr-plain-3"):
        assert plain not in body and plain not in v.log()
    assert "***" in body
    assert v.stop() == 0


def test_sighup_picks_up_a_rotated_secret_file(make_vigil, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import http

    token = tmp_path / "metrics.token"
    token.write_text("tok-old\n")
    v = make_vigil({"metrics": {"bearer_token": f"${{file:{token}}}"}}).start()
    assert http("GET", v.url + "/metrics", key="tok-old").status == 200
    token.write_text("tok-new\n")
    v.signal(signal.SIGHUP)
    wait_for(lambda: http("GET", v.url + "/metrics", key="tok-new").status == 200, 5, "the new token")
    assert http("GET", v.url + "/metrics", key="tok-old").status == 401
    changes = v.get("/api/v1/status").json()["data"]["config"]["last_reload"]["changes"]
    assert changes == [{"path": "metrics.bearer_token", "old_value": "***", "new_value": "***"}]
    assert v.stop() == 0


def test_drop_in_directory_created_later_is_watched(make_vigil) -> None:
    v = make_vigil({"environment": "main"}).start()
    conf_d = v.config_dir / "conf.d"
    conf_d.mkdir()
    (conf_d / "10-env.yaml").write_text("environment: from-drop-in\n")
    wait_for(lambda: v.get("/api/v1/health").json()["data"]["overall"]["environment"] == "from-drop-in", 5,
             "the drop-in to apply")
    (conf_d / "10-env.yaml").unlink()
    wait_for(lambda: v.get("/api/v1/health").json()["data"]["overall"]["environment"] == "main", 5,
             "the drop-in removal to apply")
    assert v.stop() == 0
