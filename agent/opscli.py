"""Operations from the command line: `vigil cleanup`, `vigil diagnostics`, `vigil health-check`,
`vigil store info|integrity-check` and `vigil config versions|rollback|set`, all over the admin API.

The commands that start a task print its id, or with `--wait` follow it (agent/taskcli.py). A task that
completed but reports a problem (a cleanup category failed, a diagnostic test failed, the health check is
critical, the integrity check found damage) exits 1 as well, so a cron job or a CI step can rely on the
exit status alone.

The names of categories, components and tests are spelled out here rather than imported from the daemon's
packages: importing those pulls in the store and the task runner, close to a second of start-up for every
command. tests/test_ops_cli.py checks that the lists agree.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.parse
from collections.abc import Callable
from typing import Any, Protocol

import yaml

from agent.querycli import UsageError
from agent.taskcli import add_wait_flag, follow

COMMANDS = frozenset({"cleanup", "diagnostics", "health-check", "store"})
CLEANUP_CATEGORIES = ("temp_files", "history", "check_results", "alerts", "tasks", "logs", "database")
COMPONENTS = ("store", "scheduler", "collectors", "checks", "history", "notifications", "events", "config", "units",
              "api", "tasks")
TESTS = ("connectivity", "performance", "stress")


class _Client(Protocol):
    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any: ...


def add_commands(sub: Any, config_sub: Any, add_client: Callable[[argparse.ArgumentParser], None]) -> None:
    """The commands, and `versions`, `rollback` and `set` under the existing `vigil config`."""
    cleanup = sub.add_parser("cleanup", help="clean up old temp files, data past retention and the database file "
                                             "(a task)")
    add_client(cleanup)
    cleanup.add_argument("--category", action="extend", nargs="+", choices=CLEANUP_CATEGORIES, metavar="C",
                         help=f"only these categories (default all): {', '.join(CLEANUP_CATEGORIES)}")
    cleanup.add_argument("--older-than-days", type=float, metavar="N",
                         help="temp files only: the age cut-off (default cleanup.temp_max_age)")
    cleanup.add_argument("--dry-run", action="store_true", help="report what would be cleared; delete nothing")
    add_wait_flag(cleanup)

    diagnostics = sub.add_parser("diagnostics", help="test Vigil's components (a task)")
    add_client(diagnostics)
    diagnostics.add_argument("--component", action="extend", nargs="+", choices=COMPONENTS, metavar="C",
                             help=f"only these components (default all): {', '.join(COMPONENTS)}")
    diagnostics.add_argument("--test", action="extend", nargs="+", choices=TESTS, metavar="T",
                             help="connectivity, performance, stress (bounded, about 2 s a component); "
                                  "default connectivity and performance")
    add_wait_flag(diagnostics)

    health = sub.add_parser("health-check", help="the full health check, stored as a report (a task)")
    add_client(health)
    add_wait_flag(health)

    store = sub.add_parser("store", help="the database: figures and integrity check")
    store_sub = store.add_subparsers(dest="store_command", required=True)
    add_client(store_sub.add_parser("info", help="file and WAL size, tables with rows and bytes, last vacuum"))
    integrity = store_sub.add_parser("integrity-check", help="PRAGMA integrity_check on the database (a task)")
    add_client(integrity)
    integrity.add_argument("--quick", action="store_true", help="PRAGMA quick_check: much faster, less thorough")
    add_wait_flag(integrity)

    versions = config_sub.add_parser("versions", help="applied config versions, newest first")
    add_client(versions)
    versions.add_argument("--limit", type=int, default=20, help="at most this many (default 20)")
    versions.add_argument("--diff", action="store_true", help="also each version's changes")
    rollback = config_sub.add_parser("rollback", help="put the config back as it was in a version")
    add_client(rollback)
    rollback.add_argument("id", help="a version id from `vigil config versions`")
    rollback.add_argument("--reason", help="kept with the new version")
    rollback.add_argument("--dry-run", action="store_true", help="show what would change; write nothing")
    change = config_sub.add_parser(
        "set", help="change one setting in the config files (comments kept; validated whole; versioned)")
    add_client(change)
    change.add_argument("path", help="dotted path of the setting, e.g. log.level or api.rate_limit.default")
    change.add_argument("value", help="a YAML value: debug, 10, true, 5m, [a, b]; null removes the setting "
                                      "(back to its default)")
    change.add_argument("--reason", help="kept with the version (default: changed over the API)")
    change.add_argument("--dry-run", action="store_true", help="validate and show the changes; write nothing")


def run(client: _Client, args: argparse.Namespace) -> int:
    if args.command == "cleanup":
        body: dict[str, Any] = {"dry_run": args.dry_run}
        if args.category:
            body["categories"] = args.category
        if args.older_than_days is not None:
            body["older_than_days"] = args.older_than_days
        return _start(client, args, "/api/v1/maintenance/cleanup", body, _cleanup_problem)
    if args.command == "diagnostics":
        body = {}
        if args.component:
            body["components"] = args.component
        if args.test:
            body["tests"] = args.test
        return _start(client, args, "/api/v1/components/diagnostics", body, _diagnostics_problem)
    if args.command == "health-check":
        return _start(client, args, "/api/v1/health/check", {}, _health_problem)
    if args.command == "store":
        if args.store_command == "info":
            return store_info(client, args.json)
        return _start(client, args, "/api/v1/store/integrity_check", {"quick": args.quick}, _integrity_problem)
    if args.config_command == "versions":
        return config_versions(client, args)
    if args.config_command == "rollback":
        return config_rollback(client, args)
    return config_set(client, args)


# --- tasks ----------------------------------------------------------------------------------------------


Problem = Callable[[dict[str, Any]], str | None]


def _start(client: _Client, args: argparse.Namespace, path: str, body: dict[str, Any], problem: Problem) -> int:
    accepted = client.call("POST", path, body)["data"]
    code = follow(client, accepted, args.wait, args.json)
    if code != 0 or not args.wait:
        return code
    task = client.call("GET", f"/api/v1/tasks/{urllib.parse.quote(accepted['task_id'], safe='')}")["data"]
    found = problem(task.get("result") or {})
    if found:
        print(f"vigil: {task['type']} task {task['id']} completed and reports a problem: {found}", file=sys.stderr)
        return 1
    return 0


def _cleanup_problem(result: dict[str, Any]) -> str | None:
    failed = result.get("failed") or []
    return f"failed categories: {', '.join(failed)}" if failed else None


def _diagnostics_problem(result: dict[str, Any]) -> str | None:
    failed = [f"{r['component']} {t['name']}" for r in result.get("results", []) for t in r["tests"]
              if t["status"] == "fail"]
    return f"failed tests: {', '.join(failed)}" if failed else None


def _health_problem(result: dict[str, Any]) -> str | None:
    if result.get("overall") != "critical":
        return None
    critical = [name for name, status in (result.get("checks") or {}).items() if status == "critical"]
    return f"critical: {', '.join(critical)} (report {result.get('report_id')})"


def _integrity_problem(result: dict[str, Any]) -> str | None:
    if result.get("ok", True):
        return None
    return (f"{len(result.get('errors') or [])} integrity problem(s), "
            f"{len(result.get('foreign_key_errors') or [])} foreign key error(s)")


# --- store ----------------------------------------------------------------------------------------------


def size(n: int | None) -> str:
    if n is None:
        return "-"
    if n < 1024:
        return f"{n} B"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB"):
        value /= 1024
        if value < 1024 or unit == "GiB":
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable: the loop returns at GiB")


def _last(record: dict[str, Any] | None, verdict: str = "") -> str:
    if record is None:
        return "never"
    return f"{record['at']} (took {record['duration_seconds']:g}s){verdict}"


def store_info(client: _Client, raw: bool) -> int:
    data = client.call("GET", "/api/v1/store")["data"]
    if raw:
        print(json.dumps(data, indent=2))
        return 0
    print(f"{data['path']}: {size(data['file_bytes'])}, WAL {size(data['wal_bytes'])}, "
          f"free {size(data['free_bytes'])} (schema {data['schema_version']}, SQLite {data['sqlite_version']}, "
          f"journal {data['journal_mode']})")
    checked = data.get("last_integrity_check")
    verdict = "" if checked is None else (": ok" if checked.get("ok") else ": PROBLEMS FOUND")
    print(f"  last vacuum           {_last(data.get('last_vacuum'))}")
    print(f"  last optimize         {_last(data.get('last_optimize'))}")
    print(f"  last integrity check  {_last(checked, verdict)}")
    print(f"{'TABLE':<28} {'ROWS':>10} {'BYTES':>11} {'INDEXES':>11}")
    for t in data["tables"]:
        print(f"{t['name'][:28]:<28} {t['rows']:>10} {size(t['bytes']):>11} {size(t['index_bytes']):>11}")
    totals = data["totals"]
    print(f"{totals['tables']} tables, {totals['rows']} rows, {size(totals['bytes'])} with indexes")
    return 0


# --- config ---------------------------------------------------------------------------------------------


def _shown(value: Any) -> str:
    return "(unset)" if value is None else json.dumps(value, ensure_ascii=False)


def _changes(changes: list[dict[str, Any]], indent: str = "  ") -> list[str]:
    return [f"{indent}{c['path']}: {_shown(c['old_value'])} -> {_shown(c['new_value'])}" for c in changes]


def config_versions(client: _Client, args: argparse.Namespace) -> int:
    if not 1 <= args.limit <= 1000:
        raise UsageError("--limit must be between 1 and 1000")
    data = client.call("GET", f"/api/v1/config/versions?limit={args.limit}")["data"]
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    print(f"  {'ID':>6} {'CREATED':<21} {'SOURCE':<9} {'ACTOR':<22} {'CHANGES':>7}  REASON")
    for v in data["versions"]:
        mark = "*" if v["current"] else " "
        print(f"{mark} {v['id']:>6} {v['created_at']:<21} {v['source']:<9} {(v['actor'] or '-')[:22]:<22} "
              f"{v['changes']:>7}  {v['reason'] or '-'}")
        if args.diff:
            print("\n".join(_changes(v["diff"], " " * 10)) or " " * 10 + "(no change)")
    total = data["pagination"]["total"]
    print(f"{total} versions; * is the running one (version {data['current_version']})")
    return 0


def config_rollback(client: _Client, args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"dry_run": args.dry_run}
    if args.reason:
        body["reason"] = args.reason
    data = client.call("POST", f"/api/v1/config/rollback/{urllib.parse.quote(args.id, safe='')}", body)["data"]
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    if data["dry_run"]:
        print(f"dry run: rolling back to version {data['rollback_id']} would revert {data['changes_reverted']} "
              "change(s); nothing written")
    elif data["changes_reverted"] == 0:
        print(f"version {data['rollback_id']} is what runs already: nothing to change")
    else:
        print(f"rolled back to version {data['rollback_id']}: {data['changes_reverted']} change(s) reverted, now "
              f"version {data['version_id']} (undo with `vigil config rollback {data['previous_version']}`)")
    _report(data)
    return 0


class _ValueLoader(yaml.SafeLoader):
    """YAML as the config files are read (PyYAML's safe rules), except that a date stays text: it travels as JSON,
    and the schema parses an ISO 8601 string where it wants a time."""


_ValueLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def parse_value(text: str) -> Any:
    if not text.strip():
        raise UsageError('an empty VALUE is ambiguous: give null to remove the setting, or "" for an empty string')
    try:
        return yaml.load(text, Loader=_ValueLoader)
    except yaml.YAMLError as exc:
        raise UsageError(f"VALUE is not YAML: {exc}") from None


def partial_document(path: str, value: Any) -> dict[str, Any]:
    """`log.level` and `debug` as `{"log": {"level": "debug"}}`, the partial document PUT /api/v1/config takes."""
    parts = path.split(".")
    if not all(p.strip() for p in parts):
        raise UsageError(f"{path!r} is not a dotted path of a setting (e.g. log.level)")
    doc: Any = value
    for part in reversed(parts):
        doc = {part: doc}
    return dict(doc)


def config_set(client: _Client, args: argparse.Namespace) -> int:
    body: dict[str, Any] = {**partial_document(args.path, parse_value(args.value)), "dry_run": args.dry_run}
    if args.reason:
        body["reason"] = args.reason
    data = client.call("PUT", "/api/v1/config", body)["data"]
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    changes = data["changes"]
    if not changes:
        print(f"no change: {args.path} already has that value")
        return 0
    if data["dry_run"]:
        print(f"dry run: {len(changes)} change(s) in {', '.join(data['files'])}; nothing written")
    else:
        print(f"version {data['version_id']}: {len(changes)} change(s) in {', '.join(data['files'])} "
              f"(undo with `vigil config rollback {data['rollback_id']}`)")
    _report(data)
    return 0


def _report(data: dict[str, Any]) -> None:
    for line in _changes(data["changes"]):
        print(line)
    if data.get("restarted_services"):
        print(f"  {'would reconfigure' if data['dry_run'] else 'reconfigured'}: "
              f"{', '.join(data['restarted_services'])}")
    if data.get("requires_restart"):
        print(f"  takes effect at the next restart: {', '.join(data['requires_restart'])}")
