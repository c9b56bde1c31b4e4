"""The outbox: every notification is committed to SQLite before anyone is told it was sent, and each
receiver gets its messages from there, one at a time, in order, with retries.

Guarantees, and what they cost:
- `enqueue` returns only after COMMIT, so a `kill -9` right after it loses nothing; the worker deletes a
  row only after `deliver()` returned (at-least-once: a crash between the two sends that one again).
- One worker task per receiver, head of line: a message that fails is retried, with exponential backoff,
  before any later message of that receiver, so a receiver that is down gets everything, in order, when
  it comes back. Workers share nothing but the store, so a slow or hanging receiver (each attempt is cut
  after its `timeout`) never holds up another.
- Limits: messages older than `max_age`, and the oldest beyond `max_messages` per receiver, are dropped,
  always from the head of the queue, each one counted in `vigil_notifications_dropped_total{reason}` and
  logged; never silently. A receiver removed from the config has its queue dropped
  (reason="receiver_removed"): its messages were meant for a destination that no longer exists, and
  handing hours-old ones to a later receiver that happens to get the same name would surprise more than
  it helps. Rows of receivers that are not configured at all (left from before a restart) are dropped the
  same way by `prune()`.
- A message a receiver refuses outright (DeliveryError with retryable=False) is dropped (reason="rejected"),
  since retrying cannot help and would block the queue behind it forever.

Throughput: a worker reads its queue ahead in pages and deletes what it delivered in batches, in a
separate task, while it already delivers the next message; so one receiver is not bound by one commit
(one fsync) per message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter as Tally
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, get_args

import aiosqlite
import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from pydantic import Field, model_validator

from agent.config.durations import Duration
from agent.config.section import Section
from agent.notify.base import DeliveryError, Message, MessageKind, Receiver
from agent.selfmetrics import SelfMetrics
from agent.store import outbox as sql
from agent.store.db import Store

T = TypeVar("T")
log = structlog.get_logger("vigil.notify")

MESSAGE_KINDS: frozenset[str] = frozenset(get_args(MessageKind))
DROP_REASONS = ("expired", "overflow", "rejected", "receiver_removed")
RESULTS = ("sent", "failed", "dropped")
DELIVER_MARGIN = 0.5
"""Added to a receiver's own `timeout`: the receiver should give up first and say why."""
PREFETCH = 200
IDLE_POLL = 30.0
"""An idle worker also looks at its queue this often, in case a wake-up was missed."""
DELETE_BATCH = 100
DELETE_DELAY = 0.02
"""Delivered messages are deleted in one write per `DELETE_BATCH`, or after this many seconds: a crash in
between sends them again (at-least-once), a shorter delay costs a commit (an fsync) per few messages."""
CLOSE_TIMEOUT = 5.0
ERROR_MAX_CHARS = 1000
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                   120.0, 300.0, 600.0, 1800.0, 3600.0)


class OutboxConfig(Section):
    """`notifications.outbox`: how long and how many messages are kept for a receiver, and the retry pace."""

    max_age: Duration = Field(24 * 3600.0, gt=0, description="messages not delivered within this are dropped")
    max_messages: int = Field(10_000, ge=1, description="per receiver; beyond it the oldest are dropped")
    retry_initial: Duration = Field(1.0, gt=0, description="wait after the first failed attempt")
    retry_max: Duration = Field(300.0, gt=0, description="the wait between attempts grows up to this")
    retry_multiplier: float = Field(2.0, ge=1.0, description="each failed attempt multiplies the wait by this")

    @model_validator(mode="after")
    def _retry_bounds(self) -> OutboxConfig:
        if self.retry_max < self.retry_initial:
            raise ValueError(f"retry_max ({self.retry_max:g}s) must not be shorter than retry_initial "
                             f"({self.retry_initial:g}s)")
        return self

    def backoff(self, attempts: int) -> float:
        """Seconds to wait after the `attempts`-th failed attempt of a message."""
        try:
            delay = self.retry_initial * self.retry_multiplier ** max(0, attempts - 1)
        except OverflowError:
            return self.retry_max
        return min(delay, self.retry_max)


