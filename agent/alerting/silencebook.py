"""The silences of this host: kept in memory for the notification path, committed to SQLite before any
change is acknowledged, with Alertmanager 0.25's API semantics.

POST creates a silence, or edits the one named by `id`: in place when Alertmanager would (`can_update`),
otherwise the old one is expired and the edit becomes a new silence with a new id, so what silenced an
alert in the past never changes afterwards. DELETE expires (the silence stays listed as expired until
retention drops it, five days after its end, as Alertmanager's default `--data.retention=120h`).

`silenced_by` runs for every alert at every notification decision: it looks only at the silences that
had not ended when the set last changed, indexed by one equality matcher each, and does no I/O.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, cast

import structlog

from agent.alerting.matchers import Matcher, Op
from agent.alerting.silences import (
    Silence,
    SilenceState,
    can_update,
    expire,
    new_silence_id,
    silence_from_request,
)
from agent.audit import Audit
from agent.events import EventBus
from agent.store import Store
from agent.store import silences as rows
from agent.store.silences import SilenceRow

log = structlog.get_logger("vigil.silences")
RETENTION = 5 * 86400.0
ChangeCallback = Callable[[], Awaitable[None] | None]

# Alertmanager's v2 body names, read as the snake_case names `silence_from_request` takes.
_CAMEL = {"startsAt": "starts_at", "endsAt": "ends_at", "createdBy": "created_by"}
# What a GET answer carries and a client may post back unchanged (Alertmanager's UI edits that way).
_READ_ONLY = {"status", "updatedAt", "updated_at", "created_at"}
_STATE_ORDER = {"active": 0, "pending": 1, "expired": 2}


class SilenceNotFound(KeyError):
    """No silence with that id (404)."""

    def __init__(self, silence_id: str):
        super().__init__(silence_id)
        self.silence_id = silence_id

    def __str__(self) -> str:
        return f"no silence with id {self.silence_id!r}"


class SilenceExpired(ValueError):
    """Expiring a silence that has already ended (Alertmanager answers an error too)."""


def request_body(body: Mapping[str, Any]) -> dict[str, Any]:
    """An API body in `silence_from_request`'s names: Alertmanager's camelCase accepted, read-only fields of
    a posted-back GET answer dropped, the same field given in both spellings refused."""
    if not isinstance(body, Mapping):
        raise ValueError("the silence must be a JSON object")
    out: dict[str, Any] = {}
    for key, value in body.items():
        if key in _READ_ONLY:
            continue
        name = _CAMEL.get(key, key)
        if name in out:
            raise ValueError(f"{name} is given twice (as {name} and {key}); give one")
        out[name] = value
    return out


def to_millis(ts: float) -> float:
    """`ts` as the API shows it (RFC 3339 with milliseconds) reads back: a silence posted back unchanged
    then has exactly the times stored, and Alertmanager's in-place edit (same start) applies."""
    text = datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")
    return datetime.fromisoformat(text).timestamp()


def matches_filter(silence: Silence, filters: Sequence[Matcher]) -> bool:
    """Alertmanager's `filter` on GET /api/v2/silences: the silence's matchers read as labels (name ->
    value), and each filter matcher must match them; an empty-value filter matches when the label is
    absent (`=`/`=~`) or present (`!=`/`!~`), as there."""
    labels = {m.name: m.value for m in silence.matchers}
    for f in filters:
        present = f.name in labels
        value = labels.get(f.name, "")
        if f.op in ("!=", "!~"):
            if f.value == "" and present:
                continue
            if not f.matches_value(value):
                return False
        else:
            if f.value == "" and not present:
                continue
            if not present or not f.matches_value(value):
                return False
    return True


def sort_key(silence: Silence, now: float) -> tuple[int, float]:
    """Alertmanager's order: active ones ending soonest, then pending ones starting soonest, then expired
    ones, most recently ended first."""
    state = silence.state(now)
    if state == "active":
        return (0, silence.ends_at)
    if state == "pending":
        return (1, silence.starts_at)
    return (2, -silence.ends_at)


def _to_row(s: Silence) -> SilenceRow:
    return SilenceRow(s.id, [(m.name, m.op, m.value) for m in s.matchers], s.starts_at, s.ends_at, s.created_by,
                      s.comment, s.updated_at)


