"""The metrics history through its doors: import, the Prometheus query API, views, summary, CLI.

Each test talks to a real daemon over HTTP and a real SQLite file; durability is checked with
`kill -9` and a restart.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml

from tests.conftest import REPO, Response, Vigil, wait_for

OM = {"Content-Type": "application/openmetrics-text; version=1.0.0; charset=utf-8"}
TEXT = {"Content-Type": "text/plain; version=0.0.4"}


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Vigil]:
    v = Vigil(tmp_path_factory.mktemp("history"), {
        "collectors": {"interval": "1s"},
        "history": {"flush_interval": "1s", "self_metrics_interval": "1s",
                    "query": {"max_series_matchers": 5}},
        "api": {"rate_limit": {"default": 100000, "categories": {"metrics": 100000}}},
        "checks": [{"name": "hourly", "type": "file", "path": "/nonexistent/vigil-test", "exists": False,
                    "interval": "1h"}],
    })
    v.start()
    yield v
    assert v.stop() == 0


def q(agent: Vigil, path: str, **params: Any) -> Response:
    return agent.get(f"{path}?{urllib.parse.urlencode(params, doseq=True)}")


def vector(agent: Vigil, query: str, t: float) -> dict[str, float]:
    r = q(agent, "/api/v1/query", query=query, time=t)
    assert r.status == 200, r
    data = r.json()["data"]
    assert data["resultType"] == "vector"
    return {json.dumps(s["metric"], sort_keys=True): float(s["value"][1]) for s in data["result"]}


def error_of(r: Response, status: int, error_type: str = "bad_data") -> str:
    assert r.status == status, r
    body = r.json()
    assert body["status"] == "error" and body["errorType"] == error_type, body
    return body["error"]


def test_import_text_format_then_query(agent: Vigil) -> None:
    base = int(time.time()) - 3 * 3600
    lines = ["# TYPE imp_requests_total counter"]
    lines += [f'imp_requests_total{{path="/a"}} {i * 10} {(base + i * 15) * 1000}' for i in range(100)]
    r = agent.post("/api/v1/import", raw="\n".join(lines).encode() + b"\n", headers=TEXT)
    assert r.status == 200, r
    assert r.json()["data"] == {"samples": 100, "series": 1}
    got = vector(agent, 'rate(imp_requests_total{path="/a"}[5m])', base + 60 * 15)
    assert list(got.values()) == [pytest.approx(10 / 15)]


def test_import_openmetrics_nan_inf_roundtrip(agent: Vigil) -> None:
    base = int(time.time()) - 2 * 3600
    body = (
        "# TYPE imp_gauge gauge\n"
        f'imp_gauge{{k="nan"}} NaN {base}\n'
        f'imp_gauge{{k="inf"}} +Inf {base}\n'
        f'imp_gauge{{k="ninf"}} -Inf {base}\n'
        f'imp_gauge{{k="x"}} 1.5 {base}.250\n'
        "# EOF\n"
    )
    r = agent.post("/api/v1/import", raw=body.encode(), headers=OM)
    assert r.status == 200, r
    r = q(agent, "/api/v1/query", query="imp_gauge", time=base + 1)
    values = {s["metric"]["k"]: s["value"] for s in r.json()["data"]["result"]}
    assert values["nan"][1] == "NaN" and values["inf"][1] == "+Inf" and values["ninf"][1] == "-Inf"
    assert values["x"] == [base + 1, "1.5"]
    r = q(agent, "/api/v1/query_range", query='imp_gauge{k="x"}', start=base, end=base + 1, step=0.25)
    assert r.json()["data"]["result"][0]["values"][:2] == [[base + 0.25, "1.5"], [base + 0.5, "1.5"]]


def test_bad_line_rejects_the_whole_request(agent: Vigil) -> None:
    base = int(time.time()) - 3600
    body = f"imp_atomic 1 {base * 1000}\nimp_atomic 2 {(base + 15) * 1000}\nimp_atomic{{a=}} 3\n".encode()
    message = error_of(agent.post("/api/v1/import", raw=body, headers=TEXT), 400)
    assert "line 3" in message
    assert vector(agent, "count_over_time(imp_atomic[1h])", base + 30) == {}
    bad_utf8 = b'imp_atomic{a="\xff"} 1\n'
    assert "line 1" in error_of(agent.post("/api/v1/import", raw=bad_utf8, headers=TEXT), 400)
    empty = agent.post("/api/v1/import", raw=b"", headers=TEXT)
    error_of(empty, 400)
    future = int(time.time() + 86400) * 1000
    body = f"imp_atomic 1 {base * 1000}\nimp_future 1 {future}\n".encode()
    assert "imp_future" in error_of(agent.post("/api/v1/import", raw=body, headers=TEXT), 400)
    assert vector(agent, "count_over_time(imp_atomic[1h])", base + 30) == {}


def test_collected_and_self_metrics_are_recorded(agent: Vigil) -> None:
    def present() -> bool:
        now = time.time()
        return bool(vector(agent, "node_load1", now)) and bool(vector(agent, "vigil_build_info", now))

    wait_for(present, 20, "node_load1 and vigil_build_info in the history")
    got = vector(agent, "count_over_time(node_load1[1m])", time.time())
    assert next(iter(got.values())) >= 1


def test_a_check_is_in_the_history_between_its_runs(agent: Vigil) -> None:
    """An hourly check's gauges are recorded with Vigil's own metrics (every second here), not only when it
    runs: rules on `vigil_check_up` would otherwise see it go stale five minutes after each run."""
    assert agent.post("/api/v1/checks/hourly/run").status == 200

    def samples() -> float:
        got = vector(agent, 'count_over_time(vigil_check_up{check="hourly"}[1m])', time.time())
        return next(iter(got.values()), 0.0)

    wait_for(lambda: samples() >= 4, 20, "samples of vigil_check_up besides its runs (at most two)")
    assert vector(agent, 'vigil_check_up{check="hourly"}', time.time())


@pytest.mark.parametrize(("params", "needle"), [
    ({}, '"query"'),
    ({"query": "sum(rate(x[5m])"}, "1:"),
    ({"query": "foo(bar)"}, "foo"),
    ({"query": "up", "time": "yesterday"}, '"time"'),
    ({"query": "up", "time": "1e20"}, '"time"'),
    ({"query": "up", "timeout": "soon"}, '"timeout"'),
])
def test_instant_query_bad_input(agent: Vigil, params: dict[str, str], needle: str) -> None:
    assert needle in error_of(q(agent, "/api/v1/query", **params), 400)


@pytest.mark.parametrize(("params", "needle"), [
    ({"query": "up", "end": "10", "step": "1"}, '"start"'),
    ({"query": "up", "start": "10", "end": "5", "step": "1"}, "before start"),
    ({"query": "up", "start": "0", "end": "10", "step": "0"}, "positive"),
    ({"query": "up", "start": "0", "end": "100000", "step": "1"}, "11,000"),
    ({"query": 'up[5m]', "start": "0", "end": "10", "step": "1"}, "range vector"),
    ({"query": '"text"', "start": "0", "end": "10", "step": "1"}, "string"),
])
def test_range_query_bad_input(agent: Vigil, params: dict[str, str], needle: str) -> None:
    assert needle in error_of(q(agent, "/api/v1/query_range", **params), 400)


def test_times_before_1970_and_in_the_future_answer_empty(agent: Vigil) -> None:
    assert vector(agent, "node_load1", -86400) == {}
    assert vector(agent, "node_load1", time.time() + 10 * 365 * 86400) == {}


def test_series_labels_and_values(agent: Vigil) -> None:
    base = int(time.time()) - 3600
    body = "".join(f'imp_lbl{{dev="d{i}",role="r"}} {i} {base * 1000}\n' for i in range(3)).encode()
    assert agent.post("/api/v1/import", raw=body, headers=TEXT).status == 200
    r = q(agent, "/api/v1/series", **{"match[]": 'imp_lbl{dev=~"d[01]"}'}, start=base - 60, end=base + 60)
    assert r.status == 200, r
    assert sorted(s["dev"] for s in r.json()["data"]) == ["d0", "d1"]
    r = q(agent, "/api/v1/label/dev/values", **{"match[]": "imp_lbl"})
    assert r.json()["data"] == ["d0", "d1", "d2"]
    names = q(agent, "/api/v1/labels", **{"match[]": "imp_lbl"}).json()["data"]
    assert names == ["__name__", "dev", "role"]
    assert "match[]" in error_of(q(agent, "/api/v1/series"), 400)
    assert "at most 5" in error_of(q(agent, "/api/v1/series", **{"match[]": [f"m{i}" for i in range(6)]}), 400)
    error_of(q(agent, "/api/v1/series", **{"match[]": "sum(x)"}), 400)
    error_of(agent.get("/api/v1/label/bad-name/values"), 400)


def test_form_encoded_post_as_grafana_sends(agent: Vigil) -> None:
    now = time.time()
    form = urllib.parse.urlencode({"query": "vigil_build_info", "start": now - 60, "end": now, "step": 15})
    r = agent.request("POST", "/api/v1/query_range", raw=form.encode(),
                      headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status == 200, r
    assert r.json()["data"]["resultType"] == "matrix"


def test_import_needs_write_scope(agent: Vigil) -> None:
    r = agent.post("/api/v1/api-keys", {"name": "viewer", "role": "viewer"})
    viewer = r.json()["data"]["key"]
    r = agent.request("POST", "/api/v1/import", key=viewer, raw=b"x 1\n", headers=TEXT)
    assert r.status == 403, r
    assert q(agent, "/api/v1/query", query="1").status == 200


def test_metric_views_and_summary(agent: Vigil) -> None:
    wait_for(lambda: vector(agent, "node_load1", time.time()), 20, "node_load1 recorded")
    r = q(agent, "/api/v1/metrics", period="1h", resolution="1m", metrics="load1,memory_usage_percent")
    assert r.status == 200, r
    data = r.json()["data"]
    assert set(data["metrics"]) == {"load1", "memory_usage_percent"}
    assert data["resolution"] == "1m"
    assert data["time_range"]["start"].endswith("Z")
    assert "unknown view" in error_of(q(agent, "/api/v1/metrics", metrics="nope"), 400)
    assert "coarser" in error_of(q(agent, "/api/v1/metrics", period="30d", resolution="1m"), 400)
    error_of(q(agent, "/api/v1/metrics", period="2h"), 400)
    r = q(agent, "/api/v1/metrics/summary", period="1h")
    assert r.status == 200, r
    summary = r.json()["data"]
    assert set(summary) >= {"time_range", "cpu", "memory", "disk", "requests", "errors"}
    assert summary["requests"]["total"] >= 0
    assert all("mountpoint" in d and "usage_percent" in d for d in summary["disk"])


def test_cli_query_prints_a_table(agent: Vigil) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "agent", *args, "--url", agent.url, "--state-dir", str(agent.state_dir)],
            cwd=REPO, capture_output=True, text=True, timeout=30,
        )

    out = run("query", "vigil_build_info")
    assert out.returncode == 0, out.stderr
    assert "vigil_build_info{" in out.stdout and "SERIES" in out.stdout
    out = run("query-range", "vigil_build_info", "--start", "now-2m", "--step", "30s")
    assert out.returncode == 0, out.stderr
    assert "vigil_build_info{" in out.stdout
    out = run("query", "rate(")
    assert out.returncode == 1 and "HTTP 400" in out.stderr


def test_imported_samples_survive_kill9(make_vigil: Callable[..., Vigil]) -> None:
    v = make_vigil({"history": {"flush_interval": "60s"}})
    v.start()
    base = int(time.time()) - 600
    body = "".join(f"durable_x {i} {(base + i) * 1000}\n" for i in range(50)).encode()
    assert v.post("/api/v1/import", raw=body, headers=TEXT).status == 200
    v.kill9()
    v.start()
    got = vector(v, "count_over_time(durable_x[10m])", base + 49)
    assert list(got.values()) == [50.0]
    got = vector(v, "durable_x", base + 49)
    assert not math.isnan(next(iter(got.values())))
    assert v.stop() == 0


def test_collected_samples_survive_kill9_once_flushed(make_vigil: Callable[..., Vigil]) -> None:
    """A crash loses at most one flush interval: a sample seen before a flush is there after kill -9."""
    v = make_vigil({"collectors": {"interval": "1s"}, "history": {"flush_interval": "1s"}})
    v.start()

    def sample_time() -> float | None:
        got = vector(v, "timestamp(node_load1)", time.time())
        return next(iter(got.values()), None)

    seen = wait_for(sample_time, 20, "a node_load1 sample")
    flushes = v.metric("vigil_tsdb_flushes_total") or 0.0
    # Two more: a flush already under way when the sample arrived may not have included it.
    wait_for(lambda: (v.metric("vigil_tsdb_flushes_total") or 0.0) >= flushes + 2, 20, "a flush after the sample")
    v.kill9()
    v.start()
    assert vector(v, "timestamp(node_load1)", seen) == {"{}": seen}
    assert v.stop() == 0


def test_pathological_regex_answers_in_linear_time(agent: Vigil) -> None:
    """`(.*)*x` backtracks exponentially in Python's re; PromQL regexes run on RE2 like Prometheus.
    With backtracking this request would take hours on a 60-character value (the http timeout fails it)."""
    base = int(time.time()) - 600
    body = f'imp_regex{{k="{"a" * 60}"}} 1 {base * 1000}\n'.encode()
    assert agent.post("/api/v1/import", raw=body, headers=TEXT).status == 200
    r = agent.get("/api/v1/query?" + urllib.parse.urlencode({"query": 'imp_regex{k=~"(.*)*x"}', "time": base}),
                  timeout=10)
    assert r.status == 200 and r.json()["data"]["result"] == []
    r = agent.get("/api/v1/query?" + urllib.parse.urlencode(
        {"query": 'label_replace(imp_regex, "y", "$1", "k", "(.*)*x")', "time": base}), timeout=10)
    assert r.status == 200 and "y" not in r.json()["data"]["result"][0]["metric"]


def test_empty_range_vector_is_still_a_matrix(agent: Vigil) -> None:
    r = q(agent, "/api/v1/query", query="no_such_metric[5m]", time=time.time())
    assert r.json()["data"] == {"resultType": "matrix", "result": []}


def test_form_posts_as_prometheus_reads_them(agent: Vigil) -> None:
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    r = agent.request("POST", "/api/v1/query?query=1", raw=b"query=2", headers=form)
    assert r.json()["data"]["result"][1] == "2", "the body's value comes before the URL's"
    r = agent.request("POST", "/api/v1/query?query=3", raw=b'{"query": "4"}', headers={"Content-Type": "text/json"})
    assert r.json()["data"]["result"][1] == "3", "a body that is not a form is ignored"
    assert "form" in error_of(agent.request("POST", "/api/v1/query", raw=b"query=%ff", headers=form), 400)


def test_deeply_nested_query_is_a_clear_error(agent: Vigil) -> None:
    deep = "+".join(["1"] * 3000)
    r = agent.request("POST", "/api/v1/query", raw=urllib.parse.urlencode({"query": deep}).encode(),
                      headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert "nested too deeply" in error_of(r, 400)


def test_disabled_collector_series_end_at_once(make_vigil: Callable[..., Vigil]) -> None:
    """Like a failed scrape in Prometheus: a collector switched off leaves staleness markers, so its
    series stop answering now rather than after the 5-minute lookback."""
    v = make_vigil({"collectors": {"interval": "1s"}})
    v.start()
    wait_for(lambda: vector(v, "node_load1", time.time()), 20, "node_load1 recorded")
    v.write_config(yaml.safe_dump({
        "listen": f"127.0.0.1:{v.port}", "state_dir": str(v.state_dir), "environment": "test",
        "collectors": {"interval": "1s", "loadavg": {"enabled": False}},
    }))
    wait_for(lambda: not vector(v, "node_load1", time.time()), 20, "node_load1 to end")
    assert vector(v, "node_memory_MemTotal_bytes", time.time())
    assert v.stop() == 0
