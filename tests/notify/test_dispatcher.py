"""The dispatcher on its own, with a real SQLite file, the real outbox and real receivers posting to aiohttp
servers on loopback ports (a webhook endpoint, and one answering Alertmanager's `/api/v2/alerts`): routing,
grouping and its timers, send_resolved, flap damping, silences and maintenance, state across a restart, and
Alertmanager resends. tests/test_notifications.py covers the same ground through the daemon, slowly.

The dispatcher reads the wall clock (it takes no clock), so its timers here are tens of milliseconds and a
ticker stands in for the scheduler's `notify.tick` job (paused where a step must not race a flush). Every
"not before" is a lower bound on a measured time; the few upper bounds leave room for a loaded machine.
"Nothing was sent" is checked behind a barrier: a test message queued afterwards has arrived, and the
outbox hands each receiver its messages in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from agent.alerting.matchers import parse_matchers
from agent.alerting.silences import Silence, silenced_by
from agent.events import EventBus
from agent.notify.base import AlertItem
from agent.notify.config import NotificationsConfig
from agent.notify.dispatcher import Dispatcher
from agent.notify.outbox import Outbox
from agent.selfmetrics import SelfMetrics
from agent.store import Store
from tests.notify.helpers import HOST, alert
from tests.notify.test_webhook import Hook, _serve

TICK = 0.005
"""How often the ticker flushes due groups (the daemon's scheduler does it every second)."""
GI = 0.05
"""A short group_interval: groups are looked at this often."""
RULE_GROUP = "rules.d/host.yml;host"
TEST_ALERTNAME = "VigilTestNotification"


@dataclass
class Endpoint(Hook):
    """A recording endpoint (tests/notify/test_webhook.py's Hook) that also notes when each request arrived."""

    arrivals: list[float] = field(default_factory=list)
    alertmanager: bool = False

    async def handle(self, request: web.Request) -> web.Response:
        response = await super().handle(request)
        self.arrivals.append(time.time())
        return response

    def _is_test(self, body: Any) -> bool:
        if self.alertmanager:
            return any(a["labels"]["alertname"] == TEST_ALERTNAME for a in body)
        return bool(body["test"])

    def received(self) -> list[tuple[float, Any]]:
        """(arrival time, JSON body) of every request but test messages, in arrival order."""
        pairs = zip(self.arrivals, self.requests, strict=False)
        return [(at, body) for at, body in ((at, json.loads(raw)) for at, (raw, _, _) in pairs)
                if not self._is_test(body)]

    def tests(self) -> int:
        return sum(1 for raw, _, _ in self.requests if self._is_test(json.loads(raw)))

    def bodies(self) -> list[Any]:
        return [body for _, body in self.received()]

    def summary(self) -> list[list[tuple[str, str]]]:
        """Per webhook notification, its alerts as (instance or alertname, status)."""
        return [[(a["labels"].get("instance") or a["labels"]["alertname"], a["status"]) for a in b["alerts"]]
                for b in self.bodies()]


async def _serve_alertmanager(endpoint: Endpoint) -> web.AppRunner:
    app = web.Application()
    app.router.add_post("/api/v2/alerts", endpoint.handle)
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    endpoint.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    return runner


def item(name: str = "HighLoad", status: str = "firing", *, instance: str = "web1:9100", acknowledged: bool = False,
         **labels: str) -> AlertItem:
    """An alert as the rule manager hands it over on each evaluation (a fresh object every time); the same
    labels give the same fingerprint."""
    now = time.time()
    fingerprint = "|".join([name, instance, *(f"{k}={v}" for k, v in sorted(labels.items()))])
    a = alert(name, status, fingerprint, starts_at=now - 60, ends_at=now if status == "resolved" else now + 240,
              instance=instance, **labels)
    a.acknowledged = acknowledged
    return a


class Rig:
    """Store, outbox and dispatcher on one database file, the endpoints, and the hooks the daemon wires in
    (silences, maintenance, resend delay) as plain state the test sets."""

    def __init__(self, path: Path):
        self.path = path
        self.endpoints: dict[str, Endpoint] = {}
        self.silences: list[Silence] = []
        self.maintenance = False
        self.resend = 60.0
        self.dispatcher: Dispatcher | None = None
        self._store: Store | None = None
        self._doc: dict[str, Any] = {}
        self._runners: list[web.AppRunner] = []
        self._ticker: asyncio.Task[None] | None = None

    @property
    def d(self) -> Dispatcher:
        assert self.dispatcher is not None
        return self.dispatcher

    async def webhook(self, name: str, **settings: Any) -> dict[str, Any]:
        endpoint = self.endpoints[name] = Endpoint()
        self._runners.append(await _serve(endpoint))
        return {"name": name, "type": "webhook", "url": endpoint.url, "timeout": "2s", **settings}

    async def alertmanager(self, name: str) -> dict[str, Any]:
        endpoint = self.endpoints[name] = Endpoint(alertmanager=True)
        self._runners.append(await _serve_alertmanager(endpoint))
        return {"name": name, "type": "alertmanager", "url": endpoint.url, "timeout": "2s"}

    async def start(self, receivers: list[dict[str, Any]] | None = None, route: dict[str, Any] | None = None,
                    **notifications: Any) -> Dispatcher:
        """A dispatcher as the daemon builds one: load the saved group state, configure, tick."""
        if receivers is not None:
            self._doc = {"receivers": receivers, **({"route": route} if route else {}), **notifications,
                         "outbox": {"retry_initial": "20ms", "retry_max": "50ms"}}
        config = NotificationsConfig.model_validate(self._doc)
        metrics = SelfMetrics()
        store = self._store = Store(str(self.path), metrics)
        await store.open()
        self.dispatcher = Dispatcher(
            store, Outbox(store, metrics, config.outbox), EventBus(metrics), config, HOST,
            silenced_by=lambda labels, now: silenced_by(labels, self.silences, now),
            in_maintenance=lambda: self.maintenance, resend_delay=lambda: self.resend,
            external_url=lambda: "http://web1:9847",
        )
        await self.dispatcher.load()
        await self.dispatcher.configure(config)
        self.resume()
        return self.dispatcher

    def resume(self) -> None:
        """Tick in the background, as the scheduler does."""
        self._ticker = asyncio.create_task(self._tick(self.d))

    async def pause(self) -> None:
        """No ticks but the test's own (`await rig.d.tick()`): for a step that must not race a flush."""
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None

    async def _tick(self, dispatcher: Dispatcher) -> None:
        while True:
            await dispatcher.tick()
            await asyncio.sleep(TICK)

    async def stop(self) -> None:
        await self.pause()
        if self.dispatcher is not None:
            await self.dispatcher.close()
            self.dispatcher = None
        if self._store is not None:
            await self._store.close()
            self._store = None

    async def close(self) -> None:
        await self.stop()
        for runner in self._runners:
            await runner.cleanup()

    async def evaluate(self, *items: AlertItem) -> float:
        """Hand alerts over as the rule manager does after evaluating a group; returns the time just before."""
        started = time.time()
        await self.d.process(RULE_GROUP, list(items))
        return started

    async def until(self, predicate: Callable[[], Any], what: str, within: float = 5.0) -> Any:
        deadline = time.monotonic() + within
        while True:
            if self._ticker is not None and self._ticker.done():
                self._ticker.result()  # a tick that raised: show why
                raise AssertionError("the ticker stopped")
            result = predicate()
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {within}s waiting for {what} (last: {result!r})")
            await asyncio.sleep(0.002)

    async def arrived(self, name: str, count: int, within: float = 5.0) -> list[tuple[float, Any]]:
        """The first `count` notifications of receiver `name`, once they have arrived."""
        endpoint = self.endpoints[name]
        await self.until(lambda: len(endpoint.received()) >= count, f"{count} notification(s) at {name}", within)
        return endpoint.received()[:count]

    async def settle(self, *names: str) -> None:
        """Everything queued for these receivers so far has arrived: a test message queued after it has."""
        for name in names or tuple(self.endpoints):
            endpoint = self.endpoints[name]
            before = endpoint.tests()
            await self.d.send_test(name, "test")
            await self.until(lambda e=endpoint, n=before: e.tests() > n, f"the barrier at {name}")

    async def passing(self, seconds: float) -> None:
        """Let time pass with the ticker running (the input of a timer test, not a wait for a result)."""
        await asyncio.sleep(seconds)


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    r = Rig(tmp_path / "vigil.db")
    yield r
    await r.close()


def tree(receiver: str, *routes: dict[str, Any], **options: Any) -> dict[str, Any]:
    """A route block with fast timers: no group_wait, short group_interval, no repeats within a test."""
    return {"receiver": receiver, "group_by": ["alertname"], "group_wait": 0, "group_interval": GI,
            "repeat_interval": "1h", **options, "routes": list(routes)}


def group_of(body: Mapping[str, Any]) -> tuple[str, dict[str, str], list[str]]:
    return body["groupKey"], body["groupLabels"], sorted(a["labels"]["instance"] for a in body["alerts"])


# --- routing -------------------------------------------------------------------------------------------


async def test_matchers_pick_the_receiver(rig: Rig) -> None:
    receivers = [await rig.webhook("ops"), await rig.webhook("db"), await rig.webhook("chat")]
    await rig.start(receivers, tree(
        "ops",
        {"matchers": ['team="db"'], "receiver": "db"},
        {"match_re": {"severity": "warn.*"}, "receiver": "chat"},
    ))
    await rig.evaluate(item("DiskFull", team="db"), item("HighLoad", team="web"),
                       item("SwapUsed", severity="warning", team="web"))
    await rig.arrived("db", 1)
    await rig.arrived("ops", 1)
    await rig.arrived("chat", 1)
    await rig.settle()
    names = {name: [[a["labels"]["alertname"] for a in b["alerts"]] for b in e.bodies()]
             for name, e in rig.endpoints.items()}
    assert names == {"ops": [["HighLoad"]], "db": [["DiskFull"]], "chat": [["SwapUsed"]]}
    db = rig.endpoints["db"].bodies()[0]
    assert db["receiver"] == "db" and db["groupKey"] == '{}/{team="db"}:{alertname="DiskFull"}'
    assert rig.endpoints["chat"].bodies()[0]["groupKey"] == '{}/{severity=~"^(?:warn.*)$"}:{alertname="SwapUsed"}'


async def test_continue_sends_to_several_receivers(rig: Rig) -> None:
    receivers = [await rig.webhook("ops"), await rig.webhook("db"), await rig.webhook("pager")]
    await rig.start(receivers, tree(
        "ops",
        {"matchers": ['team="db"'], "receiver": "db", "continue": True},
        {"matchers": ['severity="critical"'], "receiver": "pager"},
    ))
    await rig.evaluate(item("DiskFull", team="db"),  # critical: db, and on to pager
                       item("SlowQueries", team="db", severity="warning"),  # db only
                       item("SwapUsed", team="web", severity="warning"))  # nothing matches: the root's ops
    await rig.arrived("db", 2)
    await rig.arrived("pager", 1)
    await rig.arrived("ops", 1)
    await rig.settle()
    names = {name: sorted(b["alerts"][0]["labels"]["alertname"] for b in e.bodies())
             for name, e in rig.endpoints.items()}
    assert names == {"ops": ["SwapUsed"], "db": ["DiskFull", "SlowQueries"], "pager": ["DiskFull"]}


async def test_child_routes_inherit_grouping_and_timers(rig: Rig) -> None:
    """The db route sets only its matchers: group_by, group_wait and group_interval come from the root.
    The web route overrides group_wait only."""
    wait, interval = 0.5, 0.3
    receivers = [await rig.webhook("ops"), await rig.webhook("db"), await rig.webhook("web")]
    await rig.start(receivers, {
        "receiver": "ops", "group_by": ["alertname", "team"], "group_wait": wait, "group_interval": interval,
        "repeat_interval": "1h",
        "routes": [{"matchers": ['team="db"'], "receiver": "db"},
                   {"matchers": ['team="web"'], "receiver": "web", "group_wait": 0}],
    })
    await rig.pause()
    t0 = await rig.evaluate(item("DiskFull", team="db", instance="db1"), item("DiskFull", team="db", instance="db2"),
                            item("DiskFull", team="web", instance="web1"))
    await rig.d.tick()  # at once: web's group_wait (0) has passed, db's inherited one has not
    await rig.settle()
    assert len(rig.endpoints["web"].bodies()) == 1 and rig.endpoints["db"].bodies() == []
    rig.resume()
    [(db_at, db_body)] = await rig.arrived("db", 1)
    [(_, web_body)] = await rig.arrived("web", 1)
    assert db_at >= t0 + wait
    assert group_of(db_body) == ('{}/{team="db"}:{alertname="DiskFull", team="db"}',
                                 {"alertname": "DiskFull", "team": "db"}, ["db1", "db2"])
    assert group_of(web_body) == ('{}/{team="web"}:{alertname="DiskFull", team="web"}',
                                  {"alertname": "DiskFull", "team": "web"}, ["web1"])
    await rig.evaluate(item("DiskFull", team="db", instance="db3"))
    _, (second_at, second) = await rig.arrived("db", 2)
    assert second_at >= t0 + wait + interval  # the inherited group_interval after the first flush
    assert group_of(second)[2] == ["db1", "db2", "db3"]
    await rig.settle()
    assert rig.endpoints["ops"].bodies() == []


async def test_default_tree_gives_every_receiver_every_alert_by_alertname(rig: Rig) -> None:
    """Without a route, each receiver gets each alert, grouped by alertname, with Alertmanager's default
    timers (group_wait 30s): nothing goes out before `held()` (what ending maintenance calls) flushes."""
    await rig.start([await rig.webhook("a"), await rig.webhook("b")])
    await rig.evaluate(item("HighLoad", instance="i1"), item("HighLoad", instance="i2"),
                       item("DiskFull", instance="i1"))
    await rig.passing(10 * TICK)
    await rig.settle()
    assert rig.endpoints["a"].bodies() == [] and rig.endpoints["b"].bodies() == []
    await rig.d.held()
    for name in ("a", "b"):
        bodies = [body for _, body in await rig.arrived(name, 2)]
        assert sorted(group_of(b) for b in bodies) == [
            ('{}/{}:{alertname="DiskFull"}', {"alertname": "DiskFull"}, ["i1"]),
            ('{}/{}:{alertname="HighLoad"}', {"alertname": "HighLoad"}, ["i1", "i2"]),
        ]
        assert {b["receiver"] for b in bodies} == {name}
    await rig.settle()
    assert len(rig.endpoints["a"].bodies()) == len(rig.endpoints["b"].bodies()) == 2


# --- grouping and timers --------------------------------------------------------------------------------


async def test_group_wait_delays_and_batches_by_group_by(rig: Rig) -> None:
    """group_wait holds a new group's first notification, also when group_interval is shorter."""
    wait = 0.5
    await rig.start([await rig.webhook("hook")], tree("hook", group_wait=wait, group_interval=wait / 3))
    t0 = await rig.evaluate(item("HighLoad", instance="i1"))
    await rig.passing(0.05)  # the next evaluation, well within group_wait
    t1 = await rig.evaluate(item("HighLoad", instance="i1"), item("HighLoad", instance="i2"),
                            item("DiskFull", instance="i1"))
    received = await rig.arrived("hook", 2)
    by_group = {body["groupLabels"]["alertname"]: (at, body) for at, body in received}
    load_at, load = by_group["HighLoad"]
    disk_at, disk = by_group["DiskFull"]
    assert load_at >= t0 + wait and disk_at >= t1 + wait
    assert group_of(load)[2] == ["i1", "i2"] and group_of(disk)[2] == ["i1"]
    assert load["commonLabels"] == {"alertname": "HighLoad", "severity": "critical"}
    await rig.settle()
    assert len(rig.endpoints["hook"].bodies()) == 2


async def test_group_interval_spaces_and_batches_changes(rig: Rig) -> None:
    interval = 0.3
    await rig.start([await rig.webhook("hook")], tree("hook", group_interval=interval))
    await rig.pause()
    t0 = await rig.evaluate(item(instance="i1"))
    await rig.d.tick()  # the first notification (no group_wait)
    await rig.evaluate(item(instance="i1"), item(instance="i2"))  # two changes right after it
    await rig.evaluate(item(instance="i1"), item(instance="i2"), item(instance="i3"))
    rig.resume()
    _, (second_at, _) = await rig.arrived("hook", 2)
    assert second_at >= t0 + interval
    await rig.evaluate(item(status="resolved", instance="i1"), item(instance="i2"), item(instance="i3"))
    _, _, (third_at, _) = await rig.arrived("hook", 3)
    assert third_at >= t0 + 2 * interval
    await rig.settle()
    assert rig.endpoints["hook"].summary() == [
        [("i1", "firing")],
        [("i1", "firing"), ("i2", "firing"), ("i3", "firing")],
        [("i2", "firing"), ("i3", "firing"), ("i1", "resolved")],
    ]


async def test_repeat_interval_resends_until_acknowledged(rig: Rig) -> None:
    repeat = 0.2
    await rig.start([await rig.webhook("hook")], tree("hook", repeat_interval=repeat))
    a, b = item(instance="a"), item(instance="b")
    t0 = await rig.evaluate(a)
    received = await rig.arrived("hook", 3, within=5)
    for n, (at, body) in enumerate(received):
        assert at >= t0 + n * repeat
        assert [x["labels"]["instance"] for x in body["alerts"]] == ["a"]

    rig.d.acknowledged(a.fingerprint)  # what the rule manager calls when an operator acknowledges
    await rig.settle()
    sent = len(rig.endpoints["hook"].bodies())
    await rig.passing(2.5 * repeat)
    await rig.settle()
    assert len(rig.endpoints["hook"].bodies()) == sent

    # A new alert is a change: it goes out with the acknowledged one; repeats then carry only the new one.
    t1 = await rig.evaluate(item(instance="a", acknowledged=True), b)
    changed, repeated = (body for _, body in (await rig.arrived("hook", sent + 2))[sent:])
    assert [(x["labels"]["instance"], x["status"]) for x in changed["alerts"]] == [("a", "firing"), ("b", "firing")]
    assert [x["labels"]["instance"] for x in repeated["alerts"]] == ["b"]
    assert rig.endpoints["hook"].received()[sent + 1][0] >= t1 + repeat

    await rig.evaluate(item(instance="a", acknowledged=True), item(instance="b", acknowledged=True))
    await rig.settle()
    sent = len(rig.endpoints["hook"].bodies())
    await rig.passing(2.5 * repeat)
    await rig.settle()
    assert len(rig.endpoints["hook"].bodies()) == sent


async def test_send_resolved_false_gets_no_resolved_notification(rig: Rig) -> None:
    receivers = [await rig.webhook("quiet", send_resolved=False), await rig.webhook("loud")]
    await rig.start(receivers, tree("loud", {"receiver": "quiet", "continue": True}, {"receiver": "loud"}))
    await rig.evaluate(item(instance="i1"), item(instance="i2"))
    await rig.arrived("quiet", 1)
    await rig.arrived("loud", 1)
    await rig.evaluate(item(status="resolved", instance="i1"), item(instance="i2"))
    await rig.arrived("loud", 2)
    await rig.evaluate(item(status="resolved", instance="i2"))
    await rig.arrived("loud", 3)
    await rig.passing(4 * GI)  # both groups flushed on the same ticks; give the quiet one a few more
    await rig.settle()
    assert rig.endpoints["loud"].summary() == [
        [("i1", "firing"), ("i2", "firing")], [("i2", "firing"), ("i1", "resolved")], [("i2", "resolved")],
    ]
    assert rig.endpoints["quiet"].summary() == [[("i1", "firing"), ("i2", "firing")]]
    # Its group was cleared all the same: the alert firing again is news to it.
    await rig.evaluate(item(instance="i1"))
    [_, (_, again)] = await rig.arrived("quiet", 2)
    assert [(x["labels"]["instance"], x["status"]) for x in again["alerts"]] == [("i1", "firing")]


# --- flap damping --------------------------------------------------------------------------------------


async def test_flap_damping_delays_first_firing_by_delay_up(rig: Rig) -> None:
    """delay_up holds the firing notification; an alert that resolves within it is never notified."""
    up = 0.25
    await rig.start([await rig.webhook("hook")], tree("hook"),
                    flap_damping={"delay_up": up, "delay_down": 0, "multiplier": 2, "max": 1})
    await rig.evaluate(item(instance="blip"))
    await rig.passing(up / 5)
    await rig.evaluate(item(status="resolved", instance="blip"))
    t0 = await rig.evaluate(item(instance="steady"))
    [(at, body)] = await rig.arrived("hook", 1)
    assert at >= t0 + up
    assert [(x["labels"]["instance"], x["status"]) for x in body["alerts"]] == [("steady", "firing")]
    await rig.passing(4 * GI)
    await rig.settle()
    assert len(rig.endpoints["hook"].bodies()) == 1


async def test_flap_damping_grows_while_flapping_is_capped_and_recovers(rig: Rig) -> None:
    base, multiplier, cap = 0.1, 2, 1.0
    await rig.start([await rig.webhook("hook")], tree("hook"),
                    flap_damping={"delay_up": base, "delay_down": base, "multiplier": multiplier, "max": cap})

    async def flap(times: int) -> None:
        """Changes faster than any delay: each cancels the one before it, ending where it started (firing)."""
        for _ in range(times):
            await rig.evaluate(item(status="resolved"))
            await rig.evaluate(item())

    t0 = await rig.evaluate(item())
    [(at, _)] = await rig.arrived("hook", 1)
    assert at >= t0 + base

    await flap(6)
    resolved_at = await rig.evaluate(item(status="resolved"))
    _, (at, _) = await rig.arrived("hook", 2)
    assert resolved_at + cap <= at < resolved_at + cap * multiplier  # grown, but no further than max

    # Once its resolution went out, the alert starts afresh.
    fired_at = await rig.evaluate(item())
    _, _, (at, _) = await rig.arrived("hook", 3)
    assert fired_at + base <= at < fired_at + cap

    # Quiet for longer than the grown delay times the multiplier: the next change waits the base delay again.
    await flap(6)
    await rig.passing(cap * multiplier + 0.2)
    resolved_at = await rig.evaluate(item(status="resolved"))
    _, _, _, (at, _) = await rig.arrived("hook", 4)
    assert resolved_at + base <= at < resolved_at + cap
    await rig.settle()
    assert [n[0][1] for n in rig.endpoints["hook"].summary()] == ["firing", "resolved", "firing", "resolved"]


# --- silences, maintenance, restarts --------------------------------------------------------------------


async def test_silence_holds_then_releases(rig: Rig) -> None:
    await rig.start([await rig.webhook("hook")], tree("hook", group_interval="1h"))
    now = time.time()
    silence = Silence("s1", tuple(parse_matchers('{alertname="HighLoad", instance="i1"}')), now - 1, now + 3600)
    rig.silences.append(silence)
    await rig.evaluate(item(instance="i1"), item(instance="i2"))
    [(_, body)] = await rig.arrived("hook", 1)
    assert [x["labels"]["instance"] for x in body["alerts"]] == ["i2"]
    await rig.passing(10 * TICK)
    await rig.settle()
    assert len(rig.endpoints["hook"].bodies()) == 1

    rig.silences.remove(silence)
    await rig.d.held()  # what the silence book calls on a change: released at the next tick, not in an hour
    _, (_, body) = await rig.arrived("hook", 2)
    assert [(x["labels"]["instance"], x["status"]) for x in body["alerts"]] == [("i1", "firing"), ("i2", "firing")]

    # Silencing one of a notified group is no news: the other is not sent again.
    rig.silences.append(silence)
    await rig.d.held()
    await rig.passing(10 * TICK)
    await rig.settle()
    assert len(rig.endpoints["hook"].bodies()) == 2


async def test_an_alert_notified_then_silenced_still_sends_its_resolution(rig: Rig) -> None:
    """A silence stops pages, not the end of a problem the receiver was told about: without the resolution,
    MQTT's retained state and a webhook's view would show the alert firing for ever."""
    await rig.start([await rig.webhook("hook")], tree("hook"))
    await rig.evaluate(item(instance="i1"))
    await rig.arrived("hook", 1)
    now = time.time()
    rig.silences.append(Silence("s1", tuple(parse_matchers('{instance="i1"}')), now - 1, now + 3600))
    await rig.d.held()
    await rig.evaluate(item(instance="i1"))
    await rig.passing(5 * GI)
    await rig.settle()
    assert rig.endpoints["hook"].summary() == [[("i1", "firing")]]  # silenced: no repeat, no page
    await rig.evaluate(item(status="resolved", instance="i1"))
    await rig.arrived("hook", 2)
    assert rig.endpoints["hook"].summary() == [[("i1", "firing")], [("i1", "resolved")]]


async def test_alertmanager_gets_a_resolution_held_by_maintenance_afterwards(rig: Rig) -> None:
    receivers = [await rig.webhook("hook"), await rig.alertmanager("am")]
    await rig.start(receivers, tree("hook", {"receiver": "am"}))
    await rig.evaluate(item(instance="i1"))
    [(_, alerts)] = await rig.arrived("am", 1)
    assert [a["labels"]["instance"] for a in alerts] == ["i1"]
    rig.maintenance = True
    await rig.evaluate(item(status="resolved", instance="i1"))
    await rig.settle("am")
    assert len(rig.endpoints["am"].bodies()) == 1  # held
    rig.maintenance = False
    await rig.d.held()
    await rig.evaluate()  # the next evaluation of any group (nothing firing)
    _, (_, alerts) = await rig.arrived("am", 2)
    assert [a["labels"]["instance"] for a in alerts] == ["i1"]
    assert alerts[0]["endsAt"] != "0001-01-01T00:00:00Z"


async def test_maintenance_holds_then_releases_as_it_then_stands(rig: Rig) -> None:
    rig.resend = 0.05
    receivers = [await rig.webhook("hook"), await rig.alertmanager("am")]
    await rig.start(receivers, tree("hook", {"receiver": "am", "continue": True}, {"receiver": "hook"},
                                    group_interval="1h"))
    rig.maintenance = True
    await rig.evaluate(item(instance="i1"), item(instance="i2"))
    await rig.passing(0.1)
    await rig.evaluate(item(status="resolved", instance="i1"), item(instance="i2"))  # never told: not news
    await rig.passing(0.1)
    await rig.evaluate(item(instance="i2"))
    await rig.settle()
    assert rig.endpoints["hook"].bodies() == [] and rig.endpoints["am"].bodies() == []

    rig.maintenance = False
    await rig.d.held()  # what maintenance calls when it ends
    [(_, body)] = await rig.arrived("hook", 1)
    assert [(x["labels"]["instance"], x["status"]) for x in body["alerts"]] == [("i2", "firing")]
    await rig.evaluate(item(instance="i2"))  # Alertmanager gets the firing ones at the next evaluation
    [(_, alerts)] = await rig.arrived("am", 1)
    assert [a["labels"]["instance"] for a in alerts] == ["i2"]
    await rig.settle()
    assert len(rig.endpoints["am"].bodies()) == 1 and len(rig.endpoints["hook"].bodies()) == 1


@pytest.mark.parametrize("damping", [{}, {"delay_up": 0.1}], ids=["plain", "delay_up"])
async def test_no_second_notification_after_a_restart(rig: Rig, damping: dict[str, Any]) -> None:
    """What a group told is in the database; the damping state is not, and must not make the restarted
    dispatcher take a notified alert for a new one (a second page) or for a resolved one."""
    await rig.start([await rig.webhook("hook")], tree("hook"), flap_damping=damping)
    await rig.evaluate(item(instance="i1"))
    await rig.arrived("hook", 1)
    await rig.settle()  # its delivery returned too: one cut short by the stop would be sent again (at-least-once)
    await rig.stop()

    await rig.start()  # the same database file, a new store, outbox and dispatcher
    await rig.evaluate(item(instance="i1"))
    await rig.passing(5 * GI)
    await rig.evaluate(item(instance="i1"))
    await rig.passing(5 * GI)
    await rig.settle()
    assert rig.endpoints["hook"].summary() == [[("i1", "firing")]]
    await rig.evaluate(item(status="resolved", instance="i1"))  # and it still knows what it told
    await rig.arrived("hook", 2)
    assert rig.endpoints["hook"].summary() == [[("i1", "firing")], [("i1", "resolved")]]


# --- Alertmanager receivers ----------------------------------------------------------------------------


async def test_alertmanager_gets_firing_every_resend_delay_and_resolved_once(rig: Rig) -> None:
    """No grouping for Alertmanager (it groups for itself): the firing alerts of every evaluation at most
    once per resend delay, as Prometheus sends them, and each resolution once."""
    rig.resend = 0.2
    receivers = [await rig.webhook("hook"), await rig.alertmanager("am")]
    await rig.start(receivers, tree("hook", {"receiver": "am", "continue": True}, {"receiver": "hook"},
                                    group_wait="1h"))
    evaluations: list[float] = []
    started = time.monotonic()
    while time.monotonic() - started < 0.7:
        stamp = time.time()
        evaluations.append(stamp)
        a = item(instance="i1")
        a.annotations["evaluated"] = repr(stamp)
        await rig.evaluate(a)
        await rig.passing(0.03)  # the rule group's interval
    await rig.evaluate(item(status="resolved", instance="i1"))
    await rig.evaluate(item(status="resolved", instance="i1"))
    await rig.settle()
    alerts = rig.endpoints["am"].bodies()
    assert all(len(batch) == 1 and batch[0]["labels"]["instance"] == "i1" for batch in alerts)
    firing = [float(batch[0]["annotations"]["evaluated"]) for batch in alerts[:-1]]
    assert "evaluated" not in alerts[-1][0]["annotations"] and alerts[-1][0]["endsAt"] != "0001-01-01T00:00:00Z"
    assert firing[0] == evaluations[0] and len(firing) >= 3
    for sent, next_sent in itertools.pairwise([*firing, float("inf")]):
        assert next_sent - sent >= rig.resend - 0.005  # not more often than the resend delay
        skipped = [e for e in evaluations if sent < e < next_sent]
        assert all(e - sent < rig.resend + 0.005 for e in skipped)  # and not less often either
    assert rig.endpoints["hook"].bodies() == []  # the webhook's group still waits


async def test_a_reload_that_changes_the_forwarded_events_takes_effect(rig: Rig) -> None:
    hook = await rig.webhook("hook", send_events=True)
    await rig.start([hook], tree("hook"), events=["first_kind"])
    rig.d.start()  # event forwarding, as the daemon starts it
    await rig.until(lambda: rig.d.bus.subscriber_count == 1, "the forwarder to subscribe")

    def kinds() -> list[str]:
        return [body["type"] for body in (json.loads(raw) for raw, _, _ in rig.endpoints["hook"].requests)
                if "type" in body and "alerts" not in body]

    rig.d.bus.publish("first_kind", n=1)
    await rig.until(lambda: kinds() == ["first_kind"], "the first event")
    await rig.d.configure(NotificationsConfig.model_validate(
        {"receivers": [hook], "route": tree("hook"), "events": ["second_kind"]}))
    await rig.until(lambda: rig.d.bus.subscriber_count == 1, "the forwarder to subscribe again")
    rig.d.bus.publish("first_kind", n=2)  # no longer wanted
    rig.d.bus.publish("second_kind", n=3)
    await rig.until(lambda: "second_kind" in kinds(), "the event added by the reload")
    assert kinds() == ["first_kind", "second_kind"]
