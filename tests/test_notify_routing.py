"""The notification routing tree against Alertmanager: dispatch/route_test.go ported, Debian's `amtool config
routes test` resolving the same label sets on the same tree, `amtool check-config` refusing the same bad
trees, and a real `prometheus-alertmanager` delivering to a local webhook the group keys Vigil computes."""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from pathlib import Path
from typing import Any

import aiohttp
import pydantic
import pytest
import yaml
from aiohttp import web

from agent.alerting.matchers import escape_value
from agent.notify.routing import (
    DEFAULT_GROUP_INTERVAL,
    DEFAULT_GROUP_WAIT,
    DEFAULT_REPEAT_INTERVAL,
    RootRouteConfig,
    Route,
    RouteConfig,
    build_tree,
    format_labelset,
    go_quote,
)
from tests.conftest import free_port, require_binary
from tests.test_alert_matchers import alertmanager, run

Opts = tuple[str, frozenset[str], bool, float, float, float]
DEF = ("", frozenset(), False, DEFAULT_GROUP_WAIT, DEFAULT_GROUP_INTERVAL, DEFAULT_REPEAT_INTERVAL)


def tree(text: str) -> Route:
    return build_tree(RouteConfig.model_validate(yaml.safe_load(text)))


def opts(route: Route) -> Opts:
    return (route.receiver, route.group_by, route.group_by_all, route.group_wait, route.group_interval,
            route.repeat_interval)


def o(receiver: str, group_by: tuple[str, ...] = (), group_by_all: bool = False, wait: float = DEFAULT_GROUP_WAIT,
      interval: float = DEFAULT_GROUP_INTERVAL, repeat: float = DEFAULT_REPEAT_INTERVAL) -> Opts:
    return (receiver, frozenset(group_by), group_by_all, wait, interval, repeat)


# ---------------------------------------------------------------------------------------------------------
# dispatch/route_test.go

LEGACY_TREE = """
receiver: 'notify-def'
routes:
- match:
    owner: 'team-A'
  receiver: 'notify-A'
  routes:
  - match:
      env: 'testing'
    receiver: 'notify-testing'
    group_by: [...]
  - match:
      env: "production"
    receiver: 'notify-productionA'
    group_wait: 1m
    continue: true
  - match_re:
      env: "produ.*"
      job: ".*"
    receiver: 'notify-productionB'
    group_wait: 30s
    group_interval: 5m
    repeat_interval: 1h
    group_by: ['job']
- match_re:
    owner: 'team-(B|C)'
  group_by: ['foo', 'bar']
  group_wait: 2m
  receiver: 'notify-BC'
- match:
    group_by: 'role'
  group_by: ['role']
  routes:
  - match:
      env: 'testing'
    receiver: 'notify-testing'
    routes:
    - match:
        wait: 'long'
      group_wait: 2m
"""

MATCHERS_TREE = """
receiver: 'notify-def'
routes:
- matchers: ['{owner="team-A"}', '{level!="critical"}']
  receiver: 'notify-A'
  routes:
  - matchers: ['{env="testing"}', '{baz!~".*quux"}']
    receiver: 'notify-testing'
    group_by: [...]
  - matchers: ['{env="production"}']
    receiver: 'notify-productionA'
    group_wait: 1m
    continue: true
  - matchers: [ env=~"produ.*", job=~".*"]
    receiver: 'notify-productionB'
    group_wait: 30s
    group_interval: 5m
    repeat_interval: 1h
    group_by: ['job']
- matchers: [owner=~"team-(B|C)"]
  group_by: ['foo', 'bar']
  group_wait: 2m
  receiver: 'notify-BC'
- matchers: [group_by="role"]
  group_by: ['role']
  routes:
  - matchers: ['{env="testing"}']
    receiver: 'notify-testing'
    routes:
    - matchers: [wait="long"]
      group_wait: 2m
"""

# TestRouteMatchersAndMatch: the two styles mixed in one tree.
MIXED_TREE = (
    MATCHERS_TREE.replace("""  - matchers: ['{env="production"}']""", """  - match:\n      env: "production\"""")
    .replace("""- matchers: [owner=~"team-(B|C)"]""", """- match_re:\n    owner: 'team-(B|C)'""")
)


