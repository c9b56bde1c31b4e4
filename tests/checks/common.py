"""Helpers the check type tests share: run a check once from its settings, read its perfdata, and
get the error a bad config file gives."""

from __future__ import annotations

from typing import Any

import pytest

import agent.config  # noqa: F401  (first: importing agent.checks before agent.config is a circular import)

# isort: split
from agent.checks.base import Check, CheckContext, CheckResult
from agent.config.errors import ConfigError
from agent.config.loader import parse_sources


async def run_check(check_cls: type[Check], settings: dict[str, Any], ctx: CheckContext | None = None) -> CheckResult:
    """Build the check from settings as a config file gives them (name "t" and the type's own
    `type` unless given), run it once and close it."""
    cfg = check_cls.Config.model_validate({"name": "t", "type": check_cls.type, **settings})
    check = check_cls(cfg, ctx or CheckContext())
    try:
        return await check.run()
    finally:
        await check.close()


def perf(result: CheckResult) -> dict[str, float]:
    """Perfdata as {label: value}."""
    return {p.label: p.value for p in result.perfdata}


def config_error(yaml_text: str, path: str = "/etc/vigil/vigil.yaml") -> str:
    """The message of the ConfigError that loading `yaml_text` as the main file `path` must raise."""
    with pytest.raises(ConfigError) as err:
        parse_sources({path: yaml_text}, path)
    return str(err.value)
