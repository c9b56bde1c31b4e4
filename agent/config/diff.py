"""Differences between two config documents as (dotted path, old, new), secrets masked."""

from __future__ import annotations

from typing import Any

from agent.config.secrets import MASK, REFERENCE
from agent.config.yamlsource import Path, format_path

_MISSING = object()


def diff_documents(old: Any, new: Any, path: Path = ()) -> list[dict[str, Any]]:
    """Leaf-level changes; lists are compared whole (a list's meaning is its order)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[dict[str, Any]] = []
        for key in list(old) + [k for k in new if k not in old]:
            out.extend(diff_documents(old.get(key, _MISSING), new.get(key, _MISSING), (*path, key)))
        return out
    if old == new:
        return []
    return [{
        "path": format_path(path),
        "old_value": _shown(old),
        "new_value": _shown(new),
    }]


def _shown(value: Any) -> Any:
    if value is _MISSING:
        return None
    if isinstance(value, str) and REFERENCE.search(value):
        return value  # a reference names where the secret is, not the secret
    if isinstance(value, str) and _looks_secret(value):
        return MASK
    if isinstance(value, dict):
        return {k: _shown(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shown(v) for v in value]
    return value


def _looks_secret(value: str) -> bool:
    return value.startswith(("$2a$", "$2b$", "$2y$", "vgl_"))


def touches(changes: list[dict[str, Any]], prefixes: tuple[str, ...]) -> list[str]:
    """Changed paths that fall under any of `prefixes` (e.g. settings that need a restart)."""
    hits = []
    for change in changes:
        p = change["path"]
        if any(p == pre or p.startswith(pre + ".") or p.startswith(pre + "[") for pre in prefixes):
            hits.append(p)
    return hits
