"""Block device I/O counters from /proc/diskstats under node_exporter's node_disk_* names.

Sectors are always 512 bytes in this file whatever the device's sector size (the kernel
converts), so bytes are sectors * 512. Kernels add columns over time (discards in 4.18,
flushes in 5.5); a family is only exported when the kernel provides its column.
"""

from __future__ import annotations

import re
from typing import Literal

from agent.collectors.base import Collector, Family, register
from agent.config.schema import CollectorSettings, DiskstatsCollectorConfig

_SECTOR_BYTES = 512
_MS = 1000

# One entry per column after "major minor device", in the kernel's order (Documentation/
# admin-guide/iostats.rst): name after "node_disk_", help, type, multiplier and divisor to base units.
_Column = tuple[str, str, Literal["gauge", "counter"], int, int]
_COLUMNS: tuple[_Column, ...] = (
    ("reads_completed_total", "The total number of reads completed successfully.", "counter", 1, 1),
    ("reads_merged_total", "The total number of reads merged.", "counter", 1, 1),
    ("read_bytes_total", "The total number of bytes read successfully.", "counter", _SECTOR_BYTES, 1),
    ("read_time_seconds_total", "The total number of seconds spent by all reads.", "counter", 1, _MS),
    ("writes_completed_total", "The total number of writes completed successfully.", "counter", 1, 1),
    ("writes_merged_total", "The number of writes merged.", "counter", 1, 1),
    ("written_bytes_total", "The total number of bytes written successfully.", "counter", _SECTOR_BYTES, 1),
    (
        "write_time_seconds_total", "This is the total number of seconds spent by all writes.",
        "counter", 1, _MS,
    ),
    ("io_now", "The number of I/Os currently in progress.", "gauge", 1, 1),
    ("io_time_seconds_total", "Total seconds spent doing I/Os.", "counter", 1, _MS),
    ("io_time_weighted_seconds_total", "The weighted # of seconds spent doing I/Os.", "counter", 1, _MS),
    ("discards_completed_total", "The total number of discards completed successfully.", "counter", 1, 1),
    ("discards_merged_total", "The total number of discards merged.", "counter", 1, 1),
    ("discarded_sectors_total", "The total number of sectors discarded successfully.", "counter", 1, 1),
    (
        "discard_time_seconds_total", "This is the total number of seconds spent by all discards.",
        "counter", 1, _MS,
    ),
    ("flush_requests_total", "The total number of flush requests completed successfully", "counter", 1, 1),
    (
        "flush_requests_time_seconds_total",
        "This is the total number of seconds spent by all flush requests.", "counter", 1, _MS,
    ),
)


@register
class DiskstatsCollector(Collector):
    name = "diskstats"

    def collect(self, settings: CollectorSettings) -> list[Family]:
        if not isinstance(settings, DiskstatsCollectorConfig):
            raise TypeError(f"diskstats needs DiskstatsCollectorConfig, got {type(settings).__name__}")
        exclude = re.compile(settings.device_exclude)
        path, text = self.read_proc("diskstats")
        families = [
            Family(f"node_disk_{name}", help_text, kind, ("device",))
            for name, help_text, kind, _, _ in _COLUMNS
        ]
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
            for family, (_, _, _, mul, div), value in zip(families, _COLUMNS, values, strict=False):
                family.add(value * mul / div, device)
        return [family for family in families if family.samples]
