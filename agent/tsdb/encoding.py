"""Chunk codec: one time column and N float columns in one compressed blob, bit-exact.

Bit-level Gorilla decodes at several µs per sample in pure Python, so columns become arrays of
fixed-width lanes that the stdlib handles a whole array at a time: the byte shuffle (byte k of
every lane together, so slowly changing values leave runs of equal bytes) is extended-slice
assignment, a plane holding one repeated byte is stored as that byte, and raw deflate does the
rest. Timestamps are the first value plus strictly positive deltas (REGULAR when all deltas are
equal), summed back with big ints used as lane vectors (log2(n) shift-and-adds, ~20 ns a value).

Per float column the encoder keeps the smaller of:
- CONST: every value has the same bits (constant gauges, idle counters, rollup counts).
- PLAIN: the IEEE bits as they are (any value; decoding is deflate and memcpy, a few ns a value).
- DEC: every value is m / 10**k exactly for an integer m (k = 0..6), stored as m[0] plus zigzag
  deltas. Tick, byte and packet counters and 2-decimal gauges shrink 2-4x; decoding costs a
  Python pass with one division per value (~0.1 µs). `decimal=False` leaves it out (rollups,
  which are read a month at a time).
Measured and left out: XOR with the previous value (Gorilla's idea) came within a few % of PLAIN
after shuffle + deflate while needing a log2(n)-step prefix XOR to decode; converting DEC back to
floats with big-int fixed-point arithmetic was slower than the per-value division; XOR against
another column of the chunk (a counter's rollup max is its last) gained ~1%, as deflate already
finds the repeat within its 32 KiB window.
"""

from __future__ import annotations

import struct
import zlib
from array import array
from collections.abc import Sequence
from itertools import accumulate, pairwise

FORMAT = 1

TS_REGULAR = 0
TS_DELTA = 1

COL_CONST = 0
COL_PLAIN = 1
COL_DEC = 2

_PLANE_DATA = 0
_PLANE_FILL = 1

_MAX_DECIMALS = 6
_DEC_SCALES = [float(10**k) for k in range(_MAX_DECIMALS + 1)]
_DEC_LIMIT = 1 << 53  # |m| below this: float(m) is exact and zigzag deltas fit in 64-bit lanes
_SIGN64 = 1 << 63
_LEVEL = 6
_CHOOSE_LEVEL = 1


class ChunkError(ValueError):
    """A blob that is not a chunk this codec wrote (truncated, corrupt, newer format)."""


# --- varints -----------------------------------------------------------------------------------


def _put_uvarint(out: bytearray, value: int) -> None:
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _get_uvarint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _zigzag(value: int) -> int:
    return value << 1 if value >= 0 else ((-value) << 1) - 1


def _unzigzag(value: int) -> int:
    return value >> 1 if not value & 1 else -((value + 1) >> 1)


# --- lanes: a big int as a vector of n unsigned lanes of w bytes --------------------------------

_ONES_CACHE: dict[tuple[int, int], int] = {}


def _ones(n: int, width: int = 8) -> int:
    """1 in every lane: multiplying a lane-sized constant by it repeats the constant n times."""
    key = (n, width)
    value = _ONES_CACHE.get(key)
    if value is None:
        value = int.from_bytes((b"\x01" + bytes(width - 1)) * n, "little")
        if len(_ONES_CACHE) > 256:
            _ONES_CACHE.clear()
        _ONES_CACHE[key] = value
    return value


def _prefix_sum(x: int, n: int, width: int) -> int:
    """Running sums of non-negative lanes, exact when every running sum fits a lane (then no
    carry crosses into the next lane; the junk shifted past lane n is masked off)."""
    shift, bits = 8 * width, 8 * width * n
    while shift < bits:
        x += x << shift
        shift <<= 1
    return x & ((1 << bits) - 1)


def _widen(lanes: bytes, n: int, width: int) -> bytes:
    """Zero-extend n lanes of `width` bytes to 8 bytes each."""
    if width == 8:
        return lanes
    out = bytearray(8 * n)
    for k in range(width):
        out[k::8] = lanes[k::width]
    return bytes(out)


def _int64s(lanes: int, n: int, offset: int) -> array:
    """array('q') of lane_i + offset, given that every result fits int64.

    With a 2**63 bias every result digit is in [0, 2**64), so the big-int sum has exactly those
    digits whatever borrows or carries happened on the way; XOR removes the bias again.
    """
    ones = _ones(n)
    biased = (lanes + (offset + _SIGN64) * ones) ^ (_SIGN64 * ones)
    out = array("q")
    out.frombytes((biased & ((1 << (64 * n)) - 1)).to_bytes(8 * n, "little"))
    return out


