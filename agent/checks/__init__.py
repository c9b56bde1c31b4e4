"""Check types. Importing this package registers all of them (see agent.checks.base)."""

from agent.checks import (  # noqa: F401  (imported for their @register side effect)
    certificate,
    command,
    dns,
    file,
    heartbeat,
    http,
    log,
    process,
    systemd,
    tcp,
)
from agent.checks.base import REGISTRY, Check, CheckConfig, CheckContext, CheckResult, Perfdata, Status

__all__ = ["REGISTRY", "Check", "CheckConfig", "CheckContext", "CheckResult", "Perfdata", "Status"]
