"""Rule evaluation: 300 Prometheus rules over 5 000 series in the real TSDB, time per evaluation cycle. Prints JSON.

    .venv/bin/python benchmarks/rules.py [--series 5000] [--rules 300] [--cycles 240] [--warmup 2] \
        [--history-minutes 60] [--block-offset-s 90] [--profile FILE] [--keep]

Everything runs in this process against a real Store and TSDB on a temporary SQLite file, as the
daemon opens them; simulated time comes from the TSDB's clock. With the defaults a run takes about a
minute on the 2-core dev machine. The rule file it writes passes `promtool check rules`.

1. **Series.** A host as node_exporter names it (CPU seconds per cpu and mode, load, memory,
   filesystems per mountpoint, network and disks per device, clock, Vigil's own check and collector
   gauges), plus synthetic applications: `app_requests_total{service,instance,code}`, a latency
   histogram, `app_up`, queue depths, errors, memory, CPU, and cache operations to reach `--series`.
   A few of them are unhealthy on purpose (a service with 5xx, an instance down, a growing queue, a
   filling disk, failing checks), so alerts go pending and fire during the run.
2. **History.** `--history-minutes` of samples every 15 s go in through `append_many`, one snapshot
   per scrape as the collectors write them, with `flush()` every simulated minute.
3. **Rules.** One rule file of `--rules` rules (parsed by `parse_rule_file`, as the daemon loads
   `rules.d`): host rules (recording rules, CPU, memory, swap, load, disk space and inodes with
   `predict_linear`, read-only filesystems, network errors, clock skew, `absent`, checks and
   collectors), per-service groups (recording rules read back by alerting rules in the same group,
   error ratios, `histogram_quantile` over `rate`, `increase`, `deriv`, aggregations by label,
   `for`, `keep_firing_for`) and fleet-wide rules over every application series (`sum`/`max by`
   over `rate`, `max_over_time` against `min_over_time`, `offset`, `topk`, `changes`), every alert
   with templated annotations (`$labels`, `$value`, `$externalLabels`, `humanize`, `humanize1024`,
   `humanizePercentage`, `humanizeDuration`, `printf`, `if`). Groups hold 10 to 30 rules.
4. **Cycles.** `--cycles` evaluations 15 s apart (the default 240 are one hour), the first
   `--block-offset-s` after a block boundary. Each cycle: one fresh scrape is appended (untimed, as
   the collectors would), then every group is evaluated in order with `agent.alerting.rules.evaluate`
   over `TSDB.querier()` with one shared `Engine`, and each group's samples (recording results,
   `ALERTS`, `ALERTS_FOR_STATE`, staleness markers) are written back with `append_many`, as the
   alert manager does. Those two steps are the timed cycle. `flush()` and `maintain()` run every 4
   cycles (a simulated minute), untimed, as the daemon's jobs do: two minutes after the boundary the
   finished block is compacted into chunks, so for the next three minutes the 5-minute windows reach
   into that block (the head keeps it until the next compaction: were it dropped, these cycles would
   read and decode chunks), and the 1-hour windows of `predict_linear` always do. A daemon lives
   through this once an hour, and so does the run.
   The garbage collector is set up as the daemon sets it up once started (setup frozen, young objects
   collected every 10 000 allocations). The first `--warmup` cycles are reported apart and left out
   of the percentiles.

Output: `cycle_ms` (evaluation + write-back of all rules: p50, p95, max, mean) over the timed cycles,
and apart for the cycles whose 5-minute windows are in the open block and those reaching into the
compacted one;
`evaluate_ms` and `write_back_ms`; `cycle_cpu_ms` (the thread's CPU time per cycle: on a busy machine
it shows what the evaluation itself costs); the slowest cycles and rules; rules, groups, series,
alerts pending and firing at the end, samples written back per cycle, rule errors (must be 0), and
the target (p95 of the cycle time <= 100 ms) with pass/fail. `--profile FILE` writes cProfile stats of
the timed cycles to FILE.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import math
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.alerting.rulefile import RuleGroup, parse_rule_file
from agent.alerting.rules import GroupResult, GroupState, evaluate
from agent.promql.engine import Engine
from agent.promql.values import Labels
from agent.selfmetrics import SelfMetrics
from agent.store import Store
from agent.tsdb import TSDB, TSDBOptions

STEP_MS = 15_000
HOUR_MS = 3_600_000
BASE_MS = 1_735_689_600_000  # 2025-01-01T00:00Z, a block boundary
TARGET_CYCLE_MS = 100.0
HOST = "bench-host"
EXTERNAL_LABELS = {"host": HOST, "datacenter": "dc1"}


def log(message: str) -> None:
    print(f"[rules {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- series ----------------------------------------------------------------------------------------


@dataclass
class Stream:
    """One series: `value(step)` gives its sample at scrape number `step` (deterministic per seed)."""

    labels: Labels
    value: Callable[[int], float]


def _labels(name: str, **extra: str) -> Labels:
    return tuple(sorted({"__name__": name, "instance": HOST, **extra}.items()))


def counter(rng: random.Random, rate: float, start: float | None = None) -> Callable[[int], float]:
    """A counter growing `rate` per second on average, with noise that never makes it go down."""
    base = start if start is not None else rng.uniform(1e3, 1e7)
    phase = rng.uniform(0, 2 * math.pi)

    def value(step: int) -> float:
        seconds = step * STEP_MS / 1000
        wobble = 0.1 * rate * 60 * (1 + math.sin(phase + seconds / 600))
        return round(base + rate * seconds + wobble, 2)

    return value


def gauge(rng: random.Random, mean: float, spread: float, trend_per_s: float = 0.0) -> Callable[[int], float]:
    """A gauge wandering around `mean` (a slow sine plus a little noise), with an optional linear trend."""
    phase = rng.uniform(0, 2 * math.pi)
    seed = rng.randrange(1 << 30)

    def value(step: int) -> float:
        seconds = step * STEP_MS / 1000
        noise = random.Random(seed + step).uniform(-0.1, 0.1)
        return round(mean + trend_per_s * seconds + spread * (math.sin(phase + seconds / 900) + noise), 3)

    return value


def const(v: float) -> Callable[[int], float]:
    return lambda step: v


def host_series(rng: random.Random, cpus: int) -> list[Stream]:
    out: list[Stream] = []
    modes = {"idle": 0.55, "user": 0.25, "system": 0.1, "iowait": 0.04, "irq": 0.01, "softirq": 0.02,
             "steal": 0.0, "nice": 0.01}
    for cpu in range(cpus):
        for mode, share in modes.items():
            out.append(Stream(_labels("node_cpu_seconds_total", cpu=str(cpu), mode=mode),
                              counter(rng, share, rng.uniform(1e4, 1e6))))
    for name, mean in (("node_load1", 2.0), ("node_load5", 1.8), ("node_load15", 1.7)):
        out.append(Stream(_labels(name), gauge(rng, mean, 0.5)))
    total = 16 * 2**30
    out += [
        Stream(_labels("node_memory_MemTotal_bytes"), const(total)),
        Stream(_labels("node_memory_MemAvailable_bytes"), gauge(rng, total * 0.4, total * 0.05)),
        Stream(_labels("node_memory_MemFree_bytes"), gauge(rng, total * 0.1, total * 0.02)),
        Stream(_labels("node_memory_Buffers_bytes"), gauge(rng, 2**28, 2**24)),
        Stream(_labels("node_memory_Cached_bytes"), gauge(rng, 2**32, 2**28)),
        Stream(_labels("node_memory_SwapTotal_bytes"), const(4 * 2**30)),
        Stream(_labels("node_memory_SwapFree_bytes"), gauge(rng, 3.5 * 2**30, 2**26)),
        Stream(_labels("node_vmstat_pgmajfault"), counter(rng, 3.0)),
    ]
    mounts = [("/", "/dev/sda1", "ext4", 0.45), ("/boot", "/dev/sda2", "ext4", 0.7), ("/var", "/dev/sdb1", "xfs", 0.06),
              ("/home", "/dev/sdc1", "ext4", 0.5), ("/srv", "/dev/sdd1", "xfs", 0.3),
              ("/var/lib/docker", "/dev/sde1", "ext4", 0.2), ("/run", "tmpfs", "tmpfs", 0.9),
              ("/tmp", "tmpfs", "tmpfs", 0.95)]
    for mountpoint, device, fstype, free_share in mounts:
        fs = {"device": device, "fstype": fstype, "mountpoint": mountpoint}
        size = 100 * 2**30
        # /var fills up: about 10 MiB/s, so predict_linear says it is full within a day.
        trend = -10 * 2**20 if mountpoint == "/var" else 0.0
        out += [
            Stream(_labels("node_filesystem_size_bytes", **fs), const(size)),
            Stream(_labels("node_filesystem_avail_bytes", **fs), gauge(rng, size * free_share, 2**24, trend)),
            Stream(_labels("node_filesystem_free_bytes", **fs), gauge(rng, size * free_share + 2**30, 2**24, trend)),
            Stream(_labels("node_filesystem_files", **fs), const(6_553_600)),
            Stream(_labels("node_filesystem_files_free", **fs), gauge(rng, 6_000_000, 1000)),
            Stream(_labels("node_filesystem_readonly", **fs), const(1.0 if mountpoint == "/srv" else 0.0)),
            Stream(_labels("node_filesystem_device_error", **fs), const(0.0)),
        ]
    for device in ("lo", "eth0", "eth1", "docker0", "veth1a2b", "wg0"):
        errs = 5.0 if device == "eth1" else 0.0
        out += [
            Stream(_labels("node_network_receive_bytes_total", device=device), counter(rng, 2e6)),
            Stream(_labels("node_network_transmit_bytes_total", device=device), counter(rng, 1e6)),
            Stream(_labels("node_network_receive_packets_total", device=device), counter(rng, 300)),
            Stream(_labels("node_network_transmit_packets_total", device=device), counter(rng, 200)),
            Stream(_labels("node_network_receive_errs_total", device=device), counter(rng, errs, 0.0)),
            Stream(_labels("node_network_transmit_errs_total", device=device), counter(rng, 0.0, 0.0)),
            Stream(_labels("node_network_receive_drop_total", device=device), counter(rng, 0.01, 0.0)),
            Stream(_labels("node_network_transmit_drop_total", device=device), counter(rng, 0.0, 0.0)),
            Stream(_labels("node_network_up", device=device), const(1.0)),
            Stream(_labels("node_network_speed_bytes", device=device), const(125_000_000)),
        ]
    for device in ("sda", "sdb", "sdc", "sdd", "sde"):
        out += [
            Stream(_labels("node_disk_read_bytes_total", device=device), counter(rng, 5e5)),
            Stream(_labels("node_disk_written_bytes_total", device=device), counter(rng, 1e6)),
            Stream(_labels("node_disk_reads_completed_total", device=device), counter(rng, 50)),
            Stream(_labels("node_disk_writes_completed_total", device=device), counter(rng, 80)),
            Stream(_labels("node_disk_io_time_seconds_total", device=device), counter(rng, 0.1)),
        ]
    out += [
        Stream(_labels("node_timex_offset_seconds"), gauge(rng, 0.001, 0.0005)),
        Stream(_labels("node_timex_sync_status"), const(1.0)),
        Stream(_labels("node_boot_time_seconds"), const(BASE_MS / 1000 - 86_400 * 30)),
        Stream(_labels("node_time_seconds"), lambda step: BASE_MS / 1000 + step * 15.0),
        Stream(_labels("vigil_config_last_reload_successful"), const(1.0)),
        Stream(_labels("vigil_notifications_failed_total", receiver="webhook"), counter(rng, 0.0, 0.0)),
    ]
    for i in range(40):
        out.append(Stream(_labels("vigil_check_up", check=f"check-{i:02d}"), const(0.0 if i in (3, 17) else 1.0)))
    for name in ("cpu", "memory", "disk", "filesystem", "network", "load", "time", "processes", "systemd", "vigil"):
        out.append(Stream(_labels("vigil_collector_up", collector=name), const(1.0)))
    return out


CODES = ("200", "201", "204", "301", "400", "404", "429", "500", "503")
BUCKETS = ("0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf")


def app_series(rng: random.Random, services: int, instances: int, room: int) -> list[Stream]:
    """The application families; cache operations fill what is left of `room`."""
    out: list[Stream] = []
    pods = [(f"svc-{s:02d}", f"10.0.{s}.{i + 10}:8080") for s in range(services) for i in range(instances)]
    for service, instance in pods:
        sick = service == "svc-00"  # 5xx well above 5 %
        slow = service == "svc-04"
        pod = {"service": service, "instance": instance}
        for code in CODES:
            rate = {"200": 40.0, "201": 5.0, "204": 2.0, "301": 1.0, "400": 0.5, "404": 1.0, "429": 0.1,
                    "500": 0.2, "503": 0.1}[code]
            if sick and code in ("500", "503"):
                rate = 6.0
            out.append(Stream(_labels("app_requests_total", code=code, **pod), counter(rng, rate, 0.0)))
        total = 49.9
        for le in BUCKETS:
            share = 1.0 if le == "+Inf" else min(1.0, (float(le) / (2.0 if slow else 0.2)) ** 0.5)
            out.append(Stream(_labels("app_request_duration_seconds_bucket", le=le, **pod),
                              counter(rng, total * share, 0.0)))
        out.append(Stream(_labels("app_request_duration_seconds_sum", **pod), counter(rng, total * 0.08, 0.0)))
        out.append(Stream(_labels("app_request_duration_seconds_count", **pod), counter(rng, total, 0.0)))
        down = service == "svc-02" and instance.endswith(".10:8080")
        out.append(Stream(_labels("app_up", **pod), const(0.0 if down else 1.0)))
        for queue in ("email", "billing", "export", "index", "webhooks"):
            growing = service == "svc-03" and queue == "export"
            out.append(Stream(_labels("app_queue_depth", queue=queue, **pod),
                              gauge(rng, 1500.0 if growing else 20.0, 10.0, 0.5 if growing else 0.0)))
        for kind in ("timeout", "db", "validation", "upstream", "panic"):
            rate = 0.5 if service == "svc-05" and kind == "db" else 0.01
            out.append(Stream(_labels("app_errors_total", kind=kind, **pod), counter(rng, rate, 0.0)))
        memory = 1.8e9 if service == "svc-06" else 2**30
        out.append(Stream(_labels("app_memory_bytes", **pod), gauge(rng, memory, 2**24)))
        out.append(Stream(_labels("app_cpu_seconds_total", **pod), counter(rng, 0.3)))
    caches = 0
    while len(out) < room:
        service, instance = pods[caches % len(pods)]
        cache = f"cache-{caches // len(pods)}"
        for result in ("hit", "miss"):
            if len(out) < room:
                out.append(Stream(_labels("app_cache_ops_total", service=service, instance=instance, cache=cache,
                                          result=result), counter(rng, 20.0 if result == "hit" else 2.0, 0.0)))
        caches += 1
    return out[:room]


def build_series(total: int, seed: int) -> list[Stream]:
    rng = random.Random(seed)
    host = host_series(rng, cpus=8)
    if total < len(host) + 100:
        raise SystemExit(f"--series must be at least {len(host) + 100}")
    return host + app_series(rng, services=20, instances=5, room=total - len(host))


# --- rules -----------------------------------------------------------------------------------------


def _q(text: str) -> str:
    """A YAML double-quoted scalar."""
    return json.dumps(text)


def _alert(name: str, expr: str, for_: str, severity: str, summary: str, description: str,
           keep: str = "") -> list[str]:
    lines = [f"  - alert: {name}", f"    expr: {_q(expr)}"]
    if for_:
        lines.append(f"    for: {for_}")
    if keep:
        lines.append(f"    keep_firing_for: {keep}")
    lines.append("    labels:")
    lines.append(f"      severity: {severity}")
    lines += ["    annotations:", f"      summary: {_q(summary)}", f"      description: {_q(description)}"]
    return lines


def _record(name: str, expr: str) -> list[str]:
    return [f"  - record: {name}", f"    expr: {_q(expr)}"]


def _with_label(rule: list[str], name: str, value: str) -> list[str]:
    """The rule with one more label, so that the same rule for another service is not a duplicate."""
    if rule[0].startswith("  - record:"):
        return [*rule, "    labels:", f"      {name}: {_q(value)}"]
    at = rule.index("    labels:") + 1
    return [*rule[:at], f"      {name}: {_q(value)}", *rule[at:]]


def host_rules() -> list[list[str]]:
    """The host's rules as one list of rules (each a list of YAML lines), in evaluation order."""
    fs = 'fstype!~"tmpfs|overlay|squashfs"'
    return [
        _record("instance:node_cpu_utilisation:rate5m",
                '1 - avg without (cpu, mode) (rate(node_cpu_seconds_total{mode="idle"}[5m]))'),
        _record("instance:node_num_cpu:sum", 'count without (cpu, mode) (node_cpu_seconds_total{mode="idle"})'),
        _record("instance:node_load1_per_cpu:ratio", "node_load1 / on (instance) instance:node_num_cpu:sum"),
        _record("instance:node_memory_utilisation:ratio",
                "1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes"),
        _record("instance:node_network_receive_bytes:rate5m",
                'sum without (device) (rate(node_network_receive_bytes_total{device!="lo"}[5m]))'),
        _record("instance_device:node_disk_io_time_seconds:rate5m", "rate(node_disk_io_time_seconds_total[5m])"),
        _alert("HostHighCpuLoad", "instance:node_cpu_utilisation:rate5m > 0.9", "10m", "warning",
               "CPU load on {{ $labels.instance }} is high",
               "CPU utilisation is {{ $value | humanizePercentage }} on {{ $externalLabels.host }}."),
        _alert("HostCpuStealNoisyNeighbor",
               'avg by (instance) (rate(node_cpu_seconds_total{mode="steal"}[5m])) * 100 > 10', "5m", "warning",
               "CPU steal is high", "CPU steal is {{ $value | printf \"%.1f\" }}%."),
        _alert("HostHighIowait",
               'avg by (instance) (rate(node_cpu_seconds_total{mode="iowait"}[5m])) > 0.2', "10m", "warning",
               "High iowait", "iowait is {{ $value | humanizePercentage }}."),
        _alert("HostOutOfMemory", "node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes * 100 < 10", "2m",
               "critical", "Host out of memory ({{ $labels.instance }})",
               "Only {{ $value | printf \"%.1f\" }}% memory left."),
        _alert("HostMemoryUnderPressure", "rate(node_vmstat_pgmajfault[5m]) > 1000", "5m", "warning",
               "Memory under pressure", "{{ $value | humanize }} major page faults per second."),
        _alert("HostSwapIsFillingUp",
               "(1 - node_memory_SwapFree_bytes / node_memory_SwapTotal_bytes) * 100 > 80", "2m", "warning",
               "Swap is filling up", "Swap is {{ $value | printf \"%.0f\" }}% used."),
        _alert("HostHighLoad", "instance:node_load1_per_cpu:ratio > 2", "15m", "warning",
               "Load is high", "Load per CPU is {{ $value | humanize }}."),
        _alert("HostOutOfDiskSpace",
               f"(node_filesystem_avail_bytes{{{fs}}} / node_filesystem_size_bytes{{{fs}}}) * 100 < 10 "
               f"and on (instance, device, mountpoint) node_filesystem_readonly == 0", "2m", "critical",
               "Disk {{ $labels.mountpoint }} is almost full",
               "{{ $labels.mountpoint }} on {{ $labels.device }} has {{ $value | printf \"%.1f\" }}% left."),
        _alert("HostDiskWillFillIn24Hours",
               f"(node_filesystem_avail_bytes{{{fs}}} / node_filesystem_size_bytes{{{fs}}}) * 100 < 20 "
               f"and predict_linear(node_filesystem_avail_bytes{{{fs}}}[1h], 24 * 3600) < 0 "
               f"and on (instance, device, mountpoint) node_filesystem_readonly == 0", "2m", "warning",
               "Disk {{ $labels.mountpoint }} will fill within 24 hours",
               "At the current rate {{ $labels.mountpoint }} is full within a day ({{ $value | humanize }}% left)."),
        _alert("HostOutOfInodes",
               f"node_filesystem_files_free{{{fs}}} / node_filesystem_files{{{fs}}} * 100 < 10", "2m", "critical",
               "Out of inodes on {{ $labels.mountpoint }}", "{{ $value | printf \"%.1f\" }}% inodes left."),
        _alert("HostInodesWillFillIn24Hours",
               f"predict_linear(node_filesystem_files_free{{{fs}}}[1h], 24 * 3600) < 0", "2m", "warning",
               "Inodes on {{ $labels.mountpoint }} run out within a day", "Predicted: {{ $value | humanize }}."),
        _alert("HostFilesystemReadOnly", "node_filesystem_readonly == 1", "", "critical",
               "{{ $labels.mountpoint }} is read-only", "{{ $labels.device }} is mounted read-only."),
        _alert("HostFilesystemDeviceError", "node_filesystem_device_error == 1", "", "critical",
               "Device error on {{ $labels.mountpoint }}", "{{ $labels.device }} reports an error."),
        _alert("HostUnusualDiskIo", "instance_device:node_disk_io_time_seconds:rate5m > 0.5", "5m", "warning",
               "Disk {{ $labels.device }} is busy", "IO time {{ $value | humanizePercentage }}."),
        _alert("HostUnusualDiskWriteRate",
               "sum by (instance) (rate(node_disk_written_bytes_total[2m])) / 1024 / 1024 > 50", "2m", "warning",
               "Disk write rate is high", "{{ $value | humanize }} MiB/s written."),
        _alert("HostNetworkReceiveErrors",
               "rate(node_network_receive_errs_total[2m]) / rate(node_network_receive_packets_total[2m]) > 0.01",
               "2m", "warning", "Receive errors on {{ $labels.device }}",
               "{{ $labels.device }} has {{ $value | humanizePercentage }} receive errors.", keep="5m"),
        _alert("HostNetworkTransmitErrors",
               "rate(node_network_transmit_errs_total[2m]) / rate(node_network_transmit_packets_total[2m]) > 0.01",
               "2m", "warning", "Transmit errors on {{ $labels.device }}",
               "{{ $labels.device }} has {{ $value | humanizePercentage }} transmit errors."),
        _alert("HostNetworkInterfaceSaturated",
               '(rate(node_network_receive_bytes_total{device!~"^tap.*|^vnet.*|^veth.*|^tun.*"}[1m]) + '
               'rate(node_network_transmit_bytes_total{device!~"^tap.*|^vnet.*|^veth.*|^tun.*"}[1m])) / '
               'node_network_speed_bytes{device!~"^tap.*|^vnet.*|^veth.*|^tun.*"} > 0.8 < 10000', "1m", "warning",
               "{{ $labels.device }} is saturated", "Use is {{ $value | humanizePercentage }}."),
        _alert("HostNetworkInterfaceDown", 'node_network_up{device!="lo"} == 0', "2m", "warning",
               "{{ $labels.device }} is down", "Interface {{ $labels.device }} went down."),
        _alert("HostClockSkew",
               "(node_timex_offset_seconds > 0.05 and deriv(node_timex_offset_seconds[5m]) >= 0) or "
               "(node_timex_offset_seconds < -0.05 and deriv(node_timex_offset_seconds[5m]) <= 0)", "10m",
               "warning", "Clock skew", "Offset is {{ $value | humanizeDuration }}."),
        _alert("HostClockNotSynchronising",
               "min_over_time(node_timex_sync_status[1m]) == 0 and node_timex_maxerror_seconds >= 16", "2m",
               "warning", "Clock not synchronising", "NTP is not in sync."),
        _alert("HostRebooted", "time() - node_boot_time_seconds < 600", "", "info", "Host rebooted",
               "Up for {{ $value | humanizeDuration }}."),
        _alert("HostMetricsMissing", "absent(node_load1)", "5m", "critical", "Host metrics are missing",
               "No node_load1 for 5 minutes."),
        _alert("VigilCheckFailing", "vigil_check_up == 0", "1m", "warning", "Check {{ $labels.check }} fails",
               "{{ if $labels.check }}Check {{ $labels.check }}{{ else }}A check{{ end }} is failing on "
               "{{ $externalLabels.host }}."),
        _alert("VigilCollectorFailing", "vigil_collector_up == 0", "5m", "warning",
               "Collector {{ $labels.collector }} fails", "Collector {{ $labels.collector | toUpper }} failed."),
        _alert("VigilConfigReloadFailed", "vigil_config_last_reload_successful == 0", "5m", "warning",
               "Config reload failed", "The last reload of {{ $externalLabels.host }} failed."),
        _alert("VigilConfigMetricMissing", "absent(vigil_config_last_reload_successful)", "10m", "warning",
               "Config metric missing", "vigil_config_last_reload_successful is absent."),
        _alert("VigilNotificationsFailing", "increase(vigil_notifications_failed_total[10m]) > 0", "", "warning",
               "Notifications to {{ $labels.receiver }} fail",
               "{{ $value | printf \"%.0f\" }} notifications failed in 10 minutes."),
    ]


