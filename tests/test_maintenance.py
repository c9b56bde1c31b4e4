"""Maintenance mode: the period logic with a clock the test moves (windows, restarts, auto-disable), and
the API through a real daemon (the 503 gate, allowed addresses, auto-disable, kill -9, events)."""

from __future__ import annotations

import asyncio
import re
import signal
import sqlite3
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from agent.alerting.config import MaintenanceConfig, MaintenanceWindowConfig
from agent.alerting.maintenance import (
    Maintenance,
    MaintenanceActive,
    MaintenanceNotActive,
    MaintenanceNotFound,
    remaining_text,
)
from agent.audit import Audit
from agent.cron import CronSchedule, cron_day_of_week
from agent.events import EventBus
from agent.scheduler import Scheduler
from agent.selfmetrics import SelfMetrics
from agent.store import Store
from agent.store import audit as audit_rows
from tests.conftest import Response, Vigil, wait_for


def ts(*parts: int) -> float:
    return datetime(*parts, tzinfo=UTC).timestamp()  # type: ignore[misc]


class Clock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Parts:
    store: Store
    bus: EventBus
    audit: Audit
    scheduler: Scheduler
    clock: Clock

    def make(self, windows: list[dict[str, Any]] | None = None, allowed_ips: list[str] | None = None) -> Maintenance:
        config = MaintenanceConfig(windows=[MaintenanceWindowConfig(**w) for w in windows or []],
                                   allowed_ips=allowed_ips or [])
        return Maintenance(self.store, self.bus, self.audit, self.scheduler, config, clock=self.clock, tz=UTC)

    async def audit_types(self) -> list[str]:
        return [r.event_type for r in reversed(await audit_rows.recent(self.store, 100))]


@pytest.fixture
async def parts(tmp_path: Path) -> AsyncIterator[Parts]:
    metrics = SelfMetrics()
    store = Store(str(tmp_path / "vigil.db"), metrics)
    await store.open()
    yield Parts(store, EventBus(metrics), Audit(store), Scheduler(metrics), Clock(ts(2025, 1, 15, 1, 0, 0)))
    await store.close()


NIGHTLY = {"name": "nightly", "cron": "0 2 * * *", "duration": "1h", "reason": "nightly backup",
           "allowed_ips": ["10.0.0.0/8"]}


# --- class level, with a clock the test moves -------------------------------------------------------


async def test_window_in_progress_is_entered_on_load(parts: Parts) -> None:
    parts.clock.now = ts(2025, 1, 15, 2, 30, 0)
    events = parts.bus.subscribe({"maintenance_started"})
    m = parts.make([NIGHTLY])
    await m.load()
    period = m.active()
    assert period is not None
    assert period.id == "maint_20250115_020000" and period.source == "window:nightly"
    assert period.started_at == ts(2025, 1, 15, 2, 0, 0) and period.ends_at == ts(2025, 1, 15, 3, 0, 0)
    assert period.auto_disable and period.reason == "nightly backup"
    status = m.status()
    assert status["maintenance_mode"] is True
    assert status["time_remaining"] == "30 minutes" and status["time_remaining_seconds"] == 1800
    assert status["estimated_completion"] == "2025-01-15T03:00:00Z"
    assert status["allowed_ips"] == ["10.0.0.0/8"]
    assert events.queue.get_nowait().data["maintenance_id"] == period.id
    assert await parts.audit_types() == ["maintenance_started"]


async def test_window_starts_and_ends_with_the_clock(parts: Parts) -> None:
    parts.clock.now = ts(2025, 1, 15, 1, 59, 59)
    m = parts.make([NIGHTLY])
    seen: list[bool] = []
    m.on_change(seen.append)
    await m.load()
    assert not m.is_active()
    assert m.status()["windows"][0]["next_start"] == "2025-01-15T02:00:00Z"
    parts.clock.now = ts(2025, 1, 15, 2, 0, 0)
    await m.tick()
    assert m.is_active() and seen == [True]
    parts.clock.now = ts(2025, 1, 15, 2, 59, 59)
    await m.tick()
    assert m.is_active()
    parts.clock.now = ts(2025, 1, 15, 3, 0, 0)
    await m.tick()
    assert not m.is_active() and seen == [True, False]
    assert m.status()["windows"][0]["next_start"] == "2025-01-16T02:00:00Z"
    assert await parts.audit_types() == ["maintenance_started", "maintenance_ended"]
    ended = (await audit_rows.recent(parts.store, 1))[0]
    assert ended.details["how"] == "auto_disable" and ended.details["duration_seconds"] == 3600


