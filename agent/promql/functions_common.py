"""Helpers shared by the function modules: Go's float semantics and label handling."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from agent.promql.values import CallContext, Labels, Vector

FunctionImpl = Callable[[list[Any], CallContext], Vector | float]

INF = math.inf
NAN = math.nan


def without_name(labels: Labels) -> Labels:
    """`labels` minus `__name__`; cheap in the usual case where the name sorts first."""
    if labels and labels[0][0] == "__name__":
        return labels[1:]
    for name, _ in labels:
        if name == "__name__":
            return tuple(p for p in labels if p[0] != "__name__")
    return labels


def go_div(a: float, b: float) -> float:
    """IEEE division as Go does it: x/0 is ±Inf or NaN (Python raises)."""
    if b != 0:
        return a / b
    if a != a or a == 0:
        return NAN
    return math.copysign(INF, a) * math.copysign(1.0, b)


def go_floor(x: float) -> float:
    """Go's math.Floor: keeps -0, NaN and ±Inf (Python's math.floor raises or loses the sign)."""
    if x - x != 0:  # NaN or ±Inf
        return x
    return x // 1.0


def go_ceil(x: float) -> float:
    if x - x != 0:
        return x
    return -((-x) // 1.0)


def go_max(x: float, y: float) -> float:
    """Go's math.Max: +Inf wins over NaN, NaN over numbers, +0 over -0."""
    if x == INF or y == INF:
        return INF
    if x != x or y != y:
        return NAN
    if x == 0 and x == y:
        return y if math.copysign(1.0, x) < 0 else x
    return x if x > y else y


def go_min(x: float, y: float) -> float:
    """Go's math.Min: -Inf wins over NaN, NaN over numbers, -0 over +0."""
    if x == -INF or y == -INF:
        return -INF
    if x != x or y != y:
        return NAN
    if x == 0 and x == y:
        return x if math.copysign(1.0, x) < 0 else y
    return x if x < y else y
