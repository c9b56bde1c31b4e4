"""Rule files, rule evaluation and `vigil test rules`, checked against Debian's promtool (Prometheus 2.42).

The unit-test files in tests/rules_testdata run under both tools and must give the same verdict (and,
for the deliberately failing file, the same report); rule files promtool rejects are rejected here
with file:line, and those it accepts load.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from agent.alerting.rulefile import RuleGroup, duplicate_rules, load_rule_file, load_rule_files, parse_rule_file
from agent.alerting.rules import (
    RESOLVED_RETENTION_MS,
    GroupState,
    carry_over,
    evaluate,
    restore_after_downtime,
)
from agent.alerting.unittest import go_duration, go_float_e, model_duration
from agent.config.errors import ConfigError
from agent.promql.memory import MemoryQueryable
from agent.promql.values import STALE_NAN, Labels, is_stale, labels_from
from tests.conftest import REPO, require_binary

DATA = Path(__file__).resolve().parent / "rules_testdata"
MIN = 60_000


def run(cmd: list[str], cwd: Path = DATA) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120)


def vigil(*args: str, cwd: Path = DATA) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})


# --- `vigil test rules` and `promtool test rules` on the same files ---


# Every unit-test file of rules_testdata and the exit status promtool gives it.
UNIT_TEST_FILES = {
    "host_test.yml": 0,  # for, keep_firing_for, recording rules, templates, several groups and files
    "host_rules_test.yml": 0,  # the shipped rules, config/rules.d/host.yml
    "failing_test.yml": 1,  # wrong expectations
    "eval_error_test.yml": 1,  # a rule fails to evaluate
    "edge_cases_test.yml": 1,  # lazy loading, steps, no interval, NaN, range vectors
    "template_errors_test.yml": 1,  # template errors, label templates in ALERTS, group limit
}


def test_every_unit_test_file_is_listed() -> None:
    assert sorted(p.name for p in DATA.glob("*_test.yml")) == sorted(UNIT_TEST_FILES)


@pytest.mark.parametrize(("name", "status"), UNIT_TEST_FILES.items())
def test_unit_test_files_get_promtools_verdict_and_report(name: str, status: int) -> None:
    """Same exit status, and byte for byte the same report on stdout and stderr."""
    promtool = require_binary("promtool")
    theirs = run([promtool, "test", "rules", name])
    ours = vigil("test", "rules", name)
    assert theirs.returncode == status, theirs.stderr
    assert ours.returncode == status, ours.stderr
    assert ours.stderr == theirs.stderr
    assert ours.stdout == theirs.stdout


def test_reports_name_what_failed() -> None:
    ok = vigil("test", "rules", "host_test.yml")
    assert ok.stdout == "Unit Testing:  host_test.yml\n  SUCCESS\n\n" and ok.stderr == ""
    failed = vigil("test", "rules", "failing_test.yml")
    assert failed.stderr.startswith("  FAILED:\n    name: wrong-expectations,\n    alertname: BigFile, time: 1m, \n")
    assert ('Labels:{alertname="HostDown", instance="app1:9100", job="node", severity="critical", team="Node"}'
            in failed.stderr)
    assert 'Annotations:{lower="big", short="10G", size="9.313GiB"}' in failed.stderr
    assert '    expr: "sum(up) by (job)", time: 2m,\n        exp: {job="node"} 5E-01\n        got: {job="node"} 0E+00' \
        in failed.stderr
    broken = vigil("test", "rules", "eval_error_test.yml")
    assert "    rule: clashing, time: 1m0s, err: vector cannot contain metrics with the same labelset" in broken.stderr


def test_several_files_exit_1_when_one_fails() -> None:
    promtool = require_binary("promtool")
    ours = vigil("test", "rules", "host_test.yml", "failing_test.yml")
    theirs = run([promtool, "test", "rules", "host_test.yml", "failing_test.yml"])
    assert theirs.returncode == ours.returncode == 1
    assert ours.stdout.startswith("Unit Testing:  host_test.yml\n  SUCCESS\n\nUnit Testing:  failing_test.yml\n")


def test_unit_test_file_problems(tmp_path: Path) -> None:
    (tmp_path / "r.yml").write_text("groups:\n  - name: g\n    rules:\n      - record: x\n        expr: up\n")
    bad_key = tmp_path / "bad_key.yml"
    bad_key.write_text("rule_files: [r.yml]\ntests:\n  - interval: 1m\n    input_serie: []\n")
    out = vigil("test", "rules", str(bad_key))
    assert out.returncode == 1
    assert "  FAILED:" in out.stderr and 'field "input_serie" is not known in a test group' in out.stderr
    assert f"{bad_key}:4:" in out.stderr

    no_alertname = tmp_path / "no_alertname.yml"
    no_alertname.write_text("rule_files: [r.yml]\ntests:\n  - interval: 1m\n    name: t1\n"
                            "    alert_rule_test:\n      - eval_time: 5m\n")
    out = vigil("test", "rules", str(no_alertname))
    assert out.returncode == 1
    assert ("an item under alert_rule_test misses required attribute alertname at eval_time 5m (in TestGroup t1)"
            in out.stderr)

    missing = vigil("test", "rules", str(tmp_path / "nope.yml"))
    assert missing.returncode == 1 and "nope.yml" in missing.stderr

    no_rules = tmp_path / "no_rules.yml"
    no_rules.write_text("rule_files: [missing*.yml]\ntests: []\n")
    out = vigil("test", "rules", str(no_rules))
    assert out.returncode == 0 and "WARNING: no file match pattern" in out.stderr


def test_series_values_read_as_prometheus_2_42(tmp_path: Path) -> None:
    """`0x3` is zero repeated (no hex in series values), `_` skips, `stale` ends the series."""
    promtool = require_binary("promtool")
    (tmp_path / "r.yml").write_text("groups: []\n")
    test = tmp_path / "t.yml"
    test.write_text(
        "rule_files: [r.yml]\n"
        "tests:\n"
        "  - interval: 1m\n"
        "    input_series:\n"
        "      - series: 'a'\n"
        "        values: '0x3 7 _ stale'\n"
        "      - series: 'b{x=\"1\"}'\n"
        "        values: '1+1x2 -1e3'\n"
        "    promql_expr_test:\n"
        "      - {expr: 'count_over_time(a[10m])', eval_time: 4m, exp_samples: [{labels: '{}', value: 5}]}\n"
        "      - {expr: a, eval_time: 5m, exp_samples: [{labels: 'a', value: 7}]}\n"
        "      - {expr: a, eval_time: 6m}\n"
        "      - {expr: b, eval_time: 3m, exp_samples: [{labels: 'b{x=\"1\"}', value: -1000}]}\n"
    )
    for cmd in ([promtool, "test", "rules", str(test)], [sys.executable, "-m", "agent", "test", "rules", str(test)]):
        out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, (cmd[0], out.stderr)


def test_go_formatting_helpers() -> None:
    assert [model_duration(ms) for ms in (0, 5 * MIN, 90 * MIN, 86_400_000, 604_800_000, 1500)] == [
        "0s", "5m", "1h30m", "1d", "1w", "1s500ms"]
    assert [go_duration(ms) for ms in (0, 500, 60_000, 3_600_000, 1500, 3_661_000)] == [
        "0s", "500ms", "1m0s", "1h0m0s", "1.5s", "1h1m1s"]
    assert [go_float_e(v) for v in (1.0, 0.5, 15.0, 1e-3, 123456789.0, -2.5, 0.0, math.inf, math.nan)] == [
        "1E+00", "5E-01", "1.5E+01", "1E-03", "1.23456789E+08", "-2.5E+00", "0E+00", "+Inf", "NaN"]


# --- rule files: promtool check rules vs Vigil's loader ---


def _expectations(path: Path) -> list[tuple[int, str]]:
    out = []
    for line in path.read_text().splitlines():
        m = re.match(r"# expect (\d+): (.*)$", line)
        if m:
            out.append((int(m[1]), m[2]))
    return out


@pytest.mark.parametrize("name", sorted(p.name for p in (DATA / "bad").glob("*.yml")))
def test_rule_files_promtool_rejects_are_rejected_with_file_and_line(name: str) -> None:
    promtool = require_binary("promtool")
    path = DATA / "bad" / name
    checked = run([promtool, "check", "rules", str(path)])
    assert checked.returncode == 1, checked.stdout
    with pytest.raises(ConfigError) as caught:
        load_rule_file(str(path))
    found = [(issue.line, str(issue)) for issue in caught.value.issues]
    expected = _expectations(path)
    assert expected, f"{name} names no expected errors"
    for line, fragment in expected:
        assert any(at == line and fragment in text and text.startswith(f"{path}:{line}: ") for at, text in found), (
            line, fragment, found)
    assert len(found) == len(expected), found


@pytest.mark.parametrize("name", ["host.yml", *sorted(f"good/{p.name}" for p in (DATA / "good").glob("*.yml"))])
def test_rule_files_promtool_accepts_load(name: str) -> None:
    promtool = require_binary("promtool")
    checked = run([promtool, "check", "rules", name])
    assert checked.returncode == 0, checked.stdout + checked.stderr
    load_rule_file(str(DATA / name))


def test_loaded_rules_keep_what_was_written() -> None:
    groups = load_rule_file(str(DATA / "good" / "scalars.yml"))
    assert [g.name for g in groups] == ["123", "empty", "nothing"]
    alert = groups[0].rules[0]
    assert (alert.kind, alert.name) == ("alert", "Scalars")
    assert (alert.for_ms, alert.keep_firing_for_ms) == (90 * MIN, 1440 * MIN)
    assert dict(alert.labels) == {"yes_no": "yes", "octal": "010", "empty": "", "float": "1.50"}
    assert groups[0].limit == 10 and groups[0].interval_ms == 0 and alert.line == 7
    host = load_rule_file(str(DATA / "host.yml"))
    assert [(g.name, g.interval_ms, len(g.rules)) for g in host] == [
        ("node-recording", 30_000, 2), ("node-alerts", 0, 3), ("sizes", 0, 2)]


def test_all_files_are_checked_before_any_is_used(tmp_path: Path) -> None:
    good = tmp_path / "a.yml"
    good.write_text("groups:\n  - name: a\n    rules:\n      - record: a:b\n        expr: up\n")
    broken = tmp_path / "b.yml"
    broken.write_text("groups:\n  - name: b\n    rules:\n      - alert: B\n        expr: up ==\n")
    with pytest.raises(ConfigError) as caught:
        load_rule_files([str(good), str(broken), str(tmp_path / "gone.yml")])
    text = str(caught.value)
    assert f"{broken}:5: groups[0].rules[0].expr: group \"b\", rule 1, \"B\": could not parse expression" in text
    assert f"{tmp_path / 'gone.yml'}: <root>: cannot read rule file" in text


def test_duplicate_rules_are_found_like_promtools_lint() -> None:
    groups = parse_rule_file(
        "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up\n      - alert: A\n        expr: down\n"
        "      - record: r\n        expr: up\n        labels: {x: '1'}\n      - record: r\n        expr: up\n",
        "d.yml",
    )
    assert [(r.name, r.line) for r in duplicate_rules(groups)] == [("A", 6)]


# --- evaluation semantics ---


def _group(text: str) -> RuleGroup:
    return parse_rule_file(text, "test.yml")[0]


def _feed(storage: MemoryQueryable, result_samples: list[tuple[Labels, int, float]]) -> None:
    for labels, t, v in result_samples:
        storage.add(labels, t, v)


def _up(storage: MemoryQueryable, t: int, value: float, instance: str = "a") -> None:
    storage.add(labels_from({"__name__": "up", "job": "node", "instance": instance}), t, value)


ALERT_RULES = """
groups:
  - name: g
    rules:
      - alert: Down
        expr: up == 0
        for: 2m
        keep_firing_for: 2m
        labels:
          severity: '{{ if eq $labels.instance "a" }}page{{ else }}ticket{{ end }}'
        annotations:
          summary: '{{ $labels.instance }} is down ({{ $value }})'
