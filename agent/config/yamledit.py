"""Change one YAML file in place so that every byte outside the changed value stays as the operator wrote it.

Dumping a whole document again, even with a round-trip library, rewrites lines nobody changed: the
indentation of lists, aligned values (`state_dir:   /var/lib/vigil`), long lines. So the file is
never dumped whole. ruamel.yaml composes it in round-trip mode, which gives the exact start and end of
every node and whether a collection is written in flow (`[a, b]`) or block style; then

- a changed value has only its own characters replaced (a trailing comment keeps its column when it can),
- a new key is inserted after the last key of its mapping, at that mapping's indentation,
- a removed key loses its own lines (and a mapping left empty loses its key, so the section returns to
  its defaults instead of becoming `null`).

New values are rendered by ruamel.yaml in the file's own style (the indentation of nested mappings and
of list dashes is read from the file), with every string quoted where YAML 1.1 (PyYAML, which loads the
config) would read it as something else (`yes`, `on`, `1:20`, `2024-01-01`). Each rendering is read back
with PyYAML and must give the value asked for, or the edit is refused rather than writing a surprise.
"""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass
from typing import Any

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError as RuamelError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.representer import RoundTripRepresenter
from ruamel.yaml.scalarstring import DoubleQuotedScalarString, SingleQuotedScalarString

Key = tuple[str, ...]
_PLACEHOLDER = "k"


class EditError(Exception):
    """The edit cannot be made in this file without rewriting what the operator wrote (the message says why)."""


class _Remove:
    def __repr__(self) -> str:
        return "REMOVE"


REMOVE: Any = _Remove()
"""As a value: take the key out of the file (the setting returns to its default)."""


@dataclass(frozen=True)
class _Style:
    step: int  # indentation of a nested mapping under its key
    dash: int  # indentation of a list's dash under its key (0: `key:\n- a`)
    newline: str


def apply_edits(text: str, edits: list[tuple[Key, Any]]) -> str:
    """`text` with each (path, value) set in turn; a value of REMOVE takes the key out."""
    for path, value in edits:
        text = remove_key(text, path) if value is REMOVE else set_value(text, path, value)
    return text


def set_value(text: str, path: Key, value: Any) -> str:
    root = _compose(text)
    style = _style(text, root)
    if root is None:
        return _append(text, _nested(path, value), style)
    if not isinstance(root, MappingNode):
        raise EditError("the top level of the file is not a mapping")
    node = root
    for depth, key in enumerate(path):
        rest = path[depth + 1:]
        entry = _find(node, key)
        if entry is None:
            if node is root and not node.flow_style:
                return _append(text, _nested(path[depth:], value), style)
            return _insert(text, node, key, _nested(rest, value), style)
        key_node, value_node = entry
        _editable(key_node, value_node, path[:depth + 1])
        if rest and isinstance(value_node, MappingNode):
            node = value_node
            continue
        return _replace(text, key_node, value_node, _nested(rest, value), style, in_flow=bool(node.flow_style))
    raise EditError("an empty path")  # pragma: no cover (callers always give a key)


def remove_key(text: str, path: Key) -> str:
    """`text` without the key at `path` (unchanged when the file does not have it)."""
    root = _compose(text)
    if not isinstance(root, MappingNode):
        return text
    node: MappingNode = root
    parents: list[MappingNode] = []
    for key in path[:-1]:
        entry = _find(node, key)
        if entry is None or not isinstance(entry[1], MappingNode):
            return text
        parents.append(node)
        node = entry[1]
    entry = _find(node, path[-1])
    if entry is None:
        return text
    key_node, value_node = entry
    _editable(key_node, value_node, path)
    if len(node.value) == 1 and parents:
        return remove_key(text, path[:-1])  # `section:` alone would be null, not the section's defaults
    if node.flow_style:
        return _remove_flow(text, node, key_node, value_node)
    start = _line_start(text, key_node.start_mark.index)
    end = _after_line(text, _end(text, value_node))
    return text[:start] + text[end:]


