"""The syntax tree the parser builds and the engine walks, shaped like Prometheus's `parser` package.

Times and durations are integer milliseconds, as in Prometheus. Nodes are plain dataclasses so
tests can build and compare them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Literal

ValueType = Literal["scalar", "vector", "matrix", "string"]


class MatchType(Enum):
    EQL = "="
    NEQ = "!="
    RE = "=~"
    NRE = "!~"


@dataclass(frozen=True)
class Matcher:
    """A label matcher. Regex matchers are fully anchored, as in Prometheus (`^(?:re)$`)."""

    type: MatchType
    name: str
    value: str


@dataclass
class Expr:
    """Base of every node; `pos` is the 0-based offset of the node's first character in the query."""

    pos: int = field(default=0, kw_only=True, compare=False)


@dataclass
class NumberLiteral(Expr):
    value: float


@dataclass
class StringLiteral(Expr):
    value: str


@dataclass
class VectorSelector(Expr):
    """`name{matchers}`; the metric name, when given, is also an `__name__` EQL matcher in `matchers`.

    `offset` is in ms (negative allowed). `timestamp` is the `@` time in ms, or None; `start_or_end`
    is "start" / "end" for `@ start()` / `@ end()`.
    """

    name: str | None
    matchers: list[Matcher]
    offset: int = 0
    timestamp: int | None = None
    start_or_end: Literal["start", "end"] | None = None


@dataclass
class MatrixSelector(Expr):
    """`vector_selector[range]`; `range` in ms. Offset and `@` live on the inner selector."""

    vector: VectorSelector
    range: int


@dataclass
class SubqueryExpr(Expr):
    """`expr[range:step]` with optional offset and `@`; `step` 0 means the default evaluation interval."""

    expr: Expr
    range: int
    step: int
    offset: int = 0
    timestamp: int | None = None
    start_or_end: Literal["start", "end"] | None = None


@dataclass
class ParenExpr(Expr):
    expr: Expr


@dataclass
class UnaryExpr(Expr):
    op: Literal["-", "+"]
    expr: Expr


@dataclass
class VectorMatching:
    """`on`/`ignoring` and `group_left`/`group_right` of a binary operation between two vectors.

    card: "one-to-one", "many-to-one" (group_left), "one-to-many" (group_right), "many-to-many"
    (and/or/unless). `on` is True for `on(...)`, False for `ignoring(...)` or none given.
    `include` are the labels listed in group_left(...)/group_right(...).
    """

    card: Literal["one-to-one", "many-to-one", "one-to-many", "many-to-many"] = "one-to-one"
    matching_labels: list[str] = field(default_factory=list)
    on: bool = False
    include: list[str] = field(default_factory=list)


@dataclass
class BinaryExpr(Expr):
    """op is one of + - * / % ^ == != > < >= <= and or unless."""

    op: str
    lhs: Expr
    rhs: Expr
    matching: VectorMatching | None = None  # set when both sides are vectors
    return_bool: bool = False


@dataclass
class AggregateExpr(Expr):
    """op: sum avg min max count stddev stdvar topk bottomk quantile count_values group.

    `param` is the first argument of topk/bottomk/quantile/count_values. `without` False with
    empty `grouping` means no grouping clause at all.
    """

    op: str
    expr: Expr
    param: Expr | None = None
    grouping: list[str] = field(default_factory=list)
    without: bool = False


@dataclass
class Call(Expr):
    func: str
    args: list[Expr]


@dataclass(frozen=True)
class FunctionSig:
    """Argument types of a function; `variadic` extra trailing args of the last type (-1: none)."""

    arg_types: tuple[ValueType, ...]
    return_type: ValueType
    variadic: int = 0  # how many optional args beyond the first len(arg_types) - variadic are allowed


def _sig(ret: ValueType, *args: ValueType, variadic: int = 0) -> FunctionSig:
    return FunctionSig(tuple(args), ret, variadic)


# The functions Vigil implements (Prometheus 2.42's signatures). `variadic` as in Prometheus:
# 0 = exactly these args; N > 0 = the last N args are optional; -1 = the last type repeats.
FUNCTIONS: dict[str, FunctionSig] = {
    "abs": _sig("vector", "vector"),
    "absent": _sig("vector", "vector"),
    "absent_over_time": _sig("vector", "matrix"),
    "avg_over_time": _sig("vector", "matrix"),
    "ceil": _sig("vector", "vector"),
    "changes": _sig("vector", "matrix"),
    "clamp": _sig("vector", "vector", "scalar", "scalar"),
    "clamp_max": _sig("vector", "vector", "scalar"),
    "clamp_min": _sig("vector", "vector", "scalar"),
    "count_over_time": _sig("vector", "matrix"),
    "days_in_month": _sig("vector", "vector", variadic=1),
    "day_of_month": _sig("vector", "vector", variadic=1),
    "day_of_week": _sig("vector", "vector", variadic=1),
    "day_of_year": _sig("vector", "vector", variadic=1),
    "delta": _sig("vector", "matrix"),
    "deriv": _sig("vector", "matrix"),
    "exp": _sig("vector", "vector"),
    "floor": _sig("vector", "vector"),
    "histogram_quantile": _sig("vector", "scalar", "vector"),
    "hour": _sig("vector", "vector", variadic=1),
    "idelta": _sig("vector", "matrix"),
    "increase": _sig("vector", "matrix"),
    "irate": _sig("vector", "matrix"),
    "label_join": _sig("vector", "vector", "string", "string", "string", variadic=-1),
    "label_replace": _sig("vector", "vector", "string", "string", "string", "string"),
    "last_over_time": _sig("vector", "matrix"),
    "ln": _sig("vector", "vector"),
    "log10": _sig("vector", "vector"),
    "log2": _sig("vector", "vector"),
    "max_over_time": _sig("vector", "matrix"),
    "min_over_time": _sig("vector", "matrix"),
    "minute": _sig("vector", "vector", variadic=1),
    "month": _sig("vector", "vector", variadic=1),
    "predict_linear": _sig("vector", "matrix", "scalar"),
    "present_over_time": _sig("vector", "matrix"),
    "quantile_over_time": _sig("vector", "scalar", "matrix"),
    "rate": _sig("vector", "matrix"),
    "resets": _sig("vector", "matrix"),
    "round": _sig("vector", "vector", "scalar", variadic=1),
    "scalar": _sig("scalar", "vector"),
    "sort": _sig("vector", "vector"),
    "sort_desc": _sig("vector", "vector"),
    "sqrt": _sig("vector", "vector"),
    "stddev_over_time": _sig("vector", "matrix"),
    "stdvar_over_time": _sig("vector", "matrix"),
    "sum_over_time": _sig("vector", "matrix"),
    "time": _sig("scalar"),
    "timestamp": _sig("vector", "vector"),
    "vector": _sig("vector", "scalar"),
    "year": _sig("vector", "vector", variadic=1),
}

# Known to Prometheus 2.42 but not implemented here: the parser rejects them by name with
# "function X is not supported by Vigil" (never a wrong answer).
UNSUPPORTED_FUNCTIONS = frozenset({
    "acos", "acosh", "asin", "asinh", "atan", "atanh", "cos", "cosh", "deg", "holt_winters", "pi",
    "rad", "sgn", "sin", "sinh", "tan", "tanh", "histogram_count", "histogram_sum", "histogram_fraction",
})

AGGREGATORS = frozenset({
    "sum", "avg", "min", "max", "count", "stddev", "stdvar", "topk", "bottomk", "quantile",
    "count_values", "group",
})
PARAM_AGGREGATORS = frozenset({"topk", "bottomk", "quantile", "count_values"})
