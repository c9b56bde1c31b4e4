"""Flap protection: how results become a check's state (pure; the runner persists it).

HAProxy's rise/fall: a good check turns bad only after `fall` consecutive bad results, a bad one
recovers only after `rise` consecutive good ones. Once bad, a change of severity (warning to
critical) shows at once. The first result of a check that has no state sets it directly: there
is nothing to flap from, and an operator adding a check wants to see its truth at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.checks.base import Status

UP_STATES = frozenset({Status.OK, Status.WARNING})


@dataclass
class Transition:
    previous: Status | None
    current: Status


@dataclass
class FlapState:
    state: Status | None = None
    since: float | None = None
    fails: int = 0  # consecutive bad results
    passes: int = 0  # consecutive good results

    def advance(self, status: Status, fall: int, rise: int, now: float) -> Transition | None:
        if status is Status.OK:
            self.fails = 0
            self.passes += 1
        else:
            self.passes = 0
            self.fails += 1
        previous = self.state
        if previous is None:
            target: Status | None = status
        elif status is Status.OK:
            target = Status.OK if previous is not Status.OK and self.passes >= rise else None
        elif previous is Status.OK:
            target = status if self.fails >= fall else None
        else:
            target = status if status is not previous else None
        if target is None:
            return None
        self.state = target
        self.since = now
        return Transition(previous, target)


def is_up(state: Status | None) -> bool:
    """Up for uptime and `vigil_check_up`: OK or WARNING (degraded but working)."""
    return state in UP_STATES
