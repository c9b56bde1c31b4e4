"""Functions of instant vectors and scalars: math, clamp, round, sort, histogram_quantile, absent, ...

Math goes through Go's definitions where Python's differ: no exceptions (log(0) is -Inf, sqrt(-1)
NaN, exp overflow +Inf), Go's log2/log10 formulas, Floor/Ceil keeping -0, Go's Min/Max NaN rules.
"""

from __future__ import annotations

import functools
import math
import struct
from collections.abc import Callable
from operator import itemgetter
from typing import Any

from agent.promql.functions_common import INF, NAN, go_ceil, go_div, go_floor, go_max, go_min, without_name
from agent.promql.functions_labels import labels_for_absent
from agent.promql.gosort import go_sort
from agent.promql.values import CallContext, Labels, Sample, Vector

# Go's untyped constants 1/Ln2 and 1/Ln10, rounded once to float64 (not 1/math.log(2), one more rounding).
_INV_LN2 = float.fromhex("0x1.71547652b82fep+0")
_INV_LN10 = float.fromhex("0x1.bcb7b1526e50ep-2")


_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_L1 = 6.666666666666735130e-01
_L2 = 3.999999999940941908e-01
_L3 = 2.857142874366239149e-01
_L4 = 2.222219843214978396e-01
_L5 = 1.818357216161805012e-01
_L6 = 1.531383769920937332e-01
_L7 = 1.479819860511658591e-01
_HALF_SQRT2 = math.sqrt(2) / 2
_SMALLEST_NORMAL = 2.2250738585072014e-308
_MANTISSA = (1 << 52) - 1
_HALF_BITS = 0x3FE0000000000000


def _ln(x: float) -> float:
    """Go's math.Log on amd64 (FreeBSD's e_log.c algorithm): may differ from the C library's in the last bit."""
    if x != x or x == INF:
        return x
    if x < 0:
        return NAN
    if x == 0:
        return -INF
    if x < _SMALLEST_NORMAL:
        # Go's amd64 assembly reads the exponent bits directly, without normalising a subnormal.
        bits = struct.unpack("<Q", struct.pack("<d", x))[0]
        f1 = struct.unpack("<d", struct.pack("<Q", (bits & _MANTISSA) | _HALF_BITS))[0]
        ki = -1022
    else:
        f1, ki = math.frexp(x)
    if f1 < _HALF_SQRT2:
        f1 *= 2
        ki -= 1
    f = f1 - 1
    k = float(ki)
    s = f / (2 + f)
    s2 = s * s
    s4 = s2 * s2
    t1 = s2 * (_L1 + s4 * (_L3 + s4 * (_L5 + s4 * _L7)))
    t2 = s4 * (_L2 + s4 * (_L4 + s4 * _L6))
    r = t1 + t2
    hfsq = 0.5 * f * f
    return k * _LN2_HI - ((hfsq - (s * (hfsq + r) + k * _LN2_LO)) - f)


def _log2(x: float) -> float:
    """Go's math.Log2: exact for powers of two, otherwise Log(frac)/Ln2 + exp."""
    if not x > 0 or x == INF:
        return _ln(x)
    frac, exp = math.frexp(x)
    if frac == 0.5:
        return float(exp - 1)
    return _ln(frac) * _INV_LN2 + exp


def _log10(x: float) -> float:
    return _ln(x) * _INV_LN10


def _sqrt(x: float) -> float:
    return math.sqrt(x) if x >= 0 or x != x else NAN


_LOG2E = 1.4426950408889634073599246810018920
_LN2U = 0.69314718055966295651160180568695068359375
_LN2L = 0.28235290563031577122588448175013436025525412068e-12
_EXP_OVERFLOW = 7.09782712893384e02
_EXP_TAYLOR = (
    1.9841269841269841270e-4, 1.3888888888888888889e-3, 8.3333333333333333333e-3, 4.1666666666666666667e-2,
    1.6666666666666666667e-1, 0.5, 1.0,
)


def _fma(a: float, b: float, c: float) -> float:
    """a*b + c rounded once, as the FMA instruction does (exact integer ratios, one correct rounding)."""
    try:
        an, ad = a.as_integer_ratio()
        bn, bd = b.as_integer_ratio()
        cn, cd = c.as_integer_ratio()
        return (an * bn * cd + cn * ad * bd) / (ad * bd * cd)
    except (OverflowError, ValueError):
        return a * b + c


