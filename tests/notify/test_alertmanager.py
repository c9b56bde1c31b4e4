"""The alertmanager receiver against a real `prometheus-alertmanager` (Debian package) on a loopback port:
what Alertmanager's own API shows after a delivery is the test's oracle."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import bcrypt
import pytest
from aiohttp import web
from pydantic import ValidationError

from agent.notify.alertmanager import AlertmanagerConfig, AlertmanagerReceiver
from agent.notify.base import DeliveryError
from tests.conftest import free_port, require_binary
from tests.notify.helpers import HOST, alert, event, message, notification, probe_message

AM_CONFIG = """\
route:
  receiver: default
  group_wait: 1h
receivers:
  - name: default
"""


@contextlib.asynccontextmanager
async def alertmanager(tmp_path: Path, web_config: str | None = None) -> AsyncIterator[str]:
    """Alertmanager on a free loopback port, clustering off, its own data dir; yields its base URL."""
    binary = require_binary("prometheus-alertmanager")
    (tmp_path / "alertmanager.yml").write_text(AM_CONFIG)
    args = [f"--config.file={tmp_path / 'alertmanager.yml'}", f"--storage.path={tmp_path / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{free_port()}", "--cluster.listen-address="]
    if web_config is not None:
        (tmp_path / "web.yml").write_text(web_config)
        args.append(f"--web.config.file={tmp_path / 'web.yml'}")
    url = "http://" + args[2].split("=", 1)[1]
    log_path = tmp_path / "alertmanager.log"
    with log_path.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(binary, *args, stdout=log, stderr=log, start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        async with aiohttp.ClientSession() as session:
            while True:
                assert proc.returncode is None, log_path.read_text()
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(f"{url}/-/ready") as resp:
                        if resp.status in (200, 401):
                            break
                assert time.monotonic() < deadline, log_path.read_text()
                await asyncio.sleep(0.05)
        yield url
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def am_alerts(url: str, headers: dict[str, str] | None = None, **params: str) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession(headers=headers) as session, \
            session.get(f"{url}/api/v2/alerts", params=params) as resp:
        assert resp.status == 200, await resp.text()
        result: list[dict[str, Any]] = await resp.json()
        return result


async def poll(fetch: Callable[[], Any], check: Callable[[Any], bool], what: str, within: float = 10) -> Any:
    deadline = time.monotonic() + within
    while True:
        got = await fetch()
        if check(got):
            return got
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {got!r}"
        await asyncio.sleep(0.05)


def unix(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def receiver(url: str, **settings: Any) -> AlertmanagerReceiver:
    config = AlertmanagerConfig.model_validate({"name": "am", "type": "alertmanager", "url": url, **settings})
    return AlertmanagerReceiver(config, HOST)


async def test_alerts_show_in_alertmanager_and_resolve(tmp_path: Path) -> None:
    async with alertmanager(tmp_path) as url:
        r = receiver(url)
        started = time.time() - 300.25
        load = alert("HighLoad", starts_at=started, empty="")
        disk = alert("DiskFull", fingerprint="0123456789abcdef", starts_at=started, instance="db1:9100",
                     ends_at=time.time() + 3600)
        try:
            await r.deliver(message(notification(load, disk)))
            shown = await poll(lambda: am_alerts(url), lambda got: len(got) == 2, "both alerts")
            by_name = {a["labels"]["alertname"]: a for a in shown}
            high = by_name["HighLoad"]
            assert high["labels"] == {"alertname": "HighLoad", "severity": "critical", "instance": HOST}
            assert high["annotations"] == load.annotations
            assert high["generatorURL"] == load.generator_url
            assert abs(unix(high["startsAt"]) - started) < 0.002
            # No endsAt sent: Alertmanager holds the alert for its resolve_timeout (5m) unless told again.
            assert 290 < unix(high["endsAt"]) - time.time() <= 300
            assert high["status"]["state"] in ("active", "unprocessed")
            full = by_name["DiskFull"]
            assert full["labels"]["instance"] == "db1:9100"
            assert abs(unix(full["endsAt"]) - disk.ends_at) < 0.002  # type: ignore[operator]

            # Delivered an hour after it was queued (Alertmanager was down): still valid for as long as
            # it was meant to be, counted from its arrival, so the backlog does not resolve it on the way.
            late = message(notification(alert("Backlog", fingerprint="7777777777777777",
                                              starts_at=time.time() - 3700, ends_at=time.time() - 3600 + 240)))
            late.created_at = time.time() - 3600
            await r.deliver(late)
            backlog = await poll(lambda: am_alerts(url, filter='alertname="Backlog"'), bool, "the late alert")
            assert 235 < unix(backlog[0]["endsAt"]) - time.time() <= 240
            await r.deliver(message(notification(alert("Backlog", "resolved", "7777777777777777",
                                                       starts_at=time.time() - 3700, ends_at=time.time()))))

            resolved_load = alert("HighLoad", "resolved", starts_at=started, ends_at=time.time(), empty="")
            await r.deliver(message(notification(resolved_load)))
            left = await poll(lambda: am_alerts(url, active="true"), lambda got: len(got) == 1,
                              "HighLoad and Backlog resolved")
            assert left[0]["labels"]["alertname"] == "DiskFull"
            # Resolved without a known end time: the time it was queued.
            resolved_disk = alert("DiskFull", "resolved", "0123456789abcdef", starts_at=started, instance="db1:9100")
            await r.deliver(message(notification(resolved_disk)))
            await poll(lambda: am_alerts(url), lambda got: got == [], "every alert resolved")
        finally:
            await r.close()


async def test_test_message_fires_then_resolves(tmp_path: Path) -> None:
    async with alertmanager(tmp_path) as url:
        r = receiver(url)
        try:
            before = time.time()
            await r.deliver(probe_message("am"))
            shown = await poll(lambda: am_alerts(url), lambda got: len(got) == 1, "the test alert")
        finally:
            await r.close()
    test_alert = shown[0]
    assert test_alert["labels"] == {"alertname": "VigilTestNotification", "severity": "info", "instance": HOST}
    assert before - 0.01 <= unix(test_alert["startsAt"]) <= time.time()
    assert 59 < unix(test_alert["endsAt"]) - unix(test_alert["startsAt"]) < 61


async def test_basic_auth(tmp_path: Path) -> None:
    hashed = bcrypt.hashpw(b"am-pass-w0rd", bcrypt.gensalt(rounds=4)).decode()
    async with alertmanager(tmp_path, f"basic_auth_users:\n  vigil: {hashed}\n") as url:
        good = receiver(url, basic_auth={"username": "vigil", "password": "am-pass-w0rd"})
        bad = receiver(url, basic_auth={"username": "vigil", "password": "wrong-secret"})
        none = receiver(url)
        try:
            await good.deliver(message(notification(alert())))
            shown = await am_alerts(url, {"Authorization": "Basic " + base64.b64encode(b"vigil:am-pass-w0rd").decode()})
            assert [a["labels"]["alertname"] for a in shown] == ["HighLoad"]
            for refused, secret in ((bad, "wrong-secret"), (none, None)):
                with pytest.raises(DeliveryError) as err:
                    await refused.deliver(message(notification(alert())))
                assert err.value.retryable is True  # held until the credentials are fixed
                assert "answered 401" in str(err.value)
                if secret:
                    assert secret not in str(err.value)
        finally:
            for r in (good, bad, none):
                await r.close()


async def test_refused_batch_is_not_retried(tmp_path: Path) -> None:
    async with alertmanager(tmp_path) as url:
        r = receiver(url)
        try:
            with pytest.raises(DeliveryError) as err:
                await r.deliver(message(notification(alert(**{"bad-label": "x"}))))
        finally:
            await r.close()
    assert err.value.retryable is False
    assert "answered 400" in str(err.value) and "bad-label" in str(err.value)


async def test_bearer_token_and_server_errors() -> None:
    seen: list[str] = []
    answer = {"status": 200}

    async def alerts(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        return web.Response(status=answer["status"], text="busy")

    app = web.Application()
    app.router.add_post("/prefix/api/v2/alerts", alerts)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}/prefix/"
    r = receiver(base, bearer_token="am-token-123")
    try:
        await r.deliver(message(notification(alert())))
        assert seen == ["Bearer am-token-123"]
        answer["status"] = 503
        with pytest.raises(DeliveryError) as err:
            await r.deliver(message(notification(alert())))
        assert err.value.retryable is True and "am-token-123" not in str(err.value)
        with pytest.raises(DeliveryError) as err:
            await r.deliver(event())
        assert err.value.retryable is False
    finally:
        await r.close()
        await runner.cleanup()


async def test_alertmanager_down_is_retryable() -> None:
    r = receiver(f"http://127.0.0.1:{free_port()}")
    try:
        with pytest.raises(DeliveryError) as err:
            await r.deliver(message(notification(alert())))
    finally:
        await r.close()
    assert err.value.retryable is True and "cannot connect" in str(err.value)


@pytest.mark.parametrize(("settings", "error"), [
    ({"url": "alertmanager:9093"}, "must start with http:// or https://"),
    ({"url": "http://am:9093/api/v2/alerts"}, "without the API path"),
    ({"basic_auth": {"username": "u", "password": "p"}, "bearer_token": "t"}, "at most one of"),
    ({"basic_auth": {"username": "", "password": "p"}}, "at least 1 character"),
    ({"basic_auth": {"username": "u"}}, "Field required"),
    ({"tls_verify": "maybe"}, "valid boolean"),
])
def test_bad_config(settings: dict[str, Any], error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        AlertmanagerConfig.model_validate({"name": "am", "type": "alertmanager", "url": "http://am:9093", **settings})
