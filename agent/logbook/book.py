"""Vigil's own log events into the store, without making anyone who logs wait.

`capture` is the structlog sink: it runs inside the logging call (any thread), so it only turns the
event into a row and appends it to a bounded buffer. A task on the event loop drains the buffer in
batches through the store's one writer. When the buffer is full (the disk is slow, the store is
down, something logs in a loop) new events are dropped and counted in
`vigil_log_events_dropped_total`: losing log lines beats stalling the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections import deque
from typing import Any

import structlog
from prometheus_client import Counter

from agent.logbook import query
from agent.logbook.config import LogFileConfig, LogStoreConfig
from agent.logbook.files import FileSource
from agent.selfmetrics import SelfMetrics
from agent.store import Store, StoreError
from agent.store import logbook as rows

log = structlog.get_logger("vigil.logbook")

BATCH = 500  # rows per write; reaching it also wakes the drainer before its interval
MAX_MESSAGE = 2000
MAX_VALUE = 2000
MAX_CONTEXT = 16 * 1024
PRUNE_CHUNK = 5000
# Keys every event has, or that only structlog and the stdlib formatter use.
_SKIP = {"event", "level", "timestamp", "logger", "_record", "_from_structlog", "_logger", "_name"}


def service_of(logger_name: str) -> str:
    """`vigil.store` -> `store`; a library's logger (`aiohttp.server`) -> its package (`aiohttp`)."""
    if logger_name.startswith("vigil."):
        return logger_name[6:] or "vigil"
    return logger_name.split(".", 1)[0] or "vigil"


def _value(value: Any) -> Any:
    if isinstance(value, str):
        return value if len(value) <= MAX_VALUE else value[:MAX_VALUE] + "…"
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, list | tuple) and len(value) <= 50:
        return [_value(v) for v in value]
    if isinstance(value, dict) and len(value) <= 50:
        return {str(k): _value(v) for k, v in value.items()}
    return _value(str(value))


def context_json(event_dict: dict[str, Any]) -> str:
    """The event's fields besides its name, as JSON bounded to MAX_CONTEXT (longer values are cut)."""
    context = {str(k): _value(v) for k, v in event_dict.items() if k not in _SKIP}
    text = json.dumps(context, ensure_ascii=False, separators=(",", ":"), default=str)
    if len(text) <= MAX_CONTEXT:
        return text
    short: dict[str, Any] = {
        k: v if v is None or isinstance(v, bool | int | float) else str(v)[:200] for k, v in context.items()
    }
    short["_truncated"] = True
    text = json.dumps(short, ensure_ascii=False, separators=(",", ":"), default=str)
    return text if len(text) <= MAX_CONTEXT else '{"_truncated":true}'


class LogBook:
    def __init__(self, metrics: SelfMetrics, config: LogStoreConfig, files: list[LogFileConfig] | None = None):
        self.config = config
        self.files: list[FileSource] = []
        self.configure(config, files or [])
        self._buffer: deque[rows.NewLogRow] = deque()
        self._lock = threading.Lock()  # collector, query and executor threads log too
        self._store: Store | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._failing_since: float | None = None
        self.dropped = Counter(
            "vigil_log_events_dropped_total",
            "Log events not stored: the queue was full or the store refused the write.", registry=metrics.registry,
        )
        self.stored = Counter(
            "vigil_log_events_stored_total", "Log events written to the store for GET /api/v1/logs.",
            registry=metrics.registry,
        )

    def capture(self, logger_name: str, level: int, event_dict: dict[str, Any]) -> None:
        """The sink of agent.logs: never blocks, never raises (a broken row is a dropped row)."""
        try:
            message = str(event_dict.get("event", ""))
            row = (time.time(), level, service_of(logger_name),
                   message if len(message) <= MAX_MESSAGE else message[:MAX_MESSAGE] + "…", context_json(event_dict))
        except Exception:
            self.dropped.inc()
            return
        with self._lock:
            waiting = len(self._buffer)
            if waiting < self.config.queue_size:
                self._buffer.append(row)
                waiting += 1
            else:
                waiting = -1
        if waiting < 0:
            self.dropped.inc()
            return
        loop = self._loop
        if waiting == self._wake_at and loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closing: close() flushes what is left
                loop.call_soon_threadsafe(self._wake.set)

    def queued(self) -> int:
        with self._lock:
            return len(self._buffer)

    def start(self, store: Store) -> None:
        """Begin writing (events captured before the store opened are kept and written first)."""
        self._store = store
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._drain(), name="logbook-writer")

    def configure(self, config: LogStoreConfig, files: list[LogFileConfig]) -> None:
        """New settings; a file whose settings did not change keeps its parsed lines."""
        self.config = config
        # The drainer is woken early when half the queue is used (or a full batch waits), not only each interval.
        self._wake_at = min(BATCH, max(1, config.queue_size // 2))
        known = {source.config.model_dump_json(): source for source in self.files}
        self.files = [known.get(cfg.model_dump_json()) or FileSource(cfg) for cfg in files]

    async def query(self, q: query.LogQuery) -> query.LogPage:
        if self._store is None:
            raise StoreError("store is closed")
        return await query.run(self._store, self.files, q)

    async def _drain(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.config.flush_interval)
            self._wake.clear()
            await self.flush()

    def _take(self) -> list[rows.NewLogRow]:
        with self._lock:
            n = min(BATCH, len(self._buffer))
            return [self._buffer.popleft() for _ in range(n)]

    async def flush(self) -> None:
        """Write everything queued now; a batch the store refuses is dropped (and counted)."""
        store = self._store
        if store is None:
            return
        while batch := self._take():
            try:
                await rows.insert_many(store, batch)
            except StoreError as exc:
                self.dropped.inc(len(batch))
                now = time.time()
                if self._failing_since is None:  # once per outage, or this warning would feed itself
                    self._failing_since = now
                    log.warning("log_events_not_stored", error=str(exc), dropped=len(batch))
                return
            self.stored.inc(len(batch))
            if self._failing_since is not None:
                log.info("log_events_stored_again", after_seconds=round(time.time() - self._failing_since, 1))
                self._failing_since = None

    async def close(self) -> None:
        """Stop the drainer and write what is queued (the store must still be open)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()
        self._store = None
        self._loop = None

    async def prune(self, now: float | None = None) -> int:
        """Delete stored events older than `log.store.retention`, in chunks so other writes get their
        turn; returns how many went. Also what a cleanup task calls."""
        store = self._store
        if store is None:
            return 0
        cutoff = (time.time() if now is None else now) - self.config.retention
        deleted = 0
        while True:
            n = await rows.delete_before(store, cutoff, PRUNE_CHUNK)
            deleted += n
            if n < PRUNE_CHUNK:
                break
        if deleted:
            log.info("log_events_pruned", deleted=deleted, retention_seconds=self.config.retention)
        return deleted

    async def prune_job(self) -> None:
        await self.prune()
