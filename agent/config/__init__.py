"""Configuration: the one schema, YAML loading with file:line errors, secrets, reload, versions."""

from agent.config.errors import ConfigError, ConfigIssue
from agent.config.loader import LoadedConfig, load_config
from agent.config.schema import Config

__all__ = ["Config", "ConfigError", "ConfigIssue", "LoadedConfig", "load_config"]
