"""Space and inode usage per mount (node_filesystem_*), with node_exporter's stuck-mount handling.

statfs on a dead NFS or FUSE mount can block for minutes or forever, and Python cannot cancel
a blocked call. So each statfs runs on a small pool owned by this collector and is waited for
with a deadline; a call still running at the deadline marks its mount *stuck*: later runs
report it as `node_filesystem_device_error 1` without calling statfs on it again, until that
original call returns. Hence a hung mount costs exactly one blocked thread, never one per
scrape, and a run never waits longer than `stat_timeout` however many mounts hang.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

import structlog

from agent.collectors.base import Collector, CollectorContext, Family, register
from agent.config.schema import CollectorSettings, FilesystemCollectorConfig

log = structlog.get_logger("vigil.collectors")

_STAT_WORKERS = 4
"""statfs calls in flight at once in one run; healthy calls take microseconds."""
_MAX_STUCK_THREADS = 16
"""Pool threads that may stay blocked in stuck calls. Past that, new calls queue behind them,
are cancelled at the deadline and reported as errors: the thread count stays bounded."""

_ESCAPE = re.compile(r"\\([0-7]{3})")
_LABELS = ("device", "fstype", "mountpoint")


@dataclass(frozen=True, slots=True)
class _Mount:
    device: str
    fstype: str
    mountpoint: str
    readonly: bool


def _unescape(field: str) -> str:
    """Undo the kernel's octal escapes in /proc/*/mounts (space is \\040, tab \\011, ...)."""
    if "\\" not in field:
        return field
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


def parse_mounts(text: str, source: str) -> list[_Mount]:
    """Mounts in /proc/self/mounts order; a mount point listed twice keeps its last entry,
    since that is the mount statfs on the path actually reaches."""
    mounts: dict[str, _Mount] = {}
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 4:
            raise ValueError(f"{source}: expected at least 4 fields, got {line!r}")
        mountpoint = _unescape(parts[1])
        mounts[mountpoint] = _Mount(
            device=_unescape(parts[0]),
            fstype=parts[2],
            mountpoint=mountpoint,
            readonly="ro" in parts[3].split(","),
        )
    return list(mounts.values())


