"""The queries asked of both Prometheus and Vigil, aimed at the moments the data set makes interesting.

Each `Case` is one HTTP request. `expect` says what Prometheus must answer for the case to be
meaningful: "data" (a non-empty result), "empty" (success with no series: absent things,
filters that drop everything), "any" (success, empty or not), or "error" (a failure whose HTTP
status and errorType Vigil must reproduce).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from tests.promql_compat.dataset import Dataset

Expect = Literal["data", "empty", "any", "error"]


@dataclass(frozen=True)
class Case:
    id: str
    path: str  # /api/v1/query or /api/v1/query_range
    params: dict[str, str]
    expect: Expect = "data"
    ordered: bool = False  # top-level sort/sort_desc: the order of values matters
    method: Literal["GET", "POST"] = "GET"

    @property
    def query(self) -> str:
        return self.params.get("query", "")


def _t(seconds: float) -> str:
    return f"{seconds:.3f}".rstrip("0").rstrip(".")


def _rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class _Cases:
    def __init__(self, ds: Dataset):
        self.ds = ds
        self.cases: list[Case] = []
        s, e = ds.start, ds.end
        # Named evaluation times (epoch seconds).
        self.times: dict[str, float] = {
            "mid": s + 5432.1,
            "start": s,
            "early": s + 120,
            "end": e,
            "after4": e + 240,
            "after6": e + 360,
            "w2_after2": ds.at("w2_stop") + 120,
            "w2_after6": ds.at("w2_stop") + 360,
            "email_gap": ds.at("email_gap_start") + 600,
            "http_reset": ds.at("http_reset") + 45,
            "hist_reset": ds.at("hist_reset") + 100,
            "down": ds.at("host_c_down_start") + 300,
            "q1": s + 2700,
            "aligned": s + 3600,  # exactly on a sample of every regular series
            "w2_plus5m": ds.at("w2_stop") + 300,  # exactly the lookback delta after w2's last sample
            "w2_plus5m_less": ds.at("w2_stop") + 299.999,
            "w2_plus5m_more": ds.at("w2_stop") + 300.001,
            "w3_early": ds.at("w3_start") + 45,
            "nan_inf": s + 15 * 285 + 1,  # sensor_reading{kind="nan"} is NaN, {kind="inf"} is -Inf
            "pinf": s + 15 * 260 + 1,  # sensor_reading{kind="inf"} is +Inf
        }

    def instant(self, query: str, at: Iterable[str] = ("mid",), expect: Expect = "data", ordered: bool = False,
                method: Literal["GET", "POST"] = "GET", **extra: str) -> None:
        for name in at:
            params = {"query": query, "time": _t(self.times[name]), **extra}
            self.cases.append(Case(f"instant@{name}: {query}", "/api/v1/query", params, expect, ordered, method))

    def instant_raw(self, query: str, params: dict[str, str], expect: Expect = "data") -> None:
        self.cases.append(Case(f"instant {params}: {query}", "/api/v1/query", {"query": query, **params}, expect))

    def range(self, query: str, window: str = "full", step: str = "60", expect: Expect = "data",
              method: Literal["GET", "POST"] = "GET") -> None:
        start, end = self.window(window)
        params = {"query": query, "start": _t(start), "end": _t(end), "step": step}
        self.cases.append(Case(f"range[{window},{step}]: {query}", "/api/v1/query_range", params, expect,
                               method=method))

    def window(self, name: str) -> tuple[float, float]:
        ds = self.ds
        return {
            "full": (ds.start, ds.end),
            "short": (self.times["mid"] - 60, self.times["mid"]),
            "mid30m": (self.times["mid"] - 1800, self.times["mid"]),
            "odd1h": (ds.start + 1000.5, ds.start + 4600.5),
            "tail": (ds.end - 1200, ds.end + 900),
            "head": (ds.start - 600, ds.start + 1200),
            "email_gap": (ds.at("email_gap_start") - 600, ds.at("email_gap_end") + 600),
            "w2_stop": (ds.at("w2_stop") - 600, ds.at("w2_stop") + 900),
            "resets": (ds.at("http_reset2_a") - 900, ds.at("http_reset") + 900),
            "hist_reset": (ds.at("hist_reset") - 600, ds.at("hist_reset") + 900),
            "down": (ds.at("host_c_down_start") - 600, ds.at("host_c_down_end") + 600),
        }[name]

    def error(self, query: str, path: str = "/api/v1/query", **params: str) -> None:
        full = {"query": query, **params} if query else dict(params)
        if path == "/api/v1/query" and "time" not in full:
            full["time"] = _t(self.times["mid"])
        self.cases.append(Case(f"error {path} {params}: {query}", path, full, "error"))


def build(ds: Dataset) -> list[Case]:
    """Every case, in a fixed order."""
    c = _Cases(ds)
    _selectors(c)
    _literals(c)
    _operators(c)
    _aggregations(c)
    _rate_functions(c)
    _over_time(c)
    _other_functions(c)
    _histograms(c)
    _time_functions(c)
    _subqueries(c)
    _ranges(c)
    _boundaries(c)
    _corners(c)
    _errors(c)
    return c.cases


def _selectors(c: _Cases) -> None:
    c.instant("up", ("mid", "start", "end", "after4"))
    c.instant("up", ("after6",), expect="empty")
    c.instant('up{job="api"}')
    c.instant('up{job!="api"}')
    c.instant('up{instance=~"host-(a|b):.*"}')
    c.instant('up{instance!~"host-a.*",job=~"api|web"}')
    c.instant('up{job=~"(?i)API"}')
    c.instant('up{job=~"[[:alpha:]]+"}')
    c.instant('up{job=~`\\pL+`}')
    c.instant('up{instance=~`host-\\w:\\d+`}')
    c.instant('up{instance=~"host-\\\\w:\\\\d+"}')
    c.instant("up{job='api'}")
    c.instant("up{job=`api`}")
    c.instant('{__name__="up", job="node"}')
    c.instant('machine_info{note=~"say.*"}')
    c.instant("count_over_time(up[1h30m])")
    c.instant("up offset 1h30m")
    c.instant('up{job=~"API"}', expect="empty")
    c.instant('up{job=""}', expect="empty")
    c.instant('up{nonexistent=""}')
    c.instant('{__name__=~"node_memory_.*"}')
    c.instant('{__name__=~"up|machine_info", instance="host-c:9100"}')
    c.instant('http_requests_total{code=~"5.."}', ("mid", "http_reset"))
    c.instant('node_filesystem_avail_bytes{mountpoint=~"/|/home"}')
    c.instant('node_filesystem_avail_bytes{mountpoint!~"/boot.*", device=~"/dev/.+"}')
    c.instant('machine_info{version=~"1.*"}')
    c.instant('machine_info{note="say \\"hi\\" \\\\ bye"}')
    c.instant('temperature_celsius{location=~"rack .*"}', ("mid", "early", "after4"))
    c.instant("queue_depth", ("email_gap", "mid"))
    c.instant("batch_jobs_processed_total", ("w2_after2", "w2_after6", "q1"))
    c.instant("legacy_widgets")
    c.instant("http_requests_total[2m]", ("mid", "http_reset"))
    c.instant("temperature_celsius[3m]", ("mid", "early"))
    c.instant('batch_jobs_processed_total{worker="w4"}[10m]', ("mid",))
    c.instant("sensor_reading[1m]", ("nan_inf", "pinf", "mid"))
    c.instant("up offset 10m", ("mid", "after6"))
    c.instant("up offset -5m", ("mid",))
    c.instant("up offset -10m", ("after4",), expect="empty")
    c.instant(f'up @ {_t(c.times["down"])}', ("end",))
    c.instant(f'rate(http_requests_total[5m] @ {_t(c.times["http_reset"])})', ("after6",))
    c.instant(f"http_requests_total offset 1h @ {_t(c.times['end'])}", ("mid",))
    c.instant("up @ start()", ("mid",))
    c.instant("up @ end() offset 5m", ("mid",))


def _literals(c: _Cases) -> None:
    for q in ("1", "-1.5", '"foo"', "'bar'", "-Inf", "+Inf", "NaN", "0x1F", "1e3", "2^10", "1 + 2 * 3",
              "-2 ^ 2", "2 ^ 3 ^ 2", "5 % 3", "-5 % 3", "5.5 % -2", "1/0", "-1/0", "0/0", "1 > bool 2",
              "1 == bool 1", "(1 + 2) / 4", "+5", "- - 3", "1 >= bool NaN", "1e25", "1e-7", "-0", "inf", "nAn",
              "2 * 3 % 2", "-1 ^ 0.5", "(-1) ^ 0.5", '"a\\tb\\u00e9"', "`raw\\n`", "vector(1e25)", "vector(-1e-7)",
              "vector(1e21)", "vector(0.00000099)", "vector(0.000001)", "vector(-0)", "sum(vector(1)) # a comment",
              "\n  1 +\n  2\n"):
        c.instant(q)
    c.instant("1", ("start",))


def _operators(c: _Cases) -> None:
    c.instant("node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes")
    c.instant("node_filesystem_avail_bytes / node_filesystem_size_bytes * 100")
    c.instant("http_requests_total % 7")
    c.instant("-http_requests_total")
    c.instant("http_requests_total ^ 0.5")
    c.instant("2 - up", ("down",))
    c.instant("up * 2 + 1")
    c.instant("sensor_reading * 2", ("nan_inf", "pinf", "mid"))
    c.instant("sensor_reading - sensor_reading", ("nan_inf", "pinf", "mid"))
    c.instant("tiny_ratio * 1e12")
    c.instant("huge_value / 1e20")
    c.instant("huge_value % 1000")
    c.instant("temperature_celsius / 0")
    c.instant("rate(http_requests_total[5m]) / on(job, instance) group_left sum by (job, instance) "
              "(rate(http_requests_total[5m]))")
    c.instant("up * on(instance) group_left(os, version) machine_info")
    c.instant("machine_info * on(instance) group_right(os) up")
    c.instant('rate(node_cpu_seconds_total{mode="user"}[5m]) / ignoring(mode) '
              'rate(node_cpu_seconds_total{mode="idle"}[5m])')
    c.instant("node_filesystem_avail_bytes / ignoring(fstype) node_filesystem_size_bytes")
    c.instant("node_filesystem_avail_bytes / on(instance, device, mountpoint) node_filesystem_size_bytes")
    c.instant("sum by (instance) (node_filesystem_size_bytes) - on(instance) group_right "
              "node_filesystem_avail_bytes")
    c.instant("up == 0", ("down",))
    c.instant("up == bool 0", ("down",))
    c.instant("up != 1", ("down",))
    c.instant("http_requests_total > 10000")
    c.instant("rate(http_requests_total[5m]) >= 1")
    c.instant("temperature_celsius < 0")
    c.instant("temperature_celsius <= bool 0")
    c.instant("queue_depth > queue_depth offset 5m")
    c.instant("queue_depth > bool on(queue) queue_depth offset 5m")
    c.instant("up > 0.5 < 1.5")
    c.instant("1 < bool up", ("down",))
    c.instant("sensor_reading > 5", ("nan_inf", "pinf", "mid"))
    c.instant("sensor_reading > bool 5", ("nan_inf", "pinf", "mid"))
    c.instant("node_filesystem_avail_bytes > bool node_filesystem_size_bytes * 0.5")
    c.instant("node_filesystem_avail_bytes == node_filesystem_avail_bytes")
    c.instant("up and on(instance) machine_info")
    c.instant("up and machine_info", expect="empty")
    c.instant('sum(up{job="nope"}) or vector(0)')
    c.instant('http_requests_total{code="500"} unless on(job, instance) up == 0', ("down",))
    c.instant('up{job="api"} or up{job="web"}')
    c.instant("rate(http_requests_total[5m]) > 5 and rate(http_requests_total[5m]) < 20")
    c.instant('queue_depth unless queue_depth{queue="sms"}')
    c.instant('up or on(job) up{job="zzz"}')
    c.instant('up{job="api"} or ignoring(job) up{job="web"}')
    c.instant("machine_info or up")


def _aggregations(c: _Cases) -> None:
    c.instant("sum(up)", ("mid", "down"))
    c.instant("sum by (job) (up)", ("down",))
    c.instant("sum without (instance) (up)")
    c.instant("sum(rate(http_requests_total[5m])) by (job, code)")
    c.instant("avg without (sensor, location) (temperature_celsius)")
    c.instant("avg(huge_value)")
    c.instant("min by (job) (http_requests_total)")
    c.instant("max without (method, code) (http_requests_total)")
    c.instant("max(sensor_reading)", ("nan_inf", "pinf", "mid"))
    c.instant("min(sensor_reading)", ("nan_inf", "pinf", "mid"))
    c.instant("sum(sensor_reading)", ("nan_inf", "pinf", "mid"))
    c.instant("count(up == 1)", ("down",))
    c.instant("count by (os) (machine_info)")
    c.instant("count without (cpu, mode) (node_cpu_seconds_total)")
    c.instant("stddev(temperature_celsius)")
    c.instant("stdvar by (job) (rate(http_requests_total[5m]))")
    c.instant("stddev(huge_value)")
    c.instant("stddev by (kind) (sensor_reading)", ("nan_inf", "pinf"))
    c.instant("topk(3, rate(http_requests_total[5m]))")
    c.instant("bottomk(2, queue_depth)")
    c.instant("topk by (job) (1, http_requests_total)")
    c.instant("topk(2, sensor_reading)", ("nan_inf", "pinf", "mid"))
    c.instant("bottomk(1, temperature_celsius)")
    c.instant("bottomk without (method, code) (1, rate(http_requests_total[5m]))")
    c.instant("topk(scalar(count(up)) - 5, up)")
    c.instant("topk(0, up)", expect="empty")
    c.instant("topk(1.5, queue_depth)")
    c.instant("bottomk(100, queue_depth)")
    c.instant('count_values("v", huge_value)')
    c.instant('count_values("v", tiny_ratio)')
    c.instant('count_values("v", temperature_celsius * 1e-7)')
    c.instant("sum by (__name__) ({job=\"node\"})")
    c.instant("quantile(0.5, up)")
    c.instant("quantile(0.9, rate(http_requests_total[5m]))")
    c.instant("quantile by (job) (0.5, http_requests_total)")
    c.instant("quantile(0, up)")
    c.instant("quantile(1.5, up)")
    c.instant("quantile(-1, up)")
    c.instant("quantile(NaN, up)")
    c.instant('count_values("value", up)', ("down",))
    c.instant('count_values by (job) ("v", up)', ("down",))
    c.instant('count_values("queue_depth", queue_depth)')
    c.instant('count_values("x", sensor_reading)', ("nan_inf", "pinf"))
    c.instant("group(up)")
    c.instant("group by (job) (http_requests_total)")
    c.instant("group without (instance) (up)")
    c.instant("sum by (le) (rate(request_duration_seconds_bucket[5m]))")
    c.instant("sum(nonexistent_metric)", expect="empty")
    c.instant("sum without () (up)")
    c.instant('count by (__name__) ({job="node"})')
    c.instant("avg by (instance) (1 - rate(node_cpu_seconds_total{mode=\"idle\"}[5m]))")
    c.instant("max by (instance, cpu) (rate(node_cpu_seconds_total[1m]))")


def _rate_functions(c: _Cases) -> None:
    c.instant("rate(http_requests_total[5m])", ("mid", "http_reset", "early", "after4"))
    c.instant("rate(http_requests_total[5m])", ("after6",), expect="empty")
    c.instant("increase(http_requests_total[1h])", ("mid", "end"))
    c.instant('increase(http_requests_total{job="web"}[10m])', ("http_reset",))
    c.instant("rate(batch_jobs_processed_total[5m])", ("w2_after2", "q1"))
    c.instant('rate(batch_jobs_processed_total{worker="w4"}[5m])', ("mid",), expect="any")
    c.instant('rate(batch_jobs_processed_total{worker="w4"}[3m])', ("mid", "q1"), expect="any")
    c.instant("irate(batch_jobs_processed_total[2m])", ("w2_after2", "mid"))
    c.instant("irate(http_requests_total[1m])", ("http_reset",))
    c.instant("rate(temperature_celsius[5m])")
    c.instant("delta(temperature_celsius[10m])", ("mid", "early"))
    c.instant("delta(queue_depth[15m])", ("email_gap", "mid"))
    c.instant("idelta(queue_depth[3m])")
    c.instant("idelta(temperature_celsius[2m])")
    c.instant("deriv(node_filesystem_avail_bytes[30m])")
    c.instant("deriv(temperature_celsius[10m])")
    c.instant("predict_linear(node_filesystem_avail_bytes[1h], 86400)")
    c.instant("predict_linear(temperature_celsius[15m], 600)")
    c.instant("rate(request_duration_seconds_count[5m])", ("hist_reset",))
    c.instant("increase(node_cpu_seconds_total[90s])")
    c.instant("rate(http_requests_total[3h])", ("end",))


def _over_time(c: _Cases) -> None:
    for fn in ("avg_over_time", "min_over_time", "max_over_time", "sum_over_time", "count_over_time",
               "last_over_time", "stddev_over_time", "stdvar_over_time", "present_over_time"):
        c.instant(f"{fn}(temperature_celsius[10m])")
        c.instant(f"{fn}(sensor_reading[5m])", ("nan_inf", "pinf"))
    c.instant("avg_over_time(huge_value[30m])")
    c.instant("stddev_over_time(huge_value[30m])")
    c.instant("count_over_time(queue_depth[10m])", ("email_gap",))
    c.instant("last_over_time(queue_depth[30m])", ("email_gap",))
    c.instant("max_over_time(batch_jobs_processed_total[15m])", ("w2_after6",))
    c.instant("quantile_over_time(0.95, temperature_celsius[30m])")
    c.instant("quantile_over_time(0.5, sensor_reading[10m])", ("nan_inf", "pinf"))
    c.instant("quantile_over_time(0, queue_depth[1h])")
    c.instant("quantile_over_time(2, queue_depth[1h])")
    c.instant("sum_over_time(tiny_ratio[10m]) * 1e12")
    c.instant("absent_over_time(batch_jobs_processed_total{worker=\"w2\"}[5m])", ("w2_after6",))
    c.instant("absent_over_time(batch_jobs_processed_total{worker=\"w2\"}[5m])", ("mid",), expect="empty")
    c.instant('absent_over_time(nonexistent{job="x", instance=~"y.*"}[5m])')
    c.instant("changes(queue_depth[10m])")
    c.instant("changes(sensor_reading[10m])", ("nan_inf", "pinf"))
    c.instant("resets(sensor_reading[10m])", ("nan_inf", "pinf"))
    c.instant("deriv(sensor_reading[5m])", ("nan_inf", "pinf"))
    c.instant("rate(sensor_reading[5m])", ("nan_inf", "pinf"))
    c.instant("delta(sensor_reading[5m])", ("nan_inf", "pinf"))
    c.instant("idelta(sensor_reading[1m])", ("nan_inf", "pinf"))
    c.instant("predict_linear(sensor_reading[5m], 60)", ("nan_inf", "pinf"))
    c.instant("changes(up[1h])", ("down",))
    c.instant("resets(http_requests_total[1h])", ("http_reset",))
    c.instant("resets(request_duration_seconds_count[3h])", ("end",))


def _other_functions(c: _Cases) -> None:
    c.instant('absent(up{job="nope"})')
    c.instant("absent(up)", expect="empty")
    c.instant('absent(nonexistent{job="x", instance=~"y", env="prod"})')
    c.instant("absent(sum(nonexistent))")
    c.instant('absent(up{job="api"} == 5)')
    for fn in ("abs", "ceil", "floor", "round", "exp", "ln", "log2", "log10", "sqrt"):
        c.instant(f"{fn}(temperature_celsius)")
    c.instant("round(temperature_celsius, 0.5)")
    c.instant("round(temperature_celsius, 5)")
    c.instant("round(vector(-2.5))")
    c.instant("round(vector(2.5))")
    c.instant("round(vector(0.125), 0.01)")
    c.instant("exp(vector(710))")
    c.instant("ln(vector(0))")
    c.instant("log2(node_memory_MemTotal_bytes)")
    c.instant("log10(huge_value)")
    c.instant("sqrt(vector(-1))")
    c.instant("abs(sensor_reading)", ("nan_inf", "pinf"))
    c.instant("clamp(temperature_celsius, -5, 5)")
    c.instant("clamp_min(temperature_celsius, 0)")
    c.instant("clamp_max(temperature_celsius, 60)")
    c.instant("clamp(up, 2, 1)", expect="empty")
    c.instant("clamp_max(sensor_reading, 10)", ("nan_inf", "pinf"))
    c.instant("time()")
    c.instant("timestamp(temperature_celsius)", ("mid", "after4"))
    c.instant("timestamp(up offset 5m)")
    c.instant("timestamp(rate(http_requests_total[5m]))")
    c.instant("vector(1)")
    c.instant("vector(time())")
    c.instant('scalar(up{instance="host-c:9100",job="web"})', ("down", "mid"))
    c.instant("scalar(up)")
    c.instant("scalar(nonexistent)")
    c.instant("abs(nonexistent)", expect="empty")
    c.instant("vector(1) and on() up")
    c.instant("-up > bool 0")
    c.instant("0 < up")
    c.instant("scalar(sum(up)) * 2")
    c.instant("up * scalar(count(up))")
    c.instant("sort(rate(http_requests_total[5m]))", ordered=True)
    c.instant("sort_desc(node_filesystem_avail_bytes)", ordered=True)
    c.instant("sort_desc(sensor_reading)", ("nan_inf", "pinf"), ordered=True)
    c.instant("sort(temperature_celsius)", ordered=True)
    c.instant('label_replace(up, "host", "$1", "instance", "(.*):.*")')
    c.instant('label_replace(up, "port", "${2}", "instance", "(.*):(.*)")')
    c.instant('label_replace(up, "hostname", "${host}!", "instance", "(?P<host>[^:]+):.*")')
    c.instant('label_replace(up, "foo", "bar", "nonexistent", "")')
    c.instant('label_replace(up, "foo", "bar", "job", "nomatch")')
    c.instant('label_replace(machine_info, "version", "", "version", ".*")')
    c.instant('label_replace(up, "job", "$1$1", "job", "(a.*)")')
    c.instant('label_replace(rate(http_requests_total[5m]), "__name__", "renamed", "", "")')
    c.instant('label_join(up, "combo", "-", "job", "instance")')
    c.instant('label_join(up, "x", ",")')
    c.instant('label_join(machine_info, "id", "/", "os", "version", "missing")')
    c.instant('label_join(machine_info, "os", "", "instance")')


def _histograms(c: _Cases) -> None:
    c.instant("histogram_quantile(0.9, sum by (le) (rate(request_duration_seconds_bucket[5m])))")
    c.instant("histogram_quantile(0.5, rate(request_duration_seconds_bucket[5m]))", ("mid", "hist_reset"))
    c.instant("histogram_quantile(0.99, sum by (job, le) (rate(request_duration_seconds_bucket[10m])))")
    for q in ("0", "1", "1.5", "-0.1", "NaN"):
        c.instant(f"histogram_quantile({q}, sum by (le) (rate(request_duration_seconds_bucket[5m])))")
    c.instant("histogram_quantile(0.75, request_duration_seconds_bucket)", ("hist_reset",))
    c.instant('histogram_quantile(0.5, sum by (le) (rate(request_duration_seconds_bucket{le!="+Inf"}[5m])))')
    c.instant("histogram_quantile(0.9, sum without (instance) (increase(request_duration_seconds_bucket[1h])))",
              ("end",))
    c.instant("rate(request_duration_seconds_sum[5m]) / rate(request_duration_seconds_count[5m])")
    for q in ("0.5", "0.9", "0", "1", "0.1"):
        c.instant(f"histogram_quantile({q}, odd_buckets)")
    c.instant('histogram_quantile(0.5, odd_buckets{case="nonmono"} offset 1h)')
    c.instant("histogram_quantile(0.5, sum without (case) (odd_buckets))")


def _time_functions(c: _Cases) -> None:
    for fn in ("day_of_week", "day_of_month", "day_of_year", "hour", "minute", "month", "year", "days_in_month"):
        c.instant(f"{fn}()")
    c.instant("hour(process_start_time_seconds)")
    c.instant("days_in_month(vector(1677628800))")
    c.instant("days_in_month(vector(1709251199))")
    c.instant("year(vector(0))")
    c.instant("month(timestamp(up))")
    c.instant("minute(timestamp(temperature_celsius))")
    c.instant("day_of_week(vector(-86400))")
    c.instant("hour(vector(NaN))")
    c.instant("time() - process_start_time_seconds")


def _subqueries(c: _Cases) -> None:
    c.instant("max_over_time(rate(http_requests_total[5m])[30m:1m])")
    c.instant("avg_over_time(up[1h:5m])", ("down", "mid"))
    c.instant("rate(http_requests_total[5m])[10m:]")
    c.instant("rate(http_requests_total[5m])[7m:37s]")
    c.instant("max_over_time(deriv(rate(http_requests_total[5m])[10m:1m])[30m:5m])")
    c.instant("sum_over_time(up[30m:1m] offset 10m)", ("down",))
    c.instant(f"min_over_time(temperature_celsius[10m:30s] @ {_t(c.times['q1'])})")
    c.instant("count_over_time(queue_depth[20m:1m])", ("email_gap",))
    c.instant("quantile_over_time(0.9, sum(rate(http_requests_total[5m]))[1h:37s])")
    c.instant("last_over_time(batch_jobs_processed_total[10m:1m])", ("w2_after6",))
    c.instant("changes(up[1h:1m])", ("down",))
    c.instant("sum_over_time(up[10m:1m] @ end())")
    c.instant("avg_over_time((up offset 5m)[15m:2m])")


def _ranges(c: _Cases) -> None:
    c.range("up", "full", "60")
    c.range("up", "down", "15s")
    c.range("rate(http_requests_total[5m])", "mid30m", "15")
    c.range("sum by (job) (rate(http_requests_total[5m]))", "full", "5m")
    c.range("histogram_quantile(0.99, sum by (le, job) (rate(request_duration_seconds_bucket[5m])))", "full", "60")
    c.range("histogram_quantile(0.5, rate(request_duration_seconds_bucket[2m]))", "hist_reset", "37")
    c.range("queue_depth", "email_gap", "30")
    c.range("batch_jobs_processed_total", "w2_stop", "60")
    c.range("temperature_celsius", "odd1h", "37")
    c.range('increase(http_requests_total{job="web"}[10m])', "resets", "60")
    c.range("resets(http_requests_total[15m])", "resets", "1m")
    c.range("time()", "tail", "5m")
    c.range("vector(1)", "tail", "5m")
    c.range("1", "tail", "300")
    c.range("up @ start()", "tail", "60")
    c.range("up @ end()", "head", "60")
    c.range("rate(http_requests_total[5m] @ end())", "mid30m", "5m")
    c.range("max_over_time(up[10m:1m])", "down", "37")
    c.range("avg_over_time(rate(http_requests_total[5m])[15m:])", "odd1h", "5m")
    c.range('absent(up{job="nope"})', "tail", "60")
    c.range('absent_over_time(batch_jobs_processed_total{worker="w2"}[5m])', "w2_stop", "60")
    c.range("sort_desc(queue_depth)", "email_gap", "60")
    c.range("hour()", "full", "15m")
    c.range("minute(timestamp(temperature_celsius))", "odd1h", "5m")
    c.range('label_replace(up, "host", "$1", "instance", "(.*):.*")', "down", "60")
    c.range('count_values("v", queue_depth)', "email_gap", "2m")
    c.range("topk(2, rate(http_requests_total[5m]))", "resets", "5m")
    c.range("sensor_reading", "mid30m", "15")
    c.range("deriv(temperature_celsius[5m])", "odd1h", "37")
    c.range("predict_linear(node_filesystem_avail_bytes[30m], 3600)", "full", "10m")
    c.range("changes(up[15m])", "down", "60")
    c.range("timestamp(temperature_celsius)", "tail", "60")
    c.range("up offset -10m", "tail", "60")
    c.range("scalar(sum(up))", "down", "60")
    c.range("quantile(0.5, temperature_celsius)", "head", "60")
    c.range('1 - avg without (cpu, mode) (rate(node_cpu_seconds_total{mode="idle"}[5m]))', "full", "5m",
            method="POST")
    c.range('node_filesystem_avail_bytes{fstype!~"tmpfs|vfat"} / node_filesystem_size_bytes', "mid30m", "60")
    c.range("irate(batch_jobs_processed_total[1m])", "w2_stop", "37")
    c.range("idelta(queue_depth[2m])", "email_gap", "60")
    c.range("up == bool 0", "down", "60", method="POST")
    c.range("sum(up) by (job) > 1", "down", "60")
    c.range("stddev_over_time(temperature_celsius[10m])", "full", "15m")
    c.range("huge_value", "tail", "5m")
    c.range("tiny_ratio", "tail", "5m")
    c.range("present_over_time(queue_depth[2m])", "email_gap", "60")
    # Query parameters in other spellings Prometheus accepts.
    s = c.times["mid"] - 600
    c.cases.append(Case("range rfc3339+duration step", "/api/v1/query_range",
                        {"query": "up", "start": _rfc3339(s), "end": _rfc3339(s + 600), "step": "1m30s"}))
    c.instant_raw("up", {"time": _rfc3339(c.times["down"])})
    c.instant_raw("timestamp(up)", {"time": _t(int(c.times["mid"])) + ".1239"})
    c.instant_raw("time()", {"time": _rfc3339(c.times["mid"]).replace("Z", "+02:00")})
    c.range("temperature_celsius", "short", "0.5")
    c.range("rate(http_requests_total[1m])", "short", "7.5")
    c.instant_raw("rate(http_requests_total[5m])", {"time": _t(c.times["mid"]), "timeout": "20s"})
    c.instant("sum(rate(http_requests_total[5m])) by (code)", method="POST")


def _boundaries(c: _Cases) -> None:
    """Window edges: samples exactly at t - range or t - lookback, counters that start inside a window."""
    c.instant("count_over_time(up[1m])", ("aligned",))
    c.instant("count_over_time(queue_depth[5m])", ("aligned",))
    c.instant("rate(http_requests_total[1m])", ("aligned",))
    c.instant("up", ("aligned",))
    c.instant("up offset 5m", ("aligned",))
    c.instant("batch_jobs_processed_total", ("w2_plus5m", "w2_plus5m_less", "w2_plus5m_more"))
    c.instant("last_over_time(batch_jobs_processed_total[5m])", ("w2_plus5m", "w2_plus5m_less"))
    c.instant('rate(batch_jobs_processed_total{worker="w3"}[5m])', ("w3_early",))
    c.instant('increase(batch_jobs_processed_total{worker="w3"}[2m])', ("w3_early",))
    c.instant('deriv(batch_jobs_processed_total{worker="w3"}[5m])', ("w3_early",))
    c.instant("irate(http_requests_total[1m])", ("aligned",))
    c.instant("avg_over_time(up[1h:5m])", ("aligned",))
    c.instant("max_over_time(rate(http_requests_total[5m])[20m:5m])", ("aligned",))
    c.instant('absent_over_time(batch_jobs_processed_total{worker="w2"}[5m])', ("w2_plus5m",), expect="any")
    c.instant("sum(up) / on() count(up)")
    c.instant('up{job="api"} * on(instance) group_left(job) machine_info')
    c.instant("2 ^ up", ("down",))
    c.instant("rate(queue_depth[10m:1m])", ("email_gap",))
    c.instant('absent(up{job="nope"} offset 1h)')
    c.instant('label_join(up, "name", "+", "__name__", "job")')
    c.instant('count_over_time({__name__=~"up|queue_depth|temp.*"}[10m])')
    c.instant('{__name__=~".+"}', ("mid", "w2_plus5m"))
    c.instant(f'timestamp(up @ {_t(c.times["end"])})', ("mid",))
    c.instant("sum_over_time(rate(http_requests_total[5m])[30m:] offset 30m)")
    start = c.times["mid"] - 1000.3
    c.cases.append(Case("range uneven end: rate(http_requests_total[2m])", "/api/v1/query_range",
                        {"query": "rate(http_requests_total[2m])", "start": _t(start), "end": _t(c.times["mid"]),
                         "step": "60"}))


def _corners(c: _Cases) -> None:
    """Less travelled paths of operators and functions."""
    c.instant("quantile_over_time(NaN, queue_depth[10m])")
    c.instant("round(temperature_celsius, -1)")
    c.instant("clamp(temperature_celsius, NaN, 5)")
    c.instant("predict_linear(temperature_celsius[10m], -600)")
    c.instant("histogram_quantile(0.5, up)", expect="empty")
    c.instant('label_replace(up, "x", "$1", "instance", "host")')
    c.instant('label_replace(up, "x", "$1x", "job", "(.*)")')
    c.instant('label_replace(up, "x", "$$1-${1}_$1", "job", "(.*)")')
    c.instant('label_replace(up, "x", "$2", "job", "(a)(p)?.*")')
    c.instant('label_join(up, "x", "\\\\|.*", "job", "instance")')
    c.instant('count_values by (job) ("job", up)', ("down",))
    c.instant("topk by (nonexistent) (2, queue_depth)")
    c.instant("sum by (nonexistent) (up)")
    c.instant("avg(sensor_reading)", ("nan_inf", "pinf"))
    c.instant("stddev(sensor_reading)", ("pinf",))
    c.instant("quantile(0.5, sensor_reading)", ("nan_inf", "pinf"))
    c.instant("sum_over_time(sensor_reading[15m])", ("pinf",))
    c.instant("-vector(1)")
    c.instant("vector(1) + vector(1)")
    c.instant("1 + vector(1)")
    c.instant("up == on(job) group_left sum by (job) (up)")
    c.instant("up == bool on(instance) group_left machine_info")
    c.instant('up{job="api",}')
    c.instant("sum by (job,) (up)")
    c.instant(f'up @ {_t(c.times["down"])} offset 5m')
    c.instant(f'up offset 5m @ {_t(c.times["down"])}')
    c.instant(f'up @ {c.times["down"]:.3f}')
    c.instant("count_over_time(temperature_celsius[30s500ms])")
    c.instant("count_over_time(temperature_celsius[1m] offset 1500ms)")
    c.instant("max_over_time(sensor_reading[1h])", ("nan_inf",))
    c.instant("min_over_time(sensor_reading[1h])", ("nan_inf",))
    c.instant("sum(up) without (job, instance)")
    c.instant("group by (job) (up) * on(job) group_right count by (job, instance) (up)")


def _errors(c: _Cases) -> None:
    # Parse errors and type errors: bad_data (400).
    for q in ("sum(", "rate(up)", "up[5m] + 1", '{foo=""}', '{job=~".*"}', "1 and 1", 'topk("a", up)',
              "quantile_over_time(0.5, up)", '"foo" + 1', "sum by (job) (up) offset 5m", "up[5m:1m:1m]",
              "unknown_func(up)", "abs()", "abs(up, up)", 'up{job="api"', "time() @ 123", '-"foo"',
              "sum(1)", "rate(up[5m] offset)", "up @ foo", "up[5x]", "up == bool", "1 +", "histogram_quantile(up)",
              "round(up, up)", "label_replace(up)", "up offset 5m offset 5m", "{}", "sum without(up)",
              "up and on(job) group_left up", "up + on(job) ignoring(instance) up",
              "sum(up) by (job) without (instance)",
              "rate(up[5m])[5m]", "abs(up[5m])", "absent(up[5m])", "round(up, 1, 2)", 'label_join(up, "x")',
              "hour(up, up)", "time(1)", "sort(up[5m])", "sum by (1a) (up)", "up @ 1 @ 2", "up{job=~\"(\"}",
              "up[1h:5m:1m]", "up[0s]", "1 + up @ end", "quantile(up)", "label_replace(up, 1, \"\", \"\", \"\")"):
        c.error(q)
    # Execution errors (422).
    c.error('label_replace(up, "1bad", "x", "job", ".*")')
    c.error('label_replace(up, "x", "y", "job", "(")')
    c.error("http_requests_total + on(job) http_requests_total")
    c.error("rate(http_requests_total[5m]) * on(job) group_left up")
    c.error('label_replace(up{job="api"}, "instance", "x", "", "")')
    c.error('count_values("invalid-label", up)')
    c.error("up * on(instance) group_left(job) machine_info")
    c.error('abs({__name__=~"node_filesystem_.*"})')
    c.error('{__name__=~"node_filesystem_.*"} + 1')
    c.error('rate({__name__=~"node_filesystem_.*"}[5m])')
    # Bad parameters.
    mid = c.times["mid"]
    c.error("", time=_t(mid))
    c.error("up", time="yesterday")
    c.error("up", "/api/v1/query_range", start=_t(mid), end=_t(mid + 60), step="0")
    c.error("up", "/api/v1/query_range", start=_t(mid), end=_t(mid - 60), step="15")
    c.error("up", "/api/v1/query_range", start=_t(mid - 86400), end=_t(mid), step="1")
    c.error("up", "/api/v1/query_range", start=_t(mid), end=_t(mid + 60))
    c.error("up", "/api/v1/query_range", start="soon", end=_t(mid), step="15")
    c.error('"foo"', "/api/v1/query_range", start=_t(mid - 60), end=_t(mid), step="15")
    c.error("up[5m]", "/api/v1/query_range", start=_t(mid - 60), end=_t(mid), step="15")
    c.error('{__name__=~"node_memory_.*"} * 2', "/api/v1/query_range", start=_t(mid - 600), end=_t(mid), step="60")
    c.error("up", "/api/v1/query_range", start=_t(mid - 60), end=_t(mid), step="-15")
