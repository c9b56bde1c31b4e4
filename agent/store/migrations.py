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
]
