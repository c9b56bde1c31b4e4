"""Binary operators: Go's float arithmetic, and the vector matching rules of Prometheus 2.42.

Division by zero, `%` and `^` follow Go's `/`, `math.Mod` and `math.Pow` (ported, not Python's
`**`, which raises where Go returns Inf or NaN and rounds fractional powers differently).
"""

from __future__ import annotations

import math
import operator
import struct
from collections.abc import Callable

from agent.promql.ast import VectorMatching
from agent.promql.caches import shared_cache
from agent.promql.values import Labels, PromQLError, Sample, Vector, drop_name

NAN = math.nan
INF = math.inf

SET_OPS = frozenset({"and", "or", "unless"})
# Operators whose result drops the metric name (comparisons keep it unless `bool`; Prometheus's
# atan2, which Vigil's parser rejects, would keep it too).
NAME_DROPPING_OPS = frozenset({"+", "-", "*", "/", "%", "^"})


def go_div(a: float, b: float) -> float:
    try:
        return a / b
    except ZeroDivisionError:
        if a != a or a == 0:
            return NAN
        return INF if (a > 0) == (math.copysign(1.0, b) > 0) else -INF


def go_mod(x: float, y: float) -> float:
    """Go's math.Mod: the sign of x; NaN for y == 0, infinite x, or a NaN operand."""
    if y == 0 or math.isinf(x) or x != x or y != y:
        return NAN
    return math.fmod(x, y)


def _fma(a: float, b: float, c: float) -> float:
    """a * b + c with one rounding, as the FMA instruction computes it (exact integer arithmetic)."""
    if not (math.isfinite(a) and math.isfinite(b) and math.isfinite(c)):
        return a * b + c
    na, da = a.as_integer_ratio()
    nb, db = b.as_integer_ratio()
    nc, dc = c.as_integer_ratio()
    num = na * nb * dc + nc * da * db
    if num == 0:
        return a * b + c
    return num / (da * db * dc)


def _from_bits(bits: int) -> float:
    return struct.unpack("<d", struct.pack("<Q", bits & 0xFFFFFFFFFFFFFFFF))[0]


def _to_bits(x: float) -> int:
    return int(struct.unpack("<Q", struct.pack("<d", x))[0])


_EXP_TAYLOR = (
    2.4801587301587301587e-5, 1.9841269841269841270e-4, 1.3888888888888888889e-3, 8.3333333333333333333e-3,
    4.1666666666666666667e-2, 1.6666666666666666667e-1, 0.5, 1.0,
)


def go_exp(x: float) -> float:
    """Go's math.Exp on amd64 (exp_amd64.s, FMA path as on any CPU with AVX2 and FMA): used by math.Pow."""
    if x != x or x == math.inf:
        return x
    if x == -math.inf:
        return 0.0
    if x > 7.09782712893384e02:
        return math.inf
    scaled = 1.4426950408889634073599246810018920 * x
    exponent = round(scaled) if abs(scaled) < 2**31 else -(2**31)
    k = float(exponent)
    r = _fma(-k, 0.69314718055966295651160180568695068359375, x)
    r = _fma(-k, 0.28235290563031577122588448175013436025525412068e-12, r)
    r *= 0.0625
    t = _EXP_TAYLOR[0]
    for coefficient in _EXP_TAYLOR[1:]:
        t = _fma(t, r, coefficient)
    r *= t
    for _ in range(3):
        r *= r + 2.0
    r = _fma(r, r + 2.0, 1.0)
    biased = exponent + 0x3FF
    if biased <= 0:
        if biased < -52:
            return 0.0
        r *= _from_bits((biased + 0x3FE) << 52)
        biased = 1
    elif biased >= 0x7FF:
        return math.inf
    return r * _from_bits(biased << 52)