async def test_a_missed_tick_still_enters_the_latest_occurrence(parts: Parts) -> None:
    """Vigil's loop stalled (a suspend) across several occurrences: the one in progress is entered."""
    parts.clock.now = ts(2025, 1, 15, 1, 0, 0)
    m = parts.make([{"name": "hourly", "cron": "0 * * * *", "duration": "30m"}])
    await m.load()
    parts.clock.now = ts(2025, 1, 15, 4, 10, 0)
    await m.tick()
    period = m.active()
    assert period is not None and period.started_at == ts(2025, 1, 15, 4, 0, 0)


async def test_an_operator_disable_ends_the_occurrence_also_after_restart(parts: Parts) -> None:
    parts.clock.now = ts(2025, 1, 15, 2, 0, 0)
    m = parts.make([NIGHTLY])
    await m.load()
    assert m.is_active()
    parts.clock.now = ts(2025, 1, 15, 2, 10, 0)
    ended = await m.disable(None, "done early", "key1", "127.0.0.1")
    assert ended.ended_at == parts.clock.now and ended.ended_by == "key1"
    parts.clock.now = ts(2025, 1, 15, 2, 11, 0)
    await m.tick()
    assert not m.is_active()
    restarted = parts.make([NIGHTLY])
    parts.clock.now = ts(2025, 1, 15, 2, 20, 0)
    await restarted.load()
    assert not restarted.is_active()
    parts.clock.now = ts(2025, 1, 16, 2, 0, 0)
    await restarted.tick()
    assert restarted.active() is not None and restarted.active().id == "maint_20250116_020000"  # type: ignore


async def test_a_window_extends_the_period_that_is_on(parts: Parts) -> None:
    parts.clock.now = ts(2025, 1, 15, 1, 50, 0)
    m = parts.make([NIGHTLY])
    await m.load()
    events = parts.bus.subscribe({"maintenance_extended"})
    period = await m.enable("deploy", 20, [], "", True, "key1", "127.0.0.1")
    assert period.ends_at == ts(2025, 1, 15, 2, 10, 0)
    parts.clock.now = ts(2025, 1, 15, 2, 0, 0)
    await m.tick()
    active = m.active()
    assert active is not None and active.id == period.id and active.ends_at == ts(2025, 1, 15, 3, 0, 0)
    assert events.queue.get_nowait().data["window"] == "nightly"
    parts.clock.now = ts(2025, 1, 15, 2, 30, 0)
    await m.tick()
    assert m.is_active()  # the manual period's own end passed, the window's has not
    restarted = parts.make([NIGHTLY])  # the extension is stored
    await restarted.load()
    assert restarted.active() is not None and restarted.active().ends_at == ts(2025, 1, 15, 3, 0, 0)  # type: ignore


async def test_restart_restores_and_a_passed_auto_disable_ends_on_load(parts: Parts) -> None:
    start = parts.clock.now
    m = parts.make()
    await m.load()
    period = await m.enable("migration", 10, ["192.168.1.100"], "back soon", True, "key1", "127.0.0.1")
    parts.clock.now = start + 300
    second = parts.make()
    await second.load()
    assert second.active() == period
    assert second.status()["time_remaining"] == "5 minutes"
    parts.clock.now = start + 1200
    events = parts.bus.subscribe({"maintenance_ended"})
    third = parts.make()
    await third.load()
    assert not third.is_active()
    event = events.queue.get_nowait()
    assert event.data["maintenance_id"] == period.id and event.data["how"] == "auto_disable"
    assert event.data["duration_seconds"] == 600  # ended when it was due, not when Vigil came back


async def test_a_period_without_auto_disable_outlives_its_estimate(parts: Parts) -> None:
    m = parts.make()
    await m.load()
    await m.enable("long job", 1, [], "", False, None, None)
    parts.clock.now += 3600
    await m.tick()
    assert m.is_active()
    assert m.status()["time_remaining"] == "0 seconds" and m.retry_after() == 1


async def test_allows(parts: Parts) -> None:
    m = parts.make(allowed_ips=["::1"])
    await m.load()
    assert m.allows("203.0.113.9") and m.allows(None)  # not in maintenance: everyone
    await m.enable("x", None, ["10.0.0.0/8", "192.168.1.100"], "", False, None, None)
    assert m.allows("10.1.2.3") and m.allows("192.168.1.100") and m.allows("::1")
    assert m.allows("::ffff:10.0.0.1")  # an IPv4 client on a dual-stack socket
    assert not m.allows("192.168.1.101") and not m.allows("127.0.0.1") and not m.allows(None)
    assert not m.allows("not-an-ip")
    assert m.status()["allowed_ips"] == ["10.0.0.0/8", "192.168.1.100", "::1"]
    m.configure(MaintenanceConfig(allowed_ips=["127.0.0.0/8"]))
    assert m.allows("127.0.0.1") and not m.allows("::1")


