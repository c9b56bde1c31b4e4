"""Notification outbox throughput (agent/notify/outbox.py): enqueue → commit → deliver → delete, end to end.

Everything runs against a real Store on a SQLite file in a temporary directory (`--dir`, default the
system's temp dir; synchronous=FULL as the daemon opens it: one fsync per committed batch):

1. **in_process**: one receiver that accepts instantly (no I/O), so the figure is the outbox's own cost:
   `--producers` tasks each enqueue one message at a time (awaiting the commit, as the dispatcher does)
   until `--messages` are queued, while the receiver's worker delivers them.
2. **webhook**: the same to a receiver that POSTs each message as JSON, over one shared aiohttp session
   (keep-alive), to a small aiohttp server on 127.0.0.1 running in its own process (its CPU counts for
   neither side); the server answers 200 and counts what it got.
3. **webhook_paced** (information): `--paced` messages enqueued by one task at `--rate` per second to the
   same server, so the latency is that of one notification (its commit included), not a queue's backlog.

messages/s = messages / (last delivery - first enqueue). Latency = delivery done - enqueue called, per
message (p50, p99, max); under a burst it is mostly the wait behind the messages queued before. Prints one
JSON object (progress on stderr); exit status 0 when the run completed (targets met or not), 1 when it failed.

    .venv/bin/python benchmarks/notifications.py [--messages 5000] [--producers 50] [--paced 1000] [--rate 200]
        [--dir /var/tmp]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import structlog
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.notify.base import DeliveryError, Message, Receiver, ReceiverConfig
from agent.notify.outbox import Outbox, OutboxConfig
from agent.selfmetrics import SelfMetrics
from agent.store import Store

TARGETS = {"notifications_per_s_min": 1000.0}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Instant(Receiver):
    """Accepts every message at once and notes when."""

    type = "bench"
    Config = ReceiverConfig

    def __init__(self, name: str, expected: int):
        super().__init__(ReceiverConfig(name=name, type="bench"), "bench")
        self.done_at: dict[int, float] = {}
        self.ids: list[int] = []
        self.expected = expected
        self.all_done = asyncio.Event()

    def record(self, message: Message) -> None:
        self.done_at[message.body["seq"]] = time.perf_counter()
        self.ids.append(message.id)
        if len(self.done_at) >= self.expected:
            self.all_done.set()

    async def deliver(self, message: Message) -> None:
        self.record(message)


class Post(Instant):
    """A minimal webhook: the message body as JSON, one keep-alive session shared by all attempts."""

    def __init__(self, name: str, expected: int, url: str):
        super().__init__(name, expected)
        self.url = url
        self.session: aiohttp.ClientSession | None = None

    async def deliver(self, message: Message) -> None:
        if self.session is None:
            self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1))
        async with self.session.post(self.url, json=message.body) as response:
            await response.read()
            if response.status >= 300:
                raise DeliveryError(f"HTTP {response.status}", retryable=response.status >= 500)
        self.record(message)

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run_phase(path: str, receiver: Instant, messages: int, producers: int,
                    rate: float | None = None) -> dict[str, Any]:
    """`rate`: one producer enqueueing at this pace (messages/s) instead of as fast as commits allow."""
    metrics = SelfMetrics()
    store = Store(path, metrics, synchronous="full")
    await store.open()
    outbox = Outbox(store, metrics, OutboxConfig())
    started_at: dict[int, float] = {}
    acked = 0
    try:
        await outbox.set_receivers({receiver.name: receiver})
        counter = iter(range(messages))

        async def produce() -> None:
            nonlocal acked
            for seq in counter:
                if rate is not None:
                    await asyncio.sleep(max(0.0, first + seq / rate - time.perf_counter()))
                started_at[seq] = time.perf_counter()
                body = {"seq": seq, "receiver": receiver.name, "status": "firing", "alerts": [
                    {"fingerprint": f"{seq:016x}", "status": "firing", "labels": {"alertname": "Bench", "n": str(seq)},
                     "annotations": {"summary": "benchmark notification"}, "startsAt": time.time()}]}
                await outbox.enqueue(receiver.name, "notification", body)
                acked += 1

        first = time.perf_counter()
        await asyncio.gather(*(produce() for _ in range(1 if rate else producers)))
        enqueued = time.perf_counter()
        await asyncio.wait_for(receiver.all_done.wait(), 600)
        last = max(receiver.done_at.values())
        for _ in range(3000):  # the deletes of the last deliveries commit a moment later
            if not outbox.queue_lengths().get(receiver.name, 0):
                break
            await asyncio.sleep(0.01)
        latencies = [receiver.done_at[seq] - started_at[seq] for seq in range(messages)]
        batches = metrics.registry.get_sample_value("vigil_store_batch_size_count") or 0
        commit_sum = metrics.registry.get_sample_value("vigil_store_commit_duration_seconds_sum") or 0
        sent = metrics.registry.get_sample_value("vigil_notifications_total",
                                                 {"receiver": receiver.name, "result": "sent"}) or 0
        failed = metrics.registry.get_sample_value("vigil_notifications_total",
                                                   {"receiver": receiver.name, "result": "failed"}) or 0
        return {
            "messages": messages,
            "producers": 1 if rate else producers,
            "rate_per_s": rate,
            "seconds": round(last - first, 3),
            "messages_per_s": round(messages / (last - first)),
            "enqueue_acked_per_s": round(acked / (enqueued - first)),
            "latency_ms": {"p50": round(percentile(latencies, 0.5) * 1000, 2),
                           "p99": round(percentile(latencies, 0.99) * 1000, 2),
                           "max": round(max(latencies) * 1000, 2),
                           "mean": round(statistics.fmean(latencies) * 1000, 2)},
            "in_order": receiver.ids == sorted(set(receiver.ids)),
            "sent": int(sent),
            "failed_attempts": int(failed),
            "queue_left": outbox.queue_lengths().get(receiver.name, 0),
            "store_commits": int(batches),
            "store_commit_ms_mean": round(commit_sum / batches * 1000, 3) if batches else None,
        }
    finally:
        await outbox.close()
        await store.close()


async def serve(port: int) -> None:
    """The webhook target (run in its own process with --serve)."""
    received = 0

    async def hook(request: web.Request) -> web.Response:
        nonlocal received
        await request.read()
        received += 1
        return web.Response(status=200)

    async def count(_: web.Request) -> web.Response:
        return web.json_response({"received": received})

    app = web.Application()
    app.router.add_post("/hook", hook)
    app.router.add_get("/count", count)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()


async def get_json(url: str) -> Any:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return await response.json()


async def webhook_phases(path: str, messages: int, producers: int, paced: int, rate: float) -> dict[str, Any]:
    """A burst of `messages` (throughput), then `paced` messages at `rate`/s (latency), to one server."""
    port = free_port()
    server = await asyncio.create_subprocess_exec(sys.executable, __file__, "--serve", str(port),
                                                  stdout=asyncio.subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                await get_json(url + "/count")
                break
            except aiohttp.ClientError:
                if server.returncode is not None or time.monotonic() > deadline:
                    raise RuntimeError("the webhook server did not start") from None
                await asyncio.sleep(0.05)
        log(f"webhook: {messages} messages, {producers} producers")
        burst = await run_phase(path + "-burst", Post("webhook", messages, url + "/hook"), messages, producers)
        burst["server_received"] = (await get_json(url + "/count"))["received"]
        log(f"webhook_paced: {paced} messages at {rate:g}/s")
        paced_result = await run_phase(path + "-paced", Post("paced", paced, url + "/hook"), paced, 1, rate)
        paced_result["server_received"] = (await get_json(url + "/count"))["received"] - burst["server_received"]
        return {"webhook": burst, "webhook_paced": paced_result}
    finally:
        if server.returncode is None:
            server.terminate()
        with contextlib.suppress(ProcessLookupError):
            await server.wait()


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    workdir = tempfile.mkdtemp(prefix="vigil-notify-bench-", dir=args.dir)
    try:
        log(f"in_process: {args.messages} messages, {args.producers} producers")
        in_process = await run_phase(os.path.join(workdir, "a.db"), Instant("instant", args.messages),
                                     args.messages, args.producers)
        webhook = await webhook_phases(os.path.join(workdir, "b.db"), args.messages, args.producers, args.paced,
                                       args.rate)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    target = TARGETS["notifications_per_s_min"]
    meets = {
        "in_process": in_process["messages_per_s"] >= target and in_process["in_order"],
        "webhook": webhook["webhook"]["messages_per_s"] >= target and webhook["webhook"]["in_order"]
        and webhook["webhook"]["server_received"] == args.messages,
    }
    meets["all"] = all(meets.values())
    return {
        "in_process": in_process,
        **webhook,
        "targets": TARGETS,
        "meets_targets": meets,
        "params": {"messages": args.messages, "producers": args.producers, "paced": args.paced, "rate": args.rate,
                   "dir": args.dir or tempfile.gettempdir(),
                   "synchronous": "full", "cores": os.cpu_count(), "python": platform.python_version(),
                   "aiohttp": aiohttp.__version__},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--producers", type=int, default=50, help="concurrent enqueueing tasks")
    ap.add_argument("--paced", type=int, default=1000, help="messages of the paced (latency) figure")
    ap.add_argument("--rate", type=float, default=200.0, help="messages/s of the paced figure")
    ap.add_argument("--dir", default=None, help="where the SQLite file goes (a real disk: fsync is measured)")
    ap.add_argument("--serve", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    # stdout carries the JSON only: Vigil's log lines (store migrations, warnings) go to stderr.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr),
                        wrapper_class=structlog.make_filtering_bound_logger(30))
    if args.serve is not None:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(args.serve))
        return 0
    try:
        result = asyncio.run(bench(args))
    except Exception as exc:
        log(f"benchmark failed: {type(exc).__name__}: {exc}")
        return 1
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