def go_log(x: float) -> float:
    """Go's math.Log on amd64 (log_amd64.s; its frexp reads the exponent bits directly)."""
    if x == 0:
        return -math.inf
    if x < 0:
        return math.nan
    if x != x or x == math.inf:
        return x
    bits = _to_bits(x)
    f1 = _from_bits((bits & 0x000FFFFFFFFFFFFF) | 0x3FE0000000000000)
    k = float(((bits >> 52) & 0x7FF) - 0x3FE)
    if f1 < 7.07106781186547524401e-01:
        k -= 1
        f1 *= 2
    f = f1 - 1
    s = f / (2 + f)
    s2 = s * s
    s4 = s2 * s2
    t1 = s2 * (6.666666666666735130e-01 + s4 * (2.857142874366239149e-01 + s4 * (
        1.818357216161805012e-01 + s4 * 1.479819860511658591e-01)))
    t2 = s4 * (3.999999999940941908e-01 + s4 * (2.222219843214978396e-01 + s4 * 1.531383769920937332e-01))
    big_r = t1 + t2
    hfsq = 0.5 * f * f
    return k * 6.93147180369123816490e-01 - ((hfsq - (s * (hfsq + big_r) + k * 1.90821492927058770002e-10)) - f)


def _ldexp(frac: float, exp: int) -> float:
    try:
        return math.ldexp(frac, exp)
    except OverflowError:
        return math.copysign(INF, frac)


def _is_odd_int(x: float) -> bool:
    if abs(x) >= 1 << 53:
        return False
    frac, whole = math.modf(x)
    return frac == 0 and int(whole) & 1 == 1


def go_pow(x: float, y: float) -> float:
    """Go's math.Pow, special cases and repeated-squaring algorithm included."""
    if y == 0 or x == 1:
        return 1.0
    if y == 1:
        return x
    if x != x or y != y:
        return NAN
    if x == 0:
        if y < 0:
            return -INF if math.copysign(1.0, x) < 0 and _is_odd_int(y) else INF
        return x if math.copysign(1.0, x) < 0 and _is_odd_int(y) else 0.0
    if math.isinf(y):
        if x == -1:
            return 1.0
        if (abs(x) < 1) == (y > 0):
            return 0.0
        return INF
    if math.isinf(x):
        if x < 0:
            return go_pow(1 / x, -y)
        return 0.0 if y < 0 else INF
    if y == 0.5:
        return math.sqrt(x) if x >= 0 else NAN
    if y == -0.5:
        return 1 / math.sqrt(x) if x >= 0 else NAN

    yf, yi = math.modf(abs(y))
    if yf != 0 and x < 0:
        return NAN
    if yi >= 1 << 63:
        if x == -1:
            return 1.0
        if (abs(x) < 1) == (y > 0):
            return 0.0
        return INF

    a1 = 1.0
    ae = 0
    if yf != 0:
        if yf > 0.5:
            yf -= 1
            yi += 1
        a1 = go_exp(yf * go_log(x))

    x1, xe = math.frexp(x)
    i = int(yi)
    while i != 0:
        if xe < -(1 << 12) or xe > (1 << 12):
            ae += xe
            break
        if i & 1 == 1:
            a1 *= x1
            ae += xe
        x1 *= x1
        xe <<= 1
        if x1 < 0.5:
            x1 += x1
            xe -= 1
        i >>= 1

    if y < 0:
        a1 = 1 / a1
        ae = -ae
    return _ldexp(a1, ae)


