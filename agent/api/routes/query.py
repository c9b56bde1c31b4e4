"""The Prometheus HTTP query API over the local history, with Prometheus's parameters and shapes.

Grafana's Prometheus data source, promtool and curl scripts written for Prometheus work against
one agent unchanged: parameters come from the URL or a form-encoded POST body, times are RFC 3339
or Unix seconds, errors carry Prometheus's errorType (bad_data 400, execution 422, timeout 503).
"""

from __future__ import annotations

import json
import math
import platform
import time
import urllib.parse
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from multidict import MultiDict, MultiDictProxy
from pydantic import ConfigDict, Field

from agent import __version__
from agent.api.errors import ApiError, ok
from agent.api.routes import ROUTES
from agent.api.routing import QueryModel, read_body
from agent.api.services import services
from agent.promql.ast import Expr, Matcher
from agent.promql.engine import value_type
from agent.promql.parser import matcher_matches_empty, parse_duration, parse_matchers
from agent.promql.values import (
    Labels,
    Matrix,
    ParseError,
    PromQLError,
    Scalar,
    String,
    Value,
    format_sample_value,
    format_value,
)

# Prometheus answers label and series look-ups over all time when no range is given.
MIN_TIME_MS = -62135596800000  # 0001-01-01
MAX_TIME_MS = 253402300799000  # 9999-12-31T23:59:59
_STATUS_OF = {"bad_data": 400, "execution": 422, "timeout": 503}
PROMETHEUS_COMPAT_VERSION = "2.42.0"


class _PromQuery(QueryModel):
    """Prometheus ignores parameters it does not know (Grafana sends a few); so do these routes."""

    model_config = ConfigDict(extra="allow")


class InstantQuery(_PromQuery):
    query: str = Field(description="PromQL expression")
    time: str | None = Field(None, description="RFC 3339 or Unix seconds; default now")
    timeout: str | None = Field(None, description="duration; at most history.query.timeout")


class RangeQuery(_PromQuery):
    query: str
    start: str = Field(description="RFC 3339 or Unix seconds")
    end: str
    step: str = Field(description="duration or float seconds")
    timeout: str | None = None


class SeriesQuery(_PromQuery):
    match: list[str] = Field(alias="match[]", description="series selectors; at least one")
    start: str | None = None
    end: str | None = None


class LabelsQuery(_PromQuery):
    match: list[str] | None = Field(None, alias="match[]")
    start: str | None = None
    end: str | None = None


def prom_error(exc: PromQLError) -> ApiError:
    return ApiError(_STATUS_OF.get(exc.error_type, 422), str(exc), error_type=exc.error_type)


def bad_param(name: str, message: str) -> ApiError:
    return ApiError(400, f'invalid parameter "{name}": {message}', {"parameter": name}, error_type="bad_data")


async def params(request: web.Request) -> MultiDictProxy[str] | MultiDict[str]:
    """Parameters as Go's Request.FormValue sees them: a form-encoded body first, then the URL.

    Bodies of other types are ignored, as Prometheus does; the body is read within
    api.max_body_bytes even when it comes chunked."""
    if request.method != "POST" or request.content_type != "application/x-www-form-urlencoded":
        return request.query
    body = await read_body(request, services(request).config.config.api.max_body_bytes)
    try:
        pairs = urllib.parse.parse_qsl(body.decode("utf-8"), keep_blank_values=True, errors="strict")
    except (UnicodeDecodeError, ValueError) as exc:
        raise ApiError(400, f"error parsing form values: {exc}", error_type="bad_data") from None
    merged: MultiDict[str] = MultiDict(pairs)
    merged.extend(request.query.items())
    return merged