def _exp(x: float) -> float:
    """Go's math.Exp on amd64 with FMA (its assembly, after Shibata's SLEEF), which Prometheus uses on
    any x86 CPU with AVX2 and FMA; it can differ from the C library's exp in the last bit."""
    if x != x or x == INF:
        return x
    if x == -INF:
        return 0.0
    if x > _EXP_OVERFLOW:
        return INF
    k = round(x * _LOG2E)  # CVTSD2SL: round half to even into an int32
    if not -(1 << 31) <= k < (1 << 31):
        k = -(1 << 31)
    kf = float(k)
    r = _fma(-kf, _LN2U, x)
    r = _fma(-kf, _LN2L, r) * 0.0625
    p = 2.4801587301587301587e-5
    for coefficient in _EXP_TAYLOR:
        p = _fma(p, r, coefficient)
    r *= p
    for _ in range(3):
        r *= r + 2.0
    r = _fma(r, r + 2.0, 1.0)
    biased = k + 0x3FF
    if biased >= 0x7FF:
        return INF
    if biased > 0:
        return r * 2.0 ** k
    if biased < -52:
        return 0.0
    return r * 2.0 ** (k + 1022) * 2.0**-1022


def _simple(fn: Callable[[float], float]) -> Callable[[list[Any], CallContext], Vector]:
    def call(args: list[Any], ctx: CallContext) -> Vector:
        t = ctx.t
        return [Sample(without_name(s.labels), t, fn(s.v)) for s in args[0]]

    return call


def func_round(args: list[Any], ctx: CallContext) -> Vector:
    """Ties round up; the inverse of `to_nearest` is used as Prometheus does (fewer rounding surprises)."""
    to_nearest = args[1] if len(args) > 1 else 1.0
    inverse = go_div(1.0, to_nearest)
    out: Vector = []
    for s in args[0]:
        value = go_div(go_floor(s.v * inverse + 0.5), inverse)
        out.append(Sample(without_name(s.labels), ctx.t, value))
    return out


def func_clamp(args: list[Any], ctx: CallContext) -> Vector:
    vector, low, high = args
    if high < low:
        return []
    return [Sample(without_name(s.labels), ctx.t, go_max(low, go_min(high, s.v))) for s in vector]


def func_clamp_max(args: list[Any], ctx: CallContext) -> Vector:
    high = args[1]
    return [Sample(without_name(s.labels), ctx.t, go_min(high, s.v)) for s in args[0]]


def func_clamp_min(args: list[Any], ctx: CallContext) -> Vector:
    low = args[1]
    return [Sample(without_name(s.labels), ctx.t, go_max(low, s.v)) for s in args[0]]


def func_timestamp(args: list[Any], ctx: CallContext) -> Vector:
    """The evaluator gives each Sample's own timestamp in `t` (the evaluation time for non-selectors)."""
    return [Sample(without_name(s.labels), ctx.t, s.t / 1000) for s in args[0]]


def func_vector(args: list[Any], ctx: CallContext) -> Vector:
    return [Sample((), ctx.t, args[0])]


def func_scalar(args: list[Any], ctx: CallContext) -> float:
    vector = args[0]
    return vector[0].v if len(vector) == 1 else NAN


def _sorted(vector: Vector, descending: bool) -> Vector:
    """Go's sort.Sort (pdqsort, unstable) with Prometheus's comparators, so ties and NaNs (last, in an
    order of Go's making) come out exactly as in Prometheus for the same input order."""
    items = list(vector)
    if descending:  # sort.Reverse(vectorByValueHeap)
        go_sort(items, lambda i, j: items[j].v != items[j].v or items[j].v < items[i].v)
    else:  # sort.Reverse(vectorByReverseValueHeap)
        go_sort(items, lambda i, j: items[j].v != items[j].v or items[j].v > items[i].v)
    return items


def func_sort(args: list[Any], ctx: CallContext) -> Vector:
    return [Sample(s.labels, ctx.t, s.v) for s in _sorted(args[0], descending=False)]


def func_sort_desc(args: list[Any], ctx: CallContext) -> Vector:
    return [Sample(s.labels, ctx.t, s.v) for s in _sorted(args[0], descending=True)]


def func_absent(args: list[Any], ctx: CallContext) -> Vector:
    if args[0]:
        return []
    return [Sample(labels_for_absent(ctx.args[0] if ctx.args else None), ctx.t, 1.0)]


# --- histogram_quantile over classic buckets ---


