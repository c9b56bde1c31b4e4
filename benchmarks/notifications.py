"""Notification throughput through the outbox (agent/notify/outbox.py) to Vigil's real receivers, end to end.

Every phase runs against a real Store on a SQLite file in a temporary directory (`--dir`, default the
system's temp dir; synchronous=FULL as the daemon opens it: one fsync per committed batch). The messages
are notification bodies as the dispatcher queues them (`Notification.to_dict()`, one alert each), and the
webhook and mqtt receivers are built from their config models through `REGISTRY`, as the dispatcher
builds them, so what is measured is the code the daemon runs:

1. **in_process**: one receiver that accepts instantly (no I/O), so the figure is the outbox's own cost:
   `--producers` tasks each enqueue one message at a time (awaiting the commit, as the dispatcher does)
   until `--messages` are queued, while the receiver's worker delivers them.
2. **webhook**: the same through Vigil's `WebhookReceiver` (`format: json`, `hmac_secret` set, so each
   POST carries an Alertmanager version-4 body and an HMAC-SHA256 signature) to a small aiohttp server on
   127.0.0.1 in its own process (its CPU counts for neither side), which checks every signature, notes
   when each message arrived, and answers 200.
3. **webhook_paced** (information): `--paced` messages enqueued by one task at `--rate` per second to the
   same server, so the latency is that of one notification (its commit included), not a queue's backlog.
4. **mqtt**: the same burst as 2 through Vigil's `MqttReceiver` (QoS 1: each delivery waits for the
   broker's PUBACK) to a mosquitto started here on a free 127.0.0.1 port with its own config in the
   temporary directory; a subscriber in its own process (aiomqtt, QoS 1, subscribed to the receiver's
   `…/alerts/#` before the first enqueue) notes when each message arrived.

messages/s = messages / (last arrival - first enqueue), where an arrival is the server or subscriber
getting the message (in_process: `deliver()` called). Latency = arrival - enqueue called, per message
(p50, p99, max); under a burst it is mostly the wait behind the messages queued before. Times are
`time.monotonic()`, the host's CLOCK_MONOTONIC, so they compare across the processes. Prints one JSON
object (progress on stderr); exit status 0 when the run completed (targets met or not), 1 when it failed,
2 when mosquitto was not found.

    .venv/bin/python benchmarks/notifications.py [--messages 5000] [--producers 50] [--paced 1000] [--rate 200]
        [--dir /var/tmp] [--mosquitto /usr/sbin/mosquitto]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import platform
import pwd
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import aiomqtt
import paho.mqtt
import structlog
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.notify.base import AlertItem, Message, Notification, Receiver, ReceiverConfig
from agent.notify.config import NotificationsConfig
from agent.notify.mqtt import MqttReceiver
from agent.notify.outbox import Outbox, OutboxConfig
from agent.notify.receivers import REGISTRY
from agent.selfmetrics import SelfMetrics
from agent.store import Store

TARGET_PER_S = 1000.0
HOSTNAME = "bench1"
ARRIVAL_TIMEOUT = 120.0
"""How long a phase waits, after the last enqueue, for every message to arrive before it reports the missing."""
SECRET_ENV = "VIGIL_BENCH_HMAC_SECRET"


class BenchmarkError(Exception):
    """The run could not be completed (a server that did not start, a broker that died)."""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def notification_body(seq: int, receiver: str) -> dict[str, Any]:
    """What the dispatcher queues for one firing alert. `seq` is the alert's id and its fingerprint (hex), so
    the far side can tell which message it got from the webhook body or the MQTT topic alone."""
    now = time.time()
    item = AlertItem(
        fingerprint=f"{seq:016x}", status="firing",
        labels={"alertname": "HighLoad", "severity": "critical", "instance": f"{HOSTNAME}:9100", "n": str(seq)},
        annotations={"summary": f"HighLoad on {HOSTNAME}", "description": "load is 7.25 for 5m",
                     "runbook_url": "http://runbooks.example/HighLoad"},
        starts_at=now - 300, generator_url=f"http://{HOSTNAME}:9108/graph?g0.expr=node_load1", value=7.25,
        alert_id=seq,
    )
    return Notification(
        receiver=receiver, status="firing", alerts=[item], group_key='{}:{alertname="HighLoad"}',
        group_labels={"alertname": "HighLoad"}, common_labels=dict(item.labels),
        common_annotations=dict(item.annotations), external_url=f"http://{HOSTNAME}:9108", hostname=HOSTNAME,
    ).to_dict()


def build_receiver(settings: dict[str, Any]) -> Receiver:
    """As the daemon does: the `notifications` section validated, then the type's class from REGISTRY."""
    cfg = NotificationsConfig.model_validate({"receivers": [settings]}).receivers[0]
    return REGISTRY[cfg.type](cfg, HOSTNAME)