def _shuffle(out: bytearray, lanes: bytes, width: int) -> None:
    """Append the `width` byte planes of `lanes`; a plane of one repeated byte costs 2 bytes."""
    for k in range(width):
        plane = lanes[k::width]
        first = plane[:1]
        if plane.count(first) == len(plane):
            out.append(_PLANE_FILL)
            out += first
        else:
            out.append(_PLANE_DATA)
            out += plane


def _unshuffle(buf: bytes, pos: int, n: int, width: int) -> tuple[bytes, int]:
    lanes = bytearray(width * n)
    for k in range(width):
        kind = buf[pos]
        pos += 1
        if kind == _PLANE_FILL:
            if buf[pos]:
                lanes[k::width] = buf[pos : pos + 1] * n
            pos += 1
        elif kind == _PLANE_DATA:
            if pos + n > len(buf):
                raise ChunkError("truncated plane")
            lanes[k::width] = buf[pos : pos + n]
            pos += n
        else:
            raise ChunkError(f"unknown plane kind {kind}")
    return bytes(lanes), pos


def _lane_width(limit: int) -> int:
    return 4 if limit < 1 << 32 else 8


# --- timestamps --------------------------------------------------------------------------------


def _encode_ts(out: bytearray, ts: Sequence[int]) -> None:
    first = ts[0]
    deltas = [b - a for a, b in pairwise(ts)]
    if deltas and min(deltas) <= 0:
        raise ValueError("timestamps must be strictly increasing")
    regular = not deltas or min(deltas) == max(deltas)
    out.append(TS_REGULAR if regular else TS_DELTA)
    _put_uvarint(out, _zigzag(first))
    if regular:
        _put_uvarint(out, deltas[0] if deltas else 0)
        return
    width = _lane_width(ts[-1] - first)  # every running sum is at most this span
    out.append(width)
    _shuffle(out, array("I" if width == 4 else "Q", deltas).tobytes(), width)


def _decode_ts(buf: bytes, pos: int, n: int) -> tuple[array, int]:
    mode = buf[pos]
    zz, pos = _get_uvarint(buf, pos + 1)
    first = _unzigzag(zz)
    if mode == TS_REGULAR:
        step, pos = _get_uvarint(buf, pos)
        if n > 1 and step == 0:
            raise ChunkError("zero timestamp step")
        return array("q", range(first, first + step * n, step) if n > 1 else [first]), pos
    if mode != TS_DELTA:
        raise ChunkError(f"unknown timestamp mode {mode}")
    width = buf[pos]
    if width not in (4, 8):
        raise ChunkError(f"bad lane width {width}")
    lanes, pos = _unshuffle(buf, pos + 1, n - 1, width)
    offsets = _prefix_sum(int.from_bytes(lanes, "little") << (8 * width), n, width)  # lane 0 = 0
    wide = int.from_bytes(_widen(offsets.to_bytes(width * n, "little"), n, width), "little")
    return _int64s(wide, n, first), pos


# --- float columns -----------------------------------------------------------------------------