@register
class FilesystemCollector(Collector):
    name = "filesystem"

    def __init__(self, ctx: CollectorContext) -> None:
        super().__init__(ctx)
        self._statvfs: Callable[[str], os.statvfs_result] = os.statvfs
        self._executor = ThreadPoolExecutor(
            max_workers=_STAT_WORKERS + _MAX_STUCK_THREADS, thread_name_prefix="vigil-statfs"
        )
        self._lock = threading.Lock()  # guards _stuck: completion callbacks run on pool threads
        self._stuck: dict[str, Future[os.statvfs_result]] = {}

    def _read_mounts(self) -> tuple[str, str]:
        """PID 1's mount table, as node_exporter reads it: under systemd's ProtectSystem= or
        ProtectHome=, our own table shows the sandbox's read-only bind mounts, not the host's."""
        for who in ("1", "self"):
            path = os.path.join(self.ctx.proc_path, who, "mounts")
            try:
                with open(path) as f:
                    return path, f.read()
            except (FileNotFoundError, PermissionError):
                continue
        raise FileNotFoundError(f"no readable mount table under {self.ctx.proc_path} (1/mounts, self/mounts)")

    def collect(self, settings: CollectorSettings) -> list[Family]:
        if not isinstance(settings, FilesystemCollectorConfig):
            raise TypeError(f"filesystem needs FilesystemCollectorConfig, got {type(settings).__name__}")
        mount_exclude = re.compile(settings.mount_points_exclude)
        fstype_exclude = re.compile(settings.fs_types_exclude)
        path, text = self._read_mounts()
        mounts = [
            m
            for m in parse_mounts(text, path)
            if not mount_exclude.search(m.mountpoint) and not fstype_exclude.search(m.fstype)
        ]
        results = self._stat_all([m.mountpoint for m in mounts], settings.stat_timeout)

        error = Family(
            "node_filesystem_device_error",
            "Whether an error occurred while getting statistics for the given device.",
            "gauge", _LABELS,
        )
        size = Family("node_filesystem_size_bytes", "Filesystem size in bytes.", "gauge", _LABELS)
        free = Family("node_filesystem_free_bytes", "Filesystem free space in bytes.", "gauge", _LABELS)
        avail = Family(
            "node_filesystem_avail_bytes", "Filesystem space available to non-root users in bytes.",
            "gauge", _LABELS,
        )
        files = Family("node_filesystem_files", "Filesystem total file nodes.", "gauge", _LABELS)
        files_free = Family(
            "node_filesystem_files_free", "Filesystem total free file nodes.", "gauge", _LABELS
        )
        readonly = Family("node_filesystem_readonly", "Filesystem read-only status.", "gauge", _LABELS)
        for mount in mounts:
            labels = (mount.device, mount.fstype, mount.mountpoint)
            st = results.get(mount.mountpoint)
            error.add(0 if st is not None else 1, *labels)
            if st is None:
                continue
            # f_blocks counts f_frsize units (POSIX), as df computes it.
            size.add(st.f_blocks * st.f_frsize, *labels)
            free.add(st.f_bfree * st.f_frsize, *labels)
            avail.add(st.f_bavail * st.f_frsize, *labels)
            files.add(st.f_files, *labels)
            files_free.add(st.f_ffree, *labels)
            readonly.add(1 if mount.readonly else 0, *labels)
        return [size, free, avail, files, files_free, readonly, error]

    def _stat_all(self, mountpoints: list[str], timeout: float) -> dict[str, os.statvfs_result]:
        """statfs results by mount point; a mount that is missing got an error, is stuck, or
        did not get its turn before the deadline."""
        deadline = time.monotonic() + timeout
        with self._lock:
            queue = deque(mp for mp in mountpoints if mp not in self._stuck)
        results: dict[str, os.statvfs_result] = {}
        in_flight: dict[Future[os.statvfs_result], str] = {}
        while queue or in_flight:
            while queue and len(in_flight) < _STAT_WORKERS:
                mountpoint = queue.popleft()
                in_flight[self._executor.submit(self._statvfs, mountpoint)] = mountpoint
            left = max(deadline - time.monotonic(), 0.0)
            done, _ = wait(in_flight, timeout=left, return_when=FIRST_COMPLETED)
            if not done:
                break
            for future in done:
                self._take(in_flight.pop(future), future, results)
        for future, mountpoint in in_flight.items():
            if future.cancel():
                continue  # queued behind stuck calls and never started: nothing is blocked
            if future.done():
                self._take(mountpoint, future, results)
            else:
                self._mark_stuck(mountpoint, future)
        return results

    @staticmethod
    def _take(
        mountpoint: str, future: Future[os.statvfs_result], results: dict[str, os.statvfs_result]
    ) -> None:
        exc = future.exception()
        if exc is None:
            results[mountpoint] = future.result()
        else:
            log.debug("filesystem_statfs_failed", mountpoint=mountpoint, error=str(exc))

    def _mark_stuck(self, mountpoint: str, future: Future[os.statvfs_result]) -> None:
        with self._lock:
            self._stuck[mountpoint] = future
            self.ctx.metrics.stuck_mounts.set(len(self._stuck))
        log.warning("filesystem_mount_stuck", mountpoint=mountpoint)
        future.add_done_callback(lambda f: self._unstick(mountpoint, f))

    def _unstick(self, mountpoint: str, future: Future[os.statvfs_result]) -> None:
        with self._lock:
            if self._stuck.get(mountpoint) is not future:
                return
            del self._stuck[mountpoint]
            self.ctx.metrics.stuck_mounts.set(len(self._stuck))
        log.info("filesystem_mount_recovered", mountpoint=mountpoint)

    def close(self) -> None:
        """Stop the pool without waiting: a thread blocked in a stuck statfs cannot be joined."""
        self._executor.shutdown(wait=False, cancel_futures=True)
