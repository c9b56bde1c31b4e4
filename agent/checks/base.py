"""What a check is: a named, typed probe whose `run()` says whether something on the host works.

As with collectors, one file per type, each registering its class under its `type` name with its
settings model next to it (`Config`, a subclass of `CheckConfig`). A check instance lives as long
as its config is unchanged: it may keep a session, a file offset or a previous checksum between
runs, and `memo` (small, JSON-serialisable) is persisted by the runner so that such state
survives a restart of Vigil.

`run()` is a coroutine; anything blocking (file hashing, psutil, reading a big file) goes to a
thread with `asyncio.to_thread`, subprocesses through `agent.checks.proc`. The runner cuts a run
at the check's `timeout` and reports it with the type's `timeout_status`.
"""

from __future__ import annotations

import enum
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import Field, field_validator, model_validator

from agent.config.durations import Duration
from agent.config.section import LabelSet, Section

CHECK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


class Status(enum.IntEnum):
    """Nagios's states and exit codes; `vigil_check_status` exports the number."""

    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Status:
        return cls[text.upper()]


@dataclass(slots=True)
class Perfdata:
    """One performance value, as in the Nagios plugin protocol (`label=value[UOM];warn;crit;min;max`).

    `warn` and `crit` are kept as written (they may be ranges such as `10:20` or `@5:9`)."""

    label: str
    value: float
    uom: str = ""
    warn: str | None = None
    crit: str | None = None
    min: float | None = None
    max: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"label": self.label, "value": self.value, "uom": self.uom, "warn": self.warn,
                "crit": self.crit, "min": self.min, "max": self.max}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Perfdata:
        return cls(data["label"], float(data["value"]), data.get("uom") or "", data.get("warn"),
                   data.get("crit"), data.get("min"), data.get("max"))


@dataclass(slots=True)
class CheckResult:
    """What one run found. `details` holds type-specific facts for the API (status code, days
    left, matched line...); numbers an operator may want to graph or alert on go in `perfdata`."""

    status: Status
    message: str
    perfdata: list[Perfdata] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


class RemediationAction(Section):
    """Monit's `if failed ... then restart`, bounded: after `after` consecutive bad results, at most
    `max_attempts` times within `window`; then Vigil stops trying and says so."""

    restart_unit: str | None = Field(None, description="systemd unit to restart (systemctl restart UNIT)")
    exec: list[str] | None = Field(None, description="command to run, as an argument list (no shell)")
    after: int = Field(3, ge=1, description="consecutive bad results before the first attempt, and between attempts")
    max_attempts: int = Field(3, ge=1, description="attempts allowed within `window`, then remediation is exhausted")
    window: Duration = Field(3600.0, gt=0)
    timeout: Duration = Field(60.0, gt=0, description="an action running longer is killed and counts as failed")
    during_maintenance: bool = Field(False, description="also act while maintenance mode is on")

    @model_validator(mode="after")
    def _one_action(self) -> RemediationAction:
        if (self.restart_unit is None) == (self.exec is None):
            raise ValueError("give exactly one of restart_unit or exec")
        if self.exec is not None and (not self.exec or not self.exec[0]):
            raise ValueError("exec needs at least the program to run")
        return self

    @property
    def kind(self) -> str:
        return "restart_unit" if self.restart_unit is not None else "exec"

    @property
    def target(self) -> str:
        return self.restart_unit if self.restart_unit is not None else " ".join(self.exec or [])


