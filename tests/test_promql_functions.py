"""agent.promql.functions against Prometheus 2.42.

The data-driven cases reuse the series and queries of Prometheus's promql/testdata/functions.test
(plus edge cases: NaN, ±Inf, overflow, Go's calendar and regexp quirks); every expected value is
what the real promtool 2.42 (`promtool test rules`) answered for the same data, printed with
full precision, so values are compared bit for bit. A small evaluator below builds the functions'
arguments the way the engine does: range windows are closed, [t - range - offset, t - offset],
and instant vectors take the latest sample of the last 5 minutes.
"""

from __future__ import annotations

import bisect
import functools
import json
import math
import re
import time
from typing import Any

import pytest

from agent.promql.ast import FUNCTIONS, Matcher, MatchType, MatrixSelector, ParenExpr, SubqueryExpr, VectorSelector
from agent.promql.functions import FUNCTIONS_IMPL
from agent.promql.functions_range import _EXACT_MAX
from agent.promql.functions_regex import compile_go, expand
from agent.promql.values import CallContext, Labels, PromQLError, Sample, SeriesData, Window

_RANGE_FUNCTIONS = {name for name, sig in FUNCTIONS.items() if "matrix" in sig.arg_types}
# Go's incremental mean / Welford rounding is reproduced exactly up to _EXACT_MAX points per window;
# longer windows agree to ~1e-16 relative (see functions_range).
_INCREMENTAL = {"avg_over_time", "stddev_over_time", "stdvar_over_time"}
_STRING_PARAM_FUNCTIONS = {"label_replace", "label_join"}
_LOOKBACK_MS = 300_000
_SERIES_RE = re.compile(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?')
_LABEL_RE = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')
_STEP_RE = re.compile(r'(_|[+-]?[\w.]+?)(?:([+-][\d.]+))?x(\d+)')


def _duration_ms(text: str) -> int:
    units = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)(ms|s|m|h)", text))


def _expand(notation: str) -> list[float | None]:
    """Prometheus's series notation: `a+bxN` is N+1 values (accumulated), `axN` N+1 copies, `_` missing."""
    values: list[float | None] = []
    for token in notation.split():
        match = _STEP_RE.fullmatch(token)
        if token == "_":
            values.append(None)
        elif match is None:
            values.append(float(token))
        elif match.group(1) == "_":
            values.extend([None] * int(match.group(3)))
        else:
            value = float(match.group(1))
            step = float(match.group(2) or 0)
            for _ in range(int(match.group(3)) + 1):
                values.append(value)
                value += step
    return values


def _labels(series: str) -> Labels:
    match = _SERIES_RE.fullmatch(series.strip())
    assert match is not None, series
    pairs = {"__name__": match.group(1)}
    for name, value in _LABEL_RE.findall(match.group(2) or ""):
        pairs[name] = json.loads(f'"{value}"')
    return tuple(sorted(pairs.items()))


@functools.cache
def _load(name: str) -> list[tuple[Labels, list[int], list[float]]]:
    interval, series = LOADS[name]
    step = _duration_ms(interval)
    out = []
    for text, notation in series.items():
        points = [(i * step, v) for i, v in enumerate(_expand(notation)) if v is not None]
        out.append((_labels(text), [t for t, _ in points], [v for _, v in points]))
    return out


def _param(func: str, value: Any) -> Any:
    if func in _STRING_PARAM_FUNCTIONS:
        return value
    return float(value)


def _series(load: str, metric: str) -> list[tuple[Labels, list[int], list[float]]]:
    return [s for s in _load(load) if dict(s[0])["__name__"] == metric]


def _longest_window(load: str, metric: str, range_s: int, at_s: int, offset_s: int) -> int:
    end = (at_s - offset_s) * 1000
    return max(bisect.bisect_right(ts, end) - bisect.bisect_left(ts, end - range_s * 1000)
               for _, ts, _ in _series(load, metric))


def _evaluate(load: str, func: str, metric: str, range_s: int | None, at_s: int, params: tuple, offset_s: int):
    t = at_s * 1000
    series = _series(load, metric)
    selector = VectorSelector(metric, [Matcher(MatchType.EQL, "__name__", metric)], offset=offset_s * 1000)
    values = [_param(func, p) for p in params]
    if func in _RANGE_FUNCTIONS:
        assert range_s is not None
        end = t - offset_s * 1000
        start = end - range_s * 1000
        windows = [Window(lbl, ts, vs, bisect.bisect_left(ts, start), bisect.bisect_right(ts, end))
                   for lbl, ts, vs in series]
        ctx = CallContext(end, range_s * 1000, [MatrixSelector(selector, range_s * 1000)])
        args: list[Any] = [*values, windows] if func == "quantile_over_time" else [windows, *values]
    else:
        vector = []
        for lbl, ts, vs in series:
            i = bisect.bisect_right(ts, t) - 1
            if i >= 0 and ts[i] >= t - _LOOKBACK_MS:
                vector.append(Sample(lbl, ts[i] if func == "timestamp" else t, vs[i]))
        ctx = CallContext(t, 0, [selector])
        args = [*values, vector] if func == "histogram_quantile" else [vector, *values]
    return FUNCTIONS_IMPL[func](args, ctx)


def _format_labels(labels: Labels) -> str:
    return "{" + ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in labels) + "}"


def _same_float(actual: float, expected: str) -> bool:
    """Bit-for-bit (sign of zero included); every NaN equals every NaN."""
    return repr(actual) == repr(float(expected))


def _call(name: str, args: list[Any], t: int = 0, range_ms: int = 0, exprs: list | None = None) -> Any:
    return FUNCTIONS_IMPL[name](args, CallContext(t, range_ms, exprs or []))


def _window(values: list[float], step_ms: int = 15_000, labels: Labels = (("__name__", "m"), ("job", "a"))) -> Window:
    return Window(labels, [i * step_ms for i in range(len(values))], values, 0, len(values))

# Series loads as in Prometheus's promql test files: interval and `name{labels}: values` (a+bxN expands
# to N+1 values, `_` is a missing sample).
LOADS: dict[str, tuple[str, dict[str, str]]] = {'resets': ('5m',
            {'http_requests{path="/foo"}': '1 2 3 0 1 0 0 1 2 0',
             'http_requests{path="/bar"}': '1 2 3 4 5 1 2 3 4 5',
             'http_requests{path="/biz"}': '0 0 0 0 0 1 1 1 1 1',
             'x{a="b"}': 'NaN NaN NaN',
             'x{a="c"}': '0 NaN 0'}),
 'increase': ('5m',
              {'http_requests_total{path="/foo"}': '0+10x10',
               'http_requests_total{path="/bar"}': '0+18x5 0+18x5',
               'http_requests_total{path="/dings"}': '10+10x10',
               'http_requests_total{path="/bumms"}': '1+10x10',
               'reset_total{path="/foo"}': '0 1 2 3 2 3 4',
               'testcounter_reset_middle_total': '0+27x4 0+27x5',
               'testcounter_reset_end_total': '0+10x9 0 10',
               'calculate_rate_offset_total{x="a"}': '0+10x10',
               'calculate_rate_offset_total{x="b"}': '0+20x10',
               'gauge{path="/foo"}': '0 50 100 150 200',
               'gauge{path="/bar"}': '200 150 100 50 0',
               'negative_total': '-10 -5 0 5 3',
               'sparse_total': '1 _ _ 7 _ 9 _ _ _ 20'}),
 'zero_cutoff': ('4m',
                 {'testcounter_zero_cutoff_total{start="0m"}': '0+240x10',
                  'testcounter_zero_cutoff_total{start="1m"}': '60+240x10',
                  'testcounter_zero_cutoff_total{start="2m"}': '120+240x10',
                  'testcounter_zero_cutoff_total{start="3m"}': '180+240x10',
                  'testcounter_zero_cutoff_total{start="4m"}': '240+240x10',
                  'testcounter_zero_cutoff_total{start="5m"}': '300+240x10'}),
 'irate': ('5m',
           {'http_requests_total{path="/foo"}': '0+10x10',
            'http_requests_total{path="/bar"}': '0+10x5 0+10x5',
            'http_requests_nan': '1 NaN NaN 5 11',
            'idelta_gauge{path="/foo"}': '0 50 100 150',
            'idelta_gauge{path="/bar"}': '0 50 100 50'}),
 'deriv': ('5m',
           {'testcounter_reset_middle_total': '0+10x4 0+10x5',
            'http_requests_total{job="app-server", instance="1", group="canary"}': '0+80x10',
            'http_requests_inf{job="app-server", instance="1", group="canary"}': '-Inf 0+80x10 Inf',
            'constant': '5+0x20',
            'constant_inf': 'Inf+0x5'}),
 'avg': ('10s',
         {'metric': '1 2 3 4 5',
          'metric2': '1 2 3 4 Inf',
          'metric3': '1 2 3 4 -Inf',
          'metric4': '1 2 3 Inf -Inf',
          'metric5': 'Inf 0 Inf',
          'metric5c': 'Inf Inf Inf -Inf',
          'metric6': '1 2 3 -Inf -Inf',
          'metric6c': '-Inf -Inf -Inf Inf',
          'metric7': '1 2 -Inf -Inf Inf',
          'metric8': '9.988465674311579e+307 9.988465674311579e+307',
          'metric9': '-9.988465674311579e+307 -9.988465674311579e+307 -9.988465674311579e+307',
          'metric10': '-9.988465674311579e+307 9.988465674311579e+307',
          'metric11': '1 2 3 NaN NaN',
          'big': '1 1e100 1 -1e100',
          'tenth': '0.1+0x40',
          'foo': '52+0x100',
          'ramp': '0.3+0.7x100'}),
 'extreme': ('5s',
             {'metric1': '1e10 1e-6 1e-6 1e-6 1e-6 1e-6',
              'metric2': '5.30921651659898 0.961118537914768 1.62091361305318 0.865089463758091 0.323055185914577 '
                         '0.951811357687154',
              'metric3': '1.78264e50 0.76342771 1.9592258 7.69805412 458.90154',
              'metric4': '0.76342771 1.9592258 7.69805412 1.78264e50 458.90154',
              'metric5': '1.78264E+50 0.76342771 1.9592258 2.258E+220 7.69805412 458.90154',
              'metric6': '-1.78264E+50 0.76342771 1.9592258 2.258E+220 7.69805412 -458.90154',
              'metric8': '-1.78264E+215 0.76342771 1.9592258 2.258E+220 7.69805412 -458.90154',
              'metric10': '-1.78264E+219 0.76342771 1.9592258 2.3757689E+217 -2.3757689E+217 2.258E+220 7.69805412 '
                          '1.78264E+219 -458.90154',
              'metric11': '-2.258E+220 -1.78264E+219 0.76342771 1.9592258 2.3757689E+217 -2.3757689E+217 2.258E+220 '
                          '7.69805412 1.78264E+219 -458.90154'}),
 'stddev': ('10s',
            {'metric': '0 8 8 2 3',
             'same': '1.5990505637277868 1.5990505637277868 1.5990505637277868',
             'ramp': '0.3+0.7x100',
             'withinf': '1 2 Inf 3'}),
 'quantile': ('10s',
              {'data{test="two samples"}': '0 1',
               'data{test="three samples"}': '0 1 2',
               'data{test="uneven samples"}': '0 1 4',
               'data{test="with nan"}': '3 NaN 1 2'}),
 'over_time': ('10s',
               {'data{type="numbers"}': '2 0 3',
                'data{type="some_nan"}': '2 0 NaN',
                'data{type="some_nan2"}': '2 NaN 1',
                'data{type="some_nan3"}': 'NaN 0 1',
                'data{type="only_nan"}': 'NaN NaN NaN',
                'data{type="sparse_numbers"}': '_ 5 2 _ 4 _'}),
 'math': ('5m',
          {'data{type="positive"}': '2.5',
           'data{type="whole"}': '2',
           'data{type="negative"}': '-2.5',
           'data{type="nwhole"}': '-2',
           'data{type="zero"}': '0',
           'data{type="nzero"}': '-0',
           'data{type="inf"}': '+Inf',
           'data{type="ninf"}': '-Inf',
           'data{type="nan"}': 'NaN',
           'data{type="small"}': '0.000123',
           'data{type="big"}': '1e300',
           'data{type="denormal"}': '5e-324',
           'data{type="ln3"}': '3',
           'data{type="eight"}': '8',
           'data{type="thousand"}': '1000',
           'data{type="near_overflow"}': '709.7827',
           'data{type="near_underflow"}': '-745.1'}),
 'clamp': ('5m',
           {'test_clamp{src="clamp-a"}': '-50',
            'test_clamp{src="clamp-b"}': '0',
            'test_clamp{src="clamp-c"}': '100',
            'test_clamp{src="clamp-nan"}': 'NaN'}),
 'dates': ('5m',
           {'ts{v="2006"}': '1136239445',
            'ts{v="leap_second_before"}': '1230767999',
            'ts{v="leap_day"}': '1456790399',
            'ts{v="leap_march"}': '1456790400',
            'ts{v="day366"}': '1483191420',
            'ts{v="day365"}': '1672493820',
            'ts{v="feb2016"}': '1454284800',
            'ts{v="feb2017"}': '1485907200',
            'ts{v="feb2000"}': '951782400',
            'ts{v="feb2100"}': '4107542400',
            'ts{v="negative"}': '-86401',
            'ts{v="fraction"}': '-0.5',
            'ts{v="year1"}': '-62135596800',
            'ts{v="year0"}': '-62135596801',
            'ts{v="year9999"}': '253402300799',
            'ts{v="year10000"}': '253402300800',
            'ts{v="huge"}': '1e19',
            'ts{v="nhuge"}': '-1e19',
            'ts{v="nan"}': 'NaN',
            'ts{v="inf"}': 'Inf'}),
 'labels': ('5m',
            {'testmetric{src="source-value-10",dst="original-destination-value"}': '0',
             'testmetric{src="source-value-20",dst="original-destination-value"}': '1',
             'joinmetric{src="a",src1="b",src2="c",dst="original-destination-value"}': '0',
             'joinmetric{src="d",src1="e",src2="f",dst="original-destination-value"}': '1'}),
 'histogram': ('5m',
               {'testhistogram_bucket{le="0.1", start="positive"}': '0+5x10',
                'testhistogram_bucket{le=".2", start="positive"}': '0+7x10',
                'testhistogram_bucket{le="1e0", start="positive"}': '0+11x10',
                'testhistogram_bucket{le="+Inf", start="positive"}': '0+12x10',
                'testhistogram_bucket{le="-.2", start="negative"}': '0+1x10',
                'testhistogram_bucket{le="-0.1", start="negative"}': '0+2x10',
                'testhistogram_bucket{le="0.3", start="negative"}': '0+2x10',
                'testhistogram_bucket{le="+Inf", start="negative"}': '0+3x10',
                'nonmonotonic_bucket{le="0.1"}': '0+2x10',
                'nonmonotonic_bucket{le="1"}': '0+1x10',
                'nonmonotonic_bucket{le="10"}': '0+5x10',
                'nonmonotonic_bucket{le="100"}': '0+4x10',
                'nonmonotonic_bucket{le="1000"}': '0+9x10',
                'nonmonotonic_bucket{le="+Inf"}': '0+8x10',
                'dup_bucket{le="1"}': '2x10',
                'dup_bucket{le="1.0"}': '3x10',
                'dup_bucket{le="2"}': '6x10',
                'dup_bucket{le="+Inf"}': '9x10',
                'noinf_bucket{le="1"}': '1x10',
                'noinf_bucket{le="2"}': '2x10',
                'onlyinf_bucket{le="+Inf"}': '5x10',
                'zero_bucket{le="1"}': '0x10',
                'zero_bucket{le="+Inf"}': '0x10',
                'nan_bucket{le="1"}': 'NaN+0x10',
                'nan_bucket{le="2"}': '3x10',
                'nan_bucket{le="+Inf"}': '4x10',
                'odd_bucket{le="0x1p-3"}': '1x10',
                'odd_bucket{le="1_0"}': '2x10',
                'odd_bucket{le="inf"}': '4x10',
                'odd_bucket{le="abc"}': '9x10',
                'odd_bucket{le=" 1"}': '9x10',
                'nole_bucket': '3x10'})}

