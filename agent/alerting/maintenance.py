"""Maintenance mode: a period during which notifications are held, remediation pauses, and only allowed
addresses may change things through the API.

A period starts from the API (`enable`) or from a scheduled window in config (cron + duration), and ends
from the API (`disable`) or by itself at its expected end when `auto_disable` is set (windows always
are). Only one period is on at a time:

- enabling while one is on is refused (409 with the active id): extending or replacing someone else's
  maintenance silently would hide it from them; disable it first, or wait for it to end;
- a window that starts while a period is on does not start another one: it moves the expected end of
  the active period to the window's end when that is later, so the window is honoured;
- an operator's `disable` ends the period whatever started it, including a window's occurrence, which
  then does not start again before its next occurrence (also after a restart).

Periods are committed before the API answers, so a `kill -9` never loses one: after a restart `load()`
restores the open period, ends it if its `auto_disable` end passed while Vigil was down, and enters a
window whose occurrence is in progress and was not handled yet.

Windows are cron expressions of five fields in local time with cron's meanings (day of week 0 or 7 is
Sunday; when both day of month and day of week are restricted, either one matching is enough, as in
Vixie cron). A one-second scheduler job (`tick`) enters windows and ends expired periods, so the
timing follows the wall clock, also across a suspend or a clock step.
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, tzinfo
from typing import Any

import structlog

from agent.alerting.config import MaintenanceConfig, MaintenanceWindowConfig
from agent.alerting.silencebook import run_callbacks
from agent.audit import Audit
from agent.cron import CronSchedule
from agent.events import EventBus
from agent.scheduler import Scheduler
from agent.security.policy import parse_address
from agent.store import Store
from agent.store import maintenance as rows
from agent.store.maintenance import AUTO_END, PeriodRow

log = structlog.get_logger("vigil.maintenance")
Period = PeriodRow
TICK = 1.0
MAX_MINUTES = 30 * 24 * 60.0
ChangeCallback = Callable[[bool], Awaitable[None] | None]
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class MaintenanceError(Exception):
    """A request the current state does not allow; `status` is the HTTP status it maps to."""

    status = 409

    def __init__(self, message: str, period: Period | None = None):
        super().__init__(message)
        self.period = period


class MaintenanceActive(MaintenanceError):
    """Enable while a period is on."""


class MaintenanceNotActive(MaintenanceError):
    """Disable while no period is on, or naming a period that has already ended."""


class MaintenanceNotFound(MaintenanceError):
    status = 404


@dataclass
class _Window:
    config: MaintenanceWindowConfig
    schedule: CronSchedule
    next_start: float | None
    """The next occurrence to act on: one in progress (at or before now) or the next in the future."""


# --- helpers ------------------------------------------------------------------------------------------


def parse_networks(values: Sequence[str]) -> list[IpNetwork]:
    """IP addresses or CIDR networks; ValueError naming the first bad one."""
    out: list[IpNetwork] = []
    for value in values:
        if not isinstance(value, str):
            raise ValueError(f"allowed_ips: {value!r} is not a string")
        try:
            out.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(f"allowed_ips: {value!r} is not an IP address or CIDR network") from None
    return out


def remaining_text(seconds: float) -> str:
    """`15 minutes`, `1 hour 5 minutes`, `40 seconds`: the seed's `time_remaining`."""
    seconds = max(seconds, 0.0)

    def unit(n: int, word: str) -> str:
        return f"{n} {word}" if n == 1 else f"{n} {word}s"

    if seconds < 60:
        return unit(math.ceil(seconds), "second")
    minutes = math.ceil(seconds / 60)
    if minutes < 60:
        return unit(minutes, "minute")
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    parts = ([unit(days, "day")] if days else []) + ([unit(hours, "hour")] if hours else [])
    return " ".join(parts + ([unit(minutes, "minute")] if minutes else []))


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def period_id(started_at: float) -> str:
    """`maint_20250115_120000` (UTC), as the seed's ids; the store appends `_2`... on a clash."""
    return "maint_" + datetime.fromtimestamp(started_at, UTC).strftime("%Y%m%d_%H%M%S")


# --- the mode -----------------------------------------------------------------------------------------