async def test_conflicts_and_bad_input(parts: Parts) -> None:
    m = parts.make()
    await m.load()
    with pytest.raises(MaintenanceNotActive, match="not on"):
        await m.disable(None, "", None, None)
    with pytest.raises(ValueError, match="auto_disable needs estimated_duration"):
        await m.enable("x", None, [], "", True, None, None)
    with pytest.raises(ValueError, match=r"'10\.0\.0\.300' is not an IP address"):
        await m.enable("x", 5, ["10.0.0.300"], "", False, None, None)
    with pytest.raises(ValueError, match="reason is required"):
        await m.enable("  ", 5, [], "", False, None, None)
    first = await m.enable("x", 5, [], "", False, None, None)
    with pytest.raises(MaintenanceActive) as info:
        await m.enable("y", 5, [], "", False, None, None)
    assert info.value.period == first
    with pytest.raises(MaintenanceNotFound):
        await m.disable("maint_19700101_000000", "", None, None)
    await m.disable(first.id, "", None, None)
    with pytest.raises(MaintenanceNotActive, match="already ended"):
        await m.disable(first.id, "", None, None)


async def test_ids_are_unique_within_a_second(parts: Parts) -> None:
    m = parts.make()
    await m.load()
    ids = []
    for _ in range(3):
        ids.append((await m.enable("x", None, [], "", False, None, None)).id)
        await m.disable(None, "", None, None)
    assert ids == ["maint_20250115_010000", "maint_20250115_010000_2", "maint_20250115_010000_3"]


async def test_callbacks_plain_async_and_failing(parts: Parts) -> None:
    m = parts.make()
    await m.load()
    seen: list[tuple[str, bool]] = []

    async def later(active: bool) -> None:
        await asyncio.sleep(0)
        seen.append(("async", active))

    def broken(active: bool) -> None:
        raise RuntimeError("listener bug")

    m.on_change(broken)
    m.on_change(later)
    m.on_change(lambda active: seen.append(("plain", active)))
    await m.enable("x", None, [], "", False, None, None)
    await m.disable(None, "", None, None)
    assert seen == [("async", True), ("plain", True), ("async", False), ("plain", False)]


def test_cron_follows_cron_not_apscheduler() -> None:
    assert cron_day_of_week("0") == "sun" and cron_day_of_week("7") == "sun"
    assert cron_day_of_week("1-5") == "mon,tue,wed,thu,fri"
    assert cron_day_of_week("5-7") == "sun,fri,sat"
    assert cron_day_of_week("*/2") == "sun,tue,thu,sat"
    sunday = CronSchedule("0 2 * * 0", UTC).after(ts(2025, 1, 15))
    assert sunday == ts(2025, 1, 19, 2, 0, 0)  # 2025-01-19 is a Sunday
    # Both day fields restricted: either matches (the 1st of the month, or a Monday), as Vixie cron.
    either = CronSchedule("0 2 1 * 1", UTC)
    assert either.after(ts(2025, 1, 15)) == ts(2025, 1, 20, 2, 0, 0)
    assert either.after(ts(2025, 1, 27, 3)) == ts(2025, 2, 1, 2, 0, 0)
    assert CronSchedule("* 2 * * *", UTC).latest(ts(2025, 1, 15, 5, 0, 30), 86400) == ts(2025, 1, 15, 2, 59, 0)
    assert CronSchedule("0 2 * * *", UTC).latest(ts(2025, 1, 15, 1, 0, 0), 3600) is None


def test_remaining_text() -> None:
    assert [remaining_text(s) for s in (0.2, 40, 60, 61, 900, 3600, 3900, 90000)] == [
        "1 second", "40 seconds", "1 minute", "2 minutes", "15 minutes", "1 hour", "1 hour 5 minutes",
        "1 day 1 hour"]


# --- through the real daemon --------------------------------------------------------------------------


def audit_events(v: Vigil, prefix: str) -> list[tuple[str, str]]:
    with sqlite3.connect(f"file:{v.state_dir / 'vigil.db'}?mode=ro", uri=True) as db:
        return db.execute("SELECT event_type, details FROM audit_log WHERE event_type LIKE ? ORDER BY id",
                          (prefix + "%",)).fetchall()


def new_incident(v: Vigil, **kw: Any) -> Response:
    return v.post("/api/v1/incidents", {"title": "disk replaced"}, **kw)


