"""Footprint benchmark: Vigil against Debian's prometheus-node-exporter on the same host.

In one run this script

1. starts Vigil (``vigil run`` with the shipped config, a free loopback port and a fresh temporary
   state dir) and node_exporter (``--web.listen-address=127.0.0.1:<free port>``), and polls each until
   it answers (Vigil: ``/readyz`` 200, node_exporter: ``/metrics`` 200) under a deadline;
2. after one warm-up scrape each and a short settle time, samples both processes once a second over
   the same idle window (no requests): RSS at the end of the window and the maximum seen, and CPU as
   a percentage of one core = delta(user+system CPU seconds) / wall seconds * 100, child processes
   included;
3. then times N sequential ``GET /metrics`` per target over one keep-alive HTTP/1.1 connection each
   (full body read), alternating Vigil and node_exporter request by request;
4. prints one JSON object to stdout (progress goes to stderr), and always stops both processes
   (SIGTERM, then SIGKILL after a deadline) and removes its temporary directories.

Sizes are MiB (2**20 bytes). Stdlib plus psutil only. Exit status: 0 on success (whether or not the
targets are met), 1 if a run fails, 2 if node_exporter or Vigil cannot be found.

    .venv/bin/python benchmarks/footprint.py [--idle-seconds 60] [--requests 500] \
        [--vigil-config config/vigil.yaml]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import psutil

REPO = Path(__file__).resolve().parent.parent
NODE_EXPORTER = "/usr/bin/prometheus-node-exporter"
MIB = 1024 * 1024
TARGETS: dict[str, float] = {
    "rss_mb_max": 60.0,
    "cpu_percent_idle_max": 0.5,
    "metrics_p99_vs_node_exporter_max_ratio": 1.0,
}


class BenchError(Exception):
    """The benchmark cannot go on; the message says why."""


def log(message: str) -> None:
    print(f"[footprint {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port(taken: set[int]) -> int:
    """A loopback TCP port that is free right now (and not one already handed out)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in taken:
            taken.add(port)
            return port


