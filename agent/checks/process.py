"""`process`: processes found by name, command line or pidfile; how many, and their CPU and memory.

CPU percent is a rate, so it needs two samples: the check keeps its own psutil.Process objects
between runs (keyed by pid and start time, so a reused pid is a new process) and the first run
that sees a process reports its CPU as not measured yet rather than psutil's meaningless 0.0.
The objects are the check's own, not psutil.process_iter's shared cache, so no other user of
psutil in the agent moves the interval the percentage is computed over.

CPU is a percent of one core, summed over the matches (as top shows it): 250 is two and a half
cores busy. Zombies are not counted (they run nothing), nor is Vigil itself.
"""

from __future__ import annotations

import asyncio
import os
import re
from dataclasses import dataclass, field
from typing import Any, Literal

import psutil
from pydantic import Field, model_validator

from agent.checks.base import (
    Check,
    CheckConfig,
    CheckContext,
    CheckResult,
    Perfdata,
    Status,
    grade,
    register,
    thresholds_ordered,
    worst,
)
from agent.checks.perfdata import ByteSize, human_bytes
from agent.config.section import AbsolutePath, Pattern

MAX_PIDS_SHOWN = 20

Key = tuple[int, float]  # pid, create_time


class ProcessConfig(CheckConfig):
    type: Literal["process"]
    process_name: str | None = Field(
        None, min_length=1, description="exact process name, as `ps -e` shows it (`name` is the check's own)"
    )
    cmdline: Pattern | None = Field(None, description="regular expression searched in the space-joined command line")
    pidfile: AbsolutePath | None = Field(None, description="absolute path of a file holding the pid")
    min_count: int = Field(1, ge=0, description="fewer matching processes is CRITICAL")
    max_count: int | None = Field(None, ge=0, description="more matching processes is CRITICAL")
    cpu_warning: float | None = Field(None, ge=0, description="percent of one core, summed over the matches")
    cpu_critical: float | None = Field(None, ge=0)
    memory_warning: ByteSize | None = Field(None, description="resident memory summed over the matches")
    memory_critical: ByteSize | None = None

    @model_validator(mode="after")
    def _valid(self) -> ProcessConfig:
        given = [key for key in ("process_name", "cmdline", "pidfile") if getattr(self, key) is not None]
        if len(given) != 1:
            raise ValueError(
                f"give exactly one of process_name, cmdline or pidfile (got {', '.join(given) or 'none'})")
        if self.max_count is not None and self.max_count < self.min_count:
            raise ValueError(f"max_count ({self.max_count}) must not be below min_count ({self.min_count})")
        thresholds_ordered(self.cpu_warning, self.cpu_critical, "cpu")
        thresholds_ordered(self.memory_warning, self.memory_critical, "memory")
        return self


@dataclass
class Scan:
    """What one look at the process table found (built in a worker thread)."""

    pids: list[int] = field(default_factory=list)
    cpu: float | None = None  # None: no match had a previous sample yet
    cpu_measured: int = 0  # matches whose CPU could be computed
    rss: int = 0
    problem: str | None = None  # pidfile trouble, which makes the check CRITICAL by itself
    denied: int = 0  # matches whose figures the agent may not read


