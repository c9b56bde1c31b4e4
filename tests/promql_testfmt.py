"""Runner for Prometheus's PromQL test-script format (promql/testdata/*.test), over Vigil's engine.

Commands: `load <interval>` followed by indented `<series> <values>` lines (values in series
notation); `clear`; `eval instant at <time> <expr>` / `eval_ordered ...` / `eval_fail ...` followed
by the expected `<series> <value>` lines (or a bare number for a scalar); and, for range queries,
`eval range from <start> to <end> step <step> <expr>` followed by `<series> <values>` lines in
series notation (`_` where a step has no point). An `eval_fail` case may give the exact error
as an `expected_fail_message <text>` line. An instant query returning a range vector expects
`<series> <value>@<time> ...` lines. Values compare as in Prometheus's test harness
(relative 1e-6) unless a case line is `eval_exact ...`, which requires identical floats.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from agent.promql.engine import Engine
from agent.promql.memory import MemoryQueryable
from agent.promql.series_notation import expand_series_notation, parse_number
from agent.promql.values import STALE_NAN, Labels, PromQLError, Scalar, Series, String

_DURATION_UNITS = {"y": 365 * 86_400_000, "w": 7 * 86_400_000, "d": 86_400_000, "h": 3_600_000, "m": 60_000,
                   "s": 1000, "ms": 1}
_DURATION = re.compile(r"(\d+)(ms|y|w|d|h|m|s)")
_EVAL = re.compile(r"^(eval|eval_ordered|eval_fail|eval_exact)\s+instant\s+at\s+(\S+)\s+(.+)$")
_EVAL_RANGE = re.compile(r"^(eval|eval_fail|eval_exact)\s+range\s+from\s+(\S+)\s+to\s+(\S+)\s+step\s+(\S+)\s+(.+)$")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')
_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", '"': '"', "r": "\r"}


def parse_time(text: str) -> int:
    """A Prometheus duration (`1h30m`, `10s`) or a plain number of seconds, in ms."""
    if re.fullmatch(r"-?\d+(\.\d+)?", text):
        return round(float(text) * 1000)
    pos = 0
    total = 0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            break
        total += int(m[1]) * _DURATION_UNITS[m[2]]
        pos = m.end()
    if pos != len(text) or not text:
        raise ValueError(f"bad duration {text!r}")
    return total


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m[1], m[1]), text)


def parse_series(text: str) -> tuple[Labels, str]:
    """`name{a="b"} rest` -> (labels, rest)."""
    m = re.match(r"\s*([a-zA-Z_:][a-zA-Z0-9_:]*)?", text)
    assert m is not None
    pairs: dict[str, str] = {}
    if m[1]:
        pairs["__name__"] = m[1]
    pos = m.end()
    if pos < len(text) and text[pos] == "{":
        pos += 1
        while True:
            lm = _LABEL.match(text, pos)
            if lm is None:
                break
            pairs[lm[1]] = _unescape(lm[2])
            pos = lm.end()
        close = text.index("}", pos)
        pos = close + 1
    labels = tuple(sorted((k, v) for k, v in pairs.items() if v != ""))
    return labels, text[pos:].strip()


def _is_scalar_line(text: str) -> bool:
    if text in ("NaN", "Inf", "+Inf", "-Inf"):
        return True
    return not (text[0] == "{" or text[0] == "_" or text[0].isalpha())


def parse_value(text: str) -> float:
    return STALE_NAN if text == "stale" else parse_number(text)


@dataclass
class Case:
    line: int
    expr: str
    kind: str  # eval, eval_ordered, eval_fail, eval_exact
    start: int
    end: int
    step: int  # 0 for an instant query
    expected: list[tuple[Labels | None, list[float | None]]] = field(default_factory=list)
    points: list[tuple[Labels, list[tuple[int, float]]]] = field(default_factory=list)  # range-vector results
    message: str | None = None  # for eval_fail: the exact error message expected


def almost_equal(a: float, b: float) -> bool:
    """Prometheus's test comparison: NaN equals NaN, otherwise within a relative 1e-6."""
    if math.isnan(a) and math.isnan(b):
        return True
    if a == b:
        return True
    diff = abs(a - b)
    min_normal = 2.2250738585072014e-308
    if a == 0 or b == 0 or diff < min_normal:
        return diff < 1e-6 * min_normal
    return diff / (abs(a) + abs(b)) < 1e-6


def _same(a: float, b: float) -> bool:
    return struct.pack("<d", a) == struct.pack("<d", b) or (a != a and b != b)