def service_rules(service: str) -> list[list[str]]:
    return [_with_label(rule, "service", service) for rule in _service_rules(service)]


def _service_rules(service: str) -> list[list[str]]:
    sel = f'service="{service}"'
    return [
        _record("service:app_requests:rate5m", f"sum by (service, code) (rate(app_requests_total{{{sel}}}[5m]))"),
        _record("service:app_request_errors:ratio_rate5m",
                f'sum by (service) (service:app_requests:rate5m{{{sel},code=~"5.."}}) / '
                f"sum by (service) (service:app_requests:rate5m{{{sel}}})"),
        _record("service:app_request_duration_seconds:p99_5m",
                f"histogram_quantile(0.99, sum by (service, le) "
                f"(rate(app_request_duration_seconds_bucket{{{sel}}}[5m])))"),
        _alert("AppHighErrorRate", f"service:app_request_errors:ratio_rate5m{{{sel}}} > 0.05", "1m", "critical",
               "{{ $labels.service }}: high 5xx ratio",
               "{{ $labels.service }} answers {{ $value | humanizePercentage }} of requests with 5xx.", keep="2m"),
        _alert("AppHighLatency", f"service:app_request_duration_seconds:p99_5m{{{sel}}} > 0.5", "2m", "warning",
               "{{ $labels.service }}: p99 latency high", "p99 is {{ $value | humanizeDuration }}."),
        _alert("AppInstanceDown", f"app_up{{{sel}}} == 0", "1m", "critical",
               "{{ $labels.instance }} of {{ $labels.service }} is down",
               "{{ $labels.service }}/{{ $labels.instance }} has been down for a minute."),
        _alert("AppQueueBacklog", f"app_queue_depth{{{sel}}} > 1000", "2m", "warning",
               "Queue {{ $labels.queue }} of {{ $labels.service }} is backed up",
               "{{ $value | printf \"%.0f\" }} items waiting in {{ $labels.queue }}."),
        _alert("AppQueueGrowing", f"deriv(app_queue_depth{{{sel}}}[10m]) > 0.2", "5m", "info",
               "Queue {{ $labels.queue }} grows", "Growing by {{ $value | humanize }} items/s."),
        _alert("AppErrorsIncreasing", f"sum by (service, kind) (increase(app_errors_total{{{sel}}}[5m])) > 50", "",
               "warning", "{{ $labels.kind }} errors in {{ $labels.service }}",
               "{{ $value | printf \"%.0f\" }} {{ $labels.kind }} errors in 5 minutes."),
        _alert("AppHighMemory", f"app_memory_bytes{{{sel}}} > 1.5e9", "5m", "warning",
               "{{ $labels.instance }} uses much memory", "Using {{ $value | humanize1024 }}B."),
        _alert("AppHighCpu", f"rate(app_cpu_seconds_total{{{sel}}}[5m]) > 0.8", "5m", "warning",
               "{{ $labels.instance }} is busy", "CPU {{ $value | humanizePercentage }}."),
        _alert("AppNoTraffic",
               f"sum by (service) (rate(app_requests_total{{{sel}}}[5m])) == 0 or absent(app_requests_total{{{sel}}})",
               "5m", "critical", "{{ $labels.service }} gets no traffic", "No requests for 5 minutes."),
        _alert("AppCacheHitRateLow",
               f'sum by (service, instance) (rate(app_cache_ops_total{{{sel},result="hit"}}[5m])) / '
               f"sum by (service, instance) (rate(app_cache_ops_total{{{sel}}}[5m])) < 0.8", "10m", "info",
               "Cache hit rate low on {{ $labels.instance }}", "Hit rate {{ $value | humanizePercentage }}."),
    ]


