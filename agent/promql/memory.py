"""An in-memory `Queryable`: series held in lists, for tests and for `vigil test rules`.

It applies label matchers exactly as Prometheus does (RE2 regexes, fully anchored; an absent label
reads as the empty string), so what the engine sees from here is what it would see from storage.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterable, Sequence

from agent.promql.ast import Matcher, MatchType
from agent.promql.functions_regex import GoRegex
from agent.promql.parser import compile_matcher_regex
from agent.promql.values import Labels, ParseError, SeriesData, SeriesView, views_of

_ROLLUP_COLUMNS = ("count", "sum", "min", "max")


def _compile(pattern: str) -> GoRegex:
    try:
        return compile_matcher_regex(pattern)
    except ValueError as exc:
        raise ParseError(str(exc)) from exc


_REGEX_RESULTS: dict[str, dict[str, bool]] = {}
_MAX_PATTERNS = 2048
_MAX_VALUES_PER_PATTERN = 20_000


def _regex_matches(pattern: str, value: str) -> bool:
    """Whether the anchored regex matches, remembered per pattern and value: the same few matchers are
    tried against the same label values at every rule evaluation, and an RE2 call from Python costs
    microseconds. Plain dict reads and writes, safe between query threads."""
    results = _REGEX_RESULTS.get(pattern)
    if results is None:
        if len(_REGEX_RESULTS) >= _MAX_PATTERNS:
            _REGEX_RESULTS.clear()
        results = _REGEX_RESULTS.setdefault(pattern, {})
    matched = results.get(value)
    if matched is None:
        matched = _compile(pattern).match(value) is not None
        if len(results) >= _MAX_VALUES_PER_PATTERN:
            results.clear()
        results[value] = matched
    return matched


def matcher_matches(matcher: Matcher, value: str) -> bool:
    """Whether a label value ("" when the label is absent) satisfies the matcher; regexes use RE2 syntax."""
    kind = matcher.type
    if kind is MatchType.EQL:
        return value == matcher.value
    if kind is MatchType.NEQ:
        return value != matcher.value
    matched = _regex_matches(matcher.value, value)
    return matched if kind is MatchType.RE else not matched


def labels_match(labels: Labels, matchers: Sequence[Matcher]) -> bool:
    values = dict(labels)
    return all(matcher_matches(m, values.get(m.name, "")) for m in matchers)


class _Stored:
    __slots__ = ("columns", "labels", "ts", "values")

    def __init__(self, labels: Labels):
        self.labels = labels
        self.ts: list[int] = []
        self.values: list[float] = []
        self.columns: dict[str, list[float]] | None = None


class MemoryQueryable:
    """Series kept sorted by timestamp; `select` returns them sorted by labels, as Prometheus's TSDB does."""

    def __init__(self, series: Iterable[SeriesData] = ()):
        self._series: dict[Labels, _Stored] = {}
        for data in series:
            self.add_series(data)

    def add(self, labels: Labels, t_ms: int, v: float) -> None:
        """One sample; a later sample at the same timestamp replaces the earlier one."""
        stored = self._series.get(labels)
        if stored is None:
            stored = self._series[labels] = _Stored(labels)
        if stored.columns is not None:
            raise ValueError("cannot add raw samples to a series loaded with rollup columns")
        ts = stored.ts
        if not ts or t_ms > ts[-1]:
            ts.append(t_ms)
            stored.values.append(v)
            return
        i = bisect_left(ts, t_ms)
        if i < len(ts) and ts[i] == t_ms:
            stored.values[i] = v
        else:
            insort(ts, t_ms)
            stored.values.insert(i, v)

    def add_series(self, data: SeriesData) -> None:
        """A whole series (timestamps ascending), rollup columns included; replaces any series with its labels."""
        if any(b <= a for a, b in zip(data.ts, data.ts[1:], strict=False)):
            raise ValueError(f"timestamps of {data.labels} are not strictly ascending")
        stored = _Stored(data.labels)
        stored.ts = list(data.ts)
        stored.values = list(data.values)
        columns = {name: getattr(data, name) for name in _ROLLUP_COLUMNS}
        if any(col is not None for col in columns.values()):
            if any(col is None or len(col) != len(stored.ts) for col in columns.values()):
                raise ValueError("rollup columns must all be given, parallel to ts")
            stored.columns = {name: list(col) for name, col in columns.items() if col is not None}
        self._series[data.labels] = stored

    def clear(self) -> None:
        self._series.clear()

    def _matching(self, matchers: Sequence[Matcher], mint: int, maxt: int) -> list[tuple[_Stored, int, int]]:
        out = []
        for labels, stored in self._series.items():
            if not labels_match(labels, matchers):
                continue
            lo = bisect_left(stored.ts, mint)
            hi = bisect_right(stored.ts, maxt)
            if hi > lo:
                out.append((stored, lo, hi))
        out.sort(key=lambda item: item[0].labels)
        return out

    def select(self, matchers: Sequence[Matcher], mint: int, maxt: int) -> list[SeriesData]:
        result = []
        for stored, lo, hi in self._matching(matchers, mint, maxt):
            data = SeriesData(stored.labels, stored.ts[lo:hi], stored.values[lo:hi])
            if stored.columns is not None:
                for name, column in stored.columns.items():
                    setattr(data, name, column[lo:hi])
            result.append(data)
        return result

    def select_views(self, matchers: Sequence[Matcher], mint: int, maxt: int) -> list[SeriesView]:
        return views_of(self.select(matchers, mint, maxt))

    def _union(self, matcher_sets: Sequence[Sequence[Matcher]], mint: int, maxt: int) -> list[Labels]:
        seen: set[Labels] = set()
        for matchers in matcher_sets or [[]]:
            seen.update(stored.labels for stored, _, _ in self._matching(matchers, mint, maxt))
        return sorted(seen)

    def series(self, matchers: Sequence[Sequence[Matcher]], mint: int, maxt: int) -> list[Labels]:
        return self._union(matchers, mint, maxt)

    def label_names(self, matchers: Sequence[Sequence[Matcher]], mint: int, maxt: int) -> list[str]:
        return sorted({name for labels in self._union(matchers, mint, maxt) for name, _ in labels})

    def label_values(self, name: str, matchers: Sequence[Sequence[Matcher]], mint: int, maxt: int) -> list[str]:
        return sorted({value for labels in self._union(matchers, mint, maxt) for key, value in labels if key == name})