class ScriptRunner:
    """Runs a whole script; `failures` lists what went wrong, with line numbers."""

    def __init__(self, engine: Engine | None = None):
        self.engine = engine or Engine()
        self.storage = MemoryQueryable()
        self.failures: list[str] = []
        self.cases = 0

    def run(self, text: str) -> list[str]:
        lines = text.splitlines()
        i = 0
        while i < len(lines):
            raw = lines[i]
            line = raw.strip()
            i += 1
            if not line or line.startswith("#"):
                continue
            if line == "clear":
                self.storage.clear()
                continue
            body: list[tuple[int, str]] = []
            while i < len(lines) and (lines[i].startswith((" ", "\t")) and lines[i].strip()):
                if not lines[i].strip().startswith("#"):
                    body.append((i + 1, lines[i].strip()))
                i += 1
            if line.startswith("load "):
                self._load(parse_time(line.split()[1]), [text for _, text in body])
                continue
            case = self._case(i - len(body), line, body)
            self.cases += 1
            self._check(case)
        return self.failures

    def _load(self, interval: int, lines: list[str]) -> None:
        for line in lines:
            labels, rest = parse_series(line)
            for n, value in enumerate(expand_series_notation(rest)):
                if value is None:
                    continue
                self.storage.add(labels, n * interval, STALE_NAN if value == "stale" else value)

    def _case(self, line_no: int, line: str, body: list[tuple[int, str]]) -> Case:
        m = _EVAL.match(line)
        if m is not None:
            at = parse_time(m[2])
            case = Case(line_no, m[3], m[1], at, at, 0)
            for _, text in body:
                if text.startswith("expected_fail_message "):
                    case.message = text.removeprefix("expected_fail_message ")
                    continue
                if _is_scalar_line(text):
                    case.expected.append((None, [parse_value(text)]))
                    continue
                labels, rest = parse_series(text)
                if "@" in rest:
                    points = [item.split("@") for item in rest.split()]
                    case.points.append((labels, [(parse_time(t), parse_value(v)) for v, t in points]))
                else:
                    case.expected.append((labels, [parse_value(rest)]))
            return case
        m = _EVAL_RANGE.match(line)
        if m is None:
            raise ValueError(f"line {line_no}: cannot parse {line!r}")
        case = Case(line_no, m[5], m[1], parse_time(m[2]), parse_time(m[3]), parse_time(m[4]))
        for _, text in body:
            if text.startswith("expected_fail_message "):
                case.message = text.removeprefix("expected_fail_message ")
                continue
            labels, rest = ((), text) if _is_scalar_line(text.split()[0]) else parse_series(text)
            values = [None if v is None else (STALE_NAN if v == "stale" else v) for v in expand_series_notation(rest)]
            case.expected.append((labels, values))
        return case

    def _fail(self, case: Case, message: str) -> None:
        self.failures.append(f"line {case.line}: {case.expr}: {message}")

    def _check(self, case: Case) -> None:
        try:
            if case.step:
                result = self.engine.range_query(self.storage, case.expr, case.start, case.end, case.step)
            else:
                result = self.engine.instant_query(self.storage, case.expr, case.start)
        except PromQLError as exc:
            if case.kind != "eval_fail":
                self._fail(case, f"unexpected error {type(exc).__name__}: {exc}")
            elif case.message is not None and str(exc) != case.message:
                self._fail(case, f"error message: expected {case.message!r}, got {str(exc)!r}")
            return
        if case.kind == "eval_fail":
            self._fail(case, f"expected an error, got {result!r}")
            return
        equal = _same if case.kind == "eval_exact" else almost_equal
        got: list[tuple[Labels | None, list[float | None]]]
        if case.step:
            assert isinstance(result, list)
            steps = list(range(case.start, case.end + 1, case.step))
            got = []
            for series in result:
                assert isinstance(series, Series)
                points = dict(series.points)
                got.append((series.labels, [points.get(t) for t in steps]))
        elif isinstance(result, Scalar):
            got = [(None, [result.v])]
        elif isinstance(result, String):
            self._fail(case, f"string results are not supported by this runner: {result!r}")
            return
        elif result and isinstance(result[0], Series):
            self._compare_points(case, result, equal)
            return
        else:
            got = [(sample.labels, [sample.v]) for sample in result]
        self._compare(case, got, equal)

    def _compare_points(self, case: Case, result: list[Series], equal: Callable[[float, float], bool]) -> None:
        want = dict(case.points)
        have = {s.labels: s.points for s in result}
        if set(want) != set(have):
            self._fail(case, f"series: expected {sorted(want, key=str)}, got {sorted(have, key=str)}")
            return
        for labels, points in want.items():
            got = have[labels]
            if len(got) != len(points) or any(
                t1 != t2 or not equal(v1, v2) for (t1, v1), (t2, v2) in zip(points, got, strict=True)
            ):
                self._fail(case, f"{labels}: expected {points}, got {got}")

    def _compare(
        self, case: Case, got: list[tuple[Labels | None, list[float | None]]], equal: Callable[[float, float], bool]
    ) -> None:
        if case.kind == "eval_ordered" and [g[0] for g in got] != [e[0] for e in case.expected]:
            self._fail(case, f"order: expected {[e[0] for e in case.expected]}, got {[g[0] for g in got]}")
            return
        expected = {labels: values for labels, values in case.expected}
        actual = {labels: values for labels, values in got}
        if len(actual) != len(got):
            self._fail(case, f"duplicate series in result {got}")
        if set(expected) != set(actual):
            self._fail(case, f"series: expected {sorted(expected, key=str)}, got {sorted(actual, key=str)}")
            return
        for labels, want in expected.items():
            have = actual[labels]
            if len(want) < len(have):
                want = want + [None] * (len(have) - len(want))
            ok = len(want) == len(have) and all(
                (w is None and h is None) or (w is not None and h is not None and equal(w, h))
                for w, h in zip(want, have, strict=True)
            )
            if not ok:
                self._fail(case, f"{labels}: expected {want}, got {have}")
