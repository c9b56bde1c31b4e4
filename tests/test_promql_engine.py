"""The PromQL evaluator against Prometheus 2.42's answers.

The scripts in promql_testdata/ are ported from Prometheus's own promql/testdata (approximate
expectations) plus Vigil cases whose expectations were taken from a real Prometheus 2.42 over the
same samples (`eval_exact` ones to the last bit, error messages verbatim). The tests below them
cover what the scripts cannot: the engine's API, limits, rollup windows and the in-memory store.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from agent.promql import ast as A
from agent.promql.engine import Engine, check_resolution, value_type
from agent.promql.memory import MemoryQueryable
from agent.promql.series_notation import SeriesNotationError, expand_series_notation
from agent.promql.values import (
    STALE_NAN,
    ParseError,
    PromQLError,
    QueryLimitError,
    QueryTimeout,
    Scalar,
    Series,
    SeriesData,
    String,
    is_stale,
)
from tests.promql_testfmt import ScriptRunner

TESTDATA = Path(__file__).parent / "promql_testdata"
MIN = 60_000


@pytest.mark.parametrize("path", sorted(TESTDATA.glob("*.test")), ids=lambda p: p.stem)
def test_script(path: Path) -> None:
    runner = ScriptRunner()
    failures = runner.run(path.read_text())
    assert runner.cases > 10
    assert not failures, "\n".join(failures)


def test_script_runner_reports_wrong_expectations() -> None:
    runner = ScriptRunner()
    failures = runner.run(
        "load 1m\n  m{a=\"1\"} 1 2 3\n\n"
        "eval instant at 1m m\n  m{a=\"1\"} 5\n\n"
        "eval range from 0 to 2m step 1m m\n  m{a=\"1\"} 1 2 4\n\n"
        "eval_fail instant at 1m m\n\n"
        "eval_exact instant at 1m m / 3\n  {a=\"1\"} 0.6666666666666667\n"
    )
    assert len(failures) == 4, failures


def _labels(name: str, **labels: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted({"__name__": name, **labels}.items()))


def _sel(name: str, **labels: str) -> A.VectorSelector:
    matchers = [A.Matcher(A.MatchType.EQL, k, v) for k, v in labels.items()]
    return A.VectorSelector(name, [*matchers, A.Matcher(A.MatchType.EQL, "__name__", name)])


@pytest.fixture
def store() -> MemoryQueryable:
    q = MemoryQueryable()
    for i in range(11):
        q.add(_labels("up", job="a"), i * MIN, 1.0)
        q.add(_labels("up", job="b"), i * MIN, 0.0 if i < 5 else 1.0)
        q.add(_labels("req", job="a"), i * MIN, float(i * 60))
    return q


# --- Engine API ---


def test_instant_query_value_types(store: MemoryQueryable) -> None:
    engine = Engine()
    vector = engine.instant_query(store, "up", 5 * MIN)
    assert [(s.labels, s.t, s.v) for s in vector] == [
        (_labels("up", job="a"), 5 * MIN, 1.0),
        (_labels("up", job="b"), 5 * MIN, 1.0),
    ]
    assert engine.instant_query(store, "1 + 2", 7) == Scalar(7, 3.0)
    assert engine.instant_query(store, '"text"', 7) == String(7, "text")
    matrix = engine.instant_query(store, "req[2m]", 5 * MIN)
    assert matrix == [Series(_labels("req", job="a"), [(3 * MIN, 180.0), (4 * MIN, 240.0), (5 * MIN, 300.0)])]


def test_engine_accepts_an_ast(store: MemoryQueryable) -> None:
    expr = A.BinaryExpr("*", _sel("up", job="b"), A.NumberLiteral(2.0))
    assert [s.v for s in Engine().instant_query(store, expr, 2 * MIN)] == [0.0]
    assert value_type(expr) == "vector"


def test_range_query_sorted_and_gapless_series_dropped(store: MemoryQueryable) -> None:
    result = Engine().range_query(store, "up == 1 or sum(req)", 0, 4 * MIN, 2 * MIN)
    assert [s.labels for s in result] == [(), _labels("up", job="a")]
    assert result[0].points == [(0, 0.0), (2 * MIN, 120.0), (4 * MIN, 240.0)]
    scalar = Engine().range_query(store, "time() * 2", 0, 2 * MIN, MIN)
    assert scalar == [Series((), [(0, 0.0), (MIN, 120.0), (2 * MIN, 240.0)])]


def test_range_query_rejects_range_vectors_and_strings(store: MemoryQueryable) -> None:
    with pytest.raises(ParseError, match='invalid expression type "range vector" for range query'):
        Engine().range_query(store, "up[5m]", 0, MIN, MIN)
    with pytest.raises(ParseError) as info:
        Engine().range_query(store, '"x"', 0, MIN, MIN)
    assert info.value.error_type == "bad_data"


def test_parse_errors_propagate(store: MemoryQueryable) -> None:
    with pytest.raises(ParseError):
        Engine().instant_query(store, "sum(", 0)


def test_max_samples_limit(store: MemoryQueryable) -> None:
    with pytest.raises(QueryLimitError, match="query processing would load too many samples into memory"):
        Engine(max_samples=10).range_query(store, "up", 0, 10 * MIN, MIN)
    with pytest.raises(QueryLimitError):
        Engine(max_samples=5).instant_query(store, "count_over_time(req[10m])", 10 * MIN)
    assert len(Engine(max_samples=22).range_query(store, "up", 0, 10 * MIN, MIN)) == 2


def test_timeout(store: MemoryQueryable) -> None:
    with pytest.raises(QueryTimeout, match="query timed out in expression evaluation") as info:
        Engine().range_query(store, "up", 0, 10 * MIN, MIN, timeout_s=-1)
    assert info.value.error_type == "timeout"


def test_resolution_limit(store: MemoryQueryable) -> None:
    with pytest.raises(QueryLimitError, match="exceeded maximum resolution of 11,000 points per timeseries") as info:
        Engine().range_query(store, "up", 0, 11_001 * 1000, 1000)
    assert info.value.error_type == "bad_data"
    check_resolution(0, 11_000 * 1000, 1000)
    assert len(Engine().range_query(store, "up", 0, 11_000 * 1000, 1000)) == 2


def test_lookback_and_default_subquery_step_are_configurable(store: MemoryQueryable) -> None:
    short = Engine(lookback_delta_ms=30_000)
    assert short.instant_query(store, "up", 10 * MIN + 30_000) != []
    assert short.instant_query(store, "up", 10 * MIN + 30_001) == []
    coarse = Engine(default_subquery_step_ms=2 * MIN)
    assert [s.v for s in coarse.instant_query(store, "count_over_time(req[10m:])", 10 * MIN)] == [6.0]
    assert [s.v for s in Engine().instant_query(store, "count_over_time(req[10m:])", 10 * MIN)] == [11.0]


def test_at_start_and_end_resolve_against_the_query_range(store: MemoryQueryable) -> None:
    engine = Engine()
    start = engine.range_query(store, "req @ start()", 2 * MIN, 6 * MIN, 2 * MIN)
    end = engine.range_query(store, "req @ end()", 2 * MIN, 6 * MIN, 2 * MIN)
    assert [v for _, v in start[0].points] == [120.0] * 3
    assert [v for _, v in end[0].points] == [360.0] * 3
    assert [s.v for s in engine.instant_query(store, "req @ end()", 3 * MIN)] == [180.0]


# --- Range-vector windows from rollup tiers ---


def test_rollup_windows_reach_the_functions() -> None:
    """A 1-minute rollup bucket per point: avg_over_time uses the bucket sums and counts, not the last values."""
    labels = _labels("load1")
    ts = [i * MIN for i in range(10)]
    q = MemoryQueryable([SeriesData(
        labels, ts, [float(i) for i in range(10)],
        count=[4.0] * 10, sum=[4.0 * i + 6 for i in range(10)], min=[float(i) for i in range(10)],
        max=[i + 3.0 for i in range(10)],
    )])
    engine = Engine()
    # Buckets 5..9 in [4m, 9m]... the window [t - 5m, t] at 9m covers buckets at 4m..9m.
    avg = engine.instant_query(q, "avg_over_time(load1[5m])", 9 * MIN)
    expected = sum(4.0 * i + 6 for i in range(4, 10)) / 24
    assert [s.v for s in avg] == [pytest.approx(expected)]
    assert [s.v for s in engine.instant_query(q, "max_over_time(load1[5m])", 9 * MIN)] == [12.0]
    assert [s.v for s in engine.instant_query(q, "load1", 9 * MIN)] == [9.0]


def test_stale_markers_are_dropped_from_rollup_windows_too() -> None:
    labels = _labels("g")
    q = MemoryQueryable([SeriesData(
        labels, [0, MIN, 2 * MIN], [1.0, STALE_NAN, 3.0],
        count=[2.0, 1.0, 2.0], sum=[2.0, 0.0, 6.0], min=[1.0, 0.0, 3.0], max=[1.0, 0.0, 3.0],
    )])
    result = Engine().instant_query(q, "count_over_time(g[5m])", 2 * MIN)
    assert [s.v for s in result] == [4.0]


# --- MemoryQueryable ---


def test_memory_matchers() -> None:
    q = MemoryQueryable()
    q.add(_labels("m", a="x", b="1"), 0, 1.0)
    q.add(_labels("m", a="xy"), 0, 2.0)
    q.add(_labels("m", a="y\n"), 0, 3.0)

    def names(*matchers: A.Matcher) -> list[dict[str, str]]:
        return [dict(d.labels) for d in q.select(list(matchers), 0, 0)]

    eq, neq, re_, nre = A.MatchType.EQL, A.MatchType.NEQ, A.MatchType.RE, A.MatchType.NRE
    assert [d["a"] for d in names(A.Matcher(re_, "a", "x"))] == ["x"]
    assert [d["a"] for d in names(A.Matcher(re_, "a", "x|xy"))] == ["x", "xy"]
    assert [d["a"] for d in names(A.Matcher(nre, "a", "x.*"))] == ["y\n"]
    assert [d["a"] for d in names(A.Matcher(re_, "a", "y$"))] == []
    assert [d["a"] for d in names(A.Matcher(eq, "b", ""))] == ["xy", "y\n"]
    assert [d["a"] for d in names(A.Matcher(neq, "b", ""))] == ["x"]
    assert [d["a"] for d in names(A.Matcher(re_, "b", "1?"))] == ["x", "xy", "y\n"]
    assert [d["a"] for d in names(A.Matcher(re_, "a", "(?i)X"))] == ["x"]
    with pytest.raises(PromQLError):
        names(A.Matcher(re_, "a", "("))


def test_memory_select_range_and_ordering() -> None:
    q = MemoryQueryable()
    labels = _labels("m")
    for t in (30, 10, 20, 20):
        q.add(labels, t, float(t))
    q.add(labels, 20, 99.0)
    q.add(_labels("a"), 15, 1.0)
    (data,) = q.select([A.Matcher(A.MatchType.EQL, "__name__", "m")], 10, 20)
    assert list(data.ts) == [10, 20]
    assert list(data.values) == [10.0, 99.0]
    assert q.select([A.Matcher(A.MatchType.EQL, "__name__", "m")], 31, 40) == []
    assert [d.labels for d in q.select([], 0, 100)] == [_labels("a"), labels]


def test_memory_metadata_queries() -> None:
    q = MemoryQueryable()
    q.add(_labels("up", job="a", instance="1"), 0, 1.0)
    q.add(_labels("up", job="b"), 0, 1.0)
    q.add(_labels("down", job="c"), 100, 1.0)
    up = [[A.Matcher(A.MatchType.EQL, "__name__", "up")]]
    assert q.label_names(up, 0, 10) == ["__name__", "instance", "job"]
    assert q.label_names([], 0, 1000) == ["__name__", "instance", "job"]
    assert q.label_values("job", [], 0, 10) == ["a", "b"]
    assert q.label_values("job", [], 0, 1000) == ["a", "b", "c"]
    two = [[A.Matcher(A.MatchType.EQL, "job", "a")], [A.Matcher(A.MatchType.EQL, "job", "c")]]
    assert q.series(two, 0, 1000) == [_labels("down", job="c"), _labels("up", job="a", instance="1")]


def test_memory_rejects_bad_series() -> None:
    with pytest.raises(ValueError, match="ascending"):
        MemoryQueryable([SeriesData(_labels("m"), [2, 1], [0.0, 0.0])])
    with pytest.raises(ValueError, match="rollup columns"):
        MemoryQueryable([SeriesData(_labels("m"), [1, 2], [0.0, 0.0], count=[1.0, 1.0])])


# --- Series notation ---


def test_series_notation() -> None:
    values = expand_series_notation("0+10x3 _ _x2 stale 5x2 -1-1x2 0x2 Inf -Inf 0.1+0.1x2")
    assert values[:8] == [0.0, 10.0, 20.0, 30.0, None, None, None, "stale"]
    assert values[8:] == [5.0, 5.0, 5.0, -1.0, -2.0, -3.0, 0.0, 0.0, 0.0, math.inf, -math.inf, 0.1, 0.2,
                          0.30000000000000004]  # 0x2 is "0 three times", as in promtool, not hex
    assert math.isnan(expand_series_notation("NaN")[0])
    assert is_stale(STALE_NAN)
    with pytest.raises(SeriesNotationError):
        expand_series_notation("1 two")
    with pytest.raises(SeriesNotationError):
        expand_series_notation("0x1f")


def test_predict_linear_anchors_at_the_step_time_under_at() -> None:
    """Prometheus 2.42 takes the regression's intercept at the evaluation step, even when `@`
    pins the window elsewhere: a line v = t (seconds) predicts 600 at step 600, not 300."""
    store = MemoryQueryable()
    for s in range(0, 601, 15):
        store.add((("__name__", "line"),), s * 1000, float(s))
    result = Engine().instant_query(store, "predict_linear(line[5m] @ 300, 0)", 600_000)
    assert [round(x.v, 9) for x in result] == [600.0]
    result = Engine().instant_query(store, "predict_linear(line[5m] offset 5m, 0)", 600_000)
    assert [round(x.v, 9) for x in result] == [600.0]
