"""A seeded OpenMetrics data set that exercises the corners of PromQL, for Prometheus and Vigil alike.

Three hours of samples: counters with resets, gauges (negative, zero, huge, tiny, integer,
NaN and ±Inf), classic histograms, series scraped at irregular intervals with millisecond
jitter, series with gaps longer than the 5 minute lookback, series that stop or start half-way,
and label sets made for regex matchers. The same text is backfilled into Prometheus with
promtool and POSTed to Vigil's import endpoint, so both stores hold exactly the same samples.

Times are seconds from the data set's start (`OFFSETS`), so queries can aim at the interesting
moments (just after a reset, inside a gap, shortly after a series stopped) whatever `end` is.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field

DURATION = 3 * 3600
STEP = 15

# Interesting moments, in seconds from the start of the data.
OFFSETS: dict[str, int] = {
    "http_reset": 3600,  # http_requests_total{job="api",instance="host-b:9100",method="POST",code="200"}
    "http_reset2_a": 1800,  # ...{job="web",instance="host-c:9100",method="GET",code="200"} resets twice
    "http_reset2_b": 7200,
    "hist_reset": 5400,  # request_duration_seconds{job="api",instance="host-b:9100"}
    "w2_stop": 6000,  # batch_jobs_processed_total{worker="w2"}: last sample
    "w3_start": 3000,  # batch_jobs_processed_total{worker="w3"}: first sample
    "w4_gap_start": 5000,  # batch_jobs_processed_total{worker="w4"}: no samples in between
    "w4_gap_end": 6000,
    "email_gap_start": 3600,  # queue_depth{queue="email"}
    "email_gap_end": 4800,
    "sms_gap_start": 7000,  # queue_depth{queue="sms"}
    "sms_gap_end": 7400,
    "host_c_down_start": 4000,  # up{instance="host-c:9100"} == 0
    "host_c_down_end": 4600,
}

LE_BOUNDS = ("0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "5.0", "10.0", "+Inf")


@dataclass
class Family:
    """One metric family: its `# TYPE` line and its metrics' sample lines, kept contiguous as OpenMetrics requires.

    `metrics` holds one list of lines per metric (label set; a histogram's buckets, count and sum
    together), so a family too big for one request can be split between metrics.
    """

    name: str
    type: str
    help: str
    metrics: list[list[str]] = field(default_factory=list)
    series: int = 0

    @property
    def samples(self) -> int:
        return sum(len(m) for m in self.metrics)

    def header(self) -> str:
        return f"# TYPE {self.name} {self.type}\n# HELP {self.name} {self.help}\n"

    def text(self) -> str:
        return self.header() + "".join(line + "\n" for m in self.metrics for line in m)


@dataclass
class Dataset:
    start: int  # epoch seconds of the first sample
    end: int  # epoch seconds of the last regular sample
    families: list[Family]

    @property
    def samples(self) -> int:
        return sum(f.samples for f in self.families)

    @property
    def series(self) -> int:
        return sum(f.series for f in self.families)

    def at(self, name: str) -> int:
        """Epoch seconds of a moment named in OFFSETS."""
        return self.start + OFFSETS[name]

    def openmetrics(self) -> str:
        return "".join(f.text() for f in self.families) + "# EOF\n"

    def chunks(self, max_bytes: int) -> Iterator[str]:
        """The data set as several OpenMetrics documents of at most `max_bytes`, split between metrics."""
        eof = "# EOF\n"
        parts: list[str] = []
        size = 0
        for family in self.families:
            header = family.header()
            open_family = False
            for metric in family.metrics:
                text = "".join(line + "\n" for line in metric)
                need = len(text) + (0 if open_family else len(header))
                if len(header) + len(text) + len(eof) > max_bytes:
                    raise ValueError(f"one metric of {family.name} is {len(text)} bytes, over {max_bytes}")
                if parts and size + need + len(eof) > max_bytes:
                    yield "".join(parts) + eof
                    parts, size, open_family = [], 0, False
                    need = len(header) + len(text)
                if not open_family:
                    parts.append(header)
                    open_family = True
                parts.append(text)
                size += need
        if parts:
            yield "".join(parts) + eof


def fmt_value(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    return repr(v)


def fmt_ts(ms: int) -> str:
    return f"{ms // 1000}.{ms % 1000:03d}" if ms % 1000 else str(ms // 1000)


def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def series_name(name: str, labels: dict[str, str]) -> str:
    if not labels:
        return name
    return name + "{" + ",".join(f'{k}="{escape(v)}"' for k, v in labels.items()) + "}"


class _Builder:
    def __init__(self, start: int, seed: int):
        self.start = start
        self.rng = random.Random(seed)

    def regular(self, step: int = STEP, begin: int = 0, stop: int = DURATION) -> list[int]:
        """Timestamps (ms) every `step` seconds in [begin, stop] from the start."""
        return [(self.start + t) * 1000 for t in range(begin, stop + 1, step)]

    def jittered(self, step: int, jitter_ms: int, begin: int = 0, stop: int = DURATION) -> list[int]:
        """Timestamps near a `step` grid, each moved by up to ±jitter_ms, strictly increasing."""
        out: list[int] = []
        for t in range(begin, stop + 1, step):
            ms = (self.start + t) * 1000 + self.rng.randint(-jitter_ms, jitter_ms)
            if out and ms <= out[-1]:
                ms = out[-1] + 1
            out.append(ms)
        return out

    def add(self, family: Family, sample_name: str, labels: dict[str, str], ts: list[int], values: list[float]) -> None:
        head = series_name(sample_name, labels)
        family.metrics.append([f"{head} {fmt_value(v)} {fmt_ts(t)}" for t, v in zip(ts, values, strict=True)])
        family.series += 1

    def counter(self, ts: list[int], rate: float, noise: float, resets: tuple[int, ...] = (),
                integer: bool = True) -> list[float]:
        """A counter growing at about `rate`/s, falling back to a small value at each time in `resets`."""
        values: list[float] = []
        value = self.rng.uniform(0, 1000) if integer else self.rng.uniform(0, 50)
        if integer:
            value = float(int(value))
        pending = sorted((self.start + r) * 1000 for r in resets)
        prev = ts[0]
        for t in ts:
            dt = (t - prev) / 1000
            prev = t
            inc = max(0.0, rate * dt * (1 + self.rng.uniform(-noise, noise)))
            value += float(int(inc)) if integer else round(inc, 3)
            if pending and t >= pending[0]:
                pending.pop(0)
                value = float(self.rng.randint(0, 5)) if integer else round(self.rng.uniform(0, 1), 3)
            values.append(value)
        return values

    def walk(self, n: int, start: float, sigma: float, lo: float = -math.inf, hi: float = math.inf,
             integer: bool = False, drift: float = 0.0) -> list[float]:
        values = []
        value = start
        for _ in range(n):
            value = min(hi, max(lo, value + drift + self.rng.gauss(0, sigma)))
            values.append(float(round(value)) if integer else round(value, 4))
        return values


def _http_requests(b: _Builder) -> Family:
    fam = Family("http_requests", "counter", "Requests served.")
    targets = [("api", "host-a:9100"), ("api", "host-b:9100"), ("web", "host-a:9100"), ("web", "host-c:9100")]
    ts = b.regular()
    for job, instance in targets:
        for method in ("GET", "POST"):
            for code in ("200", "500"):
                rate = b.rng.uniform(5, 40) if code == "200" else b.rng.uniform(0.01, 0.5)
                if method == "POST":
                    rate /= 3
                resets: tuple[int, ...] = ()
                if (job, instance, method, code) == ("api", "host-b:9100", "POST", "200"):
                    resets = (OFFSETS["http_reset"],)
                if (job, instance, method, code) == ("web", "host-c:9100", "GET", "200"):
                    resets = (OFFSETS["http_reset2_a"], OFFSETS["http_reset2_b"])
                labels = {"job": job, "instance": instance, "method": method, "code": code}
                b.add(fam, "http_requests_total", labels, ts, b.counter(ts, rate, 0.4, resets))
    return fam


def _node_cpu(b: _Builder) -> Family:
    fam = Family("node_cpu_seconds", "counter", "Seconds the CPUs spent in each mode.")
    ts = b.regular()
    shares = {"idle": 0.7, "user": 0.2, "system": 0.08, "iowait": 0.02}
    for instance in ("host-a:9100", "host-b:9100"):
        for cpu in ("0", "1"):
            for mode, share in shares.items():
                labels = {"job": "node", "instance": instance, "cpu": cpu, "mode": mode}
                b.add(fam, "node_cpu_seconds_total", labels, ts, b.counter(ts, share, 0.3, integer=False))
    return fam


def _memory(b: _Builder) -> list[Family]:
    avail = Family("node_memory_MemAvailable_bytes", "gauge", "Memory available.")
    total = Family("node_memory_MemTotal_bytes", "gauge", "Memory installed.")
    ts = b.regular()
    for instance, size in (("host-a:9100", 8_321_499_136), ("host-b:9100", 16_642_998_272)):
        labels = {"job": "node", "instance": instance}
        b.add(avail, "node_memory_MemAvailable_bytes", labels, ts,
              b.walk(len(ts), size * 0.5, size * 0.005, 0, size, integer=True))
        b.add(total, "node_memory_MemTotal_bytes", labels, ts, [float(size)] * len(ts))
    return [avail, total]


def _filesystem(b: _Builder) -> list[Family]:
    avail = Family("node_filesystem_avail_bytes", "gauge", "Filesystem space available.")
    size = Family("node_filesystem_size_bytes", "gauge", "Filesystem size.")
    mounts = [
        ("host-a:9100", "/dev/sda1", "/", "ext4", 50e9),
        ("host-a:9100", "/dev/sda2", "/home", "ext4", 200e9),
        ("host-a:9100", "tmpfs", "/run", "tmpfs", 1.6e9),
        ("host-a:9100", "/dev/nvme0n1p1", "/boot/efi", "vfat", 0.5e9),
        ("host-b:9100", "/dev/vda1", "/", "xfs", 100e9),
    ]
    ts = b.regular()
    for instance, device, mountpoint, fstype, total in mounts:
        labels = {"job": "node", "instance": instance, "device": device, "mountpoint": mountpoint, "fstype": fstype}
        drift = -total * b.rng.uniform(0, 2e-5)
        b.add(avail, "node_filesystem_avail_bytes", labels, ts,
              b.walk(len(ts), total * b.rng.uniform(0.2, 0.8), total * 1e-5, 0, total, integer=True, drift=drift))
        b.add(size, "node_filesystem_size_bytes", labels, ts, [float(int(total))] * len(ts))
    return [avail, size]


def _temperature(b: _Builder) -> Family:
    """Irregular scrapes with millisecond jitter; values across zero, negative, and exactly zero."""
    fam = Family("temperature_celsius", "gauge", "Temperatures.")
    for sensor, step, jitter, start, sigma, lo, hi in (
        ("cpu", 20, 5000, 55.0, 1.5, 30, 95),
        ("outdoor", 30, 2500, 0.0, 0.6, -20, 20),
        ("freezer", 60, 10000, -18.0, 0.3, -25, -10),
    ):
        ts = b.jittered(step, jitter)
        values = b.walk(len(ts), start, sigma, lo, hi)
        if sensor == "outdoor":
            values = [0.0 if i % 17 == 0 else v for i, v in enumerate(values)]
        b.add(fam, "temperature_celsius", {"job": "sensors", "sensor": sensor, "location": f"rack {sensor}"}, ts,
              values)
    return fam


def _queue_depth(b: _Builder) -> Family:
    """Integers every 30s with gaps longer than the lookback delta."""
    fam = Family("queue_depth", "gauge", "Messages waiting.")
    for queue, gap in (("email", ("email_gap_start", "email_gap_end")), ("sms", ("sms_gap_start", "sms_gap_end")),
                       ("push", None)):
        ts = b.regular(30)
        if gap:
            lo, hi = (b.start + OFFSETS[gap[0]]) * 1000, (b.start + OFFSETS[gap[1]]) * 1000
            ts = [t for t in ts if not lo < t < hi]
        b.add(fam, "queue_depth", {"job": "mailer", "queue": queue}, ts, b.walk(len(ts), 20, 4, 0, 60, integer=True))
    return fam


def _extremes(b: _Builder) -> list[Family]:
    """Tiny and huge magnitudes, and NaN / ±Inf samples among ordinary ones."""
    tiny = Family("tiny_ratio", "gauge", "Very small values.")
    ts = b.regular(60)
    for name in ("leak", "drift"):
        b.add(tiny, "tiny_ratio", {"job": "physics", "kind": name}, ts,
              [b.rng.uniform(1e-12, 1e-9) for _ in ts])
    huge = Family("huge_value", "gauge", "Very large values.")
    ts = b.regular()
    for name, base in (("bytes", 3e15), ("astro", 6.02e23)):
        b.add(huge, "huge_value", {"job": "physics", "kind": name}, ts,
              [base * (1 + b.rng.uniform(-0.01, 0.01)) for _ in ts])
    odd = Family("sensor_reading", "gauge", "Readings with NaN and infinities.")
    ts = b.regular()
    for kind in ("nan", "inf", "plain"):
        values = b.walk(len(ts), 10, 2)
        for i in range(len(values)):
            if kind == "nan" and i % 40 in (5, 6, 7, 30):
                values[i] = math.nan
            if kind == "inf" and i % 50 == 10:
                values[i] = math.inf
            if kind == "inf" and i % 50 == 35:
                values[i] = -math.inf
        b.add(odd, "sensor_reading", {"job": "physics", "kind": kind}, ts, values)
    return [tiny, huge, odd]


def _histogram(b: _Builder) -> Family:
    fam = Family("request_duration_seconds", "histogram", "Request latency.")
    bounds = [float(le) for le in LE_BOUNDS]
    ts = b.regular()
    for job, instance, mu, rate in (("api", "host-a:9100", -2.5, 20.0), ("api", "host-b:9100", -1.8, 8.0),
                                     ("web", "host-a:9100", -3.5, 35.0)):
        counts = [0] * len(bounds)
        total_sum = 0.0
        total_count = 0
        reset_at = (b.start + OFFSETS["hist_reset"]) * 1000 if instance == "host-b:9100" else None
        head = {"job": job, "instance": instance}
        lines: list[str] = []
        for t in ts:
            if reset_at is not None and t >= reset_at:
                reset_at = None
                counts = [0] * len(bounds)
                total_sum = 0.0
                total_count = 0
            n = max(0, int(rate * STEP * (1 + b.rng.uniform(-0.5, 0.5))))
            for _ in range(n):
                obs = math.exp(b.rng.gauss(mu, 1.2))
                total_sum += obs
                for i, bound in enumerate(bounds):
                    if obs <= bound:
                        counts[i] += 1
            total_count += n
            stamp = fmt_ts(t)
            for le, c in zip(LE_BOUNDS, counts, strict=True):
                lines.append(f"{series_name('request_duration_seconds_bucket', {**head, 'le': le})} {c} {stamp}")
            lines.append(f"{series_name('request_duration_seconds_count', head)} {total_count} {stamp}")
            lines.append(f"{series_name('request_duration_seconds_sum', head)} {round(total_sum, 6)!r} {stamp}")
        fam.metrics.append(lines)
        fam.series += len(bounds) + 2
    return fam


def _odd_buckets(b: _Builder) -> Family:
    """Bucket series histogram_quantile must cope with: non-monotonic counts, no +Inf bucket, only +Inf,
    the same bound spelled twice, all zero, a negative bound. Gauges, so the raw counts are used as given."""
    fam = Family("odd_buckets", "gauge", "Malformed classic histograms.")
    shapes: dict[str, list[tuple[str, float]]] = {
        "nonmono": [("0.1", 10), ("0.5", 8), ("1", 15), ("+Inf", 15)],
        "noinf": [("0.1", 3), ("1", 9)],
        "onlyinf": [("+Inf", 7)],
        "dup_le": [("0.5", 2), ("1", 5), ("1.0", 6), ("+Inf", 10)],
        "zero": [("0.1", 0), ("1", 0), ("+Inf", 0)],
        "negative": [("-1", 4), ("0", 6), ("1", 9), ("+Inf", 10)],
        "lowest": [("0.25", 9), ("0.5", 9.5), ("+Inf", 10)],
    }
    ts = b.regular(60)
    for case, buckets in shapes.items():
        for le, count in buckets:
            b.add(fam, "odd_buckets", {"case": case, "le": le}, ts,
                  [count * (1 + i // 60) for i in range(len(ts))])
    return fam


def _batch(b: _Builder) -> Family:
    """Workers that stop, start late, or report rarely with a long gap."""
    fam = Family("batch_jobs_processed", "counter", "Jobs done.")
    runs = {
        "w1": b.regular(10),
        "w2": b.regular(10, stop=OFFSETS["w2_stop"]),
        "w3": b.regular(10, begin=OFFSETS["w3_start"]),
    }
    w4 = b.jittered(60, 3000)
    lo, hi = (b.start + OFFSETS["w4_gap_start"]) * 1000, (b.start + OFFSETS["w4_gap_end"]) * 1000
    runs["w4"] = [t for t in w4 if not lo < t < hi]
    for worker, ts in runs.items():
        b.add(fam, "batch_jobs_processed_total", {"job": "batch", "instance": "batch-1:8080", "worker": worker}, ts,
              b.counter(ts, b.rng.uniform(0.2, 3), 0.8))
    return fam


def _up(b: _Builder) -> Family:
    fam = Family("up", "gauge", "Whether the target answered.")
    ts = b.regular()
    targets = [("api", "host-a:9100"), ("api", "host-b:9100"), ("web", "host-a:9100"), ("web", "host-c:9100"),
               ("node", "host-a:9100"), ("node", "host-b:9100"), ("batch", "batch-1:8080")]
    lo, hi = (b.start + OFFSETS["host_c_down_start"]) * 1000, (b.start + OFFSETS["host_c_down_end"]) * 1000
    for job, instance in targets:
        values = [0.0 if instance == "host-c:9100" and lo <= t <= hi else 1.0 for t in ts]
        if (job, instance) == ("node", "host-b:9100"):
            values = [0.0 if i % 97 in (3, 4) else v for i, v in enumerate(values)]
        b.add(fam, "up", {"job": job, "instance": instance}, ts, values)
    return fam


def _info(b: _Builder) -> list[Family]:
    info = Family("machine_info", "gauge", "Static facts about a machine.")
    ts = b.regular(60)
    for instance, os, version in (("host-a:9100", "debian", "12"), ("host-b:9100", "ubuntu", "22.04"),
                                  ("host-c:9100", "debian", "11")):
        b.add(info, "machine_info", {"instance": instance, "os": os, "version": version,
                                     "note": 'say "hi" \\ bye'}, ts, [1.0] * len(ts))
    started = Family("process_start_time_seconds", "gauge", "When the process started.")
    ts = b.regular()
    for instance, ago in (("host-a:9100", 86400 * 3), ("host-b:9100", 5000)):
        b.add(started, "process_start_time_seconds", {"job": "api", "instance": instance}, ts,
              [float(b.start - ago)] * len(ts))
    legacy = Family("legacy_widgets", "unknown", "A metric without a type.")
    ts = b.regular(60)
    b.add(legacy, "legacy_widgets", {"job": "legacy", "color": "blue"}, ts, b.walk(len(ts), 100, 5, integer=True))
    return [info, started, legacy]


def generate(end: int, seed: int = 4242) -> Dataset:
    """The data set whose last regular sample is at `end` (epoch seconds); identical for equal arguments."""
    start = end - DURATION
    b = _Builder(start, seed)
    families = [
        _http_requests(b), _node_cpu(b), *_memory(b), *_filesystem(b), _temperature(b), _queue_depth(b),
        *_extremes(b), _histogram(b), _odd_buckets(b), _batch(b), _up(b), *_info(b),
    ]
    return Dataset(start, end, families)


def default_end(now: float) -> int:
    """An hour or so before `now`, on a whole minute: inside Vigil's raw retention, outside Prometheus's head."""
    return int(now // 60) * 60 - 3600
