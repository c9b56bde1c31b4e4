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
    def __init__(self, ttl: float = 1.0, proc_path: str = "/proc"):
        self.ttl = ttl
        self.proc_path = proc_path
        self._taken = 0.0
        self._rows: list[ProcessInfo] = []
        self._prev_cpu: dict[tuple[int, float], float] = {}
        self._prev_at = 0.0
        self._users: dict[int, str] = {}
        self._lock = asyncio.Lock()
        self.hits = 0  # snapshots answered from the shared scan
        self.misses = 0  # snapshots that scanned

    async def snapshot(self) -> tuple[list[ProcessInfo], float]:
        """The process list and the time it was taken (at most `ttl` seconds old)."""
        async with self._lock:
            if time.monotonic() - self._taken >= self.ttl:
                self.misses += 1
                self._rows = await asyncio.to_thread(self._scan)
                self._taken = time.monotonic()
            else:
                self.hits += 1
            return self._rows, time.time() - (time.monotonic() - self._taken)

    def cached_rows(self) -> list[ProcessInfo]:
        """The shared scan as it is (GET /api/v1/cache sizes it)."""
        return self._rows

    def cached_users(self) -> dict[int, str]:
        return self._users

    def clear_scan(self) -> int:
        """Drop the shared scan (the next caller scans); the CPU baseline stays, so CPU percent does not
        fall back to lifetime averages. Returns the rows dropped."""
        dropped = len(self._rows)
        self._rows, self._taken = [], 0.0
        return dropped

    def clear_users(self) -> int:
        """Forget uid -> user name look-ups (after a user was renamed); returns how many."""
        dropped = len(self._users)
        self._users = {}
        return dropped

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
        """Two reads and a stat per process, straight from /proc: psutil's per-process objects
        cost several times that, which is what makes process lists expensive."""
        now = time.monotonic()
        wall = time.time()
        elapsed = now - self._prev_at if self._prev_at else 0.0
        total_mem = _mem_total(self.proc_path) or 1
        boot = _boot_time(self.proc_path)
        rows: list[ProcessInfo] = []
        cpu_now: dict[tuple[int, float], float] = {}
        for entry in os.scandir(self.proc_path):
            if not entry.name.isdigit():
                continue
            try:
                row = self._read(entry.path, int(entry.name), boot, total_mem, wall, elapsed, cpu_now)
            except (FileNotFoundError, ProcessLookupError, PermissionError, ValueError, IndexError):
                continue  # exited while we looked, or not ours to read
            rows.append(row)
        self._prev_cpu = cpu_now
        self._prev_at = now
        return rows

    def _read(
        self, path: str, pid: int, boot: float, total_mem: int, wall: float, elapsed: float,
        cpu_now: dict[tuple[int, float], float],
    ) -> ProcessInfo:
        with open(path + "/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
        uid = os.stat(path).st_uid
        with open(path + "/cmdline", "rb") as f:
            cmdline = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
        open_paren, close_paren = stat.index("("), stat.rindex(")")
        name = stat[open_paren + 1 : close_paren]
        fields = stat[close_paren + 2 :].split()
        # fields[0] is stat's 3rd column (state): utime/stime are columns 14/15, starttime 22, rss 24.
        used = (int(fields[11]) + int(fields[12])) / _CLK_TCK
        create_time = boot + int(fields[19]) / _CLK_TCK
        rss = int(fields[21]) * _PAGE
        if len(name) == 15 and cmdline:  # comm is cut at 15 characters; ps and psutil use argv[0]
            base = os.path.basename(cmdline[0])
            if base.startswith(name):
                name = base
        key = (pid, create_time)
        cpu_now[key] = used
        before = self._prev_cpu.get(key)
        if before is not None and elapsed > 0:
            cpu_pct = (used - before) / elapsed * 100.0
        else:
            cpu_pct = used / max(wall - create_time, 1e-3) * 100.0  # lifetime average, as ps
        cpu_pct = min(max(cpu_pct, 0.0), 100.0 * _NCPU)
        return ProcessInfo(
            pid=pid, name=name, user=self._user(uid), status=_STATES.get(fields[0], fields[0]),
            cpu_percent=round(cpu_pct, 2), memory_percent=round(rss / total_mem * 100.0, 3), rss=rss,
            cmdline=cmdline, create_time=round(create_time, 2),
        )


_CLK_TCK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")
_NCPU = os.cpu_count() or 1
_STATES = {
    "R": "running", "S": "sleeping", "D": "disk-sleep", "Z": "zombie", "T": "stopped", "t": "tracing-stop",
    "X": "dead", "x": "dead", "K": "wake-kill", "W": "waking", "P": "parked", "I": "idle",
}


def _mem_total(proc_path: str) -> int:
    with open(proc_path + "/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


def _boot_time(proc_path: str) -> float:
    with open(proc_path + "/stat") as f:
        for line in f:
            if line.startswith("btime "):
                return float(line.split()[1])
    return 0.0
