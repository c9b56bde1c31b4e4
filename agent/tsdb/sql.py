"""The TSDB's SQL statements (tables: migration 2 in agent/store/migrations.py)."""

from __future__ import annotations

LOAD_SERIES = "SELECT id, labels FROM tsdb_series"
LOAD_META = "SELECT key, value FROM tsdb_meta"
LOAD_SEGMENTS = "SELECT id, data FROM tsdb_head_segments ORDER BY id"
SERIES_SPANS = "SELECT series_id, MIN(min_t), MAX(max_t) FROM tsdb_chunks GROUP BY series_id"
TIER_STATS = "SELECT tier, COUNT(*), MIN(min_t), SUM(length(data)) FROM tsdb_chunks GROUP BY tier"

SAVE_SERIES = "INSERT OR REPLACE INTO tsdb_series (id, labels) VALUES (?, ?)"
DELETE_SERIES = "DELETE FROM tsdb_series WHERE id = ?"
SAVE_META = "INSERT OR REPLACE INTO tsdb_meta (key, value) VALUES (?, ?)"
SAVE_SEGMENT = "INSERT INTO tsdb_head_segments (min_t, max_t, samples, data) VALUES (?, ?, ?, ?)"
DELETE_SEGMENTS_UPTO = "DELETE FROM tsdb_head_segments WHERE id <= ?"

# REPLACE gives the rewritten chunk a new id (AUTOINCREMENT never reuses one): readers cache
# decoded chunks by id, so a changed chunk can never be served from a stale cache entry.
SAVE_CHUNK = (
    "INSERT OR REPLACE INTO tsdb_chunks (tier, series_id, block_start, min_t, max_t, points, data)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)
DELETE_CHUNKS_BEFORE = "DELETE FROM tsdb_chunks WHERE tier = ? AND block_start < ?"
SERIES_CHUNKS = (
    "SELECT block_start, data FROM tsdb_chunks"
    " WHERE tier = ? AND series_id = ? AND block_start >= ? AND block_start <= ?"
)
BLOCK_CHUNKS = (
    "SELECT series_id, block_start, data FROM tsdb_chunks"
    " WHERE tier = ? AND block_start >= ? AND block_start < ? ORDER BY series_id, block_start"
)


def select_chunk_ids(count: int) -> str:
    """Ids of the chunks of `count` series (ids bound after tier) with block_start in [lo, hi]; the
    index alone answers it, so cached chunks cost no blob reads."""
    marks = ",".join("?" * count)
    return (
        "SELECT id, series_id FROM tsdb_chunks"
        f" WHERE tier = ? AND series_id IN ({marks}) AND block_start >= ? AND block_start <= ?"
        " ORDER BY series_id, block_start"
    )


def select_chunk_data(count: int) -> str:
    return f"SELECT id, data FROM tsdb_chunks WHERE id IN ({','.join('?' * count)})"
