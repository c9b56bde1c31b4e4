"""Prometheus-style durations ("15s", "1m30s", "2h") so config reads like the rest of the stack."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator, WithJsonSchema

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0, "y": 31536000.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")
_WHOLE = re.compile(r"^(?:\d+(?:\.\d+)?(?:ms|s|m|h|d|w|y))+$")


def parse_duration(value: object) -> float:
    """Seconds from a number or a duration string; raises ValueError with the accepted forms."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like 15s, 1m or 2h30m, got a boolean")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("duration must not be negative")
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if _WHOLE.match(text):
            return sum(float(n) * _UNITS[u] for n, u in _PART.findall(text))
        if re.fullmatch(r"\d+(\.\d+)?", text):
            return float(text)
    raise ValueError(f"expected a duration like 15s, 1m or 2h30m, got {value!r}")


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": r"^(\d+(\.\d+)?(ms|s|m|h|d|w|y))+$"},
                {"type": "number", "minimum": 0},
            ],
            "description": "seconds, or a duration such as 500ms, 15s, 1m30s, 2h",
        }
    ),
]