@dataclass
class _Tally:
    sent: int = 0
    failed: int = 0
    dropped: int = 0
    last_success_at: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None


@dataclass
class _InsertBatch:
    rows: list[sql.NewRow] = field(default_factory=list)
    task: asyncio.Future[list[int]] | None = None


@dataclass
class _Lane:
    """One receiver's delivery state; it outlives the Receiver object, which a config change may replace."""

    name: str
    receiver: Receiver
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    cursor: int = 0
    """Id of the last message handled (delivered, rejected or dropped): the next read starts after it,
    so rows whose delete is not committed yet are not read again."""
    buffer: deque[sql.OutboxRow] = field(default_factory=deque)
    waited_for: int = 0
    """Id of the message whose backoff this process has waited out; its stored next_attempt_at is then
    not waited for again (it would be, once more, by a clock that moved backwards or was stopped)."""
    retry_now: bool = False
    pending_delete: list[int] = field(default_factory=list)
    flusher: asyncio.Task[None] | None = None


class _QueueLengthCollector(Collector):
    def __init__(self, outbox: Outbox):
        self._outbox = outbox

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "vigil_notification_queue_length", "Notifications waiting in the outbox, per receiver.", labels=["receiver"]
        )
        for name, length in sorted(self._outbox.queue_lengths().items()):
            family.add_metric([name], length)
        yield family


