"""From alerts to messages: routing, grouping, flap damping, silences and maintenance, then the outbox.

Alerts arrive from the rule manager after each evaluation of their group. Each firing or resolved
alert is routed through the tree (Alertmanager's semantics) into aggregation groups; a group is
flushed `group_wait` after it appears and then every `group_interval`, and sends only when what it
would say changed, or when `repeat_interval` passed and some alert in it is still firing and not
acknowledged. Silenced alerts are left out; in maintenance mode nothing is flushed, so everything is
held and goes out, as it then stands, at the first flush after maintenance ends.

Alertmanager receivers skip the grouping: Alertmanager groups for itself, and expects what
Prometheus sends — every firing alert again each `resend_delay`, and the resolved ones once.

What a group last sent is committed before its message is queued is considered sent: a crash in
between may send a message twice, never lose one (the outbox is at-least-once, too).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from agent.events import Event, EventBus
from agent.notify.base import AlertItem, MessageKind, Notification, Receiver
from agent.notify.config import FlapDampingConfig, NotificationsConfig, effective_route
from agent.notify.outbox import Outbox
from agent.notify.receivers import REGISTRY
from agent.notify.routing import Route, build_tree
from agent.store import Store, notify_groups

log = structlog.get_logger("vigil.notify")
TICK = 1.0
STATE_RETENTION = 7 * 86400.0


@dataclass
class _Group:
    key: str
    route: Route
    receiver: str
    group_key: str
    labels: dict[str, str]
    fingerprints: set[str] = field(default_factory=set)
    due_at: float = 0.0
    last_flush_at: float | None = None
    last_sent_at: float | None = None
    notified: dict[str, str] = field(default_factory=dict)
    """fingerprint -> status it was last sent with ("firing"; resolved ones are dropped once sent)."""

    def state(self) -> dict[str, Any]:
        return {"notified": self.notified, "last_sent_at": self.last_sent_at, "last_flush_at": self.last_flush_at}


@dataclass
class _Flap:
    """Netdata's notification delay: a change waits `delay`; a change back within it cancels the first
    and multiplies the delay (up to `max`), so a flapping alert notifies less and less often."""

    shown: str
    """The status notifications treat the alert as having."""
    pending: str | None = None
    hold_until: float = 0.0
    delay: float = 0.0
    last_change_at: float = 0.0


class Dispatcher:
    def __init__(
        self, store: Store, outbox: Outbox, bus: EventBus, config: NotificationsConfig, hostname: str,
        *, silenced_by: Callable[[Mapping[str, str], float], list[str]],
        in_maintenance: Callable[[], bool], resend_delay: Callable[[], float],
        external_url: Callable[[], str],
    ):
        self.store = store
        self.outbox = outbox
        self.bus = bus
        self.hostname = hostname
        self.silenced_by = silenced_by
        self.in_maintenance = in_maintenance
        self.resend_delay = resend_delay
        self.external_url = external_url
        self.alerts: dict[str, AlertItem] = {}
        self.groups: dict[str, _Group] = {}
        self.flaps: dict[str, _Flap] = {}
        self.receivers: dict[str, Receiver] = {}
        self._saved: dict[str, dict[str, Any]] = {}
        self._direct_sent: dict[tuple[str, str], tuple[str, float]] = {}
        self._direct_resolved: dict[str, AlertItem] = {}  # resolutions held by maintenance
        self._lock = asyncio.Lock()
        self._events_task: asyncio.Task[None] | None = None
        self.config = config
        self.tree: Route | None = None

    async def load(self) -> None:
        self._saved = await notify_groups.load(self.store)

    async def configure(self, config: NotificationsConfig) -> None:
        """New receivers and routes; groups of routes that still exist keep their state."""
        old_receivers = {r.name: r for r in self.config.receivers} if self.tree is not None else {}
        events_changed = self.config.forwarded_events() != config.forwarded_events()
        self.config = config
        if events_changed and self._events_task is not None:
            # The bus filters by the types subscribed to: a new list needs a new subscription.
            self._events_task.cancel()
            await asyncio.gather(self._events_task, return_exceptions=True)
            self.start()
        route = effective_route(config)
        self.tree = build_tree(route) if route is not None else None
        receivers: dict[str, Receiver] = {}
        greetings: list[tuple[str, MessageKind, dict[str, Any]]] = []
        for cfg in config.receivers:
            current = self.receivers.get(cfg.name)
            if current is not None and old_receivers.get(cfg.name) == cfg:
                receivers[cfg.name] = current
            else:
                receivers[cfg.name] = REGISTRY[cfg.type](cfg, self.hostname)
                greeting = receivers[cfg.name].greeting()
                if greeting is not None:
                    greetings.append((cfg.name, "event", greeting))
        self.receivers = receivers
        self.outbox.configure(config.outbox)
        await self.outbox.set_receivers(receivers)
        await self.outbox.enqueue_many(greetings)
        for key, group in list(self.groups.items()):  # regroup under the new tree at the next evaluation
            self._saved[key] = group.state()
            del self.groups[key]
        for item in list(self.alerts.values()):
            self._route(item, time.time())

    def start(self) -> None:
        self._events_task = asyncio.create_task(self._forward_events(), name="notify-events")

    async def close(self) -> None:
        if self._events_task is not None:
            self._events_task.cancel()
            await asyncio.gather(self._events_task, return_exceptions=True)
        await self.outbox.close()

    # --- input from the rule manager ---

    async def process(self, group_key: str, items: list[AlertItem]) -> None:
        """Alerts of one rule group that are firing or just resolved (an empty list: acknowledgements
        changed, nothing else)."""
        now = time.time()
        async with self._lock:
            for item in items:
                self._observe(item, now)
                self.alerts[item.fingerprint] = item
                self._route(item, now)
            await self._send_direct(items, now)

    def acknowledged(self, fingerprint: str) -> None:
        item = self.alerts.get(fingerprint)
        if item is not None:
            item.acknowledged = True

    def _observe(self, item: AlertItem, now: float) -> None:
        damping: FlapDampingConfig = self.config.flap_damping
        flap = self.flaps.get(item.fingerprint)
        if flap is None:
            if item.status == "firing" and damping.delay_up > 0:
                # Appearing is a change too: told after delay_up, or never if it resolves within it.
                self.flaps[item.fingerprint] = _Flap(shown="resolved", pending="firing", delay=damping.delay_up,
                                                     hold_until=now + damping.delay_up, last_change_at=now)
            else:
                self.flaps[item.fingerprint] = _Flap(shown=item.status, last_change_at=now)
            return
        if item.status == (flap.pending or flap.shown):
            return
        if flap.pending is not None and item.status == flap.shown:
            # Changed back before the delay ran out: nothing to tell, and it is flapping.
            flap.pending = None
            flap.delay = min(flap.delay * damping.multiplier, damping.max)
            flap.last_change_at = now
            return
        base = damping.delay_up if item.status == "firing" else damping.delay_down
        flapping = now - flap.last_change_at < max(flap.delay, base) * damping.multiplier
        flap.delay = min(max(flap.delay, base) * damping.multiplier, damping.max) if flapping else base
        flap.pending = item.status
        flap.hold_until = now + flap.delay
        flap.last_change_at = now

    def _shown(self, item: AlertItem, now: float) -> str:
        flap = self.flaps.get(item.fingerprint)
        if flap is None:
            return item.status
        if flap.pending is not None and now >= flap.hold_until:
            flap.shown, flap.pending = flap.pending, None
        return flap.shown

    def _route(self, item: AlertItem, now: float) -> None:
        if self.tree is None:
            return
        for route in self.tree.match(item.labels):
            if self._is_direct(route.receiver):
                continue
            group_key = route.group_key(item.labels)
            key = f"{route.id()}|{route.receiver}|{group_key}"
            group = self.groups.get(key)
            if group is None:
                group = _Group(key, route, route.receiver, group_key, route.group_labels(item.labels))
                saved = self._saved.pop(key, None)
                if saved:
                    group.notified = dict(saved.get("notified") or {})
                    group.last_sent_at = saved.get("last_sent_at")
                    group.last_flush_at = saved.get("last_flush_at")
                group.due_at = now + route.group_wait
                self.groups[key] = group
            elif group.last_flush_at is not None and (
                    item.fingerprint not in group.fingerprints or group.notified.get(item.fingerprint) != item.status):
                # A group not flushed yet keeps its group_wait, even when group_interval is shorter.
                soonest = group.last_flush_at + route.group_interval
                group.due_at = min(group.due_at, max(now, soonest))
            group.fingerprints.add(item.fingerprint)

    def _is_direct(self, receiver: str) -> bool:
        r = self.receivers.get(receiver)
        return r is not None and r.type == "alertmanager"

    # --- flushing ---

    async def tick(self) -> None:
        """The scheduler's job: flush the groups that are due (held while in maintenance)."""
        if self.in_maintenance():
            return
        now = time.time()
        async with self._lock:
            due = [g for g in self.groups.values() if g.due_at <= now]
            messages: list[tuple[str, str, dict[str, Any]]] = []
            saves: dict[str, dict[str, Any]] = {}
            deletes: list[str] = []
            for group in due:
                body = self._flush(group, now)
                if body is not None:
                    messages.append((group.receiver, "notification", body))
                if group.fingerprints:
                    saves[group.key] = group.state()
                else:
                    deletes.append(group.key)
                    del self.groups[group.key]
            self._forget_resolved()
            # Messages are committed before the groups' new state: a crash in between sends them again after
            # the restart at worst (at least once), never leaves a state that says "notified" without them.
            if messages:
                await self.outbox.enqueue_many(messages)
            if saves or deletes:
                await notify_groups.save(self.store, saves, deletes, now)

    def _flush(self, group: _Group, now: float) -> dict[str, Any] | None:
        group.due_at = now + group.route.group_interval
        group.last_flush_at = now
        firing: list[AlertItem] = []
        resolved: list[AlertItem] = []
        told: set[str] = set()
        for fp in sorted(group.fingerprints):
            item = self.alerts.get(fp)
            if item is None:
                group.fingerprints.discard(fp)
                continue
            status = self._shown(item, now)
            if status == "resolved" and item.status == "firing" and group.notified.get(fp) == "firing":
                status = "firing"  # told before a restart, which forgot its damping: still firing, as told
            if status == "firing" and self.silenced_by(item.labels, now):
                if group.notified.get(fp) == "firing":
                    told.add(fp)  # still firing as far as the receiver knows: its resolution must follow
                continue
            if status == "firing":
                firing.append(item)
            elif group.notified.get(fp) == "firing":
                resolved.append(item if item.status == "resolved" else _as_resolved(item, now))
        receiver = self.receivers.get(group.receiver)
        if receiver is not None and not receiver.config.send_resolved:
            resolved = []
        before = {fp for fp, s in group.notified.items() if s == "firing"}
        after = {a.fingerprint for a in firing}
        # News is an alert that fires, or one that resolved when the receiver wants those; an alert that only
        # left (resolved for a receiver that does not want it, or silenced) is no reason to send the rest again.
        changed = bool(after - before) or bool(resolved)
        unacked = [a for a in firing if not a.acknowledged]
        since = None if group.last_sent_at is None else now - group.last_sent_at
        repeat = bool(unacked) and (since is None or since >= group.route.repeat_interval)
        body = None
        if changed or repeat:
            alerts = firing if changed else unacked
            if alerts or resolved:
                body = self._notification(group, alerts + resolved).to_dict()
                group.last_sent_at = now
        group.notified = {fp: "firing" for fp in told} | {a.fingerprint: "firing" for a in firing}
        for fp in list(group.fingerprints):
            item = self.alerts.get(fp)
            if item is not None and item.status == "resolved" and fp not in group.notified and (
                    self.flaps.get(fp) is None or self.flaps[fp].pending is None):
                group.fingerprints.discard(fp)
        return body

    def _notification(self, group: _Group, alerts: list[AlertItem]) -> Notification:
        firing = any(a.status == "firing" for a in alerts)
        common_labels = _common([a.labels for a in alerts])
        common_annotations = _common([a.annotations for a in alerts])
        return Notification(
            receiver=group.receiver, status="firing" if firing else "resolved", alerts=alerts,
            group_key=group.group_key, group_labels=group.labels, common_labels=common_labels,
            common_annotations=common_annotations, external_url=self.external_url(), hostname=self.hostname,
        )

    def _forget_resolved(self) -> None:
        held = set().union(*(g.fingerprints for g in self.groups.values())) if self.groups else set()
        for fp in [fp for fp, item in self.alerts.items() if item.status == "resolved" and fp not in held]:
            del self.alerts[fp]
            self.flaps.pop(fp, None)

    async def _send_direct(self, items: list[AlertItem], now: float) -> None:
        """Alertmanager receivers: firing alerts every resend_delay, resolved ones once (as Prometheus)."""
        if self.tree is None:
            return
        if self.in_maintenance():
            # Held; a resolution is kept to be sent afterwards, or Alertmanager would only resolve the
            # alert when its endsAt runs out.
            for item in items:
                if item.status == "resolved":
                    self._direct_resolved[item.fingerprint] = item
                else:
                    self._direct_resolved.pop(item.fingerprint, None)
            return
        held = list(self._direct_resolved.values())
        self._direct_resolved.clear()
        per_receiver: dict[str, list[AlertItem]] = {}
        resend = self.resend_delay()
        for item in held + items:
            if item.status == "firing" and self.silenced_by(item.labels, now):
                continue  # a resolution goes through: it pages nobody and ends the alert in Alertmanager
            for route in self.tree.match(item.labels):
                if not self._is_direct(route.receiver):
                    continue
                key = (route.receiver, item.fingerprint)
                last = self._direct_sent.get(key)
                if item.status == "resolved":
                    if last is None or last[0] == "resolved":
                        continue
                    self._direct_sent.pop(key, None)
                elif last is not None and last[0] == "firing" and now - last[1] < resend:
                    continue
                else:
                    self._direct_sent[key] = ("firing", now)
                batch = per_receiver.setdefault(route.receiver, [])
                if item not in batch:
                    batch.append(item)
        messages = []
        for receiver, alerts in per_receiver.items():
            body = Notification(receiver=receiver, status="firing" if any(a.status == "firing" for a in alerts)
                                else "resolved", alerts=alerts, external_url=self.external_url(),
                                hostname=self.hostname, common_labels=_common([a.labels for a in alerts]))
            messages.append((receiver, "notification", body.to_dict()))
        if messages:
            await self.outbox.enqueue_many(messages)

    async def held(self) -> None:
        """Maintenance ended or a silence changed: flush every group at the next tick."""
        async with self._lock:
            now = time.time()
            for group in self.groups.values():
                group.due_at = min(group.due_at, now)

    # --- tests and events ---

    async def send_test(self, receiver: str, actor: str | None) -> int:
        if receiver not in self.receivers:
            raise KeyError(receiver)
        now = time.time()
        item = AlertItem(
            fingerprint="0000000000000000", status="firing",
            labels={"alertname": "VigilTestNotification", "severity": "info", "instance": self.hostname},
            annotations={"summary": "Test notification from Vigil",
                         "description": f"Sent by {actor or 'an operator'} to check receiver {receiver}."},
            starts_at=now, ends_at=now + 60,
        )
        body = Notification(receiver=receiver, status="firing", alerts=[item], external_url=self.external_url(),
                            hostname=self.hostname, common_labels=dict(item.labels), test=True)
        ids = await self.outbox.enqueue_many([(receiver, "test", body.to_dict())])
        return ids[0]

    async def _forward_events(self) -> None:
        with self.bus.subscribe(self.config.forwarded_events() or None) as sub:
            while True:
                event = await sub.get()
                await self._forward(event)

    async def _forward(self, event: Event) -> None:
        targets = [name for name, r in self.receivers.items() if r.accepts_events]
        if not targets or event.type not in self.config.forwarded_events():
            return
        body = event.as_dict()
        try:
            await self.outbox.enqueue_many([(name, "event", body) for name in targets])
        except Exception:
            log.exception("event_forward_failed", event=event.type)

    async def prune(self) -> None:
        await notify_groups.prune(self.store, time.time() - STATE_RETENTION)
        await self.outbox.prune()


def _as_resolved(item: AlertItem, now: float) -> AlertItem:
    return AlertItem(item.fingerprint, "resolved", item.labels, item.annotations, item.starts_at, now,
                     item.generator_url, item.value, item.alert_id, item.acknowledged)


def _common(sets: list[Mapping[str, str]]) -> dict[str, str]:
    if not sets:
        return {}
    common = dict(sets[0])
    for other in sets[1:]:
        common = {k: v for k, v in common.items() if other.get(k) == v}
    return common
