"""Configuration: the one schema, YAML loading with file:line errors, secrets, reload, versions.

Names are loaded on first use: the schema gathers every check type's settings, and check types
import small pieces of this package (durations, sections), so an eager import here would make
`import agent.checks` and `import agent.config` depend on which comes first.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ConfigError": "agent.config.errors", "ConfigIssue": "agent.config.errors",
    "LoadedConfig": "agent.config.loader", "load_config": "agent.config.loader", "Config": "agent.config.schema",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'agent.config' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
