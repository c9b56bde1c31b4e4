"""Logs: Vigil's own log events (kept in the store) and the host's log files named in `log.files`,
newest first, in one list."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any, Literal

from aiohttp import web
from pydantic import Field

from agent.api.errors import ApiError, ok
from agent.api.formats import parse_iso
from agent.api.pagination import PageQuery, decode_cursor, pagination
from agent.api.routes import ROUTES
from agent.api.routing import parse_query
from agent.api.services import services
from agent.logbook.files import LEVEL_WORDS, ascii_lower
from agent.logbook.query import LEVEL_NAMES, LogEntry, LogQuery, level_name
from agent.store.logbook import LogFilter, LogKey

TimeRange = Literal["1h", "6h", "24h", "7d"]
RANGE_SECONDS = {"1h": 3600.0, "6h": 6 * 3600.0, "24h": 86400.0, "7d": 7 * 86400.0}
MAX_SERVICES = 50


def iso_ms(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _instant(name: str, value: str) -> float:
    text = value.strip()
    try:
        ts = float(text) if text.replace(".", "", 1).isdigit() else parse_iso(text)
    except (ValueError, OverflowError):
        raise ApiError(400, f"invalid query parameter: {name}: expected an ISO 8601 time or Unix seconds, "
                            f"got {value!r}", {"errors": [{"field": name, "message": "not a time"}]}) from None
    if not 0 <= ts < 253402300800:  # before the year 10000, as ISO 8601 can say
        raise ApiError(400, f"invalid query parameter: {name}: out of range",
                       {"errors": [{"field": name, "message": "out of range"}]})
    return ts


def time_window(since: str | None, until: str | None, time_range: str | None) -> tuple[float | None, float | None]:
    """`from`/`to` (ISO 8601 or Unix seconds) or `time_range` back from now; neither: everything kept."""
    if time_range is not None and (since is not None or until is not None):
        raise ApiError(400, "invalid query parameter: time_range: give either time_range or from/to, not both",
                       {"errors": [{"field": "time_range", "message": "not with from/to"}]})
    if time_range is not None:
        return time.time() - RANGE_SECONDS[time_range], None
    start = _instant("from", since) if since is not None else None
    end = _instant("to", until) if until is not None else None
    if start is not None and end is not None and start > end:
        raise ApiError(400, "invalid query parameter: from: is after to",
                       {"errors": [{"field": "from", "message": "after to"}]})
    return start, end


class LogsQuery(PageQuery):
    level: Literal["all", "debug", "info", "warn", "warning", "error", "critical"] = Field(
        "all", description="lowest level shown (warn = warning); all: every level")
    service: str | None = Field(
        None, max_length=2000,
        description="comma-separated: Vigil's components (api, store, scheduler, ...) or names of log.files")
    source: Literal["all", "vigil", "files"] = Field(
        "all", description="vigil: Vigil's own events; files: the configured log files; all: both")
    search: str | None = Field(
        None, max_length=500, description="plain text in the message or context, case-insensitive (not a pattern)")
    from_: str | None = Field(None, alias="from", max_length=64, description="ISO 8601 time or Unix seconds")
    to: str | None = Field(None, max_length=64, description="ISO 8601 time or Unix seconds")
    time_range: TimeRange | None = Field(None, description="instead of from/to: this far back from now")


def _cursor_key(cursor: str) -> LogKey:
    position = decode_cursor(cursor).get("k")
    if (isinstance(position, list) and len(position) == 3 and isinstance(position[0], int | float)
            and not isinstance(position[0], bool) and isinstance(position[1], str)
            and isinstance(position[2], int) and not isinstance(position[2], bool)):
        return float(position[0]), position[1], position[2]
    raise ApiError(400, "invalid query parameter: cursor: not a cursor of this list",
                   {"errors": [{"field": "cursor", "message": "not a cursor of this list"}]})


def entry_view(entry: LogEntry) -> dict[str, Any]:
    return {"id": entry.id, "timestamp": iso_ms(entry.ts), "level": level_name(entry.level),
            "service": entry.service, "source": entry.source, "message": entry.message, "context": entry.context}


@ROUTES.route("GET", "/api/v1/logs", summary="Vigil's log events and the configured log files, newest first",
              scope="read:logs", query=LogsQuery, tag="logs")
async def list_logs(request: web.Request) -> web.Response:
    svc = services(request)
    q = parse_query(request, LogsQuery)
    if svc.logbook is None:
        raise ApiError(503, "the log store is not running", headers={"Retry-After": "30"})
    since, until = time_window(q.from_, q.to, q.time_range)
    names = [s.strip() for s in (q.service or "").split(",") if s.strip()]
    if len(names) > MAX_SERVICES:
        raise ApiError(400, f"invalid query parameter: service: at most {MAX_SERVICES} names",
                       {"errors": [{"field": "service", "message": f"at most {MAX_SERVICES} names"}]})
    level = "all" if q.level == "all" else ("warning" if q.level == "warn" else q.level)
    search = ascii_lower(q.search) if q.search else None
    page = await svc.logbook.query(LogQuery(
        LogFilter(since, until, 0 if level == "all" else LEVEL_WORDS[level], names or None, search),
        q.source, _cursor_key(q.cursor) if q.cursor else None, q.offset, q.limit,
    ))
    counts = {name: 0 for name in LEVEL_NAMES.values()}
    for number, n in page.by_level.items():
        counts[level_name(number)] += n
    data: dict[str, Any] = {
        "logs": [entry_view(e) for e in page.entries],
        "summary": {"total_logs": sum(counts.values()), **{f"{name}_count": n for name, n in counts.items()}},
        "filters": {"level": level, "service": names or None, "source": q.source, "search": q.search,
                    "from": iso_ms(since) if since is not None else None,
                    "to": iso_ms(until) if until is not None else None, "time_range": q.time_range},
        "pagination": pagination(page.total, q.limit, q.offset, len(page.entries),
                                 {"k": list(page.entries[-1].key)} if page.has_more else None),
    }
    if page.files:
        data["files"] = page.files
    return ok(data)
