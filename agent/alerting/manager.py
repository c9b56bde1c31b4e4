"""Rule groups as the daemon runs them: scheduled, evaluated off the loop, remembered across restarts,
and turned into alert instances operators work with.

Each evaluation writes its samples (recording rules, `ALERTS`, `ALERTS_FOR_STATE`, staleness markers)
into the history, then commits the group's state and its alert instances in one transaction, and only
then hands the alerts to the notifier. A `kill -9` at any point therefore neither forgets an alert nor
re-pages for one already notified: the notifier keeps its own committed record of what it sent.

An instance is one stretch of an alert (same labels) from pending to resolved. An operator's resolve
closes the instance and drops the alert from the rule's state, so if the condition still holds a new
instance starts pending and has to wait out `for` again before it fires.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiosqlite
import structlog

from agent.alerting.config import AlertingConfig
from agent.alerting.fingerprint import fingerprint
from agent.alerting.rulefile import RuleGroup
from agent.alerting.rules import Alert, GroupResult, GroupState, carry_over, evaluate, restore_after_downtime
from agent.audit import Audit
from agent.events import EventBus
from agent.notify.base import AlertItem
from agent.promql.engine import Engine
from agent.scheduler import Scheduler
from agent.store import Store
from agent.store import alerts as rows
from agent.store.alerts import AlertRow
from agent.tsdb.db import TSDB

log = structlog.get_logger("vigil.alerting")
AlertSink = Callable[[str, list[AlertItem]], Awaitable[None]]
"""(group key, alerts of the group that are firing or just resolved) -> None: the notifier."""
PRUNE_INTERVAL = 3600.0


class NotFound(Exception):
    """No alert instance with that id."""


class Conflict(Exception):
    """The instance is in a state the operation does not apply to (e.g. resolving a resolved alert)."""


@dataclass
class _Group:
    group: RuleGroup
    state: GroupState
    lock: asyncio.Lock
    last_result: GroupResult | None = None


def _severity(labels: dict[str, str]) -> str:
    return labels.get("severity") or "warning"


class RuleManager:
    def __init__(
        self, store: Store, tsdb: TSDB, scheduler: Scheduler, bus: EventBus, audit: Audit, config: AlertingConfig,
        *, engine: Engine, default_url: str,
    ):
        self.store = store
        self.tsdb = tsdb
        self.scheduler = scheduler
        self.bus = bus
        self.audit = audit
        self.config = config
        self.engine = engine
        self.default_url = default_url
        self.groups: dict[str, _Group] = {}
        self._open: dict[str, AlertRow] = {}  # fingerprint -> open instance
        self._saved: dict[str, tuple[dict[str, Any], float]] = {}
        self._sinks: list[AlertSink] = []
        self._ack_hooks: list[Callable[[str], None]] = []
        self._started = False

    @property
    def external_url(self) -> str:
        return (self.config.external_url or self.default_url).rstrip("/")

    def add_sink(self, sink: AlertSink) -> None:
        self._sinks.append(sink)

    def on_acknowledged(self, hook: Callable[[str], None]) -> None:
        """`hook(fingerprint)` when an operator acknowledges an alert (repeat notifications stop)."""
        self._ack_hooks.append(hook)

    async def load(self) -> None:
        """Read the state the previous run left: group states and open instances."""
        self._saved = await rows.load_group_states(self.store)
        self._open = {r.fingerprint: r for r in await rows.open_alerts(self.store)}

    def start(self) -> None:
        self._started = True
        self.scheduler.every("alerting.prune", PRUNE_INTERVAL, self.prune, first_in=120.0)

    async def configure(self, groups: list[RuleGroup], config: AlertingConfig | None = None) -> None:
        """Take a new rule set: groups keep their state by key (file and name), rules by name and labels;
        a removed group's open alerts are resolved."""
        if config is not None:
            self.config = config
        now = time.time()
        old = self.groups
        new: dict[str, _Group] = {}
        for group in groups:
            previous = old.get(group.key)
            if previous is not None:
                async with previous.lock:
                    state = carry_over(previous.state, group)
                new[group.key] = _Group(group, state, previous.lock, previous.last_result)
                continue
            saved = self._saved.pop(group.key, None)
            state = self._restored(group, saved, now)
            new[group.key] = _Group(group, state, asyncio.Lock())
        self.groups = new
        removed = [key for key in old if key not in new]
        for key in removed:
            self.scheduler.remove(f"rules.{key}")
            async with old[key].lock:
                await self._close_group(key, now)
        stale_saved = [k for k in self._saved if k not in new]
        if stale_saved:
            await self._close_saved(stale_saved, now)
        for key, entry in new.items():
            interval = self.interval(entry.group)
            self.scheduler.every(f"rules.{key}", interval, self._job(key), first_in=_offset(key, interval),
                                 group="rules")

    def interval(self, group: RuleGroup) -> float:
        return group.interval_ms / 1000 if group.interval_ms else self.config.evaluation_interval

    def _restored(self, group: RuleGroup, saved: tuple[dict[str, Any], float] | None, now: float) -> GroupState:
        if saved is None:
            return GroupState.new(group)
        try:
            state = carry_over(GroupState.from_dict(saved[0]), group)
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("rule_state_unreadable", group=group.name, file=group.file, error=str(exc))
            return GroupState.new(group)
        down_at_ms = state.last_evaluation_ms or int(saved[1] * 1000)
        now_ms = int(now * 1000)
        if now_ms - down_at_ms > self.config.outage_tolerance * 1000:
            for rs in state.rules:  # too long away: pending alerts start over; firing ones stay (no re-page)
                for key in [k for k, a in rs.active.items() if a.state == "pending"]:
                    del rs.active[key]
        else:
            restore_after_downtime(state, group, down_at_ms, now_ms, int(self.config.for_grace_period * 1000))
        return state

    def _job(self, key: str) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            await self.evaluate_group(key)

        return run

    async def evaluate_group(self, key: str, t: float | None = None) -> GroupResult | None:
        entry = self.groups.get(key)
        if entry is None:
            return None
        async with entry.lock:
            if self.groups.get(key) is not entry:
                return None
            t_ms = int((t if t is not None else time.time()) * 1000)
            result = await asyncio.to_thread(
                evaluate, entry.group, entry.state, t_ms, self.tsdb.querier(), engine=self.engine,
                external_labels=self.config.external_labels, external_url=self.external_url,
                timeout_s=self.config.query_timeout,
            )
            entry.last_result = result
            self._write_samples(result)
            items = await self._sync_instances(key, entry, result)
        for change in result.changes:
            self.bus.publish("alert_state_changed", alertname=change.rule, labels=dict(change.labels),
                             old=change.old, new=change.new, group=entry.group.name)
        for sink in self._sinks:
            try:
                await sink(key, items)
            except Exception:
                log.exception("alert_sink_failed", group=entry.group.name)
        return result

    def _write_samples(self, result: GroupResult) -> None:
        if not result.samples:
            return
        try:
            self.tsdb.append_many(((labels, v) for labels, _t, v in result.samples), result.t_ms)
        except Exception as exc:  # the history refusing samples (limits) must not stop alerting
            log.warning("rule_samples_not_recorded", group=result.group.name, error=str(exc))

    async def _sync_instances(self, key: str, entry: _Group, result: GroupResult) -> list[AlertItem]:
        """Bring the instances in line with the group's alerts; commit them with the group state."""
        now = result.t_ms / 1000
        inserts: list[AlertRow] = []
        updates: list[AlertRow] = []
        items: list[AlertItem] = []
        seen: set[str] = set()
        valid_until = now + 4 * max(self.config.resend_delay, self.interval(entry.group))
        for rule_result in result.rules:
            for alert in rule_result.alerts:
                labels = self._labels_out(alert)
                fp = fingerprint(labels)
                seen.add(fp)
                row = self._open.get(fp)
                state = "resolved" if alert.resolved_at_ms is not None else alert.state
                if row is None:
                    if state == "resolved":
                        continue  # resolved by an operator already, or before we knew it
                    row = AlertRow(0, fp, key, rule_result.rule.name, labels, dict(alert.annotations),
                                   _severity(labels), alert.value, state, alert.active_at_ms / 1000,
                                   _ms(alert.fired_at_ms), None, updated_at=now)
                    inserts.append(row)
                else:
                    new_values = (state, dict(alert.annotations), alert.value, _ms(alert.fired_at_ms))
                    if (row.state, row.annotations, row.value, row.fired_at) != new_values:
                        row.state, row.annotations, row.value, row.fired_at = new_values
                        if state == "resolved":
                            row.resolved_at = _ms(alert.resolved_at_ms)
                        row.updated_at = now
                        updates.append(row)
                if state in ("firing", "resolved"):
                    items.append(self._item(row, alert, valid_until))
        for fp, row in list(self._open.items()):
            if row.group_key == key and fp not in seen:  # the rule is gone from the group
                row.state, row.resolved_at, row.resolved_by, row.updated_at = "resolved", now, "rule removed", now
                updates.append(row)
                items.append(self._row_item(row))
        state_dict = entry.state.to_dict()

        async def op(db: aiosqlite.Connection) -> None:
            for row in inserts:
                await rows.insert(db, row)
            for row in updates:
                await rows.update(db, row)
            await rows.save_group_state(db, key, state_dict, now)

        await self.store.write(op)
        for row in inserts:
            self._open[row.fingerprint] = row
        for row in updates:
            if row.resolved_at is not None:
                self._open.pop(row.fingerprint, None)
        for item in items:
            open_row = self._open.get(item.fingerprint)
            if item.alert_id is None and open_row is not None:
                item.alert_id = open_row.id
        return items

    def _labels_out(self, alert: Alert) -> dict[str, str]:
        """The alert's labels as sent and stored: external labels first, the alert's own win."""
        labels = dict(self.config.external_labels)
        labels.update(alert.labels)
        return labels

    def _generator_url(self, expr: str) -> str:
        return f"{self.external_url}/api/v1/query?query={quote(expr, safe='')}"

    def _item(self, row: AlertRow, alert: Alert, valid_until: float) -> AlertItem:
        rule = next((r for g in [self.groups.get(row.group_key)] if g for r in g.group.rules
                     if r.name == row.alertname), None)
        resolved = alert.resolved_at_ms is not None
        return AlertItem(
            fingerprint=row.fingerprint, status="resolved" if resolved else "firing", labels=row.labels,
            annotations=row.annotations, starts_at=row.active_at,
            ends_at=_ms(alert.resolved_at_ms) if resolved else valid_until,
            generator_url=self._generator_url(rule.expr) if rule else "", value=alert.value,
            alert_id=row.id or None, acknowledged=row.ack_at is not None,
        )

    def _row_item(self, row: AlertRow) -> AlertItem:
        return AlertItem(row.fingerprint, "resolved", row.labels, row.annotations, row.active_at, row.resolved_at,
                         "", row.value, row.id, row.ack_at is not None)

    async def _close_group(self, key: str, now: float) -> None:
        closing = [r for r in self._open.values() if r.group_key == key]

        async def op(db: aiosqlite.Connection) -> None:
            for row in closing:
                row.state, row.resolved_at, row.resolved_by, row.updated_at = "resolved", now, "rule removed", now
                await rows.update(db, row)
            await rows.delete_group_states(db, [key])

        await self.store.write(op)
        for row in closing:
            self._open.pop(row.fingerprint, None)
        if closing:
            items = [self._row_item(r) for r in closing]
            for sink in self._sinks:
                await sink(key, items)

    async def _close_saved(self, keys: list[str], now: float) -> None:
        """States of groups that were removed while Vigil was stopped."""
        for key in keys:
            self._saved.pop(key, None)
            await self._close_group(key, now)

    # --- the operator's workflow ---

    async def acknowledge(self, alert_id: int, actor: str, remote: str | None, notes: str | None,
                          assigned_to: str | None, estimated_resolution: str | None) -> AlertRow:
        row = await self._open_row(alert_id, "acknowledge")
        now = time.time()
        row.ack_by, row.ack_at, row.ack_notes = actor, now, notes
        row.assigned_to, row.estimated_resolution, row.updated_at = assigned_to, estimated_resolution, now

        async def op(db: aiosqlite.Connection) -> None:
            await rows.update(db, row)

        await self.store.write(op)
        await self.audit.record("alert_acknowledged", actor=actor, remote=remote, target=f"alert:{alert_id}",
                                outcome="success", details={"alertname": row.alertname, "notes": notes,
                                                            "assigned_to": assigned_to})
        self.bus.publish("alert_acknowledged", id=alert_id, alertname=row.alertname, by=actor,
                         fingerprint=row.fingerprint)
        for hook in self._ack_hooks:
            hook(row.fingerprint)
        return row

    async def resolve(self, alert_id: int, actor: str, remote: str | None, resolution: str | None,
                      notes: str | None, preventive_measures: str | None) -> AlertRow:
        row = await self._open_row(alert_id, "resolve")
        entry = self.groups.get(row.group_key)
        lock = entry.lock if entry is not None else asyncio.Lock()
        async with lock:
            if row.resolved_at is not None:
                raise Conflict(f"alert {alert_id} is already resolved")
            now = time.time()
            row.state, row.resolved_at, row.resolved_by, row.updated_at = "resolved", now, actor, now
            row.resolution, row.resolution_notes, row.preventive_measures = resolution, notes, preventive_measures
            state_dict: dict[str, Any] | None = None
            if entry is not None:
                for rs in entry.state.rules:
                    for labels in [k for k, a in rs.active.items()
                                   if fingerprint(self._labels_out(a)) == row.fingerprint]:
                        del rs.active[labels]
                state_dict = entry.state.to_dict()

            async def op(db: aiosqlite.Connection) -> None:
                await rows.update(db, row)
                if state_dict is not None:
                    await rows.save_group_state(db, row.group_key, state_dict, now)

            await self.store.write(op)
            self._open.pop(row.fingerprint, None)
        await self.audit.record("alert_resolved", actor=actor, remote=remote, target=f"alert:{alert_id}",
                                outcome="success", details={"alertname": row.alertname, "resolution": resolution})
        self.bus.publish("alert_resolved", id=alert_id, alertname=row.alertname, by=actor,
                         fingerprint=row.fingerprint)
        for sink in self._sinks:
            await sink(row.group_key, [self._row_item(row)])
        return row

    async def _open_row(self, alert_id: int, action: str) -> AlertRow:
        row = await rows.get(self.store, alert_id)
        if row is None:
            raise NotFound(f"no alert with id {alert_id}")
        if row.resolved_at is not None:
            raise Conflict(f"alert {alert_id} is resolved; there is nothing to {action}")
        held = self._open.get(row.fingerprint)
        return held if held is not None and held.id == row.id else row

    # --- views ---

    def rule_groups(self) -> list[_Group]:
        return list(self.groups.values())

    def counts(self) -> dict[str, int]:
        """Rules and their health, for the health answer and metrics."""
        out = {"groups": len(self.groups), "rules": 0, "unhealthy": 0}
        for entry in self.groups.values():
            out["rules"] += len(entry.group.rules)
            out["unhealthy"] += sum(1 for rs in entry.state.rules if rs.health == "err")
        return out

    def firing(self) -> list[AlertRow]:
        return [r for r in self._open.values() if r.state == "firing"]

    async def prune(self) -> None:
        removed = await rows.prune(self.store, time.time() - self.config.retention)
        if removed:
            log.info("alerts_pruned", removed=removed)

    async def close(self) -> None:
        """Wait for evaluations in flight, so their state and instances are committed before the store closes."""
        for key in list(self.groups):
            self.scheduler.remove(f"rules.{key}")
        for entry in list(self.groups.values()):
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(entry.lock.acquire(), timeout=10)
                entry.lock.release()


def _ms(value: int | None) -> float | None:
    return value / 1000 if value is not None else None


def _offset(key: str, interval: float) -> float:
    """Spread groups over their interval (stable per group), as Prometheus offsets evaluations by a hash."""
    return (zlib.crc32(key.encode()) % 1000) / 1000 * min(interval, 10.0)
