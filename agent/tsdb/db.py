"""The TSDB: series index, in-memory head, compressed chunks per tier in SQLite, rollups, retention.

Write path. Samples land in the head (per-series arrays) and in a pending buffer; `flush()`
writes the pending buffer as one compressed head segment (the write-ahead log), so a crash loses
at most one flush interval of collected samples. `import_batch()` writes its own segment in the
same way and returns after COMMIT. Samples for any time go to the head, older ones included.

Compaction (`maintain()`, or an import that left many samples in closed blocks) writes the head's
samples of every closed block (block end + 2 min grace) as one raw chunk per series and block,
merging into the chunk already there. Where a block's day has already been rolled up, its 1m/1h
rollup points are recomputed from the merged block. In the same transaction the head segments are
replaced by one checkpoint segment holding what stays in the head, so replay never sees a sample
twice and never misses one.

Rollups. Once a day is compacted the 1m points of every series for that day become one chunk
(tier 1, block = day) and its 1h points are spliced into the series' 30-day tier-2 chunk. Raw
blocks are deleted only after their day is rolled up, so a raw retention shorter than a day
keeps raw data until the day ends. Samples imported for times whose raw blocks are already gone
are merged straight into the rollup buckets (a duplicate timestamp is then counted twice).

Reading. Watermarks say which tier serves which time: raw from `raw_min`, 1m in
[m1_min, raw_min), 1h in [h1_min, min(m1_min, raw_min)). Retention moves a watermark in memory
before it deletes, so a query never falls into a gap.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from itertools import pairwise
from typing import Any

import aiosqlite
import structlog

from agent.promql.ast import Matcher
from agent.promql.values import Labels, Queryable, SeriesView
from agent.selfmetrics import SelfMetrics
from agent.store import Store
from agent.tsdb import sql
from agent.tsdb.compact import ChunkRow, compaction_rows, day_rollup_rows, floor_to
from agent.tsdb.head import Head, Pending, SeriesHead, decode_segment, encode_segment, sort_points
from agent.tsdb.index import SeriesIndex
from agent.tsdb.querier import ChunkReader, HeadView, Querier, join_newest
from agent.tsdb.rollup import BLOCK_1H_MS, BLOCK_1M_MS, DAY_MS, HOUR_MS, TIER_1H, TIER_1M, TIER_RAW

log = structlog.get_logger("vigil.tsdb")

GRACE_MS = 120_000  # a block closes this long after its end: late collector samples still fit
NO_TIME = -(1 << 62)  # watermark: nothing dropped yet
LATE_SAMPLES_COMPACT = 500_000  # an import leaving this many samples in closed blocks compacts at once

Segment = tuple[int, int, int, bytes]  # min_t, max_t, samples, data
_IMPORT_INLINE = 20_000  # bigger import batches are prepared in a worker thread
_ROLLUP_ROWS_PER_WRITE = 200
_IN_HEAD_MAX = 2048


class TSDBError(Exception):
    """The request cannot be stored (too many series, malformed batch, not open)."""


@dataclass
class TSDBOptions:
    retention_raw_ms: int = 48 * HOUR_MS
    retention_1m_ms: int = 30 * DAY_MS
    retention_1h_ms: int = 365 * DAY_MS
    flush_interval_s: float = 60.0
    block_ms: int = HOUR_MS
    max_series: int = 100_000
    query_cache_bytes: int = 32 << 20  # decoded chunks kept for repeated queries (0: none)


@dataclass
class Watermarks:
    compacted_until: int  # blocks before this are closed: collectors' samples older are refused
    rolled_until: int  # days before this have their 1m/1h rollups
    raw_min: int  # raw data exists from here on
    m1_min: int
    h1_min: int

    def meta(self) -> list[tuple[str, int]]:
        return [(k, getattr(self, k)) for k in ("compacted_until", "rolled_until", "raw_min", "m1_min", "h1_min")]


@dataclass
class _LoadedState:
    series: list[tuple[int, str]]
    meta: dict[str, int]
    spans: list[tuple[int, int, int]]
    segments: list[tuple[int, bytes]]
    tiers: list[tuple[int, int, int, int]]


def _labels_json(labels: Labels) -> str:
    return json.dumps([list(pair) for pair in labels], separators=(",", ":"))


def _labels_from_json(text: str) -> Labels:
    return tuple((str(k), str(v)) for k, v in json.loads(text))


async def _load(db: aiosqlite.Connection) -> _LoadedState:
    async def rows(query: str) -> list[Any]:
        return list(await (await db.execute(query)).fetchall())

    return _LoadedState(
        series=await rows(sql.LOAD_SERIES),
        meta=dict(await rows(sql.LOAD_META)),
        spans=await rows(sql.SERIES_SPANS),
        segments=await rows(sql.LOAD_SEGMENTS),
        tiers=await rows(sql.TIER_STATS),
    )


class TSDB:
    def __init__(
        self,
        store: Store,
        db_path: str,
        options: TSDBOptions | None = None,
        metrics: SelfMetrics | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ):
        self.options = options or TSDBOptions()
        block = self.options.block_ms
        if block <= 0 or block % HOUR_MS or DAY_MS % block:
            raise ValueError("block_ms must be a whole number of hours dividing a day")
        self.metrics = metrics  # instruments are the lead's: stats() carries every figure
        self._store = store
        self._db_path = db_path
        self._clock = clock
        self._block = block
        self._lock = threading.Lock()  # index, head, pending, watermarks: loop thread vs query threads
        self._write_lock = asyncio.Lock()  # flush, import, maintain: one at a time
        self._index = SeriesIndex()
        self._head = Head()
        self._pending = Pending()
        self._unsaved: set[int] = set()  # series whose row is not in the database yet
        self._span: dict[int, list[int]] = {}  # series -> [oldest, newest] sample time (bounds)
        self._in_head: dict[tuple[Matcher, ...], list[tuple[Labels, Labels, SeriesHead]]] = {}
        """Matchers -> the matching series in the head, in label order (see `head_select`), for the index
        generation and head membership in `_in_head_for`."""
        self._in_head_for = (-1, -1)
        self._wm = Watermarks(NO_TIME, NO_TIME, NO_TIME, NO_TIME, NO_TIME)
        self._accept_from = NO_TIME
        self._late = 0  # samples imported into closed blocks since the last compaction
        self._late_sids: set[int] = set()  # the series they went to
        self._head_from = NO_TIME
        """The head holds every sample from here on: `compacted_until`, or a block earlier when the last
        compaction kept the block it wrote (see `_compact`). Before `compacted_until` the head holds those kept
        points, which chunks hold too, and samples imported into compacted blocks (`_late_sids`), which they
        do not yet."""
        self._last_segment = 0
        self._reader = ChunkReader(db_path, self.options.query_cache_bytes)
        self._querier = Querier(self, self._reader)
        self._state = "new"
        self._tiers: dict[int, tuple[int, int, int]] = {}  # tier -> (chunks, oldest, bytes)
        self._counts = {
            "samples_appended_total": 0,
            "samples_imported_total": 0,
            "samples_out_of_bounds_total": 0,
            "samples_too_many_series_total": 0,
            "samples_expired_total": 0,
            "flushes_total": 0,
            "compactions_total": 0,
            "rollups_total": 0,
            "retention_runs_total": 0,
            "series_removed_total": 0,
        }
        self._durations = {"last_flush_seconds": 0.0, "last_compaction_seconds": 0.0, "last_maintain_seconds": 0.0}

    # --- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        """Load the index and watermarks, replay the head segments; after `store.open()`."""
        state = await self._store.read(_load)
        meta = state.meta
        if "compacted_until" not in meta:
            closed = floor_to(self._now_ms() - GRACE_MS, self._block)
            wm = Watermarks(closed, floor_to(closed, DAY_MS), NO_TIME, NO_TIME, NO_TIME)
            rows = [*wm.meta(), ("block_ms", self._block)]

            async def save(db: aiosqlite.Connection) -> None:
                await db.executemany(sql.SAVE_META, rows)

            await self._store.write(save)
        else:
            wm = Watermarks(**{f.name: meta[f.name] for f in fields(Watermarks)})
            stored_block = meta.get("block_ms", self._block)
            if stored_block != self._block:
                # Blocks of two sizes would overlap; the size is fixed when the database is created.
                log.warning("tsdb_block_size_kept", configured_ms=self._block, stored_ms=stored_block)
                self._block = stored_block
        with self._lock:
            for sid, text in state.series:
                self._index.add(_labels_from_json(text), sid)
            for sid, lo, hi in state.spans:
                if sid in self._index.labels:
                    self._span[sid] = [lo, hi]
            self._wm = wm
            self._accept_from = self._head_from = wm.compacted_until
            replayed = 0
            for seg_id, blob in state.segments:
                sids, ts, values = decode_segment(blob)
                for sid, t, v in zip(sids, ts, values, strict=True):
                    if sid in self._index.labels:
                        self._head.append(sid, t, v)
                        self._widen_span(sid, t)
                        replayed += 1
                        if t < wm.compacted_until:  # an import into a compacted block, not compacted again yet
                            self._late_sids.add(sid)
                self._last_segment = max(self._last_segment, seg_id)
            self._tiers = {tier: (count, oldest, size) for tier, count, oldest, size in state.tiers}
            self._state = "open"
        log.info("tsdb_opened", series=len(self._index), replayed_samples=replayed, segments=len(state.segments))

    async def close(self) -> None:
        """Final flush; later appends are dropped."""
        if self._state != "open":
            return
        try:
            await self.flush()
        finally:
            self._state = "closed"
            self._reader.close()

    def querier(self) -> Queryable:
        return self._querier

    # --- appends (loop thread) --------------------------------------------------------------

    def append(self, labels: Labels, t_ms: int, value: float) -> None:
        """One collected sample; in memory until the next flush."""
        with self._lock:
            self._check_open()
            self._append_locked(labels, int(t_ms), float(value))

    def append_many(self, items: Iterable[tuple[Labels, float]], t_ms: int) -> None:
        """A collector's snapshot: every sample at one timestamp."""
        t = int(t_ms)
        with self._lock:
            self._check_open()
            for labels, value in items:
                self._append_locked(labels, t, float(value))

    def _check_open(self) -> None:
        if self._state == "new":
            raise TSDBError("the TSDB is not open")

    def _append_locked(self, labels: Labels, t: int, value: float) -> None:
        if self._state != "open":
            return
        if t < self._accept_from:
            self._counts["samples_out_of_bounds_total"] += 1
            return
        sid = self._index.get(labels)
        if sid is None:
            if len(self._index) >= self.options.max_series:
                self._counts["samples_too_many_series_total"] += 1
                return
            sid = self._index.add(labels)
            self._unsaved.add(sid)
        self._widen_span(sid, t)
        self._head.append(sid, t, value)
        self._pending.append(sid, t, value)
        self._counts["samples_appended_total"] += 1

    def _widen_span(self, sid: int, t: int) -> None:
        span = self._span.get(sid)
        if span is None:
            self._span[sid] = [t, t]
        elif t > span[1]:
            span[1] = t
        elif t < span[0]:
            span[0] = t

    def _series_rows(self) -> list[tuple[int, str]]:
        labels = self._index.labels
        return [(sid, _labels_json(labels[sid])) for sid in self._unsaved if sid in labels]

    # --- flush ------------------------------------------------------------------------------

    async def flush(self) -> None:
        """Persist what was appended since the last flush (one head segment, one transaction)."""
        if self._state != "open":
            return
        async with self._write_lock:
            started = time.perf_counter()
            with self._lock:
                taken = self._pending.take()
                rows = self._series_rows()
            if not len(taken) and not rows:
                return
            try:
                segment = _segment(taken.sids, taken.ts, taken.values)
                seg_id = await self._store.write(lambda db: self._write_segment(db, rows, segment))
            except BaseException:
                with self._lock:
                    self._pending.put_back(taken)
                raise
            with self._lock:
                self._unsaved.difference_update(sid for sid, _ in rows)
                self._last_segment = max(self._last_segment, seg_id)
            self._counts["flushes_total"] += 1
            self._durations["last_flush_seconds"] = time.perf_counter() - started

    async def _write_segment(
        self, db: aiosqlite.Connection, rows: list[tuple[int, str]], segment: Segment | None
    ) -> int:
        """Series rows and one head segment; returns the segment's id (0: none written)."""
        if rows:
            await db.executemany(sql.SAVE_SERIES, rows)
        if segment is None:
            return 0
        cursor = await db.execute(sql.SAVE_SEGMENT, segment)
        return cursor.lastrowid or 0

    # --- import -----------------------------------------------------------------------------

    async def import_batch(
        self, series: Sequence[Labels], refs: Sequence[int], ts: Sequence[int], values: Sequence[float]
    ) -> int:
        """Store samples (`ts[i]`, `values[i]`) of series `series[refs[i]]`; durable when it returns.

        Returns the number of samples accepted: samples older than every tier's retention are
        skipped. Raises TSDBError, storing nothing, for too many new series or malformed columns.
        """
        n = len(ts)
        if len(refs) != n or len(values) != n:
            raise TSDBError("refs, timestamps and values must have the same length")
        if self._state != "open":
            raise TSDBError("the TSDB is not open")
        async with self._write_lock:
            with self._lock:
                sids = self._resolve_series(series)
                floor_t = min(self._wm.m1_min, self._wm.h1_min)
                closed = self._accept_from
            if n > _IMPORT_INLINE:  # keep the loop responsive: this is a Python pass over every sample
                prepared = await asyncio.to_thread(_prepare_import, sids, refs, ts, values, floor_t, closed)
            else:
                prepared = _prepare_import(sids, refs, ts, values, floor_t, closed)
            groups, expired, late, segment = prepared
            if not groups:
                self._counts["samples_expired_total"] += expired
                return 0
            with self._lock:
                rows = self._series_rows()
            seg_id = await self._store.write(lambda db: self._write_segment(db, rows, segment))
            with self._lock:
                for sid, (g_ts, g_values) in groups.items():
                    self._head.extend(sid, g_ts, g_values)
                    self._widen_span(sid, g_ts[0])
                    self._widen_span(sid, g_ts[-1])
                    if g_ts[0] < closed:
                        self._late_sids.add(sid)
                self._unsaved.difference_update(sid for sid, _ in rows)
                self._last_segment = max(self._last_segment, seg_id)
            stored = n - expired  # a later sample that replaced an equal timestamp still counts
            self._counts["samples_imported_total"] += stored
            self._counts["samples_expired_total"] += expired
            self._late += late
            if self._late >= LATE_SAMPLES_COMPACT:
                try:
                    await self._compact(self._now_ms())
                except Exception:  # the import is durable already; maintain() retries the compaction
                    log.exception("tsdb_compaction_failed")
            return stored

    def _resolve_series(self, series: Sequence[Labels]) -> list[int]:
        """Ids for the batch's label sets, creating the new ones (all or none: max_series)."""
        found = [self._index.get(labels) for labels in series]
        missing = {labels for labels, sid in zip(series, found, strict=True) if sid is None}
        if missing and len(self._index) + len(missing) > self.options.max_series:
            raise TSDBError(
                f"too many series: {len(self._index)} stored, {len(missing)} new, limit {self.options.max_series}"
            )
        out = []
        for labels, sid in zip(series, found, strict=True):
            if sid is None:
                sid = self._index.get(labels)
                if sid is None:
                    sid = self._index.add(labels)
                    self._unsaved.add(sid)
            out.append(sid)
        return out

    # --- maintenance ------------------------------------------------------------------------

    async def maintain(self, now_ms: int | None = None) -> None:
        """Compact closed blocks, roll up finished days, apply retention (the daemon: every minute)."""
        if self._state != "open":
            return
        now = self._now_ms() if now_ms is None else now_ms
        started = time.perf_counter()
        async with self._write_lock:
            changed = await self._compact(now)
            changed = await self._roll_up() or changed
            if await self._retain(now):
                await self._drop_dead_series()
                changed = True
            if changed:
                await self._refresh_tier_stats()
        self._durations["last_maintain_seconds"] = time.perf_counter() - started

    async def _compact(self, now: int) -> bool:
        """Write the head's samples of closed blocks to chunks and checkpoint the head segments;
        True if chunks were written.

        The head keeps the last block it wrote until the next compaction, when their size is within
        `query_cache_bytes`: rules' windows reach back into it for a while after every compaction (`[1h]`
        windows always), and are then served from the head alone."""
        started = time.perf_counter()
        target = floor_to(now - GRACE_MS, self._block)
        with self._lock:
            self._accept_from = max(self._accept_from, target)
            late = set(self._late_sids)
            snapshot = self._head.before(target, self._wm.compacted_until, late)
            if not snapshot:
                if target <= self._wm.compacted_until:
                    return False
                new_wm = replace(self._wm, compacted_until=target)
            else:
                new_wm = replace(self._wm, compacted_until=max(self._wm.compacted_until, target))
            wm = replace(self._wm)
            rows = self._series_rows()
            taken = self._pending.take() if snapshot else Pending()
            # What the chunks do not have afterwards: the clock may have been set back before compacted_until.
            remaining = self._head.from_time(max(target, self._wm.compacted_until)) if snapshot else None
            last_segment = self._last_segment
        try:
            chunks: list[ChunkRow] = []
            checkpoint = None
            if snapshot:
                chunks = await asyncio.to_thread(self._compaction_rows, snapshot, wm)
            if remaining is not None:
                checkpoint = await asyncio.to_thread(_segment, *remaining)

            async def write(db: aiosqlite.Connection) -> int:
                if rows:
                    await db.executemany(sql.SAVE_SERIES, rows)
                if chunks:
                    await db.executemany(sql.SAVE_CHUNK, chunks)
                seg_id = 0
                if snapshot:  # the checkpoint replaces every segment the snapshot covers
                    await db.execute(sql.DELETE_SEGMENTS_UPTO, (last_segment,))
                    if checkpoint is not None:
                        seg_id = (await db.execute(sql.SAVE_SEGMENT, checkpoint)).lastrowid or 0
                await db.executemany(sql.SAVE_META, new_wm.meta())
                return seg_id

            seg_id = await self._store.write(write)
        except BaseException:
            with self._lock:
                self._pending.put_back(taken)
            raise
        if target <= wm.compacted_until:  # imports alone: what the head held complete it still does
            keep_from = self._head_from
        elif 16 * sum(len(ts) for ts, _ in snapshot.values()) <= self.options.query_cache_bytes:
            keep_from = max(wm.compacted_until, target - self._block)
        else:
            keep_from = target
        with self._lock:
            self._head.drop_before(keep_from)
            self._head_from = keep_from
            self._wm.compacted_until = new_wm.compacted_until
            self._late_sids -= late
            self._unsaved.difference_update(sid for sid, _ in rows)
            self._last_segment = max(self._last_segment, seg_id)
        if not snapshot:
            return False
        self._late = 0
        self._counts["compactions_total"] += 1
        self._durations["last_compaction_seconds"] = time.perf_counter() - started
        return True

    def _compaction_rows(self, snapshot: dict[int, tuple[array, array]], wm: Watermarks) -> list[ChunkRow]:
        # A worker thread, reading through its own connection: that sees every committed write,
        # and nothing else writes chunks while the write lock is held.
        return compaction_rows(
            self._reader.connection(), snapshot, self._block, wm.raw_min, wm.m1_min, wm.h1_min, wm.rolled_until
        )

    def _day_rollup_rows(self, day: int) -> list[ChunkRow]:
        return day_rollup_rows(self._reader.connection(), day)

    async def _roll_up(self) -> bool:
        """1m and 1h rollups of every day whose blocks are all compacted; True if any."""
        rolled = False
        while self._wm.rolled_until + DAY_MS <= self._wm.compacted_until:
            day = self._wm.rolled_until
            chunks = await asyncio.to_thread(self._day_rollup_rows, day)
            new_wm = replace(self._wm, rolled_until=day + DAY_MS)
            # Several small transactions rather than one of a few MB: other writers get their turn
            # in between and SQLite's -wal file stays small. Rewriting the rows after a crash
            # half-way gives the same chunks again (the 1h splice replaces the day's hours).
            for start in range(0, len(chunks), _ROLLUP_ROWS_PER_WRITE):
                part = chunks[start : start + _ROLLUP_ROWS_PER_WRITE]
                await self._store.write(lambda db, part=part: db.executemany(sql.SAVE_CHUNK, part))
            await self._store.write(lambda db, wm=new_wm: db.executemany(sql.SAVE_META, wm.meta()))
            with self._lock:
                self._wm.rolled_until = new_wm.rolled_until
            self._counts["rollups_total"] += 1
            rolled = True
        return rolled

    async def _retain(self, now: int) -> bool:
        """Drop whole chunks past each tier's horizon; True if anything was dropped."""
        wm = self._wm
        o = self.options
        new_wm = replace(
            wm,
            raw_min=max(wm.raw_min, min(floor_to(now - o.retention_raw_ms, self._block), wm.rolled_until)),
            m1_min=max(wm.m1_min, min(floor_to(now - o.retention_1m_ms, BLOCK_1M_MS), wm.rolled_until)),
            h1_min=max(wm.h1_min, min(floor_to(now - o.retention_1h_ms, BLOCK_1H_MS), wm.rolled_until)),
        )
        if new_wm == wm:
            return False
        with self._lock:
            self._wm = new_wm  # queries read the coarser tier from now on, before the data goes

        async def write(db: aiosqlite.Connection) -> None:
            for tier, limit in ((TIER_RAW, new_wm.raw_min), (TIER_1M, new_wm.m1_min), (TIER_1H, new_wm.h1_min)):
                await db.execute(sql.DELETE_CHUNKS_BEFORE, (tier, limit))
            await db.executemany(sql.SAVE_META, new_wm.meta())

        try:
            await self._store.write(write)
        except BaseException:
            with self._lock:
                self._wm = replace(new_wm, raw_min=wm.raw_min, m1_min=wm.m1_min, h1_min=wm.h1_min)
            raise
        self._counts["retention_runs_total"] += 1
        return True

    async def _drop_dead_series(self) -> None:
        """Forget series with no sample left anywhere; narrow the others' time spans."""

        def spans() -> list[tuple[int, int, int]]:
            return self._reader.connection().execute(sql.SERIES_SPANS).fetchall()

        in_chunks = {sid: (lo, hi) for sid, lo, hi in await asyncio.to_thread(spans)}
        dead = []
        with self._lock:
            for sid in list(self._index.labels):
                bounds = in_chunks.get(sid)
                head = self._head.series.get(sid)
                head_lo = head.ts[0] if head is not None and len(head.ts) else None
                if bounds is None and head_lo is None:
                    if sid not in self._unsaved:
                        dead.append(sid)
                        self._index.remove(sid)
                        self._span.pop(sid, None)
                elif bounds is not None and sid in self._span:
                    self._span[sid][0] = bounds[0] if head_lo is None else min(bounds[0], min(head.ts))
        if dead:

            async def write(db: aiosqlite.Connection) -> None:
                await db.executemany(sql.DELETE_SERIES, [(sid,) for sid in dead])

            await self._store.write(write)
            self._counts["series_removed_total"] += len(dead)

    async def _refresh_tier_stats(self) -> None:
        def read() -> list[tuple[int, int, int, int]]:
            return self._reader.connection().execute(sql.TIER_STATS).fetchall()

        self._tiers = {tier: (count, oldest, size) for tier, count, oldest, size in await asyncio.to_thread(read)}

    # --- reads (query threads) --------------------------------------------------------------

    def head_view(self, matchers: Sequence[Matcher], mint: int, maxt: int,
                  order: Callable[[list[int], Mapping[int, Labels]], list[int]]) -> HeadView:
        """For the querier: matching series with data in range (in `order`), their head points, watermarks."""
        with self._lock:
            wm = self._wm
            labels: dict[int, Labels] = {}
            head: dict[int, tuple[array, array, int]] = {}
            all_labels = self._index.labels
            spans = self._span
            head_range = self._head.range
            late = self._late_sids
            lo_t = max(mint, wm.raw_min)
            # Before compacted_until, chunks have what the head kept of compacted blocks: only imports count.
            kept_lo_t = max(lo_t, wm.compacted_until)
            for sid in self._index.match_ordered(matchers, order):
                span = spans.get(sid)
                if span is None or span[1] < mint or span[0] > maxt:
                    continue
                labels[sid] = all_labels[sid]
                points = head_range(sid, lo_t if sid in late else kept_lo_t, maxt)
                if points is not None:
                    head[sid] = points
            return HeadView(labels, head, wm.raw_min, wm.m1_min, wm.h1_min, self._block)

    def head_select(self, matchers: Sequence[Matcher], mint: int, maxt: int,
                    order: Callable[[list[int], Mapping[int, Labels]], list[int]],
                    newest_generation: tuple[int, int],
                    newest: Mapping[int, tuple[array, array, int] | None]) -> list[SeriesView] | None:
        """For the querier: views of the matching series' points in [mint, maxt] in `order`, when the head
        holds every point in range, or when the range starts in the newest compacted block and `newest` (the
        querier's copy of that block's points, kept for `newest_generation`) has every matching series; else
        None (see `head_view`).

        Rule evaluation lands here for nearly every selector, so this is `head_view` plus the querier's
        sorting without the dicts between them, the matching kept by the index, and `Head.range` inline.
        Views of head-only series are the head's own arrays (see Head: the points in them never change).
        A series with points in range has a span that overlaps it (spans bound every point), so spans are
        looked at only for a series missing from `newest`."""
        with self._lock:
            wm = self._wm
            lo_t = max(mint, wm.raw_min)
            labels = self._index.labels
            unnamed = self._index.unnamed
            if mint < self._head_from or mint < wm.raw_min:
                if (mint < max(wm.compacted_until - self._block, wm.raw_min) or self._head_from < wm.compacted_until
                        or newest_generation != (wm.compacted_until, self._head.compactions)):
                    return None
                head_range = self._head.range
                joined: list[SeriesView] = []
                for sid in self._index.match_ordered(matchers, order):
                    if sid not in newest:
                        span = self._span.get(sid)
                        if span is None or span[1] < mint or span[0] > maxt:
                            continue  # no points in range: head_view leaves it out too
                        return None
                    series = join_newest(labels[sid], newest[sid], head_range(sid, lo_t, maxt), mint, maxt)
                    if series is not None:
                        joined.append((series.labels, unnamed[sid], series.ts, series.values, 0, len(series.ts),
                                       series.last_drop, series.last_drop, None))
                return joined
            out: list[SeriesView] = []
            for series_labels, series_unnamed, series in self._head_members(matchers, order):
                if not series.ordered:
                    self._head._settle(series)
                ts = series.ts
                n = len(ts)
                if not n:
                    continue
                # As in Head.range: the series' even spacing mostly locates the start without a search.
                last_t = ts[-1]
                hi = n if last_t <= maxt else bisect_right(ts, maxt)
                first_t = ts[0]
                lo = 0
                if first_t < lo_t:
                    guess = n - 1 - (last_t - lo_t) * (n - 1) // (last_t - first_t) if last_t > lo_t else n
                    lo = guess if 0 < guess < hi and ts[guess] >= lo_t > ts[guess - 1] else bisect_left(ts, lo_t, 0, hi)
                if lo < hi:
                    out.append((series_labels, series_unnamed, ts, series.values, lo, hi, series.drop, series.nan,
                                None))
            return out

    def _head_members(self, matchers: Sequence[Matcher], order: Callable[[list[int], Mapping[int, Labels]], list[int]]
                      ) -> list[tuple[Labels, Labels, SeriesHead]]:
        """(labels, labels without `__name__`, head) of the matching series the head has, in `order`; kept until
        a series comes or goes, in the index or the head (the lock is held)."""
        key = tuple(matchers)
        index, head = self._index, self._head
        made_for = (index.generation, head.members)
        if made_for != self._in_head_for:  # all of them are out of date: none is kept
            self._in_head = {}
            self._in_head_for = made_for
        kept = self._in_head.get(key)
        if kept is not None:
            return kept
        heads, labels, unnamed = head.series, index.labels, index.unnamed
        members = [(labels[sid], unnamed[sid], heads[sid]) for sid in index.match_ordered(matchers, order)
                   if sid in heads]
        if len(self._in_head) >= _IN_HEAD_MAX:
            self._in_head = {}
        self._in_head[key] = members
        return members

    def _matching(self, matcher_sets: Sequence[Sequence[Matcher]], mint: int, maxt: int) -> list[int]:
        if matcher_sets:
            sids: set[int] = set()
            for matchers in matcher_sets:
                sids |= self._index.match(matchers)
        else:
            sids = set(self._index.labels)
        out = []
        for sid in sids:
            span = self._span.get(sid)
            if span is not None and span[0] <= maxt and span[1] >= mint:
                out.append(sid)
        return out

    def label_names(self, matcher_sets: Sequence[Sequence[Matcher]], mint: int, maxt: int) -> set[str]:
        with self._lock:
            return self._index.label_names(self._matching(matcher_sets, mint, maxt))

    def label_values(self, name: str, matcher_sets: Sequence[Sequence[Matcher]], mint: int, maxt: int) -> set[str]:
        with self._lock:
            return self._index.label_values(name, self._matching(matcher_sets, mint, maxt))

    def series_labels(self, matcher_sets: Sequence[Sequence[Matcher]], mint: int, maxt: int) -> list[Labels]:
        with self._lock:
            return [self._index.labels[sid] for sid in self._matching(matcher_sets, mint, maxt)]

    # --- status -----------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Figures for /status and self metrics (counters are totals since start)."""
        with self._lock:
            wm = self._wm
            out: dict[str, Any] = {
                "series": len(self._index),
                "head_series": len(self._head.series),
                "head_samples": self._head.samples,
                "pending_samples": len(self._pending),
                "watermarks": {k: (None if v == NO_TIME else v) for k, v in wm.meta()},
            }
            head_oldest = min((s.ts[0] for s in self._head.series.values() if len(s.ts)), default=None)
        names = {TIER_RAW: "raw", TIER_1M: "1m", TIER_1H: "1h"}
        out["chunks"] = {names[t]: self._tiers.get(t, (0, 0, 0))[0] for t in names}
        out["chunk_bytes"] = {names[t]: self._tiers.get(t, (0, 0, 0))[2] or 0 for t in names}
        oldest = {names[t]: (self._tiers[t][1] if t in self._tiers else None) for t in names}
        if head_oldest is not None and (oldest["raw"] is None or head_oldest < oldest["raw"]):
            oldest["raw"] = head_oldest
        out["oldest_ms"] = oldest
        out["disk_bytes"] = sum(
            os.path.getsize(p) for p in (self._db_path, self._db_path + "-wal") if os.path.exists(p)
        )
        out["query_cache_bytes"] = self._reader.cache_bytes
        out["query_cache_hits_total"] = self._reader.cache_hits
        out["query_cache_misses_total"] = self._reader.cache_misses
        out.update(self._counts)
        out.update(self._durations)
        return out

    def clear_query_cache(self) -> None:
        """Forget decoded chunks (benchmarks measure cold reads with it)."""
        self._reader.clear_cache()

    def caches(self) -> dict[str, dict[str, Any]]:
        """Each query cache's entries, bytes (None: unknown), hits and misses (None: not counted)."""
        q = self._querier
        sizes = q.cache_sizes()
        out = {"decoded_chunks": {"entries": self._reader.cache_entries, "bytes": self._reader.cache_bytes,
                                  "hits": self._reader.cache_hits, "misses": self._reader.cache_misses,
                                  "max_bytes": self.options.query_cache_bytes}}
        for name, (entries, size) in sizes.items():
            out[name] = {"entries": entries, "bytes": size, "hits": None, "misses": None}
        out["recent_selects"].update(hits=q.recent_hits, misses=q.recent_stored)
        out["newest_block"]["max_bytes"] = self.options.query_cache_bytes
        return out

    def clear_cache(self, name: str) -> int:
        """Drop one of `caches()`; returns its entries. Answers stay the same, only slower until it refills."""
        if name == "decoded_chunks":
            dropped = self._reader.cache_entries
            self._reader.clear_cache()
            return dropped
        return self._querier.clear_cache(name)

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)


