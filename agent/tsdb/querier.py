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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from agent.promql.ast import Matcher
from agent.promql.values import Labels, SeriesData
from agent.tsdb import sql
from agent.tsdb.encoding import decode_chunk
from agent.tsdb.head import merge_points
from agent.tsdb.rollup import BLOCK_1H_MS, BLOCK_1M_MS, TIER_1H, TIER_1M, TIER_RAW

if TYPE_CHECKING:
    from agent.tsdb.db import TSDB

_MAX_PARAMS = 500


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

    labels: dict[int, Labels]
    head: dict[int, tuple[array, array]]
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


def _raw_points(pieces: list[_Piece], head: tuple[array, array] | None) -> tuple[array, array]:
    if len(pieces) == 1:
        ts, (values,), i, j = pieces[0]
        raw_t, raw_v = ts[i:j], values[i:j]
    else:
        raw_t, (raw_v,) = _concat(pieces, 1)
    if head is not None:
        raw_t, raw_v = merge_points(raw_t, raw_v, *head)
    return raw_t, raw_v


class Querier:
    """`values.Queryable` over a TSDB: head + raw chunks, older ranges from the rollup tiers."""

    def __init__(self, tsdb: TSDB, reader: ChunkReader):
        self._tsdb = tsdb
        self._reader = reader

    def select(self, matchers: Sequence[Matcher], mint: int, maxt: int) -> list[SeriesData]:
        view = self._tsdb.head_view(matchers, mint, maxt)
        if not view.labels:
            return []
        sids = sorted(view.labels)
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
        out.sort(key=lambda s: s.labels)
        return out

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
