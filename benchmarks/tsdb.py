"""Metrics history benchmark: import throughput, bytes per sample, and PromQL latency against Prometheus 2.42.

In one run this script

1. starts Vigil (``vigil run``, a written config, a free loopback port, a fresh state dir) with the
   history's own recording off (``history.enabled: false``: collectors still run and /metrics still
   shows them, but only imported samples go into the history) and the API rate limits raised;
2. takes the ``node_*`` series of Vigil's default collectors from its ``/metrics`` (this host's real
   label sets) and simulates them every 15 s over ``--days`` days ending now: counters grow at the rate
   their current value implies (value / uptime) with a daily cycle and noise, all reset by one reboot
   (with a one-minute gap) 10 h before the end, and a few reset on their own; constant gauges stay
   constant; load averages move with 2 decimals (load5/load15 follow load1 like the kernel's averages);
   memory and filesystem gauges walk slowly in 4 KiB steps; ``node_time_seconds`` follows the clock.
   Each collector gets its own timestamps (a fixed offset plus a few ms of jitter), as Vigil's do.
   ``node_load1`` alone is also simulated for ``--load-days`` (30) days, so a 30-day query has data;
3. imports all of it chronologically through ``POST /api/v1/import`` (oldest first: the node_load1
   backfill, then the collectors' days), in bodies of about ``--request-mb`` MB, and times each request
   (generation is not timed). Samples/s = samples / seconds spent in the requests;
4. waits for the daemon's own maintenance job (``history.maintain``, every 60 s: compaction, rollups,
   retention) to run once after the import, stops Vigil and reports file bytes (vigil.db + -wal) /
   samples imported, used pages / samples, the space per table (sqlite's dbstat) and per tier (chunk
   payload per point), then opens the database in this process with Vigil's own classes (Store + TSDB,
   the daemon's options) for ``TSDB.stats()``, which no route shows, and one more ``maintain()`` to
   check the daemon's run left nothing to do;
   a bulk import followed by one maintenance leaves the pages of five deleted days of raw chunks on
   sqlite's free list, so the same simulation is also lived through in process as a daemon would:
   a TSDB whose clock is the simulated time gets each hour's samples as the hour ends, then runs
   ``maintain()`` (``storage.steady_state``; ``--no-steady-state`` skips it);
5. restarts Vigil over that database, builds Prometheus blocks from the same samples of the two
   queried metrics (OpenMetrics file, ``promtool tsdb create-blocks-from openmetrics`` with 486 h
   blocks, the size a long-running Prometheus compacts to) and starts ``/usr/bin/prometheus`` on
   127.0.0.1 over them; then times ``rate(node_network_receive_bytes_total[5m])`` over 24 h at a 60 s
   step and ``avg_over_time(node_load1[1h])`` over ``--load-days`` at a 1 h step through
   ``/api/v1/query_range`` on both (warm-up, then ``--runs`` runs alternating the two servers over one
   keep-alive connection each), and compares the answers;
6. prints one JSON object to stdout (progress on stderr) and always stops both servers and removes
   its temporary directory (unless ``--keep``).

    .venv/bin/python benchmarks/tsdb.py [--days 7] [--load-days 30] [--runs 20] [--quick] [--keep]

Exit status: 0 when the run completed (targets met or not), 1 when it failed, 2 when vigil, prometheus
or promtool cannot be found.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import itertools
import json
import math
import os
import platform
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from abc import ABC, abstractmethod
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
import yaml
from footprint import REPO, BenchError, Target, command_output, find_vigil, free_port, terminate_on_sigterm
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(REPO))
from tests.promql_compat.dataset import fmt_value  # one spelling of values for both servers

STEP_MS = 15_000
DAY_MS = 86_400_000
HOUR_MS = 3_600_000
RAW_HORIZON_MS = 2 * DAY_MS  # the default raw retention: imports older than this are "backfill"
REBOOT_BEFORE_END_MS = 10 * HOUR_MS  # inside the 24 h of the rate query, so its answer crosses a reset
REBOOT_GAP_MS = 60_000
PROM_BLOCK = "486h"  # the largest block a Prometheus with long retention compacts to (2h * 3^5)
RATE_QUERY = "rate(node_network_receive_bytes_total[5m])"
LOAD_QUERY = "avg_over_time(node_load1[1h])"
TARGETS: dict[str, float] = {
    "import_samples_per_s_min": 100_000.0,
    "bytes_per_sample_max": 3.0,
    "query_ms_max": 50.0,
    "query_vs_prometheus_max_ratio": 3.0,
    "rate_rel_diff_max": 1e-6,
}
MB = 1_000_000


def log(message: str) -> None:
    print(f"[tsdb {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------
# The simulated host


@dataclass(frozen=True)
class SeriesKey:
    """One series as /metrics shows it: family (OpenMetrics name), sample name, type, labels."""

    family: str
    name: str
    type: str
    labels: tuple[tuple[str, str], ...]

    def text(self) -> str:
        if not self.labels:
            return self.name
        inner = ",".join(f'{k}="{escape(v)}"' for k, v in self.labels)
        return f"{self.name}{{{inner}}}"


def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")




def decimals_of(v: float) -> int:
    """Digits after the point in the value's shortest repr (2 for CPU seconds, 0 for byte counts)."""
    if v == int(v):
        return 0
    text = repr(v)
    if "e" in text:
        return 6
    return min(len(text.split(".")[1]), 6)


class Model(ABC):
    """Values of one or more series (that move together) at the given timestamps, chunk after chunk."""

    kind = "model"

    def __init__(self, keys: list[SeriesKey]):
        self.keys = keys

    @abstractmethod
    def values(self, ts: list[int], cycle: list[float]) -> list[list[float]]:
        """One list per series in `keys`; `cycle` is the daily activity factor at each timestamp."""

    def reboot(self, t_ms: int) -> None:  # noqa: B027 (most series do not care)
        """The host restarted at `t_ms`: counters start again from zero."""


class Constant(Model):
    kind = "constant"

    def __init__(self, key: SeriesKey, value: float):
        super().__init__([key])
        self.value = value

    def values(self, ts: list[int], cycle: list[float]) -> list[list[float]]:
        return [[self.value] * len(ts)]


