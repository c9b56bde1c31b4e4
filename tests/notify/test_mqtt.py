"""The mqtt receiver against a real Mosquitto on a loopback port: presence and Last Will, retained alert
state and its clearing, events, a broker that goes away and comes back, TLS and authentication."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pwd
import signal
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from pydantic import ValidationError

from agent.notify.base import DeliveryError
from agent.notify.mqtt import MqttConfig, MqttReceiver
from tests.checks.tls_fixtures import make_ca, make_leaf, write_pem
from tests.conftest import REPO, free_port, require_binary
from tests.notify.helpers import HOST, alert, event, message, notification, probe_message

PREFIX = f"vigil/{HOST}"
STATUS = f"{PREFIX}/status"


@dataclass
class Broker:
    """One mosquitto process; `stop()` and `start()` again keep the port (and lose the retained state:
    persistence is off)."""

    root: Path
    extra: str = ""
    port: int = field(default_factory=free_port)
    proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        binary = require_binary("mosquitto")
        conf = self.root / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\npersistence false\nlog_dest stdout\nlog_type all\n"
            f"user {pwd.getpwuid(os.geteuid()).pw_name}\n{self.extra or 'allow_anonymous true'}\n"
        )
        with (self.root / "mosquitto.log").open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(binary, "-c", str(conf), stdout=log,
                                                             stderr=asyncio.subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while True:
            assert self.proc.returncode is None, (self.root / "mosquitto.log").read_text()
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return
            assert time.monotonic() < deadline, (self.root / "mosquitto.log").read_text()
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            async with asyncio.timeout(10):
                await self.proc.wait()
        self.proc = None


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[Broker]:
    b = Broker(tmp_path)
    await b.start()
    yield b
    await b.stop()


def client(port: int, **kwargs: Any) -> aiomqtt.Client:
    return aiomqtt.Client("127.0.0.1", port, identifier=f"test-{uuid.uuid4().hex[:12]}", **kwargs)


async def retained(port: int, **kwargs: Any) -> dict[str, bytes]:
    """What a new subscriber to `vigil/#` is handed: the retained state. A marker message published after
    subscribing comes back after all of it (the broker answers one connection in order)."""
    marker = f"test/marker/{uuid.uuid4().hex}"
    found: dict[str, bytes] = {}
    async with client(port, **kwargs) as c:
        await c.subscribe("vigil/#", qos=1)
        await c.subscribe(marker, qos=1)
        await c.publish(marker, b"x", qos=1)
        async with asyncio.timeout(5):
            async for m in c.messages:
                if m.topic.value == marker:
                    break
                if m.retain:
                    assert isinstance(m.payload, bytes)
                    found[m.topic.value] = m.payload
    return found


async def until(check: Callable[[], Any], what: str, within: float = 10) -> Any:
    deadline = time.monotonic() + within
    while True:
        got = await check()
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def watching(port: int) -> AsyncIterator[list[tuple[str, bytes]]]:
    """Everything published under `vigil/#` while the block runs, in arrival order."""
    seen: list[tuple[str, bytes]] = []
    async with client(port) as c:
        await c.subscribe("vigil/#", qos=1)

        async def collect() -> None:
            async for m in c.messages:
                assert isinstance(m.payload, bytes)
                seen.append((m.topic.value, m.payload))

        task = asyncio.create_task(collect())
        try:
            yield seen
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def receiver(port: int, **settings: Any) -> MqttReceiver:
    doc = {"name": "mq", "type": "mqtt", "host": "127.0.0.1", "port": port, **settings}
    return MqttReceiver(MqttConfig.model_validate(doc), HOST)


async def test_state_events_and_close(broker: Broker) -> None:
    r = receiver(broker.port)
    load = alert("HighLoad", fingerprint="1111222233334444", instance="web1:9100")
    disk = alert("DiskFull", fingerprint="5555666677778888", value=float("inf"), alert_id=7)
    async with watching(broker.port) as seen:
        await r.deliver(message(notification(load, disk)))
        state = await retained(broker.port)
        assert state[STATUS] == b"online"
        load_state = json.loads(state[f"{PREFIX}/alerts/HighLoad/1111222233334444"])
        assert load_state["status"] == "firing" and load_state["labels"] == load.labels
        assert load_state["annotations"] == load.annotations and load_state["value"] == 7.25
        assert load_state["id"] == 41 and load_state["fingerprint"] == "1111222233334444"
        assert load_state["startsAt"].endswith("Z")
        assert json.loads(state[f"{PREFIX}/alerts/DiskFull/5555666677778888"])["value"] == "+Inf"

        resolved = alert("HighLoad", "resolved", "1111222233334444", ends_at=time.time(), instance="web1:9100")
        await r.deliver(message(notification(resolved)))
        state = await retained(broker.port)
        assert f"{PREFIX}/alerts/HighLoad/1111222233334444" not in state
        assert f"{PREFIX}/alerts/DiskFull/5555666677778888" in state

        change = event("alert_state_changed", alertname="HighLoad", state="resolved")
        await r.deliver(change)
        await r.deliver(event("metrics", node_load1=0.5))
        await r.deliver(probe_message("mq"))
        await r.close()
        assert (await retained(broker.port))[STATUS] == b"offline"
        await until(lambda: asyncio.sleep(0, len(seen) >= 8), "all messages at the watcher")

    topics = [t for t, _ in seen]
    assert topics == [
        STATUS, f"{PREFIX}/alerts/HighLoad/1111222233334444", f"{PREFIX}/alerts/DiskFull/5555666677778888",
        f"{PREFIX}/alerts/HighLoad/1111222233334444", f"{PREFIX}/events", f"{PREFIX}/metrics", f"{PREFIX}/events",
        STATUS,
    ]
    payloads = [p for _, p in seen]
    assert payloads[0] == b"online" and payloads[3] == b"" and payloads[-1] == b"offline"
    assert json.loads(payloads[4]) == change.body
    assert json.loads(payloads[5])["data"] == {"node_load1": 0.5}
    test = json.loads(payloads[6])
    assert test["type"] == "test" and test["data"]["alerts"][0]["labels"]["alertname"] == "VigilTestNotification"
    with pytest.raises(DeliveryError):
        await r.deliver(event())  # closed


KILLED_RECEIVER = """
import asyncio, sys
from agent.notify.mqtt import MqttConfig, MqttReceiver
from tests.notify.helpers import event

