"""The PromQL evaluator: Prometheus 2.42's `promql/engine.go` semantics, evaluated step-vector by step-vector.

Every node is evaluated once over all steps of its evaluator (the query's, or a subquery's own
aligned grid) and yields one value per step: a Vector for instant-vector nodes, a float for
scalars. This is Prometheus's rangeEval without the per-step regrouping of series, which is what
makes a range query affordable in Python: each selector reads storage once and each step finds its
samples by bisection. Instant queries are the one-step case.

`@` is applied as absolute time (`@ T offset o` reads at T - o in every context), which is what
Prometheus's offset rewriting amounts to; step-invariant subtrees (Prometheus's StepInvariantExpr)
are evaluated once and repeated, as there.
"""

from __future__ import annotations

import math
import time
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from math import isnan
from operator import itemgetter, sub
from typing import Any

from agent.promql import ast as A
from agent.promql.aggregation import Aggregator
from agent.promql.binary import VectorMatcher, scalar_binop, vector_scalar_binop
from agent.promql.functions import FUNCTIONS_IMPL
from agent.promql.functions_range import (
    BULK_RANGE_FUNCTIONS,
    ONE_STEP_RANGE_FUNCTIONS,
    ONE_STEP_RAW_FUNCTIONS,
    BulkImpl,
)
from agent.promql.parser import parse
from agent.promql.values import (
    CallContext,
    Labels,
    Matrix,
    ParseError,
    PromQLError,
    Queryable,
    QueryLimitError,
    QueryTimeout,
    Sample,
    Scalar,
    Series,
    SeriesData,
    SeriesView,
    String,
    Value,
    Vector,
    Window,
    drop_name,
    is_stale,
    series_of_view,
)

# Functions whose result changes with the evaluation time even when their arguments do not, so
# Prometheus never evaluates them once for all steps.
AT_MODIFIER_UNSAFE_FUNCTIONS = frozenset({
    "days_in_month", "day_of_month", "day_of_week", "day_of_year", "hour", "minute", "month", "year",
    "predict_linear", "time", "timestamp",
})

DOCUMENTED_TYPES = {"vector": "instant vector", "matrix": "range vector", "scalar": "scalar", "string": "string"}

TOO_MANY_SAMPLES = "query processing would load too many samples into memory in query execution"
TIMED_OUT = "query timed out in expression evaluation"
SAME_LABELSET = "vector cannot contain metrics with the same labelset"

StepVectors = list[Vector]
Steps = list[float] | StepVectors


def value_type(expr: A.Expr) -> A.ValueType:
    """The static type of an expression, as the parser's type checking assigns it."""
    if isinstance(expr, A.NumberLiteral):
        return "scalar"
    if isinstance(expr, A.StringLiteral):
        return "string"
    if isinstance(expr, A.VectorSelector | A.AggregateExpr):
        return "vector"
    if isinstance(expr, A.MatrixSelector | A.SubqueryExpr):
        return "matrix"
    if isinstance(expr, A.ParenExpr | A.UnaryExpr):
        return value_type(expr.expr)
    if isinstance(expr, A.BinaryExpr):
        if value_type(expr.lhs) == "scalar" and value_type(expr.rhs) == "scalar":
            return "scalar"
        return "vector"
    if isinstance(expr, A.Call):
        signature = A.FUNCTIONS.get(expr.func)
        if signature is None:
            raise PromQLError(f"unknown function with name {expr.func!r}")
        return signature.return_type
    raise PromQLError(f"unhandled expression of type {type(expr).__name__}")


def _unwrap(expr: A.Expr) -> A.Expr:
    while isinstance(expr, A.ParenExpr):
        expr = expr.expr
    return expr


def check_resolution(start_ms: int, end_ms: int, step_ms: int, max_points: int = 11_000) -> None:
    """The HTTP API's limit on points per series (Prometheus answers it as bad_data)."""
    if step_ms > 0 and (end_ms - start_ms) // step_ms > max_points:
        err = QueryLimitError(
            f"exceeded maximum resolution of {max_points:,} points per timeseries. "
            "Try decreasing the query resolution (?step=XX)"
        )
        err.error_type = "bad_data"
        raise err


