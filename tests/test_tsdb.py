"""The TSDB against a real Store on a temp SQLite file: durability, compaction, rollups, retention,
matchers and the label APIs. Time is a controllable clock; "crash" means opening a second
Store/TSDB on the same file without closing the first."""

from __future__ import annotations

import asyncio
import math
import random
import sqlite3
import struct
import threading
from array import array
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from agent.promql.ast import Matcher, MatchType
from agent.promql.values import STALE_NAN, STALE_NAN_BITS, Labels, ParseError, SeriesData, is_stale
from agent.selfmetrics import SelfMetrics
from agent.store import Store
from agent.tsdb import TSDB, TSDBError, TSDBOptions
from agent.tsdb import db as tsdb_module
from agent.tsdb.head import merge_points, sort_points
from agent.tsdb.index import SeriesIndex
from agent.tsdb.rollup import BUCKET_1M, Rollup, combine, summarize

B = 1_704_067_200_000  # 2024-01-01T00:00Z: a day boundary
MIN = 60_000
HOUR = 3_600_000
DAY = 86_400_000


class Clock:
    def __init__(self, ms: int):
        self.ms = ms

    def __call__(self) -> float:
        return self.ms / 1000


@dataclass
class Env:
    path: Path
    clock: Clock
    opened: list[tuple[Store, TSDB]] = field(default_factory=list)

    async def open(self, options: TSDBOptions | None = None) -> TSDB:
        store = Store(str(self.path), SelfMetrics())
        await store.open()
        tsdb = TSDB(store, str(self.path), options or TSDBOptions(), clock=self.clock)
        await tsdb.open()
        self.opened.append((store, tsdb))
        return tsdb

    def rows(self, query: str) -> list[tuple]:
        conn = sqlite3.connect(self.path)
        try:
            return conn.execute(query).fetchall()
        finally:
            conn.close()


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    e = Env(tmp_path / "v.db", Clock(B + 10 * MIN))
    yield e
    for store, tsdb in reversed(e.opened):
        if store.is_open:
            await tsdb.close()
            await store.close()


def labels(name: str, **extra: str) -> Labels:
    return tuple(sorted({"__name__": name, **extra}.items()))


def eq(name: str, value: str) -> Matcher:
    return Matcher(MatchType.EQL, name, value)


def select(tsdb: TSDB, name: str, mint: int = B - 400 * DAY, maxt: int = B + 400 * DAY) -> list[SeriesData]:
    return tsdb.querier().select([eq("__name__", name)], mint, maxt)


def one(tsdb: TSDB, name: str, mint: int = B - 400 * DAY, maxt: int = B + 400 * DAY) -> SeriesData:
    got = select(tsdb, name, mint, maxt)
    assert len(got) == 1, got
    return got[0]


def points(series: SeriesData) -> list[tuple[int, float]]:
    return list(zip(series.ts, series.values, strict=True))


def bits(value: float) -> int:
    return struct.unpack("<Q", struct.pack("<d", value))[0]


def same(a: float, b: float) -> bool:
    return bits(a) == bits(b) or (math.isnan(a) and math.isnan(b) and not is_stale(a) and not is_stale(b))


async def maintain_at(env: Env, tsdb: TSDB, ms: int) -> None:
    env.clock.ms = ms
    await tsdb.maintain()


# --- durability ----------------------------------------------------------------------------------


async def test_only_flushed_samples_survive_a_crash(env: Env) -> None:
    tsdb = await env.open()
    series = labels("m", job="a")
    for i in range(10):
        tsdb.append(series, B + i * 15_000, float(i))
    await tsdb.flush()
    for i in range(10, 15):
        tsdb.append(series, B + i * 15_000, float(i))
    assert len(one(tsdb, "m").ts) == 15  # unflushed samples are queryable already

    reopened = await env.open()  # the first one never closed: a crash
    assert points(one(reopened, "m")) == [(B + i * 15_000, float(i)) for i in range(10)]


async def test_close_flushes(env: Env) -> None:
    tsdb = await env.open()
    tsdb.append_many([(labels("a"), 1.0), (labels("b"), 2.0)], B)
    store = env.opened[-1][0]
    await tsdb.close()
    await store.close()
    reopened = await env.open()
    assert points(one(reopened, "a")) == [(B, 1.0)]
    assert points(one(reopened, "b")) == [(B, 2.0)]


async def test_import_is_durable_when_it_returns(env: Env) -> None:
    tsdb = await env.open()
    stored = await tsdb.import_batch(
        [labels("x", i="1"), labels("x", i="2")], [0, 1, 0, 1], [B, B, B + 1000, B + 1000], [1.0, 2.0, 3.0, 4.0]
    )
    assert stored == 4
    reopened = await env.open()
    got = select(reopened, "x")
    assert [points(s) for s in got] == [[(B, 1.0), (B + 1000, 3.0)], [(B, 2.0), (B + 1000, 4.0)]]


