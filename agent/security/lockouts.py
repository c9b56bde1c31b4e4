"""Lockouts: after `max_failed_auth` failed authentications from one address within `failure_window`,
the address is refused for `lockout_minutes`, whatever key it sends.

The check runs on every authenticated request, so it reads memory only; every failure and every lock
is committed to SQLite as well, so a restart (or a crash) neither unlocks an address nor forgets the
failures counted so far. A lock starts the count afresh: the failures that caused it are paid for,
and when it ends the address gets `max_failed_auth` new attempts, not one. A successful
authentication neither ends a lock (it never gets that far) nor resets the count.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from agent.security.config import SecurityConfig
from agent.store import Store, StoreError
from agent.store import security as sql
from agent.store.security import FailureRow, LockoutRow

log = structlog.get_logger("vigil.security")
RETENTION = 86400.0
"""Failures are kept a day at least, for the status's 24-hour count."""
PRUNE_EVERY = 3600.0
MAX_TRACKED = 10_000
"""Addresses with failures held in memory; beyond it the ones quiet longest are forgotten first."""


@dataclass(frozen=True)
class Lockout:
    address: str
    locked_at: float
    until: float
    failures: int

    def retry_after(self, now: float | None = None) -> int:
        return max(1, math.ceil(self.until - (time.time() if now is None else now)))


class LockoutBook:
    def __init__(self, store: Store, settings: Callable[[], SecurityConfig]):
        self.store = store
        self.settings = settings
        self._failures: dict[str, deque[float]] = {}
        self._locks: dict[str, Lockout] = {}
        self._pruned_at = 0.0

    async def load(self) -> None:
        """Restore the active locks and the failures that no lock has paid for yet."""
        now = time.time()
        rows = await sql.lockouts(self.store)
        self._locks = {
            r.remote: Lockout(r.remote, r.locked_at, r.until, r.failures)
            for r in rows if r.until > now and r.lifted_at is None
        }
        paid = {r.remote: max(r.locked_at, r.lifted_at or 0.0) for r in rows}
        self._failures = {}
        window = self.settings().failure_window
        for failure in await sql.failures_since(self.store, now - window):
            if failure.ts > paid.get(failure.remote, 0.0):
                self._failures.setdefault(failure.remote, deque()).append(failure.ts)

    def active(self, address: str, now: float | None = None) -> Lockout | None:
        lock = self._locks.get(address)
        if lock is None:
            return None
        if lock.until <= (time.time() if now is None else now):
            del self._locks[address]
            return None
        return lock

    def all_active(self) -> list[Lockout]:
        now = time.time()
        return sorted((lock for lock in self._locks.values() if lock.until > now), key=lambda lock: lock.locked_at)

    def pending(self, address: str) -> int:
        """Failures from `address` counted towards its next lock."""
        window = self.settings().failure_window
        cutoff = time.time() - window
        return sum(1 for ts in self._failures.get(address, ()) if ts >= cutoff)

    async def failed(
        self, address: str, reason: str, key_id: str | None, route: str | None, lockable: bool = True,
    ) -> Lockout | None:
        """Record a failure; the lock it caused, if it did (never when not `lockable`: an exempt address).
        The counting is done before the first await, so failures arriving together are all counted."""
        now = time.time()
        settings = self.settings()
        lock = None
        if lockable:
            times = self._failures.setdefault(address, deque())
            times.append(now)
            while times and times[0] < now - settings.failure_window:
                times.popleft()
            if len(times) >= settings.max_failed_auth and self.active(address, now) is None:
                lock = Lockout(address, now, now + settings.lockout_minutes * 60.0, len(times))
                self._locks[address] = lock
                del self._failures[address]
        prune_before = None
        if now - self._pruned_at >= PRUNE_EVERY:
            self._pruned_at = now
            prune_before = now - max(RETENTION, settings.failure_window)
            self._forget(now, settings.failure_window)
        elif len(self._failures) > MAX_TRACKED:  # an attacker cycling through addresses
            self._forget(now, settings.failure_window)
        try:
            await sql.record_failure(
                self.store, FailureRow(now, address, reason, key_id, route),
                LockoutRow(address, lock.locked_at, lock.until, lock.failures) if lock else None, prune_before,
            )
        except StoreError as exc:  # the answer stays a 401; the lock holds in memory until a restart
            log.warning("auth_failure_not_stored", remote=address, error=str(exc))
        return lock

    async def lift(self, address: str, by: str | None) -> Lockout | None:
        """End the address's active lock now; the lock that was lifted, or None."""
        now = time.time()
        lock = self.active(address, now)
        lifted = await sql.lift(self.store, address, now, by)
        if lock is None and not lifted:
            return None
        self._locks.pop(address, None)
        self._failures.pop(address, None)
        return lock or Lockout(address, now, now, 0)

    def _forget(self, now: float, window: float) -> None:
        self._locks = {a: lock for a, lock in self._locks.items() if lock.until > now}
        self._failures = {a: t for a, t in self._failures.items() if t and t[-1] >= now - window}
        if len(self._failures) > MAX_TRACKED:
            newest = sorted(self._failures.items(), key=lambda item: item[1][-1])[-MAX_TRACKED:]
            self._failures = dict(newest)
