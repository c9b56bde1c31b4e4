"""Functions of a range vector: rate & co, deriv/predict_linear, changes/resets and the *_over_time family.

Each receives, per evaluation step, one `Window` per series (see values.Window) and returns one
sample per window that has samples (none for an empty window, and none where Prometheus needs
more points, e.g. rate with fewer than two). The arithmetic is Prometheus 2.42's (promql/functions.go):
extrapolatedRate, the Kahan-Neumaier compensated sums of sum/avg/stddev/stdvar_over_time and of the
linear regression, the NaN rules of min/max_over_time and changes.

Speed: the engine calls these once per step and series, so per-element work stays in C where that
gives the same answer (slices, map/compress with operator functions, sorted, math.fsum).
- Windows of up to _EXACT_MAX points (a `[5m]` window at a 10-15 s interval) run Go's loops as
  they are, so they give Prometheus's bits.
- Longer windows: compensated sums (sum_over_time, the regression of deriv/predict_linear) use
  math.fsum, which is correctly rounded; Neumaier's sum differs from the exact sum by at most about
  n*u^2*sum|v|, so when n * sum|v| <= 2^30 * |sum| both round to the same double except with
  probability below ~1e-7 (they agreed in all of 40,000 realistic windows we compared). Otherwise
  (cancellation, Inf, NaN, overflow, where Go's order of operations decides) the Go loop runs.
- Longer windows of avg_over_time (incremental mean) and stddev/stdvar_over_time (Welford) use
  fsum-based formulas under the same guard: they round differently from Go's, agreeing to ~1e-16
  relative (the last bit or two), not bit for bit.

Rollups: when a window's points come from a rollup tier (`source.count` is not None), the
*_over_time aggregations use the bucket columns (sum of sums, sum of counts, min of mins, max of
maxes); every other function uses `values`, each bucket's last value.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Callable, Sequence
from functools import partial
from itertools import compress, pairwise, repeat
from operator import eq, gt, lt, mul, ne, sub, truediv
from typing import Any

from agent.promql.ast import MatrixSelector, ParenExpr, SubqueryExpr, VectorSelector
from agent.promql.functions_common import INF, NAN, go_div, go_floor, without_name
from agent.promql.functions_labels import labels_for_absent
from agent.promql.values import CallContext, Sample, Vector, Window

_EXACT_MAX = 32

# One series over every step of a range query at once (window bounds precomputed by the engine):
# the same arithmetic as the per-step function, without a Window and a call per step.
BulkImpl = Callable[[Window, Sequence[int], Sequence[int], Sequence[int], int], list[float | None]]

# One series at one evaluation step (instant queries, rules), from its points (stale markers removed), the
# window [lo, hi) in them, the window's end, and whether a point in the window may be below the one before
# it: the value, or None for no sample. The result drops `__name__`. Made per range (`OneStep(range_ms)`).
OneStepImpl = Callable[[Sequence[int], Sequence[float], int, int, int, bool], float | None]
OneStep = Callable[[int], OneStepImpl]

Aggregate = Callable[[Window], float | None]


def _rollup_column(window: Window, name: str) -> Sequence[float]:
    """The rollup column `name` (sum, count, min, max) when the window's points are rollup buckets, else
    the plain values (a raw point is a bucket of one)."""
    source = window.source
    if source is None or source.count is None:
        return window.values
    column: Sequence[float] | None = getattr(source, name)
    return window.values if column is None else column


def _over_time(aggregate: Aggregate) -> Callable[[list[Any], CallContext], Vector]:
    """A function applying `aggregate` to every non-empty window; the output drops `__name__`."""

    def call(args: list[Any], ctx: CallContext) -> Vector:
        out: Vector = []
        t = ctx.t
        for window in args[0]:
            if window.hi > window.lo:
                value = aggregate(window)
                if value is not None:
                    out.append(Sample(without_name(window.labels), t, value))
        return out

    return call


# --- rate, increase, delta, irate, idelta ---


def _range_seconds(range_ms: int) -> float:
    """Go's time.Duration.Seconds() for a whole number of milliseconds."""
    return float(range_ms // 1000) + float((range_ms % 1000) * 1_000_000) / 1e9


def _may_reset(window: Window, lo: int, hi: int) -> bool:
    """Whether [lo, hi) holds a decrease (or a NaN), from positions found once per series: a range
    query asks this for every step, and most windows of a counter have no reset."""
    if window.cache is None:
        return True
    marks = window.cache.get("decreases")
    if marks is None:
        vals = window.values
        # i is marked when vals[i] < vals[i-1] or vals[i] is NaN (which a pairwise check cannot see);
        # map/compress keep the scan of a day of samples in C.
        marks = list(compress(range(1, len(vals)), map(lt, vals[1:], vals[:-1])))
        if any(map(math.isnan, vals)):
            marks = sorted(set(marks).union(i for i, v in enumerate(vals) if v != v))
        window.cache["decreases"] = marks
    if not marks:
        return False
    first = bisect_right(marks, lo)  # a decrease at lo itself is against a sample outside the window
    if first < len(marks) and marks[first] < hi:
        return True
    value = window.values[lo]
    return value != value


def _rate_at(window: Window, lo: int, hi: int, range_end: int, range_ms: int, is_counter: bool,
             is_rate: bool, range_s: float | None = None) -> float | None:
    """Prometheus 2.42's extrapolatedRate over samples [lo, hi) of the window's series (`range_s`:
    the range in seconds, when the caller has it already)."""
    if hi - lo < 2:
        return None
    resets = is_counter and (window.cache is None or _may_reset(window, lo, hi))
    return _extrapolated_rate(range_ms, is_counter, is_rate, range_s, None, window.ts, window.values, lo, hi,
                              range_end, resets)


_Layout = tuple[float, float, float]  # sampled interval, duration to the range start, factor


def _extrapolated_rate(range_ms: int, is_counter: bool, is_rate: bool, range_s: float | None,
                       layouts: dict[tuple[int, int, int], _Layout] | None, ts: Sequence[int],
                       vals: Sequence[float], lo: int, hi: int, range_end: int, resets: bool) -> float | None:
    """extrapolatedRate over points [lo, hi) (None for fewer than two); `resets`: look for counter resets in
    them. The parameters that stay the same for a whole query come first (see `_one_step_rate`).

    Everything but the value difference depends on the first and last timestamps and the number of
    points alone, which the series of one scrape share: `layouts` keeps that part per query."""
    if hi - lo < 2:
        return None
    first = vals[lo]
    result = vals[hi - 1] - first
    if is_counter and resets:
        window_values = vals[lo:hi]
        # Each counter reset adds the value before it, in order (resets are rare: the loop is short).
        for before_reset in compress(window_values, map(gt, window_values, window_values[1:])):
            result += before_reset
    first_t = ts[lo]
    last_t = ts[hi - 1]
    key = (first_t, last_t, hi - lo)
    layout = layouts.get(key) if layouts is not None else None
    if layout is None:
        layout = _layout(range_ms, is_rate, range_s, first_t, last_t, hi - lo, range_end, None)
        if layouts is not None:
            layouts[key] = layout
    sampled_interval, duration_to_start, factor = layout
    if is_counter and result > 0 and first >= 0 and sampled_interval * (first / result) < duration_to_start:
        # A counter cannot go below zero: do not extrapolate past the point where it would reach it.
        factor = _layout(range_ms, is_rate, range_s, first_t, last_t, hi - lo, range_end,
                         sampled_interval * (first / result))[2]
    return result * factor


def _layout(range_ms: int, is_rate: bool, range_s: float | None, first_t: int, last_t: int, count: int,
            range_end: int, duration_to_zero: float | None) -> _Layout:
    """The extrapolation of extrapolatedRate: (sampled interval, duration to the range start, factor);
    `duration_to_zero` replaces the duration to the start when the counter would reach zero sooner."""
    duration_to_start = (first_t - (range_end - range_ms)) / 1000
    duration_to_end = (range_end - last_t) / 1000
    sampled_interval = (last_t - first_t) / 1000
    average_between = sampled_interval / (count - 1)  # duplicate timestamps (0 s) are not stored
    start = duration_to_start if duration_to_zero is None else duration_to_zero
    threshold = average_between * 1.1
    extrapolate_to = sampled_interval
    extrapolate_to += start if start < threshold else average_between / 2
    extrapolate_to += duration_to_end if duration_to_end < threshold else average_between / 2
    factor = extrapolate_to / sampled_interval if sampled_interval else go_div(extrapolate_to, sampled_interval)
    if is_rate:
        factor /= _range_seconds(range_ms) if range_s is None else range_s
    return sampled_interval, duration_to_start, factor


def _bulk_rate(is_counter: bool, is_rate: bool) -> BulkImpl:
    def bulk(window: Window, los: Sequence[int], his: Sequence[int], ends: Sequence[int],
             range_ms: int) -> list[float | None]:
        range_s = _range_seconds(range_ms)
        return [
            _rate_at(window, lo, hi, end, range_ms, is_counter, is_rate, range_s)
            for lo, hi, end in zip(los, his, ends, strict=True)
        ]

    return bulk


def _one_step_rate(is_counter: bool, is_rate: bool) -> OneStep:
    def for_range(range_ms: int) -> OneStepImpl:
        # A partial, not a closure: one Python call per series instead of two.
        return partial(_extrapolated_rate, range_ms, is_counter, is_rate, _range_seconds(range_ms), {})

    return for_range


def _rate_function(is_counter: bool, is_rate: bool) -> Callable[[list[Any], CallContext], Vector]:
    def call(args: list[Any], ctx: CallContext) -> Vector:
        out: Vector = []
        t = ctx.t
        range_ms = ctx.range
        range_s = _range_seconds(range_ms)
        for window in args[0]:
            lo = window.lo
            hi = window.hi
            if hi - lo >= 2:
                value = _rate_at(window, lo, hi, t, range_ms, is_counter, is_rate, range_s)
                if value is not None:
                    out.append(Sample(without_name(window.labels), t, value))
        return out

    return call


def _instant_value(window: Window, is_rate: bool) -> float | None:
    hi = window.hi
    if hi - window.lo < 2:
        return None
    vals = window.values
    last = vals[hi - 1]
    previous = vals[hi - 2]
    result = last if is_rate and last < previous else last - previous
    interval = window.ts[hi - 1] - window.ts[hi - 2]
    if interval == 0:
        return None
    if is_rate:
        result = go_div(result, interval / 1000)
    return result


def _irate(window: Window) -> float | None:
    return _instant_value(window, True)


def _idelta(window: Window) -> float | None:
    return _instant_value(window, False)


# --- deriv, predict_linear ---


def _regression_sums_exact(xs: list[float], ys: Sequence[float]) -> tuple[float, float, float, float]:
    """Go's four kahanSumInc accumulations (inlined: this loop is the cost of deriv/predict_linear)."""
    sx = cx = sy = cy = sxy = cxy = sxx = cxx = 0.0
    for x, y in zip(xs, ys, strict=True):
        t = sx + x
        cx += (sx - t) + x if abs(sx) >= abs(x) else (x - t) + sx
        sx = t
        t = sy + y
        cy += (sy - t) + y if abs(sy) >= abs(y) else (y - t) + sy
        sy = t
        v = x * y
        t = sxy + v
        cxy += (sxy - t) + v if abs(sxy) >= abs(v) else (v - t) + sxy
        sxy = t
        v = x * x
        t = sxx + v
        cxx += (sxx - t) + v if abs(sxx) >= abs(v) else (v - t) + sxx
        sxx = t
    return sx + cx, sy + cy, sxy + cxy, sxx + cxx


def _linear_regression(window: Window, intercept_time: int) -> tuple[float, float]:
    """Prometheus's linearRegression: least squares with compensated sums; x in seconds from intercept_time."""
    return _regression(window.ts, window.values, window.lo, window.hi, intercept_time, None)


_XPart = tuple[Sequence[int], list[float], float | None, float | None]  # timestamps, xs, sum of x, sum of x^2


def _regression(ts: Sequence[int], vals: Sequence[float], lo: int, hi: int, intercept_time: int,
                xparts: dict[tuple[int, int, int], _XPart] | None) -> tuple[float, float]:
    """`_linear_regression` over points [lo, hi). The x values and their sums depend on the timestamps alone,
    which the series of one scrape share: `xparts` keeps them per query (checked against the timestamps)."""
    ys = vals[lo:hi]
    init_y = ys[0]
    if all(map(eq, ys[1:], repeat(init_y))):
        if init_y in (INF, -INF):
            return NAN, NAN
        return 0.0, init_y
    count = hi - lo
    n = float(count)
    window_ts = ts[lo:hi]
    key = (intercept_time, window_ts[0], count)
    part = xparts.get(key) if xparts is not None else None
    if part is None or part[0] != window_ts:
        xs = list(map(truediv, map(sub, window_ts, repeat(intercept_time)), repeat(1e3)))
        sum_x = sum_x2 = None
        if count > _EXACT_MAX:
            same_sign = xs[0] >= 0 or xs[-1] <= 0  # xs ascend with the timestamps
            sum_x = _fast_sum(xs, same_sign)
            sum_x2 = _fast_sum(list(map(mul, xs, xs)), same_sign=True)
        part = (window_ts, xs, sum_x, sum_x2)
        if xparts is not None:
            xparts[key] = part
    xs = part[1]
    fast: tuple[float | None, ...] = (None,)
    if count > _EXACT_MAX:
        fast = (part[2], _fast_sum(ys), _fast_sum(list(map(mul, xs, ys))), part[3])
    sum_x, sum_y, sum_xy, sum_x2 = _regression_sums_exact(xs, ys) if None in fast else fast
    cov_xy = sum_xy - sum_x * sum_y / n
    var_x = sum_x2 - sum_x * sum_x / n
    slope = go_div(cov_xy, var_x)
    intercept = sum_y / n - slope * sum_x / n
    return slope, intercept


def _deriv(window: Window) -> float | None:
    if window.hi - window.lo < 2:
        return None
    return _linear_regression(window, window.ts[window.lo])[0]


def _one_step_deriv(range_ms: int) -> OneStepImpl:
    xparts: dict[tuple[int, int, int], _XPart] = {}

    def deriv(ts: Sequence[int], vals: Sequence[float], lo: int, hi: int, end: int, may_drop: bool) -> float | None:
        if hi - lo < 2:
            return None
        return _regression(ts, vals, lo, hi, ts[lo], xparts)[0]

    return deriv


def _selector_offset(expr: Any) -> int:
    while isinstance(expr, ParenExpr):
        expr = expr.expr
    if isinstance(expr, MatrixSelector):
        return expr.vector.offset
    if isinstance(expr, SubqueryExpr):
        return expr.offset
    if isinstance(expr, VectorSelector):
        return expr.offset
    return 0


def func_predict_linear(args: list[Any], ctx: CallContext) -> Vector:
    """Prometheus takes the intercept at the evaluation step's time, not at the window's end
    (they differ under `offset` and `@`)."""
    duration = args[1]
    if ctx.step_t is not None:
        intercept_time = ctx.step_t
    else:
        intercept_time = ctx.t + _selector_offset(ctx.args[0]) if ctx.args else ctx.t
    out: Vector = []
    for window in args[0]:
        if window.hi - window.lo >= 2:
            slope, intercept = _linear_regression(window, intercept_time)
            out.append(Sample(without_name(window.labels), ctx.t, slope * duration + intercept))
    return out


# --- changes, resets ---


def _changes(window: Window) -> float:
    values = window.values[window.lo : window.hi]
    count = sum(map(ne, values, values[1:]))
    if count:
        total = sum(values)
        if total != total:
            # NaN != NaN, but Prometheus does not count NaN followed by NaN as a change.
            count = sum(1 for a, b in pairwise(values) if a != b and not (a != a and b != b))
    return float(count)


def _resets(window: Window) -> float:
    window_values = window.values[window.lo : window.hi]
    total = sum(window_values)
    if total == total and sorted(window_values) == window_values:
        return 0.0
    return float(sum(map(lt, window_values[1:], window_values)))


# --- the *_over_time aggregations ---


def _kahan_sum_exact(values: Sequence[float]) -> float:
    total = comp = 0.0
    for v in values:
        t = total + v
        if abs(total) >= abs(v):
            comp += (total - t) + v
        else:
            comp += (v - t) + total
        total = t
    if total in (INF, -INF):
        return total
    return total + comp


_WELL_CONDITIONED = 2.0**30


def _fast_sum(values: Sequence[float], same_sign: bool = False) -> float | None:
    """math.fsum(values) where it is the value Go's compensated sum gives (see the module docstring).
    `same_sign`: the caller knows no value has the opposite sign of another (perfectly conditioned)."""
    try:
        total = math.fsum(values)
    except (OverflowError, ValueError):
        return None
    if total - total != 0:
        return None
    if not same_sign and len(values) * sum(map(abs, values)) > abs(total) * _WELL_CONDITIONED:
        return None
    return total


def compensated_sum(values: Sequence[float]) -> float:
    """Prometheus's compensated sum of sum_over_time (see the module docstring)."""
    total = _fast_sum(values) if len(values) > _EXACT_MAX else None
    return _kahan_sum_exact(values) if total is None else total


def _sum_over_time(window: Window) -> float:
    return compensated_sum(_rollup_column(window, "sum")[window.lo : window.hi])


def _count_over_time(window: Window) -> float:
    counts = _rollup_column(window, "count")
    if counts is window.values:
        return float(window.hi - window.lo)
    return compensated_sum(counts[window.lo : window.hi])


def _avg_finite(values: Sequence[float]) -> float:
    """Prometheus's incremental mean for finite values (no Inf checks needed: the mean stays finite)."""
    mean = comp = count = 0.0
    for v in values:
        count += 1.0
        inc = v / count - mean / count
        t = mean + inc
        if abs(mean) >= abs(inc):
            comp += (mean - t) + inc
        else:
            comp += (inc - t) + mean
        mean = t
    return mean + comp


def _avg_exact(values: Sequence[float]) -> float:
    """Prometheus's incremental mean: no overflow for large values, Inf kept once reached."""
    mean = comp = count = 0.0
    for v in values:
        count += 1.0
        if mean in (INF, -INF):
            if v in (INF, -INF) and (mean > 0) == (v > 0):
                continue
            if v - v == 0:
                continue
        inc = v / count - mean / count
        t = mean + inc
        if abs(mean) >= abs(inc):
            comp += (mean - t) + inc
        else:
            comp += (inc - t) + mean
        mean = t
    if mean in (INF, -INF):
        return mean
    return mean + comp


def _avg_over_time(window: Window) -> float:
    lo, hi = window.lo, window.hi
    counts = _rollup_column(window, "count")
    if counts is not window.values:
        return go_div(compensated_sum(_rollup_column(window, "sum")[lo:hi]), compensated_sum(counts[lo:hi]))
    values = window.values[lo:hi]
    total = sum(values)
    if total - total != 0:  # an Inf or NaN (or an overflow): Go's order of operations decides
        return _avg_exact(values)
    if len(values) > _EXACT_MAX:
        smallest = min(values)
        if smallest == max(values):
            return smallest
        exact_total = _fast_sum(values)
        if exact_total is not None:
            return exact_total / len(values)
    mean = _avg_finite(values)
    return mean if mean - mean == 0 else _avg_exact(values)


def _variance(values: Sequence[float]) -> float:
    """Population variance: Prometheus's Welford update with compensated mean and sum of squares."""
    n = len(values)
    if n > _EXACT_MAX:
        total = _fast_sum(values)
        if total is not None:
            if min(values) == max(values):
                return 0.0
            mean = total / n
            return math.fsum([d * d for d in [v - mean for v in values]]) / n
    count = mean = c_mean = aux = c_aux = 0.0
    for v in values:
        count += 1.0
        delta = v - (mean + c_mean)
        inc = delta / count
        t = mean + inc
        if abs(mean) >= abs(inc):
            c_mean += (mean - t) + inc
        else:
            c_mean += (inc - t) + mean
        mean = t
        inc = delta * (v - (mean + c_mean))
        t = aux + inc
        if abs(aux) >= abs(inc):
            c_aux += (aux - t) + inc
        else:
            c_aux += (inc - t) + aux
        aux = t
    return (aux + c_aux) / count


def _stdvar_over_time(window: Window) -> float:
    return _variance(window.values[window.lo : window.hi])


def _stddev_over_time(window: Window) -> float:
    variance = _variance(window.values[window.lo : window.hi])
    return math.sqrt(variance) if variance >= 0 else NAN


def _extreme(values: Sequence[float], pick: Callable[..., float]) -> float:
    """min/max as Prometheus: NaNs are skipped unless every value is NaN."""
    result = pick(values)
    if result != result:
        numbers = [v for v in values if v == v]
        return pick(numbers) if numbers else NAN
    return result


def _min_over_time(window: Window) -> float:
    return _extreme(_rollup_column(window, "min")[window.lo : window.hi], min)


def _max_over_time(window: Window) -> float:
    return _extreme(_rollup_column(window, "max")[window.lo : window.hi], max)


def _present_over_time(window: Window) -> float:
    return 1.0


def quantile(q: float, values: Sequence[float]) -> float:
    """Prometheus's `quantile` helper: linear interpolation between closest ranks; NaNs sort first."""
    n = len(values)
    if n == 0 or q != q:
        return NAN
    if q < 0:
        return -INF
    if q > 1:
        return INF
    total = sum(values)
    if total != total and any(map(math.isnan, values)):
        ordered = [v for v in values if v != v] + sorted(v for v in values if v == v)
    else:
        ordered = sorted(values)
    rank = q * (n - 1)
    lower = max(0.0, go_floor(rank))
    upper = min(n - 1.0, lower + 1)
    weight = rank - go_floor(rank)
    return ordered[int(lower)] * (1 - weight) + ordered[int(upper)] * weight


def func_quantile_over_time(args: list[Any], ctx: CallContext) -> Vector:
    q = args[0]
    out: Vector = []
    for window in args[1]:
        if window.hi > window.lo:
            value = quantile(q, window.values[window.lo : window.hi])
            out.append(Sample(without_name(window.labels), ctx.t, value))
    return out


def func_last_over_time(args: list[Any], ctx: CallContext) -> Vector:
    """Like an offset selector: keeps the metric name."""
    return [Sample(w.labels, ctx.t, w.values[w.hi - 1]) for w in args[0] if w.hi > w.lo]


def func_absent_over_time(args: list[Any], ctx: CallContext) -> Vector:
    if any(w.hi > w.lo for w in args[0]):
        return []
    return [Sample(labels_for_absent(ctx.args[0] if ctx.args else None), ctx.t, 1.0)]


RANGE_FUNCTIONS: dict[str, Callable[[list[Any], CallContext], Any]] = {
    "rate": _rate_function(is_counter=True, is_rate=True),
    "increase": _rate_function(is_counter=True, is_rate=False),
    "delta": _rate_function(is_counter=False, is_rate=False),
    "irate": _over_time(_irate),
    "idelta": _over_time(_idelta),
    "deriv": _over_time(_deriv),
    "predict_linear": func_predict_linear,
    "changes": _over_time(_changes),
    "resets": _over_time(_resets),
    "avg_over_time": _over_time(_avg_over_time),
    "count_over_time": _over_time(_count_over_time),
    "sum_over_time": _over_time(_sum_over_time),
    "min_over_time": _over_time(_min_over_time),
    "max_over_time": _over_time(_max_over_time),
    "stddev_over_time": _over_time(_stddev_over_time),
    "stdvar_over_time": _over_time(_stdvar_over_time),
    "present_over_time": _over_time(_present_over_time),
    "quantile_over_time": func_quantile_over_time,
    "last_over_time": func_last_over_time,
    "absent_over_time": func_absent_over_time,
}


# Functions that drop the metric name and compute each series' value from its own window alone.
BULK_RANGE_FUNCTIONS: dict[str, BulkImpl] = {
    "rate": _bulk_rate(is_counter=True, is_rate=True),
    "increase": _bulk_rate(is_counter=True, is_rate=False),
    "delta": _bulk_rate(is_counter=False, is_rate=False),
}

def _one_step_extreme(pick: Callable[..., float]) -> OneStep:
    def for_range(range_ms: int) -> OneStepImpl:
        def extreme(ts: Sequence[int], vals: Sequence[float], lo: int, hi: int, end: int, may_drop: bool) -> float:
            return _extreme(vals[lo:hi], pick)

        return extreme

    return for_range


# Functions of a range vector that, at one step, need only each series' points (not its rollup columns).
ONE_STEP_RANGE_FUNCTIONS: dict[str, OneStep] = {
    "rate": _one_step_rate(is_counter=True, is_rate=True),
    "increase": _one_step_rate(is_counter=True, is_rate=False),
    "delta": _one_step_rate(is_counter=False, is_rate=False),
    "deriv": _one_step_deriv,
}

# The same for raw points only: over rollup buckets these read the bucket columns (see _rollup_column).
ONE_STEP_RAW_FUNCTIONS: dict[str, OneStep] = {
    "min_over_time": _one_step_extreme(min),
    "max_over_time": _one_step_extreme(max),
}