async def test_a_large_import_in_any_order(env: Env) -> None:
    tsdb = await env.open()
    series = [labels("big", i=str(i)) for i in range(5)]
    samples = [(ref, B + k * 1000, float(k)) for ref in range(5) for k in range(5000)]
    random.Random(1).shuffle(samples)
    refs, ts, values = (list(col) for col in zip(*samples, strict=True))
    assert await tsdb.import_batch(series, refs, ts, values) == 25_000
    reopened = await env.open()
    got = select(reopened, "big")
    assert [points(s) for s in got] == [[(B + k * 1000, float(k)) for k in range(5000)]] * 5


async def test_compaction_checkpoint_keeps_head_and_unflushed_samples(env: Env) -> None:
    tsdb = await env.open()
    series = labels("m")
    expected = []
    for i in range(0, 90 * 60_000, 15_000):  # 1.5 h: block 0 and half of block 1
        tsdb.append(series, B + i, float(i))
        expected.append((B + i, float(i)))
        if i == 60 * 60_000:
            await tsdb.flush()  # the rest of block 1 is appended but never flushed
    await maintain_at(env, tsdb, B + HOUR + 3 * MIN)  # block 0 closes
    stats = tsdb.stats()
    assert stats["chunks"]["raw"] == 1
    assert stats["head_samples"] == 60 * 4 + 30 * 4  # block 1 stays in the head, block 0 is kept until the next
    assert env.rows("SELECT count(*) FROM tsdb_head_segments") == [(1,)]  # one checkpoint

    reopened = await env.open()  # crash: nothing flushed after the compaction
    assert points(one(reopened, "m")) == expected
    await maintain_at(env, reopened, B + 2 * HOUR + 3 * MIN)
    assert points(one(reopened, "m")) == expected
    assert env.rows("SELECT count(*) FROM tsdb_head_segments") == [(0,)]


def chunk_reads(tsdb: TSDB) -> int:
    stats = tsdb.stats()
    return stats["query_cache_hits_total"] + stats["query_cache_misses_total"]


async def test_the_compacted_block_stays_in_the_head_until_the_next_compaction(env: Env) -> None:
    tsdb = await env.open()
    series = labels("m")
    expected = []
    for i in range(0, 90 * 60_000, 15_000):  # block 0 and half of block 1
        tsdb.append(series, B + i, float(i % 7))  # with counter resets
        expected.append((B + i, float(i % 7)))
    window = (B + 30 * MIN, B + 70 * MIN)
    in_window = [p for p in expected if window[0] <= p[0] <= window[1]]
    await maintain_at(env, tsdb, B + HOUR + 3 * MIN)  # block 0 closes
    assert tsdb.stats()["chunks"]["raw"] == 1
    reads = chunk_reads(tsdb)
    got = one(tsdb, "m", *window)
    assert points(got) == in_window
    assert chunk_reads(tsdb) == reads  # no chunk read: block 0 is still in the head
    view = tsdb.querier().select_views([eq("__name__", "m")], *window)[0]
    assert got.last_drop == view[6] and got.last_drop >= B + 70 * MIN - 15_000
    assert view[7] < B  # no NaN: the engine skips looking for stale markers

    reopened = await env.open()  # after a restart the head has only what was not compacted
    assert reopened.stats()["head_samples"] == 30 * 4
    assert points(one(reopened, "m", *window)) == in_window
    assert chunk_reads(reopened) > 0

    for i in range(90 * 60_000, 125 * 60_000, 15_000):
        tsdb.append(series, B + i, 1.0)
    await maintain_at(env, tsdb, B + 2 * HOUR + 3 * MIN)  # block 1 closes, block 0 leaves the head
    assert tsdb.stats()["head_samples"] == 60 * 4 + 5 * 4
    assert points(one(tsdb, "m", *window)) == in_window


async def test_views_know_where_the_last_nan_is(env: Env) -> None:
    tsdb = await env.open()
    series = labels("m")
    for i, v in enumerate([1.0, 5.0, 2.0, STALE_NAN, 3.0, 1.0]):
        tsdb.append(series, B + i * 1000, v)

    def nan_and_drop() -> tuple[int | None, int | None]:
        view = tsdb.querier().select_views([eq("__name__", "m")], B, B + DAY)[0]
        return view[7], view[6]

    assert nan_and_drop() == (B + 3000, B + 5000)
    await tsdb.import_batch([series], [0, 0], [B + 6000, B + 7000], [math.nan, 4.0])
    assert nan_and_drop() == (B + 6000, B + 7000)  # a number after a NaN counts as a drop
    tsdb.append(series, B + 500, 0.0)  # out of order: both are found again after sorting
    assert nan_and_drop() == (B + 6000, B + 7000)
    tsdb.append(series, B + 7000, math.nan)  # replaces the newest value
    assert nan_and_drop() == (B + 7000, B + 7000)


