"""Reading the TSDB from query threads: read-only SQLite connections, decoded-chunk cache, Querier.

The engine evaluates in worker threads; nothing here touches the event loop or the store's
connections. Each thread gets its own `mode=ro` connection. Decoded chunks are cached by chunk id
(ids are never reused and a rewritten chunk gets a new one), so repeated dashboard queries skip
decompression.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import urllib.parse
from array import array
from bisect import bisect_left, bisect_right
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import TYPE_CHECKING

from agent.promql.ast import Matcher
from agent.promql.values import Labels, SeriesData, SeriesView, series_of_view, views_of
from agent.tsdb import sql
from agent.tsdb.encoding import decode_chunk
from agent.tsdb.head import NO_DROP, last_drop, merge_points
from agent.tsdb.rollup import BLOCK_1H_MS, BLOCK_1M_MS, TIER_1H, TIER_1M, TIER_RAW

if TYPE_CHECKING:
    from agent.tsdb.db import TSDB

_MAX_PARAMS = 500
_SORT_KEYS_MAX = 200_000
_RECENT_MAX = 256


_Chunk = tuple[int, array, list[array]]  # series id, timestamps, value columns


class ReaderClosed(Exception):
    """The TSDB was closed; its read connections are gone."""


class ChunkReader:
    def __init__(self, path: str, cache_bytes: int):
        self._uri = "file:" + urllib.parse.quote(os.path.abspath(path)) + "?mode=ro"
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._generation = 0
        self._closed = False
        self._cache: OrderedDict[int, tuple[array, list[array]]] = OrderedDict()
        self._cache_bytes = 0
        self._cache_limit = cache_bytes
        self.cache_hits = 0
        self.cache_misses = 0

    def connection(self) -> sqlite3.Connection:
        with self._lock:
            if self._closed:
                raise ReaderClosed("the TSDB is closed")
            generation = self._generation
        cached = getattr(self._local, "conn", None)
        if cached is not None and cached[0] == generation:
            return cached[1]
        conn = sqlite3.connect(self._uri, uri=True, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA busy_timeout=5000")
        conn.execute("PRAGMA query_only=ON")
        with self._lock:
            self._connections.append(conn)
        self._local.conn = (generation, conn)
        return conn

    def read(self, tier: int, sids: Sequence[int], lo_block: int, hi_block: int) -> list[_Chunk]:
        """(series id, ts, columns) of the series' chunks with block_start in [lo_block, hi_block], by
        series then time. The arrays may be shared with the cache: callers copy, never modify."""
        conn = self.connection()
        rows: list[tuple[int, int]] = []
        blobs: dict[int, bytes] = {}
        conn.execute("BEGIN")  # ids and blobs from one snapshot
        try:
            for i in range(0, len(sids), _MAX_PARAMS):
                batch = list(sids[i : i + _MAX_PARAMS])
                rows += conn.execute(sql.select_chunk_ids(len(batch)), (tier, *batch, lo_block, hi_block)).fetchall()
            cached = self._cached([chunk_id for chunk_id, _ in rows])
            missing = [chunk_id for chunk_id, _ in rows if chunk_id not in cached]
            for i in range(0, len(missing), _MAX_PARAMS):
                batch = missing[i : i + _MAX_PARAMS]
                blobs.update(conn.execute(sql.select_chunk_data(len(batch)), batch).fetchall())
        finally:
            conn.execute("COMMIT")
        out = []
        for chunk_id, sid in rows:
            hit = cached.get(chunk_id)
            ts, columns = hit if hit is not None else self._decode(chunk_id, blobs[chunk_id])
            out.append((sid, ts, columns))
        return out

    def _cached(self, chunk_ids: list[int]) -> dict[int, tuple[array, list[array]]]:
        out = {}
        with self._lock:
            for chunk_id in chunk_ids:
                hit = self._cache.get(chunk_id)
                if hit is not None:
                    self._cache.move_to_end(chunk_id)
                    out[chunk_id] = hit
            self.cache_hits += len(out)
        return out

    def _decode(self, chunk_id: int, blob: bytes) -> tuple[array, list[array]]:
        ts, columns = decode_chunk(blob)
        size = 8 * len(ts) * (1 + len(columns)) + 200
        with self._lock:
            self.cache_misses += 1
            if self._cache_limit > 0 and chunk_id not in self._cache:
                self._cache[chunk_id] = (ts, columns)
                self._cache_bytes += size
                while self._cache_bytes > self._cache_limit and self._cache:
                    _, (old_ts, old_cols) = self._cache.popitem(last=False)
                    self._cache_bytes -= 8 * len(old_ts) * (1 + len(old_cols)) + 200
        return ts, columns

    @property
    def cache_bytes(self) -> int:
        return self._cache_bytes

    @property
    def cache_entries(self) -> int:
        return len(self._cache)

    def clear_cache(self) -> None:
        with self._lock:
            self._cache.clear()
            self._cache_bytes = 0

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._generation += 1
            connections, self._connections = self._connections, []
            self._cache.clear()
            self._cache_bytes = 0
        for conn in connections:
            conn.close()


@dataclass(slots=True)
class HeadView:
    """What a query needs from memory, copied under the TSDB's lock."""

    labels: dict[int, Labels]  # in label order
    head: dict[int, tuple[array, array, int]]  # ts, values, SeriesHead.drop
    raw_min: int
    m1_min: int
    h1_min: int
    block_ms: int


