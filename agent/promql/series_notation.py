"""Expansion of the series-values notation of Prometheus's tests and `promtool test rules`.

`0+10x3` is 0 10 20 30 (n+1 values, the start included, each the previous plus the step, so
float rounding accumulates as in Prometheus), `5x2` is 5 5 5, `_` a missing sample, `_x3` three,
`stale` a staleness marker. Numbers may be signed, hex, exponent, `Inf` or `NaN`.
"""

from __future__ import annotations

import math
import re
from typing import Literal

SeriesValue = float | None | Literal["stale"]

_UNSIGNED = (
    r"(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
    r"|[iI][nN][fF](?:[iI][nN][iI][tT][yY])?|[nN][aA][nN])"
)
_ITEM = re.compile(
    rf"^(?:(?P<blank>_)(?:x(?P<blank_n>\d+))?"
    rf"|(?P<stale>stale)"
    rf"|(?P<start>[+-]?{_UNSIGNED})(?:(?P<delta>[+-]{_UNSIGNED})?x(?P<n>\d+))?)$"
)


class SeriesNotationError(ValueError):
    """The text is not valid series-values notation."""


def parse_number(text: str) -> float:
    """A number as the PromQL lexer reads it (hex and Inf/NaN included)."""
    body = text.lstrip("+-")
    sign = -1.0 if text.startswith("-") else 1.0
    lower = body.lower()
    if lower.startswith("0x"):
        return sign * float(int(lower, 16))
    if lower in ("inf", "infinity"):
        return sign * math.inf
    if lower == "nan":
        return math.nan
    return sign * float(body)


def expand_series_notation(text: str) -> list[SeriesValue]:
    """One entry per interval step: a float, None (no sample) or "stale" (a staleness marker)."""
    out: list[SeriesValue] = []
    for item in text.split():
        m = _ITEM.match(item)
        if m is None:
            raise SeriesNotationError(f"invalid series value {item!r}")
        if m["blank"]:
            out.extend([None] * (int(m["blank_n"]) if m["blank_n"] else 1))
        elif m["stale"]:
            out.append("stale")
        else:
            value = parse_number(m["start"])
            if m["n"] is None:
                out.append(value)
                continue
            delta = parse_number(m["delta"]) if m["delta"] else 0.0
            for _ in range(int(m["n"]) + 1):
                out.append(value)
                value += delta
    return out
