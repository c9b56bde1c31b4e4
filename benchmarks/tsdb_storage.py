"""Metrics history storage (agent/tsdb): codec speed and size, import throughput, bytes per sample
after a simulated week of node_exporter-like collection, and select() latency. Prints JSON.

    .venv/bin/python benchmarks/tsdb_storage.py [--days 7] [--import-days 2] [--journal-size-limit BYTES]

Everything runs in-process against a real Store on a temporary SQLite file (synchronous=FULL, as
the daemon opens it); simulated time comes from the TSDB's clock, so a week takes a few minutes.
- codec: per kind of series, bytes per sample and encode/decode µs per sample for one-hour raw
  chunks (240 samples at 15 s) and for one-day 1m-rollup chunks (bytes per *raw* sample covered).
- import: `import_batch` throughput for recent samples (the open block: head + WAL) and for a
  historical backfill (closed blocks: compaction into chunks and rollups included).
- simulation: ~370 series in 20 collectors at 15 s for `--days` days, `append_many` per collector
  snapshot, `flush()` and `maintain()` every simulated minute as the daemon does; then database
  file size / samples appended, while running (main file + -wal) and after close (main file: the
  -wal is checkpointed into it), and the per-tier chunk bytes.
- queries: select() for 3 series over 24 h (raw) and 3 series over 30 d (1m rollups, after a 30-day
  backfill), cold (empty decoded-chunk cache) and warm.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from abc import ABC, abstractmethod
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.promql.ast import Matcher, MatchType
from agent.promql.values import Labels
from agent.selfmetrics import SelfMetrics
from agent.store import Store
from agent.tsdb import TSDB, TSDBOptions
from agent.tsdb.encoding import decode_chunk, encode_chunk
from agent.tsdb.rollup import BUCKET_1M, summarize

STEP_MS = 15_000
DAY_MS = 86_400_000
START_MS = 1_735_689_600_000  # 2025-01-01T00:00Z


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- series models -------------------------------------------------------------------------------


class Model(ABC):
    """A value stream; `next()` is called once per 15 s step."""

    def __init__(self, rng: random.Random):
        self.rng = rng

    @abstractmethod
    def next(self) -> float:
        """The value at the next step."""


class Const(Model):
    def __init__(self, rng: random.Random, value: float):
        super().__init__(rng)
        self.value = value

    def next(self) -> float:
        return self.value


class Counter(Model):
    """A counter of integer units shown as units / scale (ticks/100, ms/1000, bytes/1): increments
    are Gaussian around `rate` units per step, or Poisson-like when the rate is small."""

    def __init__(self, rng: random.Random, rate: float, scale: int = 1, start: int | None = None, unit: int = 1):
        super().__init__(rng)
        self.rate = rate
        self.scale = scale
        self.unit = unit
        self.units = start if start is not None else rng.randint(10**4, 10**9)

    def next(self) -> float:
        r = self.rng
        if self.rate < 5:
            inc = sum(1 for _ in range(int(self.rate * 2) + 1) if r.random() < self.rate / (int(self.rate * 2) + 1))
        else:
            inc = max(0, int(r.gauss(self.rate, self.rate * 0.2)))
        self.units += inc * self.unit
        return self.units / self.scale if self.scale != 1 else float(self.units)


class Gauge(Model):
    """A mean-reverting random walk rounded to `decimals` (or to multiples of `unit`)."""

    def __init__(self, rng: random.Random, mean: float, sigma: float, decimals: int = 0, unit: int = 1, p: float = 1.0):
        super().__init__(rng)
        self.mean, self.sigma, self.decimals, self.unit, self.p = mean, sigma, decimals, unit, p
        self.x = mean

    def next(self) -> float:
        if self.rng.random() < self.p:
            self.x = max(0.0, self.x + self.rng.gauss(0, self.sigma) + (self.mean - self.x) * 0.05)
        if self.decimals:
            return round(self.x * 10**self.decimals) / 10**self.decimals
        return float(int(self.x / self.unit) * self.unit)


class Noise(Model):
    """Full-precision floats (durations, clock offsets): the incompressible worst case."""

    def __init__(self, rng: random.Random, scale: float):
        super().__init__(rng)
        self.scale = scale

    def next(self) -> float:
        return self.rng.expovariate(1 / self.scale)


class Clock(Model):
    """node_time_seconds-like: wall time with sub-ms jitter."""

    def __init__(self, rng: random.Random, start_s: float):
        super().__init__(rng)
        self.t = start_s

    def next(self) -> float:
        self.t += 15.0
        return self.t + self.rng.random() * 0.005


@dataclass
class Series:
    labels: Labels
    model: Model


def node_like(rng: random.Random) -> dict[str, list[Series]]:
    """~370 series shaped like node_exporter's default collectors plus an agent's own metrics."""
    collectors: dict[str, list[Series]] = {}

    def add(group: str, name: str, model: Model, **labels: str) -> None:
        collectors.setdefault(group, []).append(Series(tuple(sorted({"__name__": name, **labels}.items())), model))

    for cpu in range(4):
        busy = rng.uniform(0.02, 0.3)
        for mode, rate in [("user", busy * 0.7), ("system", busy * 0.25), ("idle", 1 - busy), ("iowait", 0.003),
                           ("irq", 0.0), ("softirq", 0.004), ("steal", 0.0), ("nice", 0.0)]:
            model = Counter(rng, rate * 1500, scale=100) if rate else Const(rng, 0.0)
            add("cpu", "node_cpu_seconds_total", model, cpu=str(cpu), mode=mode)
        for mode in ("user", "nice"):
            add("cpu", "node_cpu_guest_seconds_total", Const(rng, 0.0), cpu=str(cpu), mode=mode)
    total = 16 * 2**30
    for i in range(15):
        add("meminfo", f"node_memory_Const{i}_bytes", Const(rng, float(rng.choice([total, 0, 2**31, 4096 * 512]))))
    for i in range(15):
        add("meminfo", f"node_memory_Busy{i}_bytes", Gauge(rng, rng.uniform(1e8, 8e9), 2e6, unit=1024))
    for i in range(10):
        add("meminfo", f"node_memory_Slow{i}_bytes", Gauge(rng, rng.uniform(1e6, 1e9), 1e5, unit=4096, p=0.05))
    for minutes, sigma in ((1, 0.08), (5, 0.03), (15, 0.01)):
        add("loadavg", f"node_load{minutes}", Gauge(rng, 0.8, sigma, decimals=2))
    for device, scale in (("eth0", 1.0), ("lo", 0.2), ("docker0", 0.05)):
        for direction in ("receive", "transmit"):
            add("netdev", f"node_network_{direction}_bytes_total", Counter(rng, 2e5 * scale), device=device)
            add("netdev", f"node_network_{direction}_packets_total", Counter(rng, 300 * scale), device=device)
            for metric in ("errs", "drop", "fifo", "frame", "compressed", "multicast"):
                add("netdev", f"node_network_{direction}_{metric}_total", Const(rng, 0.0), device=device)
        for metric in ("carrier", "mtu_bytes", "speed_bytes", "up", "info", "flags", "address_assign_type", "dormant"):
            value = float(rng.choice([1, 1500, 125000000]))
            add("netclass", f"node_network_{metric}", Const(rng, value), device=device)
    for device in ("sda", "nvme0n1"):
        add("diskstats", "node_disk_reads_completed_total", Counter(rng, 20), device=device)
        add("diskstats", "node_disk_writes_completed_total", Counter(rng, 60), device=device)
        add("diskstats", "node_disk_read_bytes_total", Counter(rng, 20 * 8, unit=512), device=device)
        add("diskstats", "node_disk_written_bytes_total", Counter(rng, 60 * 16, unit=512), device=device)
        for metric in ("read_time", "write_time", "io_time", "io_time_weighted", "discard_time"):
            add("diskstats", f"node_disk_{metric}_seconds_total", Counter(rng, 40, scale=1000), device=device)
        for metric in ("reads_merged", "writes_merged"):
            add("diskstats", f"node_disk_{metric}_total", Counter(rng, 3), device=device)
        for metric in ("discards_completed", "discards_merged", "discarded_sectors", "flush_requests"):
            add("diskstats", f"node_disk_{metric}_total", Const(rng, 0.0), device=device)
        add("diskstats", "node_disk_io_now", Gauge(rng, 0.2, 0.5), device=device)
        add("diskstats", "node_disk_info", Const(rng, 1.0), device=device)
    for mount in ("/", "/boot", "/home", "/var", "/run", "/tmp"):
        size = rng.choice([2**30, 50 * 2**30, 500 * 2**30])
        add("filesystem", "node_filesystem_size_bytes", Const(rng, float(size)), mountpoint=mount)
        add("filesystem", "node_filesystem_free_bytes", Gauge(rng, size * 0.4, size * 1e-5, unit=4096, p=0.1),
            mountpoint=mount)
        add("filesystem", "node_filesystem_avail_bytes", Gauge(rng, size * 0.35, size * 1e-5, unit=4096, p=0.1),
            mountpoint=mount)
        add("filesystem", "node_filesystem_files", Const(rng, float(size // 2**14)), mountpoint=mount)
        add("filesystem", "node_filesystem_files_free", Gauge(rng, size // 2**15, 20, p=0.1), mountpoint=mount)
        add("filesystem", "node_filesystem_readonly", Const(rng, 0.0), mountpoint=mount)
        add("filesystem", "node_filesystem_device_error", Const(rng, 0.0), mountpoint=mount)
    add("stat", "node_context_switches_total", Counter(rng, 30000))
    add("stat", "node_intr_total", Counter(rng, 20000))
    add("stat", "node_forks_total", Counter(rng, 40))
    add("stat", "node_procs_running", Gauge(rng, 2, 1))
    add("stat", "node_procs_blocked", Gauge(rng, 0.1, 0.3))
    add("stat", "node_boot_time_seconds", Const(rng, 1_735_000_000.0))
    for i in range(12):
        add("vmstat", f"node_vmstat_m{i}", Counter(rng, rng.choice([0.01, 5, 500, 20000])) if i < 8 else Const(rng, 0))
    for i in range(30):
        kind = i % 3
        model = Counter(rng, rng.choice([0.05, 2, 300])) if kind == 0 else Const(rng, 0.0) if kind == 1 else Gauge(
            rng, rng.randint(1, 200), 2, p=0.3)
        add("netstat", f"node_netstat_m{i}", model)
    for i in range(12):
        add("sockstat", f"node_sockstat_m{i}", Gauge(rng, rng.randint(1, 500), 3, p=0.3))
    add("filefd", "node_filefd_allocated", Gauge(rng, 3000, 20))
    add("filefd", "node_filefd_maximum", Const(rng, 9.2e18))
    for chip in range(4):
        temp = Gauge(rng, 45, 0.5, decimals=3)
        add("hwmon", "node_hwmon_temp_celsius", temp, chip=f"platform_{chip}", sensor="temp1")
    add("time", "node_time_seconds", Clock(rng, START_MS / 1000))
    for i in range(10):
        add("time", f"node_timex_m{i}", Noise(rng, 1e-4) if i < 3 else Const(rng, float(i)))
    add("uname", "node_uname_info", Const(rng, 1.0), release="6.1.0", machine="x86_64")
    for cpu in range(4):
        add("softnet", "node_softnet_processed_total", Counter(rng, 500), cpu=str(cpu))
        add("softnet", "node_softnet_dropped_total", Const(rng, 0.0), cpu=str(cpu))
        add("softnet", "node_softnet_times_squeezed_total", Counter(rng, 0.05), cpu=str(cpu))
    for resource in ("cpu", "io", "memory"):
        add("pressure", f"node_pressure_{resource}_waiting_seconds_total", Counter(rng, 2000, scale=10**6))
    add("self", "process_cpu_seconds_total", Counter(rng, 3, scale=100))
    add("self", "process_resident_memory_bytes", Gauge(rng, 4e7, 2e5, unit=4096))
    add("self", "process_open_fds", Gauge(rng, 20, 1, p=0.2))
    add("self", "process_start_time_seconds", Const(rng, 1_735_600_000.12))
    for name in ("cpu", "meminfo", "loadavg", "netdev", "diskstats", "filesystem", "stat", "hwmon", "time", "uname",
                 "filefd", "vmstat", "netstat"):
        add("self", "vigil_collector_duration_seconds", Noise(rng, 0.002), collector=name)
        add("self", "vigil_collector_success", Const(rng, 1.0), collector=name)
    return collectors


# --- codec ---------------------------------------------------------------------------------------

CODEC_KINDS: dict[str, Callable[[random.Random], Model]] = {
    "constant_gauge": lambda r: Const(r, 8.0 * 2**30),
    "slow_counter": lambda r: Counter(r, 0.5),
    "cpu_seconds_counter": lambda r: Counter(r, 1400, scale=100),
    "bytes_counter": lambda r: Counter(r, 2e5),
    "noisy_gauge_2dp": lambda r: Gauge(r, 0.8, 0.08, decimals=2),
    "memory_bytes_gauge": lambda r: Gauge(r, 4e9, 2e6, unit=1024),
    "random_floats": lambda r: Noise(r, 0.01),
}


def jittered_ts(rng: random.Random, n: int, start: int = START_MS, step: int = STEP_MS) -> array:
    return array("q", [start + i * step + rng.randint(0, 20) for i in range(n)])


def timed(fn: Callable[[], object], repeat: int) -> float:
    best = math.inf
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(repeat):
            fn()
        best = min(best, (time.perf_counter() - started) / repeat)
    return best


def bench_codec() -> dict[str, dict[str, float]]:
    out = {}
    for kind, make in CODEC_KINDS.items():
        rng = random.Random(kind)
        model = make(rng)
        day = 5760
        ts = jittered_ts(rng, day)
        values = array("d", [model.next() for _ in range(day)])
        raw_blobs = [encode_chunk(ts[h * 240 : (h + 1) * 240], [values[h * 240 : (h + 1) * 240]]) for h in range(24)]
        hour_ts, hour_values = ts[:240], values[:240]
        enc = timed(lambda t=hour_ts, v=hour_values: encode_chunk(t, [v]), 30) / 240
        dec = timed(lambda blob=raw_blobs[0]: decode_chunk(blob), 100) / 240
        rollup = summarize(ts, values, BUCKET_1M)
        r_blob = encode_chunk(rollup.ts, rollup.columns(), decimal=False)
        r_dec = timed(lambda blob=r_blob: decode_chunk(blob), 20) / len(rollup)
        out[kind] = {
            "raw_bytes_per_sample": round(sum(map(len, raw_blobs)) / day, 3),
            "raw_encode_us_per_sample": round(enc * 1e6, 3),
            "raw_decode_us_per_sample": round(dec * 1e6, 3),
            "rollup_1m_bytes_per_raw_sample": round(len(r_blob) / day, 3),
            "rollup_1m_decode_us_per_point": round(r_dec * 1e6, 3),
        }
    return out


# --- store helpers -------------------------------------------------------------------------------


class SimClock:
    def __init__(self, ms: int):
        self.ms = ms

    def __call__(self) -> float:
        return self.ms / 1000


async def open_tsdb(path: Path, clock: SimClock, options: TSDBOptions | None = None) -> tuple[Store, TSDB]:
    store = Store(str(path), SelfMetrics())
    await store.open()
    tsdb = TSDB(store, str(path), options or TSDBOptions(), clock=clock)
    await tsdb.open()
    return store, tsdb


def disk_bytes(path: Path) -> int:
    return sum(os.path.getsize(p) for p in (str(path), f"{path}-wal") if os.path.exists(p))


def history(rng: random.Random, collectors: dict[str, list[Series]], start: int, steps: int) -> tuple[
        list[Labels], array, array, array]:
    """Columns (as textparse.ParsedBatch gives them) for `steps` snapshots of every series."""
    series = [s for group in collectors.values() for s in group]
    refs, ts, values = array("q"), array("q"), array("d")
    for step in range(steps):
        t = start + step * STEP_MS + rng.randint(0, 20)
        for ref, s in enumerate(series):
            refs.append(ref)
            ts.append(t)
            values.append(s.model.next())
    return [s.labels for s in series], refs, ts, values


async def bench_import(tmp: Path, days: float) -> dict[str, float]:
    rng = random.Random(3)
    collectors = node_like(rng)
    out: dict[str, float] = {}
    # Recent: one hour of samples in the open block (head + WAL), in 10 000-sample requests.
    now = START_MS + 10 * DAY_MS
    clock = SimClock(now + 3_600_000)
    store, tsdb = await open_tsdb(tmp / "import-recent.db", clock)
    labels, refs, ts, values = history(rng, collectors, now, 240)
    batch = 10_000
    started = time.perf_counter()
    for i in range(0, len(ts), batch):
        await tsdb.import_batch(labels, refs[i : i + batch], ts[i : i + batch], values[i : i + batch])
    elapsed = time.perf_counter() - started
    out["recent_samples"] = len(ts)
    out["recent_samples_per_s"] = round(len(ts) / elapsed)
    await tsdb.close()
    await store.close()
    # Backfill: `days` of history into closed blocks, compaction and rollups included.
    clock = SimClock(now)
    store, tsdb = await open_tsdb(tmp / "import-backfill.db", clock)
    labels, refs, ts, values = history(rng, collectors, now - int(days * DAY_MS), int(days * 5760))
    started = time.perf_counter()
    for i in range(0, len(ts), batch):
        await tsdb.import_batch(labels, refs[i : i + batch], ts[i : i + batch], values[i : i + batch])
    imported = time.perf_counter() - started
    await tsdb.maintain()
    elapsed = time.perf_counter() - started
    out["backfill_samples"] = len(ts)
    out["backfill_import_calls_samples_per_s"] = round(len(ts) / imported)
    out["backfill_with_final_maintain_samples_per_s"] = round(len(ts) / elapsed)
    await tsdb.close()
    await store.close()
    return out


async def bench_simulation(tmp: Path, days: float, journal_size_limit: int | None) -> dict[str, object]:
    rng = random.Random(7)
    collectors = node_like(rng)
    groups = list(collectors.values())
    path = tmp / "sim.db"
    clock = SimClock(START_MS)
    store, tsdb = await open_tsdb(path, clock)
    if journal_size_limit is not None:  # what the Store would set in its pragmas
        await store.write(lambda db: db.execute(f"PRAGMA journal_size_limit={journal_size_limit}"))
    steps = int(days * 5760)
    flush_s = maintain_s = append_s = 0.0
    maintain_max = 0.0
    started = time.perf_counter()
    for step in range(steps):
        t = START_MS + step * STEP_MS
        clock.ms = t + 50
        for group in groups:
            snapshot = [(s.labels, s.model.next()) for s in group]
            a = time.perf_counter()
            tsdb.append_many(snapshot, t + rng.randint(0, 30))
            append_s += time.perf_counter() - a
        if step % 4 == 3:
            a = time.perf_counter()
            await tsdb.flush()
            b = time.perf_counter()
            await tsdb.maintain()
            c = time.perf_counter()
            flush_s += b - a
            maintain_s += c - b
            maintain_max = max(maintain_max, c - b)
        if step % 5760 == 5759:
            log(f"  day {(step + 1) // 5760}: {disk_bytes(path) / 1e6:.1f} MB")
    elapsed = time.perf_counter() - started
    stats = tsdb.stats()
    live = disk_bytes(path)
    await tsdb.close()
    await store.close()
    size = disk_bytes(path)
    samples = stats["samples_appended_total"]
    return {
        "series": stats["series"],
        "days": days,
        "samples": samples,
        "db_bytes_running": live,
        "bytes_per_sample_running": round(live / samples, 3),
        "db_bytes_closed": size,
        "bytes_per_sample_closed": round(size / samples, 3),
        "chunk_bytes": stats["chunk_bytes"],
        "chunk_bytes_per_sample": round(sum(stats["chunk_bytes"].values()) / samples, 3),
        "chunks": stats["chunks"],
        "wall_seconds": round(elapsed, 1),
        "append_many_us_per_sample": round(append_s / samples * 1e6, 3),
        "flush_ms_mean": round(flush_s / (steps // 4) * 1000, 2),
        "maintain_ms_mean": round(maintain_s / (steps // 4) * 1000, 2),
        "maintain_ms_max": round(maintain_max * 1000, 1),
        "compactions": stats["compactions_total"],
        "rollups": stats["rollups_total"],
    }


def time_select(tsdb: TSDB, matchers: list[Matcher], mint: int, maxt: int) -> dict[str, float]:
    q = tsdb.querier()
    colds, warms = [], []
    points = 0
    for _ in range(5):
        tsdb.clear_query_cache()
        started = time.perf_counter()
        result = q.select(matchers, mint, maxt)
        colds.append(time.perf_counter() - started)
        started = time.perf_counter()
        q.select(matchers, mint, maxt)
        warms.append(time.perf_counter() - started)
        points = sum(len(s.ts) for s in result)
    return {
        "series": len(result),
        "points": points,
        "cold_ms": round(statistics.median(colds) * 1000, 2),
        "warm_ms": round(statistics.median(warms) * 1000, 2),
    }


async def bench_queries(tmp: Path) -> dict[str, object]:
    """3 series of 30 days imported as history, maintained like the daemon, then selected."""
    rng = random.Random(11)
    now = START_MS + 40 * DAY_MS
    clock = SimClock(now)
    store, tsdb = await open_tsdb(tmp / "query.db", clock)
    models = {
        "node_cpu_seconds_total": lambda: Counter(rng, 1400, scale=100),
        "node_memory_MemFree_bytes": lambda: Gauge(rng, 4e9, 2e6, unit=1024),
        "node_load1": lambda: Gauge(rng, 0.8, 0.08, decimals=2),
    }
    for name, make in models.items():
        group = {"q": [Series((("__name__", name), ("cpu", str(i))), make()) for i in range(3)]}
        labels, refs, ts, values = history(rng, group, now - 30 * DAY_MS, 30 * 5760)
        for i in range(0, len(ts), 50_000):
            await tsdb.import_batch(labels, refs[i : i + 50_000], ts[i : i + 50_000], values[i : i + 50_000])
    await tsdb.maintain()
    out: dict[str, object] = {"tiers": tsdb.stats()["chunks"]}
    name = MatchType.EQL
    out["counter_24h_raw"] = time_select(tsdb, [Matcher(name, "__name__", "node_cpu_seconds_total")], now - DAY_MS, now)
    for metric in models:
        out[f"{metric}_30d"] = time_select(tsdb, [Matcher(name, "__name__", metric)], now - 30 * DAY_MS, now)
    await tsdb.close()
    await store.close()
    return out


async def run(args: argparse.Namespace) -> dict[str, object]:
    tmp = Path(tempfile.mkdtemp(prefix="vigil-tsdb-bench-"))
    try:
        log("codec ...")
        result: dict[str, object] = {"codec": bench_codec()}
        log("import ...")
        result["import"] = await bench_import(tmp, args.import_days)
        log("queries ...")
        result["queries"] = await bench_queries(tmp)
        log(f"simulation of {args.days} days ...")
        result["simulation"] = await bench_simulation(tmp, args.days, args.journal_size_limit)
        return result
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--days", type=float, default=7.0, help="simulated days of collection")
    ap.add_argument("--import-days", type=float, default=2.0, help="days of history for the backfill figure")
    ap.add_argument("--journal-size-limit", type=int, default=None,
                    help="set PRAGMA journal_size_limit (bytes) on the store's writer for the simulation")
    args = ap.parse_args()
    print(json.dumps(asyncio.run(run(args)), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