@dataclass
class _Prep:
    """What Prometheus's PreprocessExpr writes into the tree, kept beside it so the AST is not mutated."""

    at: dict[int, int] = field(default_factory=dict)  # id(selector or subquery) -> resolved @ time (ms)
    invariant: set[int] = field(default_factory=set)  # ids of nodes wrapped in StepInvariantExpr
    subqueries: bool = False

    @classmethod
    def of(cls, expr: A.Expr, start: int, end: int) -> _Prep:
        if start == end and _plain(expr):
            return cls()  # what the walk below finds for it
        prep = cls()
        prep._resolve_at(expr, start, end)
        # At one step (instant queries, rules) there is nothing to repeat, unless a subquery has steps.
        if (start != end or prep.subqueries) and prep._invariant(expr):
            prep.invariant.add(id(expr))
        return prep

    def _resolve_at(self, node: A.Expr, start: int, end: int) -> None:
        if isinstance(node, A.SubqueryExpr):
            self.subqueries = True
        if isinstance(node, A.VectorSelector | A.SubqueryExpr):
            if node.start_or_end == "start":
                self.at[id(node)] = start
            elif node.start_or_end == "end":
                self.at[id(node)] = end
            elif node.timestamp is not None:
                self.at[id(node)] = node.timestamp
        for child in _children(node):
            self._resolve_at(child, start, end)

    def _invariant(self, node: A.Expr) -> bool:
        if isinstance(node, A.VectorSelector):
            return id(node) in self.at
        if isinstance(node, A.NumberLiteral | A.StringLiteral):
            return True
        if isinstance(node, A.ParenExpr | A.UnaryExpr | A.AggregateExpr):
            return self._invariant(node.expr)
        if isinstance(node, A.MatrixSelector):
            return self._invariant(node.vector)
        if isinstance(node, A.BinaryExpr):
            lhs, rhs = self._invariant(node.lhs), self._invariant(node.rhs)
            if lhs and rhs:
                return True
            if lhs:
                self.invariant.add(id(node.lhs))
            if rhs:
                self.invariant.add(id(node.rhs))
            return False
        if isinstance(node, A.Call):
            flags = [self._invariant(arg) for arg in node.args]
            if node.func not in AT_MODIFIER_UNSAFE_FUNCTIONS and all(flags):
                return True
            for arg, flag in zip(node.args, flags, strict=True):
                if flag:
                    self.invariant.add(id(arg))
            return False
        if isinstance(node, A.SubqueryExpr):
            if self._invariant(node.expr):
                self.invariant.add(id(node.expr))
            return id(node) in self.at
        raise PromQLError(f"unhandled expression of type {type(node).__name__}")


_PLAIN_MAX = 4096
_plain_memo: dict[int, tuple[A.Expr, bool]] = {}
"""id(expression) -> (the expression, whether `_plain`): rules evaluate the same trees at every interval.
The expression is kept so that its id is not reused while the entry exists; a race between query threads
only computes an entry twice."""


def _plain(expr: A.Expr) -> bool:
    """Whether the tree has neither @ modifiers nor subqueries: at one step, its _Prep is empty."""
    hit = _plain_memo.get(id(expr))
    if hit is not None and hit[0] is expr:
        return hit[1]
    stack = [expr]
    plain = True
    while stack and plain:
        node = stack.pop()
        if isinstance(node, A.SubqueryExpr) or (
            isinstance(node, A.VectorSelector) and (node.start_or_end or node.timestamp is not None)
        ):
            plain = False
        stack.extend(_children(node))
    if len(_plain_memo) >= _PLAIN_MAX:
        _plain_memo.clear()
    _plain_memo[id(expr)] = (expr, plain)
    return plain


def _children(node: A.Expr) -> list[A.Expr]:
    if isinstance(node, A.ParenExpr | A.UnaryExpr | A.SubqueryExpr):
        return [node.expr]
    if isinstance(node, A.MatrixSelector):
        return [node.vector]
    if isinstance(node, A.BinaryExpr):
        return [node.lhs, node.rhs]
    if isinstance(node, A.AggregateExpr):
        return [node.expr] if node.param is None else [node.param, node.expr]
    if isinstance(node, A.Call):
        return list(node.args)
    return []


class _Query:
    """State shared by all evaluators of one query: storage, limits, the deadline, sample accounting."""

    def __init__(self, engine: Engine, queryable: Queryable, prep: _Prep, timeout_s: float):
        self.queryable = queryable
        self.prep = prep
        self.lookback = engine.lookback_delta_ms
        self.max_samples = engine.max_samples
        self.default_step = engine.default_subquery_step_ms
        self.deadline = time.monotonic() + timeout_s
        self.samples = 0

    def check_deadline(self) -> None:
        if time.monotonic() > self.deadline:
            raise QueryTimeout(TIMED_OUT)

    def hold(self, n: int) -> None:
        self.samples += n
        if self.samples > self.max_samples:
            raise QueryLimitError(TOO_MANY_SAMPLES)


