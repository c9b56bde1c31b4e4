"""time() and the date functions (year, month, day_of_month, ..., days_in_month), in UTC.

Prometheus converts a sample value with Go's `int64(v)` and reads the calendar fields with Go's
`time` package, so NaN, ±Inf and values beyond ±9.2e18 give Go's answers (NaN reads as year
292277026596). Python's datetime cannot represent those, so the calendar arithmetic of Go 1.19's
`time` package (unsigned 64-bit "absolute" seconds, 400/100/4-year cycles) is reproduced here.
With no argument a date function reads the evaluation time, truncated to whole seconds like
Go's `enh.Ts / 1000`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agent.promql.functions_common import without_name
from agent.promql.values import CallContext, Sample, Vector

_U64 = (1 << 64) - 1
_SECONDS_PER_DAY = 86400
_DAYS_PER_400_YEARS = 365 * 400 + 97
_DAYS_PER_100_YEARS = 365 * 100 + 24
_DAYS_PER_4_YEARS = 365 * 4 + 1
_ABSOLUTE_ZERO_YEAR = -292277022399
# unixToInternal + internalToAbsolute of Go's time package: Unix seconds -> absolute seconds.
_UNIX_TO_ABSOLUTE = 62135596800 + 292277022400 * 31556952
_DAYS_BEFORE = (0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334, 365)
_MIN_INT64 = -(1 << 63)


def go_int64(value: float) -> int:
    """Go's int64(float64) on amd64: truncation; NaN and out-of-range give the minimum int64."""
    if value != value or value >= 9.223372036854775807e18 or value < -9.223372036854775808e18:
        return _MIN_INT64
    return int(value)


def _absolute(unix_seconds: int) -> int:
    """Go's Time.abs() for a UTC time: int64 wrap-around addition, then read as uint64."""
    return (unix_seconds + _UNIX_TO_ABSOLUTE) & _U64


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def _abs_date(abs_seconds: int) -> tuple[int, int, int, int]:
    """Go 1.19's absDate: (year, month 1-12, day 1-31, day of year 0-365)."""
    d = abs_seconds // _SECONDS_PER_DAY
    n = d // _DAYS_PER_400_YEARS
    y = 400 * n
    d -= _DAYS_PER_400_YEARS * n
    n = d // _DAYS_PER_100_YEARS
    n -= n >> 2
    y += 100 * n
    d -= _DAYS_PER_100_YEARS * n
    n = d // _DAYS_PER_4_YEARS
    y += 4 * n
    d -= _DAYS_PER_4_YEARS * n
    n = d // 365
    n -= n >> 2
    y += n
    d -= 365 * n
    year = y + _ABSOLUTE_ZERO_YEAR
    yday = d
    day = yday
    if _is_leap(year):
        if day > 31 + 29 - 1:
            day -= 1
        elif day == 31 + 29 - 1:
            return year, 2, 29, yday
    month = day // 31
    end = _DAYS_BEFORE[month + 1]
    if day >= end:
        month += 1
        begin = end
    else:
        begin = _DAYS_BEFORE[month]
    return year, month + 1, day - begin + 1, yday


def _days_since_epoch(year: int) -> int:
    y = (year - _ABSOLUTE_ZERO_YEAR) & _U64
    n = y // 400
    y -= 400 * n
    d = _DAYS_PER_400_YEARS * n
    n = y // 100
    y -= 100 * n
    d += _DAYS_PER_100_YEARS * n
    n = y // 4
    y -= 4 * n
    d += _DAYS_PER_4_YEARS * n
    d += 365 * y
    return d & _U64


def _year(abs_seconds: int) -> float:
    return float(_abs_date(abs_seconds)[0])


def _month(abs_seconds: int) -> float:
    return float(_abs_date(abs_seconds)[1])


def _day_of_month(abs_seconds: int) -> float:
    return float(_abs_date(abs_seconds)[2])


def _day_of_year(abs_seconds: int) -> float:
    return float(_abs_date(abs_seconds)[3] + 1)


def _day_of_week(abs_seconds: int) -> float:
    # January 1 of the absolute year was a Monday.
    return float((((abs_seconds + _SECONDS_PER_DAY) & _U64) % (7 * _SECONDS_PER_DAY)) // _SECONDS_PER_DAY)


def _hour(abs_seconds: int) -> float:
    return float((abs_seconds % _SECONDS_PER_DAY) // 3600)


def _minute(abs_seconds: int) -> float:
    return float((abs_seconds % 3600) // 60)


def _days_in_month(abs_seconds: int) -> float:
    """Go's `32 - time.Date(year, month, 32, ...).Day()`: day 32 normalised into the next month."""
    year, month, _, _ = _abs_date(abs_seconds)
    days = _days_since_epoch(year) + _DAYS_BEFORE[month - 1] + 31
    if _is_leap(year) and month >= 3:
        days += 1
    return float(32 - _abs_date((days * _SECONDS_PER_DAY) & _U64)[2])


def _date_function(field: Callable[[int], float]) -> Callable[[list[Any], CallContext], Vector]:
    def call(args: list[Any], ctx: CallContext) -> Vector:
        if not args:
            seconds = ctx.t // 1000 if ctx.t >= 0 else -(-ctx.t // 1000)
            return [Sample((), ctx.t, field(_absolute(seconds)))]
        out: Vector = []
        for sample in args[0]:
            out.append(Sample(without_name(sample.labels), ctx.t, field(_absolute(go_int64(sample.v)))))
        return out

    return call


def func_time(args: list[Any], ctx: CallContext) -> float:
    return ctx.t / 1000


TIME_FUNCTIONS: dict[str, Callable[[list[Any], CallContext], Any]] = {
    "time": func_time,
    "year": _date_function(_year),
    "month": _date_function(_month),
    "day_of_month": _date_function(_day_of_month),
    "day_of_year": _date_function(_day_of_year),
    "day_of_week": _date_function(_day_of_week),
    "hour": _date_function(_hour),
    "minute": _date_function(_minute),
    "days_in_month": _date_function(_days_in_month),
}
