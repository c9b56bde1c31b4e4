"""Settings of rule evaluation, silences' defaults and maintenance windows (`alerting:` and `maintenance:`).

The rules themselves are Prometheus rule files named by `alerting.rule_files`; they are read and
validated with the rest of the config, so a broken rule file is rejected like a broken vigil.yaml.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re

from pydantic import Field, field_validator, model_validator

from agent.config.durations import Duration
from agent.config.section import LabelSet, Section, unique_names
from agent.cron import CronSchedule

WINDOW_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


class AlertingConfig(Section):
    rule_files: list[str] = Field(
        default_factory=lambda: ["rules.d/*.yml", "rules.d/*.yaml"],
        description="Prometheus rule files (globs relative to vigil.yaml's directory)",
    )
    managed_rule_file: str = Field(
        "rules.d/vigil-managed.yml",
        description="where rules created over the API are written (relative to vigil.yaml's directory)",
    )
    evaluation_interval: Duration = Field(30.0, gt=0, description="for groups that set no interval")
    external_labels: LabelSet = Field(
        default_factory=dict, description="added to alerts sent out; `$externalLabels` in templates"
    )
    external_url: str = Field("", description="base of generatorURL links; defaults to http://<listen>")
    resend_delay: Duration = Field(60.0, gt=0, description="firing alerts are re-sent to Alertmanager this often")
    outage_tolerance: Duration = Field(
        3600.0, gt=0, description="after a longer downtime, pending alerts start their `for` again",
    )
    for_grace_period: Duration = Field(600.0, ge=0, description="least time a restored pending alert still waits")
    query_timeout: Duration = Field(30.0, gt=0, description="one rule's query is cut after this")
    retention: Duration = Field(
        30 * 86400.0, ge=3600, description="resolved alert instances are kept this long for the API",
    )


    @model_validator(mode="after")
    def _managed_file_is_loaded(self) -> AlertingConfig:
        if not any(fnmatch.fnmatch(self.managed_rule_file, p) for p in self.rule_files):
            raise ValueError(f"managed_rule_file {self.managed_rule_file!r} is not matched by rule_files"
                             f" {self.rule_files}: rules written over the API would not be loaded")
        return self


def _check_cidr(value: str) -> str:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address or CIDR network") from None
    return value


class MaintenanceWindowConfig(Section):
    """A recurring maintenance window: entered at each `cron` time, left after `duration`."""

    name: str = Field(pattern=WINDOW_NAME.pattern)
    cron: str = Field(description="five fields: minute hour day-of-month month day-of-week (local time)")
    duration: Duration = Field(gt=0)
    reason: str = "scheduled maintenance"
    allowed_ips: list[str] = Field(default_factory=list, description="may still change things during the window")
    notification_message: str = ""

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        if len(value.split()) != 5:
            raise ValueError(f"{value!r} is not a cron expression of five fields")
        try:
            CronSchedule(value)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a valid cron expression: {exc}") from None
        return value

    @field_validator("allowed_ips")
    @classmethod
    def _ips(cls, value: list[str]) -> list[str]:
        return [_check_cidr(v) for v in value]


class MaintenanceConfig(Section):
    windows: list[MaintenanceWindowConfig] = Field(default_factory=list)
    allowed_ips: list[str] = Field(
        default_factory=list,
        description="always allowed to make changes in maintenance mode (added to each window's and request's list)",
    )

    @field_validator("allowed_ips")
    @classmethod
    def _ips(cls, value: list[str]) -> list[str]:
        return [_check_cidr(v) for v in value]

    @field_validator("windows")
    @classmethod
    def _unique(cls, windows: list[MaintenanceWindowConfig]) -> list[MaintenanceWindowConfig]:
        unique_names(windows, "window")
        return windows