_Piece = tuple[array, list[array], int, int]  # a chunk's arrays and the slice [i, j) of them in range


def _fill(target: array, offset: int, source: array, i: int, j: int) -> None:
    """target[offset : offset + j - i] = source[i:j], as one memcpy (8-byte items)."""
    memoryview(target).cast("B")[8 * offset : 8 * (offset + j - i)] = memoryview(source).cast("B")[8 * i : 8 * j]


def _concat(pieces: list[_Piece], ncols: int, extra: int = 0) -> tuple[array, list[array]]:
    """The pieces' points in one set of arrays (they come sorted and do not overlap), with room for
    `extra` more points at the end."""
    total = sum(j - i for _, _, i, j in pieces)
    ts, columns = array("q", [0]) * (total + extra), [array("d", [0.0]) * (total + extra) for _ in range(ncols)]
    offset = 0
    for p_ts, p_columns, i, j in pieces:
        _fill(ts, offset, p_ts, i, j)
        for column, p_column in zip(columns, p_columns, strict=True):
            _fill(column, offset, p_column, i, j)
        offset += j - i
    return ts, columns


def _raw_points(pieces: list[_Piece], head: tuple[array, array, int] | None) -> tuple[array, array]:
    if not pieces:
        return (head[0], head[1]) if head is not None else (array("q"), array("d"))
    if len(pieces) == 1:
        ts, (values,), i, j = pieces[0]
        raw_t, raw_v = ts[i:j], values[i:j]
    else:
        raw_t, (raw_v,) = _concat(pieces, 1)
    if head is not None:
        raw_t, raw_v = merge_points(raw_t, raw_v, head[0], head[1])
    return raw_t, raw_v


def join_newest(labels: Labels, old: tuple[array, array, int] | None, points: tuple[array, array, int] | None,
                mint: int, maxt: int) -> SeriesData | None:
    """A series over [mint, maxt] from its points in the newest compacted block (`old`, with their `last_drop`)
    and in the head (`points`, already cut to the range, with the head's drop); None without points."""
    if old is None:
        if points is None:
            return None
        ts, values, drop = points
        return SeriesData(labels, ts, values, None, None, None, None, drop)
    old_t, old_v, old_drop = old
    i = 0 if old_t[0] >= mint else bisect_left(old_t, mint)
    j = len(old_t) if old_t[-1] <= maxt else bisect_right(old_t, maxt, i)
    if points is None:
        if i < j:
            return SeriesData(labels, old_t[i:j], old_v[i:j], None, None, None, None, old_drop)
        return None
    new_t, new_v, new_drop = points
    if i == j:
        return SeriesData(labels, new_t, new_v, None, None, None, None, new_drop)
    before_t, before_v = old_t[j - 1], old_v[j - 1]
    if new_t[0] > before_t:
        # The usual case: the head starts after the block. A drop at the seam counts like any other.
        seam = new_t[0] if not new_v[0] >= before_v else NO_DROP
        drop = max(old_drop, seam, new_drop)
        return SeriesData(labels, old_t[i:j] + new_t, old_v[i:j] + new_v, None, None, None, None, drop)
    # samples imported into the block since it was compacted
    ts, values = merge_points(old_t[i:j], old_v[i:j], new_t, new_v)
    return SeriesData(labels, ts, values)


