"""A managed systemd unit: its state from `systemctl show`, actions through `systemctl start|stop|restart`.

systemctl is run as a program (argv only, a timeout, bounded output) rather than spoken to over
D-Bus, so the same code works against any systemctl the operator points `check_runner.systemctl`
at, and polkit decides what the vigil user may do exactly as it does for an operator's shell.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import Any

from agent.checks.proc import ProcResult, run_program
from agent.units.config import UnitConfig

PROPERTIES = (
    "ActiveState,SubState,NRestarts,MainPID,ActiveEnterTimestamp,MemoryCurrent,LoadState,Description,ExecMainStatus"
)
SHOW_TIMEOUT = 10.0
# systemctl start/restart waits for the job, which systemd itself cuts at TimeoutStartSec (90 s by default).
ACTION_TIMEOUT = 100.0
_UINT64_MAX = 2**64 - 1
# What a systemctl without `--timestamp=unix` (before systemd 248) says about the option.
_NO_UNIX_TIMESTAMP = re.compile(r"timestamp|unrecognized option|invalid value|unknown option", re.IGNORECASE)
# The default format: "Thu 2024-01-04 10:00:00 UTC" (weekday and zone optional, the zone local).
_DEFAULT_TIMESTAMP = re.compile(r"(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2})(?:\.\d+)?(?: (\S+))?$")

_STATUS_OF = {
    "active": "running",
    "reloading": "running",
    "deactivating": "running",  # the process still runs until systemd has stopped it
    "activating": "starting",
    "inactive": "stopped",
    "failed": "failed",
}


def parse_show(text: str) -> dict[str, str]:
    props: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            props[key.strip()] = value.strip()
    return props


def parse_timestamp(value: str) -> float | None:
    """Unix time from `@1700000000` (--timestamp=unix) or the default `Thu 2024-01-04 10:00:00 CET`.

    The default format is in the host's local zone (systemctl and Vigil share it), so a naive
    time is read as local unless it says UTC."""
    value = value.strip()
    if not value or value in ("n/a", "0"):
        return None
    if value.startswith("@"):
        try:
            ts = float(value[1:])
        except ValueError:
            return None
        return ts if ts > 0 else None
    match = _DEFAULT_TIMESTAMP.search(value)
    if match is None:
        return None
    dt = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S")
    if match.group(2) in ("UTC", "GMT", "Z"):
        return dt.replace(tzinfo=UTC).timestamp()
    return dt.timestamp()


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def first_line(result: ProcResult) -> str:
    text = (result.stderr.strip() or result.stdout.strip()).splitlines()
    return text[0][:500] if text else ""


class SystemctlRunner:
    """Runs systemctl for every systemd unit of a manager, remembering whether `--timestamp=unix` works."""

    def __init__(self, systemctl: str):
        self.systemctl = systemctl
        self.unix_timestamps: bool | None = None  # None: not tried yet

    async def show(self, unit: str) -> ProcResult:
        base = [self.systemctl, "show", unit, f"--property={PROPERTIES}"]
        if self.unix_timestamps is not False:
            result = await run_program([*base, "--timestamp=unix"], SHOW_TIMEOUT)
            if result.error is not None or result.timed_out:
                return result
            if result.returncode == 0:
                self.unix_timestamps = True
                return result
            if self.unix_timestamps is True or not _NO_UNIX_TIMESTAMP.search(result.stderr):
                return result
            self.unix_timestamps = False
        return await run_program(base, SHOW_TIMEOUT)

    async def act(self, action: str, unit: str) -> ProcResult:
        return await run_program([self.systemctl, action, "--", unit], ACTION_TIMEOUT)


class SystemdUnit:
    def __init__(self, config: UnitConfig, runner: SystemctlRunner):
        assert config.unit is not None
        self.config = config
        self.runner = runner

    @property
    def unit(self) -> str:
        assert self.config.unit is not None
        return self.config.unit

    async def status(self) -> dict[str, Any]:
        """Raw state fields (see UnitManager.status for their meaning)."""
        result = await self.runner.show(self.unit)
        if result.error is not None:
            return {"status": "unknown", "error": result.error}
        if result.timed_out:
            return {"status": "unknown", "error": f"systemctl show {self.unit} timed out after {SHOW_TIMEOUT:g}s"}
        if result.returncode != 0:
            detail = first_line(result) or f"exit status {result.returncode}"
            return {"status": "unknown", "error": f"systemctl show {self.unit} failed: {detail}"}
        props = parse_show(result.stdout)
        active = props.get("ActiveState") or None
        load = props.get("LoadState") or None
        state: dict[str, Any] = {
            "status": _STATUS_OF.get(active or "", "unknown"),
            "active_state": active,
            "sub_state": props.get("SubState") or None,
            "load_state": load,
            "restarts": _int(props.get("NRestarts")) or 0,
            "last_exit_code": _int(props.get("ExecMainStatus")),
            "description": props.get("Description") or None,
            "error": None,
        }
        pid = _int(props.get("MainPID"))
        state["pid"] = pid if pid else None
        memory = _int(props.get("MemoryCurrent"))
        state["memory_bytes"] = memory if memory is not None and memory != _UINT64_MAX else None
        if state["status"] == "running":
            started = parse_timestamp(props.get("ActiveEnterTimestamp", ""))
            state["started_at"] = started
            state["uptime_seconds"] = max(time.time() - started, 0.0) if started is not None else None
        if load is not None and load != "loaded":
            state["status"] = "unknown"
            state["error"] = f"unit {self.unit} is not loaded (LoadState={load})"
        return state

    async def action(self, action: str) -> tuple[bool, str]:
        result = await self.runner.act(action, self.unit)
        if result.error is not None:
            return False, result.error
        if result.timed_out:
            return False, (f"systemctl {action} {self.unit} did not finish within {ACTION_TIMEOUT:g}s; "
                           "systemd may still be working on it")
        if result.returncode != 0:
            detail = first_line(result) or f"exit status {result.returncode}"
            return False, f"systemctl {action} {self.unit} failed: {detail}"
        return True, f"systemctl {action} {self.unit} done"
