"""A managed systemd unit: its state from `systemctl show`, actions through `systemctl start|stop|restart`.

systemctl is run through `agent.systemctl`, which the `systemd` check type shares: a program rather
than D-Bus, so polkit decides what the vigil user may do exactly as it does for an operator's shell.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from agent import systemctl
from agent.units.config import UnitConfig

PROPERTIES = ("ActiveState", "SubState", "NRestarts", "MainPID", "ActiveEnterTimestamp", "MemoryCurrent", "LoadState",
              "Description", "ExecMainStatus")
SHOW_TIMEOUT = 10.0
# systemctl start/restart waits for the job, which systemd itself cuts at TimeoutStartSec (90 s by default).
ACTION_TIMEOUT = 100.0
_UINT64_MAX = 2**64 - 1

_STATUS_OF = {
    "active": "running",
    "reloading": "running",
    "deactivating": "running",  # the process still runs until systemd has stopped it
    "activating": "starting",
    "inactive": "stopped",
    "failed": "failed",
}


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


@dataclass
class SystemctlRunner:
    """The systemctl a manager's units go through; the manager swaps it when the config names another."""

    systemctl: str


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
        shown = await systemctl.show(self.runner.systemctl, self.unit, PROPERTIES, SHOW_TIMEOUT)
        if shown.error is not None:
            return {"status": "unknown", "error": shown.error}
        props = shown.props
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
            started = systemctl.parse_timestamp(props.get("ActiveEnterTimestamp", ""))
            state["started_at"] = started
            state["uptime_seconds"] = max(time.time() - started, 0.0) if started is not None else None
        if load is not None and load != "loaded":
            state["status"] = "unknown"
            state["error"] = f"unit {self.unit} is not loaded (LoadState={load})"
        return state

    async def action(self, action: str) -> tuple[bool, str]:
        result = await systemctl.act(self.runner.systemctl, action, self.unit, ACTION_TIMEOUT)
        if result.error is not None:
            return False, result.error
        if result.timed_out:
            return False, (f"systemctl {action} {self.unit} did not finish within {ACTION_TIMEOUT:g}s; "
                           "systemd may still be working on it")
        if result.returncode != 0:
            detail = systemctl.first_line(result) or f"exit status {result.returncode}"
            return False, f"systemctl {action} {self.unit} failed: {detail}"
        return True, f"systemctl {action} {self.unit} done"
