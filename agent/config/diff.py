"""Differences between two config documents as (dotted path, old, new), secrets masked."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, SecretStr

from agent.config.schema import Config
from agent.config.secrets import MASK
from agent.config.yamlsource import Path, format_path

_MISSING = object()


def diff_documents(old: Any, new: Any, path: Path = ()) -> list[dict[str, Any]]:
    """Leaf-level changes; lists are compared whole (a list's meaning is its order). Values of
    secret fields (`SecretStr` in the schema) are masked, even when written inline."""
    if (isinstance(old, dict) and new is _MISSING) or (old is _MISSING and isinstance(new, dict)):
        old, new = old if old is not _MISSING else {}, new if new is not _MISSING else {}
    if isinstance(old, dict) and isinstance(new, dict) and not is_secret_path(path):
        out: list[dict[str, Any]] = []
        for key in list(old) + [k for k in new if k not in old]:
            out.extend(diff_documents(old.get(key, _MISSING), new.get(key, _MISSING), (*path, key)))
        return out
    if old == new:
        return []
    if old == {}:
        old = _MISSING
    if new == {}:
        new = _MISSING
    secret = is_secret_path(path)
    return [{
        "path": format_path(path),
        "old_value": _shown(old, secret),
        "new_value": _shown(new, secret),
    }]


def _shown(value: Any, secret: bool) -> Any:
    if value is _MISSING:
        return None
    if secret:
        return {k: MASK for k in value} if isinstance(value, dict) else MASK
    return value


def is_secret_path(path: Path) -> bool:
    """Whether the schema declares the value at `path` (or a container of it) a secret."""
    model: Any = Config
    for part in path:
        if isinstance(model, type) and issubclass(model, BaseModel):
            info = model.model_fields.get(str(part))
            if info is None:
                return False
            model = info.annotation
        else:
            args = [a for a in getattr(model, "__args__", ()) if a is not type(None)]
            model = args[-1] if args else None  # dict[str, X] -> X, list[X] -> X
        while getattr(model, "__args__", None) and not _is_container(model):
            model = next((a for a in model.__args__ if a is not type(None)), None)  # X | None -> X
        if model is SecretStr:
            return True
    return False


def _is_container(annotation: Any) -> bool:
    return getattr(annotation, "__origin__", None) in (dict, list)


def touches(changes: list[dict[str, Any]], prefixes: tuple[str, ...]) -> list[str]:
    """Changed paths that fall under any of `prefixes` (e.g. settings that need a restart)."""
    hits = []
    for change in changes:
        p = change["path"]
        if any(p == pre or p.startswith(pre + ".") or p.startswith(pre + "[") for pre in prefixes):
            hits.append(p)
    return hits
