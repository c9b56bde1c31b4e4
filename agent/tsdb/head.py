"""The in-memory head: samples of the blocks not compacted yet, and the write-ahead buffer.

Each series keeps two growing arrays (int64 ms, float64). Appends in time order are O(1); an
older timestamp marks the series unsorted and it is sorted (last write of a timestamp wins) the
next time someone reads it. Not locked by itself: the TSDB holds its lock around every call.

`Pending` collects what was appended since the last flush; a flush writes it as one head segment
(a compressed blob of series ids, timestamps and values), replayed on open.
"""

from __future__ import annotations

import zlib
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Container, Sequence
from math import isnan
from operator import ge

SEGMENT_FORMAT = 1


def sort_points(ts: Sequence[int], values: Sequence[float]) -> tuple[array, array]:
    """Ascending by time; of equal timestamps the one given last wins."""
    order = sorted(range(len(ts)), key=ts.__getitem__)  # stable: later writes stay later
    out_t, out_v = array("q"), array("d")
    last = None
    for i in order:
        t = ts[i]
        if t == last:
            out_v[-1] = values[i]
        else:
            out_t.append(t)
            out_v.append(values[i])
            last = t
    return out_t, out_v


def merge_points(old_t: array, old_v: array, new_t: array, new_v: array) -> tuple[array, array]:
    """Union of two sorted, duplicate-free point lists; on equal timestamps `new` wins."""
    if not old_t:
        return new_t, new_v
    if not new_t:
        return old_t, old_v
    if new_t[0] > old_t[-1]:
        return old_t + new_t, old_v + new_v
    if new_t[-1] < old_t[0]:
        return new_t + old_t, new_v + old_v
    return sort_points(old_t + new_t, old_v + new_v)


NO_DROP = -(1 << 62)
"""`SeriesHead.drop` of a series whose points are all numbers, each >= the one before it."""


def last_drop(ts: Sequence[int], values: Sequence[float], start: int = 0) -> int:
    """The timestamp of the last point from index `start` on that is NaN or not >= the point before it
    (a decrease, or a NaN before it), or NO_DROP."""
    first = max(start, 1)
    if first < len(values):
        rising = list(map(ge, values[first:], values[first - 1 : -1]))
        if not all(rising):
            return ts[len(rising) - rising[::-1].index(False) - 1 + first]
    if start == 0 and len(values) and values[0] != values[0]:
        return ts[0]
    return NO_DROP


def last_nan(ts: Sequence[int], values: Sequence[float], start: int = 0) -> int:
    """The timestamp of the last NaN point from index `start` on, or NO_DROP."""
    if any(map(isnan, values[start:])):
        for i in range(len(values) - 1, start - 1, -1):
            if values[i] != values[i]:
                return ts[i]
    return NO_DROP


class SeriesHead:
    __slots__ = ("drop", "nan", "ordered", "ts", "values")

    def __init__(self) -> None:
        self.ts = array("q")
        self.values = array("d")
        self.ordered = True
        self.drop = NO_DROP
        """The timestamp of the newest point that is NaN or not >= the point before it (NO_DROP: none), or
        later. The points after it are numbers that never go down: the engine skips looking for NaNs
        (stale markers) and counter resets there."""
        self.nan = NO_DROP
        """The timestamp of the newest NaN point (NO_DROP: none), or later: a gauge's points go down all the
        time, but only a window reaching this far back can hold a stale marker."""

    def append(self, t: int, value: float) -> int:
        """Returns 1 if the series grew, 0 if it replaced the value at its last timestamp."""
        ts = self.ts
        if ts:
            newest = ts[-1]
            if t <= newest:
                if t == newest and self.ordered:
                    # A new array rather than values[-1] = value: readers may hold this one (see Head).
                    values = self.values = self.values[:-1]
                    values.append(value)
                    if value != value:
                        self.drop = self.nan = t
                    elif len(values) > 1 and not value >= values[-2]:
                        self.drop = t
                    return 0
                self.ordered = False
            elif not value >= self.values[-1]:
                self.drop = t
                if value != value:
                    self.nan = t
        elif value != value:
            self.drop = self.nan = t
        ts.append(t)
        self.values.append(value)
        return 1

    def extend(self, ts: array, values: array) -> None:
        """Add sorted, duplicate-free points (an import)."""
        if not ts:
            return
        old = len(self.ts)
        if old and ts[0] <= self.ts[-1]:
            self.ordered = False
        self.ts.extend(ts)
        self.values.extend(values)
        if self.ordered:
            drop = last_drop(self.ts, self.values, old)
            if drop != NO_DROP:
                self.drop = drop
                nan = last_nan(self.ts, self.values, old)
                if nan != NO_DROP:
                    self.nan = nan

    def settle(self) -> None:
        if not self.ordered:
            self.ts, self.values = sort_points(self.ts, self.values)
            self.ordered = True
            self.drop = last_drop(self.ts, self.values)
            self.nan = last_nan(self.ts, self.values)