@functools.lru_cache(maxsize=4096)
def parse_go_float(text: str) -> float | None:
    """Go's strconv.ParseFloat(text, 64), or None where Go reports an error."""
    if not text or not text.isascii() or text != text.strip():
        return None
    body = text[1:] if text[0] in "+-" else text
    lowered = body.lower()
    if lowered in ("inf", "infinity"):
        return -INF if text[0] == "-" else INF
    if lowered == "nan":
        return NAN if body is text else None
    if lowered.startswith("0x"):
        if "p" not in lowered or "_" in lowered:
            return None
        try:
            return float.fromhex(text)
        except (ValueError, OverflowError):
            return None
    if not all(c in "0123456789.eE+-_" for c in body):
        return None
    try:  # Python's rules for `_` (only between digits) are Go's
        return float(text)
    except ValueError:
        return None


def _search(n: int, predicate: Callable[[int], bool]) -> int:
    """Go's sort.Search: the smallest index in [0, n) where predicate holds (binary search), else n."""
    i, j = 0, n
    while i < j:
        h = (i + j) >> 1
        if not predicate(h):
            i = h + 1
        else:
            j = h
    return i


def bucket_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """Prometheus 2.42's bucketQuantile over (upper bound, cumulative count) pairs."""
    if q != q:
        return NAN
    if q < 0:
        return -INF
    if q > 1:
        return INF
    buckets.sort(key=_UPPER)
    if buckets[-1][0] != INF:
        return NAN
    # Coalesce buckets with the same upper bound, and take the envelope: counts may not decrease with
    # the upper bound (non-atomic scrapes, rate() of each bucket) - Prometheus's ensureMonotonic.
    uppers: list[float] = []
    counts: list[float] = []
    previous_upper = NAN
    for upper, count in buckets:
        if upper == previous_upper:
            counts[-1] += count
        else:
            uppers.append(upper)
            counts.append(count)
            previous_upper = upper
    maximum = counts[0]
    for i in range(1, len(counts)):
        count = counts[i]
        if count > maximum:
            maximum = count
        elif count < maximum:
            counts[i] = maximum
    n = len(counts)
    if n < 2:
        return NAN
    observations = counts[-1]
    if observations == 0:
        return NAN
    rank = q * observations
    b = _search(n - 1, lambda i: counts[i] >= rank)
    if b == n - 1:
        return uppers[-2]
    if b == 0 and uppers[0] <= 0:
        return uppers[0]
    bucket_start = 0.0
    bucket_end = uppers[b]
    count = counts[b]
    if b > 0:
        bucket_start = uppers[b - 1]
        count -= counts[b - 1]
        rank -= counts[b - 1]
    return bucket_start + (bucket_end - bucket_start) * go_div(rank, count)


_UPPER = itemgetter(0)


def func_histogram_quantile(args: list[Any], ctx: CallContext) -> Vector:
    """Groups the `le` buckets of each series (all labels but `le`, metric name included) and drops
    `le` and `__name__` from the result."""
    q, vector = args
    groups: dict[Labels, tuple[Labels, list[tuple[float, float]]]] = {}
    for sample in vector:
        labels = sample.labels
        position = -1
        for i, pair in enumerate(labels):
            if pair[0] == "le":
                position = i
                break
        if position < 0:
            continue
        upper = parse_go_float(labels[position][1])
        if upper is None:
            continue
        key = labels[:position] + labels[position + 1 :]
        group = groups.get(key)
        if group is None:
            group = (without_name(key), [])
            groups[key] = group
        group[1].append((upper, sample.v))
    return [Sample(labels, ctx.t, bucket_quantile(q, buckets)) for labels, buckets in groups.values()]


INSTANT_FUNCTIONS: dict[str, Callable[[list[Any], CallContext], Any]] = {
    "abs": _simple(abs),
    "ceil": _simple(go_ceil),
    "floor": _simple(go_floor),
    "exp": _simple(_exp),
    "ln": _simple(_ln),
    "log2": _simple(_log2),
    "log10": _simple(_log10),
    "sqrt": _simple(_sqrt),
    "round": func_round,
    "clamp": func_clamp,
    "clamp_max": func_clamp_max,
    "clamp_min": func_clamp_min,
    "timestamp": func_timestamp,
    "vector": func_vector,
    "scalar": func_scalar,
    "sort": func_sort,
    "sort_desc": func_sort_desc,
    "absent": func_absent,
    "histogram_quantile": func_histogram_quantile,
}
