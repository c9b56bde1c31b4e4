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

if TYPE_CHECKING:
    from agent.tsdb.db import TSDB

TIER_RAW, TIER_1M, TIER_1H = 0, 1, 2
_MAX_PARAMS = 500


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

    def decoded(self, chunk_id: int, blob: bytes) -> tuple[array, list[array]]:
        """The chunk's arrays; callers slice (copy) them and never modify them."""
        with self._lock:
            hit = self._cache.get(chunk_id)
            if hit is not None:
                self._cache.move_to_end(chunk_id)
                self.cache_hits += 1
                return hit
            self.cache_misses += 1
        ts, columns = decode_chunk(blob)
        if self._cache_limit <= 0:
            return ts, columns
        size = 8 * len(ts) * (1 + len(columns)) + 200
        with self._lock:
            if chunk_id not in self._cache:
                self._cache[chunk_id] = (ts, columns)
                self._cache_bytes += size
                while self._cache_bytes > self._cache_limit and self._cache:
                    _, (old_ts, old_cols) = self._cache.popitem(last=False)
                    self._cache_bytes -= 8 * len(old_ts) * (1 + len(old_cols)) + 200
        return ts, columns

    def chunks(self, tier: int, sids: Sequence[int], lo_block: int, hi_block: int) -> list[tuple[int, int, bytes]]:
        """(chunk id, series id, blob) of the series' chunks with block_start in [lo_block, hi_block],
        by series then time."""
        conn = self.connection()
        out: list[tuple[int, int, bytes]] = []
        for i in range(0, len(sids), _MAX_PARAMS):
            batch = list(sids[i : i + _MAX_PARAMS])
            out.extend(conn.execute(sql.select_chunks(len(batch)), (tier, *batch, lo_block, hi_block)).fetchall())
        return out

    @property
    def cache_bytes(self) -> int:
        return self._cache_bytes

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._generation += 1
            connections, self._connections = self._connections, []
            self._cache.clear()
            self._cache_bytes = 0
        for conn in connections:
            conn.close()

    def reopen(self) -> None:
        with self._lock:
            self._closed = False


@dataclass(slots=True)
class HeadView:
    """What a query needs from memory, copied under the TSDB's lock."""

    labels: dict[int, Labels]
    head: dict[int, tuple[array, array]]
    raw_min: int
    m1_min: int
    h1_min: int


_Piece = tuple[array, list[array], int, int]


def _concat(pieces: list[_Piece], ncols: int) -> tuple[array, list[array]]:
    """One copy of the pieces' points, in order (they come sorted and do not overlap)."""
    if len(pieces) == 1:
        ts, columns, i, j = pieces[0]
        return ts[i:j], [col[i:j] for col in columns]
    out_t, out_cols = array("q"), [array("d") for _ in range(ncols)]
    for ts, columns, i, j in pieces:
        lo, hi = 8 * i, 8 * j  # byte offsets: int64 and float64 items alike
        out_t.frombytes(memoryview(ts).cast("B")[lo:hi])
        for out, col in zip(out_cols, columns, strict=True):
            out.frombytes(memoryview(col).cast("B")[lo:hi])
    return out_t, out_cols


class Querier:
    """`values.Queryable` over a TSDB: head + raw chunks, older ranges from the rollup tiers."""

    def __init__(self, tsdb: TSDB, reader: ChunkReader, block_ms: int, rollup_blocks: dict[int, int]):
        self._tsdb = tsdb
        self._reader = reader
        self._block_ms = block_ms
        self._rollup_blocks = rollup_blocks

    def select(self, matchers: Sequence[Matcher], mint: int, maxt: int) -> list[SeriesData]:
        view = self._tsdb.head_view(matchers, mint, maxt)
        if not view.labels:
            return []
        sids = sorted(view.labels)
        raw_lo = max(mint, view.raw_min)
        m1_lo, m1_hi = max(mint, view.m1_min), min(maxt, view.raw_min - 1)
        h1_lo, h1_hi = max(mint, view.h1_min), min(maxt, min(view.raw_min, view.m1_min) - 1)
        pieces: dict[int, list[_Piece]] = {}
        self._collect(pieces, TIER_1H, sids, h1_lo, h1_hi)
        self._collect(pieces, TIER_1M, sids, m1_lo, m1_hi)
        rollups = {sid: _concat(parts, 5) for sid, parts in pieces.items()}
        pieces = {}
        self._collect(pieces, TIER_RAW, sids, raw_lo, maxt)
        out = []
        for sid in sids:
            raw_t, (raw_v,) = _concat(pieces.get(sid, []), 1)
            head = view.head.get(sid)
            if head is not None:
                raw_t, raw_v = merge_points(raw_t, raw_v, *head)
            rolled = rollups.get(sid)
            if rolled is None:
                if len(raw_t):
                    out.append(SeriesData(view.labels[sid], raw_t, raw_v))
                continue
            ts, (last, low, high, total, count) = rolled
            ts += raw_t
            last += raw_v
            low += raw_v
            high += raw_v
            total += raw_v
            count += array("d", [1.0]) * len(raw_v)
            out.append(SeriesData(view.labels[sid], ts, last, count=count, sum=total, min=low, max=high))
        out.sort(key=lambda s: s.labels)
        return out

    def _collect(self, pieces: dict[int, list[_Piece]], tier: int, sids: list[int], lo: int, hi: int) -> None:
        """Append (ts, columns, i, j) per chunk: its points [i, j) lie in [lo, hi]."""
        if lo > hi:
            return
        block = self._block_ms if tier == TIER_RAW else self._rollup_blocks[tier]
        for chunk_id, sid, blob in self._reader.chunks(tier, sids, (lo // block) * block, hi):
            ts, columns = self._reader.decoded(chunk_id, blob)
            i, j = bisect_left(ts, lo), bisect_right(ts, hi)
            if i < j:
                pieces.setdefault(sid, []).append((ts, columns, i, j))

    def label_names(self, matchers: Sequence[Sequence[Matcher]], mint: int, maxt: int) -> list[str]:
        return sorted(self._tsdb.label_names(matchers, mint, maxt))

    def label_values(self, name: str, matchers: Sequence[Sequence[Matcher]], mint: int, maxt: int) -> list[str]:
        return sorted(self._tsdb.label_values(name, matchers, mint, maxt))

    def series(self, matchers: Sequence[Sequence[Matcher]], mint: int, maxt: int) -> list[Labels]:
        return sorted(self._tsdb.series_labels(matchers, mint, maxt))
