"""`systemd`: a unit's ActiveState, SubState and restart count, from `systemctl show`.

systemctl is run as a program (the `check_runner.systemctl` path) rather than spoken to over
D-Bus: the same code then works against any systemctl, and a test can give it a fake one.
Timestamps are asked for as `--timestamp=unix` (`@1700000000`, exact and zone-free) when
systemctl knows the option; older ones print `Mon 2026-11-23 10:00:00 CET` in the host's zone,
which is read as local time unless it says UTC. A systemctl that rejects the option is remembered
(per program path) and asked without it from then on.

What is bad, when the unit is expected active: not found, masked or broken unit files, `failed`
and `inactive` are CRITICAL; `activating`, `reloading` and `deactivating` are transitions,
WARNING. With `expect_active: false` the unit must not run: inactive is OK, anything running is
CRITICAL. `NRestarts` (automatic restarts by `Restart=`, services only) above `max_restarts` is
a WARNING: the service runs, but keeps dying.
"""

from __future__ import annotations

import calendar
import re
import time
from typing import Any, Literal

from pydantic import Field, field_validator

from agent.checks.base import Check, CheckConfig, CheckResult, Perfdata, Status, register, worst
from agent.checks.perfdata import human_age
from agent.checks.proc import ProcResult, run_program

PROPERTIES = ("LoadState", "ActiveState", "SubState", "NRestarts", "MainPID", "ActiveEnterTimestamp")
UNIT_TYPES = ("service", "socket", "device", "mount", "automount", "swap", "target", "path", "timer", "slice",
              "scope")
UNIT_NAME = re.compile(r"[A-Za-z0-9:_.\\@-]{1,255}")
# What systemctl says when PID 1 is not systemd (containers, this test machine) or its bus is unreachable.
NOT_RUNNING = re.compile(r"not been booted with systemd|Failed to connect to bus|System has not been booted",
                         re.IGNORECASE)
# What a systemctl without `--timestamp=unix` says: "Invalid value: unix." (247-250) or, before
# --timestamp existed (< 247), "unrecognized option '--timestamp=unix'".
NO_UNIX_TIMESTAMP = re.compile(r"timestamp|Invalid value: unix|unrecognized option", re.IGNORECASE)
_PRETTY = re.compile(r"(?:[A-Za-z]{3} )?(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2})(\.\d+)?(?: (\S+))?")
_RUNNING_STATES = {"active", "activating", "reloading", "deactivating"}

_no_unix_timestamps: set[str] = set()  # systemctl paths known to reject --timestamp=unix


def parse_timestamp(value: str) -> float | None:
    """Unix seconds from systemctl's `@1700000000` or `Mon 2026-11-23 10:00:00 UTC`; None when unset."""
    value = value.strip()
    if not value or value in ("n/a", "0", "@0"):
        return None
    if value.startswith("@"):
        try:
            ts = float(value[1:])
        except ValueError:
            return None
        return ts if ts > 0 else None
    match = _PRETTY.fullmatch(value)
    if match is None:
        return None
    fields = time.strptime(match.group(1), "%Y-%m-%d %H:%M:%S")
    fraction = float(match.group(2) or 0)
    zone = match.group(3)
    if zone in ("UTC", "GMT"):
        return calendar.timegm(fields) + fraction
    if zone in time.tzname:  # the zone's abbreviation says whether daylight saving time applied
        fields = time.struct_time((*fields[:8], time.tzname.index(zone)))
    return time.mktime(fields) + fraction


def parse_show(text: str) -> dict[str, str]:
    props: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            props[key.strip()] = value.strip()
    return props


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None


class SystemdConfig(CheckConfig):
    type: Literal["systemd"]
    unit: str = Field(description="unit name, e.g. nginx.service (a name without a type means .service)")
    expect_active: bool = Field(True, description="false: the unit must not be running")
    max_restarts: int | None = Field(None, ge=0, description="more automatic restarts (NRestarts) is WARNING")

    @field_validator("unit")
    @classmethod
    def _unit(cls, value: str) -> str:
        if not UNIT_NAME.fullmatch(value):
            raise ValueError(f"{value!r} is not a systemd unit name (letters, digits, : _ . \\ @ -)")
        if value.rpartition(".")[2] not in UNIT_TYPES:
            value += ".service"
        return value


def _first_line(result: ProcResult) -> str:
    lines = (result.stderr.strip() or result.stdout.strip()).splitlines()
    return lines[0][:500] if lines else ""


