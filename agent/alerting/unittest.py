"""`vigil test rules FILE...`: promtool's rule unit tests (cmd/promtool/unittest.go of Prometheus 2.42).

The same test files pass or fail under both tools: input series are loaded up to each evaluation
time only (as promtool's LazyLoader does), every group is evaluated at every `evaluation_interval`
step from 0 to the largest `eval_time` (group intervals are ignored there, as in promtool), alerts
are compared at the step at or just before their `eval_time`, and PromQL tests run afterwards on
what was loaded and recorded. The report has promtool's shape: `Unit Testing:  FILE`, then
`  SUCCESS`, or `  FAILED:` followed by each problem in promtool's wording, and exit status 1.
"""

from __future__ import annotations

import glob
import math
import os
import re
import sys
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TextIO

import yaml

from agent.alerting.rulefile import RuleGroup, YamlReader, load_rule_files
from agent.alerting.rules import Expander, GroupState, evaluate
from agent.config.errors import ConfigError
from agent.promql.ast import MatchType
from agent.promql.engine import Engine
from agent.promql.lexer import go_quote
from agent.promql.memory import MemoryQueryable
from agent.promql.parser import parse_matchers
from agent.promql.series_notation import SeriesNotationError, expand_series_notation
from agent.promql.values import STALE_NAN, Labels, PromQLError, Sample, Scalar

_FILE_KEYS = ("rule_files", "evaluation_interval", "group_eval_order", "tests")
_TEST_KEYS = ("interval", "input_series", "alert_rule_test", "promql_expr_test", "external_labels", "external_url",
              "name")
_SERIES_KEYS = ("series", "values")
_ALERT_TEST_KEYS = ("eval_time", "alertname", "exp_alerts")
_ALERT_KEYS = ("exp_labels", "exp_annotations")
_EXPR_TEST_KEYS = ("expr", "eval_time", "exp_samples")
_SAMPLE_KEYS = ("labels", "value")
# Prometheus 2.42 reads no hex in series values ("the syntax is ambiguous"): `0x10` is 0 repeated 10 times.
_ZERO_TIMES = re.compile(r"^([+-]?0)[xX](\d+)$")
_HEX_LIKE = re.compile(r"^[+-]?0[xX]")


class UnitTestError(Exception):
    """The test file itself is unusable (unreadable, bad YAML, unknown keys)."""


@dataclass
class SeriesInput:
    series: str
    values: str


@dataclass
class ExpAlert:
    labels: dict[str, str]
    annotations: dict[str, str]


@dataclass
class AlertTest:
    eval_time_ms: int
    alertname: str
    exp_alerts: list[ExpAlert]


@dataclass
class ExpSample:
    labels: str
    value: float


@dataclass
class ExprTest:
    expr: str
    eval_time_ms: int
    exp_samples: list[ExpSample]


@dataclass
class UnitTestGroup:
    interval_ms: int = 0
    input_series: list[SeriesInput] = field(default_factory=list)
    alert_tests: list[AlertTest] = field(default_factory=list)
    expr_tests: list[ExprTest] = field(default_factory=list)
    external_labels: dict[str, str] = field(default_factory=dict)
    external_url: str = ""
    name: str = ""


@dataclass
class UnitTestFile:
    rule_files: list[str]
    evaluation_interval_ms: int
    group_eval_order: list[str]
    tests: list[UnitTestGroup]


# --- Go's formatting, so reports read like promtool's ---


def model_duration(ms: int) -> str:
    """Prometheus's model.Duration.String(): `5m`, `1h30m`, `1d`, `0s` (years and weeks only when exact)."""
    if ms == 0:
        return "0s"
    out = ""
    for unit, mult, exact in (("y", 31_536_000_000, True), ("w", 604_800_000, True), ("d", 86_400_000, False),
                              ("h", 3_600_000, False), ("m", 60_000, False), ("s", 1000, False), ("ms", 1, False)):
        if exact and ms % mult != 0:
            continue
        count = ms // mult
        if count > 0:
            out += f"{count}{unit}"
            ms -= count * mult
    return out


