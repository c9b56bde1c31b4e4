"""Prometheus rule files (`groups:` / `rules:`), read and validated the way `promtool check rules` does.

A file promtool rejects is rejected here too, with every problem at once as `file:line: path: message`
(the message is promtool's own wording: `group "g", rule 1, "Name": ...`), so an operator can take a
rule set between Prometheus and Vigil unchanged and the running rules are never replaced by a broken
edit.

The YAML is walked node by node rather than loaded: Go's yaml.v3 decodes a scalar into a string field
as the text written (`severity: yes` is "yes", `code: 010` is "010"), where a YAML 1.1 loader would
turn them into a boolean and 8; and every node carries the line an error should point at.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

import yaml

from agent.config.errors import ConfigError, ConfigIssue
from agent.config.yamlsource import format_path
from agent.promql import ast as A
from agent.promql.parser import parse, parse_duration
from agent.promql.values import ParseError

RuleKind = Literal["alert", "record"]
TemplateCheck = Callable[[str, str], None]
"""(template name, text): raises (its text is the message) when a label or annotation template does not parse."""

_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_GROUP_KEYS = ("name", "interval", "limit", "rules")
_RULE_KEYS = ("record", "alert", "expr", "for", "keep_firing_for", "labels", "annotations")
_NULL_TAG = "tag:yaml.org,2002:null"
_INT_TAG = "tag:yaml.org,2002:int"
_FLOAT_TAG = "tag:yaml.org,2002:float"
_STR_TAG = "tag:yaml.org,2002:str"


@dataclass(frozen=True)
class Rule:
    """One alerting or recording rule; `labels`/`annotations` sorted by name, as Prometheus keeps them."""

    kind: RuleKind
    name: str
    expr: str
    query: A.Expr = field(compare=False, repr=False)
    for_ms: int = 0
    keep_firing_for_ms: int = 0
    labels: tuple[tuple[str, str], ...] = ()
    annotations: tuple[tuple[str, str], ...] = ()
    file: str = ""
    line: int = 0


@dataclass(frozen=True)
class RuleGroup:
    """Rules evaluated in order at one interval; `interval_ms` 0 means the global evaluation interval."""

    name: str
    file: str
    rules: tuple[Rule, ...]
    interval_ms: int = 0
    limit: int = 0
    line: int = 0

    @property
    def key(self) -> str:
        """Prometheus's GroupKey: a group is identified by its file and name together."""
        return f"{self.file};{self.name}"


def is_valid_metric_name(name: str) -> bool:
    return _METRIC_NAME.match(name) is not None


def is_valid_label_name(name: str) -> bool:
    return _LABEL_NAME.match(name) is not None


def default_template_check() -> TemplateCheck:
    """Parses templates with Vigil's Go-template implementation, as promtool parses them with Go's."""
    from agent.alerting import template

    def check(name: str, text: str) -> None:
        template.compile(text, name)

    return check


