"""node_cpu_seconds_total and node_cpu_guest_seconds_total from the per-CPU lines of /proc/stat.

Like node_exporter, values are kept monotonic: some kernels let iowait (and, on a few, idle)
tick backwards by a little, which a counter must never do, so a lower reading keeps the last
one. A large drop in idle means the CPU went offline and came back with fresh counters; then
the CPU's values are reset instead of freezing for hours. Guest time is also included in
user/nice by the kernel, and is exported separately, again as node_exporter does.
"""

from __future__ import annotations

import os
import threading

from agent.collectors.base import Collector, CollectorContext, Family, register
from agent.config.schema import CollectorSettings

_USER_HZ = float(os.sysconf("SC_CLK_TCK"))
_MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
_GUEST_MODES = ("user", "nice")
_FIELDS = len(_MODES) + len(_GUEST_MODES)
_IDLE = _MODES.index("idle")
_JUMP_BACK_SECONDS = 3.0


@register
class CpuCollector(Collector):
    name = "cpu"

    def __init__(self, ctx: CollectorContext) -> None:
        super().__init__(ctx)
        self._lock = threading.Lock()
        self._last: dict[str, list[float]] = {}

    def collect(self, settings: CollectorSettings) -> list[Family]:
        path, text = self.read_proc("stat")
        current: dict[str, list[float]] = {}
        for line in text.splitlines():
            if not line.startswith("cpu") or line.startswith("cpu "):
                continue
            parts = line.split()
            cpu = parts[0][3:]
            try:
                ticks = [int(v) for v in parts[1 : _FIELDS + 1]]
            except ValueError:
                raise ValueError(f"{path}: non-numeric field in {line!r}") from None
            if not cpu.isdigit() or len(ticks) < 4:
                raise ValueError(f"{path}: unexpected line {line!r}")
            # Older kernels have fewer columns (no steal/guest); those modes read as 0.
            ticks.extend([0] * (_FIELDS - len(ticks)))
            current[cpu] = [t / _USER_HZ for t in ticks]
        if not current:
            raise ValueError(f"{path}: no per-CPU lines")

        with self._lock:
            stats = self._monotonic(current)

        seconds = Family(
            "node_cpu_seconds_total", "Seconds the CPUs spent in each mode.", "counter", ("cpu", "mode")
        )
        guest = Family(
            "node_cpu_guest_seconds_total",
            "Seconds the CPUs spent in guests (VMs) for each mode.",
            "counter",
            ("cpu", "mode"),
        )
        for cpu, values in stats.items():
            for mode, value in zip(_MODES, values, strict=False):
                seconds.add(value, cpu, mode)
            for mode, value in zip(_GUEST_MODES, values[len(_MODES) :], strict=True):
                guest.add(value, cpu, mode)
        return [seconds, guest]

    def _monotonic(self, current: dict[str, list[float]]) -> dict[str, list[float]]:
        """Merge a reading into the kept values; CPUs that went offline are dropped."""
        merged: dict[str, list[float]] = {}
        for cpu, new in current.items():
            old = self._last.get(cpu)
            if old is None or old[_IDLE] - new[_IDLE] >= _JUMP_BACK_SECONDS:
                merged[cpu] = new
            else:
                merged[cpu] = [max(n, o) for n, o in zip(new, old, strict=True)]
        self._last = merged
        return merged