class BootTime(Constant):
    kind = "boot_time"

    def reboot(self, t_ms: int) -> None:
        self.value = float(t_ms // 1000)


class Clock(Model):
    """node_time_seconds: the clock read a moment before the sample's timestamp, full precision."""

    kind = "clock"

    def __init__(self, key: SeriesKey, rng: random.Random):
        super().__init__([key])
        self.rng = rng

    def values(self, ts: list[int], cycle: list[float]) -> list[list[float]]:
        u = self.rng.uniform
        return [[t / 1000 - u(0.00005, 0.002) for t in ts]]


class Counter(Model):
    """Grows at `rate`/s (times the daily cycle and noise), kept in integer units of 10**-decimals
    so values read like the kernel's (CPU ticks / 100), reset by a reboot and maybe once on its own."""

    kind = "counter"

    def __init__(self, key: SeriesKey, rng: random.Random, start: float, rate: float, decimals: int,
                 reset_at: int | None):
        super().__init__([key])
        self.rng = rng
        self.scale = 10**decimals
        self.units = round(start * self.scale)
        self.rate_units = rate * self.scale * STEP_MS / 1000  # per step
        self.reset_at = reset_at
        self.resets = 0

    def values(self, ts: list[int], cycle: list[float]) -> list[list[float]]:
        out: list[float] = []
        rnd = self.rng.random
        per_step, scale, units = self.rate_units, self.scale, self.units
        for t, c in zip(ts, cycle, strict=True):
            if self.reset_at is not None and t >= self.reset_at:
                self.reset_at = None
                units = 0
                self.resets += 1
            if per_step:
                units += int(per_step * c * (0.5 + rnd()) + rnd())
            out.append(units / scale if scale != 1 else float(units))
        self.units = units
        return [out]

    def reboot(self, t_ms: int) -> None:
        self.units = 0
        self.resets += 1


class Walk(Model):
    """A gauge that drifts slowly around its start value in multiples of `quantum` (memory, disk space)."""

    kind = "walk"

    def __init__(self, key: SeriesKey, rng: random.Random, start: float, sigma: float, quantum: float,
                 p_move: float, lo: float = 0.0, hi: float = math.inf):
        super().__init__([key])
        self.rng = rng
        self.center = start
        self.value = start
        self.sigma = sigma
        self.quantum = quantum
        self.p_move = p_move
        self.lo, self.hi = lo, hi

    def values(self, ts: list[int], cycle: list[float]) -> list[list[float]]:
        out: list[float] = []
        rnd, gauss = self.rng.random, self.rng.gauss
        v, q = self.value, self.quantum
        for _ in ts:
            if rnd() < self.p_move:
                v += gauss(0, self.sigma) + (self.center - v) * 0.002
                v = min(self.hi, max(self.lo, round(v / q) * q))
            out.append(float(v))
        self.value = v
        return [out]


class Noisy(Model):
    """A gauge jumping around its mean every sample (running processes, temperatures, disk queue)."""

    kind = "noisy"

    def __init__(self, key: SeriesKey, rng: random.Random, mean: float, sigma: float, decimals: int,
                 lo: float = 0.0):
        super().__init__([key])
        self.rng = rng
        self.mean, self.sigma, self.decimals, self.lo = mean, sigma, decimals, lo
        self.value = mean

    def values(self, ts: list[int], cycle: list[float]) -> list[list[float]]:
        out: list[float] = []
        gauss = self.rng.gauss
        v, m, d = self.value, self.mean, self.decimals
        for c in cycle:
            v = max(self.lo, v + 0.3 * (m * c - v) + gauss(0, self.sigma))
            out.append(float(round(v, d)) if d else float(round(v)))
        self.value = v
        return [out]


class LoadAverage(Model):
    """node_load1/5/15 together: a noisy run-queue length averaged like the kernel does (exponential
    decay over 1, 5 and 15 minutes), 2 decimals as /proc/loadavg prints them."""

    kind = "loadavg"

    def __init__(self, keys: list[SeriesKey], rng: random.Random, mean: float):
        super().__init__(keys)
        self.rng = rng
        self.mean = max(mean, 0.3)
        self.avgs = [self.mean] * 3
        self.decay = [math.exp(-STEP_MS / 1000 / w) for w in (60, 300, 900)]

    def values(self, ts: list[int], cycle: list[float]) -> list[list[float]]:
        outs: list[list[float]] = [[], [], []]
        gauss = self.rng.gauss
        for c in cycle:
            running = max(0.0, self.mean * c + gauss(0, self.mean * 0.8))
            for i in range(3):
                self.avgs[i] = self.avgs[i] * self.decay[i] + running * (1 - self.decay[i])
                outs[i].append(round(self.avgs[i], 2))
        order = {"node_load1": 0, "node_load5": 1, "node_load15": 2}
        return [outs[order[k.name]] for k in self.keys]


# Which collector a family comes from: each collector has its own timestamps in Vigil.
STAT_FAMILIES = {"node_intr", "node_context_switches", "node_boot_time_seconds", "node_forks", "node_procs_running",
                 "node_procs_blocked"}
CONSTANT_MEMORY = ("Total", "CommitLimit", "Hugepagesize", "HugePages_", "DirectMap", "Hugetlb")


def collector_of(family: str) -> str:
    if family in STAT_FAMILIES:
        return "stat"
    part = family.split("_")[1] if family.count("_") else family
    return {"load1": "loadavg", "load5": "loadavg", "load15": "loadavg", "network": "netdev",
            "disk": "diskstats", "memory": "meminfo"}.get(part, part)


@dataclass
class Host:
    """The simulated series set: models grouped by collector, with each collector's timestamp offset."""

    models: dict[str, list[Model]]
    offsets_ms: dict[str, int]
    uptime_s: float

    @property
    def series(self) -> int:
        return sum(len(m.keys) for ms in self.models.values() for m in ms)

    def kinds(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for ms in self.models.values():
            for m in ms:
                out[m.kind] = out.get(m.kind, 0) + len(m.keys)
        return dict(sorted(out.items()))


def model_for(key: SeriesKey, value: float, uptime_s: float, rng: random.Random, reset_window: tuple[int, int],
              ) -> Model:
    """The plausible evolution of one series, from its family and its current value on this host."""
    fam = key.family
    if key.type == "counter":
        rate = max(value, 0.0) / uptime_s
        decimals = decimals_of(value)
        reset_at = rng.randint(*reset_window) if rate > 0 and rng.random() < 0.05 else None
        return Counter(key, rng, value, rate, decimals, reset_at)
    if fam == "node_boot_time_seconds":
        return BootTime(key, value)
    if fam == "node_time_seconds":
        return Clock(key, rng)
    if fam.startswith("node_memory_"):
        if value == 0 or any(part in fam for part in CONSTANT_MEMORY):
            return Constant(key, value)
        return Walk(key, rng, value, sigma=max(value * 0.0005, 4096), quantum=4096, p_move=0.7)
    if fam in ("node_filesystem_avail_bytes", "node_filesystem_free_bytes"):
        return Walk(key, rng, value, sigma=1 << 20, quantum=4096, p_move=0.5)
    if fam == "node_filesystem_files_free":
        return Walk(key, rng, value, sigma=20, quantum=1, p_move=0.5)
    if fam == "node_filefd_allocated":
        return Walk(key, rng, value, sigma=8, quantum=1, p_move=0.8, lo=1)
    if fam == "node_procs_running":
        return Noisy(key, rng, max(value, 1.0), 0.8, 0, lo=1)
    if fam in ("node_procs_blocked", "node_disk_io_now"):
        return Noisy(key, rng, 0.05, 0.3, 0)
    if fam.startswith("node_hwmon_temp"):
        return Noisy(key, rng, value, 0.5, max(decimals_of(value), 1))
    return Constant(key, value)


def discover(metrics_text: str, rng: random.Random, start_ms: int, end_ms: int) -> Host:
    """The node_* series of /metrics turned into models; counters' rates come from value / uptime."""
    fams = [f for f in text_string_to_metric_families(metrics_text) if f.name.startswith("node_")]
    boot = next((s.value for f in fams for s in f.samples if s.name == "node_boot_time_seconds"), None)
    uptime_s = max(time.time() - boot, 600.0) if boot else 86_400.0
    models: dict[str, list[Model]] = {}
    loads: list[tuple[SeriesKey, float]] = []
    for fam in fams:
        for s in fam.samples:
            if s.name.endswith("_created"):
                continue
            key = SeriesKey(fam.name, s.name, fam.type if fam.type in ("counter", "gauge") else "gauge",
                            tuple(sorted(s.labels.items())))
            if s.name in ("node_load1", "node_load5", "node_load15"):
                loads.append((key, float(s.value)))
                continue
            models.setdefault(collector_of(fam.name), []).append(
                model_for(key, float(s.value), uptime_s, rng, (start_ms, end_ms)))
    if loads:
        mean = next((v for k, v in loads if k.name == "node_load1"), 0.5)
        models.setdefault("loadavg", []).append(LoadAverage([k for k, _ in loads], rng, mean))
    offsets = {name: rng.randrange(0, 200) for name in models}
    return Host(models, offsets, uptime_s)


def daily_cycle(ts: list[int]) -> list[float]:
    """Activity over the day: busiest mid-afternoon UTC, quietest at night (1 +/- 0.5)."""
    return [1.0 + 0.5 * math.sin(2 * math.pi * ((t % DAY_MS) / DAY_MS - 0.375)) for t in ts]


@dataclass
class Chunk:
    """One import request: its body and what it holds."""

    body: bytes
    samples: int
    min_ms: int
    max_ms: int
    series: int


@dataclass
class Recorder:
    """Keeps the samples of the queried metrics, to give Prometheus exactly the same."""

    names: set[str]
    series: dict[SeriesKey, list[tuple[int, float]]] = field(default_factory=dict)

    def add(self, key: SeriesKey, ts: list[int], values: list[float]) -> None:
        if key.name in self.names:
            self.series.setdefault(key, []).extend(zip(ts, values, strict=True))


Samples = list[tuple[SeriesKey, list[int], list[float]]]


class Generator:
    """Walks the simulated host through time, one slice of time per call."""

    def __init__(self, host: Host, rng: random.Random, jitter_ms: int, reboot_at: int | None,
                 recorder: Recorder | None = None, openmetrics: bool = False):
        self.host = host
        self.rng = rng
        self.jitter_ms = jitter_ms
        self.reboot_at = reboot_at
        self.recorder = recorder
        self.openmetrics = openmetrics
        self.rebooted: set[str] = set()

    def timestamps(self, collector: str, grid: range) -> list[int]:
        off, j, rnd = self.host.offsets_ms[collector], self.jitter_ms, self.rng.randint
        out = [g + off + (rnd(0, j) if j else 0) for g in grid]
        if self.reboot_at is not None:
            gap_end = self.reboot_at + REBOOT_GAP_MS
            out = [t for t in out if not self.reboot_at <= t < gap_end]
        return out

    def samples(self, start_ms: int, end_ms: int, only: set[str] | None = None) -> Samples:
        """(series, timestamps, values) on the 15 s grid in [start_ms, end_ms); `only`: these sample names."""
        grid = range(start_ms, end_ms, STEP_MS)
        out: Samples = []
        for collector, models in self.host.models.items():
            if only is not None and not any(k.name in only for m in models for k in m.keys):
                continue
            ts = self.timestamps(collector, grid)
            if not ts:
                continue
            split = len(ts)
            if self.reboot_at is not None and collector not in self.rebooted and ts[-1] >= self.reboot_at:
                split = next(i for i, t in enumerate(ts) if t >= self.reboot_at)
                self.rebooted.add(collector)
            parts = [(ts[:split], daily_cycle(ts[:split])), (ts[split:], daily_cycle(ts[split:]))]
            for model in models:
                columns: list[list[float]] = [[] for _ in model.keys]
                for i, (part_ts, cycle) in enumerate(parts):
                    if i == 1 and part_ts and self.reboot_at is not None:
                        model.reboot(self.reboot_at)
                    if part_ts:
                        for col, vals in zip(columns, model.values(part_ts, cycle), strict=True):
                            col.extend(vals)
                for key, vals in zip(model.keys, columns, strict=True):
                    if only is None or key.name in only:
                        if self.recorder is not None:
                            self.recorder.add(key, ts, vals)
                        out.append((key, ts, vals))
        return out

    def chunk(self, start_ms: int, end_ms: int, only: set[str] | None = None) -> Chunk:
        """One import body (Prometheus text or OpenMetrics) of `samples()`."""
        per_family: dict[str, list[str]] = {}
        types: dict[str, str] = {}
        n = 0
        lo, hi = math.inf, -math.inf
        items = self.samples(start_ms, end_ms, only)
        for key, ts, vals in items:
            per_family.setdefault(key.family, []).append(self.lines(key, ts, vals))
            types[key.family] = key.type
            n += len(ts)
            lo, hi = min(lo, ts[0]), max(hi, ts[-1])
        return Chunk(self.render(per_family, types), n, int(lo), int(hi), len(items))

    def lines(self, key: SeriesKey, ts: list[int], values: list[float]) -> str:
        head = key.text()
        if self.openmetrics:
            return "".join(f"{head} {fmt_value(v)} {fmt_ts_seconds(t)}\n" for t, v in zip(ts, values, strict=True))
        return "".join(f"{head} {fmt_value(v)} {t}\n" for t, v in zip(ts, values, strict=True))

    def render(self, per_family: dict[str, list[str]], types: dict[str, str]) -> bytes:
        out: list[str] = []
        for fam, lines in per_family.items():
            if self.openmetrics:
                out.append(f"# TYPE {fam} {types[fam]}\n")
            else:
                name = fam + "_total" if types[fam] == "counter" and not fam.endswith("_total") else fam
                out.append(f"# TYPE {name} {types[fam]}\n")
            out.extend(lines)
        if self.openmetrics:
            out.append("# EOF\n")
        return "".join(out).encode()


def fmt_ts_seconds(t_ms: int) -> str:
    return f"{t_ms // 1000}.{t_ms % 1000:03d}" if t_ms % 1000 else str(t_ms // 1000)


def chunk_plan(host: Host, start_ms: int, end_ms: int, request_bytes: int, only: set[str] | None) -> list[int]:
    """Chunk boundaries on the 15 s grid so each body is about `request_bytes` (~36 bytes of value and
    timestamp per sample on top of the series' text)."""
    per_step = sum(len(k.text()) + 36 for ms in host.models.values() for m in ms for k in m.keys
                   if only is None or k.name in only)
    steps = max(1, request_bytes // max(per_step, 1))
    return [*range(start_ms, end_ms, steps * STEP_MS), end_ms]


# --------------------------------------------------------------------------------------------------
# Talking to the servers


class Client:
    """Sequential requests over one keep-alive HTTP/1.1 connection (reopened when the server closes it)."""

    def __init__(self, name: str, port: int, key: str | None = None, timeout: float = 600):
        self.name = name
        self.port = port
        self.key = key
        self.timeout = timeout
        self.conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, bytes, float]:
        """(status, body, seconds from sending the request to having read the whole answer)."""
        hdrs = dict(headers or {})
        if self.key:
            hdrs["Authorization"] = f"Bearer {self.key}"
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        started = time.perf_counter()
        try:
            self.conn.request(method, path, body=body, headers=hdrs)
            resp = self.conn.getresponse()
            data = resp.read()
        except (http.client.HTTPException, OSError) as exc:
            self.close()
            raise BenchError(f"{method} {path} on {self.name} failed: {type(exc).__name__}: {exc}") from None
        elapsed = time.perf_counter() - started
        if resp.will_close:
            self.close()
        return resp.status, data, elapsed

    def get_json(self, path: str, params: dict[str, str] | None = None) -> tuple[int, Any, float]:
        query = "?" + urllib.parse.urlencode(params) if params else ""
        status, data, elapsed = self.request("GET", path + query)
        try:
            return status, json.loads(data), elapsed
        except ValueError:
            return status, {"raw": data[:300].decode(errors="replace")}, elapsed

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


@dataclass
class Vigil:
    """The daemon under test: its config, state dir and process."""

    root: Path
    vigil_bin: str
    port: int
    target: Target | None = None

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    @property
    def db_path(self) -> Path:
        return self.state_dir / "vigil.db"

    def write_config(self) -> Path:
        """Collectors as shipped; history recording off (only imports go in); no rate limit in the way."""
        unlimited = 10_000_000
        config = {
            "listen": f"127.0.0.1:{self.port}",
            "state_dir": str(self.state_dir),
            "environment": "benchmark",
            "include": [],
            "log": {"level": "warning", "format": "json"},
            "api": {"rate_limit": {"default": unlimited, "categories": {
                c: unlimited for c in ("health", "metrics", "config", "backup", "maintenance", "query")}}},
            "history": {"enabled": False},
        }
        path = self.root / "vigil.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    def start(self, ready_timeout: float, log_name: str = "vigil.log") -> float:
        config = self.write_config()
        self.target = Target("vigil", [self.vigil_bin, "run", "--config", str(config)], self.port, "/readyz",
                             self.root / log_name, REPO)
        self.target.start()
        return self.target.wait_ready(ready_timeout)

    def stop(self) -> None:
        if self.target is not None:
            self.target.stop(timeout=60)

    def key(self) -> str:
        return (self.state_dir / "admin.key").read_text().strip()

    def client(self) -> Client:
        return Client("vigil", self.port, self.key())

    def log_tail(self) -> str:
        return self.target.log_tail() if self.target is not None else ""


def wait_for_collectors(client: Client, timeout: float) -> str:
    """/metrics once the collectors that matter here have run."""
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        status, data, _ = client.request("GET", "/metrics")
        text = data.decode(errors="replace")
        if status == 200 and "\nnode_load1 " in text and "node_network_receive_bytes_total{" in text:
            return text
        time.sleep(0.2)
    raise BenchError(f"Vigil's /metrics has no node_load1 / node_network_receive_bytes_total after {timeout:g}s")


def scheduler_job(metrics_text: str, job: str) -> dict[str, float]:
    """Runs and seconds spent in one of the daemon's scheduled jobs, from its /metrics."""
    out = {"runs": 0.0, "seconds": 0.0}
    for fam in text_string_to_metric_families(metrics_text):
        if fam.name != "vigil_scheduler_job_duration_seconds":
            continue
        for s in fam.samples:
            if s.labels.get("job") != job:
                continue
            if s.name.endswith("_count"):
                out["runs"] = s.value
            elif s.name.endswith("_sum"):
                out["seconds"] = round(s.value, 3)
    return out


# --------------------------------------------------------------------------------------------------
# Phase 1: import


@dataclass
class ImportStats:
    requests: list[dict[str, Any]] = field(default_factory=list)
    generate_seconds: float = 0.0

    def add(self, chunk: Chunk, seconds: float, stored: int, backfill: bool) -> None:
        self.requests.append({"samples": chunk.samples, "stored": stored, "bytes": len(chunk.body),
                              "seconds": seconds, "backfill": backfill, "from": iso_ms(chunk.min_ms),
                              "to": iso_ms(chunk.max_ms), "series": chunk.series})

    def slowest(self, n: int = 3) -> list[dict[str, Any]]:
        """The slowest requests, with their position: a compaction inside an import shows up here."""
        ranked = sorted(enumerate(self.requests), key=lambda ir: -ir[1]["seconds"])[:n]
        return [{"index": i, "ms": round(r["seconds"] * 1000, 1), "samples": r["samples"], "series": r["series"],
                 "from": r["from"], "to": r["to"]} for i, r in ranked]

    def summary(self, which: bool | None = None) -> dict[str, Any]:
        reqs = [r for r in self.requests if which is None or r["backfill"] == which]
        if not reqs:
            return {"requests": 0}
        samples = sum(r["samples"] for r in reqs)
        seconds = sum(r["seconds"] for r in reqs)
        ms = sorted(r["seconds"] * 1000 for r in reqs)
        return {
            "requests": len(reqs),
            "samples": samples,
            "samples_stored": sum(r["stored"] for r in reqs),
            "body_mb_total": round(sum(r["bytes"] for r in reqs) / MB, 2),
            "body_mb_median": round(statistics.median(r["bytes"] for r in reqs) / MB, 3),
            "seconds_in_requests": round(seconds, 3),
            "samples_per_s": round(samples / seconds) if seconds else None,
            "mb_per_s": round(sum(r["bytes"] for r in reqs) / MB / seconds, 2) if seconds else None,
            "request_ms_median": round(statistics.median(ms), 1),
            "request_ms_max": round(ms[-1], 1),
        }


def run_import(client: Client, gen: Generator, plans: list[tuple[list[int], set[str] | None]], now_ms: int,
               openmetrics: bool) -> ImportStats:
    ctype = "application/openmetrics-text; version=1.0.0; charset=utf-8" if openmetrics \
        else "text/plain; version=0.0.4; charset=utf-8"
    stats = ImportStats()
    total = sum(len(bounds) - 1 for bounds, _ in plans)
    done = 0
    last_log = time.monotonic()
    for bounds, only in plans:
        for lo, hi in itertools.pairwise(bounds):
            t0 = time.perf_counter()
            chunk = gen.chunk(lo, hi, only)
            stats.generate_seconds += time.perf_counter() - t0
            if not chunk.samples:
                continue
            status, body, seconds = client.request("POST", "/api/v1/import", chunk.body, {"Content-Type": ctype})
            if status != 200:
                raise BenchError(f"import of {chunk.samples} samples ({len(chunk.body)} bytes, "
                                 f"{iso_ms(chunk.min_ms)}..{iso_ms(chunk.max_ms)}) answered {status}: {body[:500]!r}")
            stored = int(json.loads(body).get("data", {}).get("samples", -1))
            stats.add(chunk, seconds, stored, chunk.max_ms < now_ms - RAW_HORIZON_MS)
            done += 1
            if time.monotonic() - last_log > 15:
                last_log = time.monotonic()
                s = stats.summary()
                log(f"  {done}/{total} requests, {s['samples']:,} samples, {s['samples_per_s']:,}/s in requests")
    return stats


def iso_ms(t_ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t_ms / 1000))


# --------------------------------------------------------------------------------------------------
# Phase 2: space on disk


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def sqlite_space(db_path: Path) -> dict[str, Any]:
    """File sizes, pages in use and the space of each table and index (sqlite's dbstat), read-only."""
    out: dict[str, Any] = {
        "db_bytes": file_size(db_path),
        "wal_bytes": file_size(db_path.with_name(db_path.name + "-wal")),
        "shm_bytes": file_size(db_path.with_name(db_path.name + "-shm")),
    }
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        page_count = conn.execute("PRAGMA page_count").fetchone()[0]
        freelist = conn.execute("PRAGMA freelist_count").fetchone()[0]
        out.update(page_size=page_size, page_count=page_count, freelist_count=freelist,
                   used_bytes=(page_count - freelist) * page_size)
        try:
            rows = conn.execute("SELECT name, SUM(pgsize), SUM(payload), SUM(ncell) FROM dbstat GROUP BY name "
                                "ORDER BY SUM(pgsize) DESC").fetchall()
            out["objects"] = {name: {"bytes": size, "payload_bytes": payload, "cells": cells}
                              for name, size, payload, cells in rows}
        except sqlite3.Error as exc:  # sqlite built without SQLITE_ENABLE_DBSTAT_VTAB
            out["objects"] = {"unavailable": str(exc)}
    finally:
        conn.close()
    return out


def per_sample(space: dict[str, Any], samples: int) -> dict[str, float | None]:
    if not samples:
        return {"file": None, "used": None}
    return {"file": round((space["db_bytes"] + space["wal_bytes"]) / samples, 3),
            "used": round(space["used_bytes"] / samples, 3)}


def wait_for_maintenance(client: Client, runs_before: float, timeout: float) -> dict[str, float]:
    """Poll /metrics until the daemon's maintenance job (every 60 s) has run again; its runs and seconds."""
    deadline = time.monotonic() + timeout
    while True:
        _, data, _ = client.request("GET", "/metrics")
        job = scheduler_job(data.decode(errors="replace"), "history.maintain")
        if job["runs"] > runs_before:
            return job
        if time.monotonic() > deadline:
            raise BenchError(f"the daemon's history.maintain job did not run within {timeout:g}s")
        time.sleep(1.0)


def tier_space(db_path: Path) -> dict[str, Any]:
    """Chunks, points and payload bytes per tier, and the head segments (the TSDB's write-ahead log)."""
    names = {0: "raw", 1: "1m", 2: "1h"}
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        tiers = conn.execute("SELECT tier, COUNT(*), SUM(points), SUM(length(data)) FROM tsdb_chunks "
                             "GROUP BY tier").fetchall()
        seg = conn.execute("SELECT COUNT(*), SUM(samples), SUM(length(data)) FROM tsdb_head_segments").fetchone()
    finally:
        conn.close()
    out: dict[str, Any] = {}
    for tier, chunks, points, size in tiers:
        out[names.get(tier, str(tier))] = {
            "chunks": chunks, "points": points, "data_bytes": size,
            "data_bytes_per_point": round(size / points, 3) if points else None,
        }
    out["head_segments"] = {"segments": seg[0], "samples": seg[1] or 0, "data_bytes": seg[2] or 0}
    return out


async def inspect_in_process(db_path: Path) -> dict[str, Any]:
    """Open the stopped daemon's database with Vigil's own classes and options (Store, TSDB,
    tsdb_options(HistoryConfig())) for `TSDB.stats()`, which no route shows; then one more
    `maintain()` to see whether the daemon's run left anything to do."""
    store_cls, tsdb_cls, options, store_cfg, metrics_cls = open_tsdb_classes()
    metrics = metrics_cls()
    store = store_cls(str(db_path), metrics, store_cfg.synchronous, store_cfg.batch_max)
    await store.open()
    try:
        tsdb = tsdb_cls(store, store.path, options, metrics)
        t0 = time.perf_counter()
        await tsdb.open()
        open_seconds = time.perf_counter() - t0
        before = tsdb_stats(tsdb)
        t0 = time.perf_counter()
        await tsdb.maintain()
        maintain_seconds = time.perf_counter() - t0
        after = tsdb_stats(tsdb)
        await tsdb.close()
    finally:
        await store.close()
    changed = {k: [before.get(k), v] for k, v in after.items()
               if k in ("chunks", "chunk_bytes", "watermarks", "head_samples") and before.get(k) != v}
    return {"open_seconds": round(open_seconds, 3), "stats": before,
            "extra_maintain_seconds": round(maintain_seconds, 3), "extra_maintain_changed": changed}


def open_tsdb_classes() -> tuple[Any, ...]:
    """Vigil's own classes for an in-process TSDB, with the daemon's default options; stdout stays the JSON's."""
    from agent.config.schema import HistoryConfig, StoreConfig
    from agent.history import tsdb_options
    from agent.selfmetrics import SelfMetrics
    from agent.store.db import Store
    from agent.tsdb.db import TSDB

    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    return Store, TSDB, tsdb_options(HistoryConfig()), StoreConfig(), SelfMetrics


async def steady_state(metrics_text: str, args: argparse.Namespace, start_ms: int, end_ms: int,
                       reboot_at: int | None, db_path: Path) -> dict[str, Any]:
    """The same simulation (same series and seed, without the node_load1 backfill) lived through as a
    daemon would: an in-process TSDB whose clock is the simulated time gets each hour's samples as
    that hour ends, then runs maintain(). Retention then frees an hour of raw chunks at a time and
    later writes reuse those pages, which a bulk import followed by one maintenance cannot show."""
    store_cls, tsdb_cls, options, store_cfg, metrics_cls = open_tsdb_classes()
    rng = random.Random(args.seed)
    gen = Generator(discover(metrics_text, rng, start_ms, end_ms), rng, args.jitter_ms, reboot_at)
    now = [start_ms / 1000]
    metrics = metrics_cls()
    store = store_cls(str(db_path), metrics, store_cfg.synchronous, store_cfg.batch_max)
    await store.open()
    labels_of: dict[SeriesKey, tuple[tuple[str, str], ...]] = {}
    samples = 0
    import_seconds = 0.0
    maintain_seconds: list[float] = []
    try:
        tsdb = tsdb_cls(store, store.path, options, metrics, clock=lambda: now[0])
        await tsdb.open()
        for hour in range(start_ms, end_ms + 1, HOUR_MS):
            items = gen.samples(hour, min(hour + HOUR_MS, end_ms + 1))
            series = []
            refs, ts, values = array("I"), array("q"), array("d")
            for i, (key, k_ts, k_values) in enumerate(items):
                labels = labels_of.get(key)
                if labels is None:
                    labels = labels_of[key] = tuple(sorted((("__name__", key.name), *key.labels)))
                series.append(labels)
                refs.extend([i] * len(k_ts))
                ts.extend(k_ts)
                values.extend(k_values)
            now[0] = (min(hour + HOUR_MS, end_ms) + 1000) / 1000
            t0 = time.perf_counter()
            samples += await tsdb.import_batch(series, refs, ts, values)
            import_seconds += time.perf_counter() - t0
            t0 = time.perf_counter()
            await tsdb.maintain()
            maintain_seconds.append(time.perf_counter() - t0)
        stats = tsdb_stats(tsdb)
        await tsdb.close()
    finally:
        await store.close()
    space = sqlite_space(db_path)
    tiers = tier_space(db_path)
    return {
        "samples": samples,
        "bytes_per_sample": per_sample(space, samples),
        "raw_bytes_per_retained_sample": tiers.get("raw", {}).get("data_bytes_per_point"),
        "hours": len(maintain_seconds),
        "import_batch_samples_per_s": round(samples / import_seconds) if import_seconds else None,
        "maintain_seconds": {"total": round(sum(maintain_seconds), 2), "max": round(max(maintain_seconds), 3),
                             "median": round(statistics.median(maintain_seconds), 4)},
        "tiers": tiers,
        "sqlite": space,
        "stats": stats,
    }


def tsdb_stats(tsdb: Any) -> Any:
    return jsonable(tsdb.stats())


def jsonable(value: Any) -> Any:
    if hasattr(value, "__dataclass_fields__"):
        return {k: jsonable(getattr(value, k)) for k in value.__dataclass_fields__}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


# --------------------------------------------------------------------------------------------------
# Phase 3: Prometheus over the same samples


def write_openmetrics(recorder: Recorder, path: Path) -> int:
    """The recorded series as one OpenMetrics file (families and series contiguous); returns samples."""
    by_family: dict[str, list[SeriesKey]] = {}
    for key in recorder.series:
        by_family.setdefault(key.family, []).append(key)
    samples = 0
    with open(path, "w") as out:
        for fam, keys in by_family.items():
            out.write(f"# TYPE {fam} {keys[0].type}\n")
            for key in keys:
                head = key.text()
                points = sorted(recorder.series[key])
                samples += len(points)
                out.writelines(f"{head} {fmt_value(v)} {fmt_ts_seconds(t)}\n" for t, v in points)
        out.write("# EOF\n")
    return samples


def create_blocks(openmetrics_path: Path, data_dir: Path) -> str:
    """promtool's backfill with blocks of PROM_BLOCK: the size a long-running Prometheus compacts 30 days
    into, instead of 2 h blocks it would spend minutes compacting after start (tests.promql_compat.prom.
    create_blocks has no way to pass --max-block-duration)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    promtool = shutil.which("promtool")
    if promtool is None:
        raise FileNotFoundError("promtool not found")
    proc = subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", f"--max-block-duration={PROM_BLOCK}",
         str(openmetrics_path), str(data_dir)],
        capture_output=True, text=True, timeout=600, check=False,
    )
    if proc.returncode != 0:
        raise BenchError(f"promtool exited with {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return proc.stdout


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# --------------------------------------------------------------------------------------------------
# Phase 4: queries


@dataclass
class QuerySpec:
    name: str
    query: str
    start_s: int
    end_s: int
    step_s: int
    exact: bool  # both read raw samples: answers must match to 1e-6

    def params(self) -> dict[str, str]:
        return {"query": self.query, "start": str(self.start_s), "end": str(self.end_s), "step": str(self.step_s)}


def quantile(values: list[float], q: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


def time_queries(clients: list[Client], spec: QuerySpec, warmup: int, runs: int
                 ) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """Latencies (ms) per server, alternating server by server, and each server's last answer."""
    latencies: dict[str, list[float]] = {c.name: [] for c in clients}
    answers: dict[str, Any] = {}
    for i in range(warmup + runs):
        for c in clients:
            status, body, seconds = c.get_json("/api/v1/query_range", spec.params())
            if status != 200 or body.get("status") != "success":
                raise BenchError(f"{spec.query} on {c.name} answered {status}: {json.dumps(body)[:500]}")
            if i >= warmup:
                latencies[c.name].append(seconds * 1000)
            answers[c.name] = body["data"]
    return latencies, answers


def compare(vigil: dict[str, Any], prom: dict[str, Any]) -> dict[str, Any]:
    """Series and points of two matrix answers, and the largest relative difference of matching points."""
    vs = {json.dumps(s["metric"], sort_keys=True): s["values"] for s in vigil["result"]}
    ps = {json.dumps(s["metric"], sort_keys=True): s["values"] for s in prom["result"]}
    worst = 0.0
    worst_at: dict[str, Any] | None = None
    missing_points = 0
    for labels in vs.keys() & ps.keys():
        vp = {t: float(v) for t, v in vs[labels]}
        pp = {t: float(v) for t, v in ps[labels]}
        missing_points += len(vp.keys() ^ pp.keys())
        for t in vp.keys() & pp.keys():
            a, b = vp[t], pp[t]
            if a == b or (math.isnan(a) and math.isnan(b)):
                continue
            rel = abs(a - b) / max(abs(a), abs(b)) if math.isfinite(a) and math.isfinite(b) else math.inf
            if rel > worst:
                worst, worst_at = rel, {"series": json.loads(labels), "t": t, "vigil": a, "prometheus": b}
    return {
        "series_vigil": len(vs), "series_prometheus": len(ps),
        "series_only_vigil": len(vs.keys() - ps.keys()), "series_only_prometheus": len(ps.keys() - vs.keys()),
        "points_vigil": sum(len(v) for v in vs.values()), "points_prometheus": sum(len(v) for v in ps.values()),
        "points_not_in_both": missing_points,
        "max_rel_diff": worst if math.isfinite(worst) else "inf",
        "worst_point": worst_at,
    }


def latency_summary(ms: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(ms), 2), "p90": round(quantile(ms, 0.9), 2),
            "min": round(min(ms), 2), "max": round(max(ms), 2)}


def query_result(spec: QuerySpec, latencies: dict[str, list[float]], answers: dict[str, Any]) -> dict[str, Any]:
    v, p = latency_summary(latencies["vigil"]), latency_summary(latencies["prometheus"])
    agreement = compare(answers["vigil"], answers["prometheus"])
    return {
        "query": spec.query, "start": spec.start_s, "end": spec.end_s, "step_s": spec.step_s,
        "vigil_ms": v, "prometheus_ms": p,
        "ratio_median": round(v["median"] / p["median"], 2) if p["median"] else None,
        "ratio_p90": round(v["p90"] / p["p90"], 2) if p["p90"] else None,
        "agreement": agreement,
    }


# --------------------------------------------------------------------------------------------------
# The run


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--days", type=float, default=None, help="days of the default collectors simulated (default 7)")
    ap.add_argument("--load-days", type=float, default=None,
                    help="days of node_load1 history and span of the avg_over_time query (default 30)")
    ap.add_argument("--runs", type=int, default=None, help="timed runs per query and server (default 20)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed runs per query and server first (default 3)")
    ap.add_argument("--request-mb", type=float, default=4.0, help="size of each import body in MB (default 4)")
    ap.add_argument("--format", choices=("text", "openmetrics"), default="text",
                    help="import bodies in the Prometheus text format (default) or OpenMetrics")
    ap.add_argument("--jitter-ms", type=int, default=10,
                    help="each sample's timestamp is its collector's 15 s tick plus up to this many ms (default 10)")
    ap.add_argument("--seed", type=int, default=1, help="random seed of the simulation (default 1)")
    ap.add_argument("--maintain-timeout", type=float, default=240.0,
                    help="how long to wait for the daemon's next maintenance run after the import (default 240)")
    ap.add_argument("--no-steady-state", dest="steady_state", action="store_false",
                    help="skip the in-process replay of the same days hour by hour (simulated clock)")
    ap.add_argument("--ready-timeout", type=float, default=120.0, help="readiness deadline per server (default 120)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 2 days, 3 days of node_load1, 5 runs after 1 warm-up (defaults only)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (its path is logged)")
    args = ap.parse_args(argv)
    quick = args.quick
    for name, normal, small in (("days", 7.0, 2.0), ("load_days", 30.0, 3.0), ("runs", 20, 5), ("warmup", 3, 1)):
        if getattr(args, name) is None:
            setattr(args, name, small if quick else normal)
    if args.days < 1.05:
        ap.error("--days must be at least 1.05 (the rate query covers the last 24 h plus its 5 m window)")
    if args.load_days < 1 or args.runs < 2 or args.warmup < 0 or args.request_mb <= 0 or args.jitter_ms < 0:
        ap.error("need --load-days >= 1, --runs >= 2, --warmup >= 0, --request-mb > 0, --jitter-ms >= 0")
    return args


@dataclass
class Run:
    args: argparse.Namespace
    tmp: Path
    vigil: Vigil
    taken: set[int]
    prometheus: Any = None
    timings: dict[str, float] = field(default_factory=dict)

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        log(f"{name} ...")
        t0 = time.monotonic()
        yield
        self.timings[name] = round(time.monotonic() - t0, 2)
        log(f"{name}: {self.timings[name]:.1f}s")


def run(args: argparse.Namespace, vigil_bin: str) -> dict[str, Any]:
    from tests.promql_compat.prom import PrometheusError, start_prometheus

    tmp = Path(tempfile.mkdtemp(prefix="vigil-tsdb-bench-"))
    (tmp / "vigil").mkdir()
    taken: set[int] = set()
    r = Run(args, tmp, Vigil(tmp / "vigil", vigil_bin, free_port(taken)), taken)
    log(f"temporary directory {tmp}" + (" (kept)" if args.keep else ""))
    started = time.monotonic()
    try:
        with r.step("start vigil"):
            ready_first = r.vigil.start(args.ready_timeout)
        client = r.vigil.client()
        metrics_text = wait_for_collectors(client, 60)

        now_ms = int(time.time() * 1000)
        end_ms = now_ms // STEP_MS * STEP_MS - STEP_MS
        main_start = end_ms - int(args.days * DAY_MS) // STEP_MS * STEP_MS
        rate_end = end_ms // 60_000 * 60
        load_end = end_ms // HOUR_MS * 3600
        specs = [
            QuerySpec("rate_24h", RATE_QUERY, rate_end - 86_400, rate_end, 60, exact=True),
            QuerySpec("avg_over_time_30d", LOAD_QUERY, load_end - int(args.load_days * 86_400), load_end, 3600,
                      exact=False),
        ]
        load_start = (specs[1].start_s * 1000 - HOUR_MS) // STEP_MS * STEP_MS - STEP_MS
        rng = random.Random(args.seed)
        host = discover(metrics_text, rng, main_start, end_ms)
        reboot_at = end_ms - REBOOT_BEFORE_END_MS + 7_000 if args.days * DAY_MS > REBOOT_BEFORE_END_MS + HOUR_MS \
            else None
        recorder = Recorder({"node_load1", "node_network_receive_bytes_total"})
        gen = Generator(host, rng, args.jitter_ms, reboot_at, recorder, args.format == "openmetrics")
        request_bytes = int(args.request_mb * MB)
        plans: list[tuple[list[int], set[str] | None]] = []
        if load_start < main_start:
            plans.append((chunk_plan(host, load_start, main_start, request_bytes, {"node_load1"}), {"node_load1"}))
        plans.append((chunk_plan(host, main_start, end_ms + 1, request_bytes, None), None))
        log(f"{host.series} node_* series ({host.kinds()}); {args.days:g} days from {iso_ms(main_start)} to "
            f"{iso_ms(end_ms)}, node_load1 from {iso_ms(min(load_start, main_start))}; "
            f"reboot at {iso_ms(reboot_at) if reboot_at else 'none'}")

        maintain_before = scheduler_job(metrics_text, "history.maintain")
        with r.step("import"):
            imported = run_import(client, gen, plans, now_ms, args.format == "openmetrics")
        total = imported.summary()
        if total.get("samples_stored") != total.get("samples"):
            log(f"warning: Vigil stored {total.get('samples_stored')} of {total.get('samples')} samples")
        _, after_text, _ = client.request("GET", "/metrics")
        maintain_at_end = scheduler_job(after_text.decode(errors="replace"), "history.maintain")
        space_import_end = sqlite_space(r.vigil.db_path)
        with r.step("wait for the daemon's maintenance"):
            maintain_done = wait_for_maintenance(client, maintain_at_end["runs"], args.maintain_timeout)
        space_running = sqlite_space(r.vigil.db_path)
        client.close()
        with r.step("stop vigil"):
            r.vigil.stop()
        space = sqlite_space(r.vigil.db_path)
        tiers = tier_space(r.vigil.db_path)
        with r.step("open the database in process"):
            inspected = asyncio.run(inspect_in_process(r.vigil.db_path))
        steady: dict[str, Any] | None = None
        if args.steady_state:
            with r.step("steady state in process"):
                steady = asyncio.run(steady_state(metrics_text, args, main_start, end_ms, reboot_at,
                                                  tmp / "steady" / "vigil.db"))

        with r.step("prometheus blocks"):
            om_path = tmp / "queried.om"
            prom_samples = write_openmetrics(recorder, om_path)
            prom_data = tmp / "prometheus"
            create_blocks(om_path, prom_data)
        with r.step("start prometheus"):
            try:
                r.prometheus = start_prometheus(prom_data, free_port(taken), timeout=args.ready_timeout)
            except PrometheusError as exc:
                raise BenchError(str(exc)) from None
        with r.step("restart vigil"):
            ready_again = r.vigil.start(args.ready_timeout, "vigil-restarted.log")
        queries: dict[str, Any] = {}
        clients = [r.vigil.client(), Client("prometheus", int(r.prometheus.url.rsplit(":", 1)[1]))]
        try:
            for spec in specs:
                with r.step(f"query {spec.name}"):
                    latencies, answers = time_queries(clients, spec, args.warmup, args.runs)
                queries[spec.name] = query_result(spec, latencies, answers)
        finally:
            for c in clients:
                c.close()
        prom_block_bytes = dir_bytes(prom_data)
    except BaseException:
        log(r.vigil.log_tail())
        if r.prometheus is not None:
            log("  prometheus log:\n" + r.prometheus.log()[-2000:])
        raise
    finally:
        r.vigil.stop()
        if r.prometheus is not None:
            r.prometheus.stop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)

    samples = int(total["samples"])
    raw = tiers.get("raw", {})
    storage = {
        "samples_imported": samples,
        "series": host.series,
        "series_models": host.kinds(),
        "bytes_per_sample": per_sample(space, samples),
        "bytes_per_sample_daemon_running": per_sample(space_running, samples),
        "bytes_per_sample_at_import_end": per_sample(space_import_end, samples),
        "raw_tier": {
            "retained_samples": raw.get("points"),
            "data_bytes": raw.get("data_bytes"),
            "bytes_per_retained_sample": raw.get("data_bytes_per_point"),
        },
        "tiers": tiers,
        "sqlite": space,
        "sqlite_daemon_running": {k: v for k, v in space_running.items() if k != "objects"},
        "sqlite_at_import_end": {k: v for k, v in space_import_end.items() if k != "objects"},
        "tsdb": inspected,
        "steady_state": steady,
        "daemon_maintain": {
            "runs_during_import": maintain_at_end["runs"] - maintain_before["runs"],
            "seconds_during_import": round(maintain_at_end["seconds"] - maintain_before["seconds"], 3),
            "seconds_after_import": round(maintain_done["seconds"] - maintain_at_end["seconds"], 3),
        },
    }
    rate, load = queries["rate_24h"], queries["avg_over_time_30d"]
    meets = {
        "import_samples_per_s": (total.get("samples_per_s") or 0) >= TARGETS["import_samples_per_s_min"],
        "bytes_per_sample": (storage["bytes_per_sample"]["file"] or math.inf) <= TARGETS["bytes_per_sample_max"],
        "bytes_per_sample_steady_state": steady is not None
        and (steady["bytes_per_sample"]["file"] or math.inf) <= TARGETS["bytes_per_sample_max"],
        "rate_24h_vigil_ms": rate["vigil_ms"]["median"] <= TARGETS["query_ms_max"],
        "avg_over_time_30d_vigil_ms": load["vigil_ms"]["median"] <= TARGETS["query_ms_max"],
        "rate_24h_vs_prometheus": (rate["ratio_median"] or math.inf) <= TARGETS["query_vs_prometheus_max_ratio"],
        "avg_over_time_30d_vs_prometheus":
            (load["ratio_median"] or math.inf) <= TARGETS["query_vs_prometheus_max_ratio"],
        "rate_24h_agrees": agrees(rate["agreement"], TARGETS["rate_rel_diff_max"]),
    }
    meets["all"] = all(meets.values())
    return {
        "import": {
            "all": total, "backfill_older_than_48h": imported.summary(True), "last_48h": imported.summary(False),
            "slowest_requests": imported.slowest(),
            "format": args.format, "client_generate_seconds": round(imported.generate_seconds, 2),
        },
        "storage": storage,
        "queries": queries,
        "prometheus": {"samples": prom_samples, "block_bytes": prom_block_bytes, "max_block_duration": PROM_BLOCK,
                       "bytes_per_sample": round(prom_block_bytes / prom_samples, 3) if prom_samples else None},
        "targets": TARGETS,
        "meets_targets": meets,
        "params": {
            "days": args.days, "load_days": args.load_days, "runs": args.runs, "warmup": args.warmup,
            "request_mb": args.request_mb, "jitter_ms": args.jitter_ms, "seed": args.seed, "quick": args.quick,
            "step_s": STEP_MS // 1000, "end": iso_ms(end_ms), "reboot_at": iso_ms(reboot_at) if reboot_at else None,
            "vigil_ready_seconds": round(ready_first, 3), "vigil_restart_ready_seconds": round(ready_again, 3),
            "step_seconds": r.timings, "total_seconds": round(time.monotonic() - started, 1),
            "cores": os.cpu_count(), "python": platform.python_version(), "sqlite": sqlite3.sqlite_version,
            "prometheus_version": command_output(["prometheus", "--version"]),
            "vigil_version": command_output([vigil_bin, "version"]),
            "kept_dir": str(tmp) if args.keep else None,
        },
    }


def agrees(agreement: dict[str, Any], tolerance: float) -> bool:
    return (agreement["series_vigil"] == agreement["series_prometheus"] > 0
            and agreement["series_only_vigil"] == 0 and agreement["points_not_in_both"] == 0
            and agreement["points_vigil"] == agreement["points_prometheus"]
            and isinstance(agreement["max_rel_diff"], float) and agreement["max_rel_diff"] <= tolerance)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    vigil_bin = find_vigil()
    missing = [n for n, p in (("vigil", vigil_bin), ("prometheus", shutil.which("prometheus")),
                              ("promtool", shutil.which("promtool"))) if p is None]
    if missing or vigil_bin is None:
        print(f"tsdb: not found: {', '.join(missing)} (run with the project's .venv/bin/python; apt-get install "
              "prometheus for the other two)", file=sys.stderr)
        return 2
    try:
        with terminate_on_sigterm():
            result = run(args, vigil_bin)
    except FileNotFoundError as exc:
        print(f"tsdb: {exc}", file=sys.stderr)
        return 2
    except BenchError as exc:
        print(f"tsdb: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
