"""The operations commands of the CLI (agent/opscli.py) against a real daemon: `vigil cleanup`,
`diagnostics`, `health-check`, `store info|integrity-check` (started as tasks, followed with `--wait`,
a progress bar on a terminal), and `vigil config versions|rollback|set` editing the operator's file."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import time
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent import opscli
from tests.conftest import Vigil
from tests.test_cli import vigil_cli
from tests.test_tasks_api import on_a_terminal

CONFIG = """\
# the operator's file: these comments must survive every change made from the CLI
listen: 127.0.0.1:{port}
state_dir: {state}
environment: test

log:
  level: info          # raised to debug while investigating
  format: json

api:
  rate_limit:
    categories: {{config: 100000, maintenance: 100000, health: 100000}}

cleanup:
  temp_dirs: [{scratch}]

collectors:
  interval: 1h
"""


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Vigil]:
    root = tmp_path_factory.mktemp("opscli")
    scratch = root / "scratch"
    scratch.mkdir()
    v = Vigil(root)
    v.write_config(CONFIG.format(port=v.port, state=v.state_dir, scratch=scratch))
    v.start()
    yield v
    assert v.stop() == 0


def scratch_files(v: Vigil, days_old: float, count: int, prefix: str) -> list[Path]:
    when = time.time() - days_old * 86400
    paths = []
    for i in range(count):
        path = Path(v.root) / "scratch" / f"{prefix}-{i}.tmp"
        path.write_bytes(b"x" * 1000)
        os.utime(path, (when, when))
        paths.append(path)
    return paths


def task_of(v: Vigil, task_id: str) -> dict[str, Any]:
    r = v.get(f"/api/v1/tasks/{task_id}")
    assert r.status == 200, r
    return dict(r.json()["data"])


def ok(out: Any) -> Any:
    assert out.returncode == 0, out.stdout + out.stderr
    return out


def test_the_cli_spells_names_as_the_daemon_does() -> None:
    from agent.api.routes.components import Test
    from agent.cleanup.categories import CATEGORIES
    from agent.diagnostics.probes import PROBES

    daemon = (CATEGORIES, tuple(PROBES), typing.get_args(Test))
    assert daemon == (opscli.CLEANUP_CATEGORIES, opscli.COMPONENTS, opscli.TESTS)


def test_cleanup_started_then_followed_with_its_result(agent: Vigil) -> None:
    old = scratch_files(agent, 30, 3, "old")
    recent = scratch_files(agent, 2, 2, "recent")

    started = ok(vigil_cli(agent, "cleanup", "--category", "temp_files", "--older-than-days", "7", "--dry-run"))
    match = re.fullmatch(r"started cleanup task (\S+); follow it with `vigil tasks wait \1`\n", started.stdout)
    assert match, started.stdout
    waited = ok(vigil_cli(agent, "tasks", "wait", match[1]))
    assert '"items": 3' in waited.stdout and '"dry_run": true' in waited.stdout
    assert all(p.exists() for p in old + recent)

    done = ok(vigil_cli(agent, "cleanup", "--category", "temp_files", "--older-than-days", "7", "--wait"))
    first = done.stdout.splitlines()[0]
    assert re.match(r"task_\S+ cleanup: completed 100%", first), done.stdout
    assert re.search(r"cleanup: completed 100%", done.stderr)  # plain progress lines when not on a terminal
    task = task_of(agent, first.split()[0])
    assert task["params"] == {"categories": ["temp_files"], "older_than_days": 7.0, "dry_run": False}
    assert task["result"]["categories"]["temp_files"]["items"] == 3
    assert task["result"]["categories"]["temp_files"]["bytes"] == 3000
    assert not any(p.exists() for p in old) and all(p.exists() for p in recent)

    raw = ok(vigil_cli(agent, "cleanup", "--category", "temp_files", "logs", "--json"))
    accepted = json.loads(raw.stdout)
    assert accepted["type"] == "cleanup" and accepted["status"] == "pending"
    as_json = ok(vigil_cli(agent, "tasks", "wait", accepted["task_id"], "--json"))
    assert json.loads(as_json.stdout)["params"]["categories"] == ["temp_files", "logs"]

    wrong = vigil_cli(agent, "cleanup", "--category", "caches")
    assert wrong.returncode == 2 and "invalid choice: 'caches'" in wrong.stderr  # refused before any request


def test_wait_draws_a_progress_bar_on_a_terminal(agent: Vigil) -> None:
    bar = on_a_terminal(agent, "cleanup", "--category", "temp_files", "--wait")
    assert re.search(r"\r\[#{30}\] completed 100%", bar), repr(bar)


def test_diagnostics_of_chosen_components_and_tests(agent: Vigil) -> None:
    done = ok(vigil_cli(agent, "diagnostics", "--component", "store", "api", "--test", "connectivity", "--wait",
                        "--json"))
    task = json.loads(done.stdout)
    assert task["type"] == "diagnostics" and task["status"] == "completed"
    assert task["params"] == {"components": ["store", "api"], "tests": ["connectivity"]}
    assert [(r["component"], [t["name"] for t in r["tests"]]) for r in task["result"]["results"]] == [
        ("store", ["connectivity"]), ("api", ["connectivity"])]
    assert vigil_cli(agent, "diagnostics", "--component", "redis").returncode == 2


def test_health_check_stores_a_report(agent: Vigil) -> None:
    done = ok(vigil_cli(agent, "health-check", "--wait"))
    report_id = re.search(r'"report_id": "(hc_\w+)"', done.stdout)
    assert report_id, done.stdout
    report = agent.get(f"/api/v1/health/reports/{report_id[1]}")
    assert report.status == 200 and report.json()["data"]["overall"] in ("healthy", "warning"), report


def test_store_info_and_integrity_check(agent: Vigil) -> None:
    info = ok(vigil_cli(agent, "store", "info")).stdout.splitlines()
    assert info[0].startswith(str(agent.state_dir / "vigil.db") + ": ") and "WAL" in info[0], info
    assert info[3].strip().startswith("last integrity check  never")
    assert info[4].split() == ["TABLE", "ROWS", "BYTES", "INDEXES"]
    assert any(line.split()[0] == "audit_log" for line in info[5:-1])
    assert re.fullmatch(r"\d+ tables, \d+ rows, [\d.]+ \w+ with indexes", info[-1]), info[-1]
    as_json = json.loads(ok(vigil_cli(agent, "store", "info", "--json")).stdout)
    assert as_json["path"] == str(agent.state_dir / "vigil.db") and as_json["tables"]

    checked = ok(vigil_cli(agent, "store", "integrity-check", "--quick", "--wait"))
    assert '"ok": true' in checked.stdout and '"mode": "quick_check"' in checked.stdout
    after = ok(vigil_cli(agent, "store", "info")).stdout.splitlines()
    assert re.match(r"\s+last integrity check\s+\S+Z \(took [\d.e-]+s\): ok$", after[3]), after[3]


def test_config_set_dry_run_rollback_and_versions(agent: Vigil) -> None:
    path = agent.config_path
    before = path.read_text()

    dry = ok(vigil_cli(agent, "config", "set", "log.level", "debug", "--dry-run"))
    assert dry.stdout.splitlines() == [f"dry run: 1 change(s) in {path}; nothing written",
                                       '  log.level: "info" -> "debug"', "  would reconfigure: logging"]
    assert path.read_text() == before

    changed = ok(vigil_cli(agent, "config", "set", "log.level", "debug", "--reason", "investigating"))
    head = re.fullmatch(rf"version (\d+): 1 change\(s\) in {re.escape(str(path))} "
                        r"\(undo with `vigil config rollback (\d+)`\)", changed.stdout.splitlines()[0])
    assert head, changed.stdout
    version, previous = head[1], head[2]
    assert changed.stdout.splitlines()[1:] == ['  log.level: "info" -> "debug"', "  reconfigured: logging"]
    # Only the value changed: the comment on that line and every other line are as the operator wrote them.
    assert path.read_text() == before.replace("level: info          #", "level: debug         #")
    running = agent.get("/api/v1/config?section=log").json()["data"]["config"]
    assert running["level"] == "debug"
    same = ok(vigil_cli(agent, "config", "set", "log.level", "debug"))
    assert same.stdout == "no change: log.level already has that value\n"

    typed = ok(vigil_cli(agent, "config", "set", "api.rate_limit.categories.health", "5000"))
    assert '  api.rate_limit.categories.health: 100000 -> 5000' in typed.stdout.splitlines()
    assert yaml.safe_load(path.read_text())["api"]["rate_limit"]["categories"]["health"] == 5000

    listed = ok(vigil_cli(agent, "config", "versions", "--diff")).stdout.splitlines()
    assert listed[0].split() == ["ID", "CREATED", "SOURCE", "ACTOR", "CHANGES", "REASON"]
    rows = [line for line in listed[1:] if re.match(r"[* ] +\d+ ", line)]
    assert rows[0].startswith("* ") and rows[1].split()[0] == version
    assert rows[1].split()[2:] == ["api", rows[1].split()[3], "1", "investigating"]
    assert rows[1].split()[3].startswith("key_")
    assert '          log.level: "info" -> "debug"' in listed
    assert re.fullmatch(r"\d+ versions; \* is the running one \(version \d+\)", listed[-1]), listed[-1]

    back = ok(vigil_cli(agent, "config", "rollback", previous, "--reason", "done investigating"))
    lines = back.stdout.splitlines()
    assert re.fullmatch(rf"rolled back to version {previous}: 2 change\(s\) reverted, now version \d+ "
                        r"\(undo with `vigil config rollback \d+`\)", lines[0]), lines[0]
    assert '  log.level: "debug" -> "info"' in lines
    assert path.read_text() == before
    assert agent.get("/api/v1/config?section=log").json()["data"]["config"]["level"] == "info"
    assert ok(vigil_cli(agent, "config", "rollback", previous, "--dry-run")).stdout.startswith(
        f"dry run: rolling back to version {previous} would revert 0 change(s)")


def test_config_set_takes_yaml_values_and_null_removes_a_setting(agent: Vigil) -> None:
    path = agent.config_path
    before = path.read_text()
    added = ok(vigil_cli(agent, "config", "set", "security.allowlist", "[127.0.0.0/8, '::1']"))
    assert '  security.allowlist: [] -> ["127.0.0.0/8", "::1"]' in added.stdout.splitlines()
    assert yaml.safe_load(path.read_text())["security"]["allowlist"] == ["127.0.0.0/8", "::1"]
    removed = ok(vigil_cli(agent, "config", "set", "security", "null", "--reason", "back to the defaults"))
    assert '  security.allowlist: ["127.0.0.0/8", "::1"] -> []' in removed.stdout.splitlines()
    assert path.read_text() == before


def test_config_commands_refuse_bad_input_and_say_why(agent: Vigil, capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """In this process (the client is synchronous): a subprocess per case would only add start-up time."""
    from agent.cli import main

    monkeypatch.delenv("VIGIL_API_KEY", raising=False)

    def refused(*args: str) -> str:
        assert main([*args, "--config", str(agent.config_path)]) == 1, args
        return capsys.readouterr().err

    path = agent.config_path
    before = path.read_text()
    invalid = refused("config", "set", "log.level", "loud")
    assert "HTTP 422" in invalid and "log.level" in invalid, invalid
    assert "log.colour" in refused("config", "set", "log.colour", "red")
    lockout = refused("config", "set", "security.allowlist", "[10.0.0.0/8]")
    assert "HTTP 409" in lockout and "127.0.0.1" in lockout, lockout
    for bad_path, value, message in (("log..level", "debug", "not a dotted path"),
                                     ("log.level", " ", "an empty VALUE is ambiguous"),
                                     ("log.level", "[debug", "VALUE is not YAML")):
        assert message in refused("config", "set", bad_path, value), (bad_path, value)
    for version in ("999999", "abc"):
        assert "HTTP 404" in refused("config", "rollback", version)
    assert path.read_text() == before


def test_config_schema_still_needs_no_daemon(capsys: pytest.CaptureFixture[str]) -> None:
    from agent.cli import main

    assert main(["config", "schema"]) == 0
    assert "SecurityConfig" in json.loads(capsys.readouterr().out)["$defs"]


def test_a_critical_health_check_exits_1_naming_the_section(make_vigil: Callable[..., Vigil]) -> None:
    v = make_vigil({"collectors": {"interval": "1h"}}).start()
    assert v.post("/api/v1/api-keys", {"name": "audited", "role": "viewer"}).status == 201  # committed when answered
    with sqlite3.connect(v.state_dir / "vigil.db") as db:
        edited = db.execute("UPDATE audit_log SET actor = 'someone else' WHERE id = (SELECT min(id) FROM audit_log)")
        assert edited.rowcount == 1
    db.close()
    out = vigil_cli(v, "health-check", "--wait")
    assert out.returncode == 1, out.stdout + out.stderr
    assert re.search(r"vigil: health_check task \S+ completed and reports a problem: critical: \S*logs\S* "
                     r"\(report hc_\w+\)", out.stderr), out.stderr
    assert v.stop() == 0
