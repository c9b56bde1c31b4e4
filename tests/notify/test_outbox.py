"""The notification outbox against a real SQLite file: order, retries, limits, persistence, kill -9.

The receivers here are small in-test destinations (recording, failing, hanging or refusing on command):
they stand in for external systems; the outbox, store and metrics are Vigil's own.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from agent.notify.base import DeliveryError, Message, Receiver, ReceiverConfig
from agent.notify.outbox import Outbox, OutboxConfig
from agent.selfmetrics import SelfMetrics
from agent.store import Store
from tests.conftest import REPO


class Destination(Receiver):
    """Records what it gets; can be told to be down, to fail a number of times, to hang, or to refuse."""

    type = "test"
    Config = ReceiverConfig

    def __init__(self, name: str = "r", timeout: float = 5.0):
        super().__init__(ReceiverConfig(name=name, type="test", timeout=timeout), "host")
        self.delivered: list[Message] = []
        self.attempts: list[tuple[float, int]] = []
        self.down = False
        self.fail_times = 0
        self.fail_with: type[Exception] = RuntimeError
        self.hang = False
        self.gate: asyncio.Event | None = None
        self.refuse: Callable[[Message], bool] = lambda message: False
        self.started = asyncio.Event()
        self.closed = False

    @property
    def seqs(self) -> list[int]:
        return [m.body["seq"] for m in self.delivered]

    async def deliver(self, message: Message) -> None:
        self.attempts.append((time.monotonic(), message.id))
        self.started.set()
        if self.hang:
            await asyncio.Event().wait()
        if self.gate is not None:
            await self.gate.wait()
        if self.refuse(message):
            raise DeliveryError("400 bad payload", retryable=False)
        if self.down:
            raise DeliveryError("connection refused")
        if self.fail_times > 0:
            self.fail_times -= 1
            raise self.fail_with("503 from upstream")
        self.delivered.append(message)

    async def close(self) -> None:
        self.closed = True


class Clock:
    """Wall time plus an offset the test moves forward, for the age limit."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


async def until(predicate: Callable[[], Any], what: str, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.005)


class Harness:
    def __init__(self, path: Path):
        self.path = path
        self.stores: list[Store] = []
        self.outboxes: list[Outbox] = []

    async def outbox(self, clock: Callable[[], float] = time.time, **config: Any) -> tuple[Outbox, SelfMetrics]:
        """A new Store and Outbox on the same file, with their own metrics registry."""
        metrics = SelfMetrics()
        store = Store(str(self.path), metrics)
        await store.open()
        self.stores.append(store)
        outbox = Outbox(store, metrics, OutboxConfig(**config), clock=clock)
        self.outboxes.append(outbox)
        return outbox, metrics

    async def close(self) -> None:
        for outbox in self.outboxes:
            await outbox.close()
        for store in self.stores:
            await store.close()


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    h = Harness(tmp_path / "vigil.db")
    yield h
    await h.close()