"""


def test_alert_goes_pending_firing_keeps_firing_then_resolves() -> None:
    group = _group(ALERT_RULES)
    state = GroupState.new(group)
    storage = MemoryQueryable()
    values = [1, 0, 0, 0, 1, 1, 1, 1]
    seen = []
    for step, value in enumerate(values):
        t = step * MIN
        _up(storage, t, value)
        result = evaluate(group, state, t, storage)
        _feed(storage, result.samples)
        rule = result.rules[0]
        assert rule.health == "ok" and rule.last_error == ""
        seen.append([(a.state, a.resolved_at_ms) for a in rule.alerts])
        if step == 3:
            alert = rule.active_alerts[0]
            assert dict(alert.labels) == {"alertname": "Down", "instance": "a", "job": "node", "severity": "page"}
            assert dict(alert.annotations) == {"summary": "a is down (0)"}
            assert (alert.active_at_ms, alert.fired_at_ms) == (MIN, 3 * MIN)
            names = {dict(labels)["__name__"]: (dict(labels), v) for labels, _, v in result.samples if not is_stale(v)}
            assert names["ALERTS"][0]["alertstate"] == "firing" and names["ALERTS"][1] == 1
            assert names["ALERTS_FOR_STATE"][1] == 60.0
    assert seen == [
        [],
        [("pending", None)],
        [("pending", None)],
        [("firing", None)],
        [("firing", None)],  # keep_firing_for: the condition is gone since 4m
        [("firing", None)],
        [("inactive", 6 * MIN)],  # 2m after it stopped
        [("inactive", 6 * MIN)],  # kept for the resolved retention
    ]


def test_resolved_alert_is_dropped_after_retention_and_its_series_go_stale() -> None:
    group = _group(ALERT_RULES.replace("        keep_firing_for: 2m\n", ""))
    state = GroupState.new(group)
    storage = MemoryQueryable()
    changes = []
    for step, value in enumerate([0, 0, 0, 1]):
        _up(storage, step * MIN, value)
        result = evaluate(group, state, step * MIN, storage)
        _feed(storage, result.samples)
        changes += [(c.old, c.new, c.labels) for c in result.changes]
    assert [(old, new) for old, new, _ in changes] == [(None, "pending"), ("pending", "firing"), ("firing", "inactive")]
    # When the alert stopped, its ALERTS and ALERTS_FOR_STATE series got staleness markers.
    stale = {dict(labels)["__name__"] for labels, _, v in result.samples if is_stale(v)}
    assert stale == {"ALERTS", "ALERTS_FOR_STATE"}
    t = 3 * MIN + RESOLVED_RETENTION_MS
    result = evaluate(group, state, t, storage)
    assert result.rules[0].alerts[0].state == "inactive"
    result = evaluate(group, state, t + MIN, storage)
    assert result.rules[0].alerts == []


def test_recording_rules_feed_later_rules_in_the_same_evaluation() -> None:
    group = _group("""