def expectations(style: str) -> list[tuple[dict[str, str], list[Opts], list[str]]]:
    owner_a = '{owner="team-A"}' if style == "legacy" else '{level!="critical",owner="team-A"}'
    owner_bc = '{owner=~"team-(B|C)"}' if style == "matchers" else '{owner=~"^(?:team-(B|C))$"}'
    testing = '{env="testing"}' if style == "legacy" else '{baz!~".*quux",env="testing"}'
    production_b = '{env=~"^(?:produ.*)$",job=~"^(?:.*)$"}' if style == "legacy" else '{env=~"produ.*",job=~".*"}'
    return [
        ({"owner": "team-A"}, [o("notify-A")], [f"{{}}/{owner_a}"]),
        ({"owner": "team-A", "env": "unset"}, [o("notify-A")], [f"{{}}/{owner_a}"]),
        ({"owner": "team-C"}, [o("notify-BC", ("foo", "bar"), wait=120)], [f"{{}}/{owner_bc}"]),
        ({"owner": "team-A", "env": "testing"}, [o("notify-testing", group_by_all=True)],
         [f"{{}}/{owner_a}/{testing}"]),
        ({"owner": "team-A", "env": "production"},
         [o("notify-productionA", wait=60), o("notify-productionB", ("job",), wait=30, interval=300, repeat=3600)],
         [f'{{}}/{owner_a}/{{env="production"}}', f"{{}}/{owner_a}/{production_b}"]),
        ({"group_by": "role"}, [o("notify-def", ("role",))], ['{}/{group_by="role"}']),
        ({"env": "testing", "group_by": "role"}, [o("notify-testing", ("role",))],
         ['{}/{group_by="role"}/{env="testing"}']),
        ({"env": "testing", "group_by": "role", "wait": "long"}, [o("notify-testing", ("role",), wait=120)],
         ['{}/{group_by="role"}/{env="testing"}/{wait="long"}']),
    ]


@pytest.mark.parametrize(("text", "style"), [(LEGACY_TREE, "legacy"), (MATCHERS_TREE, "matchers"),
                                             (MIXED_TREE, "mixed")], ids=["match", "matchers", "mixed"])
def test_route_match(text: str, style: str) -> None:
    root = tree(text)
    for labels, want_opts, want_keys in expectations(style):
        found = root.match(labels)
        assert [opts(r) for r in found] == want_opts, labels
        assert [r.key() for r in found] == want_keys, labels


def test_route_walk() -> None:
    assert [r.receiver for r in tree(LEGACY_TREE).walk()] == [
        "notify-def", "notify-A", "notify-testing", "notify-productionA", "notify-productionB", "notify-BC",
        "notify-def", "notify-testing", "notify-testing",
    ]


def test_inherit_parent_group_by_all() -> None:
    root = tree("""
routes:
- match:
    env: 'parent'
  group_by: ['...']
  routes:
  - match:
      env: 'child1'
  - match:
      env: 'child2'
    group_by: ['foo']
  - match:
      env: 'child3'
    group_by: []
""")
    parent = root.routes[0]
    assert parent.group_by_all and parent.routes[0].group_by_all
    assert not parent.routes[1].group_by_all and parent.routes[1].group_by == {"foo"}
    assert parent.routes[2].group_by_all  # an empty group_by inherits, as in Alertmanager


def test_inheritance_and_defaults() -> None:
    root = tree("""
receiver: root
group_by: [alertname]
group_interval: 10m
routes:
- matchers: [team=db]
  repeat_interval: 1h
  routes:
  - matchers: [severity=critical]
    receiver: pager
    group_wait: 0s
- matchers: [team=web]
  receiver: ""
""")
    db = root.match({"team": "db"})[0]
    assert opts(db) == o("root", ("alertname",), interval=600, repeat=3600)
    pager = root.match({"team": "db", "severity": "critical"})[0]
    assert opts(pager) == o("pager", ("alertname",), wait=0, interval=600, repeat=3600)
    assert root.match({"team": "web"})[0].receiver == "root"
    assert opts(root) == o("root", ("alertname",), interval=600)
    assert pager.id() == '{}/{team="db"}/{severity="critical"}/0' and root.routes[1].id() == '{}/{team="web"}/1'


