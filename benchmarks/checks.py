"""Checks benchmark: N HTTP checks in Vigil against Debian's blackbox_exporter probing the same targets.

One run, two phases one after the other against the same target server:

1. a target server (a raw asyncio HTTP server in its own process, so its CPU counts for neither side)
   answers ``GET /t/0`` ... ``/t/<N-1>`` with a small 200 and notes when each request arrived;
2. **Vigil** (``vigil run``, a fresh state dir, everything as shipped except the API's rate limits)
   runs N ``type: http`` checks, one per target, every ``--interval`` seconds. After ``--warmup``
   seconds the window opens: CPU from ``/proc/<pid>/stat`` (utime+stime, all threads), RSS every
   second, and the scheduler's lateness histogram (``vigil_scheduler_job_lateness_seconds{job="check"}``)
   scraped at both ends. Vigil is then stopped and every result's ``started_at`` read from its
   database, for a direct measure of lateness;
3. **blackbox_exporter** (``--web.listen-address=127.0.0.1:<free port>``, a config with one
   ``http_2xx`` module) is driven by an asyncio client in this process that issues
   ``GET /probe?module=http_2xx&target=<url>`` for the same N targets at the same rate, each target
   at the phase Vigil gives the check of the same name. Its CPU is measured the same way; the
   driver's own CPU is not counted (it is Prometheus's work; Vigil's figure includes its scheduler).

Prints one JSON object (progress on stderr). Exit status: 0 when the run completed (targets met or
not), 1 when it failed, 2 when vigil or blackbox_exporter is missing.

    .venv/bin/python benchmarks/checks.py [--checks 500] [--interval 10] [--duration 120] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import itertools
import json
import os
import platform
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from footprint import REPO, BenchError, Target, command_output, find_vigil, free_port, terminate_on_sigterm
from prometheus_client.parser import text_string_to_metric_families

from agent.checks.runner import first_offset

BLACKBOX = "/usr/bin/prometheus-blackbox-exporter"
MIB = 1024 * 1024
CLK_TCK = os.sysconf("SC_CLK_TCK")
LATENESS = "vigil_scheduler_job_lateness_seconds"
LOOP_LAG = "vigil_event_loop_lag_seconds"
TARGETS: dict[str, float] = {"lateness_p99_ms_max": 100.0, "cpu_ratio_vigil_to_blackbox_max": 2.0}
UNLIMITED = 10_000_000


def log(message: str) -> None:
    print(f"[checks {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- the target server (its own process)


class _TargetProtocol(asyncio.Protocol):
    """One request per connection: `/t/<i>` is a target (its arrival is noted), `/_arrivals` hands the
    noted arrivals over and forgets them, anything else is a plain 200 (readiness)."""

    def __init__(self, arrivals: dict[str, list[float]]) -> None:
        self.arrivals = arrivals
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buf += data
        if b"\r\n\r\n" not in self.buf:
            if len(self.buf) > 65536:
                self.transport.close()
            return
        now = time.time()
        parts = self.buf.split(b"\r\n", 1)[0].split()
        path = parts[1].decode("latin-1") if len(parts) >= 2 else "/"
        body = b"ok\n"
        ctype = b"text/plain"
        if path.startswith("/t/"):
            self.arrivals.setdefault(path[3:], []).append(now)
        elif path == "/_arrivals":
            body = json.dumps(self.arrivals).encode()
            ctype = b"application/json"
            self.arrivals.clear()
        self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Type: " + ctype + b"\r\nContent-Length: "
                             + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
        self.transport.close()


async def _serve_targets(port: int) -> None:
    arrivals: dict[str, list[float]] = {}
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _TargetProtocol(arrivals), "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


def fetch_arrivals(port: int) -> dict[str, list[float]]:
    """The target server's arrivals since the last call (and forget them there)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "/_arrivals")
        resp = conn.getresponse()
        data: dict[str, list[float]] = json.loads(resp.read())
        return data
    except (http.client.HTTPException, OSError, ValueError) as exc:
        raise BenchError(f"cannot read the target server's arrivals: {exc}") from None
    finally:
        conn.close()