groups:
  - name: g
    rules:
      - record: job:up:sum
        expr: sum by (job) (up)
        labels: {tier: infra}
      - alert: FewUp
        expr: job:up:sum < 2
""")
    storage = MemoryQueryable()
    _up(storage, 0, 1, "a")
    _up(storage, 0, 0, "b")
    result = evaluate(group, GroupState.new(group), 0, storage)
    recorded = [(dict(labels), v) for labels, _, v in result.samples if dict(labels)["__name__"] == "job:up:sum"]
    assert recorded == [({"__name__": "job:up:sum", "job": "node", "tier": "infra"}, 1.0)]
    assert [dict(a.labels) for a in result.rules[1].alerts] == [{"alertname": "FewUp", "job": "node", "tier": "infra"}]
    assert result.rules[1].alerts[0].state == "firing"  # no `for`: fires at once


def test_failing_rules_are_marked_and_never_stop_the_group() -> None:
    group = _group("""
groups:
  - name: g
    limit: 1
    rules:
      - record: clash
        expr: up
        labels: {instance: same}
      - alert: TooMany
        expr: up >= 0
      - alert: BadTemplate
        expr: up{instance="a"} == 1
        annotations:
          summary: '{{ $labels.instance | humanize }}'
      - record: fine
        expr: count(up)