def go_duration(ms: int) -> str:
    """Go's time.Duration.String() of whole milliseconds: `0s`, `500ms`, `5m0s`, `1h0m0s`, `1.5s`."""
    if ms == 0:
        return "0s"
    sign = "-" if ms < 0 else ""
    ms = abs(ms)
    if ms < 1000:
        return f"{sign}{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, frac = divmod(rest, 1000)
    text = str(seconds) + (("." + f"{frac:03d}".rstrip("0")) if frac else "") + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{text}"
    if minutes:
        return f"{sign}{minutes}m{text}"
    return sign + text


def go_float_e(value: float) -> str:
    """strconv.FormatFloat(v, 'E', -1, 64): shortest digits, `1.5E+01`, `NaN`, `+Inf`."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "-0E+00" if math.copysign(1.0, value) < 0 else "0E+00"
    sign, digits, exponent = Decimal(repr(value)).as_tuple()
    text = "".join(map(str, digits)).rstrip("0") or "0"
    exp10 = int(exponent) + len(digits) - 1
    mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
    return f"{'-' if sign else ''}{mantissa}E{'+' if exp10 >= 0 else '-'}{abs(exp10):02d}"


def labels_string(labels: Labels) -> str:
    """labels.Labels.String(): `{a="b", c="d"}`."""
    return "{" + ", ".join(f"{name}={go_quote(value)}" for name, value in labels) + "}"


def _indent_lines(text: str, indent: str) -> str:
    return ("\n" + indent).join(text.split("\n"))


_AlertRow = tuple[Labels, Labels]


def _alerts_string(rows: list[_AlertRow]) -> str:
    if not rows:
        return "[]"
    parts = []
    for i, (labels, notes) in enumerate(rows):
        body = f"\nLabels:{labels_string(labels)}\nAnnotations:{labels_string(notes)}"
        parts.append(f"{i}:" + _indent_lines(body, "  "))
    return "[\n" + ",\n".join(parts) + "\n]"


def _samples_string(samples: list[tuple[Labels, float]]) -> str:
    if not samples:
        return "nil"
    return ", ".join(f"{labels_string(labels)} {go_float_e(v)}" for labels, v in samples)


# --- reading the test file ---


def read_unit_test_file(path: str) -> UnitTestFile:
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise UnitTestError(f"open {path}: {exc.strerror if isinstance(exc, OSError) else exc}") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise UnitTestError(f"yaml: {exc}") from None
    r = YamlReader(path)
    parsed = UnitTestFile([], 0, [], [])
    fields = r.mapping(root, (), _FILE_KEYS, "a unit test file") if root is not None else {}
    if fields:
        if "rule_files" in fields:
            parsed.rule_files = [r.string(n, ("rule_files", i))
                                 for i, n in enumerate(r.sequence(fields["rule_files"][1], ("rule_files",), "files"))]
        if "evaluation_interval" in fields:
            parsed.evaluation_interval_ms = r.duration(fields["evaluation_interval"][1], ("evaluation_interval",))
        if "group_eval_order" in fields:
            order = r.sequence(fields["group_eval_order"][1], ("group_eval_order",), "group names")
            parsed.group_eval_order = [r.string(n, ("group_eval_order", i)) for i, n in enumerate(order)]
        if "tests" in fields:
            for i, node in enumerate(r.sequence(fields["tests"][1], ("tests",), "test groups")):
                parsed.tests.append(_test_group(r, node, ("tests", i)))
    if r.issues:
        raise UnitTestError("\n".join(str(issue) for issue in r.issues))
    return parsed


def _test_group(r: YamlReader, node: yaml.Node, path: tuple[str | int, ...]) -> UnitTestGroup:
    tg = UnitTestGroup()
    fields = r.mapping(node, path, _TEST_KEYS, "a test group") or {}
    if "interval" in fields:
        tg.interval_ms = r.duration(fields["interval"][1], (*path, "interval"))
    if "name" in fields:
        tg.name = r.string(fields["name"][1], (*path, "name"))
    if "external_url" in fields:
        tg.external_url = r.string(fields["external_url"][1], (*path, "external_url"))
    if "external_labels" in fields:
        tg.external_labels = {k: v for k, (_, v) in
                              r.string_map(fields["external_labels"][1], (*path, "external_labels")).items()}
    if "input_series" in fields:
        for i, item in enumerate(r.sequence(fields["input_series"][1], (*path, "input_series"), "series")):
            sub = (*path, "input_series", i)
            f = r.mapping(item, sub, _SERIES_KEYS, "an input series") or {}
            tg.input_series.append(SeriesInput(
                r.string(f["series"][1], (*sub, "series")) if "series" in f else "",
                r.string(f["values"][1], (*sub, "values")) if "values" in f else "",
            ))
    if "alert_rule_test" in fields:
        for i, item in enumerate(r.sequence(fields["alert_rule_test"][1], (*path, "alert_rule_test"), "tests")):
            sub = (*path, "alert_rule_test", i)
            f = r.mapping(item, sub, _ALERT_TEST_KEYS, "an alert rule test") or {}
            exp: list[ExpAlert] = []
            if "exp_alerts" in f:
                for j, a in enumerate(r.sequence(f["exp_alerts"][1], (*sub, "exp_alerts"), "alerts")):
                    apath = (*sub, "exp_alerts", j)
                    af = r.mapping(a, apath, _ALERT_KEYS, "an expected alert") or {}
                    exp.append(ExpAlert(
                        {k: v for k, (_, v) in r.string_map(af["exp_labels"][1], apath).items()}
                        if "exp_labels" in af else {},
                        {k: v for k, (_, v) in r.string_map(af["exp_annotations"][1], apath).items()}
                        if "exp_annotations" in af else {},
                    ))
            tg.alert_tests.append(AlertTest(
                r.duration(f["eval_time"][1], (*sub, "eval_time")) if "eval_time" in f else 0,
                r.string(f["alertname"][1], (*sub, "alertname")) if "alertname" in f else "",
                exp,
            ))
    if "promql_expr_test" in fields:
        for i, item in enumerate(r.sequence(fields["promql_expr_test"][1], (*path, "promql_expr_test"), "tests")):
            sub = (*path, "promql_expr_test", i)
            f = r.mapping(item, sub, _EXPR_TEST_KEYS, "a PromQL expression test") or {}
            samples: list[ExpSample] = []
            if "exp_samples" in f:
                for j, s in enumerate(r.sequence(f["exp_samples"][1], (*sub, "exp_samples"), "samples")):
                    spath = (*sub, "exp_samples", j)
                    sf = r.mapping(s, spath, _SAMPLE_KEYS, "an expected sample") or {}
                    samples.append(ExpSample(
                        r.string(sf["labels"][1], (*spath, "labels")) if "labels" in sf else "",
                        r.number(sf["value"][1], (*spath, "value")) if "value" in sf else 0.0,
                    ))
            tg.expr_tests.append(ExprTest(
                r.string(f["expr"][1], (*sub, "expr")) if "expr" in f else "",
                r.duration(f["eval_time"][1], (*sub, "eval_time")) if "eval_time" in f else 0,
                samples,
            ))
    return tg


def resolve_rule_files(base_dir: str, patterns: list[str], err: TextIO) -> list[str]:
    """Paths relative to the test file, globbed; a pattern matching nothing is a warning, as in promtool."""
    files: list[str] = []
    for pattern in patterns:
        full = os.path.join(base_dir, pattern) if pattern and not os.path.isabs(pattern) else pattern
        matched = sorted(glob.glob(full))
        if not matched:
            print("  WARNING: no file match pattern", full, file=err)
        files.extend(matched)
    return files


# --- input series ---


def parse_series_labels(text: str) -> Labels:
    """`name{a="b"}` as a series (every matcher an equality), like Prometheus's ParseMetric."""
    matchers = parse_matchers(text)
    labels: dict[str, str] = {}
    for m in matchers:
        if m.type is not MatchType.EQL:
            raise PromQLError(f"unexpected label matcher {m.type.value!r} in series {text!r}: only '=' is allowed")
        labels[m.name] = m.value
    return tuple(sorted(labels.items()))


