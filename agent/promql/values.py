"""What the engine reads and returns, and the one interface to storage (`Queryable`).

Labels are a tuple of (name, value) pairs sorted by name, `__name__` included: hashable, cheap
to compare, and the same in the index, the engine and the HTTP answers.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from agent.promql.ast import Matcher

Labels = tuple[tuple[str, str], ...]

# Prometheus's staleness marker: a NaN with this exact bit pattern. It ends a series for the
# lookback; an ordinary NaN is a value.
STALE_NAN_BITS = 0x7FF0000000000002
STALE_NAN: float = struct.unpack("<d", struct.pack("<Q", STALE_NAN_BITS))[0]


def is_stale(value: float) -> bool:
    return value != value and struct.pack("<d", value) == _STALE_BYTES


_STALE_BYTES = struct.pack("<d", STALE_NAN)


def labels_from(mapping: dict[str, str]) -> Labels:
    """Sorted label tuple; empty values are dropped, as Prometheus does."""
    return tuple(sorted((k, v) for k, v in mapping.items() if v != ""))


def label_value(labels: Labels, name: str) -> str:
    for key, value in labels:
        if key == name:
            return value
    return ""


def drop_name(labels: Labels) -> Labels:
    """`labels` without `__name__`; a slice in the usual case, where the name sorts first."""
    if labels and labels[0][0] == "__name__":
        return labels[1:]
    return tuple(p for p in labels if p[0] != "__name__")


@dataclass(slots=True)
class SeriesData:
    """One series' samples in [mint, maxt], timestamps ascending (ms), stale markers included.

    Where the time range reaches back past the raw retention, points come from a rollup tier:
    then `count`, `sum`, `min`, `max` are parallel to `ts` (a raw point has count 1 and
    sum = min = max = its value) and `values` holds each bucket's last value at the timestamp of
    its last sample. They are None when every point is raw.
    """

    labels: Labels
    ts: Sequence[int]
    values: Sequence[float]
    count: Sequence[float] | None = None
    sum: Sequence[float] | None = None
    min: Sequence[float] | None = None
    max: Sequence[float] | None = None
    last_drop: int | None = None
    """When the storage knows it, a time such that every point after it is a number (no stale marker)
    and >= the point before it (no counter reset): at or after the last point that is NaN or lower than
    the one before it, far in the past when there is none. None: unknown. The engine skips looking for
    stale markers and resets among the points after it."""


SeriesView = tuple[Labels, Labels, Sequence[int], Sequence[float], int, int, int | None, int | None,
                   SeriesData | None]
"""One series' samples in [mint, maxt] without copying them: (labels, the labels without `__name__`, ts,
values, lo, hi, last_drop, last_nan, rollup). The samples are ts[lo:hi] and values[lo:hi] (lo < hi) of
arrays that may hold more on either side, and nothing changes those positions while the view is held.
`last_drop` is SeriesData's; `last_nan` the same for NaN points alone (a time at or after the last NaN;
None: unknown). `rollup` is the SeriesData itself when its points come from a rollup tier (then lo is 0
and hi its length), else None."""


def views_of(data: Sequence[SeriesData]) -> list[SeriesView]:
    """`select`'s answer as views (storage without a cheaper way to make them)."""
    return [
        (s.labels, drop_name(s.labels), s.ts, s.values, 0, len(s.ts), s.last_drop, s.last_drop,
         s if s.count is not None else None)
        for s in data
        if len(s.ts)
    ]


def series_of_view(view: SeriesView) -> SeriesData:
    """A view's samples as a SeriesData of their own (copies: the view's arrays may grow)."""
    labels, _, ts, values, lo, hi, last_drop, _, rollup = view
    if rollup is not None:
        return rollup
    return SeriesData(labels, ts[lo:hi], values[lo:hi], None, None, None, None, last_drop)


