"""Host resources for /api/v1/health, read from the collectors' snapshot (no extra host reads)."""

from __future__ import annotations

import os
from typing import Any

from agent.collectors.base import Family
from agent.collectors.runner import CollectorRunner


class HostView:
    def __init__(self, runner: CollectorRunner):
        self.runner = runner
        self._cpu_prev: tuple[float, float] | None = None  # (busy, total) seconds
        self.cpu_usage: float | None = None
        runner.add_hook(self._on_result)

    def _on_result(self, name: str, families: list[Family], _ts: float) -> None:
        if name != "cpu":
            return
        busy = total = 0.0
        for fam in families:
            if fam.name != "node_cpu_seconds_total":
                continue
            mode_at = fam.label_names.index("mode")
            for values, value in fam.samples:
                total += value
                if values[mode_at] not in ("idle", "iowait"):
                    busy += value
        if self._cpu_prev is not None and total > self._cpu_prev[1]:
            self.cpu_usage = round((busy - self._cpu_prev[0]) / (total - self._cpu_prev[1]) * 100, 2)
        self._cpu_prev = (busy, total)

    def resources(self) -> dict[str, Any]:
        v = self.runner.value
        loads = [v("node_load1"), v("node_load5"), v("node_load15")]
        mem_total = v("node_memory_MemTotal_bytes")
        mem_avail = v("node_memory_MemAvailable_bytes")
        memory: dict[str, Any] | None = None
        if mem_total and mem_avail is not None:
            memory = {
                "total_bytes": int(mem_total), "available_bytes": int(mem_avail),
                "used_bytes": int(mem_total - mem_avail),
                "percentage": round((mem_total - mem_avail) / mem_total * 100, 2),
            }
        rx = sum(x for labels, x in self.runner.samples("node_network_receive_bytes_total")
                 if labels.get("device") != "lo")
        tx = sum(x for labels, x in self.runner.samples("node_network_transmit_bytes_total")
                 if labels.get("device") != "lo")
        return {
            "cpu": {
                "usage": self.cpu_usage,
                "cores": os.cpu_count(),
                "load_average": loads if all(x is not None for x in loads) else None,
            },
            "memory": memory,
            "disk": self._disk(),
            "network": {"bytes_in": int(rx), "bytes_out": int(tx)},
        }

    def _disk(self) -> dict[str, Any] | None:
        sizes = {labels["mountpoint"]: (labels, x)
                 for labels, x in self.runner.samples("node_filesystem_size_bytes")}
        if not sizes:
            return None
        mount = "/" if "/" in sizes else max(sizes, key=lambda m: sizes[m][1])
        labels, size = sizes[mount]
        avail = self.runner.value("node_filesystem_avail_bytes", mountpoint=mount) or 0.0
        free = self.runner.value("node_filesystem_free_bytes", mountpoint=mount) or 0.0
        used = size - free
        return {
            "mountpoint": mount, "device": labels.get("device"), "total_bytes": int(size),
            "used_bytes": int(used), "available_bytes": int(avail),
            "percentage": round(used / (used + avail) * 100, 2) if used + avail else None,
        }