async def main() -> None:
    config = MqttConfig.model_validate({"name": "mq", "type": "mqtt", "host": "127.0.0.1", "port": int(sys.argv[1])})
    await MqttReceiver(config, "web1").deliver(event())
    print("delivered", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


async def test_last_will_when_the_process_dies(broker: Broker) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", KILLED_RECEIVER, str(broker.port), cwd=REPO, stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(20):
            while (line := await proc.stdout.readline()) != b"delivered\n":  # after the log lines
                assert line, "the receiver process ended"
        assert (await retained(broker.port))[STATUS] == b"online"
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        # No DISCONNECT came: the broker publishes the Last Will, retained.
        await until(lambda: _status_is(broker.port, b"offline"), "the Last Will")
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def _status_is(port: int, value: bytes) -> bool:
    return (await retained(port)).get(STATUS) == value


async def test_broker_down_then_back(broker: Broker) -> None:
    r = receiver(broker.port, timeout="2s")
    try:
        await r.deliver(message(notification(alert())))
        await broker.stop()
        with pytest.raises(DeliveryError) as err:
            await r.deliver(message(notification(alert("Second", fingerprint="2222222222222222"))))
        assert err.value.retryable is True
        assert f"127.0.0.1:{broker.port}" in str(err.value)
        with pytest.raises(DeliveryError):  # still down: fails again, at once
            await r.deliver(message(notification(alert("Second", fingerprint="2222222222222222"))))
        await broker.start()
        await r.deliver(message(notification(alert("Second", fingerprint="2222222222222222"))))
        state = await retained(broker.port)
        assert state[STATUS] == b"online"
        assert f"{PREFIX}/alerts/Second/2222222222222222" in state
    finally:
        await r.close()


async def test_broker_restart_between_deliveries_is_seamless(broker: Broker) -> None:
    r = receiver(broker.port)
    try:
        await r.deliver(message(notification(alert())))
        await broker.stop()
        await broker.start()
        # The kept connection is dead; the delivery notices at its first publish and connects again.
        await r.deliver(message(notification(alert("Third", fingerprint="3333333333333333"))))
        state = await retained(broker.port)
        assert state[STATUS] == b"online" and f"{PREFIX}/alerts/Third/3333333333333333" in state
    finally:
        await r.close()


async def test_silent_broker_times_out() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)  # the TCP connection is accepted by the kernel, CONNACK never comes
        r = receiver(listener.getsockname()[1], timeout="0.5s")
        started = time.monotonic()
        with pytest.raises(DeliveryError) as err:
            await r.deliver(event())
        elapsed = time.monotonic() - started
        await r.close()
    assert err.value.retryable is True and "no answer within 0.5s" in str(err.value)
    assert elapsed < 1.5


