"""Network interface counters from /proc/net/dev as node_network_{receive,transmit}_<field>_total.

The field names come from the file's own header, as in node_exporter's /proc/net/dev parser,
so every column the kernel reports is exported under the name node_exporter gives it.
"""

from __future__ import annotations

import re

from agent.collectors.base import Collector, Family, register
from agent.config.schema import CollectorSettings, NetdevCollectorConfig


@register
class NetdevCollector(Collector):
    name = "netdev"

    def collect(self, settings: CollectorSettings) -> list[Family]:
        if not isinstance(settings, NetdevCollectorConfig):
            raise TypeError(f"netdev needs NetdevCollectorConfig, got {type(settings).__name__}")
        exclude = re.compile(settings.device_exclude) if settings.device_exclude else None
        path, text = self.read_proc("net", "dev")
        lines = text.splitlines()
        if len(lines) < 2 or lines[1].count("|") != 2:
            raise ValueError(f"{path}: unexpected header {lines[:2]!r}")
        _, receive, transmit = lines[1].split("|")
        keys = [f"receive_{k}" for k in receive.split()] + [f"transmit_{k}" for k in transmit.split()]
        families = [
            Family(f"node_network_{key}_total", f"Network device statistic {key}.", "counter", ("device",))
            for key in keys
        ]
        for line in lines[2:]:
            device, sep, rest = line.partition(":")
            device = device.strip()
            if not sep or not device:
                raise ValueError(f"{path}: unexpected line {line!r}")
            if exclude is not None and exclude.search(device):
                continue
            values = rest.split()
            if len(values) != len(keys):
                raise ValueError(f"{path}: expected {len(keys)} values for {device}, got {len(values)}")
            try:
                for family, value in zip(families, values, strict=True):
                    family.add(int(value), device)
            except ValueError:
                raise ValueError(f"{path}: non-numeric value for {device}: {rest!r}") from None
        return families