class Queryable(Protocol):
    """Storage as the engine sees it. Called from the evaluating thread; must not touch the loop."""

    def select(self, matchers: Sequence[Matcher], mint: int, maxt: int) -> list[SeriesData]:
        """Series matching all matchers with samples in [mint, maxt] (ms, inclusive), only those samples,
        sorted by labels as Prometheus's storage returns them (the engine relies on the order)."""
        ...

    def select_views(self, matchers: Sequence[Matcher], mint: int, maxt: int) -> list[SeriesView]:
        """`select` as views, in the same order: instant queries and rules read each series' window in place."""
        ...

    def label_names(self, matchers: Sequence[Sequence[Matcher]], mint: int, maxt: int) -> list[str]:
        ...

    def label_values(self, name: str, matchers: Sequence[Sequence[Matcher]], mint: int, maxt: int) -> list[str]:
        ...

    def series(self, matchers: Sequence[Sequence[Matcher]], mint: int, maxt: int) -> list[Labels]:
        ...


class PromQLError(Exception):
    """Base: `error_type` is the Prometheus API errorType (bad_data, timeout, execution)."""

    error_type = "execution"


class ParseError(PromQLError):
    """Unparseable or unsupported query; the message names the position ("1:14: parse error: ...")."""

    error_type = "bad_data"

    def __init__(self, message: str, pos: int = 0):
        super().__init__(message)
        self.pos = pos


class QueryTimeout(PromQLError):
    error_type = "timeout"


class QueryLimitError(PromQLError):
    """A limit (samples loaded, points per series) was exceeded; Prometheus answers these as execution."""

    error_type = "execution"


def format_sample_value(value: float) -> str:
    """A vector or matrix sample value as Prometheus's JSON writes it (jsoniter): plain decimals,
    except below 1e-6 and from 1e21 on, where Go's shortest exponent form is used ("1e+25")."""
    text = repr(value)
    if "e" not in text and "n" not in text:  # the common case: plain decimals (no exponent, inf, nan)
        return text[:-2] if text.endswith(".0") else text
    magnitude = abs(value)
    if magnitude != 0 and math.isfinite(value) and (magnitude < 1e-6 or magnitude >= 1e21):
        return text  # Python's shortest repr spells exponents as Go does: 9.9e-07, 1e+25
    return format_value(value)


def format_value(value: float) -> str:
    """A float as Prometheus writes it in JSON (Go's strconv 'f', -1): shortest, no exponent."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    text = repr(value)
    if "e" in text or "E" in text:
        from decimal import Decimal

        text = format(Decimal(text), "f")
    if text.endswith(".0"):
        text = text[:-2]
    return text


# --- Results, and the contract between the evaluator (engine.py) and the functions (functions.py) ---


@dataclass(slots=True)
class Sample:
    """An instant-vector element: `t` is the evaluation time (ms)."""

    labels: Labels
    t: int
    v: float


@dataclass(slots=True)
class Series:
    """A range-query or range-vector result: points (t ms, v) ascending."""

    labels: Labels
    points: list[tuple[int, float]]


@dataclass(slots=True)
class Scalar:
    t: int
    v: float


@dataclass(slots=True)
class String:
    t: int
    v: str


Vector = list[Sample]
Matrix = list[Series]
Value = Vector | Matrix | Scalar | String


@dataclass(slots=True)
class Window:
    """One series of a range-vector argument at one evaluation step: points [lo, hi) of its arrays.

    `ts`/`values` are the series' whole arrays (stale markers removed), shared by all steps so no
    step copies samples. `source` carries the rollup columns when the points came from a rollup tier
    (parallel to `ts`); None for raw points.
    """

    labels: Labels
    ts: Sequence[int]
    values: Sequence[float]
    lo: int
    hi: int
    source: SeriesData | None = None
    cache: dict[str, Any] | None = None  # per series, shared by all steps: functions keep derived arrays here


@dataclass(slots=True)
class CallContext:
    """What a function needs besides its argument values, for one evaluation step.

    t: the window end (ms): the step time moved by `offset` and `@`. range: the range of the matrix
    argument in ms (0 if none). args: the call's argument expressions (absent() derives labels from
    its selector). step_t: the evaluation step's own time (predict_linear anchors there); None = t.
    """

    t: int
    range: int
    args: list  # list[ast.Expr]
    step_t: int | None = None
