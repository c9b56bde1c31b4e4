"""node_time_seconds and node_time_zone_offset_seconds, as node_exporter's time collector.

The clock itself is the source, so this collector cannot fail; it exists so that a scrape
shows clock skew between hosts (`node_time_seconds - timestamp(node_time_seconds)`).
"""

from __future__ import annotations

import time

from agent.collectors.base import Collector, Family, register
from agent.config.schema import CollectorSettings


@register
class TimeCollector(Collector):
    name = "time"

    def collect(self, settings: CollectorSettings) -> list[Family]:
        now = time.time()
        local = time.localtime(now)
        seconds = Family("node_time_seconds", "System time in seconds since epoch (1970).", "gauge")
        seconds.add(now)
        offset = Family(
            "node_time_zone_offset_seconds", "System time zone offset in seconds.", "gauge", ("time_zone",)
        )
        offset.add(local.tm_gmtoff, local.tm_zone)
        return [seconds, offset]
