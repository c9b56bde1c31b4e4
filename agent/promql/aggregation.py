"""Aggregation operators, one evaluation step at a time, following Prometheus 2.42's `aggregation()`.

The arithmetic is replayed in Prometheus's order (incremental mean for avg, Welford for
stddev/stdvar, Go's heap for topk/bottomk) so results agree to the last bit and ties come out
in the same order.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from decimal import Decimal

from agent.promql.caches import shared_cache
from agent.promql.gosort import go_sort, heap_pop, heap_push
from agent.promql.values import Labels, PromQLError, Sample, Vector, format_value

_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_MAX_INT64 = 9223372036854774784.0
_MIN_INT64 = -9223372036854775808.0


def go_float_v(value: float) -> str:
    """Go's %v for a float64 (strconv 'g', shortest digits, exponent form outside [1e-4, 1e6))."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    sign, digits, exponent = Decimal(repr(value)).normalize().as_tuple()
    text = "".join(map(str, digits))
    exp10 = len(text) + int(exponent) - 1
    prefix = "-" if sign else ""
    if exp10 < -4 or exp10 >= 6:
        mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
        return f"{prefix}{mantissa}e{'-' if exp10 < 0 else '+'}{abs(exp10):02d}"
    return prefix + format(Decimal(repr(abs(value))).normalize(), "f")


def quantile(q: float, values: list[float]) -> float:
    """Prometheus's `quantile`: linear interpolation between the closest ranks; NaN sorts first."""
    if not values or q != q:
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    ordered = sorted(values, key=lambda v: (0, 0.0) if v != v else (1, v))
    n = float(len(ordered))
    rank = q * (n - 1)
    lower = max(0.0, math.floor(rank))
    upper = min(n - 1, lower + 1)
    weight = rank - math.floor(rank)
    return ordered[int(lower)] * (1 - weight) + ordered[int(upper)] * weight


class _Group:
    __slots__ = ("count", "heap", "labels", "less", "mean", "value", "values")

    def __init__(self, labels: Labels, value: float):
        self.labels = labels
        self.value = value
        self.mean = value
        self.count = 1
        self.heap: list[Sample] = []
        self.values: list[float] = []
        self.less: Callable[[int, int], bool] | None = None


