"""The metrics history as the daemon runs it: the store, what feeds it, its periodic jobs, its queries.

Config maps onto the TSDB here, and every setting applies on reload: retention and limits take
effect at the next maintenance run, `enabled: false` stops recording (queries and imports go on).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import structlog
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from agent.collectors.base import Family
from agent.config.schema import HistoryConfig
from agent.ingest import Ingest
from agent.queries import QueryService
from agent.scheduler import Scheduler
from agent.selfmetrics import SelfMetrics
from agent.store import Store
from agent.tsdb.db import TSDB, TSDBOptions

log = structlog.get_logger("vigil.history")
MAINTAIN_INTERVAL = 60.0


def tsdb_options(config: HistoryConfig) -> TSDBOptions:
    return TSDBOptions(
        retention_raw_ms=int(config.retention.raw * 1000),
        retention_1m_ms=int(config.retention.minute * 1000),
        retention_1h_ms=int(config.retention.hour * 1000),
        flush_interval_s=config.flush_interval,
        max_series=config.max_series,
    )


_COUNTERS = {
    "samples_appended_total": "Samples recorded from collectors and self metrics.",
    "samples_imported_total": "Samples stored through POST /api/v1/import.",
    "samples_expired_total": "Samples that arrived for times already past retention and were dropped.",
    "flushes_total": "Head flushes to the write-ahead segments.",
    "compactions_total": "Compactions of closed blocks into chunks.",
    "rollups_total": "Days rolled up into 1m and 1h points.",
    "retention_runs_total": "Retention runs that deleted chunks.",
    "series_removed_total": "Series removed because no tier holds data for them any more.",
}


class HistoryCollector:
    """The TSDB's figures as `vigil_tsdb_*`, read at scrape time (and recorded like other self metrics)."""

    def __init__(self, tsdb: TSDB):
        self.tsdb = tsdb

    def collect(self) -> Iterator[Metric]:
        stats = self.tsdb.stats()
        yield GaugeMetricFamily("vigil_tsdb_series", "Series in the metrics history.", value=stats["series"])
        yield GaugeMetricFamily("vigil_tsdb_head_samples",
                                "Samples held in memory: not yet in chunks, and the hour compacted last.",
                                value=stats["head_samples"])
        yield GaugeMetricFamily("vigil_tsdb_disk_bytes", "Size of the database file and its WAL.",
                                value=stats["disk_bytes"])
        chunks = GaugeMetricFamily("vigil_tsdb_chunks", "Stored chunks by tier.", labels=["tier"])
        size = GaugeMetricFamily("vigil_tsdb_chunk_bytes", "Compressed chunk bytes by tier.", labels=["tier"])
        oldest = GaugeMetricFamily("vigil_tsdb_oldest_timestamp_seconds", "Oldest sample kept, by tier.",
                                   labels=["tier"])
        for tier, count in stats["chunks"].items():
            chunks.add_metric([tier], count)
            size.add_metric([tier], stats["chunk_bytes"][tier])
            if stats["oldest_ms"].get(tier) is not None:
                oldest.add_metric([tier], stats["oldest_ms"][tier] / 1000)
        yield from (chunks, size, oldest)
        for key, help_text in _COUNTERS.items():
            yield CounterMetricFamily(f"vigil_tsdb_{key.removesuffix('_total')}", help_text, value=stats[key])
        dropped = CounterMetricFamily("vigil_tsdb_samples_dropped", "Samples not stored, by reason.",
                                      labels=["reason"])
        dropped.add_metric(["out_of_bounds"], stats["samples_out_of_bounds_total"])
        dropped.add_metric(["too_many_series"], stats["samples_too_many_series_total"])
        yield dropped
        for key in ("last_flush_seconds", "last_compaction_seconds", "last_maintain_seconds"):
            name = key.removesuffix("_seconds")
            yield GaugeMetricFamily(f"vigil_tsdb_{name}_duration_seconds", f"Duration of the {name.split('_')[1]}.",
                                    value=stats[key])


class History:
    def __init__(self, store: Store, config: HistoryConfig, metrics: SelfMetrics):
        self.config = config
        self.metrics = metrics
        self.store = store
        self.tsdb = TSDB(store, store.path, tsdb_options(config), metrics)
        self.ingest = Ingest(self.tsdb, config.labels)
        self.queries = QueryService(self.tsdb, config.query)
        metrics.registry.register(HistoryCollector(self.tsdb))
        self._recorded: dict[str, CollectorRegistry] = {"vigil": metrics.registry}

    def record_registry(self, source: str, registry: CollectorRegistry) -> None:
        """Record `registry` with Vigil's own metrics. Gauges read from state at scrape time (each check's
        `vigil_check_up`, rule groups) are in the history only this way between their updates: a check
        that runs hourly would otherwise leave its series stale five minutes after each run."""
        self._recorded[source] = registry

    async def open(self) -> None:
        await self.tsdb.open()

    def start(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        scheduler.every("history.flush", self.config.flush_interval, self.tsdb.flush)
        scheduler.every("history.maintain", MAINTAIN_INTERVAL, self._maintain)
        scheduler.every("history.self_metrics", self.config.self_metrics_interval, self._record_self)

    def collector_hook(self, source: str, families: list[Family], timestamp: float) -> None:
        if self.config.enabled:
            self.ingest.collector_snapshot(source, families, timestamp)

    async def _maintain(self) -> None:
        """Compaction and retention, then hand pages retention freed back to the filesystem."""
        await self.tsdb.maintain()
        await self.store.reclaim()

    async def _record_self(self) -> None:
        self.record_self()

    def record_self(self) -> None:
        """One snapshot of Vigil's own metrics. The daemon takes one once every component has restored its
        state and before rules first run: the last samples before a crash may not have been flushed, and a
        rule must not see a firing check's series missing."""
        if self.config.enabled:
            now = time.time()
            for source, registry in self._recorded.items():
                self.ingest.registry_snapshot(source, registry, now)

    def configure(self, config: HistoryConfig) -> None:
        old, self.config = self.config, config
        self.tsdb.options = tsdb_options(config)
        if config.labels != old.labels:
            self.ingest.configure(config.labels)
        if config.query != old.query:
            self.queries.configure(config.query)
        if config.flush_interval != old.flush_interval:
            self.scheduler.every("history.flush", config.flush_interval, self.tsdb.flush)
        if config.self_metrics_interval != old.self_metrics_interval:
            self.scheduler.every("history.self_metrics", config.self_metrics_interval, self._record_self)

    async def close(self) -> None:
        """Last flush, so a clean stop loses no collected sample."""
        await self.queries.close()
        await self.tsdb.close()