@dataclass
class Target:
    """One started server: its process, where it listens and how readiness is checked."""

    name: str
    argv: list[str]
    port: int
    ready_path: str
    log_path: Path
    cwd: Path
    popen: subprocess.Popen[bytes] | None = None
    proc: psutil.Process | None = None
    children_seen: set[int] = field(default_factory=set)

    def start(self) -> None:
        log(f"starting {self.name}: {' '.join(self.argv)}")
        with open(self.log_path, "wb") as out:
            self.popen = subprocess.Popen(
                self.argv, cwd=self.cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C in the terminal reaches only this script
            )
        self.proc = psutil.Process(self.popen.pid)

    def wait_ready(self, timeout: float) -> float:
        """Poll `ready_path` until it answers 200; return the seconds it took."""
        assert self.popen is not None
        started = time.monotonic()
        deadline = started + timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise BenchError(f"{self.name} exited with status {self.popen.returncode} before it was ready"
                                 f"\n{self.log_tail()}")
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            try:
                conn.request("GET", self.ready_path)
                resp = conn.getresponse()
                resp.read()
                if resp.status == 200:
                    return time.monotonic() - started
                last = f"HTTP {resp.status}"
            except OSError as exc:
                last = f"{type(exc).__name__}: {exc}"
            finally:
                conn.close()
            time.sleep(0.05)
        raise BenchError(f"{self.name} not ready on port {self.port} after {timeout:g}s ({last})\n{self.log_tail()}")

    def processes(self) -> list[psutil.Process]:
        """The server process and its live descendants."""
        assert self.proc is not None
        procs = [self.proc]
        with contextlib.suppress(psutil.Error):
            kids = self.proc.children(recursive=True)
            self.children_seen.update(k.pid for k in kids)
            procs.extend(kids)
        return procs

    def cpu_seconds(self) -> float:
        """user+system CPU of the process, its live descendants and its reaped children."""
        total = 0.0
        for i, p in enumerate(self.processes()):
            try:
                t = p.cpu_times()
            except psutil.Error:
                continue
            total += t.user + t.system
            if i == 0:
                total += t.children_user + t.children_system
        return total

    def rss_bytes(self) -> int:
        total = 0
        for p in self.processes():
            with contextlib.suppress(psutil.Error):
                total += p.memory_info().rss
        return total

    def num_threads(self) -> int:
        assert self.proc is not None
        try:
            return self.proc.num_threads()
        except psutil.Error:
            return 0

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return f"(no log at {self.log_path})"
        tail = "\n".join(f"    {line}" for line in text[-lines:])
        return f"  last lines of {self.name}'s output:\n{tail}"

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the process group, SIGKILL what is left after `timeout` seconds."""
        if self.popen is None or self.popen.poll() is not None:
            return
        log(f"stopping {self.name} (pid {self.popen.pid})")
        survivors = self.processes()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            log(f"{self.name} still running {timeout:g}s after SIGTERM: SIGKILL")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(5)
        _, alive = psutil.wait_procs(survivors[1:], timeout=2)
        for p in alive:
            with contextlib.suppress(psutil.Error):
                p.kill()


@dataclass
class IdleResult:
    rss_bytes: int
    rss_max_bytes: int
    cpu_seconds: float
    wall_seconds: float
    samples: int
    threads: int

    @property
    def cpu_percent(self) -> float:
        return self.cpu_seconds / self.wall_seconds * 100.0


def measure_idle(targets: list[Target], seconds: float) -> dict[str, IdleResult]:
    """Sample every target once a second over the same window; no requests are made meanwhile."""
    rss_max = {t.name: t.rss_bytes() for t in targets}
    cpu0 = {t.name: t.cpu_seconds() for t in targets}
    t0 = time.monotonic()
    samples = 1
    tick = t0
    while True:
        tick += 1.0
        end = t0 + seconds
        now = time.monotonic()
        if tick >= end:
            time.sleep(max(end - now, 0.0))
            break
        time.sleep(max(tick - now, 0.0))
        for t in targets:
            if t.popen is not None and t.popen.poll() is not None:
                raise BenchError(f"{t.name} exited during the idle window\n{t.log_tail()}")
            rss_max[t.name] = max(rss_max[t.name], t.rss_bytes())
        samples += 1
    cpu1 = {t.name: t.cpu_seconds() for t in targets}
    wall = time.monotonic() - t0
    out: dict[str, IdleResult] = {}
    for t in targets:
        rss = t.rss_bytes()
        out[t.name] = IdleResult(rss, max(rss_max[t.name], rss), cpu1[t.name] - cpu0[t.name], wall,
                                 samples + 1, t.num_threads())
    return out


class Scraper:
    """Sequential GET /metrics over one keep-alive HTTP/1.1 connection."""

    def __init__(self, target: Target):
        self.target = target
        self.conn = http.client.HTTPConnection("127.0.0.1", target.port, timeout=30)
        self.latencies: list[float] = []
        self.sizes: list[int] = []
        self.reconnects = 0

    def scrape(self, record: bool = True) -> None:
        started = time.perf_counter()
        try:
            self.conn.request("GET", "/metrics")
            resp = self.conn.getresponse()
            body = resp.read()
        except (http.client.HTTPException, OSError) as exc:
            raise BenchError(f"GET /metrics on {self.target.name} failed: {type(exc).__name__}: {exc}") from None
        elapsed = time.perf_counter() - started
        if resp.status != 200:
            raise BenchError(f"GET /metrics on {self.target.name} answered {resp.status}: {body[:300]!r}")
        if resp.will_close:  # the server refused keep-alive: note it and open a new connection
            self.reconnects += 1
            self.conn.close()
        if record:
            self.latencies.append(elapsed)
            self.sizes.append(len(body))

    def close(self) -> None:
        self.conn.close()


def latency_stats(scraper: Scraper) -> dict[str, Any]:
    ms = [x * 1000.0 for x in scraper.latencies]
    cuts = statistics.quantiles(ms, n=100, method="inclusive")
    return {
        "metrics_p50_ms": round(cuts[49], 3),
        "metrics_p99_ms": round(cuts[98], 3),
        "metrics_mean_ms": round(statistics.fmean(ms), 3),
        "metrics_max_ms": round(max(ms), 3),
        "metrics_min_ms": round(min(ms), 3),
        "metrics_bytes": int(statistics.median(scraper.sizes)),
        "metrics_bytes_min": min(scraper.sizes),
        "metrics_bytes_max": max(scraper.sizes),
        "metrics_reconnects": scraper.reconnects,
    }


def measure_latency(targets: list[Target], requests: int) -> dict[str, dict[str, Any]]:
    """N requests per target, alternating targets request by request (same conditions for both)."""
    scrapers = [Scraper(t) for t in targets]
    try:
        for s in scrapers:
            s.scrape(record=False)  # opens the connection; not counted
        for _ in range(requests):
            for s in scrapers:
                s.scrape()
        return {s.target.name: latency_stats(s) for s in scrapers}
    finally:
        for s in scrapers:
            s.close()


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 3)


def command_output(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=15, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc})"
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


def find_vigil() -> str | None:
    beside = Path(sys.executable).parent / "vigil"
    if beside.exists():
        return str(beside)
    in_repo = REPO / ".venv" / "bin" / "vigil"
    if in_repo.exists():
        return str(in_repo)
    return shutil.which("vigil")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--idle-seconds", type=float, default=60.0, help="idle measurement window (default 60)")
    ap.add_argument("--requests", type=int, default=500, help="/metrics requests per target (default 500)")
    ap.add_argument("--vigil-config", default="config/vigil.yaml",
                    help="Vigil config (default config/vigil.yaml; relative paths: current dir, then repo)")
    ap.add_argument("--warmup-seconds", type=float, default=5.0,
                    help="settle time after the warm-up scrape, before the idle window (default 5)")
    ap.add_argument("--ready-timeout", type=float, default=30.0, help="readiness deadline per target (default 30)")
    ap.add_argument("--node-exporter", default=NODE_EXPORTER, help=f"node_exporter binary (default {NODE_EXPORTER})")
    args = ap.parse_args(argv)
    if args.idle_seconds <= 0 or args.requests < 2 or args.warmup_seconds < 0:
        ap.error("need --idle-seconds > 0, --requests >= 2 and --warmup-seconds >= 0")
    return args


def resolve_config(name: str) -> Path:
    path = Path(name)
    for candidate in (path, REPO / path):
        if candidate.is_file():
            return candidate.resolve()
    raise BenchError(f"Vigil config {name} not found (looked in {Path.cwd()} and {REPO})")


def summarize(idle: IdleResult, lat: dict[str, Any], after_rss: int) -> dict[str, Any]:
    return {
        "rss_mb": round(idle.rss_bytes / MIB, 2),
        "rss_max_mb": round(idle.rss_max_bytes / MIB, 2),
        "cpu_percent_idle": round(idle.cpu_percent, 4),
        **lat,
        "cpu_seconds_idle": round(idle.cpu_seconds, 3),
        "rss_after_requests_mb": round(after_rss / MIB, 2),
        "threads": idle.threads,
    }


@contextlib.contextmanager
def terminate_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM into SystemExit so the `finally` blocks stop the servers."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(args: argparse.Namespace) -> dict[str, Any]:
    config = resolve_config(args.vigil_config)
    vigil_bin = find_vigil()
    if vigil_bin is None:
        raise FileNotFoundError("vigil executable not found (run with the project's .venv/bin/python)")
    taken: set[int] = set()
    vigil_port, node_port = free_port(taken), free_port(taken)
    tmp = Path(tempfile.mkdtemp(prefix="vigil-footprint-"))
    state_dir = tmp / "state"
    state_dir.mkdir()
    vigil = Target(
        "vigil",
        [vigil_bin, "run", "--config", str(config), "--listen", f"127.0.0.1:{vigil_port}",
         "--state-dir", str(state_dir)],
        vigil_port, "/readyz", tmp / "vigil.log", REPO,
    )
    node = Target(
        "node_exporter", [args.node_exporter, f"--web.listen-address=127.0.0.1:{node_port}"],
        node_port, "/metrics", tmp / "node_exporter.log", tmp,
    )
    targets = [vigil, node]
    try:
        ready: dict[str, float] = {}
        for t in targets:
            t.start()
        for t in targets:
            ready[t.name] = t.wait_ready(args.ready_timeout)
            pid = t.popen.pid if t.popen else "?"
            log(f"{t.name} ready on 127.0.0.1:{t.port} after {ready[t.name]:.2f}s (pid {pid})")
        for t in targets:  # first scrape: loads lazily built code paths, fills caches
            s = Scraper(t)
            try:
                s.scrape(record=False)
            finally:
                s.close()
        log(f"warm-up: {args.warmup_seconds:g}s")
        time.sleep(args.warmup_seconds)
        log(f"idle window: {args.idle_seconds:g}s, both processes sampled every second, no requests")
        idle = measure_idle(targets, args.idle_seconds)
        log(f"latency: {args.requests} sequential GET /metrics per target, alternating, keep-alive")
        lat = measure_latency(targets, args.requests)
        after = {t.name: t.rss_bytes() for t in targets}
        children = {t.name: sorted(t.children_seen) for t in targets}
    except BaseException:
        for t in targets:
            log(t.log_tail())
        raise
    finally:
        for t in targets:
            try:
                t.stop()
            except Exception as exc:  # keep stopping the others
                log(f"could not stop {t.name}: {exc}")
        shutil.rmtree(tmp, ignore_errors=True)

    v = summarize(idle["vigil"], lat["vigil"], after["vigil"])
    n = summarize(idle["node_exporter"], lat["node_exporter"], after["node_exporter"])
    ratios = {
        "rss": ratio(v["rss_mb"], n["rss_mb"]),
        "rss_max": ratio(v["rss_max_mb"], n["rss_max_mb"]),
        "cpu_idle": ratio(v["cpu_percent_idle"], n["cpu_percent_idle"]),
        "metrics_p50": ratio(v["metrics_p50_ms"], n["metrics_p50_ms"]),
        "metrics_p99": ratio(v["metrics_p99_ms"], n["metrics_p99_ms"]),
        "metrics_mean": ratio(v["metrics_mean_ms"], n["metrics_mean_ms"]),
        "metrics_bytes": ratio(v["metrics_bytes"], n["metrics_bytes"]),
    }
    p99_ratio = ratios["metrics_p99"]
    meets = {
        "rss": v["rss_mb"] <= TARGETS["rss_mb_max"],
        "rss_max": v["rss_max_mb"] <= TARGETS["rss_mb_max"],
        "cpu_percent_idle": v["cpu_percent_idle"] <= TARGETS["cpu_percent_idle_max"],
        "metrics_p99_vs_node_exporter": p99_ratio is not None
        and p99_ratio <= TARGETS["metrics_p99_vs_node_exporter_max_ratio"],
    }
    meets["all"] = all(meets.values())
    params = {
        "idle_seconds": args.idle_seconds,
        "idle_wall_seconds": round(idle["vigil"].wall_seconds, 3),
        "idle_samples": idle["vigil"].samples,
        "warmup_seconds": args.warmup_seconds,
        "requests": args.requests,
        "cores": os.cpu_count(),
        "cpu_model": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "psutil": psutil.__version__,
        "kernel": platform.release(),
        "node_exporter_version": command_output([args.node_exporter, "--version"]),
        "vigil_version": command_output([vigil_bin, "version"]),
        "vigil_config": str(config),
        "ready_seconds": {k: round(x, 3) for k, x in ready.items()},
        "children": children,
        "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
        "mb_unit": "MiB (2**20 bytes)",
        "cpu_percent_unit": "% of one core",
        "metrics_request": "GET /metrics, default http.client headers (Accept-Encoding: identity, no Accept)",
    }
    return {
        "vigil": v, "node_exporter": n, "ratios": ratios, "targets": TARGETS, "meets_targets": meets,
        "params": params,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not (os.path.isfile(args.node_exporter) and os.access(args.node_exporter, os.X_OK)):
        print(f"footprint: node_exporter not found at {args.node_exporter}; install Debian's "
              "prometheus-node-exporter (apt-get install prometheus-node-exporter) or pass --node-exporter",
              file=sys.stderr)
        return 2
    try:
        with terminate_on_sigterm():
            result = run(args)
    except FileNotFoundError as exc:
        print(f"footprint: {exc}", file=sys.stderr)
        return 2
    except BenchError as exc:
        print(f"footprint: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