# (load, function, selector metric, range s or None, eval time s, parameters, offset s) -> promtool 2.42's
# answer: {labels: value as promtool prints it} or ("error", message).
CASES = [
    ('resets', 'resets', 'http_requests', 300, 3000, (), 0,
     {'{path="/bar"}': '0E+00', '{path="/biz"}': '0E+00', '{path="/foo"}': '0E+00'}),
    ('resets', 'resets', 'http_requests', 600, 3000, (), 0,
     {'{path="/bar"}': '0E+00', '{path="/biz"}': '0E+00', '{path="/foo"}': '1E+00'}),
    ('resets', 'resets', 'http_requests', 1200, 3000, (), 0,
     {'{path="/bar"}': '0E+00', '{path="/biz"}': '0E+00', '{path="/foo"}': '1E+00'}),
    ('resets', 'resets', 'http_requests', 1800, 3000, (), 0,
     {'{path="/bar"}': '1E+00', '{path="/biz"}': '0E+00', '{path="/foo"}': '2E+00'}),
    ('resets', 'resets', 'http_requests', 1920, 3000, (), 0,
     {'{path="/bar"}': '1E+00', '{path="/biz"}': '0E+00', '{path="/foo"}': '2E+00'}),
    ('resets', 'resets', 'http_requests', 3000, 3000, (), 0,
     {'{path="/bar"}': '1E+00', '{path="/biz"}': '0E+00', '{path="/foo"}': '3E+00'}),
    ('resets', 'changes', 'http_requests', 300, 3000, (), 0,
     {'{path="/bar"}': '0E+00', '{path="/biz"}': '0E+00', '{path="/foo"}': '0E+00'}),
    ('resets', 'changes', 'http_requests', 600, 3000, (), 0,
     {'{path="/bar"}': '1E+00', '{path="/biz"}': '0E+00', '{path="/foo"}': '1E+00'}),
    ('resets', 'changes', 'http_requests', 1200, 3000, (), 0,
     {'{path="/bar"}': '3E+00', '{path="/biz"}': '0E+00', '{path="/foo"}': '3E+00'}),
    ('resets', 'changes', 'http_requests', 1800, 3000, (), 0,
     {'{path="/bar"}': '5E+00', '{path="/biz"}': '1E+00', '{path="/foo"}': '4E+00'}),
    ('resets', 'changes', 'http_requests', 1920, 3000, (), 0,
     {'{path="/bar"}': '5E+00', '{path="/biz"}': '1E+00', '{path="/foo"}': '4E+00'}),
    ('resets', 'changes', 'http_requests', 3000, 3000, (), 0,
     {'{path="/bar"}': '9E+00', '{path="/biz"}': '1E+00', '{path="/foo"}': '8E+00'}),
    ('resets', 'changes', 'x', 1200, 900, (), 0, {'{a="b"}': '0E+00', '{a="c"}': '2E+00'}),
    ('increase', 'increase', 'http_requests_total', 3000, 3000, (), 0,
     {'{path="/bar"}': '1.62E+02', '{path="/bumms"}': '1E+02', '{path="/dings"}': '1E+02', '{path="/foo"}': '1E+02'}),
    ('increase', 'increase', 'http_requests_total', 6000, 3000, (), 0,
     {'{path="/bar"}': '1.62E+02',
      '{path="/bumms"}': '1.01E+02',
      '{path="/dings"}': '1.1000000000000001E+02',
      '{path="/foo"}': '1E+02'}),
    ('increase', 'increase', 'http_requests_total', 3000, 3060, (), 0,
     {'{path="/bar"}': '1.6E+02', '{path="/bumms"}': '1E+02', '{path="/dings"}': '1E+02', '{path="/foo"}': '1E+02'}),
    ('increase', 'increase', 'reset_total', 1800, 1800, (), 0, {'{path="/foo"}': '7E+00'}),
    ('increase', 'rate', 'testcounter_reset_middle_total', 3000, 3000, (), 0, {'{}': '8.1E-02'}),
    ('increase', 'rate', 'testcounter_reset_end_total', 300, 3000, (), 0, {'{}': '0E+00'}),
    ('increase', 'rate', 'testcounter_reset_end_total', 360, 3000, (), 0, {'{}': '0E+00'}),
    ('increase', 'rate', 'calculate_rate_offset_total', 600, 3000, (), 300,
     {'{x="a"}': '3.333333333333333E-02', '{x="b"}': '6.666666666666667E-02'}),
    ('increase', 'rate', 'http_requests_total', 1000, 2233, (), 0,
     {'{path="/bar"}': '3.0000000000000002E-02',
      '{path="/bumms"}': '3.333333333333333E-02',
      '{path="/dings"}': '3.333333333333333E-02',
      '{path="/foo"}': '3.333333333333333E-02'}),
    ('increase', 'delta', 'gauge', 1200, 1200, (), 0, {'{path="/bar"}': '-2E+02', '{path="/foo"}': '2E+02'}),
    ('increase', 'delta', 'gauge', 1000, 1020, (), 0,
     {'{path="/bar"}': '-1.6666666666666669E+02', '{path="/foo"}': '1.6666666666666669E+02'}),
    ('increase', 'increase', 'negative_total', 1200, 1200, (), 0, {'{}': '1.8E+01'}),
    ('increase', 'rate', 'sparse_total', 2700, 2700, (), 0, {'{}': '7.037037037037037E-03'}),
    ('increase', 'increase', 'sparse_total', 1500, 2700, (), 0, {'{}': '1.375E+01'}),
    ('zero_cutoff', 'rate', 'testcounter_zero_cutoff_total', 1200, 600, (), 0,
     {'{start="0m"}': '5E-01',
      '{start="1m"}': '5.5E-01',
      '{start="2m"}': '6E-01',
      '{start="3m"}': '6.5E-01',
      '{start="4m"}': '7.000000000000001E-01',
      '{start="5m"}': '6E-01'}),
    ('zero_cutoff', 'rate', 'testcounter_zero_cutoff_total', 1200, 3000, (), 0,
     {'{start="0m"}': '6E-01',
      '{start="1m"}': '6E-01',
      '{start="2m"}': '6E-01',
      '{start="3m"}': '6E-01',
      '{start="4m"}': '6E-01',
      '{start="5m"}': '6E-01'}),
    ('zero_cutoff', 'increase', 'testcounter_zero_cutoff_total', 600, 420, (), 0,
     {'{start="0m"}': '4.2E+02',
      '{start="1m"}': '4.8E+02',
      '{start="2m"}': '5.4E+02',
      '{start="3m"}': '6E+02',
      '{start="4m"}': '6E+02',
      '{start="5m"}': '6E+02'}),
    ('irate', 'irate', 'http_requests_total', 3000, 3000, (), 0,
     {'{path="/bar"}': '3.333333333333333E-02', '{path="/foo"}': '3.333333333333333E-02'}),
    ('irate', 'irate', 'http_requests_total', 3000, 1800, (), 0,
     {'{path="/bar"}': '0E+00', '{path="/foo"}': '3.333333333333333E-02'}),
    ('irate', 'irate', 'http_requests_nan', 901, 1200, (), 0, {'{}': '2E-02'}),
    ('irate', 'irate', 'http_requests_nan', 901, 600, (), 0, {'{}': 'NaN'}),
    ('irate', 'idelta', 'idelta_gauge', 1200, 1200, (), 0, {'{path="/bar"}': '-5E+01', '{path="/foo"}': '5E+01'}),
    ('irate', 'idelta', 'http_requests_nan', 901, 1200, (), 0, {'{}': '6E+00'}),
    ('deriv', 'rate', 'http_requests_total', 3000, 3000, (), 0,
     {'{group="canary", instance="1", job="app-server"}': '2.6666666666666666E-01'}),
    ('deriv', 'deriv', 'http_requests_total', 3000, 3000, (), 0,
     {'{group="canary", instance="1", job="app-server"}': '2.6666666666666666E-01'}),
    ('deriv', 'deriv', 'testcounter_reset_middle_total', 6000, 3000, (), 0, {'{}': '1.0606060606060607E-02'}),
    ('deriv', 'deriv', 'http_requests_inf', 6000, 6000, (), 0,
     {'{group="canary", instance="1", job="app-server"}': 'NaN'}),
    ('deriv', 'deriv', 'constant', 3000, 3000, (), 0, {'{}': '0E+00'}),
    ('deriv', 'deriv', 'constant_inf', 3000, 3000, (), 0, {'{}': 'NaN'}),
    ('deriv', 'predict_linear', 'testcounter_reset_middle_total', 3000, 3000, (3600,), 0,
     {'{}': '7.681818181818181E+01'}),
    ('deriv', 'predict_linear', 'testcounter_reset_middle_total', 6000, 3000, (3600,), 0,
     {'{}': '7.681818181818181E+01'}),
    ('deriv', 'predict_linear', 'testcounter_reset_middle_total', 3300, 3600, (3600,), 600,
     {'{}': '8.318181818181819E+01'}),
    ('deriv', 'predict_linear', 'http_requests_inf', 6000, 6000, (6000,), 0,
     {'{group="canary", instance="1", job="app-server"}': 'NaN'}),
    ('deriv', 'predict_linear', 'constant', 3000, 3000, (-100,), 0, {'{}': '5E+00'}),
    ('avg', 'avg_over_time', 'metric', 60, 55, (), 0, {'{}': '3E+00'}),
    ('avg', 'avg_over_time', 'metric2', 60, 55, (), 0, {'{}': '+Inf'}),
    ('avg', 'avg_over_time', 'metric3', 60, 55, (), 0, {'{}': '-Inf'}),
    ('avg', 'avg_over_time', 'metric4', 60, 55, (), 0, {'{}': 'NaN'}),
    ('avg', 'avg_over_time', 'metric5', 60, 55, (), 0, {'{}': '+Inf'}),
    ('avg', 'avg_over_time', 'metric5c', 60, 55, (), 0, {'{}': 'NaN'}),
    ('avg', 'avg_over_time', 'metric6', 60, 55, (), 0, {'{}': '-Inf'}),
    ('avg', 'avg_over_time', 'metric6c', 60, 55, (), 0, {'{}': 'NaN'}),
    ('avg', 'avg_over_time', 'metric7', 60, 55, (), 0, {'{}': 'NaN'}),
    ('avg', 'avg_over_time', 'metric8', 60, 55, (), 0, {'{}': '9.98846567431158E+307'}),
    ('avg', 'avg_over_time', 'metric9', 60, 55, (), 0, {'{}': '-9.98846567431158E+307'}),
    ('avg', 'avg_over_time', 'metric10', 60, 55, (), 0, {'{}': '0E+00'}),
    ('avg', 'avg_over_time', 'metric11', 60, 55, (), 0, {'{}': 'NaN'}),
    ('avg', 'sum_over_time', 'metric', 60, 55, (), 0, {'{}': '1.5E+01'}),
    ('avg', 'sum_over_time', 'metric2', 60, 55, (), 0, {'{}': '+Inf'}),
    ('avg', 'sum_over_time', 'metric4', 60, 55, (), 0, {'{}': 'NaN'}),
    ('avg', 'sum_over_time', 'metric8', 60, 55, (), 0, {'{}': '+Inf'}),
    ('avg', 'sum_over_time', 'metric11', 60, 55, (), 0, {'{}': 'NaN'}),
    ('avg', 'avg_over_time', 'metric', 10, 55, (), 0, {}),
    ('avg', 'avg_over_time', 'metric', 20, 55, (), 0, {'{}': '5E+00'}),
    ('avg', 'avg_over_time', 'metric11', 60, 20, (), 0, {'{}': '2E+00'}),
    ('avg', 'avg_over_time', 'metric11', 60, 30, (), 0, {'{}': 'NaN'}),
    ('avg', 'sum_over_time', 'big', 120, 60, (), 0, {'{}': '2E+00'}),
    ('avg', 'avg_over_time', 'big', 120, 60, (), 0, {'{}': '-2.4283361152821613E+83'}),
    ('avg', 'avg_over_time', 'tenth', 300, 400, (), 0, {'{}': '1E-01'}),
    ('avg', 'avg_over_time', 'tenth', 90, 400, (), 0, {'{}': '1E-01'}),
    ('avg', 'sum_over_time', 'tenth', 300, 400, (), 0, {'{}': '3.1E+00'}),
    ('avg', 'avg_over_time', 'foo', 100, 600, (), 0, {'{}': '5.2E+01'}),
    ('avg', 'avg_over_time', 'foo', 130, 600, (), 0, {'{}': '5.2E+01'}),
    ('avg', 'avg_over_time', 'ramp', 200, 800, (), 0, {'{}': '4.930000000000005E+01'}),
    ('avg', 'avg_over_time', 'ramp', 600, 800, (), 0, {'{}': '3.53E+01'}),
    ('avg', 'sum_over_time', 'ramp', 600, 800, (), 0, {'{}': '2.1533000000000006E+03'}),
    ('avg', 'count_over_time', 'ramp', 600, 800, (), 0, {'{}': '6.1E+01'}),
    ('extreme', 'avg_over_time', 'metric1', 60, 55, (), 0, {'{}': '1.6666666666666677E+09'}),
    ('extreme', 'avg_over_time', 'metric2', 60, 55, (), 0, {'{}': '1.6718674458211247E+00'}),
    ('extreme', 'avg_over_time', 'metric3', 60, 55, (), 0, {'{}': '3.56528E+49'}),
    ('extreme', 'avg_over_time', 'metric4', 60, 55, (), 0, {'{}': '3.56528E+49'}),
    ('extreme', 'avg_over_time', 'metric5', 60, 55, (), 0, {'{}': '3.7633333333333335E+219'}),
    ('extreme', 'avg_over_time', 'metric6', 60, 55, (), 0, {'{}': '3.7633333333333335E+219'}),
    ('extreme', 'avg_over_time', 'metric8', 60, 55, (), 0, {'{}': '3.763303622666666E+219'}),
    ('extreme', 'avg_over_time', 'metric10', 60, 55, (), 0, {'{}': '2.508888888888889E+219'}),
    ('extreme', 'avg_over_time', 'metric11', 60, 55, (), 0, {'{}': '8.465270360815888E+203'}),
    ('extreme', 'sum_over_time', 'metric1', 60, 55, (), 0, {'{}': '1.0000000000000006E+10'}),
    ('extreme', 'sum_over_time', 'metric10', 60, 55, (), 0, {'{}': '2.258E+220'}),
    ('extreme', 'sum_over_time', 'metric11', 60, 55, (), 0, {'{}': '0E+00'}),
    ('stddev', 'stdvar_over_time', 'metric', 120, 60, (), 0, {'{}': '1.0559999999999999E+01'}),
    ('stddev', 'stddev_over_time', 'metric', 120, 60, (), 0, {'{}': '3.249615361854384E+00'}),
    ('stddev', 'stdvar_over_time', 'same', 60, 55, (), 0, {'{}': '0E+00'}),
    ('stddev', 'stddev_over_time', 'same', 60, 55, (), 0, {'{}': '0E+00'}),
    ('stddev', 'stddev_over_time', 'ramp', 200, 800, (), 0, {'{}': '4.238710495736505E+00'}),
    ('stddev', 'stdvar_over_time', 'ramp', 600, 800, (), 0, {'{}': '1.5190000000000066E+02'}),
    ('stddev', 'stddev_over_time', 'withinf', 60, 40, (), 0, {'{}': 'NaN'}),
    ('quantile', 'quantile_over_time', 'data', 120, 60, (0,), 0,
     {'{test="three samples"}': '0E+00',
      '{test="two samples"}': '0E+00',
      '{test="uneven samples"}': '0E+00',
      '{test="with nan"}': 'NaN'}),
    ('quantile', 'quantile_over_time', 'data', 120, 60, (0.5,), 0,
     {'{test="three samples"}': '1E+00',
      '{test="two samples"}': '5E-01',
      '{test="uneven samples"}': '1E+00',
      '{test="with nan"}': '1.5E+00'}),
    ('quantile', 'quantile_over_time', 'data', 120, 60, (0.75,), 0,
     {'{test="three samples"}': '1.5E+00',
      '{test="two samples"}': '7.5E-01',
      '{test="uneven samples"}': '2.5E+00',
      '{test="with nan"}': '2.25E+00'}),
    ('quantile', 'quantile_over_time', 'data', 120, 60, (0.8,), 0,
     {'{test="three samples"}': '1.6E+00',
      '{test="two samples"}': '8E-01',
      '{test="uneven samples"}': '2.8000000000000003E+00',
      '{test="with nan"}': '2.4000000000000004E+00'}),
    ('quantile', 'quantile_over_time', 'data', 120, 60, (1,), 0,
     {'{test="three samples"}': '2E+00',
      '{test="two samples"}': '1E+00',
      '{test="uneven samples"}': '4E+00',
      '{test="with nan"}': '3E+00'}),
    ('quantile', 'quantile_over_time', 'data', 120, 60, (-1,), 0,
     {'{test="three samples"}': '-Inf',
      '{test="two samples"}': '-Inf',
      '{test="uneven samples"}': '-Inf',
      '{test="with nan"}': '-Inf'}),
    ('quantile', 'quantile_over_time', 'data', 120, 60, (2,), 0,
     {'{test="three samples"}': '+Inf',
      '{test="two samples"}': '+Inf',
      '{test="uneven samples"}': '+Inf',
      '{test="with nan"}': '+Inf'}),
    ('quantile', 'quantile_over_time', 'data', 120, 60, ('NaN',), 0,
     {'{test="three samples"}': 'NaN',
      '{test="two samples"}': 'NaN',
      '{test="uneven samples"}': 'NaN',
      '{test="with nan"}': 'NaN'}),
    ('over_time', 'min_over_time', 'data', 120, 60, (), 0,
     {'{type="numbers"}': '0E+00',
      '{type="only_nan"}': 'NaN',
      '{type="some_nan"}': '0E+00',
      '{type="some_nan2"}': '1E+00',
      '{type="some_nan3"}': '0E+00',
      '{type="sparse_numbers"}': '2E+00'}),
    ('over_time', 'max_over_time', 'data', 120, 60, (), 0,
     {'{type="numbers"}': '3E+00',
      '{type="only_nan"}': 'NaN',
      '{type="some_nan"}': '2E+00',
      '{type="some_nan2"}': '2E+00',
      '{type="some_nan3"}': '1E+00',
      '{type="sparse_numbers"}': '5E+00'}),
    ('over_time', 'last_over_time', 'data', 120, 60, (), 0,
     {'{__name__="data", type="numbers"}': '3E+00',
      '{__name__="data", type="only_nan"}': 'NaN',
      '{__name__="data", type="some_nan"}': 'NaN',
      '{__name__="data", type="some_nan2"}': '1E+00',
      '{__name__="data", type="some_nan3"}': '1E+00',
      '{__name__="data", type="sparse_numbers"}': '4E+00'}),
    ('over_time', 'count_over_time', 'data', 120, 60, (), 0,
     {'{type="numbers"}': '3E+00',
      '{type="only_nan"}': '3E+00',
      '{type="some_nan"}': '3E+00',
      '{type="some_nan2"}': '3E+00',
      '{type="some_nan3"}': '3E+00',
      '{type="sparse_numbers"}': '3E+00'}),
    ('over_time', 'present_over_time', 'data', 120, 60, (), 0,
     {'{type="numbers"}': '1E+00',
      '{type="only_nan"}': '1E+00',
      '{type="some_nan"}': '1E+00',
      '{type="some_nan2"}': '1E+00',
      '{type="some_nan3"}': '1E+00',
      '{type="sparse_numbers"}': '1E+00'}),
    ('over_time', 'changes', 'data', 120, 60, (), 0,
     {'{type="numbers"}': '2E+00',
      '{type="only_nan"}': '0E+00',
      '{type="some_nan"}': '2E+00',
      '{type="some_nan2"}': '2E+00',
      '{type="some_nan3"}': '2E+00',
      '{type="sparse_numbers"}': '2E+00'}),
    ('over_time', 'resets', 'data', 120, 60, (), 0,
     {'{type="numbers"}': '1E+00',
      '{type="only_nan"}': '0E+00',
      '{type="some_nan"}': '1E+00',
      '{type="some_nan2"}': '0E+00',
      '{type="some_nan3"}': '0E+00',
      '{type="sparse_numbers"}': '1E+00'}),
    ('over_time', 'sum_over_time', 'data', 120, 60, (), 0,
     {'{type="numbers"}': '5E+00',
      '{type="only_nan"}': 'NaN',
      '{type="some_nan"}': 'NaN',
      '{type="some_nan2"}': 'NaN',
      '{type="some_nan3"}': 'NaN',
      '{type="sparse_numbers"}': '1.1E+01'}),
    ('over_time', 'avg_over_time', 'data', 120, 60, (), 0,
     {'{type="numbers"}': '1.6666666666666667E+00',
      '{type="only_nan"}': 'NaN',
      '{type="some_nan"}': 'NaN',
      '{type="some_nan2"}': 'NaN',
      '{type="some_nan3"}': 'NaN',
      '{type="sparse_numbers"}': '3.6666666666666665E+00'}),
    ('over_time', 'last_over_time', 'data', 20, 15, (), 0,
     {'{__name__="data", type="numbers"}': '0E+00',
      '{__name__="data", type="only_nan"}': 'NaN',
      '{__name__="data", type="some_nan"}': '0E+00',
      '{__name__="data", type="some_nan2"}': 'NaN',
      '{__name__="data", type="some_nan3"}': '0E+00',
      '{__name__="data", type="sparse_numbers"}': '5E+00'}),
    ('over_time', 'count_over_time', 'data', 20, 15, (), 0,
     {'{type="numbers"}': '2E+00',
      '{type="only_nan"}': '2E+00',
      '{type="some_nan"}': '2E+00',
      '{type="some_nan2"}': '2E+00',
      '{type="some_nan3"}': '2E+00',
      '{type="sparse_numbers"}': '1E+00'}),
    ('math', 'abs', 'data', None, 0, (), 0,
     {'{type="big"}': '1E+300',
      '{type="denormal"}': '5E-324',
      '{type="eight"}': '8E+00',
      '{type="inf"}': '+Inf',
      '{type="ln3"}': '3E+00',
      '{type="nan"}': 'NaN',
      '{type="near_overflow"}': '7.097827E+02',
      '{type="near_underflow"}': '7.451E+02',
      '{type="negative"}': '2.5E+00',
      '{type="ninf"}': '+Inf',
      '{type="nwhole"}': '2E+00',
      '{type="nzero"}': '0E+00',
      '{type="positive"}': '2.5E+00',
      '{type="small"}': '1.23E-04',
      '{type="thousand"}': '1E+03',
      '{type="whole"}': '2E+00',
      '{type="zero"}': '0E+00'}),
    ('math', 'ceil', 'data', None, 0, (), 0,
     {'{type="big"}': '1E+300',
      '{type="denormal"}': '1E+00',
      '{type="eight"}': '8E+00',
      '{type="inf"}': '+Inf',
      '{type="ln3"}': '3E+00',
      '{type="nan"}': 'NaN',
      '{type="near_overflow"}': '7.1E+02',
      '{type="near_underflow"}': '-7.45E+02',
      '{type="negative"}': '-2E+00',
      '{type="ninf"}': '-Inf',
      '{type="nwhole"}': '-2E+00',
      '{type="nzero"}': '-0E+00',
      '{type="positive"}': '3E+00',
      '{type="small"}': '1E+00',
      '{type="thousand"}': '1E+03',
      '{type="whole"}': '2E+00',
      '{type="zero"}': '0E+00'}),
    ('math', 'floor', 'data', None, 0, (), 0,
     {'{type="big"}': '1E+300',
      '{type="denormal"}': '0E+00',
      '{type="eight"}': '8E+00',
      '{type="inf"}': '+Inf',
      '{type="ln3"}': '3E+00',
      '{type="nan"}': 'NaN',
      '{type="near_overflow"}': '7.09E+02',
      '{type="near_underflow"}': '-7.46E+02',
      '{type="negative"}': '-3E+00',
      '{type="ninf"}': '-Inf',
      '{type="nwhole"}': '-2E+00',
      '{type="nzero"}': '-0E+00',
      '{type="positive"}': '2E+00',
      '{type="small"}': '0E+00',
      '{type="thousand"}': '1E+03',
      '{type="whole"}': '2E+00',
      '{type="zero"}': '0E+00'}),
    ('math', 'round', 'data', None, 0, (), 0,
     {'{type="big"}': '1E+300',
      '{type="denormal"}': '0E+00',
      '{type="eight"}': '8E+00',
      '{type="inf"}': '+Inf',
      '{type="ln3"}': '3E+00',
      '{type="nan"}': 'NaN',
      '{type="near_overflow"}': '7.1E+02',
      '{type="near_underflow"}': '-7.45E+02',
      '{type="negative"}': '-2E+00',
      '{type="ninf"}': '-Inf',
      '{type="nwhole"}': '-2E+00',
      '{type="nzero"}': '0E+00',
      '{type="positive"}': '3E+00',
      '{type="small"}': '0E+00',
      '{type="thousand"}': '1E+03',
      '{type="whole"}': '2E+00',
      '{type="zero"}': '0E+00'}),
    ('math', 'sqrt', 'data', None, 0, (), 0,
     {'{type="big"}': '1E+150',
      '{type="denormal"}': '2.2227587494850775E-162',
      '{type="eight"}': '2.8284271247461903E+00',
      '{type="inf"}': '+Inf',
      '{type="ln3"}': '1.7320508075688772E+00',
      '{type="nan"}': 'NaN',
      '{type="near_overflow"}': '2.6641747315069257E+01',
      '{type="near_underflow"}': 'NaN',
      '{type="negative"}': 'NaN',
      '{type="ninf"}': 'NaN',
      '{type="nwhole"}': 'NaN',
      '{type="nzero"}': '-0E+00',
      '{type="positive"}': '1.5811388300841898E+00',
      '{type="small"}': '1.1090536506409418E-02',
      '{type="thousand"}': '3.1622776601683793E+01',
      '{type="whole"}': '1.4142135623730951E+00',
      '{type="zero"}': '0E+00'}),
    ('math', 'exp', 'data', None, 0, (), 0,
     {'{type="big"}': '+Inf',
      '{type="denormal"}': '1E+00',
      '{type="eight"}': '2.9809579870417283E+03',
      '{type="inf"}': '+Inf',
      '{type="ln3"}': '2.0085536923187668E+01',
      '{type="nan"}': 'NaN',
      '{type="near_overflow"}': '+Inf',
      '{type="near_underflow"}': '5E-324',
      '{type="negative"}': '8.20849986238988E-02',
      '{type="ninf"}': '0E+00',
      '{type="nwhole"}': '1.353352832366127E-01',
      '{type="nzero"}': '1E+00',
      '{type="positive"}': '1.2182493960703473E+01',
      '{type="small"}': '1.0001230075648102E+00',
      '{type="thousand"}': '+Inf',
      '{type="whole"}': '7.38905609893065E+00',
      '{type="zero"}': '1E+00'}),
    ('math', 'ln', 'data', None, 0, (), 0,
     {'{type="big"}': '6.907755278982137E+02',
      '{type="denormal"}': '-7.090895657128241E+02',
      '{type="eight"}': '2.0794415416798357E+00',
      '{type="inf"}': '+Inf',
      '{type="ln3"}': '1.0986122886681096E+00',
      '{type="nan"}': 'NaN',
      '{type="near_overflow"}': '6.564958866852534E+00',
      '{type="near_underflow"}': 'NaN',
      '{type="negative"}': 'NaN',
      '{type="ninf"}': 'NaN',
      '{type="nwhole"}': 'NaN',
      '{type="nzero"}': '-Inf',
      '{type="positive"}': '9.162907318741551E-01',
      '{type="small"}': '-9.003326202591856E+00',
      '{type="thousand"}': '6.907755278982137E+00',
      '{type="whole"}': '6.931471805599453E-01',
      '{type="zero"}': '-Inf'}),
    ('math', 'log2', 'data', None, 0, (), 0,
     {'{type="big"}': '9.965784284662087E+02',
      '{type="denormal"}': '-1.074E+03',
      '{type="eight"}': '3E+00',
      '{type="inf"}': '+Inf',
      '{type="ln3"}': '1.5849625007211563E+00',
      '{type="nan"}': 'NaN',
      '{type="near_overflow"}': '9.471233600848178E+00',
      '{type="near_underflow"}': 'NaN',
      '{type="negative"}': 'NaN',
      '{type="ninf"}': 'NaN',
      '{type="nwhole"}': 'NaN',
      '{type="nzero"}': '-Inf',
      '{type="positive"}': '1.3219280948873622E+00',
      '{type="small"}': '-1.2989054063984934E+01',
      '{type="thousand"}': '9.965784284662087E+00',
      '{type="whole"}': '1E+00',
      '{type="zero"}': '-Inf'}),
    ('math', 'log10', 'data', None, 0, (), 0,
     {'{type="big"}': '3E+02',
      '{type="denormal"}': '-3.079536855642528E+02',
      '{type="eight"}': '9.030899869919435E-01',
      '{type="inf"}': '+Inf',
      '{type="ln3"}': '4.771212547196624E-01',
      '{type="nan"}': 'NaN',
      '{type="near_overflow"}': '2.85112540979588E+00',
      '{type="near_underflow"}': 'NaN',
      '{type="negative"}': 'NaN',
      '{type="ninf"}': 'NaN',
      '{type="nwhole"}': 'NaN',
      '{type="nzero"}': '-Inf',
      '{type="positive"}': '3.979400086720376E-01',
      '{type="small"}': '-3.9100948885606015E+00',
      '{type="thousand"}': '3E+00',
      '{type="whole"}': '3.010299956639812E-01',
      '{type="zero"}': '-Inf'}),
    ('math', 'timestamp', 'data', None, 0, (), 0,
     {'{type="big"}': '0E+00',
      '{type="denormal"}': '0E+00',
      '{type="eight"}': '0E+00',
      '{type="inf"}': '0E+00',
      '{type="ln3"}': '0E+00',
      '{type="nan"}': '0E+00',
      '{type="near_overflow"}': '0E+00',
      '{type="near_underflow"}': '0E+00',
      '{type="negative"}': '0E+00',
      '{type="ninf"}': '0E+00',
      '{type="nwhole"}': '0E+00',
      '{type="nzero"}': '0E+00',
      '{type="positive"}': '0E+00',
      '{type="small"}': '0E+00',
      '{type="thousand"}': '0E+00',
      '{type="whole"}': '0E+00',
      '{type="zero"}': '0E+00'}),
    ('math', 'round', 'data', None, 0, (0.3,), 0,
     {'{type="big"}': '1E+300',
      '{type="denormal"}': '0E+00',
      '{type="eight"}': '8.1E+00',
      '{type="inf"}': '+Inf',
      '{type="ln3"}': '3E+00',
      '{type="nan"}': 'NaN',
      '{type="near_overflow"}': '7.098E+02',
      '{type="near_underflow"}': '-7.451999999999999E+02',
      '{type="negative"}': '-2.4E+00',
      '{type="ninf"}': '-Inf',
      '{type="nwhole"}': '-2.1E+00',
      '{type="nzero"}': '0E+00',
      '{type="positive"}': '2.4E+00',
      '{type="small"}': '0E+00',
      '{type="thousand"}': '9.999E+02',
      '{type="whole"}': '2.1E+00',
      '{type="zero"}': '0E+00'}),
    ('math', 'round', 'data', None, 0, (5,), 0,
     {'{type="big"}': '1E+300',
      '{type="denormal"}': '0E+00',
      '{type="eight"}': '1E+01',
      '{type="inf"}': '+Inf',
      '{type="ln3"}': '5E+00',
      '{type="nan"}': 'NaN',
      '{type="near_overflow"}': '7.1E+02',
      '{type="near_underflow"}': '-7.45E+02',
      '{type="negative"}': '0E+00',
      '{type="ninf"}': '-Inf',
      '{type="nwhole"}': '0E+00',
      '{type="nzero"}': '0E+00',
      '{type="positive"}': '5E+00',
      '{type="small"}': '0E+00',
      '{type="thousand"}': '1E+03',
      '{type="whole"}': '0E+00',
      '{type="zero"}': '0E+00'}),
    ('math', 'round', 'data', None, 0, (-2,), 0,
     {'{type="big"}': '1E+300',
      '{type="denormal"}': '-0E+00',
      '{type="eight"}': '8E+00',
      '{type="inf"}': '+Inf',
      '{type="ln3"}': '2E+00',
      '{type="nan"}': 'NaN',
      '{type="near_overflow"}': '7.1E+02',
      '{type="near_underflow"}': '-7.46E+02',
      '{type="negative"}': '-2E+00',
      '{type="ninf"}': '-Inf',
      '{type="nwhole"}': '-2E+00',
      '{type="nzero"}': '-0E+00',
      '{type="positive"}': '2E+00',
      '{type="small"}': '-0E+00',
      '{type="thousand"}': '1E+03',
      '{type="whole"}': '2E+00',
      '{type="zero"}': '-0E+00'}),
    ('math', 'round', 'data', None, 0, (0,), 0,
     {'{type="big"}': 'NaN',
      '{type="denormal"}': 'NaN',
      '{type="eight"}': 'NaN',
      '{type="inf"}': 'NaN',
      '{type="ln3"}': 'NaN',
      '{type="nan"}': 'NaN',
      '{type="near_overflow"}': 'NaN',
      '{type="near_underflow"}': 'NaN',
      '{type="negative"}': 'NaN',
      '{type="ninf"}': 'NaN',
      '{type="nwhole"}': 'NaN',
      '{type="nzero"}': 'NaN',
      '{type="positive"}': 'NaN',
      '{type="small"}': 'NaN',
      '{type="thousand"}': 'NaN',
      '{type="whole"}': 'NaN',
      '{type="zero"}': 'NaN'}),
    ('math', 'round', 'data', None, 0, ('Inf',), 0,
     {'{type="big"}': 'NaN',
      '{type="denormal"}': 'NaN',
      '{type="eight"}': 'NaN',
      '{type="inf"}': 'NaN',
      '{type="ln3"}': 'NaN',
      '{type="nan"}': 'NaN',
      '{type="near_overflow"}': 'NaN',
      '{type="near_underflow"}': 'NaN',
      '{type="negative"}': 'NaN',
      '{type="ninf"}': 'NaN',
      '{type="nwhole"}': 'NaN',
      '{type="nzero"}': 'NaN',
      '{type="positive"}': 'NaN',
      '{type="small"}': 'NaN',
      '{type="thousand"}': 'NaN',
      '{type="whole"}': 'NaN',
      '{type="zero"}': 'NaN'}),
    ('clamp', 'clamp_max', 'test_clamp', None, 0, (75,), 0,
     {'{src="clamp-a"}': '-5E+01',
      '{src="clamp-b"}': '0E+00',
      '{src="clamp-c"}': '7.5E+01',
      '{src="clamp-nan"}': 'NaN'}),
    ('clamp', 'clamp_min', 'test_clamp', None, 0, (-25,), 0,
     {'{src="clamp-a"}': '-2.5E+01',
      '{src="clamp-b"}': '0E+00',
      '{src="clamp-c"}': '1E+02',
      '{src="clamp-nan"}': 'NaN'}),
    ('clamp', 'clamp', 'test_clamp', None, 0, (-25, 75), 0,
     {'{src="clamp-a"}': '-2.5E+01',
      '{src="clamp-b"}': '0E+00',
      '{src="clamp-c"}': '7.5E+01',
      '{src="clamp-nan"}': 'NaN'}),
    ('clamp', 'clamp', 'test_clamp', None, 0, (0, 'NaN'), 0,
     {'{src="clamp-a"}': 'NaN', '{src="clamp-b"}': 'NaN', '{src="clamp-c"}': 'NaN', '{src="clamp-nan"}': 'NaN'}),
    ('clamp', 'clamp', 'test_clamp', None, 0, ('NaN', 0), 0,
     {'{src="clamp-a"}': 'NaN', '{src="clamp-b"}': 'NaN', '{src="clamp-c"}': 'NaN', '{src="clamp-nan"}': 'NaN'}),
    ('clamp', 'clamp', 'test_clamp', None, 0, (5, -5), 0, {}),
    ('clamp', 'clamp_max', 'test_clamp', None, 0, ('NaN',), 0,
     {'{src="clamp-a"}': 'NaN', '{src="clamp-b"}': 'NaN', '{src="clamp-c"}': 'NaN', '{src="clamp-nan"}': 'NaN'}),
    ('clamp', 'clamp_min', 'test_clamp', None, 0, ('-Inf',), 0,
     {'{src="clamp-a"}': '-5E+01',
      '{src="clamp-b"}': '0E+00',
      '{src="clamp-c"}': '1E+02',
      '{src="clamp-nan"}': 'NaN'}),
    ('dates', 'year', 'ts', None, 0, (), 0,
     {'{v="2006"}': '2.006E+03',
      '{v="day365"}': '2.022E+03',
      '{v="day366"}': '2.016E+03',
      '{v="feb2000"}': '2E+03',
      '{v="feb2016"}': '2.016E+03',
      '{v="feb2017"}': '2.017E+03',
      '{v="feb2100"}': '2.1E+03',
      '{v="fraction"}': '1.97E+03',
      '{v="huge"}': '2.92277026596E+11',
      '{v="inf"}': '2.92277026596E+11',
      '{v="leap_day"}': '2.016E+03',
      '{v="leap_march"}': '2.016E+03',
      '{v="leap_second_before"}': '2.008E+03',
      '{v="nan"}': '2.92277026596E+11',
      '{v="negative"}': '1.969E+03',
      '{v="nhuge"}': '2.92277026596E+11',
      '{v="year0"}': '0E+00',
      '{v="year1"}': '1E+00',
      '{v="year10000"}': '1E+04',
      '{v="year9999"}': '9.999E+03'}),
    ('dates', 'month', 'ts', None, 0, (), 0,
     {'{v="2006"}': '1E+00',
      '{v="day365"}': '1.2E+01',
      '{v="day366"}': '1.2E+01',
      '{v="feb2000"}': '2E+00',
      '{v="feb2016"}': '2E+00',
      '{v="feb2017"}': '2E+00',
      '{v="feb2100"}': '3E+00',
      '{v="fraction"}': '1E+00',
      '{v="huge"}': '1.2E+01',
      '{v="inf"}': '1.2E+01',
      '{v="leap_day"}': '2E+00',
      '{v="leap_march"}': '3E+00',
      '{v="leap_second_before"}': '1.2E+01',
      '{v="nan"}': '1.2E+01',
      '{v="negative"}': '1.2E+01',
      '{v="nhuge"}': '1.2E+01',
      '{v="year0"}': '1.2E+01',
      '{v="year1"}': '1E+00',
      '{v="year10000"}': '1E+00',
      '{v="year9999"}': '1.2E+01'}),
    ('dates', 'day_of_month', 'ts', None, 0, (), 0,
     {'{v="2006"}': '2E+00',
      '{v="day365"}': '3.1E+01',
      '{v="day366"}': '3.1E+01',
      '{v="feb2000"}': '2.9E+01',
      '{v="feb2016"}': '1E+00',
      '{v="feb2017"}': '1E+00',
      '{v="feb2100"}': '1E+00',
      '{v="fraction"}': '1E+00',
      '{v="huge"}': '4E+00',
      '{v="inf"}': '4E+00',
      '{v="leap_day"}': '2.9E+01',
      '{v="leap_march"}': '1E+00',
      '{v="leap_second_before"}': '3.1E+01',
      '{v="nan"}': '4E+00',
      '{v="negative"}': '3E+01',
      '{v="nhuge"}': '4E+00',
      '{v="year0"}': '3.1E+01',
      '{v="year1"}': '1E+00',
      '{v="year10000"}': '1E+00',
      '{v="year9999"}': '3.1E+01'}),
    ('dates', 'day_of_year', 'ts', None, 0, (), 0,
     {'{v="2006"}': '2E+00',
      '{v="day365"}': '3.65E+02',
      '{v="day366"}': '3.66E+02',
      '{v="feb2000"}': '6E+01',
      '{v="feb2016"}': '3.2E+01',
      '{v="feb2017"}': '3.2E+01',
      '{v="feb2100"}': '6E+01',
      '{v="fraction"}': '1E+00',
      '{v="huge"}': '3.39E+02',
      '{v="inf"}': '3.39E+02',
      '{v="leap_day"}': '6E+01',
      '{v="leap_march"}': '6.1E+01',
      '{v="leap_second_before"}': '3.66E+02',
      '{v="nan"}': '3.39E+02',
      '{v="negative"}': '3.64E+02',
      '{v="nhuge"}': '3.39E+02',
      '{v="year0"}': '3.66E+02',
      '{v="year1"}': '1E+00',
      '{v="year10000"}': '1E+00',
      '{v="year9999"}': '3.65E+02'}),
    ('dates', 'day_of_week', 'ts', None, 0, (), 0,
     {'{v="2006"}': '1E+00',
      '{v="day365"}': '6E+00',
      '{v="day366"}': '6E+00',
      '{v="feb2000"}': '2E+00',
      '{v="feb2016"}': '1E+00',
      '{v="feb2017"}': '3E+00',
      '{v="feb2100"}': '1E+00',
      '{v="fraction"}': '4E+00',
      '{v="huge"}': '0E+00',
      '{v="inf"}': '0E+00',
      '{v="leap_day"}': '1E+00',
      '{v="leap_march"}': '2E+00',
      '{v="leap_second_before"}': '3E+00',
      '{v="nan"}': '0E+00',
      '{v="negative"}': '2E+00',
      '{v="nhuge"}': '0E+00',
      '{v="year0"}': '0E+00',
      '{v="year1"}': '1E+00',
      '{v="year10000"}': '6E+00',
      '{v="year9999"}': '5E+00'}),
    ('dates', 'hour', 'ts', None, 0, (), 0,
     {'{v="2006"}': '2.2E+01',
      '{v="day365"}': '1.3E+01',
      '{v="day366"}': '1.3E+01',
      '{v="feb2000"}': '0E+00',
      '{v="feb2016"}': '0E+00',
      '{v="feb2017"}': '0E+00',
      '{v="feb2100"}': '0E+00',
      '{v="fraction"}': '0E+00',
      '{v="huge"}': '1.5E+01',
      '{v="inf"}': '1.5E+01',
      '{v="leap_day"}': '2.3E+01',
      '{v="leap_march"}': '0E+00',
      '{v="leap_second_before"}': '2.3E+01',
      '{v="nan"}': '1.5E+01',
      '{v="negative"}': '2.3E+01',
      '{v="nhuge"}': '1.5E+01',
      '{v="year0"}': '2.3E+01',
      '{v="year1"}': '0E+00',
      '{v="year10000"}': '0E+00',
      '{v="year9999"}': '2.3E+01'}),
    ('dates', 'minute', 'ts', None, 0, (), 0,
     {'{v="2006"}': '4E+00',
      '{v="day365"}': '3.7E+01',
      '{v="day366"}': '3.7E+01',
      '{v="feb2000"}': '0E+00',
      '{v="feb2016"}': '0E+00',
      '{v="feb2017"}': '0E+00',
      '{v="feb2100"}': '0E+00',
      '{v="fraction"}': '0E+00',
      '{v="huge"}': '3E+01',
      '{v="inf"}': '3E+01',
      '{v="leap_day"}': '5.9E+01',
      '{v="leap_march"}': '0E+00',
      '{v="leap_second_before"}': '5.9E+01',
      '{v="nan"}': '3E+01',
      '{v="negative"}': '5.9E+01',
      '{v="nhuge"}': '3E+01',
      '{v="year0"}': '5.9E+01',
      '{v="year1"}': '0E+00',
      '{v="year10000"}': '0E+00',
      '{v="year9999"}': '5.9E+01'}),
    ('dates', 'days_in_month', 'ts', None, 0, (), 0,
     {'{v="2006"}': '3.1E+01',
      '{v="day365"}': '3.1E+01',
      '{v="day366"}': '3.1E+01',
      '{v="feb2000"}': '2.9E+01',
      '{v="feb2016"}': '2.9E+01',
      '{v="feb2017"}': '2.8E+01',
      '{v="feb2100"}': '3.1E+01',
      '{v="fraction"}': '3.1E+01',
      '{v="huge"}': '3.1E+01',
      '{v="inf"}': '3.1E+01',
      '{v="leap_day"}': '2.9E+01',
      '{v="leap_march"}': '3.1E+01',
      '{v="leap_second_before"}': '3.1E+01',
      '{v="nan"}': '3.1E+01',
      '{v="negative"}': '3.1E+01',
      '{v="nhuge"}': '3.1E+01',
      '{v="year0"}': '3.1E+01',
      '{v="year1"}': '3.1E+01',
      '{v="year10000"}': '3.1E+01',
      '{v="year9999"}': '3.1E+01'}),
    ('labels', 'label_replace', 'testmetric', None, 0, ('dst', 'destination-value-$1', 'src', 'source-value-(.*)'), 0,
     {'{__name__="testmetric", dst="destination-value-10", src="source-value-10"}': '0E+00',
      '{__name__="testmetric", dst="destination-value-20", src="source-value-20"}': '1E+00'}),
    ('labels', 'label_replace', 'testmetric', None, 0, ('dst', 'destination-value-$1', 'src', 'value-(.*)'), 0,
     {'{__name__="testmetric", dst="original-destination-value", src="source-value-10"}': '0E+00',
      '{__name__="testmetric", dst="original-destination-value", src="source-value-20"}': '1E+00'}),
    ('labels', 'label_replace', 'testmetric', None, 0, ('dst', '$1-value-$2', 'src', '(.*)-value-(.*)'), 0,
     {'{__name__="testmetric", dst="source-value-10", src="source-value-10"}': '0E+00',
      '{__name__="testmetric", dst="source-value-20", src="source-value-20"}': '1E+00'}),
    ('labels', 'label_replace', 'testmetric', None, 0, ('dst', 'value-$1', 'nonexistent-src', 'source-value-(.*)'), 0,
     {'{__name__="testmetric", dst="original-destination-value", src="source-value-10"}': '0E+00',
      '{__name__="testmetric", dst="original-destination-value", src="source-value-20"}': '1E+00'}),
    ('labels', 'label_replace', 'testmetric', None, 0, ('dst', 'value-$1', 'nonexistent-src', '(.*)'), 0,
     {'{__name__="testmetric", dst="value-", src="source-value-10"}': '0E+00',
      '{__name__="testmetric", dst="value-", src="source-value-20"}': '1E+00'}),
    ('labels', 'label_replace', 'testmetric', None, 0, ('dst', 'value-$1', 'src', 'non-matching-regex'), 0,
     {'{__name__="testmetric", dst="original-destination-value", src="source-value-10"}': '0E+00',
      '{__name__="testmetric", dst="original-destination-value", src="source-value-20"}': '1E+00'}),
    ('labels', 'label_replace', 'testmetric', None, 0, ('dst', '', 'dst', '.*'), 0,
     {'{__name__="testmetric", src="source-value-10"}': '0E+00',
      '{__name__="testmetric", src="source-value-20"}': '1E+00'}),
    ('labels', 'label_replace', 'testmetric', None, 0, ('dst', '${1}x$1x$$', 'src', 'source-(?P<x>[a-z]+)-\\d+'), 0,
     {'{__name__="testmetric", dst="valuex$", src="source-value-10"}': '0E+00',
      '{__name__="testmetric", dst="valuex$", src="source-value-20"}': '1E+00'}),
    ('labels', 'label_replace', 'testmetric', None, 0, ('__name__', 'renamed_$1', 'src', 'source-value-(\\d)0'), 0,
     {'{__name__="renamed_1", dst="original-destination-value", src="source-value-10"}': '0E+00',
      '{__name__="renamed_2", dst="original-destination-value", src="source-value-20"}': '1E+00'}),
    ('labels', 'label_replace', 'testmetric', None, 0, ('dst', 'value-$1', 'src', '(.*'), 0,
     ('error', 'invalid regular expression in label_replace(): (.*')),
    ('labels', 'label_replace', 'testmetric', None, 0, ('invalid-label-name', '', 'src', '(.*)'), 0,
     ('error', 'invalid destination label name in label_replace(): invalid-label-name')),
    ('labels', 'label_join', 'joinmetric', None, 0, ('dst', '-', 'src', 'src1', 'src2'), 0,
     {'{__name__="joinmetric", dst="a-b-c", src="a", src1="b", src2="c"}': '0E+00',
      '{__name__="joinmetric", dst="d-e-f", src="d", src1="e", src2="f"}': '1E+00'}),
    ('labels', 'label_join', 'joinmetric', None, 0, ('dst', '-', 'src', 'src3', 'src1'), 0,
     {'{__name__="joinmetric", dst="a--b", src="a", src1="b", src2="c"}': '0E+00',
      '{__name__="joinmetric", dst="d--e", src="d", src1="e", src2="f"}': '1E+00'}),
    ('labels', 'label_join', 'joinmetric', None, 0, ('dst', '', 'emptysrc', 'emptysrc1', 'emptysrc2'), 0,
     {'{__name__="joinmetric", src="a", src1="b", src2="c"}': '0E+00',
      '{__name__="joinmetric", src="d", src1="e", src2="f"}': '1E+00'}),
    ('labels', 'label_join', 'joinmetric', None, 0, ('dst', ', ', '__name__', 'src'), 0,
     {'{__name__="joinmetric", dst="joinmetric, a", src="a", src1="b", src2="c"}': '0E+00',
      '{__name__="joinmetric", dst="joinmetric, d", src="d", src1="e", src2="f"}': '1E+00'}),
    ('labels', 'label_join', 'joinmetric', None, 0, ('dst', '-', 'bad-src'), 0,
     ('error', 'invalid source label name in label_join(): bad-src')),
    ('labels', 'label_join', 'joinmetric', None, 0, ('bad-dst', '-', 'src'), 0,
     ('error', 'invalid destination label name in label_join(): bad-dst')),
    ('histogram', 'histogram_quantile', 'testhistogram_bucket', None, 3000, (0,), 0,
     {'{start="negative"}': '-2E-01', '{start="positive"}': '0E+00'}),
    ('histogram', 'histogram_quantile', 'nonmonotonic_bucket', None, 3000, (0,), 0, {'{}': '0E+00'}),
    ('histogram', 'histogram_quantile', 'dup_bucket', None, 3000, (0,), 0, {'{}': '0E+00'}),
    ('histogram', 'histogram_quantile', 'noinf_bucket', None, 3000, (0,), 0, {'{}': 'NaN'}),
    ('histogram', 'histogram_quantile', 'onlyinf_bucket', None, 3000, (0,), 0, {'{}': 'NaN'}),
    ('histogram', 'histogram_quantile', 'zero_bucket', None, 3000, (0,), 0, {'{}': 'NaN'}),
    ('histogram', 'histogram_quantile', 'nan_bucket', None, 3000, (0,), 0, {'{}': 'NaN'}),
    ('histogram', 'histogram_quantile', 'odd_bucket', None, 3000, (0,), 0, {'{}': '0E+00'}),
    ('histogram', 'histogram_quantile', 'nole_bucket', None, 3000, (0,), 0, {}),
    ('histogram', 'histogram_quantile', 'testhistogram_bucket', None, 3000, (0.2,), 0,
     {'{start="negative"}': '-2E-01', '{start="positive"}': '4.8E-02'}),
    ('histogram', 'histogram_quantile', 'nonmonotonic_bucket', None, 3000, (0.2,), 0,
     {'{}': '9.000000000000001E-02'}),
    ('histogram', 'histogram_quantile', 'dup_bucket', None, 3000, (0.2,), 0, {'{}': '3.6E-01'}),
    ('histogram', 'histogram_quantile', 'noinf_bucket', None, 3000, (0.2,), 0, {'{}': 'NaN'}),
    ('histogram', 'histogram_quantile', 'onlyinf_bucket', None, 3000, (0.2,), 0, {'{}': 'NaN'}),
    ('histogram', 'histogram_quantile', 'zero_bucket', None, 3000, (0.2,), 0, {'{}': 'NaN'}),
    ('histogram', 'histogram_quantile', 'nan_bucket', None, 3000, (0.2,), 0, {'{}': 'NaN'}),
    ('histogram', 'histogram_quantile', 'odd_bucket', None, 3000, (0.2,), 0, {'{}': '1E-01'}),
    ('histogram', 'histogram_quantile', 'nole_bucket', None, 3000, (0.2,), 0, {}),
    ('histogram', 'histogram_quantile', 'testhistogram_bucket', None, 3000, (0.5,), 0,
     {'{start="negative"}': '-1.5000000000000002E-01', '{start="positive"}': '1.5000000000000002E-01'}),
    ('histogram', 'histogram_quantile', 'nonmonotonic_bucket', None, 3000, (0.5,), 0, {'{}': '8.5E+00'}),
    ('histogram', 'histogram_quantile', 'dup_bucket', None, 3000, (0.5,), 0, {'{}': '9E-01'}),
    ('histogram', 'histogram_quantile', 'noinf_bucket', None, 3000, (0.5,), 0, {'{}': 'NaN'}),
    ('histogram', 'histogram_quantile', 'onlyinf_bucket', None, 3000, (0.5,), 0, {'{}': 'NaN'}),
    ('histogram', 'histogram_quantile', 'zero_bucket', None, 3000, (0.5,), 0, {'{}': 'NaN'}),
    ('histogram', 'histogram_quantile', 'nan_bucket', None, 3000, (0.5,), 0, {'{}': 'NaN'}),
    ('histogram', 'histogram_quantile', 'odd_bucket', None, 3000, (0.5,), 0, {'{}': '1E+01'}),
    ('histogram', 'histogram_quantile', 'nole_bucket', None, 3000, (0.5,), 0, {}),
    ('histogram', 'histogram_quantile', 'testhistogram_bucket', None, 3000, (0.8,), 0,
     {'{start="negative"}': '3E-01', '{start="positive"}': '7.2E-01'}),
    ('histogram', 'histogram_quantile', 'nonmonotonic_bucket', None, 3000, (0.8,), 0, {'{}': '5.95E+02'}),
    ('histogram', 'histogram_quantile', 'dup_bucket', None, 3000, (0.8,), 0, {'{}': '2E+00'}),
    ('histogram', 'histogram_quantile', 'noinf_bucket', None, 3000, (0.8,), 0, {'{}': 'NaN'}),
    ('histogram', 'histogram_quantile', 'onlyinf_bucket', None, 3000, (0.8,), 0, {'{}': 'NaN'}),
    ('histogram', 'histogram_quantile', 'zero_bucket', None, 3000, (0.8,), 0, {'{}': 'NaN'}),
    ('histogram', 'histogram_quantile', 'nan_bucket', None, 3000, (0.8,), 0, {'{}': '2E+00'}),
    ('histogram', 'histogram_quantile', 'odd_bucket', None, 3000, (0.8,), 0, {'{}': '1E+01'}),
    ('histogram', 'histogram_quantile', 'nole_bucket', None, 3000, (0.8,), 0, {}),
    ('histogram', 'histogram_quantile', 'testhistogram_bucket', None, 3000, (1,), 0,
     {'{start="negative"}': '3E-01', '{start="positive"}': '1E+00'}),
    ('histogram', 'histogram_quantile', 'nonmonotonic_bucket', None, 3000, (1,), 0, {'{}': '1E+03'}),
    ('histogram', 'histogram_quantile', 'dup_bucket', None, 3000, (1,), 0, {'{}': '2E+00'}),
    ('histogram', 'histogram_quantile', 'noinf_bucket', None, 3000, (1,), 0, {'{}': 'NaN'}),
    ('histogram', 'histogram_quantile', 'onlyinf_bucket', None, 3000, (1,), 0, {'{}': 'NaN'}),
    ('histogram', 'histogram_quantile', 'zero_bucket', None, 3000, (1,), 0, {'{}': 'NaN'}),
    ('histogram', 'histogram_quantile', 'nan_bucket', None, 3000, (1,), 0, {'{}': '2E+00'}),
    ('histogram', 'histogram_quantile', 'odd_bucket', None, 3000, (1,), 0, {'{}': '1E+01'}),
    ('histogram', 'histogram_quantile', 'nole_bucket', None, 3000, (1,), 0, {}),
    ('histogram', 'histogram_quantile', 'testhistogram_bucket', None, 3000, (-0.1,), 0,
     {'{start="negative"}': '-Inf', '{start="positive"}': '-Inf'}),
    ('histogram', 'histogram_quantile', 'nonmonotonic_bucket', None, 3000, (-0.1,), 0, {'{}': '-Inf'}),
    ('histogram', 'histogram_quantile', 'dup_bucket', None, 3000, (-0.1,), 0, {'{}': '-Inf'}),
    ('histogram', 'histogram_quantile', 'noinf_bucket', None, 3000, (-0.1,), 0, {'{}': '-Inf'}),
    ('histogram', 'histogram_quantile', 'onlyinf_bucket', None, 3000, (-0.1,), 0, {'{}': '-Inf'}),
    ('histogram', 'histogram_quantile', 'zero_bucket', None, 3000, (-0.1,), 0, {'{}': '-Inf'}),
    ('histogram', 'histogram_quantile', 'nan_bucket', None, 3000, (-0.1,), 0, {'{}': '-Inf'}),
    ('histogram', 'histogram_quantile', 'odd_bucket', None, 3000, (-0.1,), 0, {'{}': '-Inf'}),
    ('histogram', 'histogram_quantile', 'nole_bucket', None, 3000, (-0.1,), 0, {}),
    ('histogram', 'histogram_quantile', 'testhistogram_bucket', None, 3000, (1.1,), 0,
     {'{start="negative"}': '+Inf', '{start="positive"}': '+Inf'}),
    ('histogram', 'histogram_quantile', 'nonmonotonic_bucket', None, 3000, (1.1,), 0, {'{}': '+Inf'}),
    ('histogram', 'histogram_quantile', 'dup_bucket', None, 3000, (1.1,), 0, {'{}': '+Inf'}),
    ('histogram', 'histogram_quantile', 'noinf_bucket', None, 3000, (1.1,), 0, {'{}': '+Inf'}),
    ('histogram', 'histogram_quantile', 'onlyinf_bucket', None, 3000, (1.1,), 0, {'{}': '+Inf'}),
    ('histogram', 'histogram_quantile', 'zero_bucket', None, 3000, (1.1,), 0, {'{}': '+Inf'}),
    ('histogram', 'histogram_quantile', 'nan_bucket', None, 3000, (1.1,), 0, {'{}': '+Inf'}),
    ('histogram', 'histogram_quantile', 'odd_bucket', None, 3000, (1.1,), 0, {'{}': '+Inf'}),
    ('histogram', 'histogram_quantile', 'nole_bucket', None, 3000, (1.1,), 0, {}),
    ('histogram', 'histogram_quantile', 'testhistogram_bucket', None, 3000, ('NaN',), 0,
     {'{start="negative"}': 'NaN', '{start="positive"}': 'NaN'}),
    ('histogram', 'histogram_quantile', 'nonmonotonic_bucket', None, 3000, ('NaN',), 0, {'{}': 'NaN'}),
    ('histogram', 'histogram_quantile', 'dup_bucket', None, 3000, ('NaN',), 0, {'{}': 'NaN'}),
    ('histogram', 'histogram_quantile', 'noinf_bucket', None, 3000, ('NaN',), 0, {'{}': 'NaN'}),
    ('histogram', 'histogram_quantile', 'onlyinf_bucket', None, 3000, ('NaN',), 0, {'{}': 'NaN'}),
    ('histogram', 'histogram_quantile', 'zero_bucket', None, 3000, ('NaN',), 0, {'{}': 'NaN'}),
    ('histogram', 'histogram_quantile', 'nan_bucket', None, 3000, ('NaN',), 0, {'{}': 'NaN'}),
    ('histogram', 'histogram_quantile', 'odd_bucket', None, 3000, ('NaN',), 0, {'{}': 'NaN'}),
    ('histogram', 'histogram_quantile', 'nole_bucket', None, 3000, ('NaN',), 0, {}),
]

