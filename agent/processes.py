"""The process list behind `GET /api/v1/processes`.

Scanning every process is the expensive part (it is what makes Glances burn CPU), so one scan
in a worker thread is shared by every caller within `processes.cache_ttl`, and CPU percent comes
from the difference to the previous scan instead of a blocking sample interval.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import time
from dataclasses import dataclass
from typing import Any

import psutil

_ATTRS = ["pid", "name", "uids", "status", "cpu_times", "memory_info", "cmdline", "create_time"]


@dataclass(slots=True)
class ProcessInfo:
    pid: int
    name: str
    user: str
    status: str
    cpu_percent: float
    memory_percent: float
    rss: int
    cmdline: list[str]
    create_time: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "pid": self.pid, "name": self.name, "user": self.user, "status": self.status,
            "cpu_percent": self.cpu_percent, "memory_percent": self.memory_percent, "rss": self.rss,
            "cmdline": self.cmdline, "create_time": self.create_time,
        }


class ProcessTable:
    def __init__(self, ttl: float = 1.0):
        self.ttl = ttl
        self._taken = 0.0
        self._rows: list[ProcessInfo] = []
        self._prev_cpu: dict[tuple[int, float], float] = {}
        self._prev_at = 0.0
        self._users: dict[int, str] = {}
        self._lock = asyncio.Lock()

    async def snapshot(self) -> tuple[list[ProcessInfo], float]:
        """The process list and the time it was taken (at most `ttl` seconds old)."""
        async with self._lock:
            if time.monotonic() - self._taken >= self.ttl:
                self._rows = await asyncio.to_thread(self._scan)
                self._taken = time.monotonic()
            return self._rows, time.time() - (time.monotonic() - self._taken)

    def _user(self, uid: int) -> str:
        name = self._users.get(uid)
        if name is None:
            try:
                name = pwd.getpwuid(uid).pw_name
            except KeyError:
                name = str(uid)
            self._users[uid] = name
        return name

    def _scan(self) -> list[ProcessInfo]:
        now = time.monotonic()
        wall = time.time()
        elapsed = now - self._prev_at if self._prev_at else 0.0
        total_mem = psutil.virtual_memory().total or 1
        ncpu = os.cpu_count() or 1
        rows: list[ProcessInfo] = []
        cpu_now: dict[tuple[int, float], float] = {}
        for proc in psutil.process_iter(_ATTRS, ad_value=None):
            info = proc.info
            times = info["cpu_times"]
            mem = info["memory_info"]
            key = (info["pid"], info["create_time"] or 0.0)
            used = (times.user + times.system) if times else 0.0
            cpu_now[key] = used
            before = self._prev_cpu.get(key)
            cpu_pct = 0.0
            if before is not None and elapsed > 0:
                cpu_pct = (used - before) / elapsed * 100.0
            elif info["create_time"]:
                cpu_pct = used / max(wall - info["create_time"], 1e-3) * 100.0  # lifetime average, as ps
            cpu_pct = min(max(cpu_pct, 0.0), 100.0 * ncpu)
            rss = mem.rss if mem else 0
            uids = info["uids"]
            rows.append(ProcessInfo(
                pid=info["pid"], name=info["name"] or "", user=self._user(uids.real) if uids else "",
                status=info["status"] or "unknown", cpu_percent=round(cpu_pct, 2),
                memory_percent=round(rss / total_mem * 100.0, 3), rss=rss, cmdline=info["cmdline"] or [],
                create_time=info["create_time"] or 0.0,
            ))
        self._prev_cpu = cpu_now
        self._prev_at = now
        return rows
