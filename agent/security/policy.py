"""The API access policy, asked by the auth middleware before and after the key lookup:

1. the address allowlist (`security.allowlist`): an address outside it is refused (403) before its key is
   even looked at, and its attempts are not counted (it cannot get in whatever it sends);
2. the lockout (`agent.security.lockouts`): a locked address is refused (429 with Retry-After, the
   status clients already back off on) before its key is looked at;
3. the maximum key age (`security.max_key_age`): a key older than that is refused like an expired one
   (401, reason `too_old`), the API key's version of the seed's password `max_age_days`.

A refused key (unknown, revoked, expired, too old) counts towards a lockout; a request without any key
does not (a browser or a probe is not guessing keys), nor does a valid key lacking a scope.

It also says which proposed settings would lock the operator out (`refusals`), so that a change that
does is refused before it is written, whichever route proposes it.
"""

from __future__ import annotations

import functools
import ipaddress
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog

from agent.audit import Audit
from agent.config.edit import REFUSALS, ProposedChange
from agent.events import EventBus
from agent.security.config import SecurityConfig
from agent.security.lockouts import Lockout, LockoutBook
from agent.store import Store
from agent.store import security as sql
from agent.store.apikeys import ApiKeyRow

log = structlog.get_logger("vigil.security")
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
COUNTED_REASONS = frozenset({"unknown", "revoked", "expired", "too_old"})
NEAR_EXPIRY = 7 * 86400.0
UNKNOWN_ADDRESS = "unknown"


