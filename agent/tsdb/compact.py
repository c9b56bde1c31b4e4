"""Chunk rows the TSDB writes: raw blocks from head samples (merged into what is stored), the
rollup edits that go with them, and a finished day's 1m/1h rollups. Runs in worker threads and
reads through a caller-given read-only connection; the caller writes the rows."""

from __future__ import annotations

import sqlite3
from array import array
from bisect import bisect_left
from itertools import groupby
from operator import itemgetter

from agent.tsdb import sql
from agent.tsdb.encoding import decode_chunk, encode_chunk
from agent.tsdb.head import merge_points
from agent.tsdb.rollup import (
    BLOCK_1H_MS,
    BLOCK_1M_MS,
    BUCKET_1H,
    BUCKET_1M,
    DAY_MS,
    TIER_1H,
    TIER_1M,
    TIER_RAW,
    Rollup,
    combine,
    splice,
    summarize,
)

ChunkRow = tuple[int, int, int, int, int, int, bytes]  # tier, series, block_start, min_t, max_t, points, data


class _Edits:
    """Changes to one rollup chunk: splices (lo, hi, points) replace the points in [lo, hi);
    merges are combined bucket by bucket (samples whose raw block is gone). They never overlap."""

    __slots__ = ("merges", "splices")

    def __init__(self) -> None:
        self.splices: list[tuple[int, int, Rollup]] = []
        self.merges: list[Rollup] = []


def floor_to(t: int, step: int) -> int:
    return (t // step) * step


def split_blocks(ts: array, values: array, block_ms: int) -> list[tuple[int, array, array]]:
    """Sorted points cut at block boundaries: (block_start, ts, values) per block."""
    out = []
    i, n = 0, len(ts)
    while i < n:
        start = floor_to(ts[i], block_ms)
        j = bisect_left(ts, start + block_ms, i)
        out.append((start, ts[i:j], values[i:j]))
        i = j
    return out


def raw_row(sid: int, block: int, ts: array, values: array) -> ChunkRow:
    return (TIER_RAW, sid, block, ts[0], ts[-1], len(ts), encode_chunk(ts, [values]))


def rollup_row(tier: int, sid: int, block: int, points: Rollup) -> ChunkRow:
    # No decimal mode: rollups are read a month at a time, and plain columns decode 5x faster.
    blob = encode_chunk(points.ts, points.columns(), decimal=False)
    return (tier, sid, block, points.ts[0], points.ts[-1], len(points), blob)


def decode_rollup(blob: bytes | None) -> Rollup:
    return Rollup.from_columns(*decode_chunk(blob)) if blob else Rollup()


def compaction_rows(
    conn: sqlite3.Connection,
    snapshot: dict[int, tuple[array, array]],
    block_ms: int,
    raw_min: int,
    m1_min: int,
    h1_min: int,
    rolled_until: int,
) -> list[ChunkRow]:
    """Rows for head samples of closed blocks (per series: sorted, duplicate-free).

    Samples from `raw_min` on merge into their raw block's chunk (they win on equal timestamps);
    where that block's day is rolled up already (before `rolled_until`) its 1m/1h points are
    recomputed from the merged block. Older samples, whose raw blocks retention dropped, merge
    into the rollup buckets directly (1m from `m1_min`, 1h from `h1_min`; older ones are gone).
    """
    rows: list[ChunkRow] = []
    for sid, (ts, values) in snapshot.items():
        edits: dict[int, dict[int, _Edits]] = {TIER_1M: {}, TIER_1H: {}}
        cut = bisect_left(ts, raw_min)
        if cut < len(ts):
            pieces = split_blocks(ts[cut:], values[cut:], block_ms)
            stored = dict(conn.execute(sql.SERIES_CHUNKS, (TIER_RAW, sid, pieces[0][0], pieces[-1][0])).fetchall())
            for block, b_ts, b_values in pieces:
                blob = stored.get(block)
                if blob is not None:
                    old_ts, (old_values,) = decode_chunk(blob)
                    b_ts, b_values = merge_points(old_ts, old_values, b_ts, b_values)
                rows.append(raw_row(sid, block, b_ts, b_values))
                if block < rolled_until:
                    end = block + block_ms
                    edits[TIER_1M].setdefault(floor_to(block, BLOCK_1M_MS), _Edits()).splices.append(
                        (block, end, summarize(b_ts, b_values, BUCKET_1M))
                    )
                    edits[TIER_1H].setdefault(floor_to(block, BLOCK_1H_MS), _Edits()).splices.append(
                        (block, end, summarize(b_ts, b_values, BUCKET_1H))
                    )
        if cut:
            old_ts, old_values = ts[:cut], values[:cut]
            for tier, floor_t, tier_block, width in (
                (TIER_1M, m1_min, BLOCK_1M_MS, BUCKET_1M),
                (TIER_1H, h1_min, BLOCK_1H_MS, BUCKET_1H),
            ):
                keep = bisect_left(old_ts, floor_t)
                for block, b_ts, b_values in split_blocks(old_ts[keep:], old_values[keep:], tier_block):
                    edits[tier].setdefault(block, _Edits()).merges.append(summarize(b_ts, b_values, width))
        rows += _apply_edits(conn, sid, edits)
    return rows


def _apply_edits(conn: sqlite3.Connection, sid: int, edits: dict[int, dict[int, _Edits]]) -> list[ChunkRow]:
    rows = []
    for tier, width in ((TIER_1M, BUCKET_1M), (TIER_1H, BUCKET_1H)):
        by_block = edits[tier]
        if not by_block:
            continue
        blocks = sorted(by_block)
        stored = dict(conn.execute(sql.SERIES_CHUNKS, (tier, sid, blocks[0], blocks[-1])).fetchall())
        for block in blocks:
            points = decode_rollup(stored.get(block))
            for lo, hi, fresh in by_block[block].splices:
                points = splice(points, fresh, lo, hi)
            for fresh in by_block[block].merges:
                points = combine(points, fresh, width)
            if len(points):
                rows.append(rollup_row(tier, sid, block, points))
    return rows


def day_rollup_rows(conn: sqlite3.Connection, day: int) -> list[ChunkRow]:
    """Every series' 1m chunk for `day`, and its 30-day 1h chunk with the day's hours spliced in."""
    raw = conn.execute(sql.BLOCK_CHUNKS, (TIER_RAW, day, day + DAY_MS)).fetchall()
    h1_block = floor_to(day, BLOCK_1H_MS)
    h1_stored = {sid: blob for sid, _, blob in conn.execute(sql.BLOCK_CHUNKS, (TIER_1H, h1_block, h1_block + 1))}
    rows: list[ChunkRow] = []
    for sid, group in groupby(raw, key=itemgetter(0)):
        ts, values = array("q"), array("d")
        for _, _, blob in group:
            b_ts, (b_values,) = decode_chunk(blob)
            ts += b_ts
            values += b_values
        if not ts:
            continue
        rows.append(rollup_row(TIER_1M, sid, day, summarize(ts, values, BUCKET_1M)))
        hourly = splice(decode_rollup(h1_stored.get(sid)), summarize(ts, values, BUCKET_1H), day, day + DAY_MS)
        rows.append(rollup_row(TIER_1H, sid, h1_block, hourly))
    return rows