REGEX_VALUES = ['abc-123', 'A.B', 'aa', 'xxx', 'a\nb', 'Abc', 'x{,3}', 'a.b', 'ü☺', 'foo bar', '12', 'ABCD',
                'Ωmega', '٣٤']

# (regex, replacement) -> {index of REGEX_VALUES: resulting dst} (values without dst unmatched), or the error.
REGEX_CASES = [
    ('(.*)', '$1',
     {0: 'abc-123',
      1: 'A.B',
      2: 'aa',
      3: 'xxx',
      5: 'Abc',
      6: 'x{,3}',
      7: 'a.b',
      8: 'ü☺',
      9: 'foo bar',
      10: '12',
      11: 'ABCD',
      12: 'Ωmega',
      13: '٣٤'}),
    ('a(.*)', 'x${1}y', {0: 'xbc-123y', 2: 'xay', 7: 'x.by'}),
    ('(?P<n>\\w+)-(\\d+)', '${n}:$2', {0: 'abc:123'}),
    ('(\\d+)', '$1x', {}),
    ('(.*)', '$$1',
     {0: '$1',
      1: '$1',
      2: '$1',
      3: '$1',
      5: '$1',
      6: '$1',
      7: '$1',
      8: '$1',
      9: '$1',
      10: '$1',
      11: '$1',
      12: '$1',
      13: '$1'}),
    ('(.*)', 'a$',
     {0: 'a$',
      1: 'a$',
      2: 'a$',
      3: 'a$',
      5: 'a$',
      6: 'a$',
      7: 'a$',
      8: 'a$',
      9: 'a$',
      10: 'a$',
      11: 'a$',
      12: 'a$',
      13: 'a$'}),
    ('(.*)', '$0',
     {0: 'abc-123',
      1: 'A.B',
      2: 'aa',
      3: 'xxx',
      5: 'Abc',
      6: 'x{,3}',
      7: 'a.b',
      8: 'ü☺',
      9: 'foo bar',
      10: '12',
      11: 'ABCD',
      12: 'Ωmega',
      13: '٣٤'}),
    ('(.*)', '${',
     {0: '${',
      1: '${',
      2: '${',
      3: '${',
      5: '${',
      6: '${',
      7: '${',
      8: '${',
      9: '${',
      10: '${',
      11: '${',
      12: '${',
      13: '${'}),
    ('(.*)', '$10', {}),
    ('(.*)', '${01}', {}),
    ('(a)|(b)', '[$2]', {}),
    ('\\d+', 'num', {10: 'num'}),
    ('[[:alpha:]]+', 'alpha', {2: 'alpha', 3: 'alpha', 5: 'alpha', 11: 'alpha'}),
    ('[[:^alpha:]]+', 'nonalpha', {8: 'nonalpha', 10: 'nonalpha', 13: 'nonalpha'}),
    ('(?i)abc', 'ci', {5: 'ci'}),
    ('x(?i)b|c', 'm', {}),
    ('\\Qa.b\\E', 'q', {7: 'q'}),
    ('x{2,3}', 'r', {3: 'r'}),
    ('x{,3}', 'lit', {6: 'lit'}),
    ('a$', 'dollar', {}),
    ('a\\z', 'z', {}),
    ('[^\\d]+', 'nd',
     {1: 'nd', 2: 'nd', 3: 'nd', 4: 'nd', 5: 'nd', 7: 'nd', 8: 'nd', 9: 'nd', 11: 'nd', 12: 'nd', 13: 'nd'}),
    ('\\x41\\.B', 'hex', {1: 'hex'}),
    ('\\x{263a}', 'smile', {}),
    ('\\101\\.B', 'oct', {1: 'oct'}),
    ('a.b', 'dot', {7: 'dot'}),
    ('(?s)a.b', 'sdot', {4: 'sdot', 7: 'sdot'}),
    ('(?m)^a$', 'm', {}),
    ('[]a]+', 'br', {2: 'br'}),
    ('[^]a]+', 'nbr', {1: 'nbr', 3: 'nbr', 5: 'nbr', 6: 'nbr', 8: 'nbr', 10: 'nbr', 11: 'nbr', 13: 'nbr'}),
    ('(\\w)(\\w)?', '<$2>', {2: '<a>', 10: '<2>'}),
    ('(?i)a(?-i)bc', 'off', {5: 'off'}),
    ('[\\W]+', 'W', {8: 'W', 13: 'W'}),
    ('a|', 'empty-alt', {}),
    ('\\p{Lu}\\pL*', 'pu', {5: 'pu', 11: 'pu', 12: 'pu'}),
    ('\\PL+', 'PL', {10: 'PL', 13: 'PL'}),
    ('\\pN+', 'pn', {10: 'pn', 13: 'pn'}),
    ('(?U)(a+)(a*)', '$1|$2', {2: 'a|a'}),
    ('(?P<n>a)|(?P<n>b)', '[$n]', {}),
    ('(?P<1a>.)(.*)', '$1a|${1a}|$2',
     {0: 'a|a|bc-123',
      1: 'A|A|.B',
      2: 'a|a|a',
      3: 'x|x|xx',
      5: 'A|A|bc',
      6: 'x|x|{,3}',
      7: 'a|a|.b',
      8: 'ü|ü|☺',
      9: 'f|f|oo bar',
      10: '1|1|2',
      11: 'A|A|BCD',
      12: 'Ω|Ω|mega',
      13: '٣|٣|٤'}),
    ('(?=a)', 'la', ('error', 'invalid regular expression in label_replace(): (?=a)')),
    ('a**', 'nested', ('error', 'invalid regular expression in label_replace(): a**')),
    ('(a)\\1', 'br', ('error', 'invalid regular expression in label_replace(): (a)\\1')),
    ('(?<n>a)', 'n', ('error', 'invalid regular expression in label_replace(): (?<n>a)')),
    ('x{1001}', 'big', ('error', 'invalid regular expression in label_replace(): x{1001}')),
    ('a++', 'poss', ('error', 'invalid regular expression in label_replace(): a++')),
    ('[z-a]', 'rev', ('error', 'invalid regular expression in label_replace(): [z-a]')),
    ('[a', 'unclosed', ('error', 'invalid regular expression in label_replace(): [a')),
    ('\\e', 'badesc', ('error', 'invalid regular expression in label_replace(): \\e')),
    ('*a', 'star', ('error', 'invalid regular expression in label_replace(): *a')),
]


