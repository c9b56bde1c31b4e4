"""Managed services: the allowlist of units an operator may start, stop and restart over the API."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from agent.config.durations import Duration
from agent.config.section import Section

UNIT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}")
SYSTEMD_UNIT = re.compile(r"[A-Za-z0-9:_.@][A-Za-z0-9:_.@\\-]*\.(service|socket|timer|target|mount|path)")


class UnitConfig(Section):
    """A systemd unit (`unit: nginx.service`) or a command Vigil supervises itself (`command: [...]`)."""

    name: str = Field(description="the name used in the API; letters, digits, `_ . @ -`")
    description: str = ""
    unit: str | None = Field(None, description="systemd unit, e.g. nginx.service")
    command: list[str] | None = Field(None, description="program and arguments Vigil runs and supervises (no shell)")
    working_dir: str | None = None
    environment: dict[str, str] = Field(default_factory=dict)
    autostart: bool = Field(True, description="supervised commands: start with Vigil")
    restart: Literal["no", "on-failure", "always"] = Field(
        "on-failure", description="supervised commands: start again after an exit"
    )
    restart_delay: Duration = Field(1.0, ge=0, description="supervised commands: wait before starting again")
    stop_timeout: Duration = Field(
        5.0, gt=0, description="SIGTERM, then SIGKILL after this long (keep Vigil's own stop within TimeoutStopSec)"
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not UNIT_NAME.fullmatch(value):
            raise ValueError(f"{value!r} is not a unit name (letters, digits, _ . @ -)")
        return value

    @field_validator("unit")
    @classmethod
    def _systemd_unit(cls, value: str | None) -> str | None:
        if value is not None and not SYSTEMD_UNIT.fullmatch(value):
            raise ValueError(f"{value!r} is not a systemd unit name (e.g. nginx.service)")
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> UnitConfig:
        if (self.unit is None) == (self.command is None):
            raise ValueError("give exactly one of unit (systemd) or command (supervised by Vigil)")
        if self.command is not None and (not self.command or not self.command[0]):
            raise ValueError("command needs at least the program to run")
        return self

    @property
    def kind(self) -> str:
        return "systemd" if self.unit is not None else "supervised"