@register
class SystemdCheck(Check):
    type = "systemd"
    Config = SystemdConfig
    timeout_status = Status.UNKNOWN  # a systemctl that hangs is a D-Bus problem, not the unit's

    def _timeout(self) -> float:
        return self.config.timeout * 0.9

    async def _show(self, unit: str) -> ProcResult:
        systemctl = self.ctx.systemctl
        argv = [systemctl, "show", f"--property={','.join(PROPERTIES)}", "--no-pager"]
        if systemctl not in _no_unix_timestamps:
            result = await run_program([*argv, "--timestamp=unix", "--", unit], self._timeout(),
                                       self.ctx.max_output_bytes)
            if result.returncode == 0 or result.error is not None or result.timed_out:
                return result
            if NOT_RUNNING.search(result.stderr) or not NO_UNIX_TIMESTAMP.search(result.stderr):
                return result
            _no_unix_timestamps.add(systemctl)
        return await run_program([*argv, "--", unit], self._timeout(), self.ctx.max_output_bytes)

    async def run(self) -> CheckResult:
        cfg = self.config
        assert isinstance(cfg, SystemdConfig)
        unit = cfg.unit
        result = await self._show(unit)
        if result.error is not None:
            return CheckResult(Status.UNKNOWN, result.error)
        if result.timed_out:
            return CheckResult(Status.UNKNOWN, f"systemctl show {unit} timed out after {self._timeout():g}s")
        if result.returncode != 0:
            reason = _first_line(result) or f"exit status {result.returncode}"
            if NOT_RUNNING.search(result.stderr):
                return CheckResult(Status.UNKNOWN, f"systemd is not running: {reason}")
            return CheckResult(Status.UNKNOWN, f"systemctl show {unit} failed: {reason}")
        props = parse_show(result.stdout)
        return self._judge(cfg, props)

    def _judge(self, cfg: SystemdConfig, props: dict[str, str]) -> CheckResult:
        unit = cfg.unit
        load = props.get("LoadState", "")
        active = props.get("ActiveState", "")
        sub = props.get("SubState", "")
        restarts = _int(props.get("NRestarts"))
        pid = _int(props.get("MainPID"))
        since = parse_timestamp(props.get("ActiveEnterTimestamp", ""))
        details: dict[str, Any] = {"load_state": load, "active_state": active, "sub_state": sub,
                                   "restarts": restarts, "main_pid": pid or None, "active_since": since}
        perf: list[Perfdata] = []
        if restarts is not None:
            perf.append(Perfdata("restarts", float(restarts), "c", min=0.0))
        now = self.ctx.now() if self.ctx.now is not None else time.time()
        if active in ("active", "reloading") and since is not None:
            perf.append(Perfdata("uptime", max(now - since, 0.0), "s", min=0.0))
        if not load or not active:
            return CheckResult(Status.UNKNOWN, f"systemctl show {unit} gave no LoadState/ActiveState", perf, details)
        if load == "not-found":
            return CheckResult(Status.CRITICAL, f"unit {unit} not found", perf, details)
        state = f"{active} ({sub})" if sub else active
        if load != "loaded" and (cfg.expect_active or active in _RUNNING_STATES):
            what = "is masked" if load == "masked" else f"cannot be loaded (LoadState={load})"
            return CheckResult(Status.CRITICAL, f"unit {unit} {what}, {state}", perf, details)
        status, expected = _judge_state(active, cfg.expect_active)
        message = f"{unit} is {state}" + (f", expected {expected}" if expected else "")
        if active in ("active", "reloading") and since is not None:
            message += f" for {human_age(max(now - since, 0.0))}"
        restart_status = Status.OK
        if cfg.max_restarts is not None and restarts is not None and restarts > cfg.max_restarts:
            restart_status = Status.WARNING
            message += f", restarted {restarts} times (max {cfg.max_restarts})"
        elif restarts:
            message += f", {restarts} restart" + ("s" if restarts != 1 else "")
        return CheckResult(worst(status, restart_status), message, perf, details)


def _judge_state(active: str, expect_active: bool) -> tuple[Status, str]:
    """Status for an ActiveState, and what was expected instead when that is the problem."""
    if expect_active:
        if active == "active":
            return Status.OK, ""
        if active in ("inactive", "failed"):
            return Status.CRITICAL, "active"
        return Status.WARNING, ""  # activating, reloading, deactivating, or a state newer than this code
    if active == "inactive":
        return Status.OK, ""
    if active in _RUNNING_STATES - {"deactivating"}:
        return Status.CRITICAL, "inactive"
    if active == "failed":
        return Status.CRITICAL, ""
    return Status.WARNING, ""