@pytest.mark.parametrize(
    ("load", "func", "metric", "range_s", "at_s", "params", "offset_s", "expected"),
    CASES,
    ids=[f"{c[0]}-{i}-{c[1]}" for i, c in enumerate(CASES)],
)
def test_matches_prometheus(load, func, metric, range_s, at_s, params, offset_s, expected) -> None:
    if isinstance(expected, tuple):
        with pytest.raises(PromQLError) as raised:
            _evaluate(load, func, metric, range_s, at_s, params, offset_s)
        assert str(raised.value) == expected[1]
        assert raised.value.error_type == "execution"
        return
    result = _evaluate(load, func, metric, range_s, at_s, params, offset_s)
    got = {_format_labels(s.labels): s.v for s in result}
    assert set(got) == set(expected)
    long_window = func in _INCREMENTAL and _longest_window(load, metric, range_s, at_s, offset_s) > _EXACT_MAX
    for labels, value in expected.items():
        if long_window:
            assert got[labels] == pytest.approx(float(value), rel=1e-12, nan_ok=True), (labels, got[labels], value)
        else:
            assert _same_float(got[labels], value), (labels, got[labels], value)
    assert all(s.t == (at_s - offset_s) * 1000 for s in result)


@pytest.mark.parametrize(("regex", "replacement", "expected"), REGEX_CASES, ids=[c[0] for c in REGEX_CASES])
def test_label_replace_regex_like_go(regex: str, replacement: str, expected: Any) -> None:
    vector = [Sample((("__name__", "m"), ("i", f"{i:02d}"), ("src", v)), 0, 1.0) for i, v in enumerate(REGEX_VALUES)]
    args = [vector, "dst", replacement, "src", regex]
    if isinstance(expected, tuple):
        with pytest.raises(PromQLError, match=re.escape(expected[1])):
            _call("label_replace", args)
        return
    result = _call("label_replace", args)
    assert {i: dict(s.labels)["dst"] for i, s in enumerate(result) if "dst" in dict(s.labels)} == expected


