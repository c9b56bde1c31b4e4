"""The store against a real SQLite file: one writer, batched transactions, migrations."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import aiosqlite
import pytest

from agent.selfmetrics import SelfMetrics
from agent.store import Store, StoreError
from agent.store.migrations import MIGRATIONS


async def insert_key_row(db: aiosqlite.Connection, key_id: str) -> str:
    await db.execute(
        "INSERT INTO api_keys (id, name, role, key_hash, preview, created_at) VALUES (?,?,?,?,?,?)",
        (key_id, key_id, "viewer", "h-" + key_id, "p", 0.0),
    )
    return key_id


async def test_migrations_and_wal(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "v.db"), SelfMetrics())
    await store.open()
    await store.close()
    db = sqlite3.connect(tmp_path / "v.db")
    assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.execute("PRAGMA user_version=999")
    db.commit()
    db.close()
    newer = Store(str(tmp_path / "v.db"), SelfMetrics())
    with pytest.raises(StoreError, match="newer than this Vigil knows"):
        await newer.open()


async def test_concurrent_writes_share_transactions(tmp_path: Path) -> None:
    metrics = SelfMetrics()
    store = Store(str(tmp_path / "v.db"), metrics)
    await store.open()
    ids = await asyncio.gather(*(store.write(lambda db, i=i: insert_key_row(db, f"k{i}")) for i in range(200)))
    assert ids == [f"k{i}" for i in range(200)]
    batches = metrics.registry.get_sample_value("vigil_store_batch_size_count")
    assert batches is not None and batches < 200  # grouped, not one commit each
    await store.close()
    db = sqlite3.connect(tmp_path / "v.db")
    assert db.execute("SELECT count(*) FROM api_keys").fetchone()[0] == 200


async def test_a_failing_write_does_not_spoil_its_batch(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "v.db"), SelfMetrics())
    await store.open()

    async def half_then_fail(db: aiosqlite.Connection) -> None:
        await insert_key_row(db, "partial")
        raise ValueError("boom")

    results = await asyncio.gather(
        store.write(lambda db: insert_key_row(db, "a")),
        store.write(half_then_fail),
        store.write(lambda db: insert_key_row(db, "a")),  # duplicate: IntegrityError
        store.write(lambda db: insert_key_row(db, "b")),
        return_exceptions=True,
    )
    assert results[0] == "a" and results[3] == "b"
    assert isinstance(results[1], ValueError)
    assert isinstance(results[2], StoreError) and isinstance(results[2].__cause__, sqlite3.IntegrityError)

    async def ids(db: aiosqlite.Connection) -> list[str]:
        return [r[0] for r in await (await db.execute("SELECT id FROM api_keys ORDER BY id")).fetchall()]

    assert await store.read(ids) == ["a", "b"]
    await store.close()


async def test_close_commits_queued_writes_and_refuses_new_ones(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "v.db"), SelfMetrics())
    await store.open()
    pending = [asyncio.ensure_future(store.write(lambda db, i=i: insert_key_row(db, f"q{i}"))) for i in range(50)]
    await asyncio.sleep(0)
    await store.close()
    assert [f.result() for f in pending] == [f"q{i}" for i in range(50)]
    with pytest.raises(StoreError, match="closed"):
        await store.write(lambda db: insert_key_row(db, "late"))
    reopened = Store(str(tmp_path / "v.db"), SelfMetrics())
    await reopened.open()

    async def count(db: aiosqlite.Connection) -> int:
        return (await (await db.execute("SELECT count(*) FROM api_keys")).fetchone())[0]

    assert await reopened.read(count) == 50
    await reopened.close()


async def test_unwritable_location_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    store = Store(str(blocker / "v.db"), SelfMetrics())
    with pytest.raises(StoreError, match="cannot create state directory"):
        await store.open()


async def test_reclaim_gives_deleted_pages_back(tmp_path: Path) -> None:
    path = tmp_path / "v.db"
    store = Store(str(path), SelfMetrics())
    await store.open()

    async def fill(db: aiosqlite.Connection) -> None:
        await db.execute("CREATE TABLE junk(x BLOB)")
        for _ in range(600):
            await db.execute("INSERT INTO junk VALUES (randomblob(4000))")

    async def empty(db: aiosqlite.Connection) -> None:
        await db.execute("DELETE FROM junk")

    await store.write(fill)
    await store.write(empty)
    assert await store.reclaim(max_pages=100) == 100
    assert await store.reclaim() >= 500
    assert await store.reclaim() == 0
    await store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA auto_vacuum").fetchone() == (2,)
        assert db.execute("PRAGMA freelist_count").fetchone() == (0,)


async def test_existing_database_is_switched_to_incremental_vacuum(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:  # as the foundation release created it
        db.execute("CREATE TABLE leftover(x)")
    store = Store(str(path), SelfMetrics())
    await store.open()
    await store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA auto_vacuum").fetchone() == (2,)
        assert db.execute("SELECT count(*) FROM leftover").fetchone() == (0,)