async def test_username_password(tmp_path: Path) -> None:
    passwd = require_binary("mosquitto_passwd")
    password_file = tmp_path / "passwd"
    made = await asyncio.create_subprocess_exec(passwd, "-b", "-c", str(password_file), "vigil", "mq-s3cret")
    assert await made.wait() == 0
    b = Broker(tmp_path, extra=f"allow_anonymous false\npassword_file {password_file}")
    await b.start()
    good = receiver(b.port, username="vigil", password="mq-s3cret", client_id="vigil-test", topic_prefix="site/a")
    bad = receiver(b.port, username="vigil", password="not-it-at-all")
    try:
        await good.deliver(event())
        state = await retained(b.port, username="vigil", password="mq-s3cret")
        assert state == {}  # under site/a, not vigil/
        with pytest.raises(DeliveryError) as err:
            await bad.deliver(event())
        assert err.value.retryable is True and "refused" in str(err.value)
        assert "not-it-at-all" not in str(err.value)
        async with client(b.port, username="vigil", password="mq-s3cret") as c:
            await c.subscribe("site/a/status", qos=1)
            async with asyncio.timeout(5):
                m = await anext(aiter(c.messages))
            assert m.payload == b"online" and m.retain
    finally:
        await good.close()
        await bad.close()
        await b.stop()


async def test_tls(tmp_path: Path) -> None:
    ca = make_ca()
    leaf = make_leaf(ca)
    ca_file = write_pem(tmp_path / "ca.pem", ca)
    cert_file = write_pem(tmp_path / "server.pem", leaf)
    key_file = tmp_path / "server.key"
    key_file.write_bytes(leaf.key_pem)
    b = Broker(tmp_path, extra=f"allow_anonymous true\ncafile {ca_file}\ncertfile {cert_file}\nkeyfile {key_file}")
    await b.start()
    trusting = receiver(b.port, tls=True, ca_file=str(ca_file))
    strict = receiver(b.port, tls=True)
    try:
        await trusting.deliver(event())
        with pytest.raises(DeliveryError) as err:
            await strict.deliver(event())
        assert err.value.retryable is True and "certificate" in str(err.value)
    finally:
        await trusting.close()
        await strict.close()
        await b.stop()


def test_defaults() -> None:
    r = MqttReceiver(MqttConfig.model_validate({"name": "mq", "type": "mqtt", "host": "broker.example"}), "db7")
    assert (r.port, r.prefix, r.client_id, r.config.qos) == (1883, "vigil/db7", "vigil-db7", 1)
    assert r.accepts_events is True
    tls = MqttConfig.model_validate({"name": "mq", "type": "mqtt", "host": "broker.example", "tls": True})
    assert MqttReceiver(tls, "db7").port == 8883


@pytest.mark.parametrize(("settings", "error"), [
    ({"host": "mqtt://broker:1883"}, "must be a host name or address"),
    ({"port": 0}, "greater than or equal to 1"),
    ({"topic_prefix": "vigil/+/x"}, "wildcards"),
    ({"topic_prefix": "vigil/"}, "start or end with '/'"),
    ({"topic_prefix": "$SYS/x"}, "reserved"),
    ({"password": "pw-secret"}, "a password needs a username"),
    ({"send_resolved": False}, "clears the retained alert state"),
    ({"qos": 3}, "less than or equal to 2"),
    ({"keepalive": "0s"}, "greater than or equal to 1"),
    ({"tls": "sometimes"}, "valid boolean"),
])
def test_bad_config(settings: dict[str, Any], error: str) -> None:
    with pytest.raises(ValidationError) as err:
        MqttConfig.model_validate({"name": "mq", "type": "mqtt", "host": "broker.example", **settings})
    messages = "; ".join(e["msg"] for e in err.value.errors())
    assert error in messages, messages
    assert "pw-secret" not in messages
