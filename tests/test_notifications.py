"""Notifications through the daemon: alerts from rules reach real receivers (a local webhook server, a real
Alertmanager, a real mosquitto), routed and grouped, held by silences and maintenance and let through
afterwards, retried when the receiver fails, never re-sent after a kill -9, and repeats stop on acknowledge."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Vigil, free_port, wait_for
from tests.test_alerting import RULES, alerts, flag_config, set_flag, wait_alert

SECRET = "s3cret-for-hmac"


class Hook:
    """A webhook receiver: records each JSON body; answers `status` (settable) to every POST."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.signatures_ok: list[bool] = []
        self.status = 200
        self.lock = threading.Lock()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                expected = "sha256=" + hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
                with hook.lock:
                    status = hook.status
                    if status == 200:
                        hook.bodies.append(json.loads(raw))
                        hook.signatures_ok.append(self.headers.get("X-Vigil-Signature") == expected)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def received(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.bodies)

    def statuses(self) -> list[tuple[str, str]]:
        """(alertname, status) of every alert in every notification, in arrival order."""
        return [(a["labels"]["alertname"], a["status"]) for b in self.received() for a in b["alerts"]]


@pytest.fixture
def hook() -> Iterator[Hook]:
    h = Hook()
    yield h
    h.server.shutdown()
    h.server.server_close()


def notifying(v_root: Path, receivers: list[dict[str, Any]], **route: Any) -> dict[str, Any]:
    return {
        **flag_config(v_root),
        "history": {"flush_interval": "1s"},
        "notifications": {
            "receivers": receivers,
            "route": {"receiver": receivers[0]["name"], "group_by": ["alertname"], "group_wait": "0s",
                      "group_interval": "1s", "repeat_interval": "1h", **route},
        },
    }


def webhook(hook: Hook) -> dict[str, Any]:
    return {"name": "hook", "type": "webhook", "url": hook.url, "hmac_secret": SECRET, "timeout": "2s"}


def start(make_vigil: Any, receivers: list[dict[str, Any]], **route: Any) -> Vigil:
    v: Vigil = make_vigil()
    import yaml

    v.write_config({**yaml.safe_load(v.config_path.read_text()), **notifying(v.root, receivers, **route)})
    (v.config_dir / "rules.d").mkdir()
    (v.config_dir / "rules.d" / "flags.yml").write_text(RULES % {"for": "0s"})
    return v.start()


def test_firing_and_resolved_reach_the_webhook_signed(make_vigil: Any, hook: Hook) -> None:
    v = start(make_vigil, [webhook(hook)])
    set_flag(v, True)
    first = wait_for(hook.received, 15, "the firing notification")[0]
    assert first["status"] == "firing" and first["version"] == "4" and first["receiver"] == "hook"
    assert first["groupLabels"] == {"alertname": "FlagRaised"}
    alert = first["alerts"][0]
    assert alert["labels"]["check"] == "flag" and alert["annotations"]["summary"] == "flag flag raised"
    assert alert["fingerprint"] == alerts(v)[0]["fingerprint"]
    assert alert["generatorURL"].startswith(f"http://127.0.0.1:{v.port}/api/v1/query?query=")
    set_flag(v, False)
    wait_for(lambda: ("FlagRaised", "resolved") in hook.statuses(), 15, "the resolved notification")
    assert hook.statuses() == [("FlagRaised", "firing"), ("FlagRaised", "resolved")]
    assert all(hook.signatures_ok)
    assert v.metric("vigil_notifications_total", {"receiver": "hook", "result": "sent"}) == 2


def test_no_repage_after_kill9_and_nothing_lost(make_vigil: Any, hook: Hook) -> None:
    v = start(make_vigil, [webhook(hook)])
    set_flag(v, True)
    flushes = v.metric("vigil_tsdb_flushes_total") or 0
    wait_for(hook.received, 15, "the firing notification")
    # Delivered is deleted from the outbox a moment later; a kill before that re-sends it (at-least-once),
    # which is not what this test is about. The check's sample, too, must be in the history's files.
    wait_for(lambda: _outbox_empty(v) and (v.metric("vigil_tsdb_flushes_total") or 0) > flushes, 10,
             "the delivery and the sample committed")
    v.kill9()
    v.start()
    # Several evaluations and flushes after the restart: the firing alert is not sent again.
    evaluated = time.time()
    wait_for(lambda: _last_evaluation(v) > evaluated + 2, 15, "evaluations after the restart")
    assert hook.statuses() == [("FlagRaised", "firing")]
    set_flag(v, False)
    wait_for(lambda: ("FlagRaised", "resolved") in hook.statuses(), 15, "the resolved notification")


