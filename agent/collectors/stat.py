"""Kernel counters from /proc/stat (boot time, context switches, forks, ...), as node_exporter.

Only the first number of the `intr` line is used: the per-IRQ columns after it can be
thousands of numbers, and splitting them all would dominate this collector's cost.
"""

from __future__ import annotations

from typing import Literal

from agent.collectors.base import Collector, Family, register
from agent.config.schema import CollectorSettings

# /proc/stat key -> (metric name, help, type)
_FIELDS: dict[str, tuple[str, str, Literal["gauge", "counter"]]] = {
    "intr": ("node_intr_total", "Total number of interrupts serviced.", "counter"),
    "ctxt": ("node_context_switches_total", "Total number of context switches.", "counter"),
    "btime": ("node_boot_time_seconds", "Node boot time, in unixtime.", "gauge"),
    "processes": ("node_forks_total", "Total number of forks.", "counter"),
    "procs_running": ("node_procs_running", "Number of processes in runnable state.", "gauge"),
    "procs_blocked": (
        "node_procs_blocked", "Number of processes blocked waiting for I/O to complete.", "gauge",
    ),
}


@register
class StatCollector(Collector):
    name = "stat"

    def collect(self, settings: CollectorSettings) -> list[Family]:
        path, text = self.read_proc("stat")
        values: dict[str, float] = {}
        for line in text.splitlines():
            key, _, rest = line.partition(" ")
            if key in _FIELDS:
                first = rest.lstrip().partition(" ")[0]
                try:
                    values[key] = float(first)
                except ValueError:
                    raise ValueError(f"{path}: bad value for {key}: {first!r}") from None
        missing = [key for key in _FIELDS if key not in values]
        if missing:
            raise ValueError(f"{path}: missing lines {', '.join(missing)}")
        families = []
        for key, (name, help_text, kind) in _FIELDS.items():
            family = Family(name, help_text, kind)
            family.add(values[key])
            families.append(family)
        return families