def test_every_declared_function_is_implemented() -> None:
    assert set(FUNCTIONS_IMPL) == set(FUNCTIONS)
    assert _call("time", [], t=1_500) == 1.5
    assert _call("scalar", [[Sample((), 0, 4.0)]]) == 4.0


def test_scalar_is_nan_unless_exactly_one_element() -> None:
    assert math.isnan(_call("scalar", [[]]))
    assert math.isnan(_call("scalar", [[Sample((("a", "1"),), 0, 1.0), Sample((("a", "2"),), 0, 2.0)]]))


def test_vector_has_no_labels() -> None:
    assert _call("vector", [3.5], t=7) == [Sample((), 7, 3.5)]


def test_date_functions_without_argument_read_the_evaluation_time() -> None:
    # 2006-01-02T22:04:05Z, a Monday; Go truncates enh.Ts/1000 towards zero.
    t = 1136239445_999
    assert _call("year", [], t=t) == [Sample((), t, 2006.0)]
    assert _call("day_of_week", [], t=t)[0].v == 1.0
    assert _call("minute", [], t=-1_500)[0].v == 59.0  # -1.5 s is 23:59:59 on 1969-12-31
    assert _call("hour", [], t=-1_500)[0].v == 23.0


def test_sort_puts_nan_last_and_keeps_ties_in_input_order() -> None:
    samples = [Sample((("i", str(i)),), 0, v) for i, v in enumerate([3.0, math.nan, 1.0, 3.0, math.nan, -1.0])]
    ascending = _call("sort", [samples])
    assert [dict(s.labels)["i"] for s in ascending] == ["5", "2", "0", "3", "4", "1"]
    descending = _call("sort_desc", [samples])
    assert [dict(s.labels)["i"] for s in descending] == ["0", "3", "2", "5", "4", "1"]
    assert ascending[0].labels == (("i", "5"),)