def parse_time(name: str, value: str | None, default_ms: int) -> int:
    """Prometheus's parseTime: Unix seconds (millisecond precision) or RFC 3339."""
    if value is None or value == "":
        return default_ms
    try:
        seconds = float(value)
    except ValueError:
        try:
            dt = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise bad_param(name, f'cannot parse "{value}" to a valid timestamp') from None
        if dt.tzinfo is None:
            raise bad_param(name, f'cannot parse "{value}" to a valid timestamp (RFC 3339 needs a zone)') from None
        seconds = (dt - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds()
    if not math.isfinite(seconds) or not MIN_TIME_MS <= seconds * 1000 <= MAX_TIME_MS:
        raise bad_param(name, f'cannot parse "{value}" to a valid timestamp (years 1 to 9999)')
    whole = math.floor(seconds)
    return whole * 1000 + round((seconds - whole) * 1000)


def parse_step(name: str, value: str | None) -> float:
    """A duration ("15s", "1m") or float seconds, in seconds."""
    if value is None or value == "":
        raise bad_param(name, "is required")
    try:
        seconds = float(value)
    except ValueError:
        try:
            return parse_duration(value) / 1000
        except ParseError:
            raise bad_param(name, f'cannot parse "{value}" to a valid duration') from None
    if not math.isfinite(seconds) or seconds > 2**53 / 1000:
        raise bad_param(name, f'cannot parse "{value}" to a valid duration. It overflows int64')
    return seconds


def parse_selectors(values: list[str], limit: int) -> list[list[Matcher]]:
    if len(values) > limit:
        raise bad_param("match[]", f"{len(values)} selectors given, at most {limit} are accepted "
                        "(history.query.max_series_matchers)")
    out = []
    for text in values:
        try:
            matchers = parse_matchers(text)
        except ParseError as exc:
            raise bad_param("match[]", str(exc)) from None
        if all(matcher_matches_empty(m) for m in matchers):
            raise bad_param("match[]", "match[] must contain at least one non-empty matcher")
        out.append(matchers)
    return out


def ts_json(t_ms: int) -> int | float:
    """Seconds as Prometheus writes them: an integer when whole, else up to milliseconds."""
    return t_ms // 1000 if t_ms % 1000 == 0 else t_ms / 1000


def metric_json(labels: Labels) -> dict[str, str]:
    return dict(labels)


def value_json(value: Value, kind: str) -> dict[str, Any]:
    """`kind` is the expression's type, which an empty result cannot tell (an empty matrix is a matrix)."""
    if isinstance(value, Scalar):
        return {"resultType": "scalar", "result": [ts_json(value.t), format_value(value.v)]}
    if isinstance(value, String):
        return {"resultType": "string", "result": [ts_json(value.t), value.v]}
    if kind == "matrix":
        return matrix_json(value)  # type: ignore[arg-type]
    return {"resultType": "vector", "result": [
        {"metric": metric_json(s.labels), "value": [ts_json(s.t), format_sample_value(s.v)]}
        for s in value  # type: ignore[union-attr]
    ]}


def render_value(expr: Expr, value: Value) -> bytes:
    """The whole answer's JSON, built in the query's worker thread rather than on the event loop."""
    return json.dumps({"status": "success", "data": value_json(value, value_type(expr))}).encode()


def render_matrix(expr: Expr, value: Matrix) -> bytes:
    return json.dumps({"status": "success", "data": matrix_json(value)}).encode()


def matrix_json(matrix: Matrix) -> dict[str, Any]:
    return {"resultType": "matrix", "result": [
        {"metric": metric_json(s.labels), "values": _points_json(s.points)} for s in matrix
    ]}


def _points_json(points: list[tuple[int, float]]) -> list[list[int | float | str]]:
    """`ts_json` and `format_sample_value` inlined for the common case: a range query's answer can
    hold tens of thousands of points, and this loop is most of its JSON time."""
    out: list[list[int | float | str]] = []
    append = out.append
    for t, v in points:
        text = repr(v)
        if "e" in text or "n" in text:
            text = format_sample_value(v)
        elif text[-2:] == ".0":
            text = text[:-2]
        append([t // 1000 if t % 1000 == 0 else t / 1000, text])
    return out


def query_param(p: MultiDictProxy[str] | MultiDict[str]) -> str:
    """The expression is parsed in the query's worker: a long one takes a while to parse."""
    query = p.get("query")
    if not query:
        raise bad_param("query", "is required")
    return query


def query_error(exc: PromQLError) -> ApiError:
    """Type errors found when the engine plans the query are about the query parameter, as in Prometheus."""
    if isinstance(exc, ParseError):
        return bad_param("query", str(exc))
    return prom_error(exc)


def _timeout_param(p: MultiDictProxy[str] | MultiDict[str]) -> float | None:
    raw = p.get("timeout")
    return None if raw in (None, "") else parse_step("timeout", raw)


async def _instant(request: web.Request) -> web.Response:
    svc = services(request)
    p = await params(request)
    query = query_param(p)
    t = parse_time("time", p.get("time"), int(time.time() * 1000))
    try:
        body = await svc.queries.instant(query, t, _timeout_param(p), render=render_value)
    except PromQLError as exc:
        raise query_error(exc) from None
    return web.Response(body=body, content_type="application/json")


async def _range(request: web.Request) -> web.Response:
    svc = services(request)
    p = await params(request)
    query = query_param(p)
    for name in ("start", "end"):
        if not p.get(name):
            raise bad_param(name, "is required")
    start = parse_time("start", p.get("start"), 0)
    end = parse_time("end", p.get("end"), 0)
    if end < start:
        raise bad_param("end", "end timestamp must not be before start time")
    step = parse_step("step", p.get("step"))
    if step <= 0:
        raise bad_param("step", "zero or negative query resolution step widths are not accepted. "
                        "Try a positive integer")
    step_ms = max(int(step * 1e9) // 1_000_000, 1)  # Go: float seconds -> ns -> ms, truncating
    most = svc.config.config.history.query.max_points_per_series
    if (end - start) // step_ms > most:
        raise bad_param("step", f"exceeded maximum resolution of {most:,} points per timeseries. "
                        "Try decreasing the query resolution (?step=XX)")
    try:
        body = await svc.queries.range(query, start, end, step_ms, _timeout_param(p), render=render_matrix)
    except PromQLError as exc:
        raise query_error(exc) from None
    return web.Response(body=body, content_type="application/json")


@ROUTES.route("GET", "/api/v1/query", summary="PromQL instant query (Prometheus API)", scope="read:metrics",
              category="query", query=InstantQuery, tag="query")
async def query_get(request: web.Request) -> web.Response:
    return await _instant(request)


@ROUTES.route("POST", "/api/v1/query", summary="PromQL instant query, form-encoded body (Prometheus API)",
              scope="read:metrics", category="query", query=InstantQuery, tag="query")
async def query_post(request: web.Request) -> web.Response:
    return await _instant(request)


@ROUTES.route("GET", "/api/v1/query_range", summary="PromQL range query (Prometheus API)", scope="read:metrics",
              category="query", query=RangeQuery, tag="query")
async def query_range_get(request: web.Request) -> web.Response:
    return await _range(request)


@ROUTES.route("POST", "/api/v1/query_range", summary="PromQL range query, form-encoded body (Prometheus API)",
              scope="read:metrics", category="query", query=RangeQuery, tag="query")
async def query_range_post(request: web.Request) -> web.Response:
    return await _range(request)


def _span(p: MultiDictProxy[str] | MultiDict[str]) -> tuple[int, int]:
    start = parse_time("start", p.get("start"), MIN_TIME_MS)
    end = parse_time("end", p.get("end"), MAX_TIME_MS)
    if end < start:
        raise bad_param("end", "end timestamp must not be before start time")
    return start, end


async def _series(request: web.Request) -> web.Response:
    svc = services(request)
    p = await params(request)
    selectors = p.getall("match[]", [])
    if not selectors:
        raise bad_param("match[]", "no match[] parameter provided")
    matchers = parse_selectors(selectors, svc.config.config.history.query.max_series_matchers)
    start, end = _span(p)
    found = await svc.queries.series(matchers, start, end)
    return ok([metric_json(labels) for labels in found])


@ROUTES.route("GET", "/api/v1/series", summary="Series matching selectors (Prometheus API)", scope="read:metrics",
              category="query", query=SeriesQuery, tag="query")
async def series_get(request: web.Request) -> web.Response:
    return await _series(request)


@ROUTES.route("POST", "/api/v1/series", summary="Series matching selectors, form-encoded (Prometheus API)",
              scope="read:metrics", category="query", query=SeriesQuery, tag="query")
async def series_post(request: web.Request) -> web.Response:
    return await _series(request)


async def _labels(request: web.Request) -> web.Response:
    svc = services(request)
    p = await params(request)
    matchers = parse_selectors(p.getall("match[]", []), svc.config.config.history.query.max_series_matchers)
    start, end = _span(p)
    return ok(await svc.queries.label_names(matchers, start, end))


@ROUTES.route("GET", "/api/v1/labels", summary="Label names (Prometheus API)", scope="read:metrics",
              category="query", query=LabelsQuery, tag="query")
async def labels_get(request: web.Request) -> web.Response:
    return await _labels(request)


@ROUTES.route("POST", "/api/v1/labels", summary="Label names, form-encoded (Prometheus API)", scope="read:metrics",
              category="query", query=LabelsQuery, tag="query")
async def labels_post(request: web.Request) -> web.Response:
    return await _labels(request)


@ROUTES.route("GET", "/api/v1/label/{name}/values", summary="Values of one label (Prometheus API)",
              scope="read:metrics", category="query", query=LabelsQuery, tag="query")
async def label_values(request: web.Request) -> web.Response:
    svc = services(request)
    name = request.match_info["name"]
    if not name or not (name[0].isalpha() or name[0] == "_") or not all(c.isalnum() or c == "_" for c in name) \
            or not name.isascii():
        raise ApiError(400, f'invalid label name: "{name}"', error_type="bad_data")
    p = await params(request)
    matchers = parse_selectors(p.getall("match[]", []), svc.config.config.history.query.max_series_matchers)
    start, end = _span(p)
    return ok(await svc.queries.label_values(name, matchers, start, end))


@ROUTES.route("GET", "/api/v1/status/buildinfo", summary="Build information (Prometheus API shape)",
              scope="read:metrics", category="query", tag="query")
async def buildinfo(request: web.Request) -> web.Response:
    """`version` is the Prometheus API level Vigil answers like, which is what Grafana reads to pick
    its features; Vigil's own version is in `revision` and `vigilVersion`."""
    return ok({
        "version": PROMETHEUS_COMPAT_VERSION,
        "revision": f"vigil-{__version__}",
        "branch": "vigil",
        "buildUser": "vigil",
        "buildDate": "",
        "goVersion": f"python{platform.python_version()}",
        "vigilVersion": __version__,
    })
