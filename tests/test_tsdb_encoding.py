"""The chunk codec: bit-exact round trips for every kind of value and timestamp it must carry."""

from __future__ import annotations

import random
import struct
from array import array

import pytest

from agent.promql.values import STALE_NAN, STALE_NAN_BITS
from agent.tsdb.encoding import ChunkError, decode_chunk, encode_chunk

INT64_MAX = (1 << 63) - 1
INT64_MIN = -(1 << 63)


def from_bits(bits: int) -> float:
    return struct.unpack("<d", struct.pack("<Q", bits))[0]


def bits_of(values: array) -> list[int]:
    return list(struct.unpack(f"<{len(values)}Q", values.tobytes()))


def round_trip(ts: list[int], *columns: list[float], decimal: bool = True) -> bytes:
    blob = encode_chunk(array("q", ts), [array("d", c) for c in columns], decimal=decimal)
    got_ts, got_cols = decode_chunk(blob)
    assert got_ts.typecode == "q" and list(got_ts) == ts
    assert len(got_cols) == len(columns)
    for got, want in zip(got_cols, columns, strict=True):
        assert got.typecode == "d"
        assert bits_of(got) == bits_of(array("d", want))
    return blob


def regular(n: int, start: int = 1_700_000_000_000, step: int = 15_000) -> list[int]:
    return [start + i * step for i in range(n)]


def jittered(n: int, rng: random.Random, start: int = 1_700_000_000_000) -> list[int]:
    out, t = [], start
    for _ in range(n):
        t += 15_000 + rng.randint(-5, 5)
        out.append(t)
    return out


SPECIAL_BITS = [
    STALE_NAN_BITS,
    0x7FF8000000000000,  # the usual quiet NaN
    0xFFF8000000000000,  # negative quiet NaN
    0x7FF8000000000001,  # NaN with a payload
    0x7FF0000000000001,  # signaling NaN
    0x7FF0000000000000,  # +Inf
    0xFFF0000000000000,  # -Inf
    0x8000000000000000,  # -0.0
    0x0000000000000000,  # +0.0
    0x0000000000000001,  # smallest subnormal
    0x7FEFFFFFFFFFFFFF,  # largest finite
]


def test_signaling_nan_survives_python_floats() -> None:
    # The tests below rely on floats carrying NaN payloads unchanged through arrays and struct.
    assert bits_of(array("d", [from_bits(0x7FF0000000000001)])) == [0x7FF0000000000001]


@pytest.mark.parametrize("decimal", [True, False])
def test_special_values_are_bit_exact(decimal: bool) -> None:
    values = [from_bits(b) for b in SPECIAL_BITS]
    round_trip(regular(len(values)), values, decimal=decimal)
    # each special value inside an otherwise decimal-encodable column
    for bits in SPECIAL_BITS:
        column = [1.25, 2.5, from_bits(bits), 3.75, 5.0]
        round_trip(regular(5), column, decimal=decimal)


def test_stale_marker_keeps_its_bits() -> None:
    values = [1.0, 2.0, STALE_NAN, STALE_NAN, 3.0]
    blob = round_trip(regular(5), values)
    _, (got,) = decode_chunk(blob)
    assert bits_of(got)[2] == STALE_NAN_BITS


def test_negative_zero_in_decimal_column() -> None:
    round_trip(regular(4), [0.5, -0.0, 0.25, 0.0])
    round_trip(regular(3), [-0.0, -0.0, -0.0])


def test_empty_and_single_point_chunks() -> None:
    blob = encode_chunk(array("q"), [array("d"), array("d")])
    ts, cols = decode_chunk(blob)
    assert len(ts) == 0 and [len(c) for c in cols] == [0, 0]
    round_trip([42], [3.5])
    round_trip([-7], [from_bits(STALE_NAN_BITS)])
    round_trip([5, 6], [1.0, 1.0])


@pytest.mark.parametrize(
    "ts",
    [
        [INT64_MIN, INT64_MAX],
        [INT64_MIN, -1, 0, INT64_MAX],
        [INT64_MAX - 2, INT64_MAX - 1, INT64_MAX],
        [INT64_MIN, INT64_MIN + 1, INT64_MIN + 3],
        [-5_000_000_000_000, -4_999_999_985_000, -4_999_999_969_999],
        [0, 1, 2, 3, 5, 8, 13],
        [1, 1 << 32, (1 << 33) + 7],  # span over 2**32: 8-byte lanes
        regular(500, start=-3_600_000, step=15_000),  # crosses zero, regular
    ],
)
def test_timestamps_of_any_int64(ts: list[int]) -> None:
    round_trip(ts, [float(i) for i in range(len(ts))])