def test_sort_keeps_the_metric_name() -> None:
    labels = (("__name__", "m"), ("a", "b"))
    assert _call("sort", [[Sample(labels, 0, 1.0)]])[0].labels == labels


def _selector(*matchers: tuple[str, MatchType, str]) -> VectorSelector:
    return VectorSelector("nonexistent", [Matcher(MatchType.EQL, "__name__", "nonexistent")]
                          + [Matcher(t, n, v) for n, t, v in matchers])


@pytest.mark.parametrize(
    ("expr", "labels"),
    [
        (_selector(), ()),
        (_selector(("job", MatchType.EQL, "testjob"), ("instance", MatchType.EQL, "testinstance"),
                   ("method", MatchType.RE, ".x")), (("instance", "testinstance"), ("job", "testjob"))),
        (_selector(("job", MatchType.EQL, "testjob"), ("job", MatchType.EQL, "testjob2"),
                   ("foo", MatchType.EQL, "bar")), (("foo", "bar"),)),
        (_selector(("job", MatchType.EQL, "testjob"), ("job", MatchType.RE, "testjob2"),
                   ("foo", MatchType.EQL, "bar")), (("foo", "bar"),)),
        # promtool 2.42: absent(nonexistent{job!="b",job="a"}) is {job="a"}; parentheses are looked through.
        (_selector(("job", MatchType.NEQ, "b"), ("job", MatchType.EQL, "a")), (("job", "a"),)),
        (ParenExpr(_selector(("job", MatchType.EQL, "a"))), (("job", "a"),)),
        (_selector(("job", MatchType.EQL, "")), ()),
    ],
)
def test_absent_labels_come_from_equality_matchers(expr: Any, labels: Labels) -> None:
    assert _call("absent", [[]], t=5, exprs=[expr]) == [Sample(labels, 5, 1.0)]
    assert _call("absent", [[Sample((), 5, 1.0)]], t=5, exprs=[expr]) == []