def test_enable_blocks_changes_but_not_reads(make_vigil: Callable[..., Vigil]) -> None:
    v = make_vigil().start()
    r = v.post("/api/v1/maintenance/enable", {
        "reason": "Database schema migration", "estimated_duration": 30,
        "notification_message": "Expected downtime: 30 minutes.",
    })
    assert r.status == 200, r
    data = r.json()["data"]
    assert re.fullmatch(r"maint_\d{8}_\d{6}", data["maintenance_id"])
    assert data["status"] == "enabled" and data["maintenance_mode"] is True and data["auto_disable"] is False
    assert data["time_remaining"] == "30 minutes"

    refused = new_incident(v)
    assert refused.status == 503, refused
    body = refused.json()
    assert body["status"] == "error" and body["errorType"] == "MAINTENANCE_MODE"
    assert body["details"]["maintenance_id"] == data["maintenance_id"]
    assert body["details"]["reason"] == "Database schema migration"
    assert body["details"]["estimated_completion"] == data["estimated_completion"]
    assert "Expected downtime" in body["error"]
    assert 1700 < int(refused.headers["Retry-After"]) <= 1800

    assert v.get("/api/v1/incidents").status == 200
    assert v.get("/healthz", key=None).status == 200 and v.get("/readyz", key=None).status == 200
    assert v.get("/metrics", key=None).status == 200
    assert v.post("/api/v1/query", raw=b"query=up", headers={"Content-Type": "application/x-www-form-urlencoded"}
                  ).status == 200  # a read, even as a POST
    # A cron job's heartbeat is not refused (401 here: no such check; never 503).
    assert v.post("/api/v1/checks/nightly/ping", key=None).status == 401
    health = v.get("/api/v1/health").json()["data"]["maintenance"]
    assert health == {"active": True, "id": data["maintenance_id"], "reason": "Database schema migration",
                      "estimated_completion": data["estimated_completion"]}

    again = v.post("/api/v1/maintenance/enable", {"reason": "other"})
    assert again.status == 409 and again.json()["details"]["maintenance_id"] == data["maintenance_id"]
    assert v.post("/api/v1/maintenance/disable", {"maintenance_id": "maint_20000101_000000"}).status == 404
    off = v.post("/api/v1/maintenance/disable", {"maintenance_id": data["maintenance_id"],
                                                   "completion_notes": "migration completed"})
    assert off.status == 200, off
    assert off.json()["data"]["status"] == "disabled" and off.json()["data"]["completion_notes"]
    assert new_incident(v).status == 201
    assert v.get("/api/v1/maintenance/status").json()["data"]["maintenance_mode"] is False
    assert v.post("/api/v1/maintenance/disable").status == 409  # not on; an empty body is fine
    kinds = [k for k, _ in audit_events(v, "maintenance_")]
    assert kinds == ["maintenance_started", "maintenance_ended"]
    assert "migration completed" in audit_events(v, "maintenance_ended")[0][1]
    assert v.stop() == 0


def test_allowed_ips_may_still_change_things(make_vigil: Callable[..., Vigil]) -> None:
    v = make_vigil({"maintenance": {"allowed_ips": ["10.9.9.9"]}}).start()
    assert v.post("/api/v1/maintenance/enable", {"reason": "r", "allowed_ips": ["127.0.0.1"]}).status == 200
    assert new_incident(v).status == 201
    assert v.post("/api/v1/maintenance/disable").status == 200
    assert v.post("/api/v1/maintenance/enable", {"reason": "r", "allowed_ips": ["192.168.0.0/16"]}).status == 200
    assert new_incident(v).status == 503
    status = v.get("/api/v1/maintenance/status").json()["data"]
    assert status["allowed_ips"] == ["192.168.0.0/16", "10.9.9.9"]
    # The config's list applies on reload, to the period already on.
    v.write_config(v.config_path.read_text().replace("10.9.9.9", "127.0.0.0/8"))
    v.signal(signal.SIGHUP)
    wait_for(lambda: new_incident(v).status == 201, 15, "the reloaded allowed_ips to let 127.0.0.1 through")
    assert v.stop() == 0


def test_auto_disable_ends_by_itself(make_vigil: Callable[..., Vigil]) -> None:
    # The maintenance routes' rate limit (10 a minute by default) would stop the polling below.
    v = make_vigil({"api": {"rate_limit": {"categories": {"maintenance": 10_000}}}}).start()
    r = v.post("/api/v1/maintenance/enable", {"reason": "quick", "estimated_duration": 0.02, "auto_disable": True})
    assert r.status == 200 and r.json()["data"]["auto_disable"] is True
    assert new_incident(v).status == 503
    wait_for(lambda: not v.get("/api/v1/maintenance/status").json()["data"]["maintenance_mode"], 10,
             "maintenance to end by itself")
    assert new_incident(v).status == 201
    ended = audit_events(v, "maintenance_ended")
    assert len(ended) == 1 and '"how":"auto_disable"' in ended[0][1]
    assert v.stop() == 0


