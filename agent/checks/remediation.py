"""Remediation: what Monit does on `if failed ... then restart`, with the limits Monit lacks.

An action runs when a check has had `after` consecutive bad results (and again after each further
`after`), at most `max_attempts` times within `window`. The next trigger past that limit marks it
exhausted: Vigil stops trying, raises `vigil_check_remediation_exhausted` and says so on the bus.
Attempts and exhaustion reset only when the check has recovered (its state is OK again after
`rise` good results), not when an action merely ran, so a service that restarts and falls over
again cannot loop forever. Each attempt is recorded before it runs, so a crash of Vigil in the
middle of a restart still counts it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agent.checks.base import RemediationAction
from agent.checks.proc import run_program
from agent.systemctl import act


@dataclass
class Decision:
    index: int
    action: RemediationAction
    verdict: str  # "run", "exhausted" (limit reached now), "skip_maintenance"


def decide(actions: list[RemediationAction], record: dict[str, Any], fails: int, now: float,
           maintenance: bool) -> list[Decision]:
    """Which actions are due after a bad result; updates `record` (the persisted counters)."""
    out: list[Decision] = []
    for index, action in enumerate(actions):
        if fails < action.after or (fails - action.after) % action.after != 0:
            continue
        slot = record.setdefault(str(index), {"attempts": [], "exhausted": False})
        if slot["exhausted"]:
            continue
        if maintenance and not action.during_maintenance:
            out.append(Decision(index, action, "skip_maintenance"))
            continue
        slot["attempts"] = [t for t in slot["attempts"] if t > now - action.window]
        if len(slot["attempts"]) >= action.max_attempts:
            slot["exhausted"] = True
            slot["exhausted_at"] = now
            out.append(Decision(index, action, "exhausted"))
            continue
        slot["attempts"].append(now)
        out.append(Decision(index, action, "run"))
    return out


async def execute(action: RemediationAction, systemctl: str, max_bytes: int) -> tuple[bool, str]:
    """Run the action; (succeeded, what happened in one line)."""
    if action.restart_unit is not None:
        result = await act(systemctl, "restart", action.restart_unit, action.timeout)
    else:
        result = await run_program(list(action.exec or []), action.timeout, max_bytes)
    if result.error:
        return False, result.error
    if result.timed_out:
        return False, f"killed after {action.timeout:g}s"
    output = (result.stdout.strip() or result.stderr.strip()).splitlines()
    first = output[0][:200] if output else ""
    if result.returncode != 0:
        return False, f"exit status {result.returncode}" + (f": {first}" if first else "")
    return True, first or "exit status 0"


def exhausted_actions(actions: list[RemediationAction], record: dict[str, Any]) -> list[tuple[int, str]]:
    return [(i, a.kind) for i, a in enumerate(actions) if record.get(str(i), {}).get("exhausted")]


def attempts_in_window(action: RemediationAction, index: int, record: dict[str, Any], now: float) -> int:
    return sum(1 for t in record.get(str(index), {}).get("attempts", []) if t > now - action.window)
