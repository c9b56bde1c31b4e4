"""One database, one writer.

Every write is a coroutine function run by the writer task inside a transaction it shares with
whatever else is queued (one fsync for many writes). Its future resolves only after COMMIT, so a
caller that answers 2xx after `await store.write(...)` never acknowledges data a `kill -9` loses.
Each write runs in its own SAVEPOINT: one failing write does not take its batch-mates with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiosqlite
import structlog

from agent.selfmetrics import SelfMetrics
from agent.store.migrations import MIGRATIONS

T = TypeVar("T")
WriteFn = Callable[[aiosqlite.Connection], Awaitable[Any]]
ReadFn = Callable[[aiosqlite.Connection], Awaitable[T]]
log = structlog.get_logger("vigil.store")


class StoreError(Exception):
    """The database could not do what was asked (closed, read-only, full, corrupt)."""


@dataclass
class _Write:
    fn: WriteFn
    future: asyncio.Future[Any] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    alone: bool = False  # run between batches, outside any transaction (VACUUM cannot run inside one)


_STOP = object()
JOURNAL_SIZE_LIMIT = 8 * 1024 * 1024
VACUUM_ON_OPEN_MAX_BYTES = 64 * 1024 * 1024


class Store:
    def __init__(self, path: str, metrics: SelfMetrics, synchronous: str = "full", batch_max: int = 500):
        self.path = path
        self.metrics = metrics
        self.synchronous = synchronous.upper()
        self.batch_max = batch_max
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._restarting: asyncio.Event | None = None  # set while `restart` runs; waiters wake on .set()
        self._reads = 0
        self._reads_done = asyncio.Event()
        self._reads_done.set()
        self.last_commit_seconds: float | None = None

    @property
    def is_open(self) -> bool:
        return self._task is not None and not self._task.done() and not self._closing

    async def open(self) -> None:
        """Open, migrate and start the writer; raises StoreError naming the cause."""
        directory = os.path.dirname(os.path.abspath(self.path))
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create state directory {directory}: {exc.strerror}") from None
        if not os.access(directory, os.W_OK):
            raise StoreError(f"state directory {directory} is not writable")
        try:
            self._writer = await aiosqlite.connect(self.path, isolation_level=None)
            await self._pragmas(self._writer)
            await self._migrate(self._writer)
            self._reader = await aiosqlite.connect(self.path, isolation_level=None)
            await self._reader.execute("PRAGMA busy_timeout=5000")
            await self._reader.execute("PRAGMA query_only=ON")
        except sqlite3.Error as exc:
            await self._close_connections()
            raise StoreError(f"cannot open database {self.path}: {exc}") from None
        self._closing = False
        self._task = asyncio.create_task(self._run(), name="store-writer")

    async def _pragmas(self, db: aiosqlite.Connection) -> None:
        await db.execute("PRAGMA busy_timeout=5000")
        await self._incremental_vacuum_mode(db)
        cursor = await db.execute("PRAGMA journal_mode=WAL")
        mode = (await cursor.fetchone() or ("?",))[0]
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"could not switch to WAL (journal_mode={mode})")
        await db.execute(f"PRAGMA synchronous={self.synchronous}")
        # A burst of writes (a big import) grows the WAL; truncate it back after checkpoints.
        await db.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT}")
        await db.execute("PRAGMA foreign_keys=ON")

    async def _incremental_vacuum_mode(self, db: aiosqlite.Connection) -> None:
        """Retention deletes old chunks every hour; with auto_vacuum=INCREMENTAL their pages can be
        given back to the filesystem (`reclaim`), instead of the file staying at its high-water mark.
        The mode can only be chosen before the first table exists, or by a VACUUM that rewrites the
        file, which is done here only while the database is small."""
        mode = (await (await db.execute("PRAGMA auto_vacuum")).fetchone() or (0,))[0]
        if mode == 2:
            return
        await db.execute("PRAGMA auto_vacuum=INCREMENTAL")
        tables = (await (await db.execute("SELECT count(*) FROM sqlite_master")).fetchone() or (0,))[0]
        if tables == 0:
            return
        size = os.path.getsize(self.path) if os.path.exists(self.path) else 0
        hint = "run `sqlite3 vigil.db 'PRAGMA auto_vacuum=INCREMENTAL; VACUUM'` while Vigil is stopped"
        if size > VACUUM_ON_OPEN_MAX_BYTES:
            log.warning("store_auto_vacuum_unavailable", bytes=size, hint=hint)
            return
        try:  # needs free space for a copy, and no other connection: never a reason not to start
            await db.execute("VACUUM")
        except sqlite3.Error as exc:
            log.warning("store_auto_vacuum_failed", bytes=size, error=str(exc), hint=hint)
        else:
            log.info("store_auto_vacuum_enabled", bytes=size)

    async def reclaim(self, max_pages: int = 2000) -> int:
        """Give up to `max_pages` free pages back to the filesystem; returns the pages freed.

        Python's sqlite3 steps a statement without result columns once, and each step of
        incremental_vacuum frees one page, hence one execute per page (about 50 µs each); the
        caller bounds the work per call so other writes never wait long."""

        async def vacuum(db: aiosqlite.Connection) -> int:
            mode = (await (await db.execute("PRAGMA auto_vacuum")).fetchone() or (0,))[0]
            if mode != 2:  # not incremental (an old large database): the pages stay for reuse
                return 0
            free = (await (await db.execute("PRAGMA freelist_count")).fetchone() or (0,))[0]
            for _ in range(min(int(free), max_pages)):
                await db.execute("PRAGMA incremental_vacuum(1)")
            after = (await (await db.execute("PRAGMA freelist_count")).fetchone() or (0,))[0]
            return int(free - after)

        return int(await self.write(vacuum))

    async def _migrate(self, db: aiosqlite.Connection) -> None:
        cursor = await db.execute("PRAGMA user_version")
        current = (await cursor.fetchone() or (0,))[0]
        if current > len(MIGRATIONS):
            raise sqlite3.DatabaseError(
                f"database schema version {current} is newer than this Vigil knows ({len(MIGRATIONS)})"
            )
        for version in range(current + 1, len(MIGRATIONS) + 1):
            script = MIGRATIONS[version - 1]
            await db.executescript(f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version={version};\nCOMMIT;")
            log.info("store_migrated", version=version)

    async def write(self, fn: WriteFn) -> Any:
        """Run `fn(db)` in the writer's transaction; returns its result once committed."""
        if not self.is_open and self._restarting is None:
            raise StoreError("store is closed")
        item = _Write(fn)
        self._queue.put_nowait(item)
        self.metrics.store_queue.set(self._queue.qsize())
        return await item.future

    async def write_alone(self, fn: WriteFn) -> Any:
        """Run `fn(db)` on the writer's connection between two batches, outside any transaction, for
        what SQLite refuses inside one (VACUUM). The writer does nothing else meanwhile: writes queued
        behind it wait, and the event loop does not (the connection works in its own thread)."""
        if not self.is_open and self._restarting is None:
            raise StoreError("store is closed")
        item = _Write(fn, alone=True)
        self._queue.put_nowait(item)
        self.metrics.store_queue.set(self._queue.qsize())
        return await item.future

    async def read(self, fn: ReadFn[T]) -> T:
        if self._restarting is not None:
            await self._restarting.wait()
        if self._reader is None:
            raise StoreError("store is closed")
        self._reads += 1
        self._reads_done.clear()
        try:
            return await fn(self._reader)
        except sqlite3.Error as exc:
            raise StoreError(f"database read failed: {exc}") from exc
        finally:
            self._reads -= 1
            if self._reads == 0:
                self._reads_done.set()

    async def _run(self) -> None:
        assert self._writer is not None
        db = self._writer
        held: _Write | None = None  # a write to run alone, met while gathering a batch
        while True:
            first = held if held is not None else await self._queue.get()
            held = None
            if first is _STOP:
                return
            if first.alone:
                self.metrics.store_queue.set(self._queue.qsize())
                await self._run_alone(db, first)
                continue
            batch = [first]
            stop_after = False
            while len(batch) < self.batch_max and not self._queue.empty():
                item = self._queue.get_nowait()
                if item is _STOP:
                    stop_after = True
                    break
                if item.alone:
                    held = item
                    break
                batch.append(item)
            self.metrics.store_queue.set(self._queue.qsize())
            await self._commit_batch(db, batch)
            if stop_after:
                return

    async def _run_alone(self, db: aiosqlite.Connection, item: _Write) -> None:
        started = time.perf_counter()
        try:
            result = await item.fn(db)
        except Exception as exc:
            if db.in_transaction:  # what it left open must not swallow the next batch
                with contextlib.suppress(sqlite3.Error):
                    await db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                wrapped = StoreError(f"database write failed: {exc}")
                wrapped.__cause__ = exc
                exc = wrapped
            self.metrics.store_errors.inc()
            if not item.future.done():
                item.future.set_exception(exc)
            return
        finally:
            self.last_commit_seconds = time.perf_counter() - started
        if not item.future.done():
            item.future.set_result(result)

    async def _commit_batch(self, db: aiosqlite.Connection, batch: list[_Write]) -> None:
        started = time.perf_counter()
        outcomes: list[tuple[_Write, Any, BaseException | None]] = []
        try:
            await db.execute("BEGIN IMMEDIATE")
            for item in batch:
                await db.execute("SAVEPOINT w")
                try:
                    result = await item.fn(db)
                except Exception as exc:
                    await db.execute("ROLLBACK TO w")
                    await db.execute("RELEASE w")
                    if isinstance(exc, sqlite3.Error):
                        wrapped = StoreError(f"database write failed: {exc}")
                        wrapped.__cause__ = exc
                        exc = wrapped
                    outcomes.append((item, None, exc))
                else:
                    await db.execute("RELEASE w")
                    outcomes.append((item, result, None))
            await db.execute("COMMIT")
        except sqlite3.Error as exc:
            log.error("store_commit_failed", error=str(exc), writes=len(batch))
            with contextlib.suppress(sqlite3.Error):
                await db.execute("ROLLBACK")
            error = StoreError(f"database write failed: {exc}")
            outcomes = [(item, None, error) for item in batch]
        elapsed = time.perf_counter() - started
        self.last_commit_seconds = elapsed
        self.metrics.store_commit.observe(elapsed)
        self.metrics.store_batch.observe(len(batch))
        for item, result, exc in outcomes:
            if item.future.done():
                continue
            if exc is None:
                item.future.set_result(result)
            else:
                self.metrics.store_errors.inc()
                item.future.set_exception(exc)

    async def close(self) -> None:
        """Commit what is queued, then close; later writes get StoreError."""
        if self._task is not None and not self._task.done():
            self._closing = True
            self._queue.put_nowait(_STOP)
            await self._task
        self._task = None
        await self._close_connections()

    async def restart(self, read_grace: float = 5.0) -> None:
        """Close and open again (components API): fresh connections, the schema checked again.

        Queued writes are committed by the old writer first; writes and reads that arrive meanwhile
        wait for the new connections instead of failing, and reads already running get up to
        `read_grace` seconds to finish before their connection closes. If the database cannot be
        opened again, the waiting writes fail and StoreError says why."""
        if self._restarting is not None:  # one restart at a time; a second caller waits for the first
            await self._restarting.wait()
            return
        restarting = self._restarting = asyncio.Event()
        try:
            if self._task is not None and not self._task.done():
                self._queue.put_nowait(_STOP)  # writes queued behind the stop wait for the new writer
                await self._task
            self._task = None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._reads_done.wait(), read_grace)
            await self._close_connections()
            await self.open()
        except Exception as exc:
            error = StoreError(f"store restart failed: {exc}")
            while not self._queue.empty():
                item = self._queue.get_nowait()
                if isinstance(item, _Write) and not item.future.done():
                    item.future.set_exception(error)
            raise error from exc
        finally:
            self._restarting = None
            restarting.set()
        log.info("store_restarted", path=self.path)

    async def _close_connections(self) -> None:
        for conn in (self._reader, self._writer):
            if conn is not None:
                try:
                    await conn.close()
                except sqlite3.Error as exc:
                    log.warning("store_close_failed", error=str(exc))
        self._reader = self._writer = None

    async def ping(self) -> float:
        """Round-trip time of a trivial read, for health."""
        started = time.perf_counter()
        await self.read(_select_one)
        return time.perf_counter() - started


async def _select_one(db: aiosqlite.Connection) -> None:
    await (await db.execute("SELECT 1")).fetchone()