async def test_an_import_while_the_clock_is_set_back_is_compacted(env: Env) -> None:
    """With the clock set back before compacted_until, a compaction's target is earlier than the blocks already
    compacted; samples imported between the two still reach the chunks."""
    env.clock.ms = B + 2 * HOUR + 10 * MIN
    tsdb = await env.open()
    for i in range(0, 60 * MIN, 15_000):
        tsdb.append(labels("a"), B + 2 * HOUR + i, 1.0)
    await maintain_at(env, tsdb, B + 3 * HOUR + 3 * MIN)  # compacted until 3h, [2h, 3h) kept in the head
    env.clock.ms = B + 2 * HOUR + 30 * MIN  # set back 33 minutes
    await tsdb.import_batch([labels("m")], [0, 0], [B + 90 * MIN, B + 150 * MIN], [1.0, 2.0])
    want = [(B + 90 * MIN, 1.0), (B + 150 * MIN, 2.0)]
    await tsdb.maintain()  # target 2h
    assert points(one(tsdb, "m")) == want
    env.clock.ms = B + 3 * HOUR + 5 * MIN
    tsdb.append(labels("a"), B + 3 * HOUR + 5 * MIN, 1.0)
    await maintain_at(env, tsdb, B + 4 * HOUR + 3 * MIN)
    assert points(one(tsdb, "m")) == want
    await tsdb.flush()
    assert points(one(await env.open(), "m")) == want


async def test_the_head_keeps_a_compacted_block_only_within_query_cache_bytes(env: Env) -> None:
    tsdb = await env.open(TSDBOptions(query_cache_bytes=16 * 100))
    for i in range(0, 90 * 60_000, 15_000):
        tsdb.append(labels("m"), B + i, float(i))
    await maintain_at(env, tsdb, B + HOUR + 3 * MIN)
    assert tsdb.stats()["head_samples"] == 30 * 4  # 240 points of block 0 are over the budget
    assert [t for t, _ in points(one(tsdb, "m", B + 30 * MIN, B + 70 * MIN))] == list(
        range(B + 30 * MIN, B + 70 * MIN + 1, 15_000))


async def test_views_of_the_head_never_change(env: Env) -> None:
    """A query thread reads the head's arrays after the lock is released: whatever the loop thread does
    next (replace the newest value, sort in an out-of-order sample, compact) must not show in them."""
    tsdb = await env.open()
    series = labels("m")
    for i in range(0, 70 * 60_000, 15_000):
        tsdb.append(series, B + i, float(i))
    last = B + 70 * MIN - 15_000
    views = tsdb.querier().select_views([eq("__name__", "m")], B + 50 * MIN, last)
    assert len(views) == 1
    _, unnamed, ts, values, lo, hi, _, _, rollup = views[0]
    assert unnamed == () and rollup is None
    before = (list(ts[lo:hi]), list(values[lo:hi]))
    assert before[0][-1] == last
    tsdb.append(series, last, -1.0)  # replaces the newest value
    tsdb.append(series, B + 70 * MIN, 5.0)
    tsdb.append(series, last + 5_000, 6.0)  # out of order: the series is sorted on the next read
    assert points(one(tsdb, "m", last, B + 70 * MIN)) == [(last, -1.0), (last + 5_000, 6.0),
                                                          (B + 70 * MIN, 5.0)]
    assert (list(ts[lo:hi]), list(values[lo:hi])) == before
    _, _, ts, values, lo, hi, _, _, _ = tsdb.querier().select_views([eq("__name__", "m")], B + 50 * MIN, last)[0]
    before = (list(ts[lo:hi]), list(values[lo:hi]))
    await maintain_at(env, tsdb, B + 2 * HOUR + 3 * MIN)  # compacts and drops points from the head
    assert tsdb.stats()["head_samples"] == 10 * 4 + 2  # block 1 kept; block 0 left the head
    assert (list(ts[lo:hi]), list(values[lo:hi])) == before


async def test_collected_samples_for_closed_blocks_are_refused(env: Env) -> None:
    tsdb = await env.open()
    await maintain_at(env, tsdb, B + 2 * HOUR + 3 * MIN)
    tsdb.append(labels("m"), B + HOUR + 30 * MIN, 1.0)  # block 1 is closed
    tsdb.append(labels("m"), B + 2 * HOUR + 4 * MIN, 2.0)
    assert points(one(tsdb, "m")) == [(B + 2 * HOUR + 4 * MIN, 2.0)]
    assert tsdb.stats()["samples_out_of_bounds_total"] == 1


# --- ordering ----------------------------------------------------------------------------------


async def test_out_of_order_and_duplicates_in_the_open_block(env: Env) -> None:
    tsdb = await env.open()
    series = labels("m")
    for t, v in [(30, 3.0), (10, 1.0), (20, 2.0), (10, 9.0), (40, 4.0), (40, 5.0)]:
        tsdb.append(series, B + t * 1000, v)
    want = [(B + 10_000, 9.0), (B + 20_000, 2.0), (B + 30_000, 3.0), (B + 40_000, 5.0)]
    assert points(one(tsdb, "m")) == want
    await tsdb.flush()
    assert points(one(await env.open(), "m")) == want  # replay applies the same order
    await maintain_at(env, tsdb, B + HOUR + 3 * MIN)
    assert points(one(tsdb, "m")) == want


async def test_import_sorts_its_batch_last_given_wins(env: Env) -> None:
    tsdb = await env.open()
    stored = await tsdb.import_batch([labels("m")], [0, 0, 0, 0], [B + 3, B + 1, B + 2, B + 1], [3.0, 1.0, 2.0, 7.0])
    assert stored == 4
    assert points(one(tsdb, "m")) == [(B + 1, 7.0), (B + 2, 2.0), (B + 3, 3.0)]


