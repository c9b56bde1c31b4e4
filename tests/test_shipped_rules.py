"""The rule files Vigil ships (config/rules.d/), checked with Debian's promtool (Prometheus 2.42) and Vigil.

Every shipped file must pass `promtool check rules` (with its lint, fatal) and Vigil's loader, and every
unit-test file in tests/rules_testdata that loads a shipped file must pass under both `promtool test rules`
and `vigil test rules`. tests/test_alert_rules.py compares the two tools on the deliberately tricky test
files; here the point is that what operators get in the package works, and that each shipped rule is
exercised by a test, firing and quiet.
"""

from __future__ import annotations

import glob
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.alerting.rulefile import RuleGroup, duplicate_rules, load_rule_file
from tests.conftest import REPO, require_binary

SHIPPED = REPO / "config" / "rules.d"
TESTDATA = REPO / "tests" / "rules_testdata"
SEVERITIES = {"warning", "critical"}


def shipped_rule_files() -> list[Path]:
    return sorted({*SHIPPED.glob("*.yml"), *SHIPPED.glob("*.yaml")})


def _unit_test_doc(path: Path) -> dict[str, Any] | None:
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError:
        return None
    return doc if isinstance(doc, dict) and "rule_files" in doc and "tests" in doc else None


def _rule_files_of(path: Path, doc: dict[str, Any]) -> set[Path]:
    """The files a unit-test file loads: promtool resolves its globs against the test file's directory."""
    found: set[Path] = set()
    for pattern in doc.get("rule_files") or []:
        found.update(Path(p).resolve() for p in glob.glob(str(path.parent / pattern)))
    return found


def shipped_rule_tests() -> list[Path]:
    shipped = {p.resolve() for p in shipped_rule_files()}
    out = []
    for path in sorted(TESTDATA.glob("*.y*ml")):
        doc = _unit_test_doc(path)
        if doc is not None and _rule_files_of(path, doc) & shipped:
            out.append(path)
    return out


def run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120)


def vigil(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})


def test_there_are_shipped_rules_and_tests_of_them() -> None:
    """The parametrized tests below would pass vacuously on an empty list."""
    assert shipped_rule_files(), "no rule file in config/rules.d"
    assert shipped_rule_tests(), "no unit-test file in tests/rules_testdata loads config/rules.d"
    tested = set().union(*(_rule_files_of(p, _unit_test_doc(p) or {}) for p in shipped_rule_tests()))
    untested = [p.name for p in shipped_rule_files() if p.resolve() not in tested]
    assert not untested, f"shipped rule files no unit test loads: {untested}"


@pytest.mark.parametrize("path", shipped_rule_files(), ids=lambda p: p.name)
def test_shipped_rule_file_passes_promtool_and_vigils_loader(path: Path) -> None:
    promtool = require_binary("promtool")
    checked = run([promtool, "check", "rules", "--lint=all", "--lint-fatal", str(path)], cwd=REPO)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stderr == "", checked.stderr
    found = re.search(r"SUCCESS: (\d+) rules found", checked.stdout)
    assert found, checked.stdout
    groups = load_rule_file(str(path))
    assert sum(len(g.rules) for g in groups) == int(found[1])
    assert duplicate_rules(groups) == []


@pytest.mark.parametrize("path", shipped_rule_tests(), ids=lambda p: p.name)
def test_unit_tests_of_shipped_rules_pass_under_promtool_and_vigil(path: Path) -> None:
    promtool = require_binary("promtool")
    theirs = run([promtool, "test", "rules", path.name], cwd=path.parent)
    ours = vigil("test", "rules", path.name, cwd=path.parent)
    success = f"Unit Testing:  {path.name}\n  SUCCESS\n\n"
    assert (theirs.returncode, theirs.stdout, theirs.stderr) == (0, success, ""), theirs.stdout + theirs.stderr
    assert (ours.returncode, ours.stdout, ours.stderr) == (0, success, ""), ours.stdout + ours.stderr


def _shipped_groups() -> list[RuleGroup]:
    return [g for p in shipped_rule_files() for g in load_rule_file(str(p))]


def test_every_alert_has_a_severity_a_summary_and_a_description() -> None:
    """What receivers and routes rely on: `severity` is warning or critical (a template may choose one of
    the two, never anything else), and every notification has something to say."""
    for group in _shipped_groups():
        for rule in group.rules:
            if rule.kind != "alert":
                continue
            labels, annotations = dict(rule.labels), dict(rule.annotations)
            assert "severity" in labels, rule.name
            words = set(re.sub(r"\{\{.*?\}\}", " ", labels["severity"]).split())
            assert words and words <= SEVERITIES, (rule.name, labels["severity"])
            assert annotations.get("summary") and annotations.get("description"), rule.name


def test_every_shipped_rule_is_exercised_by_a_unit_test() -> None:
    """Each alert is seen firing (with labels and annotations) and seen quiet; each recording rule is
    queried by a promql_expr_test."""
    fired: set[str] = set()
    quiet: set[str] = set()
    queried = ""
    for path in shipped_rule_tests():
        doc = _unit_test_doc(path) or {}
        for test in doc["tests"]:
            for case in test.get("alert_rule_test") or []:
                (fired if case.get("exp_alerts") else quiet).add(case["alertname"])
            queried += " ".join(str(case.get("expr", "")) for case in test.get("promql_expr_test") or []) + " "
    alerts = {r.name for g in _shipped_groups() for r in g.rules if r.kind == "alert"}
    records = {r.name for g in _shipped_groups() for r in g.rules if r.kind == "record"}
    assert sorted(alerts - fired) == [], "alerts never seen firing"
    assert sorted(alerts - quiet) == [], "alerts never seen quiet"
    assert sorted(r for r in records if not re.search(rf"(?<![\w:]){re.escape(r)}(?![\w:])", queried)) == [], \
        "recording rules no promql_expr_test queries"
