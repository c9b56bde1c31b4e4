"""The requests Grafana's Prometheus data source makes, answered in the shapes Grafana parses.

Grafana talks to Vigil as it would to Prometheus: "Save & test" runs `1+1` at now and reads the
build info; the query editor lists label names, metric names and label values (narrowed by a
selector and the dashboard's time range); panels POST form-encoded range queries.
"""

from __future__ import annotations

import math
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Response, Vigil

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"
COLLECTORS = ("cpu", "loadavg", "meminfo", "filesystem", "diskstats", "netdev", "stat", "time", "uname", "filefd",
              "hwmon")
TARGETS = (("node", "host-a:9100"), ("node", "host-b:9100"), ("api", "host-a:8080"))
SPAN = 20 * 60


def _exposition(now: float) -> str:
    """Twenty minutes of samples up to a minute ago, in the Prometheus text format (millisecond stamps)."""
    stamps = [int((now - 60 - SPAN) * 1000) + i * 15_000 for i in range(SPAN // 15 + 1)]
    lines = ["# TYPE up gauge"]
    lines += [f'up{{job="{job}",instance="{inst}"}} 1 {t}' for job, inst in TARGETS for t in stamps]
    lines.append("# TYPE app_requests_total counter")
    for code, per_step in (("200", 7), ("500", 1)):
        series = f'app_requests_total{{job="api",instance="host-a:8080",code="{code}"}}'
        lines += [f"{series} {i * per_step} {t}" for i, t in enumerate(stamps)]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def grafana_vigil(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Vigil, float]]:
    root: Path = tmp_path_factory.mktemp("grafana")
    v = Vigil(root, {"collectors": {"interval": "15s", **{n: {"enabled": False} for n in COLLECTORS}}})
    try:
        v.start()
        now = time.time()
        resp = v.post("/api/v1/import", raw=_exposition(now).encode(), headers={"Content-Type": TEXT_FORMAT})
        assert resp.status == 200, resp
        yield v, now
    finally:
        if v.proc is not None and v.proc.poll() is None:
            v.proc.kill()
            v.proc.wait()


def _success(resp: Response) -> Any:
    assert resp.status == 200, resp
    assert resp.headers.get("Content-Type", "").startswith("application/json"), resp.headers
    body = resp.json()
    assert body["status"] == "success", body
    return body["data"]


def _q(params: dict[str, Any]) -> str:
    return urllib.parse.urlencode(params, doseq=True)


def test_connection_test_query(grafana_vigil: tuple[Vigil, float]) -> None:
    v, _ = grafana_vigil
    at = round(time.time(), 3)
    data = _success(v.get(f"/api/v1/query?query=1%2B1&time={at}"))
    assert data["resultType"] == "scalar"
    t, value = data["result"]
    assert isinstance(t, int | float) and math.isclose(t, at, abs_tol=1e-6)
    assert value == "2"


def test_connection_test_query_posted(grafana_vigil: tuple[Vigil, float]) -> None:
    v, _ = grafana_vigil
    data = _success(v.post("/api/v1/query", raw=_q({"query": "1+1", "time": str(int(time.time()))}).encode(),
                           headers=FORM))
    assert data["resultType"] == "scalar" and data["result"][1] == "2"


def test_buildinfo(grafana_vigil: tuple[Vigil, float]) -> None:
    v, _ = grafana_vigil
    data = _success(v.get("/api/v1/status/buildinfo"))
    for key in ("version", "revision", "branch", "buildUser", "buildDate", "goVersion"):
        assert isinstance(data.get(key), str), (key, data)
    major, minor, *_ = data["version"].split(".")
    assert (int(major), int(minor)) >= (2, 0), data["version"]


def test_label_names(grafana_vigil: tuple[Vigil, float]) -> None:
    v, now = grafana_vigil
    names = _success(v.get("/api/v1/labels"))
    assert names == sorted(names) and {"__name__", "job", "instance", "code"} <= set(names)
    ranged = _success(v.get("/api/v1/labels?" + _q({"start": int(now - 3600), "end": int(now)})))
    assert {"__name__", "job", "instance", "code"} <= set(ranged)
    before = _success(v.get("/api/v1/labels?" + _q({"start": "1000000000", "end": "1000003600"})))
    assert before == []
    narrowed = _success(v.get("/api/v1/labels?" + _q({"match[]": "up", "start": int(now - 3600), "end": int(now)})))
    assert narrowed == ["__name__", "instance", "job"]


def test_metric_names(grafana_vigil: tuple[Vigil, float]) -> None:
    v, now = grafana_vigil
    names = _success(v.get("/api/v1/label/__name__/values?" + _q({"start": int(now - 3600), "end": int(now)})))
    assert names == sorted(names) and {"up", "app_requests_total"} <= set(names)


def test_label_values_for_a_selector(grafana_vigil: tuple[Vigil, float]) -> None:
    v, now = grafana_vigil
    span = {"start": int(now - 3600), "end": int(now)}
    assert _success(v.get("/api/v1/label/job/values?" + _q({"match[]": "up", **span}))) == ["api", "node"]
    values = _success(v.get("/api/v1/label/instance/values?" + _q({"match[]": 'up{job="node"}', **span})))
    assert values == ["host-a:9100", "host-b:9100"]
    assert _success(v.get("/api/v1/label/job/values?" + _q({"match[]": "nope", **span}))) == []


def test_series(grafana_vigil: tuple[Vigil, float]) -> None:
    v, now = grafana_vigil
    params = {"match[]": ['up{job="node"}', "app_requests_total"], "start": int(now - 3600), "end": int(now)}
    found = _success(v.get("/api/v1/series?" + _q(params)))
    assert isinstance(found, list)
    assert sorted(tuple(sorted(s.items())) for s in found) == sorted([
        (("__name__", "app_requests_total"), ("code", "200"), ("instance", "host-a:8080"), ("job", "api")),
        (("__name__", "app_requests_total"), ("code", "500"), ("instance", "host-a:8080"), ("job", "api")),
        (("__name__", "up"), ("instance", "host-a:9100"), ("job", "node")),
        (("__name__", "up"), ("instance", "host-b:9100"), ("job", "node")),
    ])
    resp = v.get("/api/v1/series?" + _q({"start": int(now - 3600), "end": int(now)}))
    assert resp.status == 400 and resp.json()["errorType"] == "bad_data", resp


def test_range_query_posted_as_a_form(grafana_vigil: tuple[Vigil, float]) -> None:
    """Grafana's default: POST with the parameters in a form body, step in seconds, times in seconds."""
    v, now = grafana_vigil
    start, end = int(now - 600) // 30 * 30, int(now - 120) // 30 * 30
    body = {"query": 'sum by (code) (rate(app_requests_total{job="api"}[1m]))', "start": start, "end": end,
            "step": 30}
    data = _success(v.post("/api/v1/query_range", raw=_q(body).encode(), headers=FORM))
    assert data["resultType"] == "matrix"
    by_code = {s["metric"]["code"]: s["values"] for s in data["result"]}
    assert set(by_code) == {"200", "500"}
    for points in by_code.values():
        assert [p[0] for p in points] == list(range(start, end + 1, 30))
        assert all(isinstance(p[1], str) for p in points)
    assert math.isclose(float(by_code["200"][-1][1]), 7 / 15, rel_tol=1e-9)
    assert math.isclose(float(by_code["500"][-1][1]), 1 / 15, rel_tol=1e-9)


def test_bad_query_error_shape(grafana_vigil: tuple[Vigil, float]) -> None:
    """Grafana shows `error` and branches on `errorType`."""
    v, _ = grafana_vigil
    resp = v.post("/api/v1/query", raw=_q({"query": "sum(", "time": str(int(time.time()))}).encode(), headers=FORM)
    assert resp.status == 400, resp
    body = resp.json()
    assert body["status"] == "error" and body["errorType"] == "bad_data" and isinstance(body["error"], str)


def test_metadata_if_served(grafana_vigil: tuple[Vigil, float]) -> None:
    """Grafana asks for metric metadata for its hints; it copes with a 404, and an answer must be well formed."""
    v, _ = grafana_vigil
    resp = v.get("/api/v1/metadata")
    if resp.status == 404:
        return
    data = _success(resp)
    assert isinstance(data, dict)
    for name, entries in data.items():
        assert isinstance(name, str) and isinstance(entries, list)
        assert all({"type", "help", "unit"} <= set(e) for e in entries), entries
