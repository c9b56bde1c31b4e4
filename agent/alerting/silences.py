"""Silences with Alertmanager's semantics: a set of label matchers and a time window during which matching
alerts are still evaluated and shown but not notified.

The checks are Alertmanager's, in its two layers. `Silence` itself holds what `silence.go`'s
validateSilence requires of any stored silence (an id; at least one matcher; valid label names; not every
matcher matching the empty string, where `!=`/`!~` never count as matching it; ends_at not before
starts_at), so an expired-while-pending silence (both times set to the moment of expiry) stays valid.
`silence_from_request` adds what the v2 API requires of a new or edited one: `created_by` and `comment`
present (as strings; Alertmanager accepts them empty), the start strictly before the end, the end not in
the past.

A silence is pending before `starts_at`, active from `starts_at` up to (not including) `ends_at`, and
expired from `ends_at` on, as Alertmanager's CalcSilenceState. Times are Unix seconds (float).
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

from agent.alerting.matchers import LABEL_NAME_RE, Matcher, parse_matchers, valid_utf8

SilenceState = Literal["pending", "active", "expired"]


@dataclass(frozen=True)
class Silence:
    id: str
    matchers: tuple[Matcher, ...]
    starts_at: float
    ends_at: float
    created_by: str = ""
    comment: str = ""
    created_at: float = 0.0
    updated_at: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "matchers", tuple(self.matchers))
        validate_silence(self)

    def state(self, now: float) -> SilenceState:
        if now < self.starts_at:
            return "pending"
        if now < self.ends_at:
            return "active"
        return "expired"

    def is_active(self, now: float) -> bool:
        return self.starts_at <= now < self.ends_at

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(m.matches(labels) for m in self.matchers)

    def to_dict(self, now: float) -> dict[str, Any]:
        """The API's shape: matchers as the strings `parse_matcher` reads back, times as RFC 3339 UTC."""
        return {
            "id": self.id,
            "matchers": [str(m) for m in self.matchers],
            "starts_at": _iso(self.starts_at),
            "ends_at": _iso(self.ends_at),
            "created_by": self.created_by,
            "comment": self.comment,
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
            "status": {"state": self.state(now)},
        }


def validate_silence(silence: Silence) -> None:
    """Alertmanager's validateSilence; ValueError with its wording."""
    if not silence.id:
        raise ValueError("ID missing")
    if not silence.matchers:
        raise ValueError("at least one matcher required")
    for i, m in enumerate(silence.matchers):
        if not LABEL_NAME_RE.match(m.name):
            raise ValueError(f"invalid label matcher {i}: invalid label name {json.dumps(m.name)}")
        if not valid_utf8(m.value):
            raise ValueError(f"invalid label matcher {i}: invalid label value {json.dumps(m.value)}")
    if all(m.matches_empty() for m in silence.matchers):
        raise ValueError("at least one matcher must not match the empty string")
    for what, value in (("start", silence.starts_at), ("end", silence.ends_at)):
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"invalid {what} timestamp {value!r}")
    if silence.ends_at < silence.starts_at:
        raise ValueError("end time must not be before start time")


def silenced_by(labels: Mapping[str, str], silences: Iterable[Silence], now: float) -> list[str]:
    """Ids (sorted, as Alertmanager reports them) of the silences active at `now` whose matchers all match."""
    return sorted(s.id for s in silences if s.is_active(now) and s.matches(labels))


def expire(silence: Silence, now: float) -> Silence:
    """Alertmanager's expire (what DELETE does): an active silence ends now; a pending one starts and ends
    now, so it never takes effect; an expired one is an error."""
    state = silence.state(now)
    if state == "expired":
        raise ValueError(f"silence {silence.id} already expired")
    starts_at = now if state == "pending" else silence.starts_at
    return replace(silence, starts_at=starts_at, ends_at=now, updated_at=now)