ARITHMETIC: dict[str, Callable[[float, float], float]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": go_div,
    "%": go_mod,
    "^": go_pow,
}
COMPARISON: dict[str, Callable[[float, float], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
    ">=": operator.ge,
    "<=": operator.le,
}


def scalar_binop(op: str, lhs: float, rhs: float) -> float:
    """Between two scalars a comparison yields 1 or 0 (the parser requires `bool` there)."""
    fn = ARITHMETIC.get(op)
    if fn is not None:
        return fn(lhs, rhs)
    return 1.0 if COMPARISON[op](lhs, rhs) else 0.0


def go_quote(text: str) -> str:
    """Go's strconv.Quote, as Prometheus uses it when printing label values in errors."""
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\a":
            out.append("\\a")
        elif ch == "\b":
            out.append("\\b")
        elif ch == "\f":
            out.append("\\f")
        elif ch == "\v":
            out.append("\\v")
        elif ch.isprintable():
            out.append(ch)
        elif code < 0x80:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


def labels_string(labels: Labels) -> str:
    """labels.Labels.String(): `{a="1", b="2"}`, `__name__` included like any other label."""
    return "{" + ", ".join(f"{name}={go_quote(value)}" for name, value in labels) + "}"


def vector_scalar_binop(op: str, vec: Vector, scalar: float, swap: bool, return_bool: bool, t: int) -> Vector:
    """`vector op scalar` (or `scalar op vector` when swap): comparisons filter, keeping the vector's value."""
    out: Vector = []
    arith = ARITHMETIC.get(op)
    if arith is not None:
        dropped: dict[Labels, Labels] = {}
        drop = op in NAME_DROPPING_OPS
        for s in vec:
            value = arith(scalar, s.v) if swap else arith(s.v, scalar)
            labels = s.labels
            if drop:
                labels = dropped.get(s.labels)
                if labels is None:
                    labels = dropped[s.labels] = drop_name(s.labels)
            out.append(Sample(labels, t, value))
        if drop:
            _unique_labels(out)
        return out
    cmp = COMPARISON[op]
    for s in vec:
        keep = cmp(scalar, s.v) if swap else cmp(s.v, scalar)
        if return_bool:
            out.append(Sample(drop_name(s.labels), t, 1.0 if keep else 0.0))
        elif keep:
            out.append(Sample(s.labels, t, s.v))
    if return_bool:
        _unique_labels(out)
    return out


def _unique_labels(vec: Vector) -> None:
    """Dropping `__name__` may make two series one; Prometheus refuses such a step result."""
    if len(vec) > 1 and len({s.labels for s in vec}) != len(vec):
        raise PromQLError("vector cannot contain metrics with the same labelset")


class VectorMatcher:
    """Evaluates one vector/vector binary expression step by step, caching per-labels work across steps."""

    def __init__(self, op: str, matching: VectorMatching | None, return_bool: bool):
        self.op = op
        self.matching = matching or VectorMatching(card="many-to-many" if op in SET_OPS else "one-to-one")
        self.return_bool = return_bool
        names = set(self.matching.matching_labels)
        self._on = self.matching.on
        self._names = names if self._on else names | {"__name__"}
        # Shared with every query matching the same way (agent.promql.caches).
        self._sigs: dict[Labels, Labels] = shared_cache(("signature", self._on, frozenset(self._names)))
        m = self.matching
        self._results: dict[tuple[Labels, Labels], Labels] = shared_cache(
            ("result", op in NAME_DROPPING_OPS, m.card, m.on, frozenset(m.matching_labels), tuple(m.include))
        )

    def signature(self, labels: Labels) -> Labels:
        sig = self._sigs.get(labels)
        if sig is None:
            names = self._names
            if self._on:
                sig = tuple(p for p in labels if p[0] in names)
            else:
                sig = tuple(p for p in labels if p[0] not in names)
            self._sigs[labels] = sig
        return sig

    def evaluate(self, lhs: Vector, rhs: Vector, t: int) -> Vector:
        op = self.op
        if op == "and":
            return self._and(lhs, rhs)
        if op == "or":
            return self._or(lhs, rhs)
        if op == "unless":
            return self._unless(lhs, rhs)
        return self._binop(lhs, rhs, t)

    def _and(self, lhs: Vector, rhs: Vector) -> Vector:
        if not lhs or not rhs:
            return []
        sig = self.signature
        right = {sig(s.labels) for s in rhs}
        return [s for s in lhs if sig(s.labels) in right]

    def _or(self, lhs: Vector, rhs: Vector) -> Vector:
        if not lhs:
            return list(rhs)
        if not rhs:
            return list(lhs)
        sig = self.signature
        left = {sig(s.labels) for s in lhs}
        return list(lhs) + [s for s in rhs if sig(s.labels) not in left]

    def _unless(self, lhs: Vector, rhs: Vector) -> Vector:
        if not lhs or not rhs:
            return list(lhs)
        sig = self.signature
        right = {sig(s.labels) for s in rhs}
        return [s for s in lhs if sig(s.labels) not in right]

    def _binop(self, lhs: Vector, rhs: Vector, t: int) -> Vector:
        if not lhs or not rhs:
            return []
        matching = self.matching
        card = matching.card
        one_to_many = card == "one-to-many"
        if one_to_many:
            lhs, rhs = rhs, lhs
        sig = self.signature
        right: dict[Labels, Sample] = {}
        for rs in rhs:
            key = sig(rs.labels)
            dup = right.get(key)
            if dup is not None:
                self._raise_duplicate(rs, dup, one_to_many)
            right[key] = rs

        op = self.op
        arith = ARITHMETIC.get(op)
        cmp = COMPARISON.get(op)
        return_bool = self.return_bool
        one_to_one = card == "one-to-one"
        matched: dict[Labels, set[Labels] | None] = {}
        out: Vector = []
        for ls in lhs:
            key = sig(ls.labels)
            rs = right.get(key)
            if rs is None:
                continue
            vl, vr = (rs.v, ls.v) if one_to_many else (ls.v, rs.v)
            if arith is not None:
                value = arith(vl, vr)
                keep = True
            else:
                keep = cmp(vl, vr)
                value = vl
            if return_bool:
                value = 1.0 if keep else 0.0
            elif not keep:
                continue
            metric = self._result_metric(ls.labels, rs.labels)
            if return_bool:
                metric = drop_name(metric)
            if one_to_one:
                if key in matched:
                    raise PromQLError(
                        "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)"
                    )
                matched[key] = None
            else:
                inserted = matched.get(key)
                if inserted is None:
                    inserted = matched[key] = set()
                elif metric in inserted:
                    raise PromQLError("multiple matches for labels: grouping labels must ensure unique matches")
                inserted.add(metric)
            out.append(Sample(metric, t, value))
        return out

    def _raise_duplicate(self, rs: Sample, dup: Sample, one_to_many: bool) -> None:
        matching = self.matching
        names = set(matching.matching_labels)
        if matching.on:
            matched = tuple(p for p in rs.labels if p[0] in names)
        else:
            matched = tuple(p for p in rs.labels if p[0] not in names and p[0] != "__name__")
        side = "left" if one_to_many else "right"
        raise PromQLError(
            f"found duplicate series for the match group {labels_string(matched)} on the {side} hand-side of the "
            f"operation: [{labels_string(rs.labels)}, {labels_string(dup.labels)}];many-to-many matching not "
            "allowed: matching labels must be unique on one side"
        )

    def _result_metric(self, lhs: Labels, rhs: Labels) -> Labels:
        cache_key = (lhs, rhs)
        cached = self._results.get(cache_key)
        if cached is not None:
            return cached
        matching = self.matching
        result = dict(lhs)
        if self.op in NAME_DROPPING_OPS:
            result.pop("__name__", None)
        if matching.card == "one-to-one":
            names = set(matching.matching_labels)
            if matching.on:
                result = {k: v for k, v in result.items() if k in names}
            else:
                for name in names:
                    result.pop(name, None)
        if matching.include:
            one_side = dict(rhs)
            for name in matching.include:
                value = one_side.get(name, "")
                if value:
                    result[name] = value
                else:
                    result.pop(name, None)
        labels = tuple(sorted(result.items()))
        self._results[cache_key] = labels
        return labels