""")
    storage = MemoryQueryable()
    _up(storage, 0, 1, "a")
    _up(storage, 0, 1, "b")
    result = evaluate(group, GroupState.new(group), 0, storage)
    by_name = {r.rule.name: r for r in result.rules}
    assert by_name["clash"].health == "err"
    assert by_name["clash"].last_error == "vector contains metrics with the same labelset after applying rule labels"
    assert by_name["TooMany"].health == "err"
    assert by_name["TooMany"].last_error == "exceeded limit of 1 with 2 alerts"
    template = by_name["BadTemplate"]
    assert template.health == "err" and "error expanding template" in template.last_error
    assert len(template.alerts) == 1  # the alerts are still evaluated, with Prometheus's error text
    assert all(dict(a.annotations)["summary"].startswith("<error expanding template: ") for a in template.alerts)
    assert by_name["fine"].health == "ok"
    assert [v for labels, _, v in result.samples if dict(labels)["__name__"] == "fine"] == [2.0]


def test_series_a_rule_stops_returning_are_marked_stale() -> None:
    group = _group("groups:\n  - name: g\n    rules:\n      - record: r\n        expr: up == 1\n")
    state = GroupState.new(group)
    storage = MemoryQueryable()
    _up(storage, 0, 1)
    _feed(storage, evaluate(group, state, 0, storage).samples)
    _up(storage, MIN, 0)
    result = evaluate(group, state, MIN, storage)
    assert [(dict(labels)["__name__"], t, is_stale(v)) for labels, t, v in result.samples] == [("r", MIN, True)]
    assert state.rules[0].series == []


def test_state_survives_a_restart_through_json() -> None:
    """`for` and `keep_firing_for` continue after the state is saved and loaded again."""
    group = _group(ALERT_RULES)
    storage = MemoryQueryable()
    uninterrupted = GroupState.new(group)
    restarted = GroupState.new(group)
    values = [0, 0, 0, 1, 1, 1]
    for step, value in enumerate(values):
        t = step * MIN
        _up(storage, t, value)
        a = evaluate(group, uninterrupted, t, storage)
        if step in (2, 4):
            restarted = GroupState.from_dict(json.loads(json.dumps(restarted.to_dict())))
            restarted = carry_over(restarted, group)
        b = evaluate(group, restarted, t, storage)
        assert [(x.state, x.active_at_ms, x.fired_at_ms, x.keep_firing_since_ms) for x in a.rules[0].alerts] == \
            [(x.state, x.active_at_ms, x.fired_at_ms, x.keep_firing_since_ms) for x in b.rules[0].alerts]
        _feed(storage, a.samples)
    assert b.rules[0].alerts[0].state == "inactive"


def test_reload_keeps_alerts_of_unchanged_rules_and_stales_removed_ones() -> None:
    old = _group(ALERT_RULES + "      - record: gone\n        expr: up\n")
    state = GroupState.new(old)
    storage = MemoryQueryable()
    for step in range(3):
        _up(storage, step * MIN, 0)
        _feed(storage, evaluate(old, state, step * MIN, storage).samples)
    assert state.rules[0].active
    new = _group(ALERT_RULES.replace("summary:", "description:"))
    moved = carry_over(state, new)
    assert next(iter(moved.rules[0].active.values())).state == "firing"
    assert moved.stale_series == [labels_from({"__name__": "gone", "job": "node", "instance": "a"})]
    _up(storage, 3 * MIN, 0)
    result = evaluate(new, moved, 3 * MIN, storage)
    assert any(dict(labels)["__name__"] == "gone" and is_stale(v) for labels, _, v in result.samples)
    assert dict(result.rules[0].alerts[0].annotations) == {"description": "a is down (0)"}


def test_restore_after_downtime_does_not_count_the_downtime_as_pending() -> None:
    group = _group(ALERT_RULES.replace("for: 2m", "for: 30m"))
    state = GroupState.new(group)
    storage = MemoryQueryable()
    _up(storage, 0, 0)
    evaluate(group, state, 0, storage)
    alert = next(iter(state.rules[0].active.values()))
    assert alert.state == "pending" and alert.active_at_ms == 0
    restore_after_downtime(state, group, down_at_ms=5 * MIN, now_ms=65 * MIN)
    assert alert.active_at_ms == 60 * MIN  # 25 m of `for` still to wait
    restore_after_downtime(state, group, down_at_ms=85 * MIN, now_ms=90 * MIN)
    assert alert.active_at_ms == 90 * MIN + 10 * MIN - 30 * MIN  # less than the grace period was left


def test_stale_marker_value() -> None:
    assert is_stale(STALE_NAN)
