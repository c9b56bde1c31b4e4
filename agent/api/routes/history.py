"""The metrics history's own doors: backfill import, and the seeds' metric views and summary.

Views are named PromQL expressions from config (`history.views`), evaluated as range queries,
so what an operator sees here is exactly what the same expression gives in Grafana.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any, Literal

from aiohttp import web
from pydantic import Field

from agent.api.errors import ApiError, ok
from agent.api.formats import iso, parse_iso
from agent.api.routes import ROUTES
from agent.api.routes.query import prom_error
from agent.api.routing import QueryModel, parse_query, read_body
from agent.api.services import Services, services
from agent.promql.values import Labels, PromQLError, Sample, Scalar
from agent.tsdb.db import TSDBError
from agent.tsdb.textparse import TextParseError, parse

PERIODS = {"1h": 3600, "6h": 6 * 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}
RESOLUTIONS = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600, "1d": 86400}
MAX_VIEW_POINTS = 1500
LAST_SECOND = 253402300799  # 9999-12-31T23:59:59Z
MAX_FUTURE_MS = 10 * 60_000  # imported samples may be ahead of our clock by this much (clock skew), no more


@ROUTES.route("POST", "/api/v1/import", summary="Import samples (Prometheus text or OpenMetrics) into the history",
              scope="write:metrics", category="metrics", tag="query",
              body_limit=lambda config: config.history.import_max_bytes,
              responses={400: "a bad line (named by number); nothing stored", 413: "body too large"})
async def import_samples(request: web.Request) -> web.Response:
    """All or nothing: the body is parsed whole before anything is stored, and the answer comes
    only after the samples are committed."""
    svc = services(request)
    body = await read_body(request, svc.config.config.history.import_max_bytes)
    if not body.strip():
        raise ApiError(400, "request body is empty; expected samples in the Prometheus text format or OpenMetrics")
    content_type = request.headers.get("Content-Type")
    now_ms = int(time.time() * 1000)
    try:
        batch = await asyncio.to_thread(parse, body, content_type, now_ms)
    except TextParseError as exc:
        raise ApiError(400, str(exc), {"line": exc.line}) from None
    too_late = now_ms + MAX_FUTURE_MS
    if batch.ts and max(batch.ts) > too_late:
        i = next(i for i, t in enumerate(batch.ts) if t > too_late)
        name = dict(batch.series[batch.refs[i]]).get("__name__", "")
        raise ApiError(400, f"nothing stored: sample {i + 1} ({name}) has timestamp {iso(batch.ts[i] / 1000)}, "
                       f"more than {MAX_FUTURE_MS // 60000} minutes ahead of this host's clock",
                       {"sample": i + 1, "series": name})
    try:
        stored = await svc.tsdb.import_batch(batch.series, batch.refs, batch.ts, batch.values)
    except TSDBError as exc:
        raise ApiError(400, f"nothing stored: {exc}") from None
    return ok({"samples": stored, "series": len(batch.series)})


class ViewsQuery(QueryModel):
    start_time: str | None = Field(None, description="ISO 8601; with end_time instead of period")
    end_time: str | None = Field(None, description="ISO 8601; default now")
    period: Literal["1h", "6h", "24h", "7d", "30d"] | None = Field(None, description="default 24h")
    resolution: Literal["1m", "5m", "15m", "1h", "1d"] | None = Field(
        None, description=f"step between points; default the finest giving at most {MAX_VIEW_POINTS} points"
    )
    metrics: str | None = Field(None, description="comma-separated view names (history.views); default all")


def requested_span(q: ViewsQuery | SummaryQuery) -> tuple[float, float]:
    """(start, end) in seconds as asked, within the years the API can write (1970 to 9999)."""
    try:
        end = parse_iso(q.end_time) if q.end_time else time.time()
    except ValueError:
        raise _bad("end_time", f"not an ISO 8601 time: {q.end_time!r}") from None
    if q.start_time:
        if q.period:
            raise _bad("period", "give either period or start_time, not both")
        try:
            start = parse_iso(q.start_time)
        except ValueError:
            raise _bad("start_time", f"not an ISO 8601 time: {q.start_time!r}") from None
    else:
        start = end - PERIODS[q.period or "24h"]
    for name, value in (("start_time", start), ("end_time", end)):
        if not 0 <= value <= LAST_SECOND:
            raise _bad(name, "must be between 1970 and 9999")
    if start >= end:
        raise _bad("start_time", "must be before end_time")
    return start, end


def time_range(q: ViewsQuery) -> tuple[float, float, int]:
    """(start, end, step) in seconds. The grid starts at a multiple of the step at or before the
    requested start, so repeated calls line up; the end stays as asked."""
    start, end = requested_span(q)
    span = end - start
    if q.resolution:
        step = RESOLUTIONS[q.resolution]
        if span / step > MAX_VIEW_POINTS:
            raise _bad("resolution", f"{q.resolution} over this range gives {int(span // step) + 1} points; "
                       f"at most {MAX_VIEW_POINTS} are returned, choose a coarser resolution")
    else:
        step = next((s for s in RESOLUTIONS.values() if span / s <= MAX_VIEW_POINTS), 0)
        if not step:
            raise _bad("start_time", f"the range is longer than {MAX_VIEW_POINTS} days, the most one answer covers")
    return math.floor(start / step) * step, end, step


def _bad(field: str, message: str) -> ApiError:
    return ApiError(400, f"invalid query parameter: {field}: {message}",
                    {"errors": [{"field": field, "message": message}]})


def _number(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _labels_json(labels: Labels) -> dict[str, str]:
    return {k: v for k, v in labels if k != "__name__"}


async def _evaluate_range(svc: Services, expr: str, start: float, end: float, step: int) -> list[dict[str, Any]]:
    matrix = await svc.queries.range(expr, int(start * 1000), int(end * 1000), step * 1000)
    points: list[dict[str, Any]] = []
    for series in matrix:
        labels = _labels_json(series.labels)
        for t, v in series.points:
            point: dict[str, Any] = {"timestamp": iso(t / 1000), "value": _number(v)}
            if labels:
                point["labels"] = labels
            points.append(point)
    return points


@ROUTES.route("GET", "/api/v1/metrics", summary="Metric views over a time range (history.views)",
              scope="read:metrics", category="metrics", query=ViewsQuery, tag="query")
async def metric_views(request: web.Request) -> web.Response:
    svc = services(request)
    q = parse_query(request, ViewsQuery)
    views = svc.config.config.history.views
    names = [n.strip() for n in q.metrics.split(",") if n.strip()] if q.metrics else list(views)
    unknown = [n for n in names if n not in views]
    if unknown:
        raise _bad("metrics", f"unknown view(s) {', '.join(unknown)}; available: {', '.join(views)}")
    start, end, step = time_range(q)
    out: dict[str, Any] = {}
    for name in names:
        try:
            out[name] = await _evaluate_range(svc, views[name].expr, start, end, step)
        except PromQLError as exc:
            error = prom_error(exc)
            error.message = f"view {name}: {exc}"
            error.details = {"view": name, "expr": views[name].expr}
            raise error from None
    resolution = next(k for k, v in RESOLUTIONS.items() if v == step)
    return ok({
        "time_range": {"start": iso(start), "end": iso(end)},
        "resolution": resolution,
        "metrics": out,
        "units": {name: views[name].unit for name in names},
    })


async def _scalar(svc: Services, expr: str, t_ms: int) -> float | None:
    """First sample of an instant query, or None when the history has nothing for it."""
    result = await svc.queries.instant(expr, t_ms)
    if isinstance(result, Scalar):
        return _number(result.v)
    if isinstance(result, list) and result and isinstance(result[0], Sample):
        return _number(result[0].v)
    return None


async def _vector(svc: Services, expr: str, t_ms: int) -> list[Sample]:
    result = await svc.queries.instant(expr, t_ms)
    return [s for s in result if isinstance(s, Sample)] if isinstance(result, list) else []


class SummaryQuery(QueryModel):
    start_time: str | None = None
    end_time: str | None = None
    period: Literal["1h", "6h", "24h", "7d", "30d"] | None = Field(None, description="default 24h")


@ROUTES.route("GET", "/api/v1/metrics/summary", summary="CPU, memory, disk and API request summary for a range",
              scope="read:metrics", category="metrics", query=SummaryQuery, tag="query")
async def metrics_summary(request: web.Request) -> web.Response:
    svc = services(request)
    q = parse_query(request, SummaryQuery)
    start, end = requested_span(q)
    views = svc.config.config.history.views
    span = f"{max(int(end - start), 60)}s"
    at = int(end * 1000)
    step = "60s"

    async def over_time(view: str, fn: str) -> float | None:
        if view not in views:
            return None
        return await _scalar(svc, f"{fn}(({views[view].expr})[{span}:{step}])", at)

    try:
        cpu_avg, cpu_peak = await over_time("cpu_usage_percent", "avg_over_time"), \
            await over_time("cpu_usage_percent", "max_over_time")
        mem_avg, mem_peak = await over_time("memory_usage_percent", "avg_over_time"), \
            await over_time("memory_usage_percent", "max_over_time")
        disks = await _vector(svc, views["disk_usage_percent"].expr, at) if "disk_usage_percent" in views else []
        total = await _scalar(svc, f"sum(increase(vigil_http_requests_total[{span}]))", at) or 0.0
        by_code = await _vector(svc, f"sum by (code) (increase(vigil_http_requests_total[{span}]))", at)
        latency = {}
        for quantile in ("0.95", "0.99"):
            latency[quantile] = await _scalar(svc, f"histogram_quantile({quantile}, sum by (le) "
                                              f"(increase(vigil_http_request_duration_seconds_bucket[{span}])))", at)
        mean = await _scalar(svc, f"sum(increase(vigil_http_request_duration_seconds_sum[{span}])) / "
                             f"sum(increase(vigil_http_request_duration_seconds_count[{span}]))", at)
    except PromQLError as exc:
        raise prom_error(exc) from None
    codes = {dict(s.labels).get("code", ""): s.v for s in by_code}
    errors = {code: round(n) for code, n in sorted(codes.items()) if code[:1] in ("4", "5") and round(n) > 0}
    error_total = sum(errors.values())
    failed = sum(n for code, n in codes.items() if code[:1] == "5")

    def ms(seconds: float | None) -> float | None:
        return None if seconds is None else round(seconds * 1000, 3)

    return ok({
        "time_range": {"start": iso(start), "end": iso(end)},
        "cpu": {"average_percent": cpu_avg, "peak_percent": cpu_peak},
        "memory": {"average_percent": mem_avg, "peak_percent": mem_peak},
        "disk": [{**_labels_json(s.labels), "usage_percent": _number(s.v)} for s in disks],
        "requests": {
            "total": round(total),
            "success_rate": None if total <= 0 else round(1 - failed / total, 6),
            "avg_response_time_ms": ms(mean),
            "p95_response_time_ms": ms(latency["0.95"]),
            "p99_response_time_ms": ms(latency["0.99"]),
        },
        "errors": {
            "total": error_total,
            "rate": None if total <= 0 else round(error_total / total, 6),
            "by_status": errors,
        },
    })
