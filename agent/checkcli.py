"""`vigil checks` and `vigil check run NAME`: check states from a shell.

`vigil check run` exits with the result's Nagios code (0 ok, 1 warning, 2 critical, 3 unknown), so
it composes with scripts the way the plugins themselves do.
"""

from __future__ import annotations

import argparse
import json
import urllib.parse
from typing import Any, Protocol

STATUS_CODES = {"ok": 0, "warning": 1, "critical": 2, "unknown": 3}


class _Client(Protocol):
    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any: ...


def add_commands(sub: Any, add_client: Any) -> None:
    checks = sub.add_parser("checks", help="list checks with their state")
    add_client(checks)
    checks.add_argument("--state", choices=["ok", "warning", "critical", "unknown", "pending"])
    check = sub.add_parser("check", help="work with one check")
    check_sub = check.add_subparsers(dest="check_command", required=True)
    for verb, text in (("run", "run it now and print the result (exit status: 0-3 as Nagios)"),
                       ("show", "state, uptime and recent results"),
                       ("pause", "stop running it until resumed"), ("resume", "run it again")):
        p = check_sub.add_parser(verb, help=text)
        add_client(p)
        p.add_argument("name")


def run(client: _Client, args: argparse.Namespace) -> int:
    if args.command == "checks":
        path = "/api/v1/checks" + (f"?state={args.state}" if args.state else "")
        data = client.call("GET", path)["data"]
        if args.json:
            print(json.dumps(data, indent=2))
            return 0
        print(f"{'NAME':<24} {'TYPE':<11} {'STATE':<9} {'SINCE':<21} {'UP 24H':>7}  MESSAGE")
        for c in data["checks"]:
            state = c["state"] + ("*" if c["paused"] else "")
            uptime = c.get("uptime_percent_24h")
            shown = f"{uptime:.2f}%" if uptime is not None else "-"
            print(f"{c['name'][:24]:<24} {c['type']:<11} {state:<9} {c['state_since'] or '-':<21} {shown:>7}  "
                  f"{c['message'][:100]}")
        summary = ", ".join(f"{n} {s}" for s, n in sorted(data["summary"].items()))
        print(f"{data['total']} checks: {summary or 'none'}" + (" (* paused)" if any(
            c["paused"] for c in data["checks"]) else ""))
        return 0
    name = urllib.parse.quote(args.name, safe="")
    if args.check_command == "run":
        data = client.call("POST", f"/api/v1/checks/{name}/run")["data"]
        result = data["result"]
        if args.json:
            print(json.dumps(data, indent=2))
        else:
            print(f"{result['status'].upper()}: {result['message']} ({result['duration_ms']:.1f} ms)")
            for p in result["perfdata"]:
                print(f"  {p['label']} = {p['value']:g}{p['uom']}")
            print(f"  state: {data['state']['state']}")
        return STATUS_CODES.get(result["status"], 3)
    if args.check_command in ("pause", "resume"):
        data = client.call("POST", f"/api/v1/checks/{name}/{args.check_command}")["data"]
        print(f"{data['name']}: {'paused' if data['paused'] else 'running'} ({data['state']})")
        return 0
    data = client.call("GET", f"/api/v1/checks/{name}?limit=10")["data"]
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    up = data["uptime"]
    print(f"{data['name']} ({data['type']}): {data['state']} since {data['state_since']}: {data['message']}")
    print(f"  uptime 24h {up['uptime_percent_24h']}%, 7d {up['uptime_percent_7d']}%, 30d {up['uptime_percent_30d']}%;"
          f" incidents (30d) {up['incidents_count']}; last down {up['last_downtime'] or 'never'}")
    for r in data["history"]:
        print(f"  {r['started_at']}  {r['status']:<8} {r['message'][:100]}")
    return 0
