"""Compare two Prometheus HTTP API answers the way a user would notice a difference.

Vectors and matrices are compared as sets keyed by label set (Prometheus does not promise an
order), except top-level sort/sort_desc where the sequence of values must match. Numbers are
compared as floats within 1e-9 relative (1e-12 absolute), NaN equals NaN, infinities by sign,
and where two numbers are bitwise equal their JSON spelling must be too (NaN, +Inf, -Inf,
"1e+06" against "1000000" ...). Errors are compared by HTTP status and errorType, never by text.
"""

from __future__ import annotations

import json
import math
from typing import Any

REL_TOL = 1e-9
ABS_TOL = 1e-12

LabelKey = tuple[tuple[str, str], ...]


class Mismatch(Exception):
    """Why two answers differ, in one line."""


def close(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if math.isinf(a) or math.isinf(b):
        return a == b
    return abs(a - b) <= ABS_TOL or abs(a - b) <= REL_TOL * max(abs(a), abs(b))


def _ms(t: Any) -> int:
    return round(float(t) * 1000)


def _point(where: str, want: Any, got: Any) -> None:
    """One [timestamp, "value"] pair."""
    if not (isinstance(got, list) and len(got) == 2):
        raise Mismatch(f"{where}: malformed point {got!r}")
    if _ms(want[0]) != _ms(got[0]):
        raise Mismatch(f"{where}: timestamp {want[0]} != {got[0]}")
    if not isinstance(got[1], str):
        raise Mismatch(f"{where}: value {got[1]!r} is not a string")
    try:
        a, b = float(want[1]), float(got[1])
    except ValueError:
        raise Mismatch(f"{where}: value {want[1]!r} != {got[1]!r}") from None
    if not close(a, b):
        raise Mismatch(f"{where}: value {want[1]} != {got[1]}")
    if (a == b or (math.isnan(a) and math.isnan(b))) and want[1] != got[1]:
        raise Mismatch(f"{where}: same number spelled {want[1]!r} != {got[1]!r}")


def _key(item: dict[str, Any]) -> LabelKey:
    return tuple(sorted(item.get("metric", {}).items()))


def _fmt_key(key: LabelKey) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in key) + "}"


def _keyed(result: list[dict[str, Any]], side: str) -> dict[LabelKey, dict[str, Any]]:
    out: dict[LabelKey, dict[str, Any]] = {}
    for item in result:
        key = _key(item)
        if key in out:
            raise Mismatch(f"{side} answer has the label set {_fmt_key(key)} twice")
        out[key] = item
    return out


def _series_sets(want: list[dict[str, Any]], got: list[dict[str, Any]]) -> dict[LabelKey, tuple[Any, Any]]:
    w, g = _keyed(want, "Prometheus"), _keyed(got, "Vigil")
    missing = [k for k in w if k not in g]
    extra = [k for k in g if k not in w]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)}: " + ", ".join(_fmt_key(k) for k in missing[:3]))
        if extra:
            parts.append(f"extra {len(extra)}: " + ", ".join(_fmt_key(k) for k in extra[:3]))
        raise Mismatch(f"series differ ({len(w)} vs {len(g)}); " + "; ".join(parts))
    return {k: (w[k], g[k]) for k in w}


def compare_data(want: dict[str, Any], got: dict[str, Any], ordered: bool = False) -> None:
    """Raise Mismatch unless two `data` objects of successful query answers are equal."""
    if want.get("resultType") != got.get("resultType"):
        raise Mismatch(f"resultType {want.get('resultType')} != {got.get('resultType')}")
    kind = want["resultType"]
    wr, gr = want["result"], got.get("result")
    if kind in ("scalar", "string"):
        if kind == "string":
            if wr != gr:
                raise Mismatch(f"string {wr!r} != {gr!r}")
            return
        _point("scalar", wr, gr)
        return
    if not isinstance(gr, list):
        raise Mismatch(f"result is {type(gr).__name__}, not a list")
    pairs = _series_sets(wr, gr)
    if kind == "vector":
        for key, (w, g) in pairs.items():
            _point(_fmt_key(key), w["value"], g.get("value"))
        if ordered:
            wv = [float(x["value"][1]) for x in wr]
            gv = [float(x["value"][1]) for x in gr]
            if not all(close(a, b) for a, b in zip(wv, gv, strict=True)):
                raise Mismatch(f"order of values differs: {wv[:8]} != {gv[:8]}")
        return
    for key, (w, g) in pairs.items():
        wv, gv = w["values"], g.get("values") or []
        if len(wv) != len(gv):
            wt = {_ms(p[0]) for p in wv}
            gt = {_ms(p[0]) for p in gv}
            only_w = sorted(wt - gt)[:3]
            only_g = sorted(gt - wt)[:3]
            raise Mismatch(f"{_fmt_key(key)}: {len(wv)} points != {len(gv)}; only in Prometheus at "
                           f"{[t / 1000 for t in only_w]}, only in Vigil at {[t / 1000 for t in only_g]}")
        for i, (pw, pg) in enumerate(zip(wv, gv, strict=True)):
            _point(f"{_fmt_key(key)}[{i}]", pw, pg)


def compare_answers(want_status: int, want: dict[str, Any], got_status: int, got: Any, ordered: bool = False) -> None:
    """Raise Mismatch unless Vigil's HTTP answer (`got`) matches Prometheus's (`want`)."""
    if not isinstance(got, dict):
        raise Mismatch(f"answer is not a JSON object: {got!r}"[:300])
    if want.get("status") == "error":
        if (got_status, got.get("status"), got.get("errorType")) != (want_status, "error", want.get("errorType")):
            raise Mismatch(f"expected HTTP {want_status} errorType {want.get('errorType')}, got HTTP {got_status} "
                           f"status {got.get('status')} errorType {got.get('errorType')}")
        return
    if got_status != want_status or got.get("status") != "success":
        raise Mismatch(f"expected HTTP {want_status} success, got HTTP {got_status} {got.get('status')} "
                       f"{got.get('errorType')}: {got.get('error')}")
    compare_data(want["data"], got.get("data") or {}, ordered)


def is_empty(data: dict[str, Any]) -> bool:
    return data["resultType"] in ("vector", "matrix") and not data["result"]


def trim(answer: Any, limit: int = 600) -> str:
    text = json.dumps(answer, separators=(",", ":"), sort_keys=True)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"
