"""Every check type configured in one daemon and run through the API (the types' own tests cover
their details): the config door, the run door, the metrics door. Plus the shipped examples."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import yaml

from agent.config.loader import parse_sources
from tests.checks.fake_systemctl import install
from tests.checks.tls_fixtures import make_ca, make_leaf, write_pem
from tests.conftest import REPO, require_binary


def test_every_type_runs_in_the_daemon(make_vigil, tmp_path: Path) -> None:
    check_dummy = require_binary("/usr/lib/nagios/plugins/check_dummy")
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "vigil-all-types-marker"])
    try:
        data = tmp_path / "data.txt"
        data.write_text("hello\n")
        log = tmp_path / "app.log"
        log.write_text("start\nERROR one\nok\nERROR two\n")
        pem = write_pem(tmp_path / "cert.pem", make_leaf(make_ca(), days=5))
        systemctl = install(tmp_path / "systemd", {"web.service": {
            "ActiveState": "active", "SubState": "running", "MainPID": 42, "NRestarts": 0,
            "ActiveEnterTimestamp": time.time() - 60}})
        v = make_vigil({
            "api": {"rate_limit": {"categories": {"health": 100_000}}},
            "check_runner": {"systemctl": str(systemctl)},
            "checks": [
                {"name": "http", "type": "http", "url": "http://127.0.0.1:{port}/healthz", "expected_status": [200]},
                {"name": "tcp", "type": "tcp", "host": "127.0.0.1", "port": "{port}"},
                {"name": "dns", "type": "dns", "query": "localhost", "expect": ["127.0.0.1"]},
                {"name": "command", "type": "command", "command": [check_dummy, "1", "disk at 91%"]},
                {"name": "process", "type": "process", "cmdline": "vigil-all-types-marker", "min_count": 1},
                {"name": "file", "type": "file", "path": str(data), "max_size": 3},
                {"name": "certificate", "type": "certificate", "file": str(pem), "verify_chain": False},
                {"name": "log", "type": "log", "path": str(log), "pattern": "ERROR", "from_start": True,
                 "warning": 1, "critical": 5},
                {"name": "systemd", "type": "systemd", "unit": "web.service"},
                {"name": "heartbeat", "type": "heartbeat", "period": "1h", "token": "t" * 24},
            ],
        })
        text = v.config_path.read_text().replace("'{port}'", str(v.port)).replace("{port}", str(v.port))
        v.write_config(text)
        v.start()
        expected = {
            "http": ("ok", "200 OK"), "tcp": ("ok", "accepted"), "dns": ("ok", "127.0.0.1"),
            "command": ("warning", "disk at 91%"), "process": ("ok", "1 process"),
            "file": ("critical", "max 3"), "certificate": ("critical", "expires in"),
            "log": ("warning", "2 lines matching /ERROR/"), "systemd": ("ok", "active"),
            "heartbeat": ("ok", "waiting for the first ping"),
        }
        for name, (status, words) in expected.items():
            r = v.post(f"/api/v1/checks/{name}/run")
            assert r.status == 200, r
            result = r.json()["data"]["result"]
            assert result["status"] == status and words in result["message"], (name, result)
        listed = {c["name"]: c["type"] for c in v.get("/api/v1/checks").json()["data"]["checks"]}
        assert listed == {name: name for name in expected}
        for name, (status, _) in expected.items():
            code = {"ok": 0, "warning": 1, "critical": 2, "unknown": 3}[status]
            assert v.metric("vigil_check_status", {"check": name, "type": name}) == code, name
        assert v.metric("vigil_check_perfdata", {"check": "file", "label": "size", "unit": "bytes"}) == 6
        assert v.stop() == 0
    finally:
        sleeper.kill()
        sleeper.wait()


def test_shipped_check_examples_are_valid() -> None:
    """The active examples load; so do the commented templates once uncommented."""
    path = REPO / "config" / "checks.d" / "local.yaml"
    text = path.read_text()
    assert parse_sources({str(path): text}, str(path)).config.checks
    templates = "\n".join(line[1:] for line in text.splitlines() if re.match(r"#  ", line))
    templates = templates.replace("${file:/etc/vigil/backup.token}", "a-token-of-at-least-16-chars")
    doc = yaml.safe_load("checks:\n" + templates)
    names = [c["name"] for c in doc["checks"]]
    assert names == ["website", "root-disk", "nginx", "nightly-backup", "app-errors"]
    if Path("/usr/lib/nagios/plugins/check_disk").exists():
        loaded = parse_sources({"t.yaml": yaml.safe_dump(doc)}, "t.yaml")
        assert [c.name for c in loaded.config.checks] == names
    else:
        doc["checks"] = [c for c in doc["checks"] if c["type"] != "command"]
        assert parse_sources({"t.yaml": yaml.safe_dump(doc)}, "t.yaml").config.checks


def test_duplicate_names_point_at_the_second_definition() -> None:
    from agent.config.errors import ConfigError

    main = "checks:\n  - {name: web, type: tcp, host: h, port: 80}\nunits:\n  - {name: w, unit: a.service}\n" \
           "  - {name: w, unit: b.service}\n"
    dropin = "checks:\n  - name: web\n    type: tcp\n    host: h\n    port: 81\n"
    try:
        parse_sources({"/e/vigil.yaml": main, "/e/checks.d/web.yaml": dropin}, "/e/vigil.yaml")
    except ConfigError as exc:
        text = str(exc)
    else:
        raise AssertionError("duplicate names were accepted")
    assert "/e/checks.d/web.yaml:2: checks[1].name: duplicate check name 'web' (first at checks[0])" in text
    assert "/e/vigil.yaml:5: units[1].name: duplicate unit name 'w' (first at units[0])" in text
