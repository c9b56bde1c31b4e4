"""YAML to plain data, remembering the file and line of every value so errors can point at it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from agent.config.errors import ConfigIssue

Path = tuple[str | int, ...]


@dataclass
class Located:
    """A document and, for each path in it, where it was written."""

    data: Any
    lines: dict[Path, tuple[str, int]] = field(default_factory=dict)

    def where(self, path: Path) -> tuple[str | None, int | None]:
        """The location of `path`, or of its nearest written ancestor."""
        for end in range(len(path), -1, -1):
            hit = self.lines.get(path[:end])
            if hit:
                return hit
        return None, None


def format_path(path: Path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def parse_yaml(text: str, filename: str) -> tuple[Located | None, list[ConfigIssue]]:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark else None
        problem = getattr(exc, "problem", None) or str(exc)
        return None, [ConfigIssue(filename, line, "", f"invalid YAML: {problem}")]
    located = Located(data={})
    issues: list[ConfigIssue] = []
    if node is None:
        return located, issues
    located.data = _build(node, (), filename, located, issues)
    return located, issues


def _build(node: yaml.Node, path: Path, filename: str, out: Located, issues: list[ConfigIssue]) -> Any:
    out.lines[path] = (filename, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = yaml.SafeLoader(  # construct scalars with YAML 1.1 rules, as PyYAML does
                ""
            ).construct_object(key_node, deep=True)
            if not isinstance(key, str):
                key = str(key)
            if key in result:
                issues.append(
                    ConfigIssue(filename, key_node.start_mark.line + 1, format_path((*path, key)),
                                "duplicate key (the earlier value would be ignored)")
                )
                continue
            result[key] = _build(value_node, (*path, key), filename, out, issues)
            out.lines[(*path, key)] = (filename, key_node.start_mark.line + 1)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, (*path, i), filename, out, issues) for i, item in enumerate(node.value)]
    return yaml.SafeLoader("").construct_object(node, deep=True)


def merge(base: Located, extra: Located) -> None:
    """Merge a drop-in into the main document: mappings merge, lists extend, scalars override."""

    def walk(dst: Any, src: Any, path: Path) -> Any:
        if isinstance(dst, dict) and isinstance(src, dict):
            for key, value in src.items():
                sub = (*path, key)
                if key in dst:
                    dst[key] = walk(dst[key], value, sub)
                else:
                    dst[key] = value
                    _move(sub, sub)
            return dst
        if isinstance(dst, list) and isinstance(src, list):
            offset = len(dst)
            for i, _item in enumerate(src):
                _move((*path, i), (*path, offset + i))
            return dst + src
        _move(path, path)
        return src

    def _move(src_path: Path, dst_path: Path) -> None:
        n = len(src_path)
        for key, where in list(extra.lines.items()):
            if key[:n] == src_path:
                base.lines[dst_path + key[n:]] = where

    base.data = walk(base.data, extra.data, ())