def _size(result: Steps | Any) -> int:
    if isinstance(result, list) and result and isinstance(result[0], list):
        return sum(map(len, result))
    if isinstance(result, list) and result and isinstance(result[0], Series):
        return sum(len(s.points) for s in result)
    return 0


def _one_metric(matchers: Sequence[A.Matcher]) -> bool:
    """Whether the selector names its metric: its series differ in labels other than `__name__`."""
    return any(m.name == "__name__" and m.type is A.MatchType.EQL for m in matchers)


def _check_unique(vec: Vector) -> None:
    if len(vec) > 1 and len({s.labels for s in vec}) != len(vec):
        raise PromQLError(SAME_LABELSET)


@dataclass(slots=True)
class _RangeSeries:
    """A series as a range-vector argument sees it: whole arrays, stale markers removed."""

    labels: Labels
    ts: Sequence[int]
    values: Sequence[float]
    source: SeriesData | None
    cache: dict[str, Any] | None = None
    """Derived arrays shared by the steps of a range query (set by the multi-step path only)."""


def _without_stale(data: SeriesData) -> _RangeSeries:
    values = data.values
    rollup = data.count is not None
    if not any(map(math.isnan, values)):
        return _RangeSeries(data.labels, data.ts, values, data if rollup else None)
    keep = [i for i, v in enumerate(values) if not (v != v and is_stale(v))]
    if len(keep) == len(values):
        return _RangeSeries(data.labels, data.ts, values, data if rollup else None)
    ts = [data.ts[i] for i in keep]
    kept = [values[i] for i in keep]
    if not rollup:
        return _RangeSeries(data.labels, ts, kept, None)
    source = SeriesData(data.labels, ts, kept)
    for name in ("count", "sum", "min", "max"):
        column = getattr(data, name)
        setattr(source, name, [column[i] for i in keep] if column is not None else None)
    return _RangeSeries(data.labels, ts, kept, source)


