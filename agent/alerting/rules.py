"""Rule groups evaluated with Prometheus's semantics (rules/manager.go, alerting.go, recording.go of 2.42).

`evaluate(group, state, t_ms, queryable)` runs a group's rules in order at one time. Each rule sees what
the rules before it wrote in the same evaluation, as in Prometheus where every rule commits before the
next one runs. The answer holds the samples to write back (recording results, `ALERTS`,
`ALERTS_FOR_STATE`, and staleness markers for series a rule stopped returning), each rule's health,
last error and evaluation time, and its alerts.

All memory between evaluations lives in `GroupState`, made of plain dataclasses with `to_dict` /
`from_dict`, so the daemon can persist it and a restart continues `for` and `keep_firing_for` where
they were (Prometheus restores only `for`, from `ALERTS_FOR_STATE`). Nothing here does I/O.
"""

from __future__ import annotations

import math
import time
from bisect import bisect_right
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from agent.alerting.rulefile import Rule, RuleGroup
from agent.promql.ast import Matcher, MatchType
from agent.promql.engine import Engine
from agent.promql.memory import labels_match
from agent.promql.values import (
    STALE_NAN,
    Labels,
    PromQLError,
    Queryable,
    Sample,
    Scalar,
    SeriesData,
    SeriesView,
    is_stale,
    label_value,
    views_of,
)

AlertState = Literal["pending", "firing", "inactive"]
Health = Literal["unknown", "ok", "err"]

ALERTS = "ALERTS"
ALERTS_FOR_STATE = "ALERTS_FOR_STATE"
RESOLVED_RETENTION_MS = 15 * 60_000
"""How long a resolved alert is kept (and reported as resolved), as Prometheus's resolvedRetention."""
FOR_GRACE_PERIOD_MS = 10 * 60_000
"""Prometheus's --rules.alert.for-grace-period: the least time a restored pending alert still waits."""


class RuleError(Exception):
    """An evaluation failure that makes the rule unhealthy for this round (Prometheus's returned error)."""


@dataclass
class TemplateData:
    """What a label or annotation template sees: `$labels`, `$value`, `$externalLabels`, `$externalURL`."""

    labels: dict[str, str]
    value: float
    external_labels: dict[str, str]
    external_url: str
    t_ms: int
    query: Callable[[str], list[Sample]]
    """Runs PromQL at the evaluation time, for the `query` template function."""


Expander = Callable[[str, str, TemplateData], str]
"""(template name, text, data) -> expanded text; raises when the template fails to parse or execute."""


def default_expander() -> Expander:
    """Vigil's Go-template implementation, with the variables Prometheus defines for alert templates."""
    from agent.alerting import template

    def expand(name: str, text: str, data: TemplateData) -> str:
        return template.expand_alert_template(name, text, data, data.query)

    return expand


# --- state (persisted between evaluations and across restarts) ---


