"""`systemd`: a unit's ActiveState, SubState and restart count, from `systemctl show`.

systemctl (the `check_runner.systemctl` path) is run through `agent.systemctl`, which the
managed units share: see there why a program rather than D-Bus, and how timestamps are read.

What is bad, when the unit is expected active: not found, masked or broken unit files, `failed`
and `inactive` are CRITICAL; `activating`, `reloading` and `deactivating` are transitions,
WARNING. With `expect_active: false` the unit must not run: inactive is OK, anything running is
CRITICAL. `NRestarts` (automatic restarts by `Restart=`, services only) above `max_restarts` is
a WARNING: the service runs, but keeps dying.
"""

from __future__ import annotations

import re
import time
from typing import Any, Literal

from pydantic import Field, field_validator

# A module import: agent.systemctl imports agent.checks.proc, so it may still be loading while this type registers.
from agent import systemctl
from agent.checks.base import Check, CheckConfig, CheckResult, Perfdata, Status, register, worst
from agent.checks.perfdata import human_age

PROPERTIES = ("LoadState", "ActiveState", "SubState", "NRestarts", "MainPID", "ActiveEnterTimestamp")
UNIT_TYPES = ("service", "socket", "device", "mount", "automount", "swap", "target", "path", "timer", "slice",
              "scope")
UNIT_NAME = re.compile(r"[A-Za-z0-9:_.\\@-]{1,255}")
_RUNNING_STATES = {"active", "activating", "reloading", "deactivating"}


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


@register
class SystemdCheck(Check):
    type = "systemd"
    Config = SystemdConfig
    timeout_status = Status.UNKNOWN  # a systemctl that hangs is a D-Bus problem, not the unit's

    async def run(self) -> CheckResult:
        cfg = self.config
        assert isinstance(cfg, SystemdConfig)
        shown = await systemctl.show(self.ctx.systemctl, cfg.unit, PROPERTIES, cfg.timeout * 0.9)
        if shown.error is not None:
            return CheckResult(Status.UNKNOWN, shown.error)
        return self._judge(cfg, shown.props)

    def _judge(self, cfg: SystemdConfig, props: dict[str, str]) -> CheckResult:
        unit = cfg.unit
        load = props.get("LoadState", "")
        active = props.get("ActiveState", "")
        sub = props.get("SubState", "")
        restarts = _int(props.get("NRestarts"))
        pid = _int(props.get("MainPID"))
        since = systemctl.parse_timestamp(props.get("ActiveEnterTimestamp", ""))
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