async def test_import_into_a_compacted_block_merges(env: Env) -> None:
    tsdb = await env.open()
    series = labels("m")
    for i in range(4):
        tsdb.append(series, B + i * MIN, float(i))
    await maintain_at(env, tsdb, B + HOUR + 3 * MIN)
    assert tsdb.stats()["chunks"]["raw"] == 1 and tsdb.stats()["head_samples"] == 4  # the block is kept

    await tsdb.import_batch([series], [0, 0], [B + MIN, B + MIN + 30_000], [10.0, 1.5])
    want = [(B, 0.0), (B + MIN, 10.0), (B + MIN + 30_000, 1.5), (B + 2 * MIN, 2.0), (B + 3 * MIN, 3.0)]
    assert points(one(tsdb, "m")) == want  # head over chunk before compaction
    assert points(one(tsdb, "m", B + 30 * 1000, B + HOUR)) == want[1:]  # from the head alone
    await tsdb.maintain()
    assert tsdb.stats()["head_samples"] == 5 and tsdb.stats()["chunks"]["raw"] == 1
    assert points(one(tsdb, "m")) == want
    assert points(one(tsdb, "m", B + 30 * 1000, B + HOUR)) == want[1:]
    assert points(one(await env.open(), "m")) == want  # the chunk has the imports: the head starts empty


async def test_late_imports_compact_without_waiting(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tsdb_module, "LATE_SAMPLES_COMPACT", 50)
    env.clock.ms = B + 5 * HOUR
    tsdb = await env.open()
    ts = [B + i * 15_000 for i in range(100)]  # hour 0: closed long ago
    await tsdb.import_batch([labels("m")], [0] * 100, ts, [float(i) for i in range(100)])
    assert tsdb.stats()["head_samples"] == 0
    assert tsdb.stats()["compactions_total"] == 1
    assert [t for t, _ in points(one(tsdb, "m"))] == ts


# --- rollups and retention -----------------------------------------------------------------------


Bucket = tuple[int, float, float, float, float, float]


