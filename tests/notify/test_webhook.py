"""The webhook receiver against a real aiohttp server on a loopback port: body, signature, errors."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from pydantic import ValidationError

from agent.notify.base import DeliveryError
from agent.notify.receivers import REGISTRY
from agent.notify.webhook import WebhookConfig, WebhookReceiver
from tests.checks.tls_fixtures import make_ca, make_leaf, server_context, write_pem
from tests.conftest import free_port
from tests.notify.helpers import HOST, alert, event, message, notification, probe_message

SECRET = "s3cr3t-hmac-key"
TOKEN = "T0K3N-in-the-path"
RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")


@dataclass
class Hook:
    """A webhook endpoint that records what it got and answers as told."""

    url: str = ""
    requests: list[tuple[bytes, dict[str, str], int]] = field(default_factory=list)
    status: int = 200
    hang: bool = False

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        peer = request.transport.get_extra_info("peername") if request.transport else None
        self.requests.append((raw, dict(request.headers), peer[1] if peer else 0))
        if self.hang:
            await asyncio.Event().wait()
        return web.Response(status=self.status, text="nope: bad payload" if self.status >= 400 else "ok")

    @property
    def last(self) -> dict[str, Any]:
        return json.loads(self.requests[-1][0])

    @property
    def headers(self) -> dict[str, str]:
        return self.requests[-1][1]


async def _serve(hook: Hook, ssl_context: Any = None) -> web.AppRunner:
    app = web.Application()
    app.router.add_post("/hooks/{token}", hook.handle)
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context).start()
    port = runner.addresses[0][1]
    hook.url = f"{'https' if ssl_context else 'http'}://127.0.0.1:{port}/hooks/{TOKEN}"
    return runner


@pytest.fixture
async def hook() -> AsyncIterator[Hook]:
    endpoint = Hook()
    runner = await _serve(endpoint)
    yield endpoint
    await runner.cleanup()


def receiver(url: str, **settings: Any) -> WebhookReceiver:
    config = WebhookConfig.model_validate({"name": "hook", "type": "webhook", "url": url, **settings})
    return WebhookReceiver(config, HOST)


async def test_registered() -> None:
    assert REGISTRY["webhook"] is WebhookReceiver


async def test_alertmanager_body_signed(hook: Hook) -> None:
    r = receiver(hook.url, hmac_secret=SECRET, headers={"Authorization": "Bearer abc123", "X-Team": "ops"})
    now = time.time()
    firing = alert(starts_at=1700000000.5, instance="web1:9100")
    resolved = alert("DiskFull", "resolved", "ffff000011112222", starts_at=1700000000, ends_at=1700000300.25,
                     value=float("nan"), alert_id=None)
    msg = message(notification(firing, resolved, receiver="hook"))
    try:
        await r.deliver(msg)
    finally:
        await r.close()
    raw, headers, _ = hook.requests[-1]
    expected = hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
    assert headers["X-Vigil-Signature"] == f"sha256={expected}"
    assert abs(int(headers["X-Vigil-Timestamp"]) - now) < 5
    assert headers["X-Vigil-Message-Id"] == str(msg.id)
    assert headers["Authorization"] == "Bearer abc123" and headers["X-Team"] == "ops"
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"].startswith("Vigil/")
    body = hook.last
    assert body == {
        "version": "4", "groupKey": '{}/{}:{alertname="HighLoad"}', "truncatedAlerts": 0, "status": "firing",
        "receiver": "hook", "groupLabels": {"alertname": "HighLoad"},
        "commonLabels": {"alertname": "HighLoad", "severity": "critical"}, "commonAnnotations": {},
        "externalURL": "http://web1:9108", "hostname": HOST, "test": False,
        "alerts": [
            {"status": "firing", "labels": firing.labels, "annotations": firing.annotations,
             "startsAt": "2023-11-14T22:13:20.5Z", "endsAt": "0001-01-01T00:00:00Z",
             "generatorURL": firing.generator_url, "fingerprint": "a1b2c3d4e5f60718", "id": 41, "value": 7.25},
            {"status": "resolved", "labels": resolved.labels, "annotations": resolved.annotations,
             "startsAt": "2023-11-14T22:13:20Z", "endsAt": "2023-11-14T22:18:20.25Z",
             "generatorURL": resolved.generator_url, "fingerprint": "ffff000011112222", "id": None, "value": "NaN"},
        ],
    }


async def test_unsigned_without_secret(hook: Hook) -> None:
    r = receiver(hook.url)
    try:
        await r.deliver(message(notification(alert())))
    finally:
        await r.close()
    assert "X-Vigil-Signature" not in hook.headers and "X-Vigil-Timestamp" not in hook.headers
    assert RFC3339.fullmatch(hook.last["alerts"][0]["startsAt"])


async def test_slack_text(hook: Hook) -> None:
    r = receiver(hook.url, format="slack")
    a = alert(instance="web1:9100")
    b = alert("HighLoad", fingerprint="0000aaaa0000bbbb", instance="db<1>:9100")
    b.annotations = {"description": "load & more"}
    try:
        await r.deliver(message(notification(a, b)))
        await r.deliver(probe_message())
    finally:
        await r.close()
    first = json.loads(hook.requests[0][0])
    assert first == {"text": "[FIRING:2] HighLoad (critical)\n"
                             "FIRING HighLoad on web1:9100: HighLoad on web1\n"
                             "FIRING HighLoad on db&lt;1&gt;:9100: load &amp; more"}
    test_text = hook.last["text"]
    assert test_text.startswith("[TEST] [FIRING:1] VigilTestNotification (web1 info)\n")
    assert "FIRING VigilTestNotification on web1: Test notification from Vigil" in test_text


async def test_resolved_slack_and_max_alerts(hook: Hook) -> None:
    r = receiver(hook.url, format="slack", max_alerts=1)
    resolved = [alert(status="resolved", fingerprint=f"{i:016x}", ends_at=time.time()) for i in range(3)]
    try:
        await r.deliver(message(notification(*resolved)))
    finally:
        await r.close()
    assert hook.last["text"].splitlines() == [
        "[RESOLVED] HighLoad (critical)", "RESOLVED HighLoad on web1: HighLoad on web1", "… and 2 more",
    ]
    r = receiver(hook.url, max_alerts=2)
    try:
        await r.deliver(message(notification(*resolved)))
    finally:
        await r.close()
    assert hook.last["truncatedAlerts"] == 1 and len(hook.last["alerts"]) == 2


async def test_test_message_is_flagged(hook: Hook) -> None:
    r = receiver(hook.url)
    try:
        await r.deliver(probe_message("hook"))
    finally:
        await r.close()
    assert hook.last["test"] is True
    assert hook.last["alerts"][0]["labels"]["alertname"] == "VigilTestNotification"


async def test_events(hook: Hook) -> None:
    quiet = receiver(hook.url)
    assert quiet.accepts_events is False
    with pytest.raises(DeliveryError) as err:
        await quiet.deliver(event())
    assert err.value.retryable is False and "send_events" in str(err.value)
    assert hook.requests == []
    await quiet.close()

    r = receiver(hook.url, send_events=True, hmac_secret=SECRET)
    assert r.accepts_events is True
    msg = event("check_state_changed", check="nginx", state="critical")
    try:
        await r.deliver(msg)
    finally:
        await r.close()
    assert hook.last == {**msg.body, "hostname": HOST}
    assert hook.last["type"] == "check_state_changed" and hook.last["data"] == {"check": "nginx", "state": "critical"}
    raw, headers, _ = hook.requests[-1]
    assert headers["X-Vigil-Signature"] == "sha256=" + hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()


async def test_keeps_the_connection(hook: Hook) -> None:
    r = receiver(hook.url)
    try:
        for _ in range(5):
            await r.deliver(message(notification(alert())))
    finally:
        await r.close()
    assert len({port for _, _, port in hook.requests}) == 1


@pytest.mark.parametrize(("status", "retryable"), [
    (500, True), (502, True), (503, True), (408, True), (429, True), (401, True), (403, True),
    (400, False), (404, False), (413, False), (422, False), (301, False),
])
async def test_error_answers(hook: Hook, status: int, retryable: bool) -> None:
    hook.status = status
    r = receiver(hook.url, headers={"Authorization": "Bearer hdr-secret-value"}, hmac_secret=SECRET)
    try:
        with pytest.raises(DeliveryError) as err:
            await r.deliver(message(notification(alert())))
    finally:
        await r.close()
    text = str(err.value)
    assert err.value.retryable is retryable
    assert f"answered {status}" in text
    assert text.startswith("http://127.0.0.1:")
    for secret in (TOKEN, "hdr-secret-value", SECRET):
        assert secret not in text
    if status != 301:
        assert "nope: bad payload" in text


async def test_hanging_server_times_out(hook: Hook) -> None:
    hook.hang = True
    r = receiver(hook.url, timeout="0.5s")
    started = time.monotonic()
    try:
        with pytest.raises(DeliveryError) as err:
            await r.deliver(message(notification(alert())))
    finally:
        await r.close()
    elapsed = time.monotonic() - started
    assert 0.45 < elapsed < 1.5
    assert err.value.retryable is True
    assert "no answer within 0.5s" in str(err.value) and TOKEN not in str(err.value)


async def test_server_closing_without_answer() -> None:
    """The request is sent once more on a new connection (a kept-alive connection may be closed by the
    server just as it is reused); a server that closes again fails the attempt."""
    connections = 0

    async def slam(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    server = await asyncio.start_server(slam, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    r = receiver(f"http://127.0.0.1:{port}/hooks/{TOKEN}")
    try:
        with pytest.raises(DeliveryError) as err:
            await r.deliver(message(notification(alert())))
    finally:
        await r.close()
        server.close()
        await server.wait_closed()
    assert err.value.retryable is True and "closed the connection without an answer" in str(err.value)
    assert connections == 2


async def test_nothing_listening_is_retryable() -> None:
    r = receiver(f"http://127.0.0.1:{free_port()}/hooks/{TOKEN}")
    try:
        with pytest.raises(DeliveryError) as err:
            await r.deliver(message(notification(alert())))
    finally:
        await r.close()
    assert err.value.retryable is True
    assert "cannot connect" in str(err.value) and TOKEN not in str(err.value)


async def test_https_with_ca_file(tmp_path: Path) -> None:
    ca = make_ca()
    endpoint = Hook()
    runner = await _serve(endpoint, server_context(make_leaf(ca), tmp_path))
    ca_file = str(write_pem(tmp_path / "ca.pem", ca))
    try:
        trusting = receiver(endpoint.url, ca_file=ca_file)
        await trusting.deliver(message(notification(alert())))
        await trusting.close()
        unverified = receiver(endpoint.url, tls_verify=False)
        await unverified.deliver(message(notification(alert())))
        await unverified.close()
        strict = receiver(endpoint.url)
        with pytest.raises(DeliveryError) as err:
            await strict.deliver(message(notification(alert())))
        await strict.close()
    finally:
        await runner.cleanup()
    assert len(endpoint.requests) == 2
    assert err.value.retryable is True
    assert "certificate not accepted" in str(err.value) and TOKEN not in str(err.value)


@pytest.mark.parametrize(("settings", "error"), [
    ({"url": "ftp://example.com/x"}, "must start with http:// or https://"),
    ({"url": "http:///nohost"}, "has no host"),
    ({"url": "http://exa mple.com/"}, "white space"),
    ({"url": "https://example.com:99999/"}, "out of range|not a valid URL"),
    ({"headers": {"Bad Header": "x"}}, "not a valid header name"),
    ({"headers": {"X-Vigil-Signature": "x"}}, "set by Vigil"),
    ({"headers": {"X-Token": "abc\r\nInjected: 1"}}, "line break"),
    ({"format": "teams"}, "'json' or 'slack'"),
    ({"hmac_secret": ""}, "hmac_secret is empty"),
    ({"ca_file": "relative.pem"}, "not an absolute path"),
    ({"ca_file": "/nonexistent/ca.pem"}, "No such file"),
    ({"timeout": 0}, "greater than 0"),
    ({"colour": "red"}, "Extra inputs are not permitted"),
])
def test_bad_config(settings: dict[str, Any], error: str) -> None:
    doc = {"name": "hook", "type": "webhook", "url": "https://hooks.example.com/T/B/secretpath", **settings}
    with pytest.raises(ValidationError) as err:
        WebhookConfig.model_validate(doc)
    messages = "; ".join(e["msg"] for e in err.value.errors())
    assert re.search(error, messages), messages
    assert "secretpath" not in messages and "abc" not in messages