def fleet_rules() -> list[list[str]]:
    return [
        _record("job:app_requests:rate5m", "sum by (code) (service:app_requests:rate5m)"),
        _record("job:app_up:ratio", "avg(app_up)"),
        _record("job:app_queue_depth:max", "max by (queue) (app_queue_depth)"),
        _record("job:app_memory_bytes:sum", "sum(app_memory_bytes)"),
        _record("job:app_cache_ops:rate5m", "sum by (result) (rate(app_cache_ops_total[5m]))"),
        _alert("FleetErrorBudgetBurn",
               'sum(job:app_requests:rate5m{code=~"5.."}) / sum(job:app_requests:rate5m) > 0.01', "5m", "critical",
               "Error budget burning", "{{ $value | humanizePercentage }} of all requests fail."),
        _alert("FleetServicesDown", "job:app_up:ratio < 0.99", "1m", "warning", "Some instances are down",
               "{{ $value | humanizePercentage }} of instances are up."),
        _alert("FleetTopQueue", "topk(3, job:app_queue_depth:max) > 500", "", "info", "Queue {{ $labels.queue }}",
               "{{ $value }} items."),
        _alert("FleetMemory", "job:app_memory_bytes:sum > 200e9", "5m", "warning", "Fleet memory high",
               "{{ $value | humanize1024 }}B in use."),
        _alert("FleetCacheMissRate",
               'job:app_cache_ops:rate5m{result="miss"} / ignoring (result) job:app_cache_ops:rate5m{result="hit"} '
               "> 0.5", "10m", "info", "Cache misses high", "{{ $value | humanize }} misses per hit."),
        _alert("FleetSlowServices", "count(service:app_request_duration_seconds:p99_5m > 0.5) > 2", "5m", "warning",
               "{{ $value }} services are slow", "{{ $value | printf \"%.0f\" }} services have p99 over 500 ms."),
        _alert("FleetInstanceFlapping", "changes(app_up[10m]) > 2", "", "warning", "{{ $labels.instance }} flaps",
               "{{ $value }} changes in 10 minutes."),
        _alert("FleetRequestsDropping",
               "sum(rate(app_requests_total[5m])) < 0.5 * sum(rate(app_requests_total[5m] offset 10m))", "10m",
               "warning", "Requests dropped", "Now {{ $value | humanize }}/s."),
        _alert("FleetQueueStuck", "max_over_time(app_queue_depth[15m]) == min_over_time(app_queue_depth[15m]) "
               "and app_queue_depth > 0", "15m", "info", "Queue {{ $labels.queue }} is stuck", "{{ $value }} items."),
    ]