class _Evaluator:
    """Evaluates expressions at the steps start, start+interval, ..., end (inclusive)."""

    def __init__(self, query: _Query, start: int, end: int, interval: int):
        self.q = query
        self.start = start
        self.end = end
        self.interval = interval
        self.steps: list[int] = list(range(start, end + 1, interval)) if end >= start else []

    # --- dispatch ---

    def eval(self, node: A.Expr) -> Any:
        q = self.q
        q.check_deadline()
        before = q.samples
        literal = isinstance(node, A.NumberLiteral | A.StringLiteral)
        if id(node) in q.prep.invariant and len(self.steps) > 1 and not literal:
            result = self._eval_invariant(node)
        else:
            result = self._eval(node)
        size = _size(result)
        q.hold(size)
        q.samples = before + size
        return result

    def _eval(self, node: A.Expr) -> Any:
        if isinstance(node, A.VectorSelector):
            return self._vector_selector(node)
        if isinstance(node, A.Call):
            return self._call(node)
        if isinstance(node, A.BinaryExpr):
            return self._binary(node)
        if isinstance(node, A.AggregateExpr):
            return self._aggregate(node)
        if isinstance(node, A.NumberLiteral):
            return [node.value] * len(self.steps)
        if isinstance(node, A.ParenExpr):
            return self.eval(node.expr)
        if isinstance(node, A.UnaryExpr):
            return self._unary(node)
        if isinstance(node, A.StringLiteral):
            return String(self.start, node.value)
        if isinstance(node, A.MatrixSelector):
            return self._matrix_value(node)
        if isinstance(node, A.SubqueryExpr):
            return self._subquery_value(node)
        raise PromQLError(f"unhandled expression of type {type(node).__name__}")

    def _eval_invariant(self, node: A.Expr) -> Any:
        """Evaluate once at the first step and repeat the result at every step (StepInvariantExpr)."""
        once = _Evaluator(self.q, self.start, self.start, self.interval)
        result = once._eval(node)
        kind = value_type(node)
        if kind == "scalar":
            return [result[0]] * len(self.steps) if result else []
        if kind != "vector":
            return result
        first = result[0] if result else []
        return [[Sample(s.labels, t, s.v) for s in first] for t in self.steps]

    # --- selectors ---

    def _select(self, matchers: list[A.Matcher], mint: int, maxt: int) -> list[SeriesData]:
        """The queryable's series, in its order: by labels (see Queryable.select)."""
        return self.q.queryable.select(matchers, mint, maxt)

    def _select_views(self, matchers: list[A.Matcher], mint: int, maxt: int) -> list[SeriesView]:
        """`_select` as views (see Queryable.select_views): one step reads each series' window in place."""
        return self.q.queryable.select_views(matchers, mint, maxt)

    def _vector_selector(self, vs: A.VectorSelector, own_timestamps: bool = False) -> StepVectors:
        """Latest sample in [ref - lookback, ref] per step, ref = step (or @ time) minus offset; none if stale."""
        steps = self.steps
        out: StepVectors = [[] for _ in steps]
        if not steps:
            return out
        q = self.q
        lookback = q.lookback
        offset = vs.offset
        at = q.prep.at.get(id(vs))
        if at is not None:
            lo_ref = hi_ref = at - offset
        else:
            lo_ref, hi_ref = steps[0] - offset, steps[-1] - offset
        if len(steps) == 1:
            out[0] = self._vector_selector_once(self._select_views(vs.matchers, lo_ref - lookback, hi_ref), steps[0],
                                                own_timestamps)
            return out
        data = self._select(vs.matchers, lo_ref - lookback, hi_ref)
        held = 0
        for n, series in enumerate(data):
            if not n & 63:
                q.check_deadline()
            ts, values, labels = series.ts, series.values, series.labels
            count = 0
            if at is not None:
                j = bisect_right(ts, hi_ref)
                if j == 0 or ts[j - 1] < hi_ref - lookback:
                    continue
                v = values[j - 1]
                if v != v and is_stale(v):
                    continue
                own = ts[j - 1]
                for i, t in enumerate(steps):
                    out[i].append(Sample(labels, own if own_timestamps else t, v))
                count = len(steps)
            else:
                j = 0
                for i, t in enumerate(steps):
                    ref = t - offset
                    j = bisect_right(ts, ref, j)
                    if j == 0 or ts[j - 1] < ref - lookback:
                        continue
                    v = values[j - 1]
                    if v != v and is_stale(v):
                        continue
                    out[i].append(Sample(labels, ts[j - 1] if own_timestamps else t, v))
                    count += 1
            held += count
            q.hold(count)
        q.samples -= held
        return out

    def _vector_selector_once(self, data: list[SeriesView], t: int, own_timestamps: bool) -> Vector:
        """`_vector_selector` for one step (instant queries, rules): each series' newest point in the lookback
        window the views cover, unless it is a stale marker."""
        q = self.q
        out: Vector = []
        for n, (labels, _, ts, values, _, hi, _, _, _) in enumerate(data):
            if not n & 63:
                q.check_deadline()
            v = values[hi - 1]
            if v != v and is_stale(v):
                continue
            out.append(Sample(labels, ts[hi - 1] if own_timestamps else t, v))
        q.hold(len(out))
        q.samples -= len(out)
        return out

    def _range_series_of_selector(self, ms: A.MatrixSelector) -> tuple[list[_RangeSeries], int | None]:
        vs = ms.vector
        at = self.q.prep.at.get(id(vs))
        if not self.steps:
            return [], at
        if at is not None:
            hi = at - vs.offset
            lo = hi - ms.range
        else:
            hi = self.steps[-1] - vs.offset
            lo = self.steps[0] - vs.offset - ms.range
        data = self._select(vs.matchers, lo, hi)
        return [_without_stale(d) for d in data], at

    def _matrix_value(self, ms: A.MatrixSelector) -> Matrix:
        """A bare range selector (instant queries only): the points in [t - range, t] after offset and @."""
        if len(self.steps) != 1:
            raise PromQLError("cannot do range evaluation of matrix selector")
        series, at = self._range_series_of_selector(ms)
        end = (at if at is not None else self.start) - ms.vector.offset
        begin = end - ms.range
        out: Matrix = []
        for rs in series:
            lo = bisect_left(rs.ts, begin)
            hi = bisect_right(rs.ts, end)
            if hi > lo:
                out.append(Series(rs.labels, list(zip(rs.ts[lo:hi], rs.values[lo:hi], strict=True))))
        return out

    # --- subqueries ---

    def _subquery_grid(self, sq: A.SubqueryExpr) -> tuple[_Evaluator, int | None]:
        at = self.q.prep.at.get(id(sq))
        step = sq.step or self.q.default_step
        outer_start, outer_end = (at, at) if at is not None else (self.start, self.end)
        base = outer_start - sq.offset - sq.range
        # Go truncates the division toward zero, then moves up to the first aligned time >= base.
        quotient = abs(base) // step
        start = step * (quotient if base >= 0 else -quotient)
        if start < base:
            start += step
        return _Evaluator(self.q, start, outer_end - sq.offset, step), at

    def _range_series_of_subquery(self, sq: A.SubqueryExpr) -> tuple[list[_RangeSeries], int | None]:
        inner, at = self._subquery_grid(sq)
        result = inner.eval(sq.expr)
        by_labels: dict[Labels, tuple[list[int], list[float]]] = {}
        if value_type(sq.expr) == "scalar":
            by_labels[()] = (list(inner.steps), list(result))
        else:
            for t, vec in zip(inner.steps, result, strict=True):
                for s in vec:
                    entry = by_labels.get(s.labels)
                    if entry is None:
                        entry = by_labels[s.labels] = ([], [])
                    entry[0].append(t)
                    entry[1].append(s.v)
        return [_RangeSeries(labels, ts, vals, None) for labels, (ts, vals) in by_labels.items()], at

    def _subquery_value(self, sq: A.SubqueryExpr) -> Matrix:
        series, _ = self._range_series_of_subquery(sq)
        return sorted(
            (Series(rs.labels, list(zip(rs.ts, rs.values, strict=True))) for rs in series), key=lambda s: s.labels
        )

    # --- function calls ---

    def _call(self, call: A.Call) -> Steps:
        name = call.func
        impl = FUNCTIONS_IMPL.get(name)
        if impl is None:
            raise PromQLError(f"function {name} is not supported")
        if name == "timestamp" and call.args:
            arg = _unwrap(call.args[0])
            if isinstance(arg, A.VectorSelector):
                return self._apply_per_step(call, impl, [self._vector_selector(arg, own_timestamps=True)], ["vector"])
        for i, arg in enumerate(call.args):
            if isinstance(_unwrap(arg), A.MatrixSelector | A.SubqueryExpr):
                return self._call_with_range(call, impl, i)
        values: list[Any] = []
        kinds: list[str] = []
        for arg in call.args:
            kind = value_type(arg)
            kinds.append(kind)
            if kind == "string":
                literal = _unwrap(arg)
                values.append(literal.value if isinstance(literal, A.StringLiteral) else self.eval(arg).v)
            else:
                values.append(self.eval(arg))
        return self._apply_per_step(call, impl, values, kinds)

    def _apply_per_step(
        self, call: A.Call, impl: Callable[[list[Any], CallContext], Any], values: list[Any], kinds: list[str]
    ) -> Steps:
        returns_scalar = A.FUNCTIONS[call.func].return_type == "scalar"
        per_step = [k != "string" for k in kinds]
        out: list[Any] = []
        args: list[Any] = [v if not p else None for v, p in zip(values, per_step, strict=True)]
        check = self.q.check_deadline
        for i, t in enumerate(self.steps):
            if not i & 127:
                check()
            for j, p in enumerate(per_step):
                if p:
                    args[j] = values[j][i]
            result = impl(list(args), CallContext(t, 0, call.args))
            if returns_scalar:
                out.append(float(result))
                continue
            for s in result:
                s.t = t
            _check_unique(result)
            out.append(result)
        return out

    def _call_with_range(self, call: A.Call, impl: Callable[[list[Any], CallContext], Any], index: int) -> StepVectors:
        """A function over a range vector: per step, one Window per series with samples in [end - range, end]."""
        name = call.func
        values: list[Any] = []
        for i, arg in enumerate(call.args):
            if i == index:
                values.append(None)
            elif value_type(arg) == "string":
                literal = _unwrap(arg)
                values.append(literal.value if isinstance(literal, A.StringLiteral) else self.eval(arg).v)
            else:
                values.append(self.eval(arg))
        arg = _unwrap(call.args[index])
        if len(self.steps) == 1 and isinstance(arg, A.MatrixSelector):
            return [self._range_selector_once(call, impl, index, values, arg)]
        if isinstance(arg, A.MatrixSelector):
            series, at = self._range_series_of_selector(arg)
            offset, rng = arg.vector.offset, arg.range
        else:
            assert isinstance(arg, A.SubqueryExpr)
            series, at = self._range_series_of_subquery(arg)
            offset, rng = arg.offset, arg.range
        q = self.q
        steps = self.steps
        ends = [at - offset] * len(steps) if at is not None else [t - offset for t in steps]
        if len(steps) == 1:
            return [self._range_call_once(call, impl, index, values, series, ends[0], rng)]
        scalar_args = [i for i, a in enumerate(call.args) if i != index and value_type(a) != "string"]
        absent = name == "absent_over_time"
        tracker = _DuplicateTracker(series, name) if not absent else None
        for rs in series:
            rs.cache = {}
        # Window bounds for every step, found by bisection in C before the per-step loop.
        bounds = [
            (rs, [bisect_left(rs.ts, end - rng) for end in ends], [bisect_right(rs.ts, end) for end in ends])
            for rs in series
        ]
        bulk = BULK_RANGE_FUNCTIONS.get(name)
        if bulk is not None and tracker is not None and not tracker.active:
            return self._bulk_range(bulk, bounds, ends, rng)
        out: StepVectors = []
        for i, t in enumerate(steps):
            if not i & 127:
                q.check_deadline()
            windows: list[Window] = []
            points = 0
            for rs, los, his in bounds:
                lo = los[i]
                hi = his[i]
                if hi > lo:
                    windows.append(Window(rs.labels, rs.ts, rs.values, lo, hi, rs.source, rs.cache))
                    points += hi - lo
            if absent:
                if windows:
                    out.append([])
                    continue
            elif not windows:
                out.append([])
                continue
            if q.samples + points > q.max_samples:
                raise QueryLimitError(TOO_MANY_SAMPLES)
            args = values.copy()
            for j in scalar_args:
                args[j] = values[j][i]
            args[index] = windows
            result = impl(args, CallContext(ends[i], rng, call.args, t))
            for sample in result:
                sample.t = t
            if tracker is not None:
                tracker.step(windows, result)
            out.append(result)
        if tracker is not None:
            tracker.finish()
        return out

    def _range_selector_once(self, call: A.Call, impl: Callable[[list[Any], CallContext], Any], index: int,
                             values: list[Any], ms: A.MatrixSelector) -> Vector:
        """`_call_with_range` over a range selector at one step (instant queries, rules): the windows are
        found in the selected series directly, and rate & co run on their points without a Window each."""
        vs = ms.vector
        q = self.q
        t = self.steps[0]
        at = q.prep.at.get(id(vs))
        rng = ms.range
        end = (at if at is not None else t) - vs.offset
        start = end - rng
        data = self._select_views(vs.matchers, start, end)
        one_step = ONE_STEP_RANGE_FUNCTIONS.get(call.func)
        if one_step is None and not any(map(itemgetter(8), data)):  # no view of rollup buckets
            one_step = ONE_STEP_RAW_FUNCTIONS.get(call.func)
        one = one_step(rng) if one_step is not None else None
        out: Vector = []
        windows: list[Window] = []
        points = 0
        for n, (labels, unnamed, ts, vals, lo, hi, drop, nan, source) in enumerate(data):
            if not n & 63:
                q.check_deadline()
            if (nan is None or nan >= ts[lo]) and any(map(isnan, vals[lo:hi])):  # stale markers are no samples
                rs = _without_stale(series_of_view((labels, unnamed, ts, vals, lo, hi, drop, nan, source)))
                ts, vals, lo, hi, drop, source = rs.ts, rs.values, 0, len(rs.ts), None, rs.source
                if not hi:
                    continue
            points += hi - lo
            if one is None:
                windows.append(Window(labels, ts, vals, lo, hi, source))
                continue
            value = one(ts, vals, lo, hi, end, drop is None or drop > ts[lo])
            if value is not None:
                out.append(Sample(unnamed, t, value))
        if q.samples + points > q.max_samples:
            raise QueryLimitError(TOO_MANY_SAMPLES)
        if one is None:
            out = self._apply_windows(call, impl, index, values, windows, end, rng)
        if call.func != "absent_over_time" and not _one_metric(vs.matchers):
            # At one step this is what _DuplicateTracker finds over many; series of one metric name stay
            # distinct without it.
            _check_unique(out)
        return out

    def _range_call_once(self, call: A.Call, impl: Callable[[list[Any], CallContext], Any], index: int,
                         values: list[Any], series: list[_RangeSeries], end: int, rng: int) -> Vector:
        """`_call_with_range` at one step over already evaluated range series (a subquery)."""
        q = self.q
        start = end - rng
        windows: list[Window] = []
        points = 0
        for rs in series:
            lo = bisect_left(rs.ts, start)
            hi = bisect_right(rs.ts, end)
            if hi > lo:
                windows.append(Window(rs.labels, rs.ts, rs.values, lo, hi, rs.source))
                points += hi - lo
        if q.samples + points > q.max_samples:
            raise QueryLimitError(TOO_MANY_SAMPLES)
        out = self._apply_windows(call, impl, index, values, windows, end, rng)
        if call.func != "absent_over_time":
            _check_unique(out)
        return out

    def _apply_windows(self, call: A.Call, impl: Callable[[list[Any], CallContext], Any], index: int,
                       values: list[Any], windows: list[Window], end: int, rng: int) -> Vector:
        """The function at the (only) step over its windows; absent_over_time answers only when none has
        samples, every other function only when some has."""
        if (call.func == "absent_over_time") == bool(windows):
            return []
        t = self.steps[0]
        args = values.copy()
        for j, arg in enumerate(call.args):
            if j != index and value_type(arg) != "string":
                args[j] = values[j][0]
        args[index] = windows
        result = impl(args, CallContext(end, rng, call.args, t))
        for sample in result:
            sample.t = t
        return result

    def _bulk_range(self, bulk: BulkImpl, bounds: list[tuple[_RangeSeries, list[int], list[int]]],
                    ends: list[int], rng: int) -> StepVectors:
        """A name-dropping range function whose series cannot collide: each series over all steps in
        one call, then the per-step vectors are assembled (same results as the per-step path)."""
        q = self.q
        steps = self.steps
        most = max(map(sum, zip(*[map(sub, his, los) for _, los, his in bounds], strict=True)), default=0)
        if q.samples + most > q.max_samples:
            raise QueryLimitError(TOO_MANY_SAMPLES)
        out: StepVectors = [[] for _ in steps]
        for n, (rs, los, his) in enumerate(bounds):
            if not n & 63:
                q.check_deadline()
            labels = drop_name(rs.labels)
            window = Window(rs.labels, rs.ts, rs.values, 0, 0, rs.source, rs.cache)
            for vec, t, value in zip(out, steps, bulk(window, los, his, ends, rng), strict=True):
                if value is not None:
                    vec.append(Sample(labels, t, value))
        return out

    # --- operators ---

    def _binary(self, e: A.BinaryExpr) -> Steps:
        lt, rt = value_type(e.lhs), value_type(e.rhs)
        lhs = self.eval(e.lhs)
        rhs = self.eval(e.rhs)
        op = e.op
        steps = self.steps
        if lt == "scalar" and rt == "scalar":
            return [scalar_binop(op, a, b) for a, b in zip(lhs, rhs, strict=True)]
        out: StepVectors = []
        check = self.q.check_deadline
        if lt == "vector" and rt == "vector":
            matcher = VectorMatcher(op, e.matching, e.return_bool)
            for i, t in enumerate(steps):
                if not i & 127:
                    check()
                result = matcher.evaluate(lhs[i], rhs[i], t)
                _check_unique(result)
                out.append(result)
            return out
        swap = lt == "scalar"
        vectors, scalars = (rhs, lhs) if swap else (lhs, rhs)
        for i, t in enumerate(steps):
            if not i & 127:
                check()
            out.append(vector_scalar_binop(op, vectors[i], scalars[i], swap, e.return_bool, t))
        return out

    def _unary(self, e: A.UnaryExpr) -> Steps:
        value = self.eval(e.expr)
        if e.op == "+":
            return value
        if value_type(e.expr) == "scalar":
            return [-v for v in value]
        dropped: dict[Labels, Labels] = {}
        out: StepVectors = []
        for t, vec in zip(self.steps, value, strict=True):
            step: Vector = []
            for s in vec:
                labels = dropped.get(s.labels)
                if labels is None:
                    labels = dropped[s.labels] = drop_name(s.labels)
                step.append(Sample(labels, t, -s.v))
            out.append(step)
        # Prometheus checks the whole result matrix: two input series may not collapse into one.
        if len(set(dropped.values())) != len(dropped):
            raise PromQLError(SAME_LABELSET)
        return out

    def _aggregate(self, e: A.AggregateExpr) -> StepVectors:
        steps = self.steps
        params: list[Any]
        if e.op == "count_values":
            assert e.param is not None
            literal = _unwrap(e.param)
            label = literal.value if isinstance(literal, A.StringLiteral) else self.eval(e.param).v
            params = [label] * len(steps)
        elif e.param is not None:
            params = self.eval(e.param)
        else:
            params = [None] * len(steps)
        vectors = self.eval(e.expr)
        aggregator = Aggregator(e.op, list(e.grouping), e.without)
        check = self.q.check_deadline
        out: StepVectors = []
        for i, t in enumerate(steps):
            if not i & 127:
                check()
            out.append(aggregator.evaluate(vectors[i], params[i], t))
        return out


