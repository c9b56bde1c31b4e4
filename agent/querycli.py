"""`vigil query` and `vigil query-range`: PromQL from a shell, printed as readable tables.

Times are what an operator types: "now", a relative "now-1h", Unix seconds or RFC 3339. The agent
does the parsing of the expression, so errors read exactly as the API gives them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import time
import urllib.parse
from datetime import UTC, datetime
from typing import Any, Protocol

_RELATIVE = re.compile(r"^(?:now)?-(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)$")
_UNIT = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


class _Client(Protocol):
    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any: ...


class UsageError(ValueError):
    """A time the user typed that cannot be read; printed like the API's errors."""


def add_commands(sub: Any, add_client: Any) -> None:
    q = sub.add_parser("query", help="evaluate a PromQL expression at one time")
    add_client(q)
    q.add_argument("expr")
    q.add_argument("--time", help="now (default), now-5m, Unix seconds or RFC 3339")
    r = sub.add_parser("query-range", help="evaluate a PromQL expression over a time range")
    add_client(r)
    r.add_argument("expr")
    r.add_argument("--start", default="now-1h", help="default now-1h")
    r.add_argument("--end", default="now", help="default now")
    r.add_argument("--step", default=None, help="duration like 15s or 1m (default: about 60 points)")


def parse_when(text: str, now: float) -> float:
    """Unix seconds from "now", "now-1h" (or "-1h"), a number or RFC 3339; raises UsageError."""
    text = text.strip()
    if text == "now":
        return now
    match = _RELATIVE.match(text)
    if match:
        return now - float(match.group(1)) * _UNIT[match.group(2)]
    with contextlib.suppress(ValueError):
        return float(text)
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"cannot read time {text!r}: use now, now-1h, Unix seconds or RFC 3339") from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


def run(client: _Client, args: argparse.Namespace) -> int:
    now = time.time()
    if args.command == "query":
        params = {"query": args.expr, "time": f"{parse_when(args.time or 'now', now):.3f}"}
        data = client.call("GET", "/api/v1/query?" + urllib.parse.urlencode(params))["data"]
    else:
        start, end = parse_when(args.start, now), parse_when(args.end, now)
        step = args.step or f"{max(round((end - start) / 60), 1)}s"
        params = {"query": args.expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": step}
        data = client.call("GET", "/api/v1/query_range?" + urllib.parse.urlencode(params))["data"]
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        print(render(data))
    return 0


def series_name(metric: dict[str, str]) -> str:
    name = metric.get("__name__", "")
    labels = ", ".join(f'{k}="{v}"' for k, v in sorted(metric.items()) if k != "__name__")
    return f"{name}{{{labels}}}" if labels or not name else name


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def render(data: dict[str, Any]) -> str:
    kind, result = data["resultType"], data["result"]
    if kind in ("scalar", "string"):
        return f"{result[1]}    @ {_when(result[0])}"
    if not result:
        return "(no data)"
    if kind == "vector":
        names = [series_name(r["metric"]) for r in result]
        width = min(max(len(n) for n in names), 100)
        lines = [f"{'SERIES':<{width}}  VALUE"]
        lines += [f"{n:<{width}}  {r['value'][1]}" for n, r in zip(names, result, strict=True)]
        lines.append(f"({len(result)} series at {_when(result[0]['value'][0])})")
        return "\n".join(lines)
    lines = []
    for r in result:
        lines.append(series_name(r["metric"]))
        lines += [f"  {_when(t)}  {v}" for t, v in r["values"]]
    lines.append(f"({len(result)} series)")
    return "\n".join(lines)
