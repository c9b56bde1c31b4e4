"""Block device I/O counters from /proc/diskstats under node_exporter's node_disk_* names.

Sectors are always 512 bytes in this file whatever the device's sector size (the kernel
converts), so bytes are sectors * 512. Kernels add columns over time (discards in 4.18,
flushes in 5.5); a family is only exported when the kernel provides its column.
"""

from __future__ import annotations

import os
import re
from typing import Literal

from agent.collectors.base import Collector, Family, register
from agent.config.schema import CollectorSettings, DiskstatsCollectorConfig

_SECTOR_BYTES = 512.0
_MS = 0.001

# One entry per column after "major minor device", in the kernel's order (Documentation/
# admin-guide/iostats.rst): metric name, help, type, and the factor to base units.
_Column = tuple[str, str, Literal["gauge", "counter"], float]
_COLUMNS: tuple[_Column, ...] = (
    ("node_disk_reads_completed_total", "The total number of reads completed successfully.", "counter", 1.0),
    ("node_disk_reads_merged_total", "The total number of reads merged.", "counter", 1.0),
    ("node_disk_read_bytes_total", "The total number of bytes read successfully.", "counter", _SECTOR_BYTES),
    ("node_disk_read_time_seconds_total", "The total number of seconds spent by all reads.", "counter", _MS),
    (
        "node_disk_writes_completed_total", "The total number of writes completed successfully.", "counter",
        1.0,
    ),
    ("node_disk_writes_merged_total", "The number of writes merged.", "counter", 1.0),
    (
        "node_disk_written_bytes_total", "The total number of bytes written successfully.", "counter",
        _SECTOR_BYTES,
    ),
    (
        "node_disk_write_time_seconds_total", "This is the total number of seconds spent by all writes.",
        "counter", _MS,
    ),
    ("node_disk_io_now", "The number of I/Os currently in progress.", "gauge", 1.0),
    ("node_disk_io_time_seconds_total", "Total seconds spent doing I/Os.", "counter", _MS),
    (
        "node_disk_io_time_weighted_seconds_total", "The weighted # of seconds spent doing I/Os.", "counter",
        _MS,
    ),
    (
        "node_disk_discards_completed_total", "The total number of discards completed successfully.",
        "counter", 1.0,
    ),
    ("node_disk_discards_merged_total", "The total number of discards merged.", "counter", 1.0),
    (
        "node_disk_discarded_sectors_total", "The total number of sectors discarded successfully.",
        "counter", 1.0,
    ),
    (
        "node_disk_discard_time_seconds_total", "This is the total number of seconds spent by all discards.",
        "counter", _MS,
    ),
    (
        "node_disk_flush_requests_total", "The total number of flush requests completed successfully",
        "counter", 1.0,
    ),
    (
        "node_disk_flush_requests_time_seconds_total",
        "This is the total number of seconds spent by all flush requests.", "counter", _MS,
    ),
)


@register
class DiskstatsCollector(Collector):
    name = "diskstats"

    def collect(self, settings: CollectorSettings) -> list[Family]:
        if not isinstance(settings, DiskstatsCollectorConfig):
            raise TypeError(f"diskstats needs DiskstatsCollectorConfig, got {type(settings).__name__}")
        exclude = re.compile(settings.device_exclude)
        path = os.path.join(self.ctx.proc_path, "diskstats")
        with open(path) as f:
            text = f.read()
        families = [Family(name, help_text, kind, ("device",)) for name, help_text, kind, _ in _COLUMNS]
        for line in text.splitlines():
            parts = line.split()
            if not parts:
                continue
            if len(parts) < 14:
                raise ValueError(f"{path}: expected at least 14 fields, got {line!r}")
            device = parts[2]
            if exclude.search(device):
                continue
            try:
                values = [int(v) for v in parts[3 : 3 + len(_COLUMNS)]]
            except ValueError:
                raise ValueError(f"{path}: non-numeric field in {line!r}") from None
            for family, (_, _, _, scale), value in zip(families, _COLUMNS, values, strict=False):
                family.add(value * scale, device)
        return [family for family in families if family.samples]