def expand_values(text: str) -> list[float | None]:
    """Series notation as Prometheus 2.42's test loader reads it: None for `_`, STALE_NAN for `stale`."""
    items = []
    for item in text.split():
        zero_times = _ZERO_TIMES.match(item)
        if zero_times:
            item = f"{zero_times[1]}+0x{zero_times[2]}"
        elif _HEX_LIKE.match(item):
            raise SeriesNotationError(f"bad number syntax: {item!r} (series values are decimal; 0xN repeats 0)")
        items.append(item)
    out: list[float | None] = []
    for value in expand_series_notation(" ".join(items)):
        out.append(STALE_NAN if value == "stale" else value)  # type: ignore[arg-type]
    return out


class _Loader:
    """Input samples, appended up to a time as promtool's LazyLoader does; the first sample at a time wins."""

    def __init__(self, group: UnitTestGroup):
        by_series: dict[Labels, dict[int, float]] = {}
        for inp in group.input_series:
            labels = parse_series_labels(inp.series)
            points = by_series.setdefault(labels, {})
            for i, value in enumerate(expand_values(inp.values)):
                if value is not None:
                    points.setdefault(i * group.interval_ms, value)
        self.pending = [(labels, sorted(points.items())) for labels, points in by_series.items()]
        self.next = [0] * len(self.pending)

    def load_till(self, storage: MemoryQueryable, t_ms: int) -> None:
        for n, (labels, points) in enumerate(self.pending):
            i = self.next[n]
            while i < len(points) and points[i][0] <= t_ms:
                storage.add(labels, points[i][0], points[i][1])
                i += 1
            self.next[n] = i


