"""node_filefd_allocated and node_filefd_maximum from /proc/sys/fs/file-nr, as node_exporter."""

from __future__ import annotations

from agent.collectors.base import Collector, Family, register
from agent.config.schema import CollectorSettings


@register
class FilefdCollector(Collector):
    name = "filefd"

    def collect(self, settings: CollectorSettings) -> list[Family]:
        path, text = self.read_proc("sys", "fs", "file-nr")
        fields = text.split()
        # file-nr is "allocated  unused(always 0 since 2.6)  maximum".
        if len(fields) != 3:
            raise ValueError(f"{path}: expected 3 fields, got {fields!r}")
        try:
            allocated, maximum = int(fields[0]), int(fields[2])
        except ValueError:
            raise ValueError(f"{path}: non-numeric field in {fields!r}") from None
        alloc = Family("node_filefd_allocated", "File descriptor statistics: allocated.", "gauge")
        alloc.add(allocated)
        maxi = Family("node_filefd_maximum", "File descriptor statistics: maximum.", "gauge")
        maxi.add(maximum)
        return [alloc, maxi]