def rule_file(total: int, services: int) -> str:
    """YAML with `total` rules in groups of 10-30: host (split in two), per two services, fleet; the
    service groups are repeated for more services (names svc-NN) until the count is reached."""
    groups: list[tuple[str, list[list[str]]]] = []
    host = host_rules()
    groups.append(("host-recording-and-cpu", host[:17]))
    groups.append(("host-disk-network-vigil", host[17:]))
    fleet = fleet_rules()
    budget = total - len(host) - len(fleet)
    per_service = len(service_rules("x"))
    n = 0
    while budget > 0:
        rules: list[list[str]] = []
        for _ in range(2):
            if budget <= 0:
                break
            rules += service_rules(f"svc-{n % services:02d}")[:budget]
            budget -= min(per_service, budget)
            n += 1
        groups.append((f"services-{len(groups) - 1:02d}", rules))
    groups.append(("fleet", fleet))
    lines = ["groups:"]
    for name, rules in groups:
        lines += [f"- name: {name}", "  interval: 15s", "  rules:"]
        for rule in rules:
            lines += rule
    return "\n".join(lines) + "\n"


# --- the run ---------------------------------------------------------------------------------------


class Clock:
    def __init__(self, ms: int):
        self.ms = ms

    def __call__(self) -> float:
        return self.ms / 1000


