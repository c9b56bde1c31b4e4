"""Cost of `GET /api/v1/processes` polled once a second (the issue: "cheap enough to call every
second"). Starts Vigil with the shipped config, measures its CPU over an idle window, then over a
window of the same length with one full process-list request per second, and prints JSON: the
extra CPU (% of one core), per-request latency, and the number of processes on this host.

    .venv/bin/python benchmarks/processes.py [--seconds 30]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from footprint import REPO, Target, find_vigil, free_port, log


def cpu_over(target: Target, seconds: float, poll: bool, port: int, key: str) -> tuple[float, list[float]]:
    latencies: list[float] = []
    start_cpu, start = target.cpu_seconds(), time.monotonic()
    next_at = start
    while time.monotonic() - start < seconds:
        if poll:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            t0 = time.perf_counter()
            conn.request("GET", "/api/v1/processes?limit=1000", headers={"Authorization": f"Bearer {key}"})
            resp = conn.getresponse()
            resp.read()
            latencies.append((time.perf_counter() - t0) * 1000)
            conn.close()
            if resp.status != 200:
                raise RuntimeError(f"/api/v1/processes answered {resp.status}")
        next_at += 1.0
        time.sleep(max(next_at - time.monotonic(), 0))
    wall = time.monotonic() - start
    return (target.cpu_seconds() - start_cpu) / wall * 100, latencies


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=30.0)
    args = ap.parse_args()
    vigil = find_vigil()
    if vigil is None:
        print("vigil is not installed in .venv (run make test first)", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="vigil-proc-bench-"))
    port = free_port(set())
    target = Target("vigil", [vigil, "run", "--config", str(REPO / "config" / "vigil.yaml"),
                              "--listen", f"127.0.0.1:{port}", "--state-dir", str(tmp / "state")],
                    port, "/readyz", tmp / "vigil.log", REPO)
    try:
        target.start()
        target.wait_ready(30)
        key = (tmp / "state" / "admin.key").read_text().strip()
        time.sleep(3)  # let the first collections finish: the idle window should be idle
        log(f"idle window of {args.seconds:g}s")
        idle_cpu, _ = cpu_over(target, args.seconds, False, port, key)
        log(f"polling window of {args.seconds:g}s, one request per second")
        busy_cpu, latencies = cpu_over(target, args.seconds, True, port, key)
        nprocs = sum(1 for p in os.listdir("/proc") if p.isdigit())
        latencies.sort()
        print(json.dumps({
            "processes_on_host": nprocs,
            "cpu_percent_idle": round(idle_cpu, 3),
            "cpu_percent_polling_1hz": round(busy_cpu, 3),
            "cpu_percent_for_polling": round(busy_cpu - idle_cpu, 3),
            "cpu_us_per_process_per_request": round((busy_cpu - idle_cpu) / 100 * 1e6 / max(nprocs, 1), 1),
            "latency_ms": {"p50": round(statistics.median(latencies), 2),
                           "max": round(latencies[-1], 2), "requests": len(latencies)},
            "params": {"seconds": args.seconds, "cores": os.cpu_count()},
        }, indent=2))
        return 0
    finally:
        target.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