# ---------------------------------------------------------------- measurements


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of the process (all its threads), from /proc/<pid>/stat."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2:].split()  # fields[0] is field 3 (state); utime is 14, stime 15
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_status_bytes(pid: int, key: str) -> int:
    """A `kB` line of /proc/<pid>/status (VmRSS now, VmHWM the peak over the process's life)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise BenchError(f"/proc/{pid}/status has no {key}")


@dataclass
class Window:
    """CPU and RSS of one process over a measurement window."""

    pid: int
    cpu0: float = 0.0
    cpu1: float = 0.0
    mono0: float = 0.0
    mono1: float = 0.0
    wall0: float = 0.0
    wall1: float = 0.0
    rss_max: int = 0
    rss_end: int = 0
    rss_peak: int = 0

    def open(self) -> None:
        self.wall0, self.mono0 = time.time(), time.monotonic()
        self.cpu0 = proc_cpu_seconds(self.pid)
        self.sample()

    def sample(self) -> None:
        self.rss_max = max(self.rss_max, proc_status_bytes(self.pid, "VmRSS"))

    def close(self) -> None:
        self.cpu1 = proc_cpu_seconds(self.pid)
        self.wall1, self.mono1 = time.time(), time.monotonic()
        self.rss_end = proc_status_bytes(self.pid, "VmRSS")
        self.rss_max = max(self.rss_max, self.rss_end)
        # the kernel updates VmHWM lazily (when RSS shrinks), so it can trail a sampled VmRSS
        self.rss_peak = max(proc_status_bytes(self.pid, "VmHWM"), self.rss_max)

    @property
    def seconds(self) -> float:
        return self.mono1 - self.mono0

    @property
    def cpu_seconds(self) -> float:
        return self.cpu1 - self.cpu0

    @property
    def cpu_percent(self) -> float:
        return self.cpu_seconds / self.seconds * 100.0

    def summary(self, runs: int, what: str) -> dict[str, Any]:
        rate = runs / self.seconds
        return {
            "cpu_percent": round(self.cpu_percent, 3),
            f"cpu_percent_per_100_{what}_per_s": round(self.cpu_percent / (rate / 100.0), 3) if rate else None,
            f"{what}_per_s": round(rate, 3),
            "cpu_seconds": round(self.cpu_seconds, 3),
            "window_seconds": round(self.seconds, 3),
            "rss_mib": round(self.rss_end / MIB, 2),
            "rss_window_max_mib": round(self.rss_max / MIB, 2),
            "rss_peak_mib": round(self.rss_peak / MIB, 2),
        }


def quantile(values: list[float], q: float) -> float | None:
    """Linear interpolation between the closest ranks (numpy's default)."""
    if not values:
        return None
    s = sorted(values)
    pos = q * (len(s) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000.0, 3)


def distribution_ms(values: list[float]) -> dict[str, Any]:
    return {"p50_ms": ms(quantile(values, 0.5)), "p99_ms": ms(quantile(values, 0.99)),
            "max_ms": ms(max(values)) if values else None,
            "mean_ms": ms(statistics.fmean(values)) if values else None, "n": len(values)}


def histogram_buckets(metrics_text: str, name: str, labels: dict[str, str]) -> dict[float, float]:
    """Cumulative bucket counts (upper bound -> count) of one histogram series."""
    out: dict[float, float] = {}
    for fam in text_string_to_metric_families(metrics_text):
        if fam.name != name:
            continue
        for s in fam.samples:
            if s.name == name + "_bucket" and all(s.labels.get(k) == v for k, v in labels.items()):
                out[float(s.labels["le"])] = out.get(float(s.labels["le"]), 0.0) + s.value
    return out


def counter_value(metrics_text: str, name: str, labels: dict[str, str]) -> float:
    total = 0.0
    for fam in text_string_to_metric_families(metrics_text):
        for s in fam.samples:
            if s.name in (name, name + "_total") and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


def histogram_quantile(q: float, buckets: dict[float, float]) -> float | None:
    """Prometheus's histogram_quantile over cumulative buckets: linear inside the bucket the rank
    falls in, 0 as the lower bound of the first, the last finite bound when it falls in +Inf."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank = q * buckets[bounds[-1]]
    prev_bound, prev_count = 0.0, 0.0
    for b in bounds:
        count = buckets[b]
        if count >= rank:
            if b == float("inf"):
                return prev_bound
            if count == prev_count:
                return b
            return prev_bound + (b - prev_bound) * (rank - prev_count) / (count - prev_count)
        prev_bound, prev_count = b, count
    return prev_bound


def histogram_delta(before: str, after: str, name: str, labels: dict[str, str]) -> dict[str, Any]:
    b0, b1 = histogram_buckets(before, name, labels), histogram_buckets(after, name, labels)
    delta = {le: b1[le] - b0.get(le, 0.0) for le in b1}
    return {"p50_ms": ms(histogram_quantile(0.5, delta)), "p99_ms": ms(histogram_quantile(0.99, delta)),
            "count": int(delta.get(float("inf"), 0.0)),
            "over_100ms": int(delta.get(float("inf"), 0.0) - delta.get(0.1, 0.0)) if delta else 0}


def schedule_lateness(times: dict[str, list[float]], interval: float, window: tuple[float, float]
                      ) -> tuple[list[float], list[float]]:
    """Lateness of runs in `window` from their start times alone, per key.

    A job is due at phase + k * interval. The phase is estimated as the earliest (t - k * interval)
    of the key's runs, so each run's lateness is measured against its own least-late run (a lower
    bound: off by that run's lateness, normally well under a millisecond). Also returns the spacing
    of consecutive runs minus the interval (jitter, blind to a constant delay)."""
    late: list[float] = []
    spacing: list[float] = []
    for ts in times.values():
        ts = sorted(ts)
        if not ts:
            continue
        first = ts[0]
        offsets = [t - round((t - first) / interval) * interval for t in ts]
        phase = min(offsets)
        late.extend(o - phase for t, o in zip(ts, offsets, strict=True) if window[0] <= t <= window[1])
        inside = [t for t in ts if window[0] <= t <= window[1]]
        spacing.extend(b - a - interval for a, b in itertools.pairwise(inside))
    return late, spacing


def metrics_text(port: int) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("GET", "/metrics")
        resp = conn.getresponse()
        data = resp.read()
    except (http.client.HTTPException, OSError) as exc:
        raise BenchError(f"GET /metrics on Vigil failed: {exc}") from None
    finally:
        conn.close()
    if resp.status != 200:
        raise BenchError(f"GET /metrics on Vigil answered {resp.status}: {data[:300]!r}")
    return data.decode(errors="replace")


def sleep_sampling(seconds: float, samplers: list[Callable[[], None]], alive: Callable[[], None]) -> None:
    """Sleep `seconds`, calling every sampler once a second."""
    end = time.monotonic() + seconds
    tick = time.monotonic()
    while True:
        tick += 1.0
        now = time.monotonic()
        if tick >= end:
            time.sleep(max(end - now, 0.0))
            return
        time.sleep(max(tick - now, 0.0))
        alive()
        for s in samplers:
            s()


# ---------------------------------------------------------------- Vigil's phase


def target_url(port: int, i: int) -> str:
    return f"http://127.0.0.1:{port}/t/{i}"


def vigil_config(args: argparse.Namespace, root: Path, port: int, target_port: int) -> Path:
    checks = [
        {"name": f"web-{i}", "type": "http", "url": target_url(target_port, i), "interval": f"{args.interval:g}s",
         "timeout": f"{args.timeout:g}s"}
        for i in range(args.checks)
    ]
    config: dict[str, Any] = {
        "listen": f"127.0.0.1:{port}",
        "state_dir": str(root / "state"),
        "environment": "benchmark",
        "include": [],
        "api": {"rate_limit": {"default": UNLIMITED, "categories": {
            c: UNLIMITED for c in ("health", "metrics", "config", "backup", "maintenance", "query")}}},
        "checks": checks,
    }
    if args.no_history:
        config["history"] = {"enabled": False}
    path = root / "vigil.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def read_results(db_path: Path) -> list[tuple[str, float, str, str, float]]:
    """(check, started_at, status, message, duration) of every result, read after Vigil stopped
    (the API gives started_at in whole seconds; the table keeps the float)."""
    with contextlib.closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)) as db:
        rows = db.execute("SELECT check_name, ts, status, message, duration FROM check_results").fetchall()
    return [(str(r[0]), float(r[1]), str(r[2]), str(r[3]), float(r[4])) for r in rows]


def run_vigil(args: argparse.Namespace, tmp: Path, vigil_bin: str, target: Target) -> dict[str, Any]:
    root = tmp / "vigil"
    root.mkdir()
    port = free_port(set())
    config = vigil_config(args, root, port, target.port)
    vigil = Target("vigil", [vigil_bin, "run", "--config", str(config)], port, "/readyz", root / "vigil.log", REPO)
    try:
        vigil.start()
        ready = vigil.wait_ready(args.ready_timeout)
        assert vigil.popen is not None
        pid = vigil.popen.pid
        log(f"vigil ready after {ready:.2f}s (pid {pid}); warm-up {args.warmup:g}s")

        def alive() -> None:
            if vigil.popen is not None and vigil.popen.poll() is not None:
                raise BenchError(f"vigil exited during the run\n{vigil.log_tail()}")

        sleep_sampling(args.warmup, [], alive)
        runs_before = counter_value(metrics_text(port), "vigil_scheduler_job_runs", {"job": "check"})
        if runs_before < args.checks:
            log(f"warning: only {runs_before:g} check runs after the warm-up (expected at least {args.checks})")
        fetch_arrivals(target.port)
        win = Window(pid)
        target_cpu0 = target.cpu_seconds()
        m0 = metrics_text(port)
        win.open()
        log(f"vigil window: {args.duration:g}s")
        sleep_sampling(args.duration, [win.sample], alive)
        win.close()
        m1 = metrics_text(port)
        target_cpu = target.cpu_seconds() - target_cpu0
        arrivals = fetch_arrivals(target.port)
        threads = vigil.num_threads()
    except BaseException:
        log(vigil.log_tail())
        raise
    finally:
        vigil.stop(timeout=30)
    results = read_results(root / "state" / "vigil.db")
    lo, hi = win.wall0, win.wall1
    inside = [r for r in results if lo <= r[1] <= hi]
    failures = [r for r in inside if r[2] != "ok"]
    starts: dict[str, list[float]] = {}
    for r in results:
        starts.setdefault(r[0], []).append(r[1])
    late, spacing = schedule_lateness(starts, args.interval, (lo, hi))
    arrival_late, _ = schedule_lateness(arrivals, args.interval, (lo, hi))
    hist = histogram_delta(m0, m1, LATENESS, {"job": "check"})
    lag = histogram_delta(m0, m1, LOOP_LAG, {})
    runs = len(inside)
    return {
        "lateness_p50_ms": {"histogram": hist["p50_ms"], "direct": ms(quantile(late, 0.5))},
        "lateness_p99_ms": {"histogram": hist["p99_ms"], "direct": ms(quantile(late, 0.99))},
        **win.summary(runs, "checks"),
        "checks_run": runs,
        "failures": len(failures),
        "failure_examples": sorted({r[3] for r in failures})[:5],
        "history_enabled": not args.no_history,
        "lateness": {
            "histogram": {**hist, "source": f'{LATENESS}{{job="check"}}: bucket deltas over the window'},
            "direct": {**distribution_ms(late), "source": "started_at of each result: t - (phase + k * interval), "
                       "phase = the check's least-late run"},
            "spacing": {**distribution_ms(spacing), "source": "consecutive started_at of a check minus the interval"},
            "target_arrival": {**distribution_ms(arrival_late),
                               "source": "arrival of each request at the target server, as `direct`"},
        },
        "check_duration": distribution_ms([r[4] for r in inside]),
        "event_loop_lag": lag,
        "scheduler": {
            "runs": int(counter_value(m1, "vigil_scheduler_job_runs", {"job": "check"})
                        - counter_value(m0, "vigil_scheduler_job_runs", {"job": "check"})),
            "misses": int(counter_value(m1, "vigil_scheduler_job_misses", {"job": "check"})
                          - counter_value(m0, "vigil_scheduler_job_misses", {"job": "check"})),
        },
        "target_requests": sum(len(v) for v in arrivals.values()),
        "target_server_cpu_percent": round(target_cpu / win.seconds * 100.0, 3),
        "threads": threads,
        "ready_seconds": round(ready, 3),
    }


# ---------------------------------------------------------------- blackbox_exporter's phase


BLACKBOX_CONFIG = """\
modules:
  http_2xx:
    prober: http
    timeout: {timeout}s
    http:
      preferred_ip_protocol: ip4
      ip_protocol_fallback: false
"""


@dataclass
class Probe:
    due: float
    issued: float
    ok: bool
    error: str | None


@dataclass
class Driver:
    """Issues /probe requests as Prometheus would scrape N blackbox targets with relabelling."""

    port: int
    urls: list[str]
    interval: float
    timeout: float
    probes: list[Probe] = field(default_factory=list)

    async def one(self, session: aiohttp.ClientSession, url: str, due: float) -> None:
        issued = time.time()
        error: str | None = None
        try:
            async with session.get(f"http://127.0.0.1:{self.port}/probe",
                                   params={"module": "http_2xx", "target": url},
                                   headers={"X-Prometheus-Scrape-Timeout-Seconds": f"{self.timeout:g}"}) as resp:
                body = await resp.read()
                if resp.status != 200:
                    error = f"HTTP {resp.status}"
                elif b"\nprobe_success 1\n" not in b"\n" + body:
                    error = "probe_success 0"
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        self.probes.append(Probe(due, issued, error is None, error))

    async def target_loop(self, session: aiohttp.ClientSession, i: int, start: float, until: float,
                          tasks: set[asyncio.Task[None]]) -> None:
        due = start + first_offset(f"web-{i}", self.interval)
        while due < until:
            await asyncio.sleep(max(due - time.time(), 0.0))
            task = asyncio.create_task(self.one(session, self.urls[i], due))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            due += self.interval

    async def run(self, seconds: float, on_tick: Callable[[float], None]) -> None:
        """Drive for `seconds`, calling `on_tick(elapsed)` every second (the window opens and
        closes there, and RSS is sampled)."""
        connector = aiohttp.TCPConnector(limit=0, use_dns_cache=False)
        timeout = aiohttp.ClientTimeout(total=self.timeout + 5)
        tasks: set[asyncio.Task[None]] = set()
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            start = time.time()
            until = start + seconds
            loops = [asyncio.create_task(self.target_loop(session, i, start, until, tasks))
                     for i in range(len(self.urls))]
            tick = time.monotonic()
            begun = tick
            while time.time() < until:
                tick += 1.0
                await asyncio.sleep(max(tick - time.monotonic(), 0.0))
                on_tick(time.monotonic() - begun)
            await asyncio.gather(*loops)
            if tasks:
                await asyncio.wait(set(tasks), timeout=self.timeout + 10)


def run_blackbox(args: argparse.Namespace, tmp: Path, target: Target) -> dict[str, Any]:
    root = tmp / "blackbox"
    root.mkdir()
    config = root / "blackbox.yml"
    config.write_text(BLACKBOX_CONFIG.format(timeout=f"{args.timeout:g}"))
    port = free_port(set())
    bb = Target("blackbox_exporter", [args.blackbox, f"--config.file={config}",
                                      f"--web.listen-address=127.0.0.1:{port}"],
                port, "/-/healthy", root / "blackbox.log", root)
    urls = [target_url(target.port, i) for i in range(args.checks)]
    driver = Driver(port, urls, args.interval, args.timeout)
    state: dict[str, Any] = {"phase": "warmup"}
    try:
        bb.start()
        ready = bb.wait_ready(args.ready_timeout)
        assert bb.popen is not None
        win = Window(bb.popen.pid)
        log(f"blackbox_exporter ready after {ready:.2f}s (pid {bb.popen.pid}); warm-up {args.warmup:g}s, "
            f"then a {args.duration:g}s window")

        def on_tick(elapsed: float) -> None:
            if bb.popen is not None and bb.popen.poll() is not None:
                raise BenchError(f"blackbox_exporter exited during the run\n{bb.log_tail()}")
            if state["phase"] == "warmup" and elapsed >= args.warmup:
                fetch_arrivals(target.port)
                state["target_cpu0"] = target.cpu_seconds()
                win.open()
                state["phase"] = "window"
                log(f"blackbox window: {args.duration:g}s")
            elif state["phase"] == "window":
                if elapsed >= args.warmup + args.duration:
                    win.close()
                    state["target_cpu"] = target.cpu_seconds() - state["target_cpu0"]
                    state["arrivals"] = fetch_arrivals(target.port)
                    state["threads"] = bb.num_threads()
                    state["phase"] = "done"
                else:
                    win.sample()

        asyncio.run(driver.run(args.warmup + args.duration + 1.5, on_tick))
        if state["phase"] != "done":
            raise BenchError("the blackbox window did not close (the driver stopped early)")
    except BaseException:
        log(bb.log_tail())
        raise
    finally:
        bb.stop()
    lo, hi = win.wall0, win.wall1
    inside = [p for p in driver.probes if lo <= p.issued <= hi]
    failures = [p for p in inside if not p.ok]
    arrival_late, _ = schedule_lateness(state["arrivals"], args.interval, (lo, hi))
    return {
        **win.summary(len(inside), "probes"),
        "probes": len(inside),
        "failures": len(failures),
        "failure_examples": sorted({p.error or "" for p in failures})[:5],
        "driver_lateness": {**distribution_ms([p.issued - p.due for p in inside]),
                            "source": "when this script's driver issued each /probe minus when it was due"},
        "target_arrival_lateness": {**distribution_ms(arrival_late),
                                    "source": "arrival of each request at the target server, as vigil's"},
        "target_requests": sum(len(v) for v in state["arrivals"].values()),
        "target_server_cpu_percent": round(state["target_cpu"] / win.seconds * 100.0, 3),
        "threads": state["threads"],
        "ready_seconds": round(ready, 3),
        "version": command_output([args.blackbox, "--version"]),
    }


# ---------------------------------------------------------------- the run


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--checks", type=int, default=None, help="checks (and blackbox targets) (default 500)")
    ap.add_argument("--interval", type=float, default=10.0, help="seconds between runs of one check (default 10)")
    ap.add_argument("--timeout", type=float, default=5.0, help="check and probe timeout in seconds (default 5)")
    ap.add_argument("--duration", type=float, default=None, help="measurement window per phase, s (default 120)")
    ap.add_argument("--warmup", type=float, default=None,
                    help="seconds before the window opens (default: interval capped at 10, plus 5)")
    ap.add_argument("--quick", action="store_true", help="a try-out: 100 checks, a 30 s window")
    ap.add_argument("--no-history", action="store_true", help="run Vigil with history.enabled: false")
    ap.add_argument("--no-blackbox", action="store_true", help="skip the blackbox_exporter phase")
    ap.add_argument("--blackbox", default=BLACKBOX, help=f"blackbox_exporter binary (default {BLACKBOX})")
    ap.add_argument("--ready-timeout", type=float, default=60.0, help="readiness deadline per process (default 60)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, Vigil's database)")
    ap.add_argument("--serve-targets", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.checks is None:
        args.checks = 100 if args.quick else 500
    if args.duration is None:
        args.duration = 30.0 if args.quick else 120.0
    if args.warmup is None:
        args.warmup = min(args.interval, 10.0) + 5.0
    if args.checks < 1 or args.interval <= 0 or args.duration <= 0 or args.warmup < 0:
        ap.error("need --checks >= 1, --interval > 0, --duration > 0, --warmup >= 0")
    if not 0 < args.timeout <= args.interval:
        ap.error("need 0 < --timeout <= --interval")
    return args


def run(args: argparse.Namespace, vigil_bin: str) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="vigil-checks-bench-"))
    target_port = free_port(set())
    target = Target("targets", [sys.executable, str(Path(__file__).resolve()), "--serve-targets", str(target_port)],
                    target_port, "/", tmp / "targets.log", tmp)
    started = time.monotonic()
    try:
        target.start()
        target.wait_ready(args.ready_timeout)
        log(f"target server on 127.0.0.1:{target_port}: {args.checks} targets /t/0 .. /t/{args.checks - 1}")
        vigil = run_vigil(args, tmp, vigil_bin, target)
        log(f"vigil: {vigil['cpu_percent']}% CPU, {vigil['checks_run']} checks, lateness p99 "
            f"{vigil['lateness_p99_ms']}")
        blackbox = None if args.no_blackbox else run_blackbox(args, tmp, target)
        if blackbox is not None:
            log(f"blackbox_exporter: {blackbox['cpu_percent']}% CPU, {blackbox['probes']} probes")
    finally:
        target.stop()
        if args.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    ratio = None
    if blackbox is not None and blackbox["cpu_percent_per_100_probes_per_s"]:
        ratio = round(vigil["cpu_percent_per_100_checks_per_s"] / blackbox["cpu_percent_per_100_probes_per_s"], 3)
    p99_hist, p99_direct = vigil["lateness_p99_ms"]["histogram"], vigil["lateness_p99_ms"]["direct"]
    limit = TARGETS["lateness_p99_ms_max"]
    meets: dict[str, bool | None] = {
        "lateness_p99_histogram": p99_hist is not None and p99_hist <= limit,
        "lateness_p99_direct": p99_direct is not None and p99_direct <= limit,
        "cpu_ratio": None if ratio is None else ratio <= TARGETS["cpu_ratio_vigil_to_blackbox_max"],
    }
    meets["all"] = all(v is not False for v in meets.values()) and meets["cpu_ratio"] is not None
    params = {
        "checks": args.checks, "interval_seconds": args.interval, "timeout_seconds": args.timeout,
        "window_seconds": args.duration, "warmup_seconds": args.warmup, "quick": args.quick,
        "order": "vigil, then blackbox_exporter, against the same target server",
        "history_enabled": not args.no_history,
        "cores": os.cpu_count(), "python": platform.python_version(), "kernel": platform.release(),
        "aiohttp": aiohttp.__version__, "vigil_version": command_output([vigil_bin, "version"]),
        "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
        "total_seconds": round(time.monotonic() - started, 1),
        "cpu_percent_unit": "% of one core; utime+stime of the process from /proc/<pid>/stat",
        "mib_unit": "MiB (2**20 bytes)",
        "note": "Vigil's CPU includes its scheduler, result storage, history and collectors; blackbox_exporter's "
                "excludes the scraper (here this script's driver, as Prometheus would be)",
    }
    return {
        "params": params, "vigil": vigil, "blackbox": blackbox, "cpu_ratio_vigil_to_blackbox": ratio,
        "targets": TARGETS, "meets_targets": meets,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve_targets is not None:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_serve_targets(args.serve_targets))
        return 0
    vigil_bin = find_vigil()
    if vigil_bin is None:
        print("checks: vigil executable not found (run with the project's .venv/bin/python)", file=sys.stderr)
        return 2
    if not args.no_blackbox and not (os.path.isfile(args.blackbox) and os.access(args.blackbox, os.X_OK)):
        print(f"checks: blackbox_exporter not found at {args.blackbox}; install Debian's "
              "prometheus-blackbox-exporter or pass --blackbox (or --no-blackbox)", file=sys.stderr)
        return 2
    try:
        with terminate_on_sigterm():
            result = run(args, vigil_bin)
    except BenchError as exc:
        print(f"checks: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
