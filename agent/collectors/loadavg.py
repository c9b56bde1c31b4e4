"""node_load1/5/15 from /proc/loadavg, as node_exporter's loadavg collector."""

from __future__ import annotations

from agent.collectors.base import Collector, Family, register
from agent.config.schema import CollectorSettings


@register
class LoadavgCollector(Collector):
    name = "loadavg"

    def collect(self, settings: CollectorSettings) -> list[Family]:
        path, text = self.read_proc("loadavg")
        fields = text.split()
        try:
            loads = [float(v) for v in fields[:3]]
        except ValueError:
            raise ValueError(f"{path}: expected three load averages, got {fields[:3]!r}") from None
        if len(loads) != 3:
            raise ValueError(f"{path}: expected three load averages, got {fields!r}")
        families = []
        for minutes, value in zip((1, 5, 15), loads, strict=True):
            family = Family(f"node_load{minutes}", f"{minutes}m load average.", "gauge")
            family.add(value)
            families.append(family)
        return families