class Querier:
    """`values.Queryable` over a TSDB: head + raw chunks, older ranges from the rollup tiers."""

    def __init__(self, tsdb: TSDB, reader: ChunkReader):
        self._tsdb = tsdb
        self._reader = reader
        self._recent: dict[tuple[tuple[Matcher, ...], int, int], tuple[SeriesView, ...]] = {}
        self._recent_version = -1
        self._newest: dict[int, tuple[array, array, int] | None] = {}
        """Series id -> points of the newest compacted block and their `last_drop` (None: no points);
        see `_with_newest_block`."""
        self._newest_generation: tuple[int, int] = (0, -1)
        self._newest_bytes = 0
        self._sort_keys: dict[int, str | None] = {}
        """Series id -> its sort string (see `_in_label_order`); plain dict reads and writes, shared by
        the query threads (a race only computes a string twice)."""
        self.recent_hits = 0  # selects answered from `_recent` (approximate: query threads race on it)
        self.recent_stored = 0  # head-only answers kept there

    def select(self, matchers: Sequence[Matcher], mint: int, maxt: int) -> list[SeriesData]:
        version = self._tsdb._head.version
        views = self._head_views(version, matchers, mint, maxt)
        if views is not None:
            return [series_of_view(view) for view in views]
        return self._select_stored(version, matchers, mint, maxt)

    def select_views(self, matchers: Sequence[Matcher], mint: int, maxt: int) -> list[SeriesView]:
        version = self._tsdb._head.version
        views = self._head_views(version, matchers, mint, maxt)
        if views is not None:
            return views
        return views_of(self._select_stored(version, matchers, mint, maxt))

    def _head_views(self, version: int, matchers: Sequence[Matcher], mint: int, maxt: int) -> list[SeriesView] | None:
        """Views of every series in range when no SQL is needed: the head holds every point in range, or it
        and the kept copy of the newest block do (rule evaluation and recent dashboards); else None."""
        key = (tuple(matchers), mint, maxt)
        cached = self._recent.get(key) if version == self._recent_version else None
        if cached is not None:
            self.recent_hits += 1
            return list(cached)
        out = self._tsdb.head_select(matchers, mint, maxt, self._in_label_order, self._newest_generation,
                                     self._newest)
        if out is not None:
            self._remember(version, key, out)
        return out

    def _select_stored(self, version: int, matchers: Sequence[Matcher], mint: int, maxt: int) -> list[SeriesData]:
        """`select` where the range reaches into chunks."""
        view = self._tsdb.head_view(matchers, mint, maxt, self._in_label_order)
        if not view.labels:
            return []
        compacted_until = self._compacted_until()
        if mint >= compacted_until:  # a compaction came between head_select and head_view
            head = view.head
            out = []
            for sid, labels in view.labels.items():
                points = head.get(sid)
                if points is not None:
                    out.append(SeriesData(labels, points[0], points[1], None, None, None, None, points[2]))
            return out
        if mint >= max(compacted_until - view.block_ms, view.raw_min):
            out = self._with_newest_block(view, mint, maxt, compacted_until)
            self._remember(version, (tuple(matchers), mint, maxt), views_of(out))
            return out
        return self._from_chunks(view, mint, maxt)

    def _from_chunks(self, view: HeadView, mint: int, maxt: int) -> list[SeriesData]:
        """The view's series over a range reaching past the newest compacted block: chunks of every tier."""
        sids = list(view.labels)
        rolled: dict[int, list[_Piece]] = {}
        h1_hi = min(maxt, min(view.raw_min, view.m1_min) - 1)
        self._collect(rolled, TIER_1H, BLOCK_1H_MS, sids, max(mint, view.h1_min), h1_hi)
        self._collect(rolled, TIER_1M, BLOCK_1M_MS, sids, max(mint, view.m1_min), min(maxt, view.raw_min - 1))
        raw: dict[int, list[_Piece]] = {}
        self._collect(raw, TIER_RAW, view.block_ms, sids, max(mint, view.raw_min), maxt)
        out = []
        for sid in sids:
            raw_t, raw_v = _raw_points(raw.get(sid, []), view.head.get(sid))
            if sid not in rolled:
                if len(raw_t):
                    out.append(SeriesData(view.labels[sid], raw_t, raw_v))
                continue
            # Rollup points first, raw points after them as count 1, sum = min = max = value.
            ts, columns = _concat(rolled[sid], 5, extra=len(raw_t))
            start, n = len(ts) - len(raw_t), len(raw_t)
            _fill(ts, start, raw_t, 0, n)
            for column in columns[:4]:
                _fill(column, start, raw_v, 0, n)
            _fill(columns[4], start, array("d", [1.0]) * n, 0, n)
            last, low, high, total, count = columns
            out.append(SeriesData(view.labels[sid], ts, last, count=count, sum=total, min=low, max=high))
        return out

    def _with_newest_block(self, view: HeadView, mint: int, maxt: int, compacted_until: int) -> list[SeriesData]:
        """The view's series over a range that starts in the newest compacted block: that block's points
        from a copy kept per series until the next compaction, the rest from the head.

        Windows of rules reach back there for a few minutes after every compaction (`[1h]` windows all
        the time), and reading the chunks anew for each would cost an SQLite query and a merge per
        series at every evaluation. A block's chunks change only in a compaction, which also drops the
        head's samples (`Head.compactions`); samples imported into the block later sit in the head
        until then and are merged in here.
        """
        block_start = compacted_until - view.block_ms
        generation = (compacted_until, self._tsdb._head.compactions)
        if self._newest_generation != generation:
            self._newest = {}
            self._newest_bytes = 0
            self._newest_generation = generation
        newest = self._newest
        labels = view.labels
        missing = [sid for sid in labels if sid not in newest]
        # Past the decoded-chunk cache's budget (the same memory again at most), points are read for
        # this query alone.
        once: dict[int, tuple[array, array, int] | None] = {}
        if missing:
            loaded: dict[int, list[tuple[array, array]]] = {}
            for sid, ts, columns in self._reader.read(TIER_RAW, sorted(missing), block_start, compacted_until - 1):
                loaded.setdefault(sid, []).append((ts, columns[0]))
            budget = self._tsdb.options.query_cache_bytes
            for sid in missing:
                chunks = loaded.get(sid)
                entry = None
                if chunks:
                    ts, values = chunks[0]
                    for more_ts, more_values in chunks[1:]:
                        ts, values = merge_points(ts, values, more_ts, more_values)
                    entry = (ts, values, last_drop(ts, values))
                size = 100 + (16 * len(entry[0]) if entry is not None else 0)
                if self._newest_bytes + size <= budget:
                    newest[sid] = entry
                    self._newest_bytes += size
                else:
                    once[sid] = entry
        head = view.head
        out = []
        for sid, series_labels in labels.items():
            joined = join_newest(series_labels, once[sid] if once and sid in once else newest.get(sid), head.get(sid),
                                 mint, maxt)
            if joined is not None:
                out.append(joined)
        return out

    def _remember(self, version: int, key: tuple[tuple[Matcher, ...], int, int], result: list[SeriesView]) -> None:
        """Keep a head-only answer until the head changes: the rules of a group often select the same
        series over the same range (a recording rule and the alert reading its input, `absent` beside a
        `rate`). `version` was read before the view was taken, so the answer holds at least what the head
        held at that version; an answer stored under a version that has passed is never read again."""
        if version != self._recent_version:
            self._recent = {}
            self._recent_version = version
        elif len(self._recent) >= _RECENT_MAX:
            self._recent.clear()
        self._recent[key] = tuple(result)  # the caller owns the list; every hit gets a list of its own
        self.recent_stored += 1

    def cache_sizes(self) -> dict[str, tuple[int, int | None]]:
        """Entries and bytes (None: not known; the answers share arrays with the head) of each cache."""
        return {
            "recent_selects": (len(self._recent), None),
            "newest_block": (len(self._newest), self._newest_bytes),
            "sort_keys": (len(self._sort_keys), None),
        }

    def clear_cache(self, name: str) -> int:
        """Drop one cache (a name of `cache_sizes`); returns its entries. New dicts rather than clear():
        a query thread holding the old one finishes with it undisturbed."""
        if name == "recent_selects":
            dropped = len(self._recent)
            self._recent, self._recent_version = {}, -1
        elif name == "newest_block":
            dropped = len(self._newest)
            self._newest, self._newest_bytes, self._newest_generation = {}, 0, (0, -1)
        elif name == "sort_keys":
            dropped = len(self._sort_keys)
            self._sort_keys = {}
        else:
            raise KeyError(name)
        return dropped

    def _in_label_order(self, sids: list[int], labels: Mapping[int, Labels]) -> list[int]:
        """`sids` sorted by their label sets. Comparing label tuples is slow (nested tuples, equal metric
        names first); each series' labels are kept flattened into one string instead, which sorts the
        same way (NUL, the separator, sorts before every other character). A series' labels never change
        while the TSDB is open, and ids are not reused, so the strings are kept by id."""
        if len(sids) < 2:
            return sids
        keys = self._sort_keys
        try:
            return sorted(sids, key=keys.__getitem__)
        except KeyError:
            if len(keys) > _SORT_KEYS_MAX:
                keys.clear()
            for sid in sids:
                if sid not in keys:
                    parts = list(chain.from_iterable(labels[sid]))
                    text = "\x00".join(parts)
                    # None where a name or value holds a NUL: those compare as tuples (below).
                    keys[sid] = text if text.count("\x00") == max(len(parts) - 1, 0) else None
        except TypeError:
            return sorted(sids, key=labels.__getitem__)
        try:
            return sorted(sids, key=keys.__getitem__)
        except TypeError:
            return sorted(sids, key=labels.__getitem__)

    def _compacted_until(self) -> int:
        """Chunks exist only for blocks before this watermark, and the head holds every sample from it on.

        Read after `head_view`: the watermark only grows, and a compaction drops the head's samples in
        the same locked step that moves it, so a view taken earlier holds every sample at or after the
        value read here.
        """
        return self._tsdb._wm.compacted_until

    def _collect(
        self, pieces: dict[int, list[_Piece]], tier: int, block: int, sids: list[int], lo: int, hi: int
    ) -> None:
        """Append (ts, columns, i, j) per chunk whose points [i, j) lie in [lo, hi]."""
        if lo > hi:
            return
        for sid, ts, columns in self._reader.read(tier, sids, (lo // block) * block, hi):
            i, j = bisect_left(ts, lo), bisect_right(ts, hi)
            if i < j:
                pieces.setdefault(sid, []).append((ts, columns, i, j))

    def label_names(self, matchers: Sequence[Sequence[Matcher]], mint: int, maxt: int) -> list[str]:
        return sorted(self._tsdb.label_names(matchers, mint, maxt))

    def label_values(self, name: str, matchers: Sequence[Sequence[Matcher]], mint: int, maxt: int) -> list[str]:
        return sorted(self._tsdb.label_values(name, matchers, mint, maxt))

    def series(self, matchers: Sequence[Sequence[Matcher]], mint: int, maxt: int) -> list[Labels]:
        return sorted(self._tsdb.series_labels(matchers, mint, maxt))
