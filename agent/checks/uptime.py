"""Uptime from state changes: the share of observed time a check was up (OK or WARNING).

Time before a check's first state is not observed and does not count either way, so a check added
yesterday is not 96 % down over 30 days. Overall uptime is the share of time during which no
check was down: the union of every check's downtime against the union of their observed time.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from agent.checks.base import Status
from agent.checks.state import is_up
from agent.store.checks import TransitionRow

Interval = tuple[float, float]


@dataclass
class Timeline:
    """One check's observed and down intervals within a window, from its state changes."""

    observed: list[Interval]
    down: list[Interval]
    last_down_start: float | None  # the last time it went down (may be before the window)
    up_since: float | None  # start of the current up streak; None while down

    @classmethod
    def build(cls, transitions: Iterable[TransitionRow], start: float, end: float) -> Timeline:
        changes = sorted(transitions, key=lambda t: (t.ts, t.id or 0))
        observed: list[Interval] = []
        down: list[Interval] = []
        last_down_start: float | None = None
        up_since: float | None = None
        for i, change in enumerate(changes):
            until = changes[i + 1].ts if i + 1 < len(changes) else end
            up = is_up(Status.parse(change.to_state))
            if not up:
                last_down_start = change.ts
                up_since = None
            elif up_since is None:
                up_since = change.ts
            lo, hi = max(change.ts, start), min(until, end)
            if hi > lo:
                observed.append((lo, hi))
                if not up:
                    down.append((lo, hi))
        return cls(_union(observed), _union(down), last_down_start, up_since)

    def percent(self, start: float, end: float) -> float | None:
        seen = _length(_clip(self.observed, start, end))
        if seen <= 0:
            return None
        return round(100.0 * (1 - _length(_clip(self.down, start, end)) / seen), 4)


def overall(timelines: list[Timeline]) -> Timeline:
    observed = _union([iv for t in timelines for iv in t.observed])
    down = _union([iv for t in timelines for iv in t.down])
    starts = [t.last_down_start for t in timelines if t.last_down_start is not None]
    if any(t.up_since is None and t.observed for t in timelines):
        up_since = None
    else:
        ends = [iv[1] for iv in down]
        up_since = max(ends) if ends else min((iv[0] for iv in observed), default=None)
    return Timeline(observed, down, max(starts, default=None), up_since)


def _union(intervals: list[Interval]) -> list[Interval]:
    out: list[Interval] = []
    for lo, hi in sorted(intervals):
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def _clip(intervals: list[Interval], start: float, end: float) -> list[Interval]:
    return [(max(lo, start), min(hi, end)) for lo, hi in intervals if hi > start and lo < end]


def _length(intervals: list[Interval]) -> float:
    return sum(hi - lo for lo, hi in intervals)