class Head:
    """Per-series points, append-only in place: the points a reader has seen in a series' arrays never
    change. New points go at the end; anything else (a value replaced at the newest timestamp, sorting
    after an out-of-order append, dropping compacted points) makes new arrays. Query threads therefore
    take the arrays and a range [lo, hi) of them under the TSDB's lock and read them after releasing it
    (`TSDB.head_select`), without copying the points."""

    def __init__(self) -> None:
        self.series: dict[int, SeriesHead] = {}
        self.samples = 0
        self.version = 0
        """Grows with every change of the points: the querier's cache of recent selects is keyed by it."""
        self.members = 0
        """Grows whenever a series comes into the head or leaves it."""
        self.compactions = 0
        """Grows with every `drop_before` (a compaction): the querier's copy of the newest compacted block
        is keyed by it."""

    def append(self, sid: int, t: int, value: float) -> None:
        series = self.series.get(sid)
        if series is None:
            series = self.series[sid] = SeriesHead()
            self.members += 1
        self.samples += series.append(t, value)
        self.version += 1

    def extend(self, sid: int, ts: array, values: array) -> None:
        self.version += 1
        series = self.series.get(sid)
        if series is None:
            series = self.series[sid] = SeriesHead()
            self.members += 1
        series.extend(ts, values)
        if not series.ordered:
            before = len(series.ts)
            series.settle()
            self.samples -= before - len(series.ts)
        self.samples += len(ts)

    def range(self, sid: int, mint: int, maxt: int) -> tuple[array, array, int] | None:
        """Copies of the points in [mint, maxt] and the series' `drop` (see SeriesHead), or None."""
        series = self.series.get(sid)
        if series is None:
            return None
        if not series.ordered:
            self._settle(series)
        ts = series.ts
        n = len(ts)
        if not n:
            return None
        # Queries mostly reach the newest point and start at a time the series' even spacing locates: no
        # search then (a search boxes every int it reads).
        newest = ts[-1]
        hi = n if newest <= maxt else bisect_right(ts, maxt)
        oldest = ts[0]
        lo = 0
        if oldest < mint:
            guess = n - 1 - (newest - mint) * (n - 1) // (newest - oldest) if newest > mint else n
            found = 0 < guess < hi and ts[guess] >= mint > ts[guess - 1]
            lo = guess if found else bisect_left(ts, mint, 0, hi)
        if lo >= hi:
            return None
        return ts[lo:hi], series.values[lo:hi], series.drop

    def before(self, limit: int, since: int, whole: Container[int]) -> dict[int, tuple[array, array]]:
        """Copies of the points a compaction writes out: those in [since, limit) (older ones are in chunks
        already), and for the series in `whole` (imported into compacted blocks) every one before `limit` or
        `since`, whichever is later (a clock set back can put `limit` before `since`)."""
        out = {}
        for sid, series in self.series.items():
            self._settle(series)  # first: the oldest point of an unsorted series need not be ts[0]
            ts = series.ts
            if sid in whole:
                start, cut = 0, bisect_left(ts, max(limit, since))
            elif ts and ts[0] < limit:
                cut = bisect_left(ts, limit)
                start = bisect_left(ts, since, 0, cut)
            else:
                continue
            if start < cut:
                out[sid] = (ts[start:cut], series.values[start:cut])
        return out

    def drop_before(self, limit: int) -> None:
        self.version += 1
        self.compactions += 1
        for sid in list(self.series):
            series = self.series[sid]
            self._settle(series)
            if series.ts and series.ts[0] < limit:
                cut = bisect_left(series.ts, limit)
                series.ts = series.ts[cut:]
                series.values = series.values[cut:]
                self.samples -= cut
            if not series.ts:
                del self.series[sid]
                self.members += 1

    def from_time(self, limit: int) -> tuple[array, array, array]:
        """(series ids, ts, values) of every point at or after `limit`: a checkpoint segment."""
        sids, ts, values = array("q"), array("q"), array("d")
        for sid, series in self.series.items():
            if not series.ts:
                continue
            self._settle(series)
            cut = bisect_left(series.ts, limit)
            count = len(series.ts) - cut
            if count:
                sids += array("q", [sid]) * count
                ts += series.ts[cut:]
                values += series.values[cut:]
        return sids, ts, values

    def has_data(self, sid: int) -> bool:
        series = self.series.get(sid)
        return series is not None and len(series.ts) > 0

    def _settle(self, series: SeriesHead) -> None:
        if not series.ordered:
            before = len(series.ts)
            series.settle()
            self.samples -= before - len(series.ts)