class CheckConfig(Section):
    """Settings every check has. Types subclass this with `type: Literal["..."]` and their own keys."""

    name: str = Field(description="unique; letters, digits, `_ . -`")
    type: str
    description: str = ""
    enabled: bool = True
    interval: Duration = Field(60.0, gt=0, description="time between runs")
    timeout: Duration = Field(10.0, gt=0, description="a run taking longer is cut and reported")
    fall: int = Field(2, ge=1, description="consecutive bad results before the state turns bad")
    rise: int = Field(2, ge=1, description="consecutive good results before a bad state recovers")
    labels: LabelSet = Field(default_factory=dict, description="added to the check's metrics and events")
    depends_on: list[str] = Field(
        default_factory=list, description="checks whose failure suppresses this check's alerts and incidents"
    )
    on_failure: list[RemediationAction] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not CHECK_NAME.fullmatch(value):
            raise ValueError(f"{value!r} is not a check name (letters, digits, _ . -; at most 100)")
        return value

    @field_validator("labels")
    @classmethod
    def _reserved_labels(cls, labels: dict[str, str]) -> dict[str, str]:
        for reserved in ("check", "type", "label", "unit"):
            if reserved in labels:
                raise ValueError(f"label {reserved!r} is set by Vigil itself")
        return labels

    @model_validator(mode="after")
    def _timeout_fits(self) -> CheckConfig:
        if self.timeout > self.interval:
            raise ValueError(f"timeout ({self.timeout:g}s) must not exceed interval ({self.interval:g}s)")
        return self


@dataclass
class CheckContext:
    """What the runner lends every check: limits and the shared sources some types read."""

    max_output_bytes: int = 65536
    systemctl: str = "systemctl"
    proc_path: str = "/proc"
    state_dir: str = "."
    heartbeats: Any = None  # agent.checks.heartbeats.HeartbeatBook, for the heartbeat type
    now: Callable[[], float] | None = None  # wall clock (tests and heartbeats); None: time.time


class Check(ABC):
    type: ClassVar[str]
    Config: ClassVar[type[CheckConfig]]
    timeout_status: ClassVar[Status] = Status.CRITICAL  # what "no answer in time" means for this type

    def __init__(self, config: CheckConfig, ctx: CheckContext):
        self.config = config
        self.ctx = ctx
        self.memo: dict[str, Any] = {}  # persisted by the runner; restored before the first run

    @property
    def name(self) -> str:
        return self.config.name

    @abstractmethod
    async def run(self) -> CheckResult:
        """Probe once. Raise only for Vigil's own bugs: failures of the target are results."""

    async def close(self) -> None:  # noqa: B027 (optional hook; most checks hold nothing)
        """Release sessions or files the check holds; the default holds none."""


REGISTRY: dict[str, type[Check]] = {}


def register(cls: type[Check]) -> type[Check]:
    REGISTRY[cls.type] = cls
    return cls


def os_reason(exc: OSError) -> str:
    """"Connection refused" rather than asyncio's "Connect call failed ('127.0.0.1', 80)"."""
    if exc.errno:
        return os.strerror(exc.errno)
    return exc.strerror or str(exc) or type(exc).__name__


def grade(value: float, warning: float | None, critical: float | None, *, below: bool = False) -> Status:
    """OK, WARNING or CRITICAL for a value against thresholds: bad when above them, or when
    `below` (days to expiry, free space), bad when under them. Reaching a threshold counts."""
    if below:
        if critical is not None and value <= critical:
            return Status.CRITICAL
        if warning is not None and value <= warning:
            return Status.WARNING
        return Status.OK
    if critical is not None and value >= critical:
        return Status.CRITICAL
    if warning is not None and value >= warning:
        return Status.WARNING
    return Status.OK


def worst(*statuses: Status) -> Status:
    """The most severe status, Nagios's order: CRITICAL > WARNING > UNKNOWN > OK."""
    order = {Status.OK: 0, Status.UNKNOWN: 1, Status.WARNING: 2, Status.CRITICAL: 3}
    return max(statuses, key=order.__getitem__, default=Status.OK)


def thresholds_ordered(warning: float | None, critical: float | None, what: str, *, below: bool = False) -> None:
    """Raise ValueError when a warning threshold is past its critical one (a config mistake)."""
    if warning is None or critical is None:
        return
    if below and warning < critical:
        raise ValueError(f"{what}: warning ({warning:g}) must not be below critical ({critical:g})")
    if not below and warning > critical:
        raise ValueError(f"{what}: warning ({warning:g}) must not exceed critical ({critical:g})")
