"""Differences between two config documents as (dotted path, old, new), secrets masked."""

from __future__ import annotations

import types
import typing
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
    return [{"path": format_path(path), "old_value": _shown(old, path), "new_value": _shown(new, path)}]


def _shown(value: Any, path: Path) -> Any:
    """The value with every secret inside it masked (a list of receivers holds their passwords)."""
    if value is _MISSING:
        return None
    if is_secret_path(path):
        return {k: MASK for k in value} if isinstance(value, dict) else MASK
    if isinstance(value, dict):
        return {k: _shown(v, (*path, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_shown(v, (*path, i)) for i, v in enumerate(value)]
    return value


def is_secret_path(path: Path) -> bool:
    """Whether the schema declares the value at `path` a secret, or a container of secrets. Where the
    schema has a union (check and receiver types), a path is secret when it is in any member."""
    return _secret_in(Config, tuple(path))


def _secret_in(annotation: Any, path: Path) -> bool:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _secret_in(typing.get_args(annotation)[0], path)
    if origin in (typing.Union, types.UnionType):
        return any(_secret_in(a, path) for a in typing.get_args(annotation) if a is not type(None))
    if annotation is SecretStr:
        return True
    if not path:
        return origin in (dict, list) and _secret_in(typing.get_args(annotation)[-1], ())
    part, rest = path[0], path[1:]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        info = annotation.model_fields.get(str(part)) or next(
            (f for f in annotation.model_fields.values() if f.alias == part), None)
        return info is not None and _secret_in(info.annotation, rest)
    if origin in (dict, list):
        return _secret_in(typing.get_args(annotation)[-1], rest)
    return False


def touches(changes: list[dict[str, Any]], prefixes: tuple[str, ...]) -> list[str]:
    """Changed paths that fall under any of `prefixes` (e.g. settings that need a restart)."""
    hits = []
    for change in changes:
        p = change["path"]
        if any(p == pre or p.startswith(pre + ".") or p.startswith(pre + "[") for pre in prefixes):
            hits.append(p)
    return hits
