"""Rollup tiers: one point per series and bucket (1 minute, 1 hour) summarizing its raw samples.

A point's timestamp is that of the bucket's last sample and its value that sample's value, so
"last" lookups read a rollup like raw data; min, max, sum and count answer *_over_time over long
ranges. Stale markers end a series, they are not values: they count only as the bucket's last
sample, never in min/max/sum/count. A bucket holding nothing but stale markers has count 0,
sum 0 and NaN min/max. min/max skip NaN unless every value is NaN (as min_over_time does), so
combining two buckets gives what one pass over both would.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import reduce
from operator import add

from agent.promql.values import is_stale

TIER_RAW, TIER_1M, TIER_1H = 0, 1, 2  # tsdb_chunks.tier
BUCKET_1M = 60_000
BUCKET_1H = 3_600_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
BLOCK_1M_MS = DAY_MS  # one 1m-rollup chunk per series and day
BLOCK_1H_MS = 30 * DAY_MS  # one 1h-rollup chunk per series and 30 days (aligned to the epoch)
NAN = float("nan")


def _floats() -> array:
    return array("d")


@dataclass(slots=True)
class Rollup:
    ts: array = field(default_factory=lambda: array("q"))
    last: array = field(default_factory=_floats)
    min: array = field(default_factory=_floats)
    max: array = field(default_factory=_floats)
    sum: array = field(default_factory=_floats)
    count: array = field(default_factory=_floats)

    def __len__(self) -> int:
        return len(self.ts)

    def columns(self) -> list[array]:
        """In chunk order (the order `from_columns` takes)."""
        return [self.last, self.min, self.max, self.sum, self.count]

    @classmethod
    def from_columns(cls, ts: array, columns: Sequence[array]) -> Rollup:
        if len(columns) != 5:
            raise ValueError(f"a rollup chunk has 5 value columns, got {len(columns)}")
        return cls(ts, *columns)

    def slice(self, lo: int, hi: int) -> Rollup:
        return Rollup(*(col[lo:hi] for col in (self.ts, *self.columns())))

    def __add__(self, other: Rollup) -> Rollup:
        return Rollup(*(a + b for a, b in zip((self.ts, *self.columns()), (other.ts, *other.columns()), strict=True)))

    def append(self, t: int, last: float, lo: float, hi: float, total: float, count: float) -> None:
        self.ts.append(t)
        self.last.append(last)
        self.min.append(lo)
        self.max.append(hi)
        self.sum.append(total)
        self.count.append(count)


def _summarize_slow(values: Sequence[float]) -> tuple[float, float, float, int]:
    lo = hi = NAN
    total = 0.0
    count = 0
    for v in values:
        if v != v and is_stale(v):
            continue
        if count == 0:
            lo = hi = v
        else:
            if v < lo or lo != lo:
                lo = v
            if v > hi or hi != hi:
                hi = v
        total += v
        count += 1
    return lo, hi, total, count


def summarize(ts: array, values: array, width: int) -> Rollup:
    """Buckets of `width` ms (aligned to the epoch) over sorted, duplicate-free raw points."""
    out = Rollup()
    n = len(ts)
    i = 0
    while i < n:
        j = bisect_left(ts, (ts[i] // width + 1) * width, i)
        segment = values[i:j]
        total = reduce(add, segment, 0.0)  # left to right like sum_over_time (3.12's sum() compensates)
        if total == total:  # no NaN anywhere, hence no stale marker: C-speed min/max
            lo, hi, count = min(segment), max(segment), j - i
        else:
            lo, hi, total, count = _summarize_slow(segment)
        out.append(ts[j - 1], values[j - 1], lo, hi, total, float(count))
        i = j
    return out


def splice(base: Rollup, fresh: Rollup, lo: int, hi: int) -> Rollup:
    """`base` with its points in [lo, hi) replaced by `fresh` (whose points all lie in [lo, hi))."""
    i = bisect_left(base.ts, lo)
    j = bisect_left(base.ts, hi)
    if i == j == len(base):
        return base + fresh if len(base) else fresh
    return base.slice(0, i) + fresh + base.slice(j, len(base))


def combine(old: Rollup, new: Rollup, width: int) -> Rollup:
    """Bucket-wise union, `new` being the later write (it wins a tie on the last sample)."""
    out = Rollup()
    i = j = 0
    while i < len(old) or j < len(new):
        if j >= len(new) or (i < len(old) and old.ts[i] // width < new.ts[j] // width):
            out.append(old.ts[i], old.last[i], old.min[i], old.max[i], old.sum[i], old.count[i])
            i += 1
        elif i >= len(old) or new.ts[j] // width < old.ts[i] // width:
            out.append(new.ts[j], new.last[j], new.min[j], new.max[j], new.sum[j], new.count[j])
            j += 1
        else:
            lo, hi = old.min[i], old.max[i]
            if new.min[j] < lo or lo != lo:
                lo = new.min[j]
            if new.max[j] > hi or hi != hi:
                hi = new.max[j]
            if old.ts[i] > new.ts[j]:
                t, last = old.ts[i], old.last[i]
            else:
                t, last = new.ts[j], new.last[j]
            out.append(t, last, lo, hi, old.sum[i] + new.sum[j], old.count[i] + new.count[j])
            i += 1
            j += 1
    return out