def reference_buckets(samples: list[tuple[int, float]], width: int) -> dict[int, Bucket]:
    """bucket -> (ts of last, last, min, max, sum, count), computed the obvious way."""
    out: dict[int, list] = {}
    for t, v in samples:
        b = out.setdefault(t // width, [t, v, math.nan, math.nan, 0.0, 0])
        b[0], b[1] = t, v
        if is_stale(v):
            continue
        if b[5] == 0:
            b[2] = b[3] = v
        else:
            if v < b[2] or math.isnan(b[2]):
                b[2] = v
            if v > b[3] or math.isnan(b[3]):
                b[3] = v
        b[4] += v
        b[5] += 1
    return {k: (v[0], v[1], v[2], v[3], v[4], float(v[5])) for k, v in out.items()}


def day_of_samples(start: int) -> list[tuple[int, float]]:
    samples = []
    for i in range(5760):
        t = start + i * 15_000 + (i % 3)  # jittered timestamps
        v = round(math.sin(i / 50) * 1000) / 100
        if i == 100:
            v = math.nan
        elif i in (200, 201, 202, 203):  # a whole minute of stale markers: count 0
            v = STALE_NAN
        elif i == 300:
            v = math.inf
        elif i == 404:
            v = -0.0
        elif i == 503:
            v = STALE_NAN  # the last sample of its minute
        samples.append((t, v))
    return samples


def check_rollup(series: SeriesData, samples: list[tuple[int, float]], width: int, lo: int, hi: int) -> None:
    want = reference_buckets([(t, v) for t, v in samples if lo <= t < hi], width)
    assert series.count is not None and series.sum is not None and series.min is not None and series.max is not None
    got = {}
    for i, t in enumerate(series.ts):
        if lo <= t < hi:
            got[t // width] = (t, series.values[i], series.min[i], series.max[i], series.sum[i], series.count[i])
    assert got.keys() == want.keys()
    for bucket, (t, last, lo_v, hi_v, total, count) in want.items():
        g = got[bucket]
        assert g[0] == t and bits(g[1]) == bits(last), bucket
        assert same(g[2], lo_v) and same(g[3], hi_v) and g[5] == count, bucket
        assert g[4] == total or (math.isnan(g[4]) and math.isnan(total)), bucket


async def test_rollups_are_exact_and_served_after_raw_retention(env: Env) -> None:
    tsdb = await env.open()
    samples = day_of_samples(B)
    for t, v in samples:
        tsdb.append(labels("g"), t, v)
    await maintain_at(env, tsdb, B + DAY + 3 * MIN)  # day 0 compacted and rolled up
    assert tsdb.stats()["chunks"]["1m"] == 1 and tsdb.stats()["chunks"]["1h"] == 1
    raw = one(tsdb, "g")
    assert raw.count is None and [bits(v) for v in raw.values] == [bits(v) for _, v in samples]

    await maintain_at(env, tsdb, B + 3 * DAY + 10 * MIN)  # raw retention (48 h) passes day 0
    assert tsdb.stats()["chunks"]["raw"] == 0
    got = one(tsdb, "g")
    check_rollup(got, samples, BUCKET_1M, B, B + DAY)
    stale_minute = (B + 200 * 15_000) // MIN
    i = [t // MIN for t in got.ts].index(stale_minute)
    assert got.count[i] == 0 and is_stale(got.values[i])
    assert bits(got.values[[t // MIN for t in got.ts].index((B + 503 * 15_000) // MIN)]) == STALE_NAN_BITS

    reopened = await env.open()
    check_rollup(one(reopened, "g"), samples, BUCKET_1M, B, B + DAY)


async def test_hour_tier_after_minute_retention(env: Env) -> None:
    options = TSDBOptions(retention_raw_ms=HOUR, retention_1m_ms=DAY)
    tsdb = await env.open(options)
    samples = day_of_samples(B)
    for t, v in samples:
        tsdb.append(labels("g"), t, v)
    await maintain_at(env, tsdb, B + 3 * DAY)
    stats = tsdb.stats()
    assert stats["chunks"] == {"raw": 0, "1m": 0, "1h": 1}
    check_rollup(one(tsdb, "g"), samples, 3_600_000, B, B + DAY)


async def test_a_range_across_tiers_has_raw_points_as_count_one(env: Env) -> None:
    tsdb = await env.open()
    for i in range(4 * 24 * 60):  # four days, one sample a minute
        tsdb.append(labels("c"), B + i * MIN, float(i))
        if i % 60 == 59:
            await maintain_at(env, tsdb, B + (i + 1) * MIN + 3 * MIN)
    got = one(tsdb, "c")
    raw_min = tsdb.stats()["watermarks"]["raw_min"]
    assert raw_min is not None and raw_min > B
    assert list(got.ts) == [B + i * MIN for i in range(4 * 24 * 60)]
    assert list(got.values) == [float(i) for i in range(4 * 24 * 60)]
    assert got.count is not None and got.sum is not None and got.min is not None and got.max is not None
    assert set(got.count) == {1.0}  # one sample a minute: rollup points and raw points alike
    assert list(got.sum) == list(got.values) == list(got.min) == list(got.max)
    recent = one(tsdb, "c", mint=raw_min)
    assert recent.count is None  # nothing from a rollup in this range


async def test_import_into_a_rolled_up_day_recomputes_its_rollups(env: Env) -> None:
    tsdb = await env.open()
    samples = [(B + i * 15_000, float(i % 7)) for i in range(5760)]
    for t, v in samples:
        tsdb.append(labels("g"), t, v)
    await maintain_at(env, tsdb, B + DAY + 3 * MIN)  # rolled up, raw still kept
    changed = {B + 20 * 15_000: 100.0, B + 20 * 15_000 + 1: -5.0}  # replace one, add one
    await tsdb.import_batch([labels("g")], [0, 0], list(changed), list(changed.values()))
    await tsdb.maintain()
    merged = sorted({**dict(samples), **changed}.items())
    assert points(one(tsdb, "g")) == merged
    await maintain_at(env, tsdb, B + 3 * DAY + 10 * MIN)  # raw gone: rollups answer
    check_rollup(one(tsdb, "g"), merged, BUCKET_1M, B, B + DAY)


async def test_import_older_than_raw_retention_merges_into_buckets(env: Env) -> None:
    tsdb = await env.open()
    for i in range(0, 24 * 60, 1):
        tsdb.append(labels("g"), B + i * MIN + 10_000, 1.0)
    await maintain_at(env, tsdb, B + 3 * DAY + 10 * MIN)
    assert tsdb.stats()["chunks"]["raw"] == 0
    await tsdb.import_batch([labels("g")], [0, 0], [B + 5 * MIN + 20_000, B + 6 * MIN + 1], [4.0, -2.0])
    await tsdb.maintain()
    got = one(tsdb, "g", B, B + DAY - 1)
    assert got.count is not None and got.sum is not None and got.min is not None and got.max is not None
    i5 = list(got.ts).index(B + 5 * MIN + 20_000)  # the later sample is the bucket's last now
    assert (got.values[i5], got.count[i5], got.sum[i5], got.max[i5]) == (4.0, 2.0, 5.0, 4.0)
    i6 = [t // MIN for t in got.ts].index((B + 6 * MIN) // MIN)
    assert got.ts[i6] == B + 6 * MIN + 10_000 and got.values[i6] == 1.0
    assert (got.count[i6], got.sum[i6], got.min[i6]) == (2.0, -1.0, -2.0)


async def test_retention_drops_everything_eventually_and_forgets_series(env: Env) -> None:
    tsdb = await env.open()
    tsdb.append(labels("old", job="x"), B + MIN, 1.0)
    await maintain_at(env, tsdb, B + 2 * DAY)
    tsdb.append(labels("new", job="y"), B + 2 * DAY, 2.0)
    await maintain_at(env, tsdb, B + 400 * DAY)
    stats = tsdb.stats()
    assert stats["chunks"] == {"raw": 0, "1m": 0, "1h": 0}
    assert stats["series"] == 0 and stats["series_removed_total"] == 2
    assert tsdb.querier().label_values("job", [], B - DAY, B + 500 * DAY) == []
    assert env.rows("SELECT count(*) FROM tsdb_series") == [(0,)]
    assert await tsdb.import_batch([labels("ancient")], [0], [B], [1.0]) == 0  # past every tier


async def test_stale_markers_and_nan_payloads_round_trip_everywhere(env: Env) -> None:
    tsdb = await env.open()
    odd_nan = struct.unpack("<d", struct.pack("<Q", 0x7FF8000000000123))[0]
    values = [1.0, STALE_NAN, odd_nan, -0.0, math.inf, STALE_NAN]
    for i, v in enumerate(values):
        tsdb.append(labels("s"), B + i * 1000, v)
    want = [bits(v) for v in values]
    assert [bits(v) for v in one(tsdb, "s").values] == want
    await tsdb.flush()
    reopened = await env.open()
    assert [bits(v) for v in one(reopened, "s").values] == want
    await maintain_at(env, reopened, B + HOUR + 3 * MIN)
    assert [bits(v) for v in one(reopened, "s").values] == want
    assert reopened.stats()["chunks"]["raw"] == 1


# --- limits and errors ---------------------------------------------------------------------------


async def test_too_many_series_rejects_the_whole_import(env: Env) -> None:
    tsdb = await env.open(TSDBOptions(max_series=2))
    await tsdb.import_batch([labels("a")], [0], [B], [1.0])
    with pytest.raises(TSDBError, match="too many series"):
        await tsdb.import_batch([labels("a"), labels("b"), labels("c")], [0, 1, 2], [B + 1, B + 1, B + 1], [2.0] * 3)
    assert points(one(tsdb, "a")) == [(B, 1.0)]
    assert select(tsdb, "b") == [] and tsdb.stats()["series"] == 1
    tsdb.append(labels("b"), B + 5, 1.0)
    tsdb.append(labels("c"), B + 5, 1.0)  # over the limit: dropped and counted
    assert tsdb.stats()["series"] == 2 and tsdb.stats()["samples_too_many_series_total"] == 1


async def test_malformed_batches_and_lifecycle_errors(env: Env) -> None:
    store = Store(str(env.path), SelfMetrics())
    await store.open()
    unopened = TSDB(store, str(env.path), TSDBOptions(), clock=env.clock)
    with pytest.raises(TSDBError, match="not open"):
        unopened.append(labels("a"), B, 1.0)
    await store.close()
    tsdb = await env.open()
    with pytest.raises(TSDBError, match="same length"):
        await tsdb.import_batch([labels("a")], [0, 0], [B], [1.0])
    with pytest.raises(TSDBError, match="malformed"):
        await tsdb.import_batch([labels("a")], [3], [B], [1.0])
    with pytest.raises(TSDBError, match="malformed"):
        await tsdb.import_batch([labels("a")], [-1], [B], [1.0])
    with pytest.raises(TSDBError, match="malformed"):
        await tsdb.import_batch([labels("a")], [0], [1.5], [1.0])
    with pytest.raises(ValueError, match="block_ms"):
        TSDB(env.opened[-1][0], str(env.path), TSDBOptions(block_ms=25 * 60_000))
    await tsdb.close()
    tsdb.append(labels("a"), B, 1.0)  # after close: dropped, no error (collectors may still run)


async def test_the_block_size_is_fixed_when_the_database_is_created(env: Env) -> None:
    tsdb = await env.open()
    await tsdb.close()
    await env.opened[-1][0].close()
    reopened = await env.open(TSDBOptions(block_ms=2 * HOUR))
    reopened.append(labels("m"), B + MIN, 1.0)
    await maintain_at(env, reopened, B + HOUR + 3 * MIN)  # a 1 h block closes; a 2 h one would not
    assert reopened.stats()["chunks"]["raw"] == 1


# --- matchers and label APIs ---------------------------------------------------------------------

SERIES = {
    "a": labels("http", job="api", code="200"),
    "b": labels("http", job="api", code="500"),
    "c": labels("http", job="web"),
    "d": labels("cpu", job="api"),
}


async def matcher_db(env: Env) -> TSDB:
    tsdb = await env.open()
    for key, series in SERIES.items():
        tsdb.append(series, B + 1000, float(ord(key)))
    return tsdb


def names_of(result: list[SeriesData]) -> set[str]:
    by_labels = {v: k for k, v in SERIES.items()}
    return {by_labels[s.labels] for s in result}


@pytest.mark.parametrize(
    ("matchers", "want"),
    [
        ([eq("__name__", "http")], "abc"),
        ([Matcher(MatchType.NEQ, "job", "api")], "c"),
        ([eq("code", "")], "cd"),
        ([Matcher(MatchType.NEQ, "code", "")], "ab"),
        ([Matcher(MatchType.RE, "code", "5..")], "b"),
        ([Matcher(MatchType.RE, "code", "2")], ""),  # anchored: no partial match
        ([Matcher(MatchType.NRE, "code", "5..")], "acd"),
        ([Matcher(MatchType.RE, "code", "|200")], "acd"),
        ([Matcher(MatchType.RE, "__name__", "http|cpu"), eq("job", "api")], "abd"),
        ([Matcher(MatchType.RE, "code", ".*")], "abcd"),
        ([Matcher(MatchType.RE, "__name__", "h.*"), Matcher(MatchType.NEQ, "code", "200")], "bc"),
        ([eq("job", "api"), eq("nothere", "")], "abd"),
        ([eq("job", "nope")], ""),
    ],
)
async def test_matchers(env: Env, matchers: list[Matcher], want: str) -> None:
    tsdb = await matcher_db(env)
    assert names_of(tsdb.querier().select(matchers, B, B + HOUR)) == set(want)


async def test_invalid_regex_is_a_parse_error(env: Env) -> None:
    tsdb = await matcher_db(env)
    with pytest.raises(ParseError):
        tsdb.querier().select([Matcher(MatchType.RE, "job", "a(p")], B, B + HOUR)


async def test_select_honours_the_time_range(env: Env) -> None:
    tsdb = await matcher_db(env)
    tsdb.append(SERIES["a"], B + 5000, 1.0)
    q = tsdb.querier()
    assert q.select([eq("__name__", "http")], B + 2000, B + 9000)[0].labels == SERIES["a"]
    assert q.select([eq("__name__", "http")], B + 6000, B + 9000) == []
    assert [len(s.ts) for s in q.select([eq("__name__", "http")], B + 1000, B + 5000)] == [2, 1, 1]


async def test_label_apis(env: Env) -> None:
    tsdb = await matcher_db(env)
    tsdb.append(labels("late", zone="z1"), B + HOUR, 1.0)
    q = tsdb.querier()
    everything = (B, B + 2 * HOUR)
    assert q.label_names([], *everything) == ["__name__", "code", "job", "zone"]
    assert q.label_names([], B, B + 2000) == ["__name__", "code", "job"]  # "late" is outside the range
    assert q.label_names([[eq("__name__", "cpu")]], *everything) == ["__name__", "job"]
    assert q.label_values("job", [], *everything) == ["api", "web"]
    assert q.label_values("job", [[eq("job", "web")], [eq("code", "500")]], *everything) == ["api", "web"]
    assert q.label_values("__name__", [[eq("job", "api")]], *everything) == ["cpu", "http"]
    assert q.label_values("nothere", [], *everything) == []
    assert q.series([[eq("__name__", "cpu")]], *everything) == [SERIES["d"]]
    assert q.series([[Matcher(MatchType.RE, "code", ".+")]], *everything) == [SERIES["a"], SERIES["b"]]
    assert q.series([[eq("__name__", "late")]], B, B + 2000) == []


async def test_queries_from_threads_while_appending(env: Env) -> None:
    tsdb = await env.open()
    q = tsdb.querier()
    stop = threading.Event()
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            while not stop.is_set():
                for s in q.select([Matcher(MatchType.RE, "__name__", "t.*")], B, B + DAY):
                    assert list(s.ts) == sorted(s.ts)
                q.label_values("i", [], B, B + DAY)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for step in range(300):
            tsdb.append_many([(labels(f"t{i % 3}", i=str(i)), float(step)) for i in range(20)], B + step * 1000)
            if step % 50 == 0:
                await tsdb.flush()
            await asyncio.sleep(0)
    finally:
        stop.set()
        await asyncio.to_thread(thread.join)
    assert errors == []
    assert sum(len(s.ts) for s in select_all(tsdb)) == 300 * 20


def select_all(tsdb: TSDB) -> list[SeriesData]:
    return tsdb.querier().select([Matcher(MatchType.RE, "__name__", ".+")], B - DAY, B + DAY)


async def test_repeated_queries_hit_the_decoded_chunk_cache(env: Env) -> None:
    tsdb = await env.open()
    for i in range(240):
        tsdb.append(labels("m"), B + i * 15_000, float(i))
    await maintain_at(env, tsdb, B + HOUR + 3 * MIN)
    first = one(tsdb, "m")
    before = tsdb.stats()
    second = one(tsdb, "m")
    after = tsdb.stats()
    assert points(first) == points(second)
    assert after["query_cache_misses_total"] == before["query_cache_misses_total"]
    assert after["query_cache_hits_total"] == before["query_cache_hits_total"] + 1
    assert after["query_cache_bytes"] > 0
    tsdb.clear_query_cache()
    assert points(one(tsdb, "m")) == points(first)
    assert tsdb.stats()["query_cache_misses_total"] == before["query_cache_misses_total"] + 1


# --- building blocks -----------------------------------------------------------------------------


def test_index_treats_empty_values_as_missing() -> None:
    index = SeriesIndex()
    sid = index.add((("__name__", "m"), ("x", "")))
    assert index.labels[sid] == (("__name__", "m"),)
    assert index.get((("__name__", "m"), ("x", ""))) == sid == index.get((("__name__", "m"),))
    assert index.match([eq("x", "")]) == {sid}
    index.remove(sid)
    assert len(index) == 0 and index.postings == {}


def test_sort_and_merge_points() -> None:
    ts, vs = sort_points([5, 1, 3, 1, 5], [1.0, 2.0, 3.0, 4.0, 5.0])
    assert (list(ts), list(vs)) == ([1, 3, 5], [4.0, 3.0, 5.0])
    m_ts, m_vs = merge_points(array("q", [1, 3]), array("d", [1.0, 3.0]), array("q", [2, 3]), array("d", [2.0, 9.0]))
    assert (list(m_ts), list(m_vs)) == ([1, 2, 3], [1.0, 2.0, 9.0])


def test_combining_rollups_equals_one_pass() -> None:
    samples = [(i * 7_000, v) for i, v in enumerate([3.0, math.nan, 1.0, STALE_NAN, 8.0, -2.0, math.nan, 4.0] * 20)]
    first, second = samples[::2], samples[1::2]

    def rollup_of(part: list[tuple[int, float]]) -> Rollup:
        return summarize(array("q", [t for t, _ in part]), array("d", [v for _, v in part]), BUCKET_1M)

    whole, merged = rollup_of(samples), combine(rollup_of(first), rollup_of(second), BUCKET_1M)
    for a, b in zip([whole.ts, *whole.columns()], [merged.ts, *merged.columns()], strict=True):
        assert len(a) == len(b)
        assert all(same(x, y) or x == y for x, y in zip(a, b, strict=True))


async def test_maintenance_is_idempotent(env: Env) -> None:
    tsdb = await env.open()
    for i in range(100):
        tsdb.append(labels("m"), B + i * MIN, float(i))
    for _ in range(3):
        await maintain_at(env, tsdb, B + 2 * HOUR + 3 * MIN)
    assert tsdb.stats()["compactions_total"] == 1
    assert points(one(tsdb, "m")) == [(B + i * MIN, float(i)) for i in range(100)]


# --- the engine over the TSDB ---------------------------------------------------------------------

EQUIVALENCE_QUERIES = [
    "g", "c", "sum by (k) (g)", "rate(c[5m])", "increase(c[10m])", "delta(g[5m])", "irate(c[5m])",
    "deriv(g[10m])", "predict_linear(g[15m], 600)", "max_over_time(g[15m])", "min_over_time(g[15m])",
    "avg_over_time(g[5m])", "sum_over_time(g[5m])", "count_over_time(g[5m])", "changes(g[10m])",
    "resets(c[15m])", "last_over_time(g[5m])", "stddev_over_time(g[10m])", "quantile_over_time(0.9, g[10m])",
    "sum(rate(c[5m] offset 10m))", "max_over_time(g[15m]) == min_over_time(g[15m])", "absent_over_time(g[1m])",
]


def _equivalence_samples() -> list[tuple[Labels, int, float]]:
    """Gauges that go up and down, counters with resets, stale markers, a series that stops and one that
    starts late, 15 s apart over 2.5 hours."""
    rng = random.Random(7)
    out = []
    for k in range(4):
        g, c = labels("g", k=str(k)), labels("c", k=str(k))
        total = 0.0
        for i in range(600):
            t = B + i * 15_000
            if k == 3 and i < 200:
                continue  # starts late
            if k == 2 and i > 450:
                continue  # stops
            value = STALE_NAN if (k == 1 and i % 97 == 5) else round(rng.uniform(0, 100), 1)
            if k == 0 and i % 50 < 5:
                value = 42.0  # flat stretches
            out.append((g, t, value))
            total = 0.0 if i % 133 == 7 else total + rng.uniform(0, 10)
            out.append((c, t, STALE_NAN if (k == 2 and i == 300) else round(total, 2)))
    return out


async def test_the_engine_answers_the_same_over_the_tsdb_as_over_memory(env: Env) -> None:
    """Instant queries over the head's views (with the compacted block kept, and after a restart joined with
    its chunks) agree with the engine over plain lists, including stale markers, resets and flat gauges."""
    from agent.promql.engine import Engine
    from agent.promql.memory import MemoryQueryable

    memory = MemoryQueryable()
    samples = _equivalence_samples()
    for series, t, v in samples:
        memory.add(series, t, v)
    tsdb = await env.open()
    engine = Engine()

    def answers(queryable: Any, t: int) -> list[str]:
        out = []
        for query in EQUIVALENCE_QUERIES:
            result = engine.instant_query(queryable, query, t)
            out.append(f"{query} @ {t}: " + repr(sorted((s.labels, bits(s.v)) for s in result)))
        return out

    checked = 0
    for minute in range(0, 150, 1):
        now = B + minute * MIN
        for series, t, v in samples:
            if now - MIN < t <= now:
                tsdb.append(series, t, v)
        if minute % 5 == 4:
            await maintain_at(env, tsdb, now)
        if minute >= 20 and minute % 3 == 0:
            for t in (now, now - 7_000):
                assert answers(tsdb.querier(), t) == answers(memory, t)
                checked += 1
    assert tsdb.stats()["compactions_total"] == 2
    await tsdb.flush()
    reopened = await env.open()
    for t in (B + 65 * MIN, B + 121 * MIN, B + 149 * MIN):
        assert answers(reopened.querier(), t) == answers(memory, t)
    assert checked > 80
