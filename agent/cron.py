"""Cron expressions with cron's own semantics, on APScheduler's triggers.

APScheduler's `from_crontab` counts days of the week from Monday (0) and requires both day fields to
match; cron counts from Sunday (0 and 7) and fires when either restricted day field matches (Vixie
cron). Maintenance windows (and later backups) are written by operators who know cron, so this
module gives them cron's meaning.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, tzinfo
from typing import Any

from apscheduler.triggers.cron import CronTrigger

_DAY_NAMES = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]


def _cron_day(text: str) -> int:
    name = text.strip().lower()
    if name in _DAY_NAMES:
        return _DAY_NAMES.index(name)
    if not name.isdigit() or int(name) > 7:
        raise ValueError(f"{text!r} is not a day of week (0-7 or sun-sat)")
    return int(name)


def cron_day_of_week(field: str) -> str:
    """Cron's day-of-week field (0 or 7 = Sunday) as APScheduler's, whose numbers start at Monday: the
    days are spelled out by name so both read the same."""
    if field == "*":
        return "*"
    days: set[int] = set()
    for item in field.split(","):
        span, slash, step_text = item.partition("/")
        step = int(step_text) if slash and step_text.isdigit() else 0 if slash else 1
        if step < 1:
            raise ValueError(f"{item!r}: the step must be a positive number")
        if span == "*":
            lo, hi = 0, 6
        elif "-" in span:
            first, last = span.split("-", 1)
            lo, hi = _cron_day(first), _cron_day(last)
        else:
            lo = _cron_day(span)
            hi = 6 if slash else lo
        if lo > hi:
            raise ValueError(f"{item!r}: the range runs backwards")
        days.update(d % 7 for d in range(lo, hi + 1, step))
    return ",".join(_DAY_NAMES[d] for d in sorted(days))


class CronSchedule:
    """Fire times of a five-field cron expression with cron's semantics (see the module's docstring)."""

    def __init__(self, expr: str, tz: tzinfo | None = None):
        minute, hour, day, month, cron_dow = expr.split()
        kwargs: dict[str, Any] = {"minute": minute, "hour": hour, "month": month, "timezone": tz}
        dow = cron_day_of_week(cron_dow)
        if day.startswith("*") or cron_dow.startswith("*"):
            self.triggers = [CronTrigger(day=day, day_of_week=dow, **kwargs)]
        else:  # both restricted: either may match (Vixie cron)
            self.triggers = [CronTrigger(day=day, **kwargs), CronTrigger(day_of_week=dow, **kwargs)]
        self.tz = self.triggers[0].timezone

    def at_or_after(self, ts: float) -> float | None:
        """The first fire time at or after `ts` (Unix seconds)."""
        moment = datetime.fromtimestamp(ts, UTC).astimezone(self.tz)
        found = [t.get_next_fire_time(None, moment) for t in self.triggers]
        times = [f.timestamp() for f in found if f is not None]
        return min(times) if times else None

    def after(self, ts: float) -> float | None:
        """The first fire time after `ts` (fire times are whole seconds)."""
        return self.at_or_after(math.floor(ts) + 1)

    def latest(self, now: float, lookback: float) -> float | None:
        """The last fire time in (now - lookback, now], looking back a little first and further only when
        needed, so a long window of a frequent cron costs a few steps, not one per fire."""
        span = min(60.0, lookback)
        while True:
            first = self.at_or_after(math.floor(now - span) + 1)
            if first is None:
                return None
            if first <= now:
                latest = first
                for _ in range(10_000):
                    following = self.after(latest)
                    if following is None or following > now:
                        break
                    latest = following
                return latest
            if span >= lookback:
                return None
            span = min(span * 4, lookback)


