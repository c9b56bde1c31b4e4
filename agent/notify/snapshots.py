"""Metrics snapshots: every `notifications.metrics.interval`, the current value of each history view as
one `metrics` event on the bus. The dispatcher forwards it like any event, through the outbox, to the
receivers that take events (MQTT publishes it on `…/metrics`); `GET /api/v1/events` shows it too.

A view that cannot be evaluated (a query error, a timeout) is in the snapshot with its `error`, so one
bad expression never hides the others; a view without data has no values.
"""

from __future__ import annotations

import time
from typing import Any

import structlog

from agent.config.schema import ViewConfig
from agent.events import EventBus
from agent.notify.common import json_number
from agent.notify.config import MetricsSnapshotConfig
from agent.promql.values import PromQLError, Scalar, Vector
from agent.queries import QueryService

log = structlog.get_logger("vigil.notify")


class MetricsSnapshots:
    def __init__(self, bus: EventBus, queries: QueryService, hostname: str):
        self.bus = bus
        self.queries = queries
        self.hostname = hostname
        self.config = MetricsSnapshotConfig()
        self.views: dict[str, ViewConfig] = {}

    def configure(self, config: MetricsSnapshotConfig, views: dict[str, ViewConfig]) -> None:
        self.config = config
        self.views = views

    async def publish(self) -> None:
        """One snapshot, at the time it starts."""
        now = time.time()
        t_ms = int(now * 1000)
        names = self.config.views or sorted(self.views)
        metrics: dict[str, Any] = {}
        for name in names:
            view = self.views.get(name)
            if view is None:
                continue  # a reload removed it between validation and now
            entry: dict[str, Any] = {"unit": view.unit}
            try:
                entry["values"] = _values(await self.queries.instant(view.expr, t_ms))
            except PromQLError as exc:
                entry["error"] = str(exc)
                log.warning("metrics_snapshot_view_failed", view=name, error=str(exc))
            metrics[name] = entry
        self.bus.publish("metrics", hostname=self.hostname, at=now, metrics=metrics)


def _values(value: Any) -> list[dict[str, Any]]:
    """A view's value as [{"labels": {...}, "value": v}]; NaN and infinities (not JSON) as strings."""
    if isinstance(value, Scalar):
        return [{"labels": {}, "value": json_number(value.v)}]
    if isinstance(value, list):
        vector: Vector = value
        return [{"labels": {k: v for k, v in s.labels if k != "__name__"}, "value": json_number(s.v)} for s in vector]
    return []
