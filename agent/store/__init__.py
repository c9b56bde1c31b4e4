"""The SQLite database: one writer task batching transactions, readers on their own connection."""

from agent.store.db import Store, StoreError

__all__ = ["Store", "StoreError"]