def sample(metrics: SelfMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def rows_in_table(path: Path) -> list[tuple[str, int]]:
    db = sqlite3.connect(path)
    try:
        return [(r[0], r[1]) for r in db.execute("SELECT receiver, id FROM outbox ORDER BY id")]
    finally:
        db.close()


def note(seq: int) -> dict[str, Any]:
    return {"seq": seq, "receiver": "r", "status": "firing", "alerts": []}


FAST = {"retry_initial": 0.02, "retry_max": 0.05}


async def test_receiver_down_then_up_gets_everything_in_order(harness: Harness) -> None:
    outbox, metrics = await harness.outbox(**FAST)
    dest = Destination()
    dest.down = True
    await outbox.set_receivers({"r": dest})
    ids = [await outbox.enqueue("r", "notification", note(i)) for i in range(10)]
    ids += await outbox.enqueue_many([("r", "notification", note(i)) for i in range(10, 30)])
    assert ids == sorted(ids) and len(set(ids)) == 30
    await until(lambda: sample(metrics, "vigil_notifications_total", receiver="r", result="failed") >= 3,
                "three failed attempts")
    assert dest.delivered == []
    assert {m for _, m in dest.attempts} == {ids[0]}  # head of line: only the oldest is tried
    assert outbox.queue_lengths() == {"r": 30}
    assert sample(metrics, "vigil_notification_queue_length", receiver="r") == 30
    stats = (await outbox.stats())["r"]
    assert stats["queued"] == 30 and stats["attempts"] >= 1 and stats["last_error"] == "connection refused"
    assert stats["oldest_age_seconds"] >= 0 and stats["failed"] >= 3 and stats["sent"] == 0

    dest.down = False
    await until(lambda: len(dest.delivered) == 30, "all 30 delivered")
    assert dest.seqs == list(range(30))
    await until(lambda: rows_in_table(harness.path) == [], "the delivered rows to be deleted")
    assert outbox.queue_lengths() == {"r": 0}
    assert sample(metrics, "vigil_notifications_total", receiver="r", result="sent") == 30
    assert sample(metrics, "vigil_notification_latency_seconds_count", receiver="r") == 30
    assert sample(metrics, "vigil_notifications_total", receiver="r", result="dropped") == 0
    assert (await outbox.stats())["r"]["last_success_at"] is not None


async def test_intermittent_failures_keep_order_without_duplicates(harness: Harness) -> None:
    outbox, metrics = await harness.outbox(**FAST)

    class Flaky(Destination):
        """Every third attempt fails: errors of any type, not only DeliveryError, are retried."""

        async def deliver(self, message: Message) -> None:
            if len(self.attempts) % 3 == 2:
                self.attempts.append((time.monotonic(), message.id))
                raise OSError("connection reset")
            await super().deliver(message)

    dest = Flaky()
    await outbox.set_receivers({"r": dest})
    for start in range(0, 60, 6):
        await outbox.enqueue_many([("r", "notification", note(i)) for i in range(start, start + 6)])
    await until(lambda: len(dest.delivered) == 60, "60 delivered")
    assert dest.seqs == list(range(60))
    failed = sample(metrics, "vigil_notifications_total", receiver="r", result="failed")
    assert failed >= 20
    assert failed + 60 == len(dest.attempts)


async def test_concurrent_enqueues_share_a_write_and_get_their_own_ids(harness: Harness) -> None:
    outbox, metrics = await harness.outbox()
    ids = await asyncio.gather(*(outbox.enqueue("r", "notification", note(i)) for i in range(100)),
                               outbox.enqueue_many([("r", "event", note(i)) for i in range(100, 103)]))
    flat = [*ids[:100], *ids[100]]
    db = sqlite3.connect(harness.path)
    try:
        by_id = {r[0]: r[1] for r in db.execute("SELECT id, json_extract(body, '$.seq') FROM outbox")}
    finally:
        db.close()
    assert [by_id[i] for i in flat] == list(range(103))
    batches = sample(metrics, "vigil_store_batch_size_count")
    assert 1 <= batches < 10  # one insert for all that arrived before the writer took the first

    dest = Destination()
    await outbox.set_receivers({"r": dest})
    await until(lambda: len(dest.delivered) == 103, "the first 103")
    caller = asyncio.create_task(outbox.enqueue("r", "notification", note(103)))
    await asyncio.sleep(0)  # the insert is queued; its caller goes away (a client that disconnected)
    caller.cancel()
    await until(lambda: len(dest.delivered) == 104, "the cancelled caller's message, woken after its commit",
                within=5)


async def test_backoff_grows_and_is_capped(harness: Harness) -> None:
    config = OutboxConfig(retry_initial="50ms", retry_max=0.12, retry_multiplier=2)
    assert [config.backoff(n) for n in range(1, 6)] == [0.05, 0.1, 0.12, 0.12, 0.12]
    assert config.backoff(10_000) == 0.12  # no overflow after days of failures
    outbox, metrics = await harness.outbox(retry_initial=0.05, retry_max=0.12, retry_multiplier=2)
    dest = Destination()
    dest.fail_times = 7
    await outbox.set_receivers({"r": dest})
    await outbox.enqueue("r", "notification", note(0))
    await until(lambda: dest.delivered, "delivery after 7 failures")
    times = [t for t, _ in dest.attempts]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    expected = [0.05, 0.1, 0.12, 0.12, 0.12, 0.12, 0.12]
    assert len(gaps) == len(expected)
    for gap, want in zip(gaps, expected, strict=True):
        assert gap >= want * 0.95, (gaps, expected)
    # Uncapped, the last four waits would be 0.4 + 0.8 + 1.6 + 3.2 s.
    assert sum(gaps[3:]) < 1.5, gaps
    assert sample(metrics, "vigil_notifications_total", receiver="r", result="failed") == 7
    assert sample(metrics, "vigil_notifications_total", receiver="r", result="sent") == 1
    assert dest.delivered[0].attempts == 7


async def test_a_hanging_receiver_does_not_delay_another(harness: Harness) -> None:
    outbox, metrics = await harness.outbox(**FAST)
    stuck = Destination("stuck", timeout=0.3)
    stuck.hang = True
    fine = Destination("fine")
    await outbox.set_receivers({"stuck": stuck, "fine": fine})
    await outbox.enqueue("stuck", "notification", note(0))
    await stuck.started.wait()
    for i in range(5):
        await outbox.enqueue("fine", "notification", note(i))
    await until(lambda: len(fine.delivered) == 5, "the healthy receiver's messages", within=5)
    assert sample(metrics, "vigil_notifications_total", receiver="stuck", result="failed") == 0  # still hanging
    await until(lambda: sample(metrics, "vigil_notifications_total", receiver="stuck", result="failed") >= 1,
                "the hanging attempt to be cut by the timeout")
    assert "no answer within 0.8s" in ((await outbox.stats())["stuck"]["last_error"] or "")
    stuck.hang = False
    await until(lambda: stuck.seqs == [0], "the stuck receiver to recover")


async def test_a_refused_message_is_dropped_with_a_counter(harness: Harness) -> None:
    outbox, metrics = await harness.outbox(**FAST)
    dest = Destination()
    dest.refuse = lambda message: message.body["seq"] == 2
    await outbox.set_receivers({"r": dest})
    await outbox.enqueue_many([("r", "notification", note(i)) for i in range(5)])
    await until(lambda: len(dest.delivered) == 4, "the accepted four")
    assert dest.seqs == [0, 1, 3, 4]
    assert sample(metrics, "vigil_notifications_dropped_total", receiver="r", reason="rejected") == 1
    assert sample(metrics, "vigil_notifications_total", receiver="r", result="dropped") == 1
    assert sample(metrics, "vigil_notifications_total", receiver="r", result="failed") == 0
    await until(lambda: rows_in_table(harness.path) == [], "the table to empty")
    assert (await outbox.stats())["r"]["dropped"] == 1


async def test_max_messages_drops_the_oldest_with_a_counter(harness: Harness) -> None:
    outbox, metrics = await harness.outbox(max_messages=5)
    for i in range(3):
        await outbox.enqueue("r", "notification", note(i))
    await outbox.enqueue_many([("r", "notification", note(i)) for i in range(3, 8)] +
                              [("other", "event", note(i)) for i in range(2)])
    assert outbox.queue_lengths() == {"r": 5, "other": 2}
    assert sample(metrics, "vigil_notifications_dropped_total", receiver="r", reason="overflow") == 3
    assert sample(metrics, "vigil_notifications_total", receiver="r", result="dropped") == 3
    assert sample(metrics, "vigil_notifications_dropped_total", receiver="other", reason="overflow") == 0
    dest, other = Destination(), Destination("other")
    await outbox.set_receivers({"r": dest, "other": other})
    await until(lambda: len(dest.delivered) == 5 and len(other.delivered) == 2, "the kept messages")
    assert dest.seqs == [3, 4, 5, 6, 7]
    assert other.delivered[0].kind == "event"

    outbox.configure(OutboxConfig(max_messages=2))
    dest.down = True
    await outbox.enqueue_many([("r", "notification", note(i)) for i in range(8, 12)])
    assert outbox.queue_lengths()["r"] == 2
    dest.down = False
    await until(lambda: len(dest.delivered) == 7, "the newest two")
    assert dest.seqs[5:] == [10, 11]


async def test_messages_dropped_after_being_read_ahead_are_not_delivered(harness: Harness) -> None:
    outbox, metrics = await harness.outbox(max_messages=3)
    dest = Destination()
    dest.gate = asyncio.Event()
    await outbox.set_receivers({"r": dest})
    await outbox.enqueue_many([("r", "notification", note(i)) for i in range(3)])
    await dest.started.wait()  # 0 is in flight, 1 and 2 are read ahead
    await outbox.enqueue_many([("r", "notification", note(i)) for i in range(3, 6)])
    assert sample(metrics, "vigil_notifications_dropped_total", receiver="r", reason="overflow") == 3
    dest.gate.set()
    await until(lambda: len(dest.delivered) == 4, "the in-flight one and the three kept")
    assert dest.seqs == [0, 3, 4, 5]  # the one in flight went out; 1 and 2 were dropped, not sent


async def test_max_age_drops_the_oldest_with_a_counter(harness: Harness) -> None:
    clock = Clock()
    outbox, metrics = await harness.outbox(clock=clock, max_age="1m", **FAST)
    await outbox.enqueue_many([("r", "notification", note(i)) for i in range(3)])
    clock.offset = 61
    await outbox.enqueue_many([("r", "notification", note(i)) for i in range(3, 5)])
    assert await outbox.prune() == {"expired": {"r": 3}, "overflow": {}, "receiver_removed": {}}
    assert sample(metrics, "vigil_notifications_dropped_total", receiver="r", reason="expired") == 3
    assert outbox.queue_lengths() == {"r": 2}

    dest = Destination()
    dest.down = True
    await outbox.set_receivers({"r": dest})
    await until(lambda: sample(metrics, "vigil_notifications_total", receiver="r", result="failed") >= 1,
                "a failed attempt")
    clock.offset = 200  # the worker finds its head too old on the next attempt
    await until(lambda: sample(metrics, "vigil_notifications_dropped_total", receiver="r", reason="expired") == 5,
                "the worker to drop both expired messages")
    await until(lambda: rows_in_table(harness.path) == [], "the table to empty")
    assert dest.delivered == []
    assert sample(metrics, "vigil_notifications_total", receiver="r", result="dropped") == 5


async def test_removed_receivers_lose_their_queue_with_a_counter(harness: Harness) -> None:
    outbox, metrics = await harness.outbox(**FAST)
    keep, gone = Destination("keep"), Destination("gone")
    gone.down = True
    await outbox.set_receivers({"keep": keep, "gone": gone})
    await outbox.enqueue_many([("gone", "notification", note(i)) for i in range(3)] +
                              [("ghost", "notification", note(0)), ("keep", "notification", note(0))])
    await until(lambda: keep.delivered, "the kept receiver's message")
    await outbox.set_receivers({"keep": keep})
    assert gone.closed and not keep.closed
    assert sample(metrics, "vigil_notifications_dropped_total", receiver="gone", reason="receiver_removed") == 3
    assert "gone" not in outbox.queue_lengths()
    result = await outbox.prune()  # rows of a receiver that is not configured at all
    assert result["receiver_removed"] == {"ghost": 1}
    assert sample(metrics, "vigil_notifications_dropped_total", receiver="ghost", reason="receiver_removed") == 1
    await until(lambda: rows_in_table(harness.path) == [], "the delivered row to be deleted")


async def test_a_replaced_receiver_object_keeps_the_queue(harness: Harness) -> None:
    outbox, metrics = await harness.outbox(retry_initial=30, retry_max=60)
    old = Destination()
    old.down = True
    await outbox.set_receivers({"r": old})
    await outbox.enqueue_many([("r", "notification", note(i)) for i in range(5)])
    await until(lambda: sample(metrics, "vigil_notifications_total", receiver="r", result="failed") == 1,
                "a failed attempt (then a 30s backoff)")
    new = Destination()
    await outbox.set_receivers({"r": new})  # a config change: tried again at once, not after 30 s
    assert old.closed
    await until(lambda: len(new.delivered) == 5, "delivery through the new object", within=5)
    assert new.seqs == list(range(5))
    assert sample(metrics, "vigil_notifications_total", receiver="r", result="dropped") == 0


async def test_queued_and_in_flight_messages_survive_a_restart(harness: Harness) -> None:
    first, _ = await harness.outbox()
    await first.enqueue_many([("r", "notification", note(i)) for i in range(3)])  # queued before start
    hanging = Destination()
    hanging.hang = True
    await first.set_receivers({"r": hanging})
    await hanging.started.wait()
    await first.enqueue_many([("r", "notification", note(i)) for i in range(3, 6)])
    await first.close()  # the attempt in flight is cancelled: its message stays
    assert hanging.closed
    assert len(rows_in_table(harness.path)) == 6

    second, metrics = await harness.outbox()
    assert second.queue_lengths() == {}
    dest = Destination()
    await second.set_receivers({"r": dest})
    await until(lambda: len(dest.delivered) == 6, "all six after the restart")
    assert dest.seqs == list(range(6))
    await until(lambda: sample(metrics, "vigil_notification_queue_length", receiver="r") == 0, "an empty queue")


async def test_a_backoff_is_kept_across_a_restart(harness: Harness) -> None:
    first, _ = await harness.outbox(retry_initial=0.5, retry_max=0.5)
    down = Destination()
    down.down = True
    await first.set_receivers({"r": down})
    await first.enqueue("r", "notification", note(0))
    await until(lambda: down.attempts, "the first attempt")
    failed_at = down.attempts[0][0]
    await first.close()
    second, _ = await harness.outbox(retry_initial=0.5, retry_max=0.5)
    dest = Destination()
    await second.set_receivers({"r": dest})
    await until(lambda: dest.delivered, "delivery after the restart")
    assert dest.attempts[0][0] - failed_at >= 0.45  # the stored next_attempt_at was honoured
    assert dest.delivered[0].attempts == 1


CHILD = """
import asyncio, sys
from agent.notify.outbox import Outbox
from agent.selfmetrics import SelfMetrics
from agent.store import Store

async def main(path, n):
    metrics = SelfMetrics()
    store = Store(path, metrics)
    await store.open()
    outbox = Outbox(store, metrics)
    half = n // 2
    await asyncio.gather(*(outbox.enqueue("r", "notification", {"seq": i}) for i in range(half)))
    await outbox.enqueue_many([("r", "notification", {"seq": i}) for i in range(half, n)])
    print("acked", flush=True)
    seq = n
    while True:  # keep writing, so the kill lands in the middle of transactions
        await outbox.enqueue("r", "notification", {"seq": seq})
        seq += 1

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


async def test_acknowledged_messages_survive_kill_9(harness: Harness) -> None:
    count = 300
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, str(harness.path), str(count), cwd=REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    seen: list[bytes] = []
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(60):
            while not seen or seen[-1].strip() != b"acked":  # the store logs to stdout too
                line = await proc.stdout.readline()
                if not line:
                    break
                seen.append(line)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGKILL)
        await proc.wait()
    if not seen or seen[-1].strip() != b"acked":
        err = await proc.stderr.read() if proc.stderr else b""
        raise AssertionError(f"the child did not acknowledge: {b''.join(seen)!r} {err.decode()[-2000:]}")
    assert proc.returncode == -signal.SIGKILL

    outbox, metrics = await harness.outbox()
    dest = Destination()
    await outbox.set_receivers({"r": dest})
    await until(lambda: len(dest.delivered) >= count, f"the {count} acknowledged messages")
    await until(lambda: outbox.queue_lengths() == {"r": 0}, "the queue to empty")
    # Every acknowledged message, in order, then whatever else had committed before the kill: a prefix.
    assert dest.seqs == list(range(len(dest.seqs)))
    assert sample(metrics, "vigil_notifications_total", receiver="r", result="sent") == len(dest.seqs)


async def test_bad_input(harness: Harness) -> None:
    with pytest.raises(ValidationError, match="retry_max"):
        OutboxConfig(retry_initial="10m", retry_max="5m")
    with pytest.raises(ValidationError):
        OutboxConfig(max_messages=0)
    assert OutboxConfig(max_age="2h").max_age == 7200
    outbox, _ = await harness.outbox()
    with pytest.raises(ValueError, match="unknown message kind"):
        await outbox.enqueue("r", "page", note(0))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        await outbox.enqueue("r", "notification", {"seq": object()})
    assert rows_in_table(harness.path) == []
    await outbox.close()
    with pytest.raises(RuntimeError, match="closed"):
        await outbox.set_receivers({})
