"""Speed of the import parser (agent/tsdb/textparse.py) on a generated backfill body.

The body has --series series (2-4 labels each) x --timestamps timestamps, one sample per line,
written timestamp by timestamp as a scrape dump would be. Prints one JSON object with lines per
second for each format (best of --repeat runs, parse() only: decode, split, labels, values).

    .venv/bin/python benchmarks/textparse.py [--series 200] [--timestamps 2000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.tsdb.textparse import parse

START_MS = 1_700_000_000_000
STEP_MS = 15_000


def series_texts(count: int, rng: random.Random) -> list[tuple[str, str]]:
    """(family, `name{labels}`) pairs: a few families, 2-4 labels per series."""
    families = [("http_requests_total", "counter"), ("node_cpu_seconds_total", "counter"),
                ("process_resident_memory_bytes", "gauge"), ("go_goroutines", "gauge")]
    out = []
    for i in range(count):
        family, _ = families[i % len(families)]
        labels = [f'instance="host-{i % 17}.example.org:9100"', f'job="{["node", "api", "db"][i % 3]}"']
        if i % 2:
            labels.append(f'code="{[200, 404, 500][i % 3]}"')
        if i % 4 == 3:
            labels.append(f'mode="m{i}"')
        out.append((family, f"{family}{{{','.join(labels)}}}"))
    return out


def make_body(series: int, timestamps: int, openmetrics: bool, seed: int = 1) -> tuple[bytes, int]:
    rng = random.Random(seed)
    texts = series_texts(series, rng)
    lines = []
    for family, kind in sorted({(f, k) for f, k in [(t[0], "counter" if t[0].endswith("_total") else "gauge")
                                                      for t in texts]}):
        name = family.removesuffix("_total") if openmetrics and kind == "counter" else family
        lines.append(f"# TYPE {name} {kind}")
    values = [rng.uniform(0, 1000) for _ in texts]
    for step in range(timestamps):
        ms = START_MS + step * STEP_MS
        stamp = f"{ms / 1000:.3f}" if openmetrics else str(ms)
        for i, (_, text) in enumerate(texts):
            values[i] += rng.random() * 10
            value = repr(round(values[i], 3)) if i % 3 else str(int(values[i]))
            lines.append(f"{text} {value} {stamp}")
    if openmetrics:
        lines.append("# EOF")
    return ("\n".join(lines) + "\n").encode(), series * timestamps


def measure(body: bytes, content_type: str, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        parse(body, content_type, None)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--series", type=int, default=200)
    ap.add_argument("--timestamps", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    result: dict[str, object] = {"series": args.series, "timestamps": args.timestamps,
                                 "python": sys.version.split()[0]}
    for label, content_type, om in (("text", "text/plain; version=0.0.4", False),
                                     ("openmetrics", "application/openmetrics-text; version=1.0.0", True)):
        body, samples = make_body(args.series, args.timestamps, om)
        lines = body.count(b"\n")
        seconds = measure(body, content_type, args.repeat)
        result[label] = {"lines": lines, "samples": samples, "bytes": len(body), "seconds": round(seconds, 4),
                         "lines_per_second": round(lines / seconds),
                         "mb_per_second": round(len(body) / seconds / 1e6, 1)}
    result["lines_per_second"] = min(result["text"]["lines_per_second"],  # type: ignore[index]
                                     result["openmetrics"]["lines_per_second"])  # type: ignore[index]
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
