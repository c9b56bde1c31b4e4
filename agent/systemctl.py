"""A small client of the systemctl program, shared by the `systemd` check type and managed units.

systemctl is run as a program (argv only, `--` before the unit name so that a unit such as
`-.mount` is never read as an option, a timeout, bounded output, through
`agent.checks.proc.run_program`) rather than spoken to over D-Bus: the same code then works
against any systemctl the operator points `check_runner.systemctl` at (tests give it a fake one),
and polkit decides what the vigil user may do exactly as it does for an operator's shell.

Timestamps are asked for as `--timestamp=unix` (`@1700000000`, exact and zone-free). A systemctl
that rejects the option ("Invalid value: unix." before systemd 251; "unrecognized option" before
247, when `--timestamp` did not exist) is remembered per program path and asked without it from
then on; it prints `Thu 2024-01-04 10:00:00 CET`, in the zone systemctl and Vigil share.
"""

from __future__ import annotations

import calendar
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from agent.checks.proc import ProcResult, run_program

# `systemctl show` prints a few short lines; anything longer is not worth keeping.
MAX_OUTPUT_BYTES = 65536
# What systemctl says when PID 1 is not systemd (containers, CI) or its bus is unreachable.
NOT_RUNNING = re.compile(r"not been booted with systemd|Failed to connect to bus|System has not been booted",
                         re.IGNORECASE)
# What a systemctl without `--timestamp=unix` says about the option.
NO_UNIX_TIMESTAMP = re.compile(r"timestamp|invalid value|unrecognized option|unknown option", re.IGNORECASE)
# The default format: weekday (optional), date and time, fraction (`--timestamp=us`), zone abbreviation.
_DEFAULT_TIMESTAMP = re.compile(r"(?:\S+ )?(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2})(\.\d+)?(?: (\S+))?")
_UTC_ZONES = ("UTC", "GMT", "Z")

_no_unix_timestamps: set[str] = set()  # systemctl paths known to reject --timestamp=unix


@dataclass
class ShowResult:
    """The properties `systemctl show` printed, or (`error` set) one line saying why there are none."""

    props: dict[str, str] = field(default_factory=dict)
    error: str | None = None


def parse_show(text: str) -> dict[str, str]:
    props: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            props[key.strip()] = value.strip()
    return props


def parse_timestamp(value: str) -> float | None:
    """Unix seconds from `@1700000000` or the default `Thu 2024-01-04 10:00:00 CET`; None when unset.

    The default format is local time unless it says UTC. Its zone abbreviation, when it is one of
    the host zone's two (standard, daylight saving), says which applied, which settles the hour
    that occurs twice when the clocks go back; any other zone is left for mktime to guess."""
    value = value.strip()
    if not value or value in ("n/a", "0", "@0"):
        return None
    if value.startswith("@"):
        try:
            ts = float(value[1:])
        except ValueError:
            return None
        return ts if ts > 0 else None
    match = _DEFAULT_TIMESTAMP.fullmatch(value)
    if match is None:
        return None
    fields = time.strptime(match.group(1), "%Y-%m-%d %H:%M:%S")
    fraction = float(match.group(2) or 0)
    zone = match.group(3)
    if zone in _UTC_ZONES:
        return calendar.timegm(fields) + fraction
    if zone in time.tzname:
        fields = time.struct_time((*fields[:8], time.tzname.index(zone)))
    return time.mktime(fields) + fraction


def first_line(result: ProcResult) -> str:
    """What systemctl said, for a message: the first line of stderr, else of stdout."""
    lines = (result.stderr.strip() or result.stdout.strip()).splitlines()
    return lines[0][:500] if lines else ""


def _rejects_unix_timestamps(result: ProcResult) -> bool:
    """A failure about the option itself, not one of systemd's (not running, no bus)."""
    if not result.returncode or NOT_RUNNING.search(result.stderr):
        return False
    return NO_UNIX_TIMESTAMP.search(result.stderr) is not None


def _shown(result: ProcResult, unit: str, timeout: float) -> ShowResult:
    if result.error is not None:
        return ShowResult(error=result.error)
    if result.timed_out:
        return ShowResult(error=f"systemctl show {unit} timed out after {timeout:g}s")
    if result.returncode != 0:
        reason = first_line(result) or f"exit status {result.returncode}"
        if NOT_RUNNING.search(result.stderr):
            return ShowResult(error=f"systemd is not running: {reason}")
        return ShowResult(error=f"systemctl show {unit} failed: {reason}")
    return ShowResult(parse_show(result.stdout))


async def show(systemctl: str, unit: str, properties: Sequence[str], timeout: float) -> ShowResult:  # noqa: ASYNC109
    """`systemctl show` of one unit, unix timestamps when this systemctl knows them."""
    argv = [systemctl, "show", f"--property={','.join(properties)}", "--no-pager"]
    if systemctl not in _no_unix_timestamps:
        result = await run_program([*argv, "--timestamp=unix", "--", unit], timeout, MAX_OUTPUT_BYTES)
        if not _rejects_unix_timestamps(result):
            return _shown(result, unit, timeout)
        _no_unix_timestamps.add(systemctl)
    return _shown(await run_program([*argv, "--", unit], timeout, MAX_OUTPUT_BYTES), unit, timeout)


async def act(systemctl: str, verb: str, unit: str, timeout: float) -> ProcResult:  # noqa: ASYNC109
    """`systemctl VERB -- UNIT` (start, stop, restart...); the caller words the outcome."""
    return await run_program([systemctl, verb, "--", unit], timeout, MAX_OUTPUT_BYTES)