def test_no_child_matches_falls_back_to_the_parent() -> None:
    root = tree("""
receiver: default
routes:
- matchers: [team=db]
  receiver: db
  routes:
  - matchers: [severity=critical]
    receiver: db-pager
- matchers: [team=db]
  receiver: db-second
""")
    assert [r.receiver for r in root.match({"team": "db", "severity": "warning"})] == ["db"]
    assert [r.receiver for r in root.match({"team": "db", "severity": "critical"})] == ["db-pager"]
    assert [r.receiver for r in root.match({"team": "web"})] == ["default"]
    assert [r.receiver for r in root.match({})] == ["default"]


def test_group_key_and_labels() -> None:
    root = tree("""
receiver: default
group_by: [alertname]
routes:
- matchers: ['severity="critical"']
  receiver: pager
- matchers: ['team="all"']
  group_by: ['...']
""")
    labels = {"alertname": "X", "severity": "critical", "instance": "h:9100"}
    (pager,) = root.match(labels)
    assert pager.group_key(labels) == '{}/{severity="critical"}:{alertname="X"}'
    assert pager.group_labels(labels) == {"alertname": "X"}
    everything = {"team": "all", "b": "2", "a": "1"}
    assert root.match(everything)[0].group_key(everything) == '{}/{team="all"}:{a="1", b="2", team="all"}'
    assert root.group_key({"other": "x"}) == "{}:{}"  # grouped by alertname, which the alert lacks


def test_go_formatting() -> None:
    assert go_quote('a"b\\c\nd\te\x01f\x7fé\u200b\U0001f600\x85') == \
        '"a\\"b\\\\c\\nd\\te\\x01f\\x7fé\\u200b\U0001f600\\u0085"'
    # Sorted as formatted `name="value"` strings: `a0=` sorts before `a=` ('0' < '=').
    assert format_labelset({"a": "1", "a0": "2", "a_b": "3", "B": "4"}) == '{B="4", a0="2", a="1", a_b="3"}'


# ---------------------------------------------------------------------------------------------------------
# Config validation, against `amtool check-config`.

BAD_TREES = [
    ("  group_by: [a]", "root route must specify a default receiver"),
    ("  receiver: d\n  matchers: [a=b]", "root route must not have any matchers"),
    ("  receiver: d\n  match: {a: b}", "root route must not have any matchers"),
    ("  receiver: d\n  continue: true", "cannot have continue in root route"),
    ("  receiver: d\n  routes:\n   - match: {a-b: x}", 'invalid label name "a-b"'),
    ("  receiver: d\n  routes:\n   - match_re: {a-b: x}", 'invalid label name "a-b"'),
    ('  receiver: d\n  routes:\n   - match_re: {a: "[x"}', "error parsing regexp: missing closing ]: `[x)$`"),
    ("  receiver: d\n  routes:\n   - group_by: [a, a]", 'duplicated label "a" in group_by'),
    ('  receiver: d\n  routes:\n   - group_by: [a, "..."]', "cannot have wildcard group_by (`...`) and other"),
    ("  receiver: d\n  routes:\n   - group_by: [a:b]", 'invalid label name "a:b" in group_by list'),
    ("  receiver: d\n  routes:\n   - group_interval: 0s", "group_interval cannot be zero"),
    ("  receiver: d\n  routes:\n   - routes:\n     - repeat_interval: 0s", "repeat_interval cannot be zero"),
    ("  receiver: d\n  routes:\n   - matchers: ['a=\"b\"', 'c=~\"(\"']",
     "invalid matcher 'c=~\"(\"': error parsing regexp: missing closing )"),
    ("  receiver: d\n  routes:\n   - matchers: ['team=\"db', 'x=y']",
     "invalid matcher 'team=\"db': matcher value contains unescaped double quote: \"db"),
    ("  receiver: d\n  routes:\n   - matchers: a=b", "Input should be a valid list"),
    ("  receiver: d\n  routes:\n   - recevier: e", "Extra inputs are not permitted"),
    ("  receiver: d\n  routes:\n   - group_wait: soon", "expected a duration"),
]