def lookup(data: Any, path: Key) -> tuple[bool, Any]:
    """(found, value) at `path` of plain data."""
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return False, None
        data = data[key]
    return True, data


# --- reading the file -------------------------------------------------------------------------------------


def _compose(text: str) -> Node | None:
    try:
        return YAML(typ="rt").compose(text)
    except RuamelError as exc:
        raise EditError(f"the file is not valid YAML: {exc}") from None


def _style(text: str, root: Node | None) -> _Style:
    """The file's indentation, from the first nested mapping and the first block list under a key."""
    step: int | None = None
    dash: int | None = None
    stack = [root] if isinstance(root, MappingNode) else []
    while stack and (step is None or dash is None):
        node = stack.pop(0)
        for key_node, value_node in node.value:
            if isinstance(value_node, MappingNode) and not value_node.flow_style and value_node.value:
                if step is None and value_node.start_mark.line > key_node.start_mark.line:
                    step = value_node.start_mark.column - key_node.start_mark.column
                stack.append(value_node)
            elif isinstance(value_node, SequenceNode) and not value_node.flow_style and value_node.value:
                if dash is None and value_node.start_mark.line > key_node.start_mark.line:
                    dash = value_node.start_mark.column - key_node.start_mark.column
                stack.extend(v for v in value_node.value if isinstance(v, MappingNode) and not v.flow_style)
    return _Style(step if step and step > 0 else 2, dash if dash is not None and dash >= 0 else 2,
                  "\r\n" if "\r\n" in text else "\n")


def _find(node: MappingNode, key: str) -> tuple[Node, Node] | None:
    for key_node, value_node in node.value:
        if isinstance(key_node, ScalarNode) and key_node.value == key:
            return key_node, value_node
    return None


def _editable(key_node: Node, value_node: Node, path: Key) -> None:
    where = ".".join(path)
    if value_node.start_mark.index < key_node.end_mark.index:
        raise EditError(f"{where} is a YAML alias (*name) of a value written elsewhere; change it in the file")
    if getattr(value_node, "anchor", None):
        raise EditError(f"{where} is anchored (&{value_node.anchor}) and may be used elsewhere; change it in the file")


def _end(text: str, node: Node) -> int:
    """Where the node's own characters end: a block collection's end mark lies past the comments and blank
    lines that follow it, so it ends with its last entry; trailing line breaks of a block scalar are not its
    characters either (they stay where they are)."""
    if isinstance(node, MappingNode | SequenceNode) and not node.flow_style and node.value:
        last = node.value[-1]
        if isinstance(last, tuple):
            return max(_end(text, last[0]), _end(text, last[1]))
        return _end(text, last)
    start, end = node.start_mark.index, node.end_mark.index
    while end > start and text[end - 1] in " \t\r\n":
        end -= 1
    return end


def _line_start(text: str, index: int) -> int:
    return text.rfind("\n", 0, index) + 1


def _line_end(text: str, index: int) -> int:
    """The index of the line break ending the line of `index` (or the end of the text)."""
    end = text.find("\n", index)
    if end == -1:
        return len(text)
    return end - 1 if end > 0 and text[end - 1] == "\r" else end


def _after_line(text: str, index: int) -> int:
    end = text.find("\n", index)
    return len(text) if end == -1 else end + 1


def _colon(text: str, key_node: Node) -> int:
    index = key_node.end_mark.index
    while index < len(text) and text[index] in " \t":
        index += 1
    if index >= len(text) or text[index] != ":":
        raise EditError(f"cannot find the ':' after key {key_node.value!r}")
    return index


# --- changing it ------------------------------------------------------------------------------------------


def _nested(path: Key, value: Any) -> Any:
    for key in reversed(path):
        value = {key: value}
    return value


