"""Series index: label set <-> integer id, and postings (label name -> value -> ids) for matchers.

Not locked by itself: the TSDB holds its lock around every call, because the loop thread adds
series while query threads match.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

from agent.promql.ast import Matcher, MatchType
from agent.promql.memory import matcher_matches
from agent.promql.values import Labels, drop_name

_ORDERED_MAX = 2048

# Whether a label value ("" for a missing label) satisfies a matcher: the engine's own rule.
matches = matcher_matches


def normalize(labels: Iterable[tuple[str, str]]) -> Labels:
    """Sorted by name, empty values dropped: a label with an empty value does not exist."""
    return tuple(sorted((k, v) for k, v in labels if v != ""))


class SeriesIndex:
    def __init__(self) -> None:
        self.ids: dict[Labels, int] = {}
        self.labels: dict[int, Labels] = {}
        self.unnamed: dict[int, Labels] = {}
        """Id -> its labels without `__name__`: what a rate or sum of the series is labelled with."""
        self.postings: dict[str, dict[str, set[int]]] = {}
        self._aliases: dict[Labels, int] = {}  # un-normalized spellings seen from callers
        self._ordered: dict[tuple[Matcher, ...], list[int]] = {}
        """Matchers -> `match` in label order (see `match_ordered`); emptied whenever a series comes or goes."""
        self.next_id = 1
        self.generation = 0
        """Grows whenever a series comes or goes."""

    def __len__(self) -> int:
        return len(self.labels)

    def get(self, labels: Labels) -> int | None:
        sid = self.ids.get(labels)
        if sid is None:
            sid = self._aliases.get(labels)
            if sid is None:
                sid = self.ids.get(normalize(labels))
        return sid

    def add(self, labels: Labels, sid: int | None = None) -> int:
        """Register a label set (normalized here) under `sid` or the next free id; returns the id."""
        key = normalize(labels)
        existing = self.ids.get(key)
        if existing is not None and sid is None:
            if key != labels:
                self._aliases[labels] = existing
            return existing
        if sid is None:
            sid = self.next_id
        elif existing is not None:
            self.remove(existing)
        self.next_id = max(self.next_id, sid + 1)
        self._ordered = {}
        self.generation += 1
        self.ids[key] = sid
        self.labels[sid] = key
        self.unnamed[sid] = drop_name(key)
        if key != labels:
            self._aliases[labels] = sid
        for name, value in key:
            self.postings.setdefault(name, {}).setdefault(value, set()).add(sid)
        return sid

    def remove(self, sid: int) -> None:
        key = self.labels.pop(sid, None)
        if key is None:
            return
        del self.unnamed[sid]
        self.generation += 1
        self._ordered = {}
        del self.ids[key]
        for alias in [a for a, s in self._aliases.items() if s == sid]:
            del self._aliases[alias]
        for name, value in key:
            values = self.postings[name]
            ids = values[value]
            ids.discard(sid)
            if not ids:
                del values[value]
                if not values:
                    del self.postings[name]

    def match(self, matchers: Sequence[Matcher]) -> set[int]:
        """Ids of the series every matcher accepts (Prometheus semantics: a matcher that accepts
        the empty string also accepts series without the label)."""
        narrowing = [m for m in matchers if not matches(m, "")]
        filtering = [m for m in matchers if matches(m, "")]
        candidates: set[int] | None = None
        # Smallest posting set first, so the intersections stay small.
        for matcher in sorted(narrowing, key=self._estimate):
            ids = self._posting_union(matcher)
            candidates = ids if candidates is None else candidates & ids
            if not candidates:
                return set()
        if candidates is None:
            candidates = set(self.labels)
        if not filtering:
            return candidates
        out = set()
        for sid in candidates:
            labels = dict(self.labels[sid])
            if all(matches(m, labels.get(m.name, "")) for m in filtering):
                out.add(sid)
        return out

    def match_ordered(self, matchers: Sequence[Matcher],
                      order: Callable[[list[int], Mapping[int, Labels]], list[int]]) -> list[int]:
        """`match` sorted by `order` (callers always pass the same one), kept until a series comes or goes:
        rules select the same series at every evaluation, and would otherwise intersect postings and sort
        the ids anew each time. The caller must not modify the list."""
        key = tuple(matchers)
        hit = self._ordered.get(key)
        if hit is None:
            if len(self._ordered) >= _ORDERED_MAX:
                self._ordered = {}
            hit = self._ordered[key] = order(list(self.match(matchers)), self.labels)
        return hit

    def _estimate(self, matcher: Matcher) -> int:
        values = self.postings.get(matcher.name, {})
        if matcher.type is MatchType.EQL:
            return len(values.get(matcher.value, ()))
        return sum(len(ids) for ids in values.values())

    def _posting_union(self, matcher: Matcher) -> set[int]:
        """Series that have the label with a value the matcher accepts (it rejects \"\")."""
        values = self.postings.get(matcher.name)
        if not values:
            return set()
        if matcher.type is MatchType.EQL:
            return set(values.get(matcher.value, ()))
        out: set[int] = set()
        for value, ids in values.items():
            if matches(matcher, value):
                out |= ids
        return out

    def label_names(self, sids: Iterable[int]) -> set[str]:
        names: set[str] = set()
        for sid in sids:
            names.update(name for name, _ in self.labels[sid])
        return names

    def label_values(self, name: str, sids: Iterable[int]) -> set[str]:
        out: set[str] = set()
        for sid in sids:
            for key, value in self.labels[sid]:
                if key == name:
                    out.add(value)
                    break
        return out
