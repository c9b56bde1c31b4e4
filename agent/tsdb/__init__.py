"""Vigil's time-series store: series index, in-memory head, compressed chunks in SQLite, rollups."""

from agent.tsdb.db import TSDB, TSDBError, TSDBOptions

__all__ = ["TSDB", "TSDBError", "TSDBOptions"]