def _append(text: str, doc: dict[str, Any], style: _Style) -> str:
    """New top-level keys go at the end of the file, after everything (comments included) that is there."""
    block = _render_block(doc, style, 0)
    if text and not text.endswith("\n"):
        text += style.newline
    return text + block


def _insert(text: str, mapping: MappingNode, key: str, value: Any, style: _Style) -> str:
    if mapping.flow_style:
        close = mapping.end_mark.index - 1
        if text[close] != "}":
            raise EditError(f"cannot find the end of the mapping holding {key!r}")
        entry = _render_inline({key: value})[1:-1]
        if not mapping.value:
            return text[:close] + entry + text[close:]
        at = _end(text, mapping.value[-1][1])
        return text[:at] + ", " + entry + text[at:]
    last_key, last_value = mapping.value[-1]
    at = _after_line(text, max(_end(text, last_key), _end(text, last_value)))
    prefix = text[:at] if at == 0 or text[at - 1] == "\n" else text[:at] + style.newline
    return prefix + _render_block({key: value}, style, mapping.start_mark.column) + text[at:]


def _replace(text: str, key_node: Node, value_node: Node, value: Any, style: _Style, in_flow: bool) -> str:
    colon = _colon(text, key_node)
    empty = isinstance(value_node, ScalarNode) and value_node.start_mark.index == value_node.end_mark.index
    start = colon + 1 if empty else value_node.start_mark.index
    end = start if empty else _end(text, value_node)
    # A written-out flow collection (`[a, b]`) stays one; an empty one (`[]`) was only a placeholder.
    flow_node = isinstance(value_node, MappingNode | SequenceNode) and bool(value_node.flow_style) and bool(
        value_node.value)
    inline: str | None = None
    if in_flow or flow_node or not _needs_block(value):
        inline = _render_inline(value)
    same_line = empty or value_node.start_mark.line == key_node.start_mark.line
    if inline is not None and same_line:
        lead = " " if empty else ""
        return text[:start] + lead + inline + _comment_kept(text[end:], (end - start) - len(lead + inline))
    key_line_end = _line_end(text, colon)
    if inline is not None:  # a block value (on the lines below) becomes an inline one
        return text[:colon + 1] + " " + inline + text[colon + 1:key_line_end] + text[_line_end(text, end):]
    block = _render_block(value, style, key_node.start_mark.column, under_key=True).rstrip("\r\n")
    if same_line:  # `key: old  # comment` -> `key:  # comment` and the block below it
        rest = text[end:_line_end(text, end)]
        return text[:colon + 1] + (rest if rest.strip() else "") + style.newline + block + text[_line_end(text, end):]
    return text[:key_line_end] + style.newline + block + text[_line_end(text, end):]


def _comment_kept(after: str, shrink: int) -> str:
    """The rest of the line after a replaced value, with a trailing comment moved back to its column."""
    match = re.match(r"( +)#", after)
    if not match:
        return after
    pad = max(1, len(match.group(1)) + shrink)
    return " " * pad + after[len(match.group(1)):]


def _remove_flow(text: str, mapping: MappingNode, key_node: Node, value_node: Node) -> str:
    index = next(i for i, (k, _) in enumerate(mapping.value) if k is key_node)
    if index > 0:
        start = _end(text, mapping.value[index - 1][1])
        return text[:start] + text[_end(text, value_node):]
    if len(mapping.value) > 1:
        return text[:key_node.start_mark.index] + text[mapping.value[1][0].start_mark.index:]
    return text[:key_node.start_mark.index] + text[_end(text, value_node):mapping.end_mark.index - 1] \
        + text[mapping.end_mark.index - 1:]


# --- rendering new values ---------------------------------------------------------------------------------


def _needs_block(value: Any) -> bool:
    return isinstance(value, dict | list) and bool(value)


def _dumper(style: _Style | None) -> YAML:
    out = YAML(typ="rt")
    out.Representer = _Representer
    out.width = 1_000_000  # never fold a long value over several lines
    if style is not None:
        out.indent(mapping=style.step, sequence=style.dash + 2, offset=style.dash)
    out.default_flow_style = False
    return out