@dataclass
class Arrivals:
    """Which message (seq) arrived when, in arrival order, and what the far side has to say about them."""

    seqs: list[int]
    times: list[float]
    extra: dict[str, Any]


class Instant(Receiver):
    """Accepts every message at once and notes when: the outbox alone."""

    type = "bench"
    Config = ReceiverConfig

    def __init__(self, name: str, expected: int):
        super().__init__(ReceiverConfig(name=name, type="bench"), HOSTNAME)
        self.arrivals = Arrivals([], [], {})
        self.expected = expected
        self.all_done = asyncio.Event()

    async def deliver(self, message: Message) -> None:
        self.arrivals.times.append(time.monotonic())
        self.arrivals.seqs.append(message.body["alerts"][0]["id"])
        if len(self.arrivals.seqs) >= self.expected:
            self.all_done.set()

    async def wait(self) -> Arrivals:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.all_done.wait(), ARRIVAL_TIMEOUT)
        return self.arrivals


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run_phase(path: str, receiver: Receiver, messages: int, producers: int,
                    arrivals: Callable[[], Awaitable[Arrivals]], rate: float | None = None) -> dict[str, Any]:
    """`arrivals` waits for the far side to have every message (or gives up) and says when each came.
    `rate`: one producer enqueueing at this pace (messages/s) instead of as fast as commits allow."""
    metrics = SelfMetrics()
    store = Store(path, metrics, synchronous="full")
    await store.open()
    outbox = Outbox(store, metrics, OutboxConfig())
    started_at: dict[int, float] = {}
    acked = 0
    try:
        await outbox.set_receivers({receiver.name: receiver})
        counter = iter(range(messages))
        bodies = [notification_body(seq, receiver.name) for seq in range(messages)]

        async def produce() -> None:
            nonlocal acked
            for seq in counter:
                if rate is not None:
                    await asyncio.sleep(max(0.0, first + seq / rate - time.monotonic()))
                started_at[seq] = time.monotonic()
                await outbox.enqueue(receiver.name, "notification", bodies[seq])
                acked += 1

        first = time.monotonic()
        await asyncio.gather(*(produce() for _ in range(1 if rate else producers)))
        enqueued = time.monotonic()
        got = await arrivals()
        for _ in range(3000):  # the deletes of the last deliveries commit a moment later
            if not outbox.queue_lengths().get(receiver.name, 0):
                break
            await asyncio.sleep(0.01)
        arrived: dict[int, float] = {}
        for seq, at in zip(got.seqs, got.times, strict=True):
            arrived.setdefault(seq, at)
        if not arrived:
            raise BenchmarkError(f"{receiver.name}: not one message arrived within {ARRIVAL_TIMEOUT:g}s")
        last = max(arrived.values())
        latencies = [at - started_at[seq] for seq, at in arrived.items()]
        batches = metrics.registry.get_sample_value("vigil_store_batch_size_count") or 0
        commit_sum = metrics.registry.get_sample_value("vigil_store_commit_duration_seconds_sum") or 0

        def count(result: str) -> int:
            return int(metrics.registry.get_sample_value(
                "vigil_notifications_total", {"receiver": receiver.name, "result": result}) or 0)

        return {
            "messages": messages,
            "producers": 1 if rate else producers,
            "rate_per_s": rate,
            "seconds": round(last - first, 3),
            "messages_per_second": round(len(arrived) / (last - first)),
            "enqueue_acked_per_s": round(acked / (enqueued - first)),
            "latency_ms": {"p50": round(percentile(latencies, 0.5) * 1000, 2),
                           "p99": round(percentile(latencies, 0.99) * 1000, 2),
                           "max": round(max(latencies) * 1000, 2),
                           "mean": round(statistics.fmean(latencies) * 1000, 2)},
            "received": len(arrived),
            "missing": messages - len(arrived),
            "duplicates": len(got.seqs) - len(arrived),
            "in_order": got.seqs == list(range(messages)),
            "sent": count("sent"),
            "failed_attempts": count("failed"),
            "dropped": count("dropped"),
            "queue_left": outbox.queue_lengths().get(receiver.name, 0),
            "store_commits": int(batches),
            "store_commit_ms_mean": round(commit_sum / batches * 1000, 3) if batches else None,
            **got.extra,
        }
    finally:
        await outbox.close()
        await store.close()