def _dist(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "max": None, "mean": None}
    ordered = sorted(values)

    def pct(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, math.ceil(p * len(ordered)) - 1)], 2)

    return {"p50": pct(0.5), "p95": pct(0.95), "max": round(ordered[-1], 2), "mean": round(statistics.fmean(values), 2)}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="vigil-rules-bench-"))
    path = str(tmp / "vigil.db")
    streams = build_series(args.series, args.seed)
    history_steps = int(args.history_minutes * 60_000 // STEP_MS)
    first_cycle = BASE_MS + 2 * HOUR_MS + int(args.block_offset_s * 1000) // STEP_MS * STEP_MS
    fill_start = first_cycle - history_steps * STEP_MS
    clock = Clock(fill_start)
    store = Store(path, SelfMetrics())
    await store.open()
    tsdb = TSDB(store, path, TSDBOptions(), clock=clock)
    await tsdb.open()
    try:
        # --- history ---
        t0 = time.monotonic()
        for k in range(history_steps):
            t = fill_start + k * STEP_MS
            clock.ms = t
            tsdb.append_many(((s.labels, s.value(k)) for s in streams), t)
            if k % 4 == 3:
                await tsdb.flush()
                await tsdb.maintain()
        fill_s = time.monotonic() - t0
        log(f"{len(streams)} series, {history_steps} scrapes ({history_steps * len(streams)} samples) in {fill_s:.1f}s")

        # --- rules ---
        text = rule_file(args.rules, services=20)
        (tmp / "bench.yml").write_text(text)
        groups: list[RuleGroup] = parse_rule_file(text, "bench.yml")
        states = [GroupState.new(g) for g in groups]
        n_rules = sum(len(g.rules) for g in groups)
        engine = Engine()
        querier = tsdb.querier()
        log(f"{n_rules} rules in {len(groups)} groups ({min(len(g.rules) for g in groups)}-"
            f"{max(len(g.rules) for g in groups)} rules each)")

        # As the daemon does once started (agent.daemon.settle_garbage_collector): what setup created is
        # out of the collector's reach, and young objects are collected less often.
        gc.collect()
        gc.freeze()
        gc.set_threshold(10_000, 20, 20)
        cycles: list[dict[str, float]] = []
        rule_ms: dict[tuple[str, str, int], list[float]] = {}
        profiler = cProfile.Profile() if args.profile else None
        last: list[GroupResult] = []
        for c in range(args.warmup + args.cycles):
            t = first_cycle + c * STEP_MS
            clock.ms = t
            tsdb.append_many(((s.labels, s.value(history_steps + c)) for s in streams), t)
            if (history_steps + c) % 4 == 3:
                await tsdb.flush()
                await tsdb.maintain()
            compacted_until = tsdb.stats()["watermarks"]["compacted_until"] or 0
            timed = c >= args.warmup
            if profiler is not None and timed:
                profiler.enable()
            eval_s = write_s = 0.0
            written = 0
            last = []
            cpu0 = time.thread_time()
            for group, state in zip(groups, states, strict=True):
                a = time.perf_counter()
                result = evaluate(group, state, t, querier, engine=engine, external_labels=EXTERNAL_LABELS,
                                  external_url="http://bench-host:9120")
                b = time.perf_counter()
                if result.samples:
                    tsdb.append_many(((labels, v) for labels, _t, v in result.samples), result.t_ms)
                write_s += time.perf_counter() - b
                eval_s += b - a
                written += len(result.samples)
                last.append(result)
            cpu_s = time.thread_time() - cpu0
            if profiler is not None and timed:
                profiler.disable()
            cycles.append({"cycle_ms": (eval_s + write_s) * 1000, "evaluate_ms": eval_s * 1000,
                           "write_back_ms": write_s * 1000, "cpu_ms": cpu_s * 1000, "samples": written,
                           "minute": (t - first_cycle + int(args.block_offset_s * 1000)) / 60_000,
                           "reach_chunks": t - 300_000 < compacted_until})
            if timed:
                for result in last:
                    for i, rr in enumerate(result.rules):
                        key = (result.group.name, rr.rule.name, i)
                        rule_ms.setdefault(key, []).append(rr.evaluation_time_s * 1000)
            if c < args.warmup or c % 20 == 19:
                log(f"cycle {c}: {cycles[-1]['cycle_ms']:.1f} ms, {written} samples written back")
        if profiler is not None:
            profiler.dump_stats(args.profile)
            log(f"profile of the timed cycles written to {args.profile}")
    finally:
        await tsdb.close()
        await store.close()
        if args.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    timed_cycles = cycles[args.warmup:]
    errors = [(r.group.name, r.rule.name, r.last_error) for res in last for r in res.rules if r.health == "err"]
    alerts = [a for res in last for r in res.rules for a in r.alerts if a.resolved_at_ms is None]
    by_state = {s: sum(1 for a in alerts if a.state == s) for s in ("pending", "firing")}
    slowest = sorted(((statistics.fmean(v), k) for k, v in rule_ms.items()), reverse=True)[:10]
    cycle = _dist([c["cycle_ms"] for c in timed_cycles])
    p95 = cycle["p95"]
    head_only = [c["cycle_ms"] for c in timed_cycles if not c["reach_chunks"]]
    reach = [c["cycle_ms"] for c in timed_cycles if c["reach_chunks"]]
    slow_cycles = sorted(timed_cycles, key=lambda c: c["cycle_ms"], reverse=True)[:5]
    return {
        "cycle_ms": cycle,
        "cycle_ms_5m_windows_in_head": {"cycles": len(head_only), **_dist(head_only)},
        "cycle_ms_5m_windows_reach_chunks": {"cycles": len(reach), **_dist(reach)},
        "evaluate_ms": _dist([c["evaluate_ms"] for c in timed_cycles]),
        "write_back_ms": _dist([c["write_back_ms"] for c in timed_cycles]),
        "cycle_cpu_ms": _dist([c["cpu_ms"] for c in timed_cycles]),
        "slowest_cycles": [{"ms": round(c["cycle_ms"], 1), "minute_after_block_start": round(c["minute"], 2),
                            "reach_chunks": c["reach_chunks"]} for c in slow_cycles],
        "warmup_cycles_ms": [round(c["cycle_ms"], 2) for c in cycles[:args.warmup]],
        "rules": n_rules,
        "groups": len(groups),
        "series": len(streams),
        "history_samples": history_steps * len(streams),
        "alerts_firing": by_state["firing"],
        "alerts_pending": by_state["pending"],
        "samples_written_back_per_cycle": _dist([float(c["samples"]) for c in timed_cycles]),
        "rule_errors": len(errors),
        "rule_error_examples": errors[:5],
        "slowest_rules_mean_ms": [{"group": g, "rule": n, "index": i, "ms": round(ms, 3)} for ms, (g, n, i) in slowest],
        "target": {"cycle_ms_p95_max": TARGET_CYCLE_MS},
        "meets_target": p95 is not None and p95 <= TARGET_CYCLE_MS,
        "params": {
            "cycles": args.cycles, "warmup": args.warmup, "history_minutes": args.history_minutes,
            "scrape_interval_s": STEP_MS / 1000, "block_offset_s": args.block_offset_s, "seed": args.seed,
            "cores": os.cpu_count(), "python": platform.python_version(),
            "timed": "evaluate() of every group in order plus append_many of its samples; appends of the "
                     "collectors' scrape, flush and maintain are outside",
            "total_seconds": round(time.monotonic() - started, 1),
        },
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--series", type=int, default=5000, help="series in the history (default 5000)")
    ap.add_argument("--rules", type=int, default=300, help="rules in all groups (default 300)")
    ap.add_argument("--cycles", type=int, default=240,
                    help="timed evaluation cycles, 15 s apart (default 240: an hour)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed cycles first (default 2)")
    ap.add_argument("--history-minutes", type=float, default=60.0, help="history before the first cycle (default 60)")
    ap.add_argument("--block-offset-s", type=float, default=90.0,
                    help="first cycle this long after a block boundary (default 90)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--profile", metavar="FILE", help="write cProfile stats of the timed cycles to FILE")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (database, rule file)")
    args = ap.parse_args(argv)
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))  # stdout is the JSON alone
    if args.cycles < 1 or args.warmup < 0 or args.history_minutes < 15:
        ap.error("need --cycles >= 1, --warmup >= 0, --history-minutes >= 15")
    host_count = len(host_rules()) + len(fleet_rules())
    if args.rules < host_count + 1:
        ap.error(f"need --rules > {host_count}")
    print(json.dumps(asyncio.run(run(args)), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
