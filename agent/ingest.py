"""What goes into the metrics history on its own: every collector snapshot and Vigil's own metrics.

As a Prometheus scrape does, a series that was in the previous snapshot of the same source and
is missing from this one gets a staleness marker, so queries stop returning it at once instead of
five minutes later (a filesystem unmounted, a network interface removed).
"""

from __future__ import annotations

from collections.abc import Iterable

import structlog
from prometheus_client import CollectorRegistry

from agent.collectors.base import Family
from agent.promql.values import STALE_NAN, Labels
from agent.tsdb.db import TSDB

log = structlog.get_logger("vigil.ingest")


class Ingest:
    def __init__(self, tsdb: TSDB, extra_labels: dict[str, str] | None = None):
        self.tsdb = tsdb
        self._previous: dict[str, set[Labels]] = {}
        self._cache: dict[tuple[str, tuple[str, ...], tuple[str, ...]], Labels] = {}
        self.configure(extra_labels or {})

    def configure(self, extra_labels: dict[str, str]) -> None:
        """New labels for every series from now on (history.labels); old series keep theirs."""
        self._extra = tuple(sorted((k, v) for k, v in extra_labels.items() if v))
        self._cache.clear()

    def _labels(self, name: str, names: tuple[str, ...], values: tuple[str, ...]) -> Labels:
        key = (name, names, values)
        found = self._cache.get(key)
        if found is None:
            pairs = {k: v for k, v in self._extra}
            pairs.update((k, v) for k, v in zip(names, values, strict=False) if v != "")
            pairs["__name__"] = name
            found = tuple(sorted(pairs.items()))
            if len(self._cache) > 200_000:  # a label with unbounded values must not grow this forever
                self._cache.clear()
            self._cache[key] = found
        return found

    def collector_snapshot(self, source: str, families: list[Family], timestamp: float) -> None:
        """The CollectorRunner hook: one timestamp for the whole snapshot, as a scrape has."""
        items = [
            (self._labels(fam.name, fam.label_names, values), value)
            for fam in families
            for values, value in fam.samples
        ]
        self._append(source, items, int(timestamp * 1000))

    def registry_snapshot(self, source: str, registry: CollectorRegistry, timestamp: float) -> None:
        """Vigil's own metrics, so rules and PromQL can use them like host metrics."""
        items: list[tuple[Labels, float]] = []
        for metric in registry.collect():
            for sample in metric.samples:
                if sample.name.endswith("_created"):
                    continue
                names = tuple(sample.labels)
                items.append((self._labels(sample.name, names, tuple(sample.labels.values())), sample.value))
        self._append(source, items, int(timestamp * 1000))

    def _append(self, source: str, items: Iterable[tuple[Labels, float]], t_ms: int) -> None:
        listed = list(items)
        current = {labels for labels, _ in listed}
        gone = self._previous.get(source, set()) - current
        self._previous[source] = current
        self.tsdb.append_many(listed + [(labels, STALE_NAN) for labels in gone], t_ms)