async def test_bad_trees_are_refused_as_by_amtool(tmp_path: Path) -> None:
    amtool = require_binary("amtool")
    for i, (route, message) in enumerate(BAD_TREES):
        text = f"route:\n{route}\nreceivers: [{{name: d}}, {{name: e}}]\n"
        path = tmp_path / f"bad{i}.yml"
        path.write_text(text)
        code, out = await run(amtool, "check-config", str(path))
        assert code != 0 and "FAILED" in out, (route, out)
        with pytest.raises(pydantic.ValidationError) as caught:
            RootRouteConfig.model_validate(yaml.safe_load(text)["route"])
        assert message in str(caught.value), (route, str(caught.value))


def test_bad_matcher_error_points_at_the_item() -> None:
    with pytest.raises(pydantic.ValidationError) as caught:
        RootRouteConfig.model_validate(
            {"receiver": "d", "routes": [{"routes": [{"matchers": ["a=b", 'sev=~"crit|(warn"']}]}]}
        )
    (error,) = caught.value.errors()
    assert error["loc"] == ("routes", 0, "routes", 0, "matchers", 1)
    assert "invalid matcher 'sev=~\"crit|(warn\"': error parsing regexp: missing closing )" in error["msg"]


def test_receivers_and_schema() -> None:
    config = RootRouteConfig.model_validate(yaml.safe_load(AMTOOL_TREE)["route"])
    assert config.receivers() == {
        "default", "crit-db", "crit", "crit-night", "crit-ops", "warn", "warn-no-team", "warn-code",
        "info", "not-prod", "ops-1", "ops-2", "disk", "legacy",
    }
    schema = RootRouteConfig.model_json_schema()
    assert "continue" in schema["properties"] and "continue_" not in schema["properties"]
    assert RootRouteConfig.model_validate({"receiver": "d", "continue": False}).continue_ is False


# ---------------------------------------------------------------------------------------------------------
# `amtool config routes test` as the oracle of Route.match.

AMTOOL_TREE = r"""
route:
  receiver: default
  group_by: [alertname]
  routes:
    - receiver: crit-db
      matchers: ['severity="critical"', 'service=~"db|database"']
      continue: true
    - receiver: crit
      matchers: [severity=critical]
      routes:
        - receiver: crit-night
          matchers: ['team!~"day.*"']
          continue: true
        - receiver: crit-ops
          match: {team: ops}
    - receiver: warn
      match_re: {severity: "warn(ing)?"}
      routes:
        - receiver: warn-no-team
          matchers: ['team=""']
        - receiver: warn-code
          matchers: ['code=~"\\d{3}"']
    - receiver: info
      matchers: ['severity=~"info|"', 'env!="prod"']
    - receiver: not-prod
      matchers: ['env!="prod"']
      continue: true
      routes:
        - receiver: ops-1
          matchers: [team=ops]
          continue: true
        - receiver: ops-2
          matchers: ['team=~"o.*"']
    - receiver: disk
      matchers: ['alertname=~"(?i)disk.*"', 'mountpoint!~"/boot|/boot/efi"']
    - receiver: legacy
      match: {alertname: Legacy}
      match_re: {code: "5.."}
"""

UNIVERSE: dict[str, list[str | None]] = {
    "severity": ["critical", "warning", "warn", "info", "", None],
    "service": ["db", "database", "web", None],
    "team": ["ops", "day-shift", "night", "", None],
    "env": ["prod", "dev", None],
    "code": ["500", "\u0665\u0660\u0660", "50", "5000", None],
    "alertname": ["DiskFull", "diskfull", "Legacy", "CPU"],
    "mountpoint": ["/", "/boot", "/boot/efi", None],
}

EXTRA_LABEL_SETS: list[dict[str, str]] = [
    {},
    {"severity": "critical"},
    {"severity": "critical", "team": "ops", "service": "db"},
    {"severity": "warning", "code": "503"},
    {"severity": "warning", "code": "503\n"},
    {"alertname": "DISK_FULL", "mountpoint": "/boot"},
    {"alertname": "Legacy", "code": "599", "env": "prod"},
    {"team": 'o"ps\\'},
]


def label_sets() -> list[dict[str, str]]:
    names = list(UNIVERSE)
    everything = list(itertools.product(*(UNIVERSE[n] for n in names)))
    sample = random.Random(20240501).sample(everything, 150)
    sets = [{n: v for n, v in zip(names, values, strict=True) if v is not None} for values in sample]
    return EXTRA_LABEL_SETS + sets