class Outbox:
    def __init__(
        self, store: Store, metrics: SelfMetrics | CollectorRegistry, config: OutboxConfig | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.store = store
        self.config = config or OutboxConfig()
        self._clock = clock
        registry = metrics.registry if isinstance(metrics, SelfMetrics) else metrics
        self._sent = Counter(
            "vigil_notifications_total", "Delivery attempts of notifications by result (sent, failed, dropped).",
            ["receiver", "result"], registry=registry,
        )
        self._dropped = Counter(
            "vigil_notifications_dropped_total",
            "Notifications dropped without delivery, by reason (expired, overflow, rejected, receiver_removed).",
            ["receiver", "reason"], registry=registry,
        )
        self._latency = Histogram(
            "vigil_notification_latency_seconds", "Time from enqueueing a notification to its delivery.",
            ["receiver"], buckets=LATENCY_BUCKETS, registry=registry,
        )
        self._open_batch: _InsertBatch | None = None
        self._lengths: dict[str, int] | None = None
        """Rows per receiver, changed only inside write functions (so in the writer's order) and loaded
        from the table by the first write that needs it; None again after a failed write (resync)."""
        self._dropped_upto: dict[str, int] = {}
        self._lanes: dict[str, _Lane] = {}
        self._tallies: dict[str, _Tally] = {}
        self._configured: set[str] | None = None
        self._closed = False
        self._lock = asyncio.Lock()
        registry.register(_QueueLengthCollector(self))

    # --- enqueue -------------------------------------------------------------------------------------

    async def enqueue(self, receiver: str, kind: MessageKind, body: dict[str, Any]) -> int:
        """Returns the message id once committed."""
        return (await self.enqueue_many([(receiver, kind, body)]))[0]

    async def enqueue_many(self, items: Sequence[tuple[str, MessageKind, dict[str, Any]]]) -> list[int]:
        """All in one transaction; returns the ids once committed. A receiver over `max_messages` loses its
        oldest messages in that same transaction."""
        if not items:
            return []
        now = self._clock()
        rows = []
        for receiver, kind, body in items:
            if kind not in MESSAGE_KINDS:
                raise ValueError(f"unknown message kind {kind!r} (one of {', '.join(sorted(MESSAGE_KINDS))})")
            rows.append(sql.NewRow(receiver, kind, json.dumps(body, separators=(",", ":")), now))
        # Enqueues that arrive before the pending insert has reached the writer join it: one statement and one
        # savepoint for all of them. Shielded: a caller cancelled meanwhile still has its receiver woken.
        batch = self._open_batch
        if batch is None:
            batch = self._open_batch = _InsertBatch()
            batch.task = asyncio.ensure_future(self._insert(batch))
            batch.task.add_done_callback(_retrieve)
        start = len(batch.rows)
        batch.rows.extend(rows)
        ids = await asyncio.shield(batch.task)
        return ids[start:start + len(rows)]

    async def _insert(self, batch: _InsertBatch) -> list[int]:
        try:
            return await self._insert_rows(batch)
        finally:
            if self._open_batch is batch:
                self._open_batch = None

    async def _insert_rows(self, batch: _InsertBatch) -> list[int]:
        keep = self.config.max_messages
        added: Tally[str] = Tally()
        trimmed: dict[str, sql.Dropped] = {}

        async def op(db: aiosqlite.Connection) -> list[int]:
            if self._open_batch is batch:  # from here on, later enqueues start the next batch
                self._open_batch = None
            rows = batch.rows
            added.update(row.receiver for row in rows)
            lengths = await self._loaded_lengths(db)
            ids = await sql.insert(db, rows)
            drops = {}
            for receiver, count in added.items():
                if lengths.get(receiver, 0) + count > keep:
                    drops[receiver] = await sql.drop_oldest_beyond(db, receiver, keep)
            for receiver, count in added.items():
                lengths[receiver] = lengths.get(receiver, 0) + count
            for receiver, dropped in drops.items():
                self._forget(receiver, dropped)
            trimmed.update(drops)
            return ids

        ids = await self._write(op)
        for receiver, dropped in trimmed.items():
            if dropped.count:
                self._count_drop(receiver, "overflow", dropped.count)
                log.warning("notifications_dropped", receiver=receiver, reason="overflow", count=dropped.count,
                            max_messages=keep)
        for receiver in added:
            lane = self._lanes.get(receiver)
            if lane is not None:
                lane.wake.set()
        return ids

    # --- receivers -----------------------------------------------------------------------------------

    async def set_receivers(self, receivers: Mapping[str, Receiver]) -> None:
        """Make the configured receivers exactly these (keyed by name).

        New names get a worker; a new object under a known name replaces the old one (its in-flight
        attempt is cancelled, queued messages stay, and the head is tried again at once without waiting
        out its backoff: the new settings may be the fix); a name no longer present
        has its worker stopped, its Receiver closed and its queue dropped (reason="receiver_removed")."""
        async with self._lock:
            if self._closed:
                raise RuntimeError("the outbox is closed")
            if self._lengths is None:
                await self._write(self._loaded_lengths)
            wanted = dict(receivers)
            for name in [n for n in self._lanes if n not in wanted]:
                lane = self._lanes.pop(name)
                await self._stop_lane(lane)
                await self._close_receiver(lane.receiver)
                await self._drop_receiver(name)
            for name, receiver in wanted.items():
                lane = self._lanes.get(name)
                if lane is None:
                    lane = self._lanes[name] = _Lane(name, receiver)
                    self._touch(name)
                elif lane.receiver is not receiver:
                    await self._stop_lane(lane)
                    await self._close_receiver(lane.receiver)
                    lane.receiver = receiver
                    lane.retry_now = True
                else:
                    continue
                lane.task = asyncio.create_task(self._run_lane(lane, receiver), name=f"notify-{name}")
            self._configured = set(wanted)

    def configure(self, config: OutboxConfig) -> None:
        """New limits and retry pace; workers use them from their next message on."""
        self.config = config

    async def close(self) -> None:
        """Stop every worker (an attempt in flight is cancelled: its message stays queued and goes out after
        the restart), commit the deletes of what was delivered, and close the receivers. The store must
        still be open."""
        async with self._lock:
            if self._closed:
                return
            self._closed = True
            lanes = list(self._lanes.values())
            self._lanes.clear()
            for lane in lanes:
                if lane.task is not None:
                    lane.task.cancel()
            for lane in lanes:
                await self._stop_lane(lane)
            for lane in lanes:
                await self._close_receiver(lane.receiver)

    async def _stop_lane(self, lane: _Lane) -> None:
        if lane.task is not None:
            lane.task.cancel()
            await asyncio.gather(lane.task, return_exceptions=True)
            lane.task = None
        lane.buffer.clear()
        if lane.flusher is not None:
            await asyncio.gather(lane.flusher, return_exceptions=True)
            lane.flusher = None

    async def _close_receiver(self, receiver: Receiver) -> None:
        try:
            await asyncio.wait_for(receiver.close(), CLOSE_TIMEOUT)
        except Exception as exc:
            log.warning("notify_receiver_close_failed", receiver=receiver.name, error=f"{type(exc).__name__}: {exc}")

    async def _drop_receiver(self, name: str) -> None:
        async def op(db: aiosqlite.Connection) -> int:
            lengths = await self._loaded_lengths(db)
            count = await sql.delete_receiver(db, name)
            lengths.pop(name, None)
            self._dropped_upto.pop(name, None)
            return count

        count = await self._write(op)
        if count:
            self._count_drop(name, "receiver_removed", count)
            log.warning("notifications_dropped", receiver=name, reason="receiver_removed", count=count)

    # --- limits --------------------------------------------------------------------------------------

    async def prune(self) -> dict[str, dict[str, int]]:
        """Enforce `max_age` and `max_messages` on every queue, drop the queues of receivers that are not
        configured, and resynchronise the queue lengths with the table. Returns {reason: {receiver: count}}."""
        cutoff = self._clock() - self.config.max_age
        keep = self.config.max_messages
        result: dict[str, dict[str, int]] = {"expired": {}, "overflow": {}, "receiver_removed": {}}

        async def op(db: aiosqlite.Connection) -> None:
            expired = await sql.drop_older_than(db, cutoff)
            counts = await sql.counts(db)
            removed: dict[str, int] = {}
            if configured is not None:
                for name in [n for n in counts if n not in configured]:
                    removed[name] = await sql.delete_receiver(db, name)
                    del counts[name]
            overflow: dict[str, sql.Dropped] = {}
            for name, count in counts.items():
                if count > keep:
                    overflow[name] = await sql.drop_oldest_beyond(db, name, keep)
                    counts[name] = count - overflow[name].count
            self._lengths = {name: count for name, count in counts.items() if count}  # counted after the drops
            for name, dropped in [*expired.items(), *overflow.items()]:
                self._mark_dropped(name, dropped)
            for name in removed:
                self._dropped_upto.pop(name, None)
            result["expired"] = {n: d.count for n, d in expired.items() if d.count}
            result["overflow"] = {n: d.count for n, d in overflow.items() if d.count}
            result["receiver_removed"] = {n: c for n, c in removed.items() if c}

        async with self._lock:  # not while set_receivers is between two sets of receivers
            configured = None if self._configured is None else set(self._configured)
            await self._write(op)
        for reason, per_receiver in result.items():
            for name, count in per_receiver.items():
                self._count_drop(name, reason, count)
                log.warning("notifications_dropped", receiver=name, reason=reason, count=count)
        return result

    # --- delivery ------------------------------------------------------------------------------------

    async def _run_lane(self, lane: _Lane, receiver: Receiver) -> None:
        while True:
            try:
                await self._step(lane, receiver)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("notify_worker_error", receiver=lane.name)
                lane.buffer.clear()
                await asyncio.sleep(min(self.config.retry_max, max(self.config.retry_initial, 1.0)))

    async def _step(self, lane: _Lane, receiver: Receiver) -> None:
        """Handle the head of the queue once: deliver, retry later, or drop."""
        if not lane.buffer:
            lane.wake.clear()  # before the read: an enqueue committed after it sets it again
            after = lane.cursor
            rows = await self.store.read(lambda db: sql.pending(db, lane.name, after, PREFETCH))
            if not rows:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lane.wake.wait(), IDLE_POLL)
                return
            lane.buffer.extend(rows)
        row = lane.buffer[0]
        if row.id <= self._dropped_upto.get(lane.name, 0):  # dropped by a limit since it was read
            self._advance(lane, delete=False)
            return
        now = self._clock()
        if now - row.created_at > self.config.max_age:
            self._advance(lane, delete=True)
            self._count_drop(lane.name, "expired", 1)
            log.warning("notifications_dropped", receiver=lane.name, reason="expired", count=1, id=row.id,
                        attempts=row.attempts, last_error=row.last_error)
            return
        if lane.retry_now:  # a new receiver object (changed config) may succeed where the old one failed
            lane.retry_now = False
        elif row.attempts and row.id != lane.waited_for and row.next_attempt_at > now:
            # a backoff that was running before a restart
            await asyncio.sleep(min(row.next_attempt_at - now, self.config.retry_max))
            lane.waited_for = row.id
            return
        message = Message(row.id, row.receiver, row.kind, row.body, row.created_at, row.attempts)
        timeout = float(receiver.config.timeout) + DELIVER_MARGIN
        try:
            async with asyncio.timeout(timeout):
                await receiver.deliver(message)
        except DeliveryError as exc:
            if not exc.retryable:
                self._advance(lane, delete=True)
                self._count_drop(lane.name, "rejected", 1)
                log.warning("notifications_dropped", receiver=lane.name, reason="rejected", count=1, id=row.id,
                            error=str(exc))
                return
            error = str(exc) or type(exc).__name__
        except TimeoutError:
            error = f"no answer within {timeout:g}s"
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
            error = "delivery was cancelled by the receiver"
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
        else:
            self._delivered(lane, row)
            return
        await self._failed(lane, row, error)

    def _delivered(self, lane: _Lane, row: sql.OutboxRow) -> None:
        now = self._clock()
        self._advance(lane, delete=True)
        self._sent.labels(lane.name, "sent").inc()
        self._latency.labels(lane.name).observe(max(0.0, now - row.created_at))
        tally = self._tally(lane.name)
        tally.sent += 1
        tally.last_success_at = now

    async def _failed(self, lane: _Lane, row: sql.OutboxRow, error: str) -> None:
        """Record the attempt, then wait out the backoff: only `close()` or a receiver change cuts it short,
        new messages queue behind the one that failed."""
        error = error[:ERROR_MAX_CHARS]
        attempts = row.attempts + 1
        delay = self.config.backoff(attempts)
        now = self._clock()
        await self._write(lambda db: sql.record_attempt(db, row.id, attempts, now + delay, error))
        self._sent.labels(lane.name, "failed").inc()
        tally = self._tally(lane.name)
        tally.failed += 1
        tally.last_error, tally.last_error_at = error, now
        log.warning("notification_failed", receiver=lane.name, id=row.id, attempts=attempts,
                    retry_in_seconds=round(delay, 3), error=error)
        lane.buffer.clear()  # read the head again after the wait: a limit may have dropped it meanwhile
        await asyncio.sleep(delay)
        lane.waited_for = row.id

    def _advance(self, lane: _Lane, delete: bool) -> None:
        row = lane.buffer.popleft()
        lane.cursor = max(lane.cursor, row.id)
        if delete:
            lane.pending_delete.append(row.id)
            if lane.flusher is None or lane.flusher.done():
                lane.flusher = asyncio.create_task(self._flush(lane), name=f"notify-delete-{lane.name}")

    async def _flush(self, lane: _Lane) -> None:
        """Delete what was handled, in batches: whatever piled up while the previous commit ran."""
        name = lane.name
        while lane.pending_delete:
            if len(lane.pending_delete) < DELETE_BATCH and not self._closed:
                await asyncio.sleep(DELETE_DELAY)  # let a burst of deliveries share one commit
            ids, lane.pending_delete = lane.pending_delete, []

            async def op(db: aiosqlite.Connection, ids: list[int] = ids) -> None:
                lengths = await self._loaded_lengths(db)
                left = lengths.get(name, 0) - await sql.delete(db, ids)
                if left > 0:
                    lengths[name] = left
                else:
                    lengths.pop(name, None)

            try:
                await self._write(op)
            except Exception as exc:
                lane.pending_delete[:0] = ids
                if self._closed:
                    log.warning("notify_delete_failed", receiver=name, count=len(ids), error=str(exc),
                                consequence="delivered again after the restart")
                    return
                log.warning("notify_delete_failed", receiver=name, count=len(ids), error=str(exc))
                await asyncio.sleep(1.0)

    # --- state ---------------------------------------------------------------------------------------

    def queue_lengths(self) -> dict[str, int]:
        lengths = dict(self._lengths or {})
        for name in self._lanes:
            lengths.setdefault(name, 0)
        return lengths

    async def stats(self) -> dict[str, dict[str, Any]]:
        """Per receiver (configured, or with messages queued): queue and delivery state for the API."""
        lengths = self.queue_lengths()
        names = sorted(set(lengths) | set(self._lanes))
        heads = await self.store.read(lambda db: sql.heads(db, names))
        now = self._clock()
        out: dict[str, dict[str, Any]] = {}
        for name in names:
            head = heads.get(name)
            tally = self._tallies.get(name) or _Tally()
            out[name] = {
                "configured": name in self._lanes,
                "queued": lengths.get(name, 0),
                "oldest_age_seconds": max(0.0, now - head.created_at) if head else None,
                "attempts": head.attempts if head else 0,
                "last_error": head.last_error if head else None,
                "last_success_at": tally.last_success_at,
                "sent": tally.sent,
                "failed": tally.failed,
                "dropped": tally.dropped,
            }
        return out

    # --- helpers -------------------------------------------------------------------------------------

    async def _loaded_lengths(self, db: aiosqlite.Connection) -> dict[str, int]:
        if self._lengths is None:
            self._lengths = await sql.counts(db)
        return self._lengths

    def _forget(self, receiver: str, dropped: sql.Dropped) -> None:
        """Inside a write: a prefix of the receiver's queue is gone."""
        if not dropped.count:
            return
        if self._lengths is not None:
            left = self._lengths.get(receiver, 0) - dropped.count
            if left > 0:
                self._lengths[receiver] = left
            else:
                self._lengths.pop(receiver, None)
        self._mark_dropped(receiver, dropped)

    def _mark_dropped(self, receiver: str, dropped: sql.Dropped) -> None:
        if dropped.count:
            self._dropped_upto[receiver] = max(self._dropped_upto.get(receiver, 0), dropped.upto_id)

    async def _write(self, op: Callable[[aiosqlite.Connection], Awaitable[T]]) -> T:
        try:
            result: T = await self.store.write(op)
        except Exception:
            self._lengths = None  # the write rolled back what it counted: reload from the table
            raise
        return result

    def _count_drop(self, receiver: str, reason: str, count: int) -> None:
        self._sent.labels(receiver, "dropped").inc(count)
        self._dropped.labels(receiver, reason).inc(count)
        self._tally(receiver).dropped += count

    def _tally(self, receiver: str) -> _Tally:
        tally = self._tallies.get(receiver)
        if tally is None:
            tally = self._tallies[receiver] = _Tally()
            self._touch(receiver)
        return tally

    def _touch(self, receiver: str) -> None:
        """Create the receiver's series at 0, so rate() and increase() see the first event."""
        for result in RESULTS:
            self._sent.labels(receiver, result)
        for reason in DROP_REASONS:
            self._dropped.labels(receiver, reason)
        self._latency.labels(receiver)


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Mark the exception of a shielded task as seen when its caller was cancelled and never awaits it."""
    if not task.cancelled():
        task.exception()