def test_absent_over_time() -> None:
    matrix = MatrixSelector(_selector(("handler", MatchType.EQL, "/foo")), 300_000)
    empty = Window((("__name__", "x"),), [1], [1.0], 0, 0)
    assert _call("absent_over_time", [[empty]], exprs=[matrix]) == [Sample((("handler", "/foo"),), 0, 1.0)]
    assert _call("absent_over_time", [[]], exprs=[ParenExpr(matrix)]) == [Sample((("handler", "/foo"),), 0, 1.0)]
    # A subquery argument has no matchers to report (promtool 2.42 answers {}).
    subquery = SubqueryExpr(_selector(("job", MatchType.EQL, "a")), 300_000, 60_000)
    assert _call("absent_over_time", [[]], exprs=[subquery]) == [Sample((), 0, 1.0)]
    assert _call("absent_over_time", [[_window([1.0])]], exprs=[matrix]) == []


def test_empty_windows_and_too_few_points_give_no_sample() -> None:
    empty = Window((("__name__", "m"),), [0, 15_000], [1.0, 2.0], 1, 1)
    one = Window((("__name__", "m"),), [0, 15_000], [1.0, 2.0], 1, 2)
    for name in sorted(_RANGE_FUNCTIONS - {"absent_over_time", "quantile_over_time", "predict_linear"}):
        assert _call(name, [[empty]], t=15_000, range_ms=60_000) == [], name
        expected = 1 if name not in {"rate", "increase", "delta", "irate", "idelta", "deriv"} else 0
        assert len(_call(name, [[one]], t=15_000, range_ms=60_000)) == expected, name
    assert _call("predict_linear", [[one], 60.0], t=15_000, range_ms=60_000) == []
    assert _call("quantile_over_time", [0.5, [empty]], t=15_000, range_ms=60_000) == []