class YamlReader:
    """Reads a composed YAML node tree as Go's strict decoders do, collecting issues with their lines."""

    def __init__(self, filename: str):
        self.filename = filename
        self.issues: list[ConfigIssue] = []

    def issue(self, node: yaml.Node | None, path: tuple[str | int, ...], message: str) -> None:
        line = node.start_mark.line + 1 if node is not None else None
        self.issues.append(ConfigIssue(self.filename, line, format_path(path), message))

    def mapping(
        self, node: yaml.Node, path: tuple[str | int, ...], allowed: tuple[str, ...], what: str
    ) -> dict[str, tuple[yaml.Node, yaml.Node]] | None:
        """Key -> (key node, value node); unknown and repeated keys are issues, as in yaml.v3's strict mode."""
        if not isinstance(node, yaml.MappingNode):
            self.issue(node, path, f"expected {what} (a mapping), got {_kind(node)}")
            return None
        out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else ""
            if key in out:
                first = out[key][0].start_mark.line + 1
                self.issue(key_node, (*path, key), f'mapping key "{key}" already defined at line {first}')
                continue
            if key not in allowed:
                self.issue(key_node, (*path, key), f'field "{key}" is not known in {what}; '
                           f"expected one of: {', '.join(allowed)}")
                continue
            out[key] = (key_node, value_node)
        return out

    def string(self, node: yaml.Node, path: tuple[str | int, ...]) -> str:
        """The scalar's text as yaml.v3 decodes it into a Go string: as written; null is ""."""
        if isinstance(node, yaml.ScalarNode):
            return "" if node.tag == _NULL_TAG else node.value
        self.issue(node, path, f"expected a string, got {_kind(node)}")
        return ""

    def duration(self, node: yaml.Node, path: tuple[str | int, ...]) -> int:
        """Milliseconds of a Prometheus duration (`30s`, `1h30m`, `0`); Go reads the text, so `60` is invalid."""
        if isinstance(node, yaml.ScalarNode) and node.tag == _NULL_TAG:
            return 0
        text = self.string(node, path)
        try:
            return parse_duration(text)
        except ParseError as exc:
            self.issue(node, path, str(exc))
            return 0

    def integer(self, node: yaml.Node, path: tuple[str | int, ...]) -> int:
        if isinstance(node, yaml.ScalarNode):
            if node.tag == _NULL_TAG:
                return 0
            if node.tag in (_INT_TAG, _FLOAT_TAG):
                with contextlib.suppress(ValueError, OverflowError):
                    return int(float(yaml.SafeLoader("").construct_object(node)))
        self.issue(node, path, f"expected an integer, got {_describe(node)}")
        return 0

    def number(self, node: yaml.Node, path: tuple[str | int, ...]) -> float:
        """A float64 field: plain numbers as Go's strconv reads them, `.inf`/`.nan` as YAML writes them."""
        if isinstance(node, yaml.ScalarNode):
            if node.tag == _NULL_TAG:
                return 0.0
            text = node.value.replace("_", "") if node.tag in (_INT_TAG, _FLOAT_TAG) else node.value
            special = {".inf": math.inf, "+.inf": math.inf, "-.inf": -math.inf, ".nan": math.nan}
            if text.lower() in special:
                return special[text.lower()]
            if node.style is None and re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", text):
                return float(text)
            if node.style is None and node.tag == _INT_TAG:
                with contextlib.suppress(ValueError):
                    return float(int(text, 0))
        self.issue(node, path, f"expected a number, got {_describe(node)}")
        return 0.0

    def sequence(self, node: yaml.Node, path: tuple[str | int, ...], what: str) -> list[yaml.Node]:
        """The items of a list; null is an empty list."""
        if isinstance(node, yaml.SequenceNode):
            return list(node.value)
        if not (isinstance(node, yaml.ScalarNode) and node.tag == _NULL_TAG):
            self.issue(node, path, f"expected {what} (a list), got {_kind(node)}")
        return []

    def string_map(self, node: yaml.Node, path: tuple[str | int, ...]) -> dict[str, tuple[yaml.Node, str]]:
        """name -> (key node, value) of `labels`/`annotations`; null is an empty map."""
        if isinstance(node, yaml.ScalarNode) and node.tag == _NULL_TAG:
            return {}
        if not isinstance(node, yaml.MappingNode):
            self.issue(node, path, f"expected a mapping of names to strings, got {_kind(node)}")
            return {}
        out: dict[str, tuple[yaml.Node, str]] = {}
        for key_node, value_node in node.value:
            key = self.string(key_node, path)
            if key in out:
                first = out[key][0].start_mark.line + 1
                self.issue(key_node, (*path, key), f'mapping key "{key}" already defined at line {first}')
                continue
            out[key] = (key_node, self.string(value_node, (*path, key)))
        return out


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    return "null" if node.tag == _NULL_TAG else f"the scalar {node.value!r}"


def _describe(node: yaml.Node) -> str:
    if isinstance(node, yaml.ScalarNode) and node.tag == _STR_TAG:
        return f"the string {node.value!r}"
    return _kind(node)