@dataclass
class Alert:
    """One alert instance of an alerting rule, keyed by its labels (rule labels applied, `alertname` set)."""

    labels: Labels
    annotations: Labels
    state: AlertState
    value: float
    active_at_ms: int
    fired_at_ms: int | None = None
    resolved_at_ms: int | None = None
    keep_firing_since_ms: int | None = None
    last_sent_at_ms: int | None = None
    valid_until_ms: int | None = None

    def needs_sending(self, t_ms: int, resend_delay_ms: int) -> bool:
        """Whether Prometheus would send this alert to Alertmanager now (needsSending)."""
        if self.state == "pending":
            return False
        if self.last_sent_at_ms is None:
            return True
        if self.resolved_at_ms is not None and self.resolved_at_ms > self.last_sent_at_ms:
            return True
        return self.last_sent_at_ms + resend_delay_ms < t_ms

    def to_dict(self) -> dict[str, Any]:
        return {
            "labels": [list(p) for p in self.labels],
            "annotations": [list(p) for p in self.annotations],
            "state": self.state,
            "value": self.value,
            "active_at_ms": self.active_at_ms,
            "fired_at_ms": self.fired_at_ms,
            "resolved_at_ms": self.resolved_at_ms,
            "keep_firing_since_ms": self.keep_firing_since_ms,
            "last_sent_at_ms": self.last_sent_at_ms,
            "valid_until_ms": self.valid_until_ms,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Alert:
        return cls(
            labels=_labels(data["labels"]),
            annotations=_labels(data.get("annotations", [])),
            state=data["state"],
            value=float(data["value"]),
            active_at_ms=int(data["active_at_ms"]),
            fired_at_ms=data.get("fired_at_ms"),
            resolved_at_ms=data.get("resolved_at_ms"),
            keep_firing_since_ms=data.get("keep_firing_since_ms"),
            last_sent_at_ms=data.get("last_sent_at_ms"),
            valid_until_ms=data.get("valid_until_ms"),
        )


def _labels(pairs: Iterable[Sequence[str]]) -> Labels:
    return tuple(sorted((str(k), str(v)) for k, v in pairs))


@dataclass
class RuleState:
    """What one rule remembers. `name`/`kind`/`labels` identify it when rules are reloaded or restored."""

    name: str
    kind: str
    labels: Labels
    active: dict[Labels, Alert] = field(default_factory=dict)
    series: list[Labels] = field(default_factory=list)
    """Series the rule wrote at its last good evaluation: marked stale when they stop coming."""
    health: Health = "unknown"
    last_error: str = ""
    template_error: bool = False
    """The last error is from expanding a template: the rule's alerts are still evaluated and written."""
    evaluation_time_s: float = 0.0
    last_evaluation_ms: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "labels": [list(p) for p in self.labels],
            "active": [a.to_dict() for a in self.active.values()],
            "series": [[list(p) for p in s] for s in self.series],
            "health": self.health,
            "last_error": self.last_error,
            "template_error": self.template_error,
            "evaluation_time_s": self.evaluation_time_s,
            "last_evaluation_ms": self.last_evaluation_ms,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RuleState:
        alerts = [Alert.from_dict(a) for a in data.get("active", [])]
        return cls(
            name=data["name"],
            kind=data["kind"],
            labels=_labels(data.get("labels", [])),
            active={a.labels: a for a in alerts},
            series=[_labels(s) for s in data.get("series", [])],
            health=data.get("health", "unknown"),
            last_error=data.get("last_error", ""),
            template_error=bool(data.get("template_error", False)),
            evaluation_time_s=float(data.get("evaluation_time_s", 0.0)),
            last_evaluation_ms=data.get("last_evaluation_ms"),
        )


@dataclass
class GroupState:
    """Per-rule state aligned with the group's rules, plus series of removed rules still to mark stale."""

    rules: list[RuleState]
    stale_series: list[Labels] = field(default_factory=list)
    evaluation_time_s: float = 0.0
    last_evaluation_ms: int | None = None

    @classmethod
    def new(cls, group: RuleGroup) -> GroupState:
        return cls([RuleState(r.name, r.kind, r.labels) for r in group.rules])

    def to_dict(self) -> dict[str, Any]:
        return {
            "rules": [r.to_dict() for r in self.rules],
            "stale_series": [[list(p) for p in s] for s in self.stale_series],
            "evaluation_time_s": self.evaluation_time_s,
            "last_evaluation_ms": self.last_evaluation_ms,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GroupState:
        return cls(
            rules=[RuleState.from_dict(r) for r in data.get("rules", [])],
            stale_series=[_labels(s) for s in data.get("stale_series", [])],
            evaluation_time_s=float(data.get("evaluation_time_s", 0.0)),
            last_evaluation_ms=data.get("last_evaluation_ms"),
        )


def carry_over(old: GroupState | None, group: RuleGroup) -> GroupState:
    """State for a (re)loaded group from the state of its previous version, as Prometheus's CopyState.

    Rules are matched by kind, name and labels, the n-th occurrence to the n-th; a matched rule keeps
    its alerts (so `for` and `keep_firing_for` continue) and its written series. Series of rules that
    are gone are marked stale at the next evaluation.
    """
    new = GroupState.new(group)
    if old is None:
        return new
    new.evaluation_time_s = old.evaluation_time_s
    new.last_evaluation_ms = old.last_evaluation_ms
    by_key: dict[tuple[str, str, Labels], list[int]] = {}
    for i, rs in enumerate(old.rules):
        by_key.setdefault((rs.kind, rs.name, rs.labels), []).append(i)
    for i, rule in enumerate(group.rules):
        indexes = by_key.get((rule.kind, rule.name, rule.labels))
        if not indexes:
            continue
        source = old.rules[indexes.pop(0)]
        new.rules[i] = replace(source, active=dict(source.active), series=list(source.series))
    new.stale_series = list(old.stale_series)
    for indexes in by_key.values():
        for i in indexes:
            new.stale_series.extend(old.rules[i].series)
    return new


def restore_after_downtime(state: GroupState, group: RuleGroup, down_at_ms: int, now_ms: int,
                           grace_ms: int = FOR_GRACE_PERIOD_MS) -> None:
    """Adjust restored pending alerts for the time nothing was evaluated, as Prometheus's RestoreForState.

    Firing alerts stay firing (no re-page; `keep_firing_for` keeps counting from where it was). A
    pending alert does not count the downtime towards `for`, and still waits at least the grace
    period, so a restart never turns a pending alert into a page on stale data.
    """
    for rule, rs in zip(group.rules, state.rules, strict=True):
        if rule.kind != "alert":
            continue
        for alert in rs.active.values():
            if alert.state != "pending":
                continue
            if rule.for_ms < grace_ms:
                # Prometheus skips restoring short holds: the alert waits its whole `for` again.
                alert.active_at_ms = now_ms
                continue
            remaining = rule.for_ms - (down_at_ms - alert.active_at_ms)
            if remaining <= 0:
                continue
            if remaining < grace_ms:
                alert.active_at_ms = now_ms + grace_ms - rule.for_ms
            else:
                alert.active_at_ms += now_ms - down_at_ms


# --- results ---


@dataclass
class AlertChange:
    """An alert instance moved between states in this evaluation (for events and notifications)."""

    rule: str
    labels: Labels
    old: AlertState | None
    new: AlertState


@dataclass
class RuleResult:
    rule: Rule
    health: Health
    last_error: str
    evaluation_time_s: float
    samples: int
    alerts: list[Alert]
    """Copies of the rule's alert instances, resolved ones kept for the retention included."""

    @property
    def active_alerts(self) -> list[Alert]:
        """Pending and firing instances (Prometheus's ActiveAlerts: not resolved)."""
        return [a for a in self.alerts if a.resolved_at_ms is None]


@dataclass
class GroupResult:
    group: RuleGroup
    t_ms: int
    samples: list[tuple[Labels, int, float]]
    """To write back into the history, in order; staleness markers are STALE_NAN."""
    rules: list[RuleResult]
    changes: list[AlertChange]
    evaluation_time_s: float


# --- evaluation ---


class _Overlay:
    """The queryable as it will be once this evaluation's samples are written: later rules read earlier ones.

    Every sample added is at the evaluation time; they are indexed by metric name because nearly every
    selector names its metric, so a group of hundreds of rules does not rescan all recorded series.
    """

    def __init__(self, base: Queryable, t_ms: int):
        self.base = base
        self.t = t_ms
        self.added: dict[Labels, float] = {}
        self.by_name: dict[str, dict[Labels, float]] = {}

    def append(self, labels: Labels, v: float) -> str | None:
        """Adds a sample at the evaluation time; Prometheus's appender error when another value is there."""
        old = self.added.get(labels)
        if old is not None and not _same_float(old, v):
            return "duplicate sample for timestamp"
        self.added[labels] = v
        self.by_name.setdefault(label_value(labels, "__name__"), {})[labels] = v
        return None

    def _candidates(self, matchers: Sequence[Matcher]) -> dict[Labels, float]:
        for m in matchers:
            if m.name == "__name__" and m.type is MatchType.EQL:
                return self.by_name.get(m.value, {})
        return self.added

    def _extra(self, matchers: Sequence[Matcher], mint: int, maxt: int) -> dict[Labels, float]:
        """This evaluation's samples the selection takes."""
        if not self.added or not mint <= self.t <= maxt:
            return {}
        return {labels: v for labels, v in self._candidates(matchers).items() if labels_match(labels, matchers)}

    def select_views(self, matchers: Sequence[Matcher], mint: int, maxt: int) -> list[SeriesView]:
        extra = self._extra(matchers, mint, maxt)
        if extra:
            return views_of(self._merged(self.base.select(matchers, mint, maxt), extra))
        return self.base.select_views(matchers, mint, maxt)

    def select(self, matchers: Sequence[Matcher], mint: int, maxt: int) -> list[SeriesData]:
        data = self.base.select(matchers, mint, maxt)
        extra = self._extra(matchers, mint, maxt)
        return self._merged(data, extra) if extra else data

    def _merged(self, data: list[SeriesData], extra: dict[Labels, float]) -> list[SeriesData]:
        """The stored series with this evaluation's samples (`extra`, consumed) added, in label order."""
        out: list[SeriesData] = []
        for series in data:
            v = extra.pop(series.labels, None)
            out.append(series if v is None else _merge(series, self.t, v))
        out.extend(SeriesData(labels, [self.t], [v]) for labels, v in extra.items())
        out.sort(key=lambda s: s.labels)
        return out

    def _extra_labels(self, matcher_sets: Sequence[Sequence[Matcher]]) -> list[Labels]:
        return [labels for labels in self.added
                if any(labels_match(labels, ms) for ms in (matcher_sets or [[]]))]

    def series(self, matchers: Sequence[Sequence[Matcher]], mint: int, maxt: int) -> list[Labels]:
        return sorted(set(self.base.series(matchers, mint, maxt)) | set(self._extra_labels(matchers)))

    def label_names(self, matchers: Sequence[Sequence[Matcher]], mint: int, maxt: int) -> list[str]:
        names = set(self.base.label_names(matchers, mint, maxt))
        names.update(name for labels in self._extra_labels(matchers) for name, _ in labels)
        return sorted(names)

    def label_values(self, name: str, matchers: Sequence[Sequence[Matcher]], mint: int, maxt: int) -> list[str]:
        values = set(self.base.label_values(name, matchers, mint, maxt))
        values.update(v for labels in self._extra_labels(matchers) for k, v in labels if k == name)
        return sorted(values)


def _same_float(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b) and is_stale(a) == is_stale(b))


def _merge(series: SeriesData, t: int, v: float) -> SeriesData:
    """The stored series plus this evaluation's sample (a value already stored at `t` stays, as in the TSDB)."""
    if t in series.ts:
        return series
    ts = list(series.ts)
    i = bisect_right(ts, t)
    ts.insert(i, t)
    values = list(series.values)
    values.insert(i, v)
    merged = SeriesData(series.labels, ts, values)
    if series.count is not None:
        for name, add in (("count", 1.0), ("sum", v), ("min", v), ("max", v)):
            column = list(getattr(series, name) or [])
            column.insert(i, add)
            setattr(merged, name, column)
    return merged


def _set_label(labels: dict[str, str], name: str, value: str) -> None:
    """labels.Builder.Set: an empty value removes the label."""
    if value == "":
        labels.pop(name, None)
    else:
        labels[name] = value


def _query(engine: Engine, queryable: Queryable, expr: Any, t_ms: int, timeout_s: float) -> list[Sample]:
    """Prometheus's EngineQueryFunc: a vector as is, a scalar as one sample without labels, else an error."""
    result = engine.instant_query(queryable, expr, t_ms, timeout_s)
    if isinstance(result, Scalar):
        return [Sample((), t_ms, result.v)]
    if isinstance(result, list) and all(isinstance(s, Sample) for s in result):
        return result
    raise RuleError("rule result is not a vector or scalar")


class _Evaluation:
    def __init__(self, group: RuleGroup, state: GroupState, t_ms: int, queryable: Queryable, engine: Engine,
                 external_labels: dict[str, str], external_url: str, expander: Expander | None,
                 timeout_s: float):
        self.group = group
        self.state = state
        self.t = t_ms
        self.overlay = _Overlay(queryable, t_ms)
        self.engine = engine
        self.external_labels = external_labels
        self.external_url = external_url
        self.expander = expander
        self.timeout_s = timeout_s
        self.samples: list[tuple[Labels, int, float]] = []
        self.changes: list[AlertChange] = []

    def query(self, expr: Any) -> list[Sample]:
        return _query(self.engine, self.overlay, expr, self.t, self.timeout_s)

    def recording(self, rule: Rule) -> list[Sample]:
        vector = self.query(rule.query)
        out: list[Sample] = []
        for sample in vector:
            labels = dict(sample.labels)
            labels["__name__"] = rule.name
            for name, value in rule.labels:
                _set_label(labels, name, value)
            out.append(Sample(tuple(sorted(labels.items())), self.t, sample.v))
        if len({s.labels for s in out}) != len(out):
            raise RuleError("vector contains metrics with the same labelset after applying rule labels")
        if self.group.limit > 0 and len(out) > self.group.limit:
            raise RuleError(f"exceeded limit of {self.group.limit} with {len(out)} series")
        return out

    def alerting(self, rule: Rule, rs: RuleState) -> tuple[list[Sample], list[str]]:
        vector = self.query(rule.query)
        template_errors: list[str] = []
        fresh: dict[Labels, Alert] = {}
        for sample in vector:
            data = TemplateData(dict(sample.labels), sample.v, self.external_labels, self.external_url,
                                self.t, self.query)

            def expand(text: str, data: TemplateData = data) -> str:
                if self.expander is None or ("{{" not in text):
                    return text
                try:
                    return self.expander("__alert_" + rule.name, text, data)
                except Exception as exc:
                    template_errors.append(str(exc))
                    return f"<error expanding template: {exc}>"

            labels = dict(sample.labels)
            labels.pop("__name__", None)
            for name, value in rule.labels:
                _set_label(labels, name, expand(value))
            labels["alertname"] = rule.name
            annotations = tuple((name, expand(value)) for name, value in rule.annotations)
            key = tuple(sorted(labels.items()))
            if key in fresh:
                raise RuleError("vector contains metrics with the same labelset after applying alert labels")
            fresh[key] = Alert(key, annotations, "pending", sample.v, self.t)

        for key, alert in fresh.items():
            current = rs.active.get(key)
            if current is not None and current.state != "inactive":
                current.value = alert.value
                current.annotations = alert.annotations
                continue
            rs.active[key] = alert
            self.changes.append(AlertChange(rule.name, key, current.state if current else None, "pending"))

        out: list[Sample] = []
        active_pending = 0
        for key, alert in list(rs.active.items()):
            if key not in fresh:
                keep_firing = False
                if alert.state == "firing" and rule.keep_firing_for_ms > 0:
                    if alert.keep_firing_since_ms is None:
                        alert.keep_firing_since_ms = self.t
                    keep_firing = self.t - alert.keep_firing_since_ms < rule.keep_firing_for_ms
                if alert.state == "pending" or (
                    alert.resolved_at_ms is not None and self.t - alert.resolved_at_ms > RESOLVED_RETENTION_MS
                ):
                    del rs.active[key]
                if alert.state != "inactive" and not keep_firing:
                    self.changes.append(AlertChange(rule.name, key, alert.state, "inactive"))
                    alert.state = "inactive"
                    alert.resolved_at_ms = self.t
                if not keep_firing:
                    continue
            else:
                alert.keep_firing_since_ms = None
            active_pending += 1
            if alert.state == "pending" and self.t - alert.active_at_ms >= rule.for_ms:
                alert.state = "firing"
                alert.fired_at_ms = self.t
                self.changes.append(AlertChange(rule.name, key, "pending", "firing"))
            out.append(Sample(self._alert_series(rule, alert, ALERTS, state=True), self.t, 1.0))
            out.append(Sample(self._alert_series(rule, alert, ALERTS_FOR_STATE, state=False), self.t,
                              float(alert.active_at_ms // 1000)))
        if self.group.limit > 0 and active_pending > self.group.limit:
            rs.active.clear()
            raise RuleError(f"exceeded limit of {self.group.limit} with {active_pending} alerts")
        return out, template_errors

    @staticmethod
    def _alert_series(rule: Rule, alert: Alert, metric: str, state: bool) -> Labels:
        """Rule labels as written, overridden by the alert's (expanded) labels, as AlertingRule.sample does."""
        labels = {name: value for name, value in rule.labels if value != ""}
        labels.update(alert.labels)
        labels["__name__"] = metric
        labels["alertname"] = rule.name
        if state:
            labels["alertstate"] = alert.state
        return tuple(sorted(labels.items()))

    def write(self, rs: RuleState, vector: list[Sample]) -> None:
        """Appends the rule's samples, then staleness markers for its series that did not come this time."""
        returned: list[Labels] = []
        seen: set[Labels] = set()
        for sample in vector:
            err = self.overlay.append(sample.labels, sample.v)
            if err is not None:
                rs.health = "err"
                rs.last_error = err
                rs.template_error = False
                continue
            self.samples.append((sample.labels, self.t, sample.v))
            if sample.labels not in seen:
                seen.add(sample.labels)
                returned.append(sample.labels)
        for labels in rs.series:
            if labels not in seen:
                self.stale(labels)
        rs.series = returned

    def stale(self, labels: Labels) -> None:
        """A staleness marker, unless another rule wrote the series now (Prometheus drops the marker then)."""
        if self.overlay.append(labels, STALE_NAN) is None:
            self.samples.append((labels, self.t, STALE_NAN))


def evaluate(
    group: RuleGroup,
    state: GroupState,
    t_ms: int,
    queryable: Queryable,
    *,
    engine: Engine | None = None,
    external_labels: dict[str, str] | None = None,
    external_url: str = "",
    expander: Expander | None = None,
    timeout_s: float = 120.0,
) -> GroupResult:
    """Evaluate every rule of the group at `t_ms`, updating `state` in place.

    A rule that fails (query error, duplicate label sets, limit) is marked `err` with its error and the
    group goes on; its alerts keep their state, as in Prometheus. A template that fails expands to
    `<error expanding template: ...>` (as in Prometheus) and is also the rule's last error, without
    stopping the rule. `expander` None uses Vigil's template module.
    """
    if len(state.rules) != len(group.rules):
        raise ValueError(f"state has {len(state.rules)} rules, group {group.name!r} has {len(group.rules)}")
    started = time.perf_counter()
    ev = _Evaluation(group, state, t_ms, queryable, engine or Engine(), dict(external_labels or {}), external_url,
                     expander if expander is not None else default_expander(), timeout_s)
    results: list[RuleResult] = []
    for rule, rs in zip(group.rules, state.rules, strict=True):
        t0 = time.perf_counter()
        produced = 0
        try:
            if rule.kind == "record":
                vector = ev.recording(rule)
                template_errors: list[str] = []
            else:
                vector, template_errors = ev.alerting(rule, rs)
        except Exception as exc:  # any failure is this rule's error: the group goes on
            rs.health = "err"
            rs.last_error = str(exc) if isinstance(exc, PromQLError | RuleError) else f"{type(exc).__name__}: {exc}"
            rs.template_error = False
        else:
            rs.health = "ok"
            rs.last_error = ""
            rs.template_error = False
            if template_errors:
                rs.health = "err"
                rs.last_error = f"error expanding template: {template_errors[0]}"
                rs.template_error = True
            ev.write(rs, vector)
            produced = len(vector)
        rs.evaluation_time_s = time.perf_counter() - t0
        rs.last_evaluation_ms = t_ms
        alerts = [replace(a) for a in rs.active.values()]
        results.append(RuleResult(rule, rs.health, rs.last_error, rs.evaluation_time_s, produced, alerts))
    for labels in state.stale_series:
        ev.stale(labels)
    state.stale_series = []
    state.evaluation_time_s = time.perf_counter() - started
    state.last_evaluation_ms = t_ms
    return GroupResult(group, t_ms, ev.samples, results, ev.changes, state.evaluation_time_s)