def test_enable_and_disable_are_published(make_vigil: Callable[..., Vigil]) -> None:
    import aiohttp

    v = make_vigil().start()

    async def scenario() -> list[dict]:
        headers = {"Authorization": f"Bearer {v.admin_key}"}
        async with aiohttp.ClientSession() as session, session.ws_connect(
            v.url + "/api/v1/events?types=maintenance_started,maintenance_ended", headers=headers,
        ) as ws:
            assert (await ws.receive_json(timeout=5))["type"] == "hello"
            for action, body in (("enable", {"reason": "ws test"}), ("disable", {})):
                async with session.post(f"{v.url}/api/v1/maintenance/{action}", json=body, headers=headers) as r:
                    assert r.status == 200
            return [await ws.receive_json(timeout=5), await ws.receive_json(timeout=5)]

    started, ended = asyncio.run(scenario())
    assert started["type"] == "maintenance_started" and started["data"]["reason"] == "ws test"
    assert ended["type"] == "maintenance_ended" and ended["data"]["maintenance_id"] == started["data"]["maintenance_id"]
    assert v.stop() == 0


def test_maintenance_survives_kill9(make_vigil: Callable[..., Vigil]) -> None:
    v = make_vigil().start()
    r = v.post("/api/v1/maintenance/enable", {"reason": "hardware swap", "estimated_duration": 60})
    period_id = r.json()["data"]["maintenance_id"]
    v.kill9()
    v.start()
    status = v.get("/api/v1/maintenance/status").json()["data"]
    assert status["maintenance_mode"] is True and status["maintenance_id"] == period_id
    refused = new_incident(v)
    assert refused.status == 503 and refused.json()["details"]["maintenance_id"] == period_id
    assert v.stop() == 0


def test_a_window_in_progress_is_on_at_start(make_vigil: Callable[..., Vigil]) -> None:
    """`* * * * *` with an hour's duration: an occurrence is always in progress, so the daemon starts in
    maintenance without waiting for a cron minute; after an operator's disable, a restart stays out."""
    v = make_vigil({"maintenance": {"windows": [
        {"name": "always", "cron": "* * * * *", "duration": "1h", "reason": "test window"}]}}).start()
    status = v.get("/api/v1/maintenance/status").json()["data"]
    assert status["maintenance_mode"] is True and status["source"] == "window:always"
    assert status["reason"] == "test window" and status["auto_disable"] is True
    assert status["windows"][0]["name"] == "always"
    assert new_incident(v).status == 503
    off = v.post("/api/v1/maintenance/disable", {"completion_notes": "not today"})
    assert off.status == 200
    disabled_at = off.json()["data"]["disabled_at"]
    assert new_incident(v).status == 201
    assert v.stop() == 0
    v.start()
    # Within the same occurrence the disable holds across the restart; a minute later a new one starts.
    status = v.get("/api/v1/maintenance/status").json()["data"]
    assert not status["maintenance_mode"] or status["enabled_at"] > disabled_at, status
    assert v.stop() == 0


def test_bad_requests(make_vigil: Callable[..., Vigil]) -> None:
    v = make_vigil().start()
    for body, fragment in (
        ({}, "reason"),
        ({"reason": "r", "auto_disable": True}, "auto_disable needs estimated_duration"),
        ({"reason": "r", "allowed_ips": ["nope"]}, "'nope' is not an IP address"),
        ({"reason": "r", "estimated_duration": -1}, "estimated_duration"),
        ({"reason": "r", "estimated_duration": 1e9}, "estimated_duration"),
        ({"reason": "r", "colour": "red"}, "colour"),
    ):
        r = v.post("/api/v1/maintenance/enable", body)
        assert r.status == 400 and fragment in r.json()["error"], (body, r)
    assert v.post("/api/v1/maintenance/disable", raw=b"{nope", headers={"Content-Type": "application/json"}
                  ).status == 400
    viewer = v.post("/api/v1/api-keys", {"name": "viewer", "role": "viewer"}).json()["data"]["key"]
    assert v.post("/api/v1/maintenance/enable", {"reason": "r"}, key=viewer).status == 403
    assert v.get("/api/v1/maintenance/status", key=viewer).status == 200
    assert v.stop() == 0