def _decimal_ints(values: array) -> tuple[int, list[int]] | None:
    """(k, m) with values[i] == m[i] / 10**k bit for bit, or None (NaN, ±Inf, -0.0, too precise)."""
    n = len(values)
    probe = values if n <= 16 else [values[i] for i in range(0, n, n // 16)]
    raw = values.tobytes()
    for k, scale in enumerate(_DEC_SCALES):
        try:
            if any(round(v * scale) / scale != v for v in probe):
                continue
            ms = [round(v * scale) for v in values]
        except (ValueError, OverflowError):
            return None  # NaN or ±Inf
        if array("d", [m / scale for m in ms]).tobytes() == raw:
            if max(ms) >= _DEC_LIMIT or min(ms) <= -_DEC_LIMIT:
                return None
            return k, ms
    return None


def _encode_dec(out: bytearray, k: int, ms: list[int]) -> None:
    first = ms[0]
    zz = [_zigzag(b - a) for a, b in pairwise(ms)]
    span = max(abs(m - first) for m in ms)
    width = 4 if span < 1 << 31 and (not zz or max(zz) < 1 << 32) else 8
    out.append(COL_DEC)
    out.append(k)
    _put_uvarint(out, _zigzag(first))
    out.append(width)
    _shuffle(out, array("I" if width == 4 else "Q", zz).tobytes(), width)


def _decode_dec(buf: bytes, pos: int, n: int) -> tuple[array, int]:
    k = buf[pos]
    if k > _MAX_DECIMALS:
        raise ChunkError(f"bad decimal scale {k}")
    zz, pos = _get_uvarint(buf, pos + 1)
    first = _unzigzag(zz)
    width = buf[pos]
    if width not in (4, 8):
        raise ChunkError(f"bad lane width {width}")
    lanes, pos = _unshuffle(buf, pos + 1, n - 1, width)
    zigzags = array("I" if width == 4 else "Q")
    zigzags.frombytes(lanes)
    # Measured: per-value Python here beats big-int lane tricks, since each value needs its own
    # float division anyway (an int -> double conversion has no bulk form in the stdlib).
    ms = accumulate([(z >> 1) ^ -(z & 1) for z in zigzags], initial=first)
    if k == 0:
        return array("d", ms), pos  # exact: |m| < 2**53
    scale = _DEC_SCALES[k]
    return array("d", [m / scale for m in ms]), pos


def _encode_floats(out: bytearray, values: array, decimal: bool) -> None:
    """Append the column in the mode that compresses smallest."""
    raw = values.tobytes()
    n = len(values)
    if raw[:8] * n == raw:
        out.append(COL_CONST)
        out += raw[:8]
        return
    plain = bytearray([COL_PLAIN])
    _shuffle(plain, raw, 8)
    dec = _decimal_ints(values) if decimal else None
    if dec is not None:
        packed = bytearray()
        _encode_dec(packed, *dec)
        if len(zlib.compress(packed, _CHOOSE_LEVEL)) < len(zlib.compress(plain, _CHOOSE_LEVEL)):
            out += packed
            return
    out += plain


def _decode_floats(buf: bytes, pos: int, n: int) -> tuple[array, int]:
    mode = buf[pos]
    pos += 1
    col = array("d")
    if mode == COL_CONST:
        col.frombytes(buf[pos : pos + 8] * n)
        return col, pos + 8
    if mode == COL_DEC:
        return _decode_dec(buf, pos, n)
    if mode != COL_PLAIN:
        raise ChunkError(f"unknown column mode {mode}")
    lanes, pos = _unshuffle(buf, pos, n, 8)
    col.frombytes(lanes)
    return col, pos


# --- chunks ------------------------------------------------------------------------------------


def encode_chunk(ts: Sequence[int], columns: Sequence[Sequence[float]], *, decimal: bool = True) -> bytes:
    """A chunk of len(ts) points: `ts` strictly increasing int64 ms, each column one float per point.

    `decimal=False` leaves out the DEC mode (slower to decode) for data read in bulk.
    Raises ValueError for unsorted or duplicate timestamps and ragged columns.
    """
    n = len(ts)
    for col in columns:
        if len(col) != n:
            raise ValueError("every column needs one value per timestamp")
    body = bytearray()
    _put_uvarint(body, n)
    _put_uvarint(body, len(columns))
    if n:
        _encode_ts(body, ts)
        for col in columns:
            floats = col if isinstance(col, array) and col.typecode == "d" else array("d", col)
            _encode_floats(body, floats, decimal)
    packer = zlib.compressobj(_LEVEL, zlib.DEFLATED, -15)
    return bytes([FORMAT]) + packer.compress(body) + packer.flush()


def decode_chunk(blob: bytes) -> tuple[array, list[array]]:
    """(timestamps array('q'), one array('d') per column), exactly as encoded."""
    if not blob or blob[0] != FORMAT:
        raise ChunkError(f"unknown chunk format {bytes(blob[:1])!r}")
    try:
        buf = zlib.decompress(blob[1:], -15)
        n, pos = _get_uvarint(buf, 0)
        ncols, pos = _get_uvarint(buf, pos)
        if n == 0:
            return array("q"), [array("d") for _ in range(ncols)]
        ts, pos = _decode_ts(buf, pos, n)
        columns = []
        for _ in range(ncols):
            col, pos = _decode_floats(buf, pos, n)
            columns.append(col)
    except (zlib.error, IndexError, struct.error, OverflowError) as exc:
        raise ChunkError(f"corrupt chunk: {exc}") from None
    if pos != len(buf):
        raise ChunkError("trailing bytes in chunk")
    return ts, columns
