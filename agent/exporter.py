"""/metrics: the host snapshot plus Vigil's own metrics, in the format the scraper asks for.

The host part only changes when a collector runs, so its rendering is cached per format and
snapshot version: a scrape costs a dictionary lookup plus the (small) self-metrics rendering.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder

from agent.collectors.runner import CollectorRunner
from agent.selfmetrics import SelfMetrics


class SnapshotCollector:
    """A prometheus_client custom collector over the runner's latest results."""

    def __init__(self, runner: CollectorRunner):
        self.runner = runner

    def collect(self) -> Iterator[Metric]:
        merged: dict[str, Metric] = {}
        for result in sorted(self.runner.latest.values(), key=lambda r: r.name):
            for fam in result.families:
                metric = merged.get(fam.name)
                if metric is None:
                    if fam.type == "counter":
                        metric = CounterMetricFamily(fam.name, fam.help, labels=fam.label_names)
                    else:
                        metric = GaugeMetricFamily(fam.name, fam.help, labels=fam.label_names)
                    merged[fam.name] = metric
                for values, value in fam.samples:
                    metric.add_metric(list(values), value)
        yield from merged.values()


class Exporter:
    def __init__(self, runner: CollectorRunner, metrics: SelfMetrics):
        self.runner = runner
        self.metrics = metrics
        # Series recorded into the history by their own source at their own time (checks), so they
        # stay out of the self-metrics registry that the history snapshots on its own schedule.
        self.live = CollectorRegistry(auto_describe=False)
        self._snapshot = SnapshotCollector(runner)
        self._cache: dict[str, tuple[int, bytes]] = {}

    def render(self, accept: str) -> tuple[bytes, str]:
        encoder, content_type = choose_encoder(accept)
        cached = self._cache.get(content_type)
        version = self.runner.version
        if cached is None or cached[0] != version:
            host = encoder(self._snapshot)  # type: ignore[arg-type]
            if host.endswith(b"# EOF\n"):
                host = host[: -len(b"# EOF\n")]
            cached = (version, host)
            self._cache = {k: v for k, v in self._cache.items() if v[0] == version}
            self._cache[content_type] = cached
        live = encoder(self.live)
        if live.endswith(b"# EOF\n"):
            live = live[: -len(b"# EOF\n")]
        own = encoder(self.metrics.registry)
        return cached[1] + live + own, content_type

    def cached_bytes(self) -> dict[str, int]:
        """Bytes of the rendered host part kept per content type (GET /api/v1/cache)."""
        return {k: len(v[1]) for k, v in self._cache.items()}

    def clear_cache(self) -> int:
        """Drop the rendered host part; the next scrape renders it again. Returns the entries dropped."""
        dropped = len(self._cache)
        self._cache = {}
        return dropped