def parse_address(remote: str | None) -> IpAddress | None:
    """The peer's address; an IPv4-mapped IPv6 address (a dual-stack listener) as the IPv4 one."""
    if not remote:
        return None
    try:
        ip = ipaddress.ip_address(remote.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def address_key(remote: str | None) -> str:
    """The canonical text lockouts are kept under, so `::ffff:10.0.0.1` and `10.0.0.1` are one address."""
    ip = parse_address(remote)
    return str(ip) if ip is not None else UNKNOWN_ADDRESS


@functools.lru_cache(maxsize=32)
def networks(values: tuple[str, ...]) -> tuple[IpNetwork, ...]:
    """Parsed once per list, not on every request."""
    return tuple(ipaddress.ip_network(v, strict=False) for v in values)


def in_networks(remote: str | None, values: list[str]) -> bool:
    ip = parse_address(remote)
    return ip is not None and any(ip.version == net.version and ip in net for net in networks(tuple(values)))


def allowed(remote: str | None, allowlist: list[str]) -> bool:
    """Empty allowlist: every address."""
    return not allowlist or in_networks(remote, allowlist)


@dataclass(frozen=True)
class Refusal:
    """An address refused before its key is looked at."""

    status: int
    reason: str  # address_not_allowed, locked_out
    message: str
    details: dict[str, Any] = field(default_factory=dict)
    retry_after: int | None = None


@dataclass(frozen=True)
class KeyTooOld:
    """A key refused for its age; shaped like agent.auth.keys.AuthFailure (reason, message)."""

    key_id: str
    age: float
    max_age: float
    reason: str = "too_old"

    @property
    def message(self) -> str:
        return (f"API key is older than security.max_key_age ({_days(self.max_age)}); "
                "an administrator must create a new one")


def _days(seconds: float) -> str:
    if seconds >= 86400 and seconds % 86400 == 0:
        return f"{int(seconds // 86400)}d"
    return f"{seconds:g}s"


def key_deadline(row: ApiKeyRow, settings: SecurityConfig) -> tuple[float, str] | None:
    """When the key stops working, and why (`expires_at` or `max_key_age`); None: never."""
    ends: list[tuple[float, str]] = []
    if row.expires_at is not None:
        ends.append((row.expires_at, "expires_at"))
    if settings.max_key_age is not None:
        ends.append((row.created_at + settings.max_key_age, "max_key_age"))
    return min(ends) if ends else None


def usable(row: ApiKeyRow, settings: SecurityConfig, now: float) -> bool:
    if row.revoked_at is not None:
        return False
    deadline = key_deadline(row, settings)
    return deadline is None or deadline[0] > now


def refusals(proposed: SecurityConfig, caller: str | None, keys: Iterable[ApiKeyRow],
             now: float | None = None) -> list[str]:
    """Why `proposed` would lock the operator out: the caller's own address outside the allowlist, or
    no admin key left that the policy accepts. Empty: nothing to refuse."""
    now = time.time() if now is None else now
    reasons = []
    if caller is not None and not allowed(caller, proposed.allowlist):
        reasons.append(f"security.allowlist does not include your address {address_key(caller)}: "
                       "the change would lock you out; add it, or make the change from an allowed address")
    admins = [k for k in keys if k.role == "admin" and k.revoked_at is None]
    if admins and not any(usable(k, proposed, now) for k in admins):
        reasons.append(f"security.max_key_age of {_days(proposed.max_key_age or 0)} would leave no usable admin "
                       "key (every admin key is older); create a new admin key first, or choose a longer age")
    return reasons


def warnings(proposed: SecurityConfig, caller_key: ApiKeyRow | None = None, now: float | None = None) -> list[str]:
    """Allowed but probably unintended: said in the answer, not refused."""
    out = []
    if proposed.allowlist and not (allowed("127.0.0.1", proposed.allowlist) or allowed("::1", proposed.allowlist)):
        out.append("the allowlist excludes loopback: the vigil CLI on this host will be refused")
    if caller_key is not None and not usable(caller_key, proposed, time.time() if now is None else now):
        out.append(f"your own key {caller_key.id} is older than the new max_key_age: it will be refused from now on")
    return out


def refuse_lockouts(change: ProposedChange) -> list[str]:
    """The lock-out check for every config change made over the API (security settings, PUT /api/v1/config,
    rollbacks): only a change of the security settings is judged, so an unrelated change is never refused
    for a state it did not make (the caller got in under the current settings)."""
    before, after = change.current.config.security, change.proposed.config.security
    if after == before:
        return []
    return refusals(after, change.remote, change.keys)


REFUSALS.append(refuse_lockouts)


class AccessPolicy:
    def __init__(self, store: Store, audit: Audit, bus: EventBus, settings: Callable[[], SecurityConfig]):
        """`settings` is read on every request, so a config reload applies at once."""
        self.settings = settings
        self.audit = audit
        self.bus = bus
        self.store = store
        self.lockouts = LockoutBook(store, settings)

    async def load(self) -> None:
        await self.lockouts.load()

    def check_address(self, remote: str | None) -> Refusal | None:
        settings = self.settings()
        address = address_key(remote)
        if not allowed(remote, settings.allowlist):
            return Refusal(403, "address_not_allowed",
                           f"address {address} is not in security.allowlist; this API refuses it",
                           {"reason": "address_not_allowed", "address": address})
        lock = self.lockouts.active(address)
        if lock is not None:
            retry = lock.retry_after()
            return Refusal(429, "locked_out",
                           f"address {address} is locked out after {lock.failures} failed authentications "
                           f"until {_iso(lock.until)}; retry in {retry}s",
                           {"reason": "locked_out", "address": address, "locked_at": _iso(lock.locked_at),
                            "until": _iso(lock.until), "failures": lock.failures, "retry_after": retry},
                           retry)
        return None

    def key_too_old(self, row: ApiKeyRow, now: float | None = None) -> KeyTooOld | None:
        max_age = self.settings().max_key_age
        if max_age is None:
            return None
        age = (time.time() if now is None else now) - row.created_at
        return KeyTooOld(row.id, age, max_age) if age > max_age else None

    async def failed(self, remote: str | None, reason: str, key_id: str | None, route: str | None) -> Lockout | None:
        """A refused key from `remote`; a request without a key is not counted."""
        if reason not in COUNTED_REASONS:
            return None
        address = address_key(remote)
        exempt = in_networks(remote, self.settings().lockout_exempt)
        lock = await self.lockouts.failed(address, reason, key_id, route, lockable=not exempt)
        if lock is not None:
            minutes = round((lock.until - lock.locked_at) / 60.0, 3)
            log.warning("address_locked", remote=address, failures=lock.failures, until=_iso(lock.until))
            self.bus.publish("address_locked", address=address, failures=lock.failures, until=_iso(lock.until))
            await self.audit.record("address_locked", remote=address, target=address, outcome="locked",
                                    details={"failures": lock.failures, "until": _iso(lock.until),
                                             "lockout_minutes": minutes, "last_reason": reason})
        return lock

    async def failures_since(self, since: float) -> dict[str, int]:
        """Failed authentications since `since`, by reason (kept a day at least)."""
        return await sql.failure_counts(self.store, since)

    async def lift(self, address: str, actor: str | None, remote: str | None) -> Lockout | None:
        lock = await self.lockouts.lift(address_key(address), actor)
        if lock is not None:
            log.info("lockout_lifted", address=lock.address, by=actor)
            self.bus.publish("lockout_lifted", address=lock.address, by=actor)
            await self.audit.record("lockout_lifted", actor=actor, remote=remote, target=lock.address,
                                    outcome="lifted", details={"until": _iso(lock.until), "failures": lock.failures})
        return lock


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
