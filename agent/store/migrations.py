"""Schema migrations, applied in order by `PRAGMA user_version`; never edit a released step."""

from __future__ import annotations

MIGRATIONS: list[str] = [
    # 1: API keys and config versions (foundation).
    """
    CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        role TEXT NOT NULL,
        key_hash TEXT NOT NULL UNIQUE,
        preview TEXT NOT NULL,
        created_at REAL NOT NULL,
        created_by TEXT,
        last_used REAL,
        expires_at REAL,
        revoked_at REAL
    );
    CREATE TABLE config_versions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        created_at REAL NOT NULL,
        source TEXT NOT NULL,
        actor TEXT,
        reason TEXT,
        diff TEXT NOT NULL,
        sources TEXT NOT NULL
    );
    """,
    # 2: metrics history (agent/tsdb): series index, compressed chunks per tier, head segments (WAL).
    """
    CREATE TABLE tsdb_series (
        id INTEGER PRIMARY KEY,
        labels TEXT NOT NULL
    );
    CREATE TABLE tsdb_chunks (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        tier INTEGER NOT NULL,
        series_id INTEGER NOT NULL,
        block_start INTEGER NOT NULL,
        min_t INTEGER NOT NULL,
        max_t INTEGER NOT NULL,
        points INTEGER NOT NULL,
        data BLOB NOT NULL
    );
    CREATE UNIQUE INDEX tsdb_chunks_series ON tsdb_chunks (tier, series_id, block_start);
    CREATE INDEX tsdb_chunks_block ON tsdb_chunks (tier, block_start);
    CREATE TABLE tsdb_head_segments (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        min_t INTEGER NOT NULL,
        max_t INTEGER NOT NULL,
        samples INTEGER NOT NULL,
        data BLOB NOT NULL
    );
    CREATE TABLE tsdb_meta (
        key TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    );
    """,
]