def _dump(doc: Any, out: YAML) -> str:
    stream = io.StringIO()
    out.dump(doc, stream)
    return stream.getvalue()


def _render_inline(value: Any) -> str:
    """The value as it follows `key: ` on one line (collections in flow style)."""
    text = _dump({_PLACEHOLDER: _prepared(value, flow=True)}, _dumper(None))
    rendered = text[len(_PLACEHOLDER) + 2:].rstrip("\n")
    if "\n" in rendered:
        raise EditError(f"{value!r} cannot be written on one line")
    _check(f"{_PLACEHOLDER}: {rendered}\n", {_PLACEHOLDER: value})
    return rendered


def _render_block(value: Any, style: _Style, column: int, under_key: bool = False) -> str:
    """Lines of YAML at `column`: `key: value` entries of a mapping, or (`under_key`) the lines of a value
    that goes below its key (`  a: 1` / `  - x`)."""
    doc = {_PLACEHOLDER: value} if under_key else value
    text = _dump(_prepared(doc, flow=False), _dumper(style))
    _check(text, doc)
    lines = text.splitlines()
    if under_key:
        lines = lines[1:]  # the placeholder key's own line
    pad = " " * column
    return "".join(f"{pad}{line}{style.newline}" if line else style.newline for line in lines)


def _prepared(value: Any, flow: bool) -> Any:
    """Plain data as ruamel.yaml objects: strings quoted where YAML 1.1 would misread them, collections in
    the style asked for."""
    if isinstance(value, dict):
        out = CommentedMap()
        for key, item in value.items():
            out[_safe_string(str(key))] = _prepared(item, flow)
        if flow:
            out.fa.set_flow_style()
        return out
    if isinstance(value, list):
        seq = CommentedSeq(_prepared(item, flow) for item in value)
        if flow:
            seq.fa.set_flow_style()
        return seq
    if isinstance(value, str):
        return _safe_string(value)
    return value


def _safe_string(value: str) -> str:
    if any(ch in value for ch in "\n\r\t\0") or not value.isprintable():
        return DoubleQuotedScalarString(value)
    node_tag = yaml.resolver.Resolver().resolve(yaml.ScalarNode, value, (True, False))
    if node_tag != "tag:yaml.org,2002:str" or value != value.strip() or value == "":
        return SingleQuotedScalarString(value)
    return value


def _represent_null(representer: Any, _data: None) -> Any:
    return representer.represent_scalar("tag:yaml.org,2002:null", "null")


def _represent_float(representer: Any, data: float) -> Any:
    """YAML 1.1 wants a dot in a float (`1e+20` would be read as a string)."""
    if math.isnan(data):
        text = ".nan"
    elif math.isinf(data):
        text = ".inf" if data > 0 else "-.inf"
    else:
        text = repr(data)
        if "e" in text and "." not in text.split("e")[0]:
            mantissa, exponent = text.split("e")
            text = f"{mantissa}.0e{exponent if exponent.startswith(('+', '-')) else '+' + exponent}"
        elif "." not in text and "e" not in text:
            text += ".0"
    return representer.represent_scalar("tag:yaml.org,2002:float", text)


class _Representer(RoundTripRepresenter):
    """`null` written out (not an empty value), floats with a dot."""


_Representer.add_representer(type(None), _represent_null)
_Representer.add_representer(float, _represent_float)


def _check(text: str, expected: Any) -> None:
    """What PyYAML (the config's loader) reads back must be what was asked for."""
    try:
        got = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise EditError(f"the rendered value is not valid YAML: {exc}") from None
    if not _same(got, expected):
        raise EditError(f"{expected!r} cannot be written so that it reads back the same (got {got!r})")


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == {str(k) for k in b} and all(_same(a[str(k)], v) for k, v in b.items())
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    return type(a) is type(b) and a == b
