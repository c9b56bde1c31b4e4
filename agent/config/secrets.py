"""`${env:NAME}` and `${file:/path}` references, so secrets stay out of the YAML and the versions."""

from __future__ import annotations

import os
import re
from typing import Any

from agent.config.errors import ConfigIssue
from agent.config.yamlsource import Located, Path, format_path

REFERENCE = re.compile(r"\$\{([a-z]+):([^}]*)\}")
MASK = "***"


def resolve_references(doc: Located) -> tuple[Any, set[Path], list[ConfigIssue]]:
    """A copy of the data with references replaced, the paths that held them, and every failure."""
    secret_paths: set[Path] = set()
    issues: list[ConfigIssue] = []

    def value_of(kind: str, arg: str, path: Path) -> str:
        if kind == "env":
            if arg not in os.environ:
                raise LookupError(f"environment variable {arg} is not set")
            return os.environ[arg]
        if kind == "file":
            try:
                with open(arg, encoding="utf-8") as fh:
                    return fh.read().rstrip("\r\n")
            except OSError as exc:
                raise LookupError(f"cannot read secret file {arg}: {exc.strerror or exc}") from None
        raise LookupError(f"unknown reference ${{{kind}:...}} (use ${{env:NAME}} or ${{file:/path}})")

    def walk(value: Any, path: Path) -> Any:
        if isinstance(value, dict):
            return {k: walk(v, (*path, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, (*path, i)) for i, v in enumerate(value)]
        if isinstance(value, str) and "${" in value:
            def sub(match: re.Match[str]) -> str:
                return value_of(match.group(1), match.group(2), path)

            try:
                resolved = REFERENCE.sub(sub, value)
            except LookupError as exc:
                file, line = doc.where(path)
                issues.append(ConfigIssue(file or "?", line, format_path(path), str(exc)))
                return value
            if resolved != value:
                secret_paths.add(path)
            return resolved
        return value

    return walk(doc.data, ()), secret_paths, issues


def mask_paths(data: Any, paths: set[Path]) -> Any:
    """A copy with the values at `paths` (and SecretStr-looking dumps) replaced by the mask."""

    def walk(value: Any, path: Path) -> Any:
        if path in paths:
            return MASK
        if isinstance(value, dict):
            return {k: walk(v, (*path, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, (*path, i)) for i, v in enumerate(value)]
        return value

    return walk(data, ())