class Maintenance:
    def __init__(
        self, store: Store, bus: EventBus, audit: Audit, scheduler: Scheduler, config: MaintenanceConfig,
        *, clock: Callable[[], float] = time.time, tz: tzinfo | None = None,
    ):
        self.store = store
        self.bus = bus
        self.audit = audit
        self.scheduler = scheduler
        self.clock = clock
        self.tz = tz
        self.config = config
        self._active: Period | None = None
        self._networks: tuple[IpNetwork, ...] = ()
        self._windows: dict[str, _Window] = {}
        self._callbacks: list[ChangeCallback] = []
        self._lock = asyncio.Lock()
        self._build_windows(clock())
        self._set_networks()

    # --- lifecycle ---

    async def load(self) -> None:
        """Restore the open period; end it if its auto-disable end passed while Vigil was down; enter a
        window in progress."""
        open_rows = await rows.load_open(self.store)
        for stale in open_rows[:-1]:  # never written by this code; a period per start is the rule
            await rows.end(self.store, stale.id, self.clock(), "superseded")
            log.warning("maintenance_superseded", id=stale.id)
        if open_rows:
            self._active = open_rows[-1]
            self._set_networks()
            log.info("maintenance_restored", id=self._active.id, reason=self._active.reason,
                     source=self._active.source, estimated_completion=_iso(self._active.ends_at))
        await self.tick()

    def start(self) -> None:
        self.scheduler.every("vigil.maintenance", TICK, self.tick)

    def configure(self, config: MaintenanceConfig) -> None:
        """New windows and always-allowed addresses. A window in progress is entered at the next tick; a
        period already on keeps its end, also when its window was removed."""
        self.config = config
        self._build_windows(self.clock())
        self._set_networks()

    def on_change(self, callback: ChangeCallback) -> None:
        """`callback(active)` after maintenance started (True) or ended (False); plain or coroutine
        function; its errors are logged, never raised."""
        self._callbacks.append(callback)

    # --- queries (no I/O: the API gate asks on every mutating request) ---

    def active(self) -> Period | None:
        return self._active

    def is_active(self) -> bool:
        return self._active is not None

    def allows(self, remote_ip: str | None) -> bool:
        """Whether `remote_ip` may change things now: always outside maintenance; during it, when it is in
        the period's `allowed_ips` or the config's."""
        if self._active is None:
            return True
        ip = parse_address(remote_ip)
        return ip is not None and any(ip in net for net in self._networks)

    def allowed_ips(self) -> list[str]:
        period = list(self._active.allowed_ips) if self._active else []
        return list(dict.fromkeys(period + list(self.config.allowed_ips)))

    def status(self) -> dict[str, Any]:
        now = self.clock()
        period = self._active
        remaining = None if period is None or period.ends_at is None else max(period.ends_at - now, 0.0)
        return {
            "maintenance_mode": period is not None,
            "maintenance_id": period.id if period else None,
            "reason": period.reason if period else None,
            "source": period.source if period else None,
            "enabled_at": _iso(period.started_at) if period else None,
            "enabled_by": period.started_by if period else None,
            "estimated_completion": _iso(period.ends_at) if period else None,
            "time_remaining": remaining_text(remaining) if remaining is not None else None,
            "time_remaining_seconds": round(remaining, 3) if remaining is not None else None,
            "allowed_ips": self.allowed_ips() if period else list(self.config.allowed_ips),
            "auto_disable": period.auto_disable if period else None,
            "notification_message": period.notification_message if period else None,
            "windows": [
                {"name": w.config.name, "cron": w.config.cron, "duration_seconds": w.config.duration,
                 "reason": w.config.reason, "next_start": _iso(self._next_future_start(w, now))}
                for w in self._windows.values()
            ],
        }

    def retry_after(self) -> int | None:
        """Seconds until the active period is expected to end (at least 1), for `Retry-After`."""
        if self._active is None or self._active.ends_at is None:
            return None
        return max(math.ceil(self._active.ends_at - self.clock()), 1)

    # --- changes ---

    async def enable(
        self, reason: str, estimated_duration_minutes: float | None, allowed_ips: Sequence[str],
        notification_message: str, auto_disable: bool, actor: str | None, remote: str | None,
        source: str = "api",
    ) -> Period:
        """Start a period. ValueError (400) for bad input; MaintenanceActive (409) while one is on."""
        reason = reason.strip()
        if not reason:
            raise ValueError("reason is required")
        if estimated_duration_minutes is not None and not (0 < estimated_duration_minutes <= MAX_MINUTES):
            raise ValueError(f"estimated_duration must be more than 0 and at most {MAX_MINUTES:.0f} minutes")
        if auto_disable and estimated_duration_minutes is None:
            raise ValueError("auto_disable needs estimated_duration (minutes): it ends the period then")
        ips = [str(net) if net.prefixlen != net.max_prefixlen else str(net.network_address)
               for net in parse_networks(allowed_ips)]
        async with self._lock:
            if self._active is not None:
                raise MaintenanceActive(f"maintenance {self._active.id} is already on ({self._active.reason});"
                                        " disable it first", self._active)
            now = self.clock()
            ends_at = now + estimated_duration_minutes * 60 if estimated_duration_minutes is not None else None
            period = await self._begin(Period(
                id=period_id(now), source=source, reason=reason, started_at=now, ends_at=ends_at,
                allowed_ips=ips, notification_message=notification_message, auto_disable=auto_disable,
                started_by=actor,
            ), actor, remote)
        await run_callbacks(self._callbacks, log, "maintenance_callback_failed", True)
        return period

    async def disable(self, maintenance_id: str | None, completion_notes: str, actor: str | None,
                      remote: str | None) -> Period:
        """End the active period (it must be `maintenance_id` when given). MaintenanceNotActive (409) when
        none is on or the named one already ended; MaintenanceNotFound (404) for an unknown id."""
        async with self._lock:
            active = self._active
            if maintenance_id is not None and (active is None or active.id != maintenance_id):
                known = await rows.get(self.store, maintenance_id)
                if known is None:
                    raise MaintenanceNotFound(f"no maintenance period with id {maintenance_id!r}")
                raise MaintenanceNotActive(f"maintenance {maintenance_id} already ended at {_iso(known.ended_at)}"
                                           if known.ended_at is not None else
                                           f"maintenance {maintenance_id} is not the active period", known)
            if active is None:
                raise MaintenanceNotActive("maintenance mode is not on")
            ended = await self._end(active, self.clock(), actor, remote, completion_notes)
        await run_callbacks(self._callbacks, log, "maintenance_callback_failed", False)
        return ended

    async def tick(self) -> None:
        """The scheduler's job: end a period whose auto-disable end came, enter windows that start."""
        changes: list[bool] = []
        async with self._lock:
            now = self.clock()
            period = self._active
            if period is not None and period.auto_disable and period.ends_at is not None and now >= period.ends_at:
                await self._end(period, period.ends_at, AUTO_END, None, "", late=now - period.ends_at)
                changes.append(False)
            for window in self._windows.values():
                if window.next_start is None or window.next_start > now:
                    continue
                start = window.schedule.latest(now, now - window.next_start + 1) or window.next_start
                window.next_start = window.schedule.after(now)
                end = start + window.config.duration
                if now < end and await self._enter_window(window.config, start, end):
                    changes.append(True)
        for active in changes:
            await run_callbacks(self._callbacks, log, "maintenance_callback_failed", active)

    # --- internals ---

    async def _enter_window(self, window: MaintenanceWindowConfig, start: float, end: float) -> bool:
        source = f"window:{window.name}"
        active = self._active
        if active is not None:
            if active.ends_at is not None and active.ends_at < end:
                self._active = replace(active, ends_at=end)
                await rows.set_end(self.store, active.id, end)
                details = {"id": active.id, "window": window.name, "estimated_completion": _iso(end),
                           "was": _iso(active.ends_at)}
                await self.audit.record("maintenance_extended", target=f"maintenance:{active.id}",
                                        outcome="success", details=details)
                self.bus.publish("maintenance_extended", **details)
                log.info("maintenance_extended", **details)
            return False
        if await rows.occurrence_handled(self.store, source, start):
            return False
        await self._begin(Period(
            id=period_id(start), source=source, reason=window.reason, started_at=start, ends_at=end,
            allowed_ips=list(window.allowed_ips), notification_message=window.notification_message,
            auto_disable=True,
        ), None, None)
        return True

    async def _begin(self, period: Period, actor: str | None, remote: str | None) -> Period:
        stored = await rows.insert(self.store, period)
        self._active = stored
        self._set_networks()
        view = self.status()
        details = {k: view[k] for k in ("maintenance_id", "reason", "source", "enabled_at", "estimated_completion",
                                        "allowed_ips", "auto_disable", "notification_message")}
        await self.audit.record("maintenance_started", actor=actor, remote=remote,
                                target=f"maintenance:{stored.id}", outcome="success", details=details)
        self.bus.publish("maintenance_started", by=actor, **details)
        log.warning("maintenance_started", by=actor, **details)
        return stored

    async def _end(self, period: Period, ended_at: float, ended_by: str | None, remote: str | None, notes: str,
                   late: float = 0.0) -> Period:
        await rows.end(self.store, period.id, ended_at, ended_by)
        self._active = None
        self._set_networks()
        ended = replace(period, ended_at=ended_at, ended_by=ended_by)
        details = {
            "maintenance_id": period.id, "reason": period.reason, "source": period.source,
            "enabled_at": _iso(period.started_at), "disabled_at": _iso(ended_at),
            "duration_seconds": round(ended_at - period.started_at, 3),
            "how": "auto_disable" if ended_by == AUTO_END else "disabled", "completion_notes": notes,
        }
        actor = None if ended_by == AUTO_END else ended_by
        await self.audit.record("maintenance_ended", actor=actor, remote=remote, target=f"maintenance:{period.id}",
                                outcome="success", details=details)
        self.bus.publish("maintenance_ended", by=actor, **details)
        log.warning("maintenance_ended", by=actor, late_seconds=round(late, 3) if late > 1 else None, **details)
        return ended

    def _set_networks(self) -> None:
        self._networks = tuple(parse_networks(self.allowed_ips()))

    def _build_windows(self, now: float) -> None:
        windows: dict[str, _Window] = {}
        for cfg in self.config.windows:
            schedule = CronSchedule(cfg.cron, self.tz)
            current = schedule.latest(now, cfg.duration)
            in_progress = current is not None and now < current + cfg.duration
            windows[cfg.name] = _Window(cfg, schedule, current if in_progress else schedule.after(now))
        self._windows = windows

    def _next_future_start(self, window: _Window, now: float) -> float | None:
        if window.next_start is not None and window.next_start > now:
            return window.next_start
        return window.schedule.after(now)