# --- the webhook server (its own process) ---


async def serve(port: int, secret: bytes) -> None:
    """Checks each request's signature as a receiver of Vigil's webhooks would, and notes each arrival, per
    path (one per receiver). `GET /wait/<name>?n=` answers once `n` came (or after `timeout` seconds)."""
    seqs: dict[str, list[int]] = {}
    times: dict[str, list[float]] = {}
    bad: dict[str, int] = {}
    changed = asyncio.Condition()

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        at = time.monotonic()
        name = request.match_info["name"]
        expected = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(request.headers.get("X-Vigil-Signature", ""), expected):
            bad[name] = bad.get(name, 0) + 1
        seqs.setdefault(name, []).append(json.loads(body)["alerts"][0]["id"])
        times.setdefault(name, []).append(at)
        async with changed:
            changed.notify_all()
        return web.Response(status=200)

    async def wait(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        n = int(request.query["n"])
        async with changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait_for(lambda: len(seqs.get(name, [])) >= n),
                                       float(request.query.get("timeout", ARRIVAL_TIMEOUT)))
        return web.json_response({"seqs": seqs.get(name, []), "times": times.get(name, []),
                                  "bad_signatures": bad.get(name, 0)})

    async def ping(_: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/hook/{name}", hook)
    app.router.add_get("/wait/{name}", wait)
    app.router.add_get("/ping", ping)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()


async def get_json(url: str) -> Any:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        response.raise_for_status()
        return await response.json()


async def webhook_phases(path: str, messages: int, producers: int, paced: int, rate: float) -> dict[str, Any]:
    """A burst of `messages` (throughput), then `paced` messages at `rate`/s (latency), to one server."""
    port = free_port()
    secret = secrets.token_hex(32)
    server = await asyncio.create_subprocess_exec(sys.executable, __file__, "--serve", str(port),
                                                  stdout=asyncio.subprocess.DEVNULL,
                                                  env={**os.environ, SECRET_ENV: secret})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                async with asyncio.timeout(10):
                    await get_json(url + "/ping")
                break
            except aiohttp.ClientError:
                if server.returncode is not None or time.monotonic() > deadline:
                    raise BenchmarkError("the webhook server did not start") from None
                await asyncio.sleep(0.05)

        async def phase(name: str, count: int, producer_count: int, pace: float | None) -> dict[str, Any]:
            receiver = build_receiver({"name": name, "type": "webhook", "url": f"{url}/hook/{name}",
                                       "hmac_secret": secret, "timeout": "10s"})

            async def arrivals() -> Arrivals:
                async with asyncio.timeout(ARRIVAL_TIMEOUT + 20):
                    doc = await get_json(f"{url}/wait/{name}?n={count}&timeout={ARRIVAL_TIMEOUT}")
                return Arrivals(doc["seqs"], doc["times"], {"bad_signatures": doc["bad_signatures"]})

            return await run_phase(f"{path}-{name}", receiver, count, producer_count, arrivals, pace)

        log(f"webhook: {messages} messages, {producers} producers")
        burst = await phase("webhook", messages, producers, None)
        log(f"webhook_paced: {paced} messages at {rate:g}/s")
        paced_result = await phase("webhook_paced", paced, 1, rate)
        return {"webhook": burst, "webhook_paced": paced_result}
    finally:
        if server.returncode is None:
            server.terminate()
        with contextlib.suppress(ProcessLookupError):
            await server.wait()


# --- mosquitto and the subscriber (its own process) ---


async def subscribe(port: int, topic: str, expected: int) -> None:
    """Prints `ready` once subscribed, then one JSON line with every arrival once `expected` came (or
    after ARRIVAL_TIMEOUT without a message)."""
    seqs: list[int] = []
    times: list[float] = []
    empty = 0
    async with aiomqtt.Client("127.0.0.1", port, identifier=f"bench-sub-{os.getpid()}") as client:
        await client.subscribe(topic, qos=1)
        print("ready", flush=True)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(ARRIVAL_TIMEOUT) as cutoff:
                async for m in client.messages:
                    times.append(time.monotonic())
                    seqs.append(int(m.topic.value.rsplit("/", 1)[1], 16))
                    if not m.payload:
                        empty += 1
                    if len(seqs) >= expected:
                        break
                    cutoff.reschedule(asyncio.get_running_loop().time() + ARRIVAL_TIMEOUT)
    print(json.dumps({"seqs": seqs, "times": times, "empty_payloads": empty}), flush=True)


@contextlib.asynccontextmanager
async def mosquitto(binary: str, root: Path) -> AsyncIterator[int]:
    """A broker of our own on a free loopback port; yields the port. No persistence, and no limit on the
    messages queued for a slow subscriber (the default 1000 would drop QoS 1 messages rather than count
    them late)."""
    port = free_port()
    conf = root / "mosquitto.conf"
    logfile = root / "mosquitto.log"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 0\n"
        f"log_dest file {logfile}\nuser {pwd.getpwuid(os.geteuid()).pw_name}\n"
    )
    proc = await asyncio.create_subprocess_exec(binary, "-c", str(conf), stdout=asyncio.subprocess.DEVNULL,
                                                stderr=asyncio.subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            if proc.returncode is not None:
                raise BenchmarkError(f"mosquitto exited ({proc.returncode}): {read_tail(logfile)}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            if time.monotonic() > deadline:
                raise BenchmarkError(f"mosquitto did not listen within 10s: {read_tail(logfile)}")
            await asyncio.sleep(0.02)
        yield port
        if proc.returncode is not None:
            raise BenchmarkError(f"mosquitto exited during the run ({proc.returncode}): {read_tail(logfile)}")
    finally:
        if proc.returncode is None:
            proc.terminate()
        with contextlib.suppress(ProcessLookupError):
            await proc.wait()


def read_tail(path: Path) -> str:
    with contextlib.suppress(OSError):
        return " | ".join(path.read_text(errors="replace").splitlines()[-5:])
    return "(no log)"


async def mqtt_phase(path: str, binary: str, root: Path, messages: int, producers: int) -> dict[str, Any]:
    async with mosquitto(binary, root) as port:
        receiver = build_receiver({"name": "mqtt", "type": "mqtt", "host": "127.0.0.1", "port": port, "qos": 1,
                                   "client_id": "vigil-bench", "timeout": "10s"})
        if not isinstance(receiver, MqttReceiver):
            raise BenchmarkError(f"REGISTRY built a {type(receiver).__name__} for type mqtt")
        topic = f"{receiver.prefix}/alerts/#"
        subscriber = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--subscribe", str(port), topic, str(messages),
            stdout=asyncio.subprocess.PIPE, limit=64 * 1024 * 1024)
        assert subscriber.stdout is not None
        stdout = subscriber.stdout
        try:
            async with asyncio.timeout(20):
                ready = await stdout.readline()
            if ready.strip() != b"ready":
                raise BenchmarkError("the MQTT subscriber did not start")

            async def arrivals() -> Arrivals:
                async with asyncio.timeout(ARRIVAL_TIMEOUT + 20):
                    line = await stdout.readline()
                if not line:
                    raise BenchmarkError("the MQTT subscriber exited without its figures")
                doc = json.loads(line)
                return Arrivals(doc["seqs"], doc["times"], {"empty_payloads": doc["empty_payloads"]})

            log(f"mqtt: {messages} messages, {producers} producers, QoS 1, broker 127.0.0.1:{port}")
            return await run_phase(f"{path}-mqtt", receiver, messages, producers, arrivals)
        finally:
            if subscriber.returncode is None:
                subscriber.terminate()
            with contextlib.suppress(ProcessLookupError):
                await subscriber.wait()


# --- the run ---


def passes(phase: dict[str, Any]) -> bool:
    """Fast enough, and every message there once, in order, intact."""
    return (phase["messages_per_second"] >= TARGET_PER_S and phase["in_order"]
            and not phase.get("bad_signatures") and not phase.get("empty_payloads"))


def mosquitto_version(binary: str) -> str:
    out = subprocess.run([binary, "-h"], capture_output=True, text=True, timeout=10).stdout
    return out.splitlines()[0].removeprefix("mosquitto version ").strip() if out else "unknown"


async def bench(args: argparse.Namespace, binary: str) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="vigil-notify-bench-", dir=args.dir))
    try:
        log(f"in_process: {args.messages} messages, {args.producers} producers")
        instant = Instant("instant", args.messages)
        in_process = await run_phase(str(workdir / "a.db"), instant, args.messages, args.producers, instant.wait)
        webhook = await webhook_phases(str(workdir / "b.db"), args.messages, args.producers, args.paced, args.rate)
        mqtt = await mqtt_phase(str(workdir / "c.db"), binary, workdir, args.messages, args.producers)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    target: dict[str, Any] = {"min_messages_per_second": TARGET_PER_S}
    for name, phase in (("webhook", webhook["webhook"]), ("mqtt", mqtt)):
        target[name] = {"messages_per_second": phase["messages_per_second"], "pass": passes(phase)}
    target["pass"] = target["webhook"]["pass"] and target["mqtt"]["pass"]
    return {
        "in_process": in_process,
        **webhook,
        "mqtt": mqtt,
        "target": target,
        "params": {"messages": args.messages, "producers": args.producers, "paced": args.paced, "rate": args.rate,
                   "dir": args.dir or tempfile.gettempdir(), "synchronous": "full", "cores": os.cpu_count(),
                   "loadavg_1m": round(os.getloadavg()[0], 2), "python": platform.python_version(),
                   "aiohttp": aiohttp.__version__, "aiomqtt": aiomqtt.__version__, "paho_mqtt": paho.mqtt.__version__,
                   "mosquitto": mosquitto_version(binary)},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=5000, help="of each burst (in_process, webhook, mqtt)")
    ap.add_argument("--producers", type=int, default=50, help="concurrent enqueueing tasks")
    ap.add_argument("--paced", type=int, default=1000, help="messages of the paced (latency) figure")
    ap.add_argument("--rate", type=float, default=200.0, help="messages/s of the paced figure")
    ap.add_argument("--dir", default=None, help="where the SQLite files go (a real disk: fsync is measured)")
    ap.add_argument("--mosquitto", default="/usr/sbin/mosquitto", help="the broker binary (Debian's mosquitto)")
    ap.add_argument("--serve", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--subscribe", nargs=3, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    # stdout carries the JSON only: Vigil's log lines (store migrations, warnings) go to stderr.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr),
                        wrapper_class=structlog.make_filtering_bound_logger(30))
    if args.serve is not None:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(args.serve, os.environ[SECRET_ENV].encode()))
        return 0
    if args.subscribe is not None:
        port, topic, expected = args.subscribe
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(subscribe(int(port), topic, int(expected)))
        return 0
    binary = shutil.which(args.mosquitto)
    if binary is None:
        log(f"{args.mosquitto} not found (apt-get install mosquitto)")
        return 2
    try:
        result = asyncio.run(bench(args, binary))
    except Exception as exc:
        log(f"benchmark failed: {type(exc).__name__}: {exc}")
        return 1
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