def _from_row(r: SilenceRow) -> Silence:
    # The table has no created_at: the last change stands in for it after a restart.
    return Silence(id=r.id, matchers=tuple(Matcher(n, cast(Op, op), v) for n, op, v in r.matchers),
                   starts_at=r.starts_at, ends_at=r.ends_at, created_by=r.created_by, comment=r.comment,
                   created_at=r.updated_at, updated_at=r.updated_at)


class SilenceBook:
    def __init__(self, store: Store, bus: EventBus, audit: Audit, clock: Callable[[], float] = time.time):
        self.store = store
        self.bus = bus
        self.audit = audit
        self.clock = clock
        self._silences: dict[str, Silence] = {}
        self._live: tuple[Silence, ...] = ()
        self._by_label: dict[str, dict[str, list[Silence]]] = {}
        self._scan: tuple[Silence, ...] = ()
        self._next_transition = float("inf")
        self._callbacks: list[ChangeCallback] = []
        self._lock = asyncio.Lock()

    async def load(self) -> None:
        loaded: dict[str, Silence] = {}
        for row in await rows.load(self.store):
            try:
                loaded[row.id] = _from_row(row)
            except ValueError as exc:  # written by a newer or broken Vigil: keep the rest working
                log.error("silence_unreadable", id=row.id, error=str(exc))
        self._silences = loaded
        self._rebuild(self.clock())
        log.info("silences_loaded", total=len(loaded), live=len(self._live))

    def on_change(self, callback: ChangeCallback) -> None:
        """`callback()` after silences changed: created, edited, expired, or a pending one started or an
        active one ended with time. It may be a coroutine function; its errors are logged, never raised."""
        self._callbacks.append(callback)

    def get(self, silence_id: str) -> Silence | None:
        return self._silences.get(silence_id)

    def counts(self) -> dict[str, int]:
        now = self.clock()
        out = dict.fromkeys(_STATE_ORDER, 0)
        for s in self._silences.values():
            out[s.state(now)] += 1
        return out

    def silenced_by(self, labels: Mapping[str, str], now: float) -> list[str]:
        """Ids (sorted) of the silences active at `now` whose matchers all match `labels`."""
        found = [s.id for s in self._scan if s.starts_at <= now < s.ends_at and s.matches(labels)]
        for name, buckets in self._by_label.items():
            bucket = buckets.get(labels.get(name, ""))
            if bucket:
                found.extend(s.id for s in bucket if s.starts_at <= now < s.ends_at and s.matches(labels))
        if len(found) > 1:
            found.sort()
        return found

    async def create_or_update(self, body: Mapping[str, Any], actor: str | None, remote: str | None) -> Silence:
        """POST /silences. ValueError (400) for bad input, SilenceNotFound (404) for an `id` not known.
        Returns the silence as stored: the same id when edited in place, a new one otherwise."""
        data = request_body(body)
        async with self._lock:
            now = self.clock()
            given = data.get("id")
            prev = self._silences.get(given) if isinstance(given, str) and given else None
            if isinstance(given, str) and given and prev is None:
                raise SilenceNotFound(given)
            candidate = silence_from_request(data, now, created_at=prev.created_at if prev else None)
            candidate = replace(candidate, starts_at=to_millis(candidate.starts_at),
                                ends_at=to_millis(candidate.ends_at))
            replaced: Silence | None = None
            if prev is not None and can_update(prev, candidate, now):
                stored, kind = candidate, "updated"
                to_save = [stored]
            else:
                stored = replace(candidate, id=new_silence_id(), starts_at=max(candidate.starts_at, to_millis(now)),
                                 created_at=now, updated_at=now)
                kind = "created"
                to_save = [stored]
                if prev is not None and prev.state(now) != "expired":
                    replaced = expire(prev, now)
                    to_save.insert(0, replaced)
            await rows.save(self.store, [_to_row(s) for s in to_save])
            for s in to_save:
                self._silences[s.id] = s
            self._rebuild(now)
        details: dict[str, Any] = {
            "matchers": [str(m) for m in stored.matchers], "starts_at": stored.starts_at, "ends_at": stored.ends_at,
            "created_by": stored.created_by, "comment": stored.comment,
        }
        if prev is not None and kind == "created":
            details["replaces"] = prev.id
        await self.audit.record(f"silence_{kind}", actor=actor, remote=remote, target=f"silence:{stored.id}",
                                outcome="success", details=details)
        self.bus.publish(f"silence_{kind}", id=stored.id, state=stored.state(now), by=actor, **details)
        log.info(f"silence_{kind}", id=stored.id, matchers=details["matchers"], ends_at=stored.ends_at,
                 replaces=details.get("replaces"))
        await self._changed()
        return stored

    async def expire(self, silence_id: str, actor: str | None, remote: str | None) -> Silence:
        """DELETE /silences/{id}: SilenceNotFound (404), SilenceExpired (409) when it has already ended."""
        async with self._lock:
            now = self.clock()
            current = self._silences.get(silence_id)
            if current is None:
                raise SilenceNotFound(silence_id)
            try:
                ended = expire(current, now)
            except ValueError as exc:
                raise SilenceExpired(str(exc)) from None
            await rows.save(self.store, [_to_row(ended)])
            self._silences[silence_id] = ended
            self._rebuild(now)
        details = {"matchers": [str(m) for m in ended.matchers], "was": current.state(now)}
        await self.audit.record("silence_expired", actor=actor, remote=remote, target=f"silence:{silence_id}",
                                outcome="success", details=details)
        self.bus.publish("silence_expired", id=silence_id, by=actor, **details)
        log.info("silence_expired", id=silence_id, was=details["was"])
        await self._changed()
        return ended

    async def tick(self) -> None:
        """A scheduler job: when a pending silence started or an active one ended since the last change,
        tell the listeners (held alerts may now be notified) and forget ended silences in `silenced_by`."""
        now = self.clock()
        if now < self._next_transition:
            return
        self._rebuild(now)
        await self._changed()

    async def prune(self, now: float | None = None) -> int:
        """Drop silences that ended more than five days ago (the store first, then memory)."""
        now = self.clock() if now is None else now
        async with self._lock:
            dropped = await rows.delete_expired(self.store, now - RETENTION)
            for silence_id in dropped:
                self._silences.pop(silence_id, None)
            if dropped:
                self._rebuild(now)
        if dropped:
            log.info("silences_pruned", count=len(dropped))
        return len(dropped)

    def _rebuild(self, now: float) -> None:
        live = [s for s in self._silences.values() if s.ends_at > now]
        self._live = tuple(live)
        # Most silences have an equality matcher (alertname="X"): filed under one, a silence is only looked at
        # for alerts carrying that value, so the cost per alert hardly grows with the number of silences.
        by_label: dict[str, dict[str, list[Silence]]] = {}
        scan: list[Silence] = []
        for silence in live:
            key = next((m for m in silence.matchers if m.op == "="), None)
            if key is None:
                scan.append(silence)
            else:
                by_label.setdefault(key.name, {}).setdefault(key.value, []).append(silence)
        self._by_label = by_label
        self._scan = tuple(scan)
        upcoming = [s.starts_at for s in live if s.starts_at > now] + [s.ends_at for s in live]
        self._next_transition = min(upcoming, default=float("inf"))

    async def _changed(self) -> None:
        await run_callbacks(self._callbacks, log, "silence_callback_failed")

    # Last in the class: within the class body, the name `list` means this method from here on.
    def list(self, state: SilenceState | None = None, matchers: Sequence[Matcher] | None = None) -> list[Silence]:
        now = self.clock()
        found = [s for s in self._silences.values()
                 if (state is None or s.state(now) == state) and (not matchers or matches_filter(s, matchers))]
        return sorted(found, key=lambda s: (*sort_key(s, now), s.id))


async def run_callbacks(callbacks: Iterable[Callable[..., Any]], logger: Any, event: str, *args: Any) -> None:
    """Call each listener (plain or coroutine function); a failing one is logged and the others still run."""
    for callback in list(callbacks):
        try:
            result = callback(*args)
            if inspect.isawaitable(result):
                await result
        except Exception:
            logger.exception(event)