def _outbox_empty(v: Vigil) -> bool:
    import sqlite3

    db = sqlite3.connect(v.state_dir / "vigil.db")
    try:
        return db.execute("SELECT count(*) FROM outbox").fetchone()[0] == 0
    finally:
        db.close()


def _last_evaluation(v: Vigil) -> float:
    from agent.api.formats import parse_iso

    group = v.get("/api/v1/rules").json()["data"]["groups"][0]
    return parse_iso(group["lastEvaluation"]) if group["lastEvaluation"] else 0.0


def test_receiver_down_gets_everything_in_order_when_back(make_vigil: Any, hook: Hook) -> None:
    v = start(make_vigil, [{**webhook(hook), "timeout": "1s"}])
    hook.status = 500
    set_flag(v, True)
    wait_for(lambda: (v.metric("vigil_notifications_total", {"receiver": "hook", "result": "failed"}) or 0) >= 1,
             15, "a failed delivery")
    set_flag(v, False)
    wait_for(lambda: alerts(v, "resolved"), 15, "the alert to resolve")
    wait_for(lambda: (v.metric("vigil_notification_queue_length", {"receiver": "hook"}) or 0) >= 2, 15,
             "both messages queued")
    hook.status = 200
    wait_for(lambda: len(hook.statuses()) >= 2, 30, "the queued messages")
    assert hook.statuses() == [("FlagRaised", "firing"), ("FlagRaised", "resolved")]


def test_silence_holds_then_lets_through(make_vigil: Any, hook: Hook) -> None:
    v = start(make_vigil, [webhook(hook)])
    now = time.time()
    r = v.post("/api/v1/silences", {"matchers": [{"name": "alertname", "value": "FlagRaised", "isRegex": False}],
                                    "startsAt": _iso(now - 1), "endsAt": _iso(now + 3600), "createdBy": "t",
                                    "comment": "quiet"})
    assert r.status == 201, r
    silence_id = r.json()["data"]["silenceID"]
    set_flag(v, True)
    wait_alert(v, "firing")
    evaluated = time.time()
    wait_for(lambda: _last_evaluation(v) > evaluated + 2, 15, "evaluations while silenced")
    assert hook.received() == []
    assert v.delete(f"/api/v1/silences/{silence_id}").status == 200
    wait_for(lambda: ("FlagRaised", "firing") in hook.statuses(), 15, "the notification after the silence")


def test_maintenance_holds_then_lets_through(make_vigil: Any, hook: Hook) -> None:
    v = start(make_vigil, [webhook(hook)])
    r = v.post("/api/v1/maintenance/enable", {"reason": "test", "estimated_duration": 30,
                                              "allowed_ips": ["127.0.0.1"]})
    assert r.status in (200, 201), r
    set_flag(v, True)
    wait_alert(v, "firing")
    evaluated = time.time()
    wait_for(lambda: _last_evaluation(v) > evaluated + 2, 15, "evaluations during maintenance")
    assert hook.received() == []
    assert v.post("/api/v1/maintenance/disable", {}).status == 200
    wait_for(lambda: ("FlagRaised", "firing") in hook.statuses(), 15, "the notification after maintenance")


def test_acknowledge_stops_repeats(make_vigil: Any, hook: Hook) -> None:
    v = start(make_vigil, [webhook(hook)], repeat_interval="1s")
    set_flag(v, True)
    wait_for(lambda: len(hook.received()) >= 2, 15, "a repeated notification")
    alert_id = alerts(v)[0]["id"]
    assert v.request("PUT", f"/api/v1/alerts/{alert_id}/acknowledge", body={"notes": "mine"}).status == 200
    settled = len(hook.received())
    evaluated = time.time()
    wait_for(lambda: _last_evaluation(v) > evaluated + 3, 15, "evaluations after the acknowledgement")
    assert len(hook.received()) <= settled + 1  # at most one already on its way when acknowledged


