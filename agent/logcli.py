"""`vigil logs [--follow]` over the API, and `vigil audit verify`, which reads the database file itself.

`audit verify` does not ask the daemon: a check of the tamper-evident chain must not depend on the
process whose records it checks, and it works the same with the daemon running or stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sqlite3
import sys
import time
import urllib.parse
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from agent.querycli import UsageError, parse_when

_DURATION = re.compile(r"^\d+(\.\d+)?[smhdw]$")
FOLLOW_PAGES = 20  # pages of 1000 read per poll at most: a flood is shown in part, the follow goes on


class _Client(Protocol):
    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any: ...


def add_commands(sub: Any, add_client: Callable[[argparse.ArgumentParser], None],
                 add_config: Callable[[argparse.ArgumentParser], None]) -> None:
    logs = sub.add_parser("logs", help="Vigil's log events and the configured log files (oldest first)")
    add_client(logs)
    logs.add_argument("--level", choices=["debug", "info", "warning", "warn", "error", "critical"],
                      help="lowest level shown")
    logs.add_argument("--service", help="comma-separated services or log.files names")
    logs.add_argument("--source", choices=["all", "vigil", "files"], default="all")
    logs.add_argument("--search", help="plain text to look for (case-insensitive)")
    logs.add_argument("--since", help="1h, now-30m, Unix seconds or RFC 3339")
    logs.add_argument("--limit", type=int, default=100, help="lines shown at first (at most 1000; default 100)")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines until interrupted")
    logs.add_argument("--interval", type=float, default=1.0, help="seconds between polls with --follow")

    audit = sub.add_parser("audit", help="the audit log")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    verify = audit_sub.add_parser(
        "verify", help="check the audit log's hash chain in the database file; exit 1 naming the first broken row")
    add_config(verify)
    verify.add_argument("--db", help="the database file (default: store.path, or <state_dir>/vigil.db of the config)")
    verify.add_argument("--state-dir", help="overrides the config's state_dir")
    verify.add_argument("--json", action="store_true", help="print the result as JSON")


def _params(args: argparse.Namespace) -> dict[str, str]:
    params: dict[str, str] = {"source": args.source}
    if args.level:
        params["level"] = args.level
    if args.service:
        params["service"] = args.service
    if args.search:
        params["search"] = args.search
    if args.since:
        text = args.since.strip()
        since = parse_when("-" + text if _DURATION.match(text) else text, time.time())
        params["from"] = datetime.fromtimestamp(since, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return params


def _line(entry: dict[str, Any]) -> str:
    context = entry.get("context") or {}
    extra = " ".join(f"{k}={json.dumps(v, ensure_ascii=False) if not isinstance(v, str) or ' ' in v else v}"
                     for k, v in context.items() if not (entry["source"] == "file" and k == "file"))
    return (f"{entry['timestamp']} {entry['level'].upper():<8} {entry['service'][:14]:<14} {entry['message']}"
            + (f"  {extra}" if extra else ""))


def _show(entries: list[dict[str, Any]], raw: bool) -> None:
    for entry in entries:
        print(json.dumps(entry) if raw else _line(entry), flush=True)


def logs_command(client: _Client, args: argparse.Namespace) -> int:
    if not 1 <= args.limit <= 1000:
        raise UsageError("--limit must be between 1 and 1000")
    params = _params(args)
    data = client.call("GET", "/api/v1/logs?" + urllib.parse.urlencode({**params, "limit": args.limit}))["data"]
    if args.json and not args.follow:
        print(json.dumps(data, indent=2))
        return 0
    shown = list(reversed(data["logs"]))
    _show(shown, args.json)
    if not args.follow:
        return 0
    # Newer lines are those from the last shown time on; the ones at exactly that millisecond that were
    # already printed are skipped by id.
    last = shown[-1]["timestamp"] if shown else datetime.now(UTC).isoformat(
        timespec="milliseconds").replace("+00:00", "Z")
    seen = {e["id"] for e in shown if e["timestamp"] == last}
    try:
        while True:
            time.sleep(max(args.interval, 0.05))
            fresh: list[dict[str, Any]] = []
            cursor: str | None = None
            for _ in range(FOLLOW_PAGES):
                query = {**params, "from": last, "limit": 1000, **({"cursor": cursor} if cursor else {})}
                page = client.call("GET", "/api/v1/logs?" + urllib.parse.urlencode(query))["data"]
                fresh.extend(page["logs"])
                cursor = page["pagination"]["next_cursor"]
                if not cursor:
                    break
            fresh = [e for e in reversed(fresh) if e["id"] not in seen]
            if not fresh:
                continue
            _show(fresh, args.json)
            if fresh[-1]["timestamp"] != last:
                last = fresh[-1]["timestamp"]
                seen = set()
            seen.update(e["id"] for e in fresh if e["timestamp"] == last)
    except KeyboardInterrupt:
        return 0


def _database_path(args: argparse.Namespace) -> str:
    if args.db:
        return str(args.db)
    store_path: str | None = None
    state_dir: str | None = args.state_dir
    from agent.config import ConfigError, load_config

    try:
        config = load_config(args.config).config
        store_path, state_dir = config.store.path, state_dir or config.state_dir
    except ConfigError as exc:
        # A config with an error must not stop the check: take just the two keys from the file.
        import yaml

        try:
            with open(args.config, encoding="utf-8") as fh:
                doc = yaml.safe_load(fh) or {}
        except (OSError, yaml.YAMLError):
            raise UsageError(f"cannot read {args.config} to find the database (use --db):\n{exc}") from None
        if isinstance(doc, dict):
            store = doc.get("store")
            store_path = store.get("path") if isinstance(store, dict) else None
            state_dir = state_dir or doc.get("state_dir")
    if store_path and not args.state_dir:
        return str(store_path)
    return os.path.join(str(state_dir or "/var/lib/vigil"), "vigil.db")


def _when(ts: Any) -> str | None:
    try:
        return datetime.fromtimestamp(float(ts), UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    except (TypeError, ValueError, OverflowError, OSError):  # an edited row may hold anything
        return None


def audit_verify(args: argparse.Namespace) -> int:
    """Exit 0 when the chain is intact, 1 naming the first broken row, 2 when the file cannot be read."""
    from agent.store.audit import verify_file

    try:
        path = _database_path(args)
    except UsageError as exc:
        print(f"vigil: {exc}", file=sys.stderr)
        return 2
    if not os.path.isfile(path):
        print(f"vigil: no database at {path} (use --db or --config)", file=sys.stderr)
        return 2
    try:
        report = verify_file(path)
    except sqlite3.Error as exc:
        print(f"vigil: cannot read the audit log in {path}: {exc}", file=sys.stderr)
        return 2
    broken = report.broken
    if args.json:
        print(json.dumps({
            "database": path, "intact": broken is None, "rows_verified": report.rows,
            "last_verified_id": report.last_id,
            "first_broken": None if broken is None else {
                "id": broken.id, "event_type": broken.event_type, "problem": broken.problem,
                "timestamp": _when(broken.ts)},
        }, indent=2))
    elif broken is None:
        print(f"{path}: {report.rows} rows verified, the audit chain is intact")
    else:
        when = _when(broken.ts)
        what = f" ({when + ', ' if when else ''}{broken.event_type})" if broken.event_type else ""
        print(f"{path}: audit chain BROKEN at row {broken.id}{what}: {broken.problem}")
        print(f"{report.rows} rows before it verified" + (f" (up to id {report.last_id})" if report.last_id else ""))
    return 0 if broken is None else 1