def test_only_last_over_time_keeps_the_metric_name() -> None:
    window = _window([1.0, 2.0, 3.0])
    for name in sorted(_RANGE_FUNCTIONS - {"absent_over_time", "quantile_over_time", "predict_linear"}):
        out = _call(name, [[window]], t=30_000, range_ms=60_000)
        assert out[0].labels == (window.labels if name == "last_over_time" else (("job", "a"),)), name


def test_over_time_functions_use_rollup_columns() -> None:
    # Three 1m buckets: counts 2, 3, 1; sums 10, 30, 5; min/max per bucket; values are each bucket's last.
    ts = [60_000, 120_000, 180_000]
    source = SeriesData((("__name__", "m"),), ts, [4.0, 9.0, 5.0], count=[2.0, 3.0, 1.0], sum=[10.0, 30.0, 5.0],
                        min=[1.0, 8.0, 5.0], max=[9.0, 12.0, 5.0])
    window = Window(source.labels, ts, source.values, 0, 3, source)
    results = {name: _call(name, [[window]], t=180_000, range_ms=180_000)[0].v
               for name in ("sum_over_time", "count_over_time", "avg_over_time", "min_over_time", "max_over_time",
                            "last_over_time", "present_over_time", "changes")}
    assert results == {"sum_over_time": 45.0, "count_over_time": 6.0, "avg_over_time": 7.5, "min_over_time": 1.0,
                       "max_over_time": 12.0, "last_over_time": 5.0, "present_over_time": 1.0, "changes": 2.0}


def test_timestamp_reads_each_samples_own_time() -> None:
    out = _call("timestamp", [[Sample((("__name__", "m"), ("a", "b")), 12_345, 1.0)]], t=20_000)
    assert out == [Sample((("a", "b"),), 20_000, 12.345)]


def test_predict_linear_intercept_is_the_evaluation_time_despite_offset() -> None:
    # Values 0, 10, 20, ... every 60 s: slope 1/6 per second. With `offset 10m` the window ends 10m before
    # the evaluation time, and Prometheus still predicts from the evaluation time.
    window = Window((("__name__", "m"),), [i * 60_000 for i in range(11)], [i * 10.0 for i in range(11)], 0, 11)
    matrix = MatrixSelector(VectorSelector("m", [], offset=600_000), 600_000)
    out = _call("predict_linear", [[window], 60.0], t=600_000, range_ms=600_000, exprs=[matrix])
    assert out[0].v == pytest.approx(200.0 + 10.0)


def test_label_join_keeps_everything_else() -> None:
    labels = (("__name__", "m"), ("a", "x"), ("b", "y"))
    out = _call("label_join", [[Sample(labels, 0, 2.0)], "ab", "/", "a", "b", "missing"])
    assert out == [Sample((("__name__", "m"), ("a", "x"), ("ab", "x/y/"), ("b", "y")), 0, 2.0)]


def test_go_regexp_expand() -> None:
    regex = compile_go("(?P<first>a+)(b)?(c)")
    match = regex.search("aac")
    assert match is not None
    assert expand(regex, "$first-$2-${3}$$-$first_x-${first}_x-$", match) == "aa--c$--aa_x-$"


def test_rate_is_fast_enough_for_a_range_query() -> None:
    # A day at 1m steps, 3 counters scraped every 15 s, [5m] windows: must stay far below the evaluator's budget.
    ts = list(range(0, 86_700_000, 15_000))
    series = [((("__name__", "c"), ("i", str(i))), ts, [float(j * (i + 1)) for j in range(len(ts))]) for i in range(3)]
    steps = []
    for step in range(1440):
        t = 300_000 + step * 60_000
        steps.append((t, [Window(lbl, s_ts, vs, bisect.bisect_left(s_ts, t - 300_000), bisect.bisect_right(s_ts, t))
                          for lbl, s_ts, vs in series]))
    rate = FUNCTIONS_IMPL["rate"]
    begin = time.perf_counter()
    for t, windows in steps:
        rate([windows], CallContext(t, 300_000, []))
    assert time.perf_counter() - begin < 0.25


def test_rate_reset_cache_agrees_with_the_uncached_scan() -> None:
    """Range queries share one per-series cache of decrease positions across steps; every window
    must give what a fresh scan gives, resets and NaNs included."""
    from agent.promql.functions import FUNCTIONS_IMPL
    from agent.promql.values import CallContext, Window

    values = [1.0, 5.0, 9.0, 2.0, 4.0, float("nan"), 6.0, 7.0, 0.5, 3.0, 3.0, 8.0]
    ts = [i * 15_000 for i in range(len(values))]
    labels = (("__name__", "c_total"),)
    cache: dict = {}
    for name in ("rate", "increase", "delta"):
        for lo in range(len(values)):
            for hi in range(lo + 2, len(values) + 1):
                ctx = CallContext(ts[hi - 1], 60_000, [])
                cached = FUNCTIONS_IMPL[name]([[Window(labels, ts, values, lo, hi, None, cache)]], ctx)
                fresh = FUNCTIONS_IMPL[name]([[Window(labels, ts, values, lo, hi, None, None)]], ctx)
                assert repr([s.v for s in cached]) == repr([s.v for s in fresh]), (name, lo, hi)