@register
class ProcessCheck(Check):
    type = "process"
    Config = ProcessConfig

    def __init__(self, config: CheckConfig, ctx: CheckContext):
        super().__init__(config, ctx)
        self._procs: dict[Key, psutil.Process] = {}
        cfg = self.config
        assert isinstance(cfg, ProcessConfig)
        self._regex = re.compile(cfg.cmdline) if cfg.cmdline is not None else None

    def _matches(self) -> list[Key]:
        cfg = self.config
        assert isinstance(cfg, ProcessConfig)
        own = os.getpid()
        found: list[Key] = []
        for proc in psutil.process_iter(["name", "cmdline", "create_time", "status"]):
            info = proc.info
            if proc.pid == own or info["status"] == psutil.STATUS_ZOMBIE or info["create_time"] is None:
                continue
            if self._regex is not None:
                matched = self._regex.search(" ".join(info["cmdline"] or [])) is not None
            else:
                matched = info["name"] == cfg.process_name
            if matched:
                found.append((proc.pid, info["create_time"]))
        return found

    def _from_pidfile(self, path: str) -> tuple[list[Key], str | None]:
        try:
            with open(path, encoding="ascii", errors="replace") as fh:
                text = fh.read(64).strip()
        except OSError as exc:
            return [], f"cannot read pidfile {path}: {exc.strerror or exc}"
        if not text.isdigit() or int(text) <= 0:
            return [], f"pidfile {path} does not hold a pid ({text[:20]!r})"
        pid = int(text)
        try:
            proc = psutil.Process(pid)
            if proc.status() == psutil.STATUS_ZOMBIE:
                return [], f"stale pidfile {path}: process {pid} is a zombie"
            return [(pid, proc.create_time())], None
        except psutil.NoSuchProcess:
            return [], f"stale pidfile {path}: process {pid} is not running"
        except psutil.AccessDenied:
            return [(pid, 0.0)], None

    def _scan(self) -> Scan:
        cfg = self.config
        assert isinstance(cfg, ProcessConfig)
        scan = Scan()
        if cfg.pidfile is not None:
            keys, scan.problem = self._from_pidfile(cfg.pidfile)
        else:
            keys = self._matches()
        kept: dict[Key, psutil.Process] = {}
        cpu = 0.0
        for key in keys:
            proc = self._procs.get(key)
            known = proc is not None
            try:
                if proc is None:
                    proc = psutil.Process(key[0])
                    if key[1] and proc.create_time() != key[1]:
                        continue  # the pid was reused between the listing and now
                with proc.oneshot():
                    percent = proc.cpu_percent(None)  # the first call only records a sample
                    rss = proc.memory_info().rss
            except psutil.NoSuchProcess:
                continue
            except psutil.AccessDenied:
                scan.pids.append(key[0])
                scan.denied += 1
                continue
            scan.pids.append(key[0])
            scan.rss += rss
            kept[key] = proc
            if known:
                cpu += percent
                scan.cpu_measured += 1
        self._procs = kept
        scan.cpu = cpu if scan.cpu_measured else None
        return scan

    def _what(self) -> str:
        cfg = self.config
        assert isinstance(cfg, ProcessConfig)
        if cfg.process_name is not None:
            return cfg.process_name
        if cfg.cmdline is not None:
            return f"cmdline /{cfg.cmdline}/"
        return f"pidfile {cfg.pidfile}"

    async def run(self) -> CheckResult:
        cfg = self.config
        assert isinstance(cfg, ProcessConfig)
        scan = await asyncio.to_thread(self._scan)
        count = len(scan.pids)
        details: dict[str, Any] = {"count": count, "pids": scan.pids[:MAX_PIDS_SHOWN], "cpu_percent": scan.cpu,
                                   "cpu_measured": scan.cpu_measured, "rss_bytes": scan.rss}
        if scan.denied:
            details["access_denied"] = scan.denied
        perf = [Perfdata("count", count, "", min=0.0)]
        if scan.problem is not None:
            return CheckResult(Status.CRITICAL, scan.problem, perf, details)
        bounds = f"min {cfg.min_count}" + (f", max {cfg.max_count}" if cfg.max_count is not None else "")
        noun = "process" if count == 1 else "processes"
        parts = [f"{count} {noun} matching {self._what()} ({bounds})"]
        count_status = Status.OK
        if count < cfg.min_count or (cfg.max_count is not None and count > cfg.max_count):
            count_status = Status.CRITICAL
        statuses = [count_status]
        if count:
            if scan.cpu is not None:
                perf.append(Perfdata("cpu", scan.cpu, "%", min=0.0))
                cpu_status = grade(scan.cpu, cfg.cpu_warning, cfg.cpu_critical)
                parts.append(f"CPU {scan.cpu:.1f}%" + _limit(cpu_status, cfg.cpu_warning, cfg.cpu_critical, "%g%%"))
                statuses.append(cpu_status)
            elif cfg.cpu_warning is not None or cfg.cpu_critical is not None:
                parts.append("CPU not measured yet")
            perf.append(Perfdata("rss", float(scan.rss), "B", min=0.0))
            mem_status = grade(scan.rss, cfg.memory_warning, cfg.memory_critical)
            limit = _limit(mem_status, cfg.memory_warning, cfg.memory_critical, "")
            parts.append(f"RSS {human_bytes(scan.rss)}{limit}")
            statuses.append(mem_status)
        return CheckResult(worst(*statuses), ", ".join(parts), perf, details)


def _limit(status: Status, warning: float | None, critical: float | None, fmt: str) -> str:
    """` (critical at 90%)` after a figure that crossed a threshold."""
    if status is Status.OK:
        return ""
    level, value = ("critical", critical) if status is Status.CRITICAL else ("warning", warning)
    assert value is not None
    shown = fmt % value if fmt else human_bytes(value)
    return f" ({level} at {shown})"