def test_test_message_and_receiver_listing(make_vigil: Any, hook: Hook) -> None:
    v = start(make_vigil, [webhook(hook)])
    r = v.post("/api/v1/notifications/test", {"receiver": "hook"})
    assert r.status == 202, r
    body = wait_for(hook.received, 10, "the test message")[0]
    assert body["test"] is True and body["alerts"][0]["labels"]["alertname"] == "VigilTestNotification"
    assert v.post("/api/v1/notifications/test", {"receiver": "nope"}).status == 404
    listed = v.get("/api/v1/notifications").json()["data"]["receivers"]
    assert [(r["name"], r["type"]) for r in listed] == [("hook", "webhook")]


def test_route_to_unknown_receiver_is_a_config_error(make_vigil: Any, hook: Hook) -> None:
    v = make_vigil()
    import yaml

    doc = {**yaml.safe_load(v.config_path.read_text()), **notifying(v.root, [webhook(hook)])}
    doc["notifications"]["route"]["routes"] = [{"receiver": "pager", "matchers": ["severity=critical"]}]
    v.write_config(doc)
    import subprocess
    import sys

    from tests.conftest import REPO

    out = subprocess.run([sys.executable, "-m", "agent", "check-config", "--config", str(v.config_path)],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "not defined: pager" in out.stdout + out.stderr


def _iso(ts: float) -> str:
    from agent.api.formats import iso

    value = iso(ts)
    assert value is not None
    return value


async def test_alerts_show_in_a_real_alertmanager_and_resolve(make_vigil: Any, tmp_path: Path) -> None:
    from tests.notify.test_alertmanager import alertmanager, am_alerts, poll

    async with alertmanager(tmp_path) as am_url:
        v = await asyncio.to_thread(start, make_vigil, [{"name": "am", "type": "alertmanager", "url": am_url}])
        await asyncio.to_thread(set_flag, v, True)
        found = await poll(lambda: am_alerts(am_url), lambda got: len(got) == 1, "the alert in Alertmanager", 20)
        ours = (await asyncio.to_thread(alerts, v))[0]
        assert found[0]["labels"]["alertname"] == "FlagRaised" and found[0]["labels"]["check"] == "flag"
        assert found[0]["labels"]["instance"]  # set to the hostname when the series has none
        assert found[0]["annotations"] == {"summary": "flag flag raised", "description": "up is 0"}
        assert found[0]["status"]["state"] == "active"
        if "instance" in ours["labels"]:
            assert found[0]["fingerprint"] == ours["fingerprint"]  # Alertmanager's own fingerprint algorithm
        await asyncio.to_thread(set_flag, v, False)
        await poll(lambda: am_alerts(am_url, active="true"), lambda got: got == [], "the alert to resolve", 20)


@contextlib.asynccontextmanager
async def persistent_watch(port: int, seen: list[tuple[str, bytes]]) -> AsyncIterator[None]:
    """A subscriber with a persistent session (QoS 1): what is published while it is away is kept for it by
    the broker and handed over when it comes back, so nothing is missed across a broker restart."""
    import aiomqtt

    async with aiomqtt.Client("127.0.0.1", port, identifier="vigil-test-watch", clean_session=False) as c:
        await c.subscribe("vigil/#", qos=1)

        async def collect() -> None:
            async for m in c.messages:
                assert isinstance(m.payload, bytes)
                seen.append((m.topic.value, m.payload))

        task = asyncio.create_task(collect())
        try:
            yield
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def test_mqtt_store_and_forward_with_a_real_mosquitto(make_vigil: Any, tmp_path: Path) -> None:
    from tests.notify.test_mqtt import Broker, retained

    broker = Broker(tmp_path, extra=f"allow_anonymous true\npersistence true\npersistence_location {tmp_path}/\n")
    await broker.start()
    seen: list[tuple[str, bytes]] = []
    try:
        receiver = {"name": "mq", "type": "mqtt", "host": "127.0.0.1", "port": broker.port, "timeout": "2s"}
        v = await asyncio.to_thread(start, make_vigil, [receiver])
        hostname = (await asyncio.to_thread(v.get, "/api/v1/status")).json()["data"]["hostname"]
        prefix = f"vigil/{hostname}"
        # Online as soon as the receiver is configured, before anything fires.
        await _until_async(lambda: _status(broker.port, prefix, b"online"), "the online status before any alert")
        async with persistent_watch(broker.port, seen):
            await asyncio.to_thread(set_flag, v, True)
            await _until(lambda: any(t.startswith(f"{prefix}/alerts/FlagRaised/") and p for t, p in seen),
                         "the retained alert")
        state = await retained(broker.port)
        assert state[f"{prefix}/status"] == b"online"
        alert_topic = next(t for t in state if t.startswith(f"{prefix}/alerts/FlagRaised/"))
        assert json.loads(state[alert_topic])["status"] == "firing"
        before = len(seen)

        await broker.stop()  # the broker goes away while the alert resolves and fires again
        await asyncio.to_thread(set_flag, v, False)
        await asyncio.to_thread(wait_for, lambda: alerts(v, "resolved"), 15, "the alert to resolve")
        # Two events and the resolve notification wait in the outbox (a re-fire within the same group
        # interval would be no change to notify).
        await asyncio.to_thread(wait_for, lambda: (v.metric("vigil_notification_queue_length", {"receiver": "mq"})
                                                   or 0) >= 3, 15, "the resolve notification queued")
        await asyncio.to_thread(set_flag, v, True)
        await asyncio.to_thread(wait_for, lambda: alerts(v), 15, "the alert to fire again")
        await broker.start()

        def caught_up() -> bool:
            payloads = [p for t, p in seen[before:] if t == alert_topic]
            return b"" in payloads and bool(payloads[-1])  # cleared by the resolve, then set by the new firing

        async with persistent_watch(broker.port, seen):
            await _until(caught_up, "the queued messages", 30)
        after = seen[before:]
        events = [json.loads(p) for t, p in after if t == f"{prefix}/events"]
        changes = [(e["data"]["old"], e["data"]["new"]) for e in events if e["type"] == "alert_state_changed"]
        assert changes == [("firing", "inactive"), ("inactive", "pending"), ("pending", "firing")]
        alert_messages = [p for t, p in after if t == alert_topic and not _retained_copy(p, seen[:before])]
        assert alert_messages[0] == b"" and json.loads(alert_messages[-1])["status"] == "firing"
        state = await retained(broker.port)
        assert json.loads(state[alert_topic])["status"] == "firing"
        assert state[f"{prefix}/status"] == b"online"
        await asyncio.to_thread(v.kill9)
        await _until_async(lambda: _status(broker.port, prefix), "the Last Will")
    finally:
        await broker.stop()


async def test_mqtt_status_is_online_from_the_start_with_nothing_to_send(make_vigil: Any, tmp_path: Path) -> None:
    """No checks, no rules, no events: the retained status still turns online once the receiver is configured,
    and back to offline (the Last Will) when Vigil dies."""
    from tests.notify.test_mqtt import Broker

    broker = Broker(tmp_path, extra="allow_anonymous true\n")
    await broker.start()
    try:
        receiver = {"name": "mq", "type": "mqtt", "host": "127.0.0.1", "port": broker.port, "timeout": "2s",
                    "topic_prefix": "vigil/quiet"}
        v = make_vigil({"notifications": {"receivers": [receiver], "events": []}})
        await asyncio.to_thread(v.start)
        await _until_async(lambda: _status(broker.port, "vigil/quiet", b"online"), "the online status")
        await asyncio.to_thread(v.kill9)
        await _until_async(lambda: _status(broker.port, "vigil/quiet"), "the Last Will")
    finally:
        await broker.stop()


def _retained_copy(payload: bytes, earlier: list[tuple[str, bytes]]) -> bool:
    """The broker hands a returning subscriber the retained state it kept across its restart first."""
    return bool(payload) and any(p == payload for _t, p in earlier)


async def _status(port: int, prefix: str, value: bytes = b"offline") -> bool:
    from tests.notify.test_mqtt import retained

    return (await retained(port)).get(f"{prefix}/status") == value


async def _until(check: Any, what: str, within: float = 15) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def _until_async(check: Any, what: str, within: float = 15) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def _snapshot_receiver(tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    """A mosquitto on a free port and the receiver settings for it (prefix `vigil/snap`)."""
    from tests.notify.test_mqtt import Broker

    broker = Broker(tmp_path, extra="allow_anonymous true\n")
    await broker.start()
    try:
        yield {"name": "mq", "type": "mqtt", "host": "127.0.0.1", "port": broker.port, "timeout": "2s",
               "topic_prefix": "vigil/snap"}
    finally:
        await broker.stop()


async def test_mqtt_metrics_snapshots_with_a_real_mosquitto(make_vigil: Any, tmp_path: Path) -> None:
    """`notifications.metrics`: the history views' current values on `…/metrics` every interval."""
    seen: list[tuple[str, bytes]] = []
    async with _snapshot_receiver(tmp_path) as receiver:
        v = make_vigil({
            "history": {"views": {"answer": {"expr": "vector(42)", "unit": "things"},
                                  "build": {"expr": "vigil_build_info"},
                                  "left_out": {"expr": "vector(1)"}}},
            "notifications": {"receivers": [receiver], "events": [],
                              "metrics": {"interval": "1s", "views": ["answer", "build"]}},
        })
        await asyncio.to_thread(v.start)

        def snapshots() -> list[dict[str, Any]]:
            return [json.loads(p) for t, p in seen if t == "vigil/snap/metrics"]

        def built() -> bool:  # vigil_build_info is in the history once Vigil's own metrics are recorded
            return len(snapshots()) >= 2 and any(s["data"]["metrics"]["build"]["values"] for s in snapshots())

        async with persistent_watch(receiver["port"], seen):
            await _until(built, "two snapshots, one with vigil_build_info")
        first, second = snapshots()[:2]
        assert first["type"] == "metrics" and set(first["data"]["metrics"]) == {"answer", "build"}
        assert first["data"]["metrics"]["answer"] == {"unit": "things", "values": [{"labels": {}, "value": 42.0}]}
        assert first["data"]["hostname"] and second["data"]["at"] > first["data"]["at"]
        build = next(s for s in snapshots() if s["data"]["metrics"]["build"]["values"])["data"]["metrics"]["build"]
        assert "version" in build["values"][0]["labels"] and "__name__" not in build["values"][0]["labels"]
        # `events: []`: nothing else on …/events but the greeting a receiver gets when configured
        assert {json.loads(p)["type"] for t, p in seen if t == "vigil/snap/events"} <= {"agent_online"}


def test_metrics_snapshot_of_an_unknown_view_is_a_config_error(make_vigil: Any) -> None:
    import subprocess
    import sys

    from tests.conftest import REPO

    v = make_vigil({"notifications": {"metrics": {"interval": "10s", "views": ["cpu_usage_percent", "nope"]}}})
    out = subprocess.run([sys.executable, "-m", "agent", "check-config", "--config", str(v.config_path)],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "history.views does not define: nope" in out.stdout + out.stderr


async def test_metrics_snapshots_stop_and_start_with_a_reload(make_vigil: Any, tmp_path: Path) -> None:
    import yaml

    seen: list[tuple[str, bytes]] = []
    async with _snapshot_receiver(tmp_path) as receiver:
        snapshots = {"interval": "1s", "views": ["answer"]}
        v = make_vigil({"history": {"views": {"answer": {"expr": "vector(42)"}}},
                        "notifications": {"receivers": [receiver], "events": [], "metrics": snapshots}})
        await asyncio.to_thread(v.start)

        def jobs() -> int:
            return int(v.get("/api/v1/health").json()["data"]["components"]["scheduler"]["jobs"])

        with_snapshots = await asyncio.to_thread(jobs)
        doc = yaml.safe_load(v.config_path.read_text())
        del doc["notifications"]["metrics"]
        await asyncio.to_thread(v.write_config, doc)
        await asyncio.to_thread(wait_for, lambda: jobs() == with_snapshots - 1, 15, "the snapshot job to stop")
        doc["notifications"]["metrics"] = snapshots
        await asyncio.to_thread(v.write_config, doc)
        await asyncio.to_thread(wait_for, lambda: jobs() == with_snapshots, 15, "the snapshot job to start again")
        async with persistent_watch(receiver["port"], seen):
            await _until(lambda: any(t == "vigil/snap/metrics" for t, _ in seen), "a snapshot after the reload")
