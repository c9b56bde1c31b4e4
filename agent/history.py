"""The metrics history as the daemon runs it: the store, what feeds it, its periodic jobs, its queries.

Config maps onto the TSDB here, and every setting applies on reload: retention and limits take
effect at the next maintenance run, `enabled: false` stops recording (queries and imports go on).
"""

from __future__ import annotations

import time

import structlog

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


class History:
    def __init__(self, store: Store, config: HistoryConfig, metrics: SelfMetrics):
        self.config = config
        self.metrics = metrics
        self.tsdb = TSDB(store, store.path, tsdb_options(config), metrics)
        self.ingest = Ingest(self.tsdb, config.labels)
        self.queries = QueryService(self.tsdb, config.query)

    async def open(self) -> None:
        await self.tsdb.open()

    def start(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        scheduler.every("history.flush", self.config.flush_interval, self.tsdb.flush)
        scheduler.every("history.maintain", MAINTAIN_INTERVAL, self.tsdb.maintain)
        scheduler.every("history.self_metrics", self.config.self_metrics_interval, self._record_self, run_now=True)

    def collector_hook(self, source: str, families: list[Family], timestamp: float) -> None:
        if self.config.enabled:
            self.ingest.collector_snapshot(source, families, timestamp)

    async def _record_self(self) -> None:
        if self.config.enabled:
            self.ingest.registry_snapshot("vigil", self.metrics.registry, time.time())

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
        self.queries.close()
        await self.tsdb.close()