class Pending:
    """Samples appended since the last flush, in arrival order."""

    def __init__(self) -> None:
        self.sids = array("q")
        self.ts = array("q")
        self.values = array("d")

    def __len__(self) -> int:
        return len(self.ts)

    def append(self, sid: int, t: int, value: float) -> None:
        self.sids.append(sid)
        self.ts.append(t)
        self.values.append(value)

    def take(self) -> Pending:
        taken = Pending()
        taken.sids, taken.ts, taken.values = self.sids, self.ts, self.values
        self.sids, self.ts, self.values = array("q"), array("q"), array("d")
        return taken

    def put_back(self, older: Pending) -> None:
        """Return samples a failed flush took, ahead of anything appended since."""
        self.sids = older.sids + self.sids
        self.ts = older.ts + self.ts
        self.values = older.values + self.values


def _planes(lanes: bytes, width: int) -> bytes:
    return b"".join(lanes[k::width] for k in range(width))


def _unplanes(buf: bytes, pos: int, n: int, width: int) -> bytes:
    out = bytearray(width * n)
    for k in range(width):
        out[k::width] = buf[pos + k * n : pos + (k + 1) * n]
    return bytes(out)


def encode_segment(sids: array, ts: array, values: array) -> bytes:
    """One flush worth of samples: three byte-shuffled columns under fast deflate."""
    n = len(ts)
    body = n.to_bytes(8, "little") + _planes(sids.tobytes(), 8) + _planes(ts.tobytes(), 8)
    body += _planes(values.tobytes(), 8)
    return bytes([SEGMENT_FORMAT]) + zlib.compress(body, 1)


def decode_segment(blob: bytes) -> tuple[array, array, array]:
    if not blob or blob[0] != SEGMENT_FORMAT:
        raise ValueError(f"unknown head segment format {bytes(blob[:1])!r}")
    body = zlib.decompress(blob[1:])
    n = int.from_bytes(body[:8], "little")
    if len(body) != 8 + 24 * n:
        raise ValueError("head segment length mismatch")
    sids, ts, values = array("q"), array("q"), array("d")
    sids.frombytes(_unplanes(body, 8, n, 8))
    ts.frombytes(_unplanes(body, 8 + 8 * n, n, 8))
    values.frombytes(_unplanes(body, 8 + 16 * n, n, 8))
    return sids, ts, values