class _DuplicateTracker:
    """Prometheus rejects a range-function result where two input series end with the same labels,
    even at different steps; this finds such pairs without tracking every series in the common case."""

    def __init__(self, series: list[_RangeSeries], func: str):
        keep_name = func == "last_over_time"
        self._keys = [rs.labels for rs in series] if keep_name else [drop_name(rs.labels) for rs in series]
        self._active = len(set(self._keys)) != len(self._keys)
        self.active = self._active
        self._by_labels = {id(rs.labels): i for i, rs in enumerate(series)} if self._active else {}
        self._produced: set[int] = set()

    def step(self, windows: list[Window], result: Vector) -> None:
        if not self._active:
            return
        _check_unique(result)
        at_step: dict[Labels, int] = {}
        for w in windows:
            index = self._by_labels.get(id(w.labels))
            if index is not None:
                at_step[self._keys[index]] = index
        for s in result:
            index = at_step.get(s.labels)
            if index is not None:
                self._produced.add(index)

    def finish(self) -> None:
        if not self._active:
            return
        seen: set[Labels] = set()
        for index in self._produced:
            key = self._keys[index]
            if key in seen:
                raise PromQLError(SAME_LABELSET)
            seen.add(key)


class Engine:
    """Evaluates PromQL over a Queryable; thread-safe (no state between queries)."""

    def __init__(
        self,
        lookback_delta_ms: int = 300_000,
        max_samples: int = 50_000_000,
        max_points_per_series: int = 11_000,
        default_subquery_step_ms: int = 60_000,
    ):
        self.lookback_delta_ms = lookback_delta_ms
        self.max_samples = max_samples
        self.max_points_per_series = max_points_per_series
        self.default_subquery_step_ms = default_subquery_step_ms

    @staticmethod
    def _parse(query: str | A.Expr) -> A.Expr:
        return query if isinstance(query, A.Expr) else parse(query)

    def instant_query(self, q: Queryable, query: str | A.Expr, t_ms: int, timeout_s: float = 120.0) -> Value:
        expr = self._parse(query)
        prep = _Prep.of(expr, t_ms, t_ms)
        ev = _Evaluator(_Query(self, q, prep, timeout_s), t_ms, t_ms, 1)
        kind = value_type(expr)
        result = ev.eval(expr)
        if kind == "vector":
            return result[0]
        if kind == "scalar":
            return Scalar(t_ms, result[0])
        return result

    def range_query(
        self, q: Queryable, query: str | A.Expr, start_ms: int, end_ms: int, step_ms: int, timeout_s: float = 120.0
    ) -> Matrix:
        expr = self._parse(query)
        kind = value_type(expr)
        if kind not in ("vector", "scalar"):
            raise ParseError(
                f'invalid expression type "{DOCUMENTED_TYPES[kind]}" for range query, must be Scalar or instant Vector'
            )
        if step_ms <= 0:
            raise ParseError("zero or negative query resolution step widths are not accepted. Try a positive integer")
        if end_ms < start_ms:
            raise ParseError("end timestamp must not be before start time")
        check_resolution(start_ms, end_ms, step_ms, self.max_points_per_series)
        prep = _Prep.of(expr, start_ms, end_ms)
        ev = _Evaluator(_Query(self, q, prep, timeout_s), start_ms, end_ms, step_ms)
        result = ev.eval(expr)
        if kind == "scalar":
            return [Series((), list(zip(ev.steps, result, strict=True)))]
        by_labels: dict[Labels, list[tuple[int, float]]] = {}
        for t, vec in zip(ev.steps, result, strict=True):
            for s in vec:
                points = by_labels.get(s.labels)
                if points is None:
                    points = by_labels[s.labels] = []
                points.append((t, s.v))
        return [Series(labels, by_labels[labels]) for labels in sorted(by_labels)]