async def test_match_agrees_with_amtool(tmp_path: Path) -> None:
    amtool = require_binary("amtool")
    names = sorted(RootRouteConfig.model_validate(yaml.safe_load(AMTOOL_TREE)["route"]).receivers())
    config = tmp_path / "alertmanager.yml"
    config.write_text(AMTOOL_TREE + "receivers:\n" + "".join(f"  - name: {n}\n" for n in names))
    root = build_tree(RootRouteConfig.model_validate(yaml.safe_load(AMTOOL_TREE)["route"]))
    gate = asyncio.Semaphore(2)

    async def check(labels: dict[str, str]) -> tuple[dict[str, str], str, str]:
        ours = ",".join(r.receiver for r in root.match(labels))
        args = [f'{name}="{escape_value(value)}"' for name, value in labels.items()]
        async with gate:
            code, out = await run(amtool, "config", "routes", "test", f"--config.file={config}",
                                  f"--verify.receivers={ours}", *args)
        theirs = next(line for line in out.splitlines() if not line.startswith("Warning:"))
        return labels, ours, theirs if code == 0 else f"{theirs} (exit {code})"

    results = await asyncio.gather(*(check(labels) for labels in label_sets()))
    mismatches = [(labels, ours, theirs) for labels, ours, theirs in results if ours != theirs]
    assert not mismatches
    assert len({ours for _, ours, _ in results}) >= 10  # the sample reaches most of the tree


# ---------------------------------------------------------------------------------------------------------
# A real Alertmanager as the oracle of group keys: it hands them to a webhook as `groupKey`.

GROUP_TREE = """
route:
  receiver: root
  group_by: [alertname]
  group_wait: 0s
  group_interval: 1h
  repeat_interval: 4h
  routes:
    - receiver: all-labels
      matchers: ['kind="all"']
      group_by: ['...']
      continue: true
    - receiver: by-severity
      matchers: ['severity=~"crit.*"']
      group_by: [severity, a0, a, a_b, team]
      routes:
        - receiver: nested
          match: {team: db}
          match_re: {service: "pg|my"}
    - receiver: inherit
      matchers: ['kind="inherit"', 'x!="y\\\\z"']
"""

GROUP_ALERTS: list[dict[str, str]] = [
    {"alertname": "A", "kind": "all", "a": "1", "a0": "2", "a_b": "3", "B": "4", "weird": 'q"u\\o\tte\x01é\u200b'},
    {"alertname": "B", "severity": "critical", "a": "x", "a0": "y", "team": "web"},
    {"alertname": "C", "severity": "critical", "team": "db", "service": "pg", "a_b": "z"},
    {"alertname": "D", "kind": "inherit", "x": "y"},
    {"alertname": "E", "kind": "all", "severity": "critical-ish", "team": "db", "service": "my", "nl": "a\nb"},
    {"alertname": "F"},
]


async def test_group_keys_agree_with_alertmanager(tmp_path: Path) -> None:
    received: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/{receiver}", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    route = yaml.safe_load(GROUP_TREE)["route"]
    root = build_tree(RootRouteConfig.model_validate(route))
    receivers = sorted(RootRouteConfig.model_validate(route).receivers())
    config = GROUP_TREE + "receivers:\n" + "".join(
        f"  - name: {n}\n    webhook_configs: [{{url: 'http://127.0.0.1:{port}/{n}', send_resolved: false}}]\n"
        for n in receivers
    )
    expected = {
        (r.receiver, r.group_key(labels), tuple(sorted(labels.items())), tuple(sorted(r.group_labels(labels).items())))
        for labels in GROUP_ALERTS for r in root.match(labels)
    }
    try:
        async with alertmanager(tmp_path, config) as url:
            async with aiohttp.ClientSession() as session:
                body = [{"labels": labels} for labels in GROUP_ALERTS]
                async with session.post(f"{url}/api/v2/alerts", json=body) as resp:
                    assert resp.status == 200, await resp.text()
            deadline = time.monotonic() + 20
            while True:
                got = {
                    (p["receiver"], p["groupKey"], tuple(sorted(a["labels"].items())),
                     tuple(sorted(p["groupLabels"].items())))
                    for p in received for a in p["alerts"]
                }
                if got == expected or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.05)
    finally:
        await runner.cleanup()
    assert got == expected
    assert len({key for _, key, _, _ in expected}) >= 6