def yaml_issue(filename: str, exc: yaml.YAMLError) -> ConfigIssue:
    """Unparseable YAML: where the parser stopped, and where the construct it was reading began."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    context, context_mark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context and context_mark is not None and context_mark is not mark:
        problem += f" ({context} started at line {context_mark.line + 1})"
    return ConfigIssue(filename, mark.line + 1 if mark else None, "", f"invalid YAML: {problem}")


def parse_rule_file(text: str, filename: str, template_check: TemplateCheck | None = None) -> list[RuleGroup]:
    """The groups of one rule file; raises ConfigError listing every problem, as promtool lists them all.

    `template_check` parses each alerting rule's label and annotation templates (promtool rejects a
    template that does not parse); None uses Vigil's template module.
    """
    check = template_check if template_check is not None else default_template_check()
    f = YamlReader(filename)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise ConfigError([yaml_issue(filename, exc)]) from None
    if root is None or (isinstance(root, yaml.ScalarNode) and root.tag == _NULL_TAG):
        return []
    top = f.mapping(root, (), ("groups",), "a rule file")
    groups: list[RuleGroup] = []
    if top is not None and "groups" in top:
        groups_node = top["groups"][1]
        if isinstance(groups_node, yaml.SequenceNode):
            seen: dict[str, int] = {}
            for i, group_node in enumerate(groups_node.value):
                group = _group(f, group_node, ("groups", i), check)
                if group is None:
                    continue
                if group.name in seen:
                    first = seen[group.name]
                    f.issue(group_node, ("groups", i, "name"),
                            f'groupname: "{group.name}" is repeated in the same file (first at line {first})')
                else:
                    seen[group.name] = group.line
                groups.append(group)
        elif not (isinstance(groups_node, yaml.ScalarNode) and groups_node.tag == _NULL_TAG):
            f.issue(groups_node, ("groups",), f"expected a list of groups, got {_kind(groups_node)}")
    if f.issues:
        raise ConfigError(f.issues)
    return groups


def _group(f: YamlReader, node: yaml.Node, path: tuple[str | int, ...], check: TemplateCheck) -> RuleGroup | None:
    fields = f.mapping(node, path, _GROUP_KEYS, "a rule group")
    if fields is None:
        return None
    name = f.string(fields["name"][1], (*path, "name")) if "name" in fields else ""
    if name == "":
        f.issue(node, path, "Groupname must not be empty")
    interval = f.duration(fields["interval"][1], (*path, "interval")) if "interval" in fields else 0
    limit = f.integer(fields["limit"][1], (*path, "limit")) if "limit" in fields else 0
    rules: list[Rule] = []
    if "rules" in fields:
        rules_node = fields["rules"][1]
        if isinstance(rules_node, yaml.SequenceNode):
            for i, rule_node in enumerate(rules_node.value):
                rule = _rule(f, rule_node, (*path, "rules", i), name, i + 1, check)
                if rule is not None:
                    rules.append(rule)
        elif not (isinstance(rules_node, yaml.ScalarNode) and rules_node.tag == _NULL_TAG):
            f.issue(rules_node, (*path, "rules"), f"expected a list of rules, got {_kind(rules_node)}")
    return RuleGroup(name, f.filename, tuple(rules), interval, limit, node.start_mark.line + 1)


def _rule(
    f: YamlReader, node: yaml.Node, path: tuple[str | int, ...], group: str, number: int, check: TemplateCheck
) -> Rule | None:
    fields = f.mapping(node, path, _RULE_KEYS, "a rule")
    if fields is None:
        return None

    def text(key: str) -> tuple[str, yaml.Node]:
        if key not in fields:
            return "", node
        return f.string(fields[key][1], (*path, key)), fields[key][1]

    record, record_node = text("record")
    alert, alert_node = text("alert")
    expr, expr_node = text("expr")
    name = alert or record
    prefix = f'group "{group}", rule {number}, "{name}": '

    def problem(at: yaml.Node, key: str, message: str) -> None:
        f.issue(at, (*path, key), prefix + message)

    ok = True
    if record and alert:
        problem(record_node, "record", f"only one of 'record' and 'alert' must be set (alert at line "
                f"{alert_node.start_mark.line + 1})")
        ok = False
    if not record and not alert:
        problem(node, "alert", "one of 'record' or 'alert' must be set")
        ok = False
    query: A.Expr | None = None
    if expr == "":
        problem(expr_node, "expr", "field 'expr' must be set in rule")
    else:
        try:
            query = parse(expr)
        except ParseError as exc:
            problem(expr_node, "expr", f"could not parse expression: {exc}")
    for_ms = f.duration(fields["for"][1], (*path, "for")) if "for" in fields else 0
    keep_ms = f.duration(fields["keep_firing_for"][1], (*path, "keep_firing_for")) if "keep_firing_for" in fields else 0
    labels = f.string_map(fields["labels"][1], (*path, "labels")) if "labels" in fields else {}
    annotations = f.string_map(fields["annotations"][1], (*path, "annotations")) if "annotations" in fields else {}
    if record and not alert:
        if annotations:
            problem(fields["annotations"][0], "annotations", "invalid field 'annotations' in recording rule")
        if for_ms:
            problem(fields["for"][0], "for", "invalid field 'for' in recording rule")
        if keep_ms:
            problem(fields["keep_firing_for"][0], "keep_firing_for",
                    "invalid field 'keep_firing_for' in recording rule")
        if not is_valid_metric_name(record):
            problem(record_node, "record", f"invalid recording rule name: {record}")
    for key in sorted(labels):
        key_node = labels[key][0]
        if not is_valid_label_name(key) or key == "__name__":
            problem(key_node, "labels", f"invalid label name: {key}")
    for key in sorted(annotations):
        if not is_valid_label_name(key):
            problem(annotations[key][0], "annotations", f"invalid annotation name: {key}")
    if alert:
        for what, entries in (("label", labels), ("annotation", annotations)):
            for key in sorted(entries):
                key_node, value = entries[key]
                try:
                    check("__alert_" + alert, value)
                except Exception as exc:
                    problem(key_node, what + "s", f"{what} {_go_quote(key)}: {exc}")
    if not ok or query is None:
        return None
    return Rule(
        kind="alert" if alert else "record",
        name=name,
        expr=expr,
        query=query,
        for_ms=for_ms,
        keep_firing_for_ms=keep_ms,
        labels=tuple(sorted((k, v) for k, (_, v) in labels.items())),
        annotations=tuple(sorted((k, v) for k, (_, v) in annotations.items())),
        file=f.filename,
        line=node.start_mark.line + 1,
    )


def _go_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def load_rule_file(path: str, template_check: TemplateCheck | None = None) -> list[RuleGroup]:
    """Reads and parses one file; an unreadable file is a ConfigError naming it."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([ConfigIssue(path, None, "", f"cannot read rule file: {exc}")]) from None
    return parse_rule_file(text, path, template_check)


def load_rule_files(paths: Iterable[str], template_check: TemplateCheck | None = None) -> list[RuleGroup]:
    """All groups of all files, or one ConfigError with the problems of every file (nothing half-loaded)."""
    groups: list[RuleGroup] = []
    issues: list[ConfigIssue] = []
    for path in paths:
        try:
            groups.extend(load_rule_file(path, template_check))
        except ConfigError as exc:
            issues.extend(exc.issues)
    if issues:
        raise ConfigError(issues)
    return groups


def rule_files_in(directory: str, pattern: str = "*.yml") -> list[str]:
    """The rule files of a drop-in directory (`rules.d/*.yml` and `*.yaml`), sorted so load order is stable."""
    import glob

    found = set(glob.glob(os.path.join(directory, pattern)))
    if pattern == "*.yml":
        found.update(glob.glob(os.path.join(directory, "*.yaml")))
    return sorted(found)


def duplicate_rules(groups: Iterable[RuleGroup]) -> list[Rule]:
    """Rules with the same name and labels in one file set: promtool's lint warning (not an error)."""
    seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    out: list[Rule] = []
    for group in groups:
        for rule in group.rules:
            key = (rule.name, rule.labels)
            if key in seen:
                out.append(rule)
            seen.add(key)
    return out