class Aggregator:
    """One aggregation node: grouping keys are computed once per distinct label set and reused across steps
    (and across queries with the same grouping)."""

    def __init__(self, op: str, grouping: list[str], without: bool):
        self.op = op
        self.grouping = sorted(grouping)
        self.without = without
        self._keys: dict[Labels, tuple[Labels, Labels]] = shared_cache(("group", without, tuple(self.grouping)))
        drop = set(self.grouping) | {"__name__"}
        keep = set(self.grouping)
        self._drop = drop
        self._keep = keep

    def _group_of(self, labels: Labels, grouping: set[str] | None = None) -> tuple[Labels, Labels]:
        """(grouping key, result labels); for `without` the key ignores `__name__` as HashWithoutLabels does."""
        if grouping is None:
            cached = self._keys.get(labels)
            if cached is not None:
                return cached
        if self.without:
            names = self._drop if grouping is None else grouping | {"__name__"}
            key = tuple(p for p in labels if p[0] not in names)
            result = (key, key)
        else:
            names = self._keep if grouping is None else grouping
            key = tuple(p for p in labels if p[0] in names)
            result = (key, key)
        if grouping is None:
            self._keys[labels] = result
        return result

    def evaluate(self, vec: Vector, param: float | str | None, t: int) -> Vector:
        op = self.op
        k = 0
        if op in ("topk", "bottomk"):
            assert isinstance(param, float)
            if not (param <= _MAX_INT64 and param >= _MIN_INT64):
                raise PromQLError(f"Scalar value {go_float_v(param)} overflows int64")
            k = int(param)
            if k < 1:
                return []
        if op == "count_values":
            assert isinstance(param, str)
            return self._count_values(vec, param, t)
        if op == "quantile":
            assert isinstance(param, float)
            return self._quantile(vec, param, t)
        if op in ("topk", "bottomk"):
            return self._topk(vec, k, op == "bottomk", t)

        groups: dict[Labels, _Group] = {}
        ordered: list[_Group] = []
        group_of = self._group_of
        known = self._keys.get
        for s in vec:
            found = known(s.labels)
            key, labels = found if found is not None else group_of(s.labels)
            group = groups.get(key)
            v = s.v
            if group is None:
                group = groups[key] = _Group(labels, v)
                ordered.append(group)
                if op in ("stddev", "stdvar"):
                    group.value = 0.0
                elif op == "group":
                    group.value = 1.0
                continue
            if op == "sum":
                group.value += v
            elif op == "avg":
                group.count += 1
                mean = group.mean
                if math.isinf(mean):
                    if math.isinf(v) and (mean > 0) == (v > 0):
                        continue
                    if not math.isinf(v) and v == v:
                        continue
                group.mean = mean + (v / group.count - mean / group.count)
            elif op == "max":
                if group.value < v or group.value != group.value:
                    group.value = v
            elif op == "min":
                if group.value > v or group.value != group.value:
                    group.value = v
            elif op == "count":
                group.count += 1
            elif op in ("stddev", "stdvar"):
                group.count += 1
                delta = v - group.mean
                group.mean += delta / group.count
                group.value += delta * (v - group.mean)
            elif op != "group":
                raise PromQLError(f"expected aggregation operator but got {op!r}")

        out: Vector = []
        for group in ordered:
            if op == "avg":
                value = group.mean
            elif op == "count":
                value = float(group.count)
            elif op == "stdvar":
                value = group.value / group.count
            elif op == "stddev":
                value = math.sqrt(group.value / group.count)
            else:
                value = group.value
            out.append(Sample(group.labels, t, value))
        return out

    def _count_values(self, vec: Vector, label: str, t: int) -> Vector:
        if not _LABEL_NAME.match(label):
            raise PromQLError(f"invalid label name {_go_quote(label)}")
        grouping = set(self.grouping)
        if not self.without:
            grouping.add(label)
        groups: dict[Labels, _Group] = {}
        ordered: list[_Group] = []
        for s in vec:
            metric = dict(s.labels)
            metric[label] = format_value(s.v)
            labels = tuple(sorted(metric.items()))
            key, result = self._group_of(labels, grouping)
            group = groups.get(key)
            if group is None:
                group = groups[key] = _Group(result, s.v)
                ordered.append(group)
            else:
                group.count += 1
        return [Sample(g.labels, t, float(g.count)) for g in ordered]

    def _quantile(self, vec: Vector, q: float, t: int) -> Vector:
        groups: dict[Labels, _Group] = {}
        ordered: list[_Group] = []
        for s in vec:
            key, labels = self._group_of(s.labels)
            group = groups.get(key)
            if group is None:
                group = groups[key] = _Group(labels, s.v)
                ordered.append(group)
            group.values.append(s.v)
        return [Sample(g.labels, t, quantile(q, g.values)) for g in ordered]

    def _topk(self, vec: Vector, k: int, bottom: bool, t: int) -> Vector:
        groups: dict[Labels, _Group] = {}
        ordered: list[_Group] = []
        for s in vec:
            key, labels = self._group_of(s.labels)
            group = groups.get(key)
            if group is None:
                group = groups[key] = _Group(labels, s.v)
                group.heap.append(Sample(s.labels, t, s.v))
                group.less = _reverse_less(group.heap) if bottom else _less(group.heap)
                ordered.append(group)
                continue
            heap = group.heap
            less = group.less
            assert less is not None
            top = heap[0].v
            better = top > s.v if bottom else top < s.v
            if len(heap) < k or better or top != top:
                if len(heap) == k:
                    if k == 1:
                        heap[0] = Sample(s.labels, t, s.v)
                        continue
                    heap_pop(heap, less)
                heap_push(heap, Sample(s.labels, t, s.v), less)
        out: Vector = []
        for group in ordered:
            heap = group.heap
            if len(heap) > 1:
                forward = group.less
                assert forward is not None
                go_sort(heap, lambda i, j, f=forward: f(j, i))
            out.extend(heap)
        return out


def _less(heap: list[Sample]) -> Callable[[int, int], bool]:
    """vectorByValueHeap.Less: NaN sorts below everything."""

    def less(i: int, j: int) -> bool:
        vi = heap[i].v
        if vi != vi:
            return True
        return vi < heap[j].v

    return less


def _reverse_less(heap: list[Sample]) -> Callable[[int, int], bool]:
    """vectorByReverseValueHeap.Less."""

    def less(i: int, j: int) -> bool:
        vi = heap[i].v
        if vi != vi:
            return True
        return vi > heap[j].v

    return less


def _go_quote(text: str) -> str:
    from agent.promql.binary import go_quote

    return go_quote(text)