# --- running ---


def _ordered(groups: list[RuleGroup], order: list[str]) -> list[RuleGroup]:
    """Groups by their place in `group_eval_order` (unlisted ones count as 0, as in promtool)."""
    rank = {name: i for i, name in enumerate(order)}
    return sorted(groups, key=lambda g: rank.get(g.name, 0))


def _query_vector(engine: Engine, storage: MemoryQueryable, expr: str, t_ms: int) -> list[Sample]:
    result = engine.instant_query(storage, expr, t_ms)
    if isinstance(result, Scalar):
        return [Sample((), t_ms, result.v)]
    if isinstance(result, list) and all(isinstance(s, Sample) for s in result):
        return result
    raise PromQLError("rule result is not a vector or scalar")


def run_test_group(tg: UnitTestGroup, eval_interval_ms: int, order: list[str], rule_files: list[str],
                   expander: Expander | None = None) -> list[str]:
    """One entry of `tests:`; the failures, each as promtool words it (empty when the group passes)."""
    try:
        loader = _Loader(tg)
    except (PromQLError, SeriesNotationError, ValueError) as exc:
        return [str(exc)]
    try:
        groups = _ordered(load_rule_files(rule_files), order)
    except ConfigError as exc:
        return [str(issue) for issue in exc.issues]
    storage = MemoryQueryable()
    engine = Engine(default_subquery_step_ms=eval_interval_ms)
    states = [GroupState.new(g) for g in groups]

    alert_tests: dict[int, list[AlertTest]] = {}
    for test in tg.alert_tests:
        if test.alertname == "":
            suffix = f" (in TestGroup {tg.name})" if tg.name else ""
            return [f"an item under alert_rule_test misses required attribute alertname at eval_time "
                    f"{model_duration(test.eval_time_ms)}{suffix}"]
        alert_tests.setdefault(test.eval_time_ms, []).append(test)
    eval_times = sorted(alert_tests)
    max_t = max([t.eval_time_ms for t in tg.alert_tests] + [t.eval_time_ms for t in tg.expr_tests] + [0])

    errors: list[str] = []
    current = 0
    ts = 0
    while ts <= max_t:
        loader.load_till(storage, ts)
        eval_errors: list[str] = []
        for group, state in zip(groups, states, strict=True):
            result = evaluate(group, state, ts, storage, engine=engine, external_labels=tg.external_labels,
                              external_url=tg.external_url, expander=expander)
            for labels, t, v in result.samples:
                storage.add(labels, t, v)
            for rr, rs in zip(result.rules, state.rules, strict=True):
                if rr.last_error and not rs.template_error:
                    eval_errors.append(f"    rule: {rr.rule.name}, time: {go_duration(ts)}, err: {rr.last_error}")
        errors.extend(eval_errors)
        if eval_errors:
            return errors
        while current < len(eval_times) and ts <= eval_times[current] < ts + eval_interval_ms:
            t = eval_times[current]
            errors.extend(_check_alerts(tg, alert_tests[t], groups, states))
            current += 1
        if eval_interval_ms <= 0:
            break
        ts += eval_interval_ms

    for test in tg.expr_tests:
        errors.extend(_check_expr(engine, storage, test))
    return errors