def test_unsorted_or_duplicate_timestamps_are_rejected() -> None:
    with pytest.raises(ValueError, match="strictly increasing"):
        encode_chunk(array("q", [1, 3, 2]), [array("d", [1, 2, 3])])
    with pytest.raises(ValueError, match="strictly increasing"):
        encode_chunk(array("q", [1, 2, 2]), [array("d", [1, 2, 3])])


def test_ragged_columns_are_rejected() -> None:
    with pytest.raises(ValueError, match="one value per timestamp"):
        encode_chunk(array("q", [1, 2]), [array("d", [1.0])])


def test_corrupt_blobs_raise_chunk_error() -> None:
    blob = encode_chunk(array("q", jittered(50, random.Random(3))), [array("d", range(50))])
    with pytest.raises(ChunkError):
        decode_chunk(b"")
    with pytest.raises(ChunkError):
        decode_chunk(b"\x07" + blob[1:])
    with pytest.raises(ChunkError):
        decode_chunk(blob[: len(blob) // 2])


@pytest.mark.parametrize("decimal", [True, False])
def test_realistic_columns_round_trip(decimal: bool) -> None:
    rng = random.Random(7)
    n = 240
    ticks = [rng.randint(10**6, 10**8)]
    for _ in range(n - 1):
        ticks.append(ticks[-1] + rng.randint(0, 1500))
    counters = [t / 100 for t in ticks]  # as /proc/stat ticks become seconds
    byte_counter = [float(t * 1024) for t in ticks]
    load = [round(rng.uniform(0, 4) * 100) / 100 for _ in range(n)]
    noisy = [rng.expovariate(3.0) for _ in range(n)]
    negatives = [float(rng.randint(-(10**12), 10**12)) for _ in range(n)]
    constant = [8.0 * 2**30] * n
    milli = [rng.randint(-(10**9), 10**9) / 1000 for _ in range(n)]
    ts = jittered(n, rng)
    for column in (counters, byte_counter, load, noisy, negatives, constant, milli):
        round_trip(ts, column, decimal=decimal)
    round_trip(ts, counters, load, noisy, constant, negatives, decimal=decimal)


def test_decimal_boundaries_fall_back_exactly() -> None:
    big = float((1 << 53) - 1)
    round_trip(regular(3), [big, big - 1, big - 2])
    round_trip(regular(3), [2.0**60, 2.0**60 + 256, 2.0**61])
    round_trip(regular(3), [0.1 + 0.2, 0.3, 0.1])  # 0.1 + 0.2 is not a decimal of <= 6 places
    round_trip(regular(3), [1e-7, 2e-7, 3e-7])
    round_trip(regular(4), [1e300, -1e300, 5e-324, -5e-324])


def test_random_round_trips() -> None:
    rng = random.Random(11)
    pools = [
        lambda: float(rng.randint(-1000, 1000)),
        lambda: rng.randint(-(10**6), 10**6) / 100,
        lambda: rng.random(),
        lambda: from_bits(rng.choice(SPECIAL_BITS)),
        lambda: from_bits(rng.getrandbits(64)),
    ]
    for _ in range(200):
        n = rng.choice([1, 2, 3, 7, 64, 241])
        mix = rng.sample(pools, rng.randint(1, len(pools)))
        values = [rng.choice(mix)() for _ in range(n)]
        start = rng.randint(-(10**15), 10**15)
        ts, t = [], start
        for _ in range(n):
            t += rng.choice([1, 15_000, rng.randint(1, 10**9)])
            ts.append(t)
        round_trip(ts, values, decimal=rng.random() < 0.7)


def test_compression_figures_for_typical_series() -> None:
    """Guards the choices measured in benchmarks/tsdb_storage.py (bytes per sample, 1 h at 15 s)."""
    rng = random.Random(5)
    n = 240
    ts = jittered(n, rng)
    constant = encode_chunk(array("q", ts), [array("d", [1.0] * n)])
    assert len(constant) / n < 0.7  # the jittered timestamps are all there is
    ticks = [10**7]
    for _ in range(n - 1):
        ticks.append(ticks[-1] + rng.randint(1400, 1500))
    counter = encode_chunk(array("q", ts), [array("d", [t / 100 for t in ticks])])
    assert len(counter) / n < 2.5
    plain_counter = encode_chunk(array("q", ts), [array("d", [t / 100 for t in ticks])], decimal=False)
    assert len(plain_counter) > len(counter) * 1.5  # the decimal mode is what makes counters small


def test_wide_decimal_lanes() -> None:
    rng = random.Random(13)
    ts = jittered(100, rng)
    round_trip(ts, [rng.randint(-(10**12), 10**12) / 100 for _ in range(100)])  # span >= 2**31
    round_trip(ts, [rng.choice([-1, 1]) * rng.randint(2**40, 2**52) / 1000 for _ in range(100)])