def _segment(sids: array, ts: array, values: array) -> Segment | None:
    """A head segment row (min_t, max_t, samples, blob), or None for no samples."""
    if not len(ts):
        return None
    return (min(ts), max(ts), len(ts), encode_segment(sids, ts, values))


def _prepare_import(
    sids: list[int], refs: Sequence[int], ts: Sequence[int], values: Sequence[float], floor_t: int, closed: int
) -> tuple[dict[int, tuple[array, array]], int, int, Segment | None]:
    """The batch grouped per series, samples past every retention dropped, the count of samples
    in closed blocks, and the head segment to write."""
    groups, expired = _group_samples(sids, refs, ts, values, floor_t)
    seg_sids, seg_ts, seg_values = array("q"), array("q"), array("d")
    late = 0
    for sid, (g_ts, g_values) in groups.items():
        seg_sids += array("q", [sid]) * len(g_ts)
        seg_ts += g_ts
        seg_values += g_values
        late += bisect_left(g_ts, closed)
    return groups, expired, late, _segment(seg_sids, seg_ts, seg_values)


def _group_samples(
    sids: list[int], refs: Sequence[int], ts: Sequence[int], values: Sequence[float], floor_t: int
) -> tuple[dict[int, tuple[array, array]], int]:
    """Per series: sorted, duplicate-free points (last given wins); and the count of samples
    older than `floor_t` (past every retention), which are left out."""
    by_ref: dict[int, tuple[array, array]] = {}
    expired = 0
    try:
        for ref, t, v in zip(refs, ts, values, strict=True):
            if t < floor_t:
                expired += 1
                continue
            group = by_ref.get(ref)
            if group is None:
                group = by_ref[ref] = (array("q"), array("d"))
            group[0].append(t)
            group[1].append(v)
        by_sid: dict[int, tuple[array, array]] = {}
        for ref, (g_ts, g_values) in by_ref.items():
            if ref < 0:
                raise IndexError(f"negative series reference {ref}")
            sid = sids[ref]
            if sid in by_sid:
                g_ts, g_values = by_sid[sid][0] + g_ts, by_sid[sid][1] + g_values
            by_sid[sid] = (g_ts, g_values)
    except (TypeError, OverflowError, IndexError) as exc:
        raise TSDBError(f"malformed sample batch: {exc}") from None
    for sid, (g_ts, g_values) in by_sid.items():
        if any(a >= b for a, b in pairwise(g_ts)):
            by_sid[sid] = sort_points(g_ts, g_values)
    return by_sid, expired