def _check_alerts(tg: UnitTestGroup, tests: list[AlertTest], groups: list[RuleGroup],
                  states: list[GroupState]) -> list[str]:
    names = {t.alertname for t in tests}
    got: dict[str, list[_AlertRow]] = {}
    for group, state in zip(groups, states, strict=True):
        for rule, rs in zip(group.rules, state.rules, strict=True):
            if rule.kind != "alert" or rule.name not in names:
                continue
            got.setdefault(rule.name, []).extend(
                (a.labels, a.annotations) for a in rs.active.values()
                if a.resolved_at_ms is None and a.state == "firing"
            )
    errors = []
    for test in tests:
        got_rows = sorted(got.get(test.alertname, []))
        exp_rows = sorted(
            (tuple(sorted({**a.labels, "alertname": test.alertname}.items())), tuple(sorted(a.annotations.items())))
            for a in test.exp_alerts
        )
        if exp_rows != got_rows:
            name = f"    name: {tg.name},\n" if tg.name else ""
            exp = _indent_lines(_alerts_string(exp_rows), " " * 12)
            gotten = _indent_lines(_alerts_string(got_rows), " " * 12)
            errors.append(f"{name}    alertname: {test.alertname}, time: {model_duration(test.eval_time_ms)}, "
                          f"\n        exp:{exp}, \n        got:{gotten}")
    return errors


def _check_expr(engine: Engine, storage: MemoryQueryable, test: ExprTest) -> list[str]:
    where = f"    expr: {go_quote(test.expr)}, time: {model_duration(test.eval_time_ms)}"
    try:
        vector = _query_vector(engine, storage, test.expr, test.eval_time_ms)
    except PromQLError as exc:
        return [f"{where}, err: {exc}"]
    got = sorted(((s.labels, s.v) for s in vector), key=lambda p: p[0])
    exp: list[tuple[Labels, float]] = []
    for sample in test.exp_samples:
        try:
            labels = parse_series_labels(sample.labels) if sample.labels.strip() else ()
        except PromQLError as exc:
            return [f"{where}, err: labels {go_quote(sample.labels)}: {exc}"]
        exp.append((labels, sample.value))
    exp.sort(key=lambda p: p[0])
    same = len(exp) == len(got) and all(e[0] == g[0] and e[1] == g[1] for e, g in zip(exp, got, strict=True))
    if same:
        return []
    return [f"{where},\n        exp: {_samples_string(exp)}\n        got: {_samples_string(got)}"]


def check_file(path: str, out: TextIO, err: TextIO, expander: Expander | None = None) -> bool:
    """Runs one unit test file, printing promtool's report; True when every test in it passed."""
    print("Unit Testing: ", path, file=out)
    try:
        spec = read_unit_test_file(path)
        order: dict[str, int] = {}
        for name in spec.group_eval_order:
            if name in order:
                raise UnitTestError(f"group name repeated in evaluation order: {name}")
            order[name] = 1
        rule_files = resolve_rule_files(os.path.dirname(path), spec.rule_files, err)
    except UnitTestError as exc:
        errors = [str(exc)]
    else:
        interval = spec.evaluation_interval_ms or 60_000
        errors = []
        for tg in spec.tests:
            errors.extend(run_test_group(tg, interval, spec.group_eval_order, rule_files, expander))
    if errors:
        print("  FAILED:", file=err)
        for message in errors:
            err.write(message + "\n")
            err.flush()
            print(file=out)
    else:
        print("  SUCCESS", file=out)
    print(file=out)
    return not errors


def run(files: list[str], out: TextIO | None = None, err: TextIO | None = None,
        expander: Expander | None = None) -> int:
    """`vigil test rules`: exit status 0 when every file passes, 1 otherwise (as promtool)."""
    out = out or sys.stdout
    err = err or sys.stderr
    ok = True
    for path in files:
        ok = check_file(path, out, err, expander) and ok
    return 0 if ok else 1