def can_update(old: Silence, new: Silence, now: float) -> bool:
    """Whether an edit may change the silence in place (Alertmanager's canUpdate); otherwise the old one is
    expired and the edit becomes a new silence with a new id, so history never changes under an alert.
    The same matchers are required (in any order; Alertmanager compares them in order, which only turns a
    reordered edit into a new silence); an active one may only move its end (not into the past); a pending one
    may change its window as long as it does not start in the past; an expired one cannot change."""
    if sorted(m.sort_key() for m in old.matchers) != sorted(m.sort_key() for m in new.matchers):
        return False
    state = old.state(now)
    if state == "active":
        return new.starts_at == old.starts_at and new.ends_at >= now
    if state == "pending":
        return new.starts_at >= now
    return False


def new_silence_id() -> str:
    return str(uuid.uuid4())


def silence_from_request(
    data: Mapping[str, Any], now: float, silence_id: str | None = None, created_at: float | None = None
) -> Silence:
    """A silence from an API body, checked as Alertmanager's POST /api/v2/silences does. `matchers` is a
    list of matcher strings (`severity=~"crit|warn"`), one string of several (`{a="b",c!="d"}`), or a list
    of Alertmanager's objects (`{"name", "value", "isRegex", "isEqual"}`). `starts_at` defaults to now;
    times are RFC 3339 strings or Unix seconds. An `id` in the body (or `silence_id`) names the silence an
    edit replaces; whether it may change in place is `can_update`'s call. Every problem is a ValueError
    whose text suits a 400."""
    if not isinstance(data, Mapping):
        raise ValueError("the silence must be a JSON object")
    allowed = {"id", "matchers", "starts_at", "ends_at", "created_by", "comment"}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ValueError(f"unknown field {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})")
    matchers = _request_matchers(data.get("matchers"))
    starts_at = _timestamp(data.get("starts_at"), "starts_at") if data.get("starts_at") is not None else now
    if data.get("ends_at") is None:
        raise ValueError("ends_at is required")
    ends_at = _timestamp(data["ends_at"], "ends_at")
    texts: dict[str, str] = {}
    for key in ("created_by", "comment"):
        value = data.get(key)
        if not isinstance(value, str):
            raise ValueError(f"{key} is required (a string)")
        texts[key] = value
    if starts_at >= ends_at:
        raise ValueError("start time must be before end time")
    if ends_at < now:
        raise ValueError("end time can't be in the past")
    given_id = data.get("id")
    if given_id is not None and (not isinstance(given_id, str) or not given_id):
        raise ValueError("id must be a non-empty string (the silence to update)")
    return Silence(
        id=silence_id or given_id or new_silence_id(),
        matchers=tuple(matchers),
        starts_at=starts_at,
        ends_at=ends_at,
        created_by=texts["created_by"],
        comment=texts["comment"],
        created_at=now if created_at is None else created_at,
        updated_at=now,
    )


def _request_matchers(value: Any) -> list[Matcher]:
    if isinstance(value, str):
        return parse_matchers(value)
    if not isinstance(value, list) or not value:
        raise ValueError("matchers is required: a non-empty list such as ['alertname=\"DiskFull\"']")
    out: list[Matcher] = []
    for i, item in enumerate(value):
        try:
            if isinstance(item, str):
                out.extend(parse_matchers(item))
            elif isinstance(item, Mapping):
                out.append(Matcher.from_api(item))
            else:
                raise ValueError("expected a matcher string or a {name, value, isRegex, isEqual} object")
        except ValueError as err:
            raise ValueError(f"matchers[{i}]: {err}") from None
    return out


def _timestamp(value: Any, key: str) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{key}: expected an RFC 3339 time or Unix seconds, got a boolean")
    if isinstance(value, int | float):
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"{key}: {value!r} is not a valid time")
        return float(value)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"{key}: {value!r} is not an RFC 3339 time (like 2024-05-01T12:00:00Z)") from None
        if parsed.tzinfo is None:
            raise ValueError(f"{key}: {value!r} has no time zone (add Z or an offset such as +02:00)")
        return parsed.timestamp()
    raise ValueError(f"{key}: expected an RFC 3339 time or Unix seconds")


def _iso(ts: float) -> str:
    text = datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")
