"""Alertmanager label matchers (`name="v"`, `name!="v"`, `name=~"re"`, `name!~"re"`), parsed and printed as
Alertmanager v0.25 does (`pkg/labels`), so the strings operators already use in `amtool silence add` and in
`matchers:` of an Alertmanager routing tree mean the same here.

Regexes are RE2 (Go) syntax, anchored `^(?:...)$`, through the PromQL engine's Go-regex compiler: a
pattern means what it means in Alertmanager, and runs in linear time. A label the alert does not carry
is the empty string, so `severity=""` matches an alert without a severity and `severity!~"crit"` does too.

Parse errors keep Alertmanager's wording ("bad matcher format: ...", "matcher value contains unescaped
double quote: ...", "error parsing regexp: ..."): the API hands them back as 400s, and an operator can
search them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from agent.promql.functions_regex import GoRegex
from agent.promql.parser import compile_matcher_regex

Op = Literal["=", "!=", "=~", "!~"]
OPS: tuple[Op, ...] = ("=", "!=", "=~", "!~")
_OP_ORDER = {op: i for i, op in enumerate(OPS)}  # Alertmanager's MatchType order, the last sort key

# Go's `\s` is ASCII [\t\n\f\r ] and its `$` is the end of the text (Python's `$` also matches before a
# final newline), so both are spelled out. The name allows `:`, as Alertmanager's classic parser does.
_MATCHER_RE = re.compile(
    r"^[\t\n\f\r ]*([a-zA-Z_:][a-zA-Z0-9_:]*)[\t\n\f\r ]*(=~|=|!=|!~)[\t\n\f\r ]*(.*?)[\t\n\f\r ]*\Z", re.S
)
# What Go's strings.TrimSpace strips (unicode.IsSpace), which differs from str.strip() (\x1c-\x1f).
_GO_SPACE = "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a" \
    "\u2028\u2029\u202f\u205f\u3000"
LABEL_NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*\Z")
"""Prometheus's label names; what a silence's matcher names and a route's `match`/`group_by` must be."""


@dataclass(frozen=True)
class Matcher:
    """One label matcher. Built directly it compiles a regex value (ValueError when Go would refuse it)."""

    name: str
    op: Op
    value: str
    regex: GoRegex | None = field(default=None, compare=False, repr=False, hash=False)

    def __post_init__(self) -> None:
        if self.op not in _OP_ORDER:
            raise ValueError(f"unknown match operator {self.op!r} (one of = != =~ !~)")
        if self.op in ("=~", "!~") and self.regex is None:
            object.__setattr__(self, "regex", compile_matcher_regex(self.value))

    def matches_value(self, value: str) -> bool:
        if self.op == "=":
            return value == self.value
        if self.op == "!=":
            return value != self.value
        assert self.regex is not None
        found = self.regex.match(value) is not None
        return found if self.op == "=~" else not found

    def matches(self, labels: Mapping[str, str]) -> bool:
        return self.matches_value(labels.get(self.name, ""))

    def matches_empty(self) -> bool:
        """Whether this matcher alone would select alerts without the label (Alertmanager's silence check
        asks this of `=` and `=~` only; a negative matcher never counts as matching the empty string)."""
        return self.op in ("=", "=~") and self.matches_value("")

    @property
    def is_regex(self) -> bool:
        return self.op in ("=~", "!~")

    @property
    def is_equal(self) -> bool:
        return self.op in ("=", "=~")

    def sort_key(self) -> tuple[str, str, int]:
        return (self.name, self.value, _OP_ORDER[self.op])

    def __str__(self) -> str:
        return f'{self.name}{self.op}"{escape_value(self.value)}"'

    def to_api(self) -> dict[str, Any]:
        """Alertmanager API v2's matcher object."""
        return {"name": self.name, "value": self.value, "isRegex": self.is_regex, "isEqual": self.is_equal}

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Matcher:
        """A matcher from Alertmanager API v2's object (`isEqual` defaults to true, as there)."""
        name, value = data.get("name"), data.get("value")
        if not isinstance(name, str) or not isinstance(value, str):
            raise ValueError("a matcher needs a string name and a string value")
        is_regex, is_equal = data.get("isRegex", False), data.get("isEqual", True)
        if not isinstance(is_regex, bool) or not isinstance(is_equal, bool):
            raise ValueError(f"matcher {name!r}: isRegex and isEqual must be booleans")
        op: Op = ("=~" if is_equal else "!~") if is_regex else ("=" if is_equal else "!=")
        return cls(name, op, value)


def escape_value(value: str) -> str:
    """OpenMetrics escaping, as Alertmanager prints a matcher's value: backslash, newline, double quote."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def parse_matcher(text: str) -> Matcher:
    """One matcher, with Alertmanager's tolerance: optional quotes around the value, whitespace around
    each part, `\\"` `\\n` `\\\\` escapes, and a lone backslash kept literally (`trickier==\\\\=\\=\\"`)."""
    found = _MATCHER_RE.match(text)
    if found is None:
        raise ValueError(f"bad matcher format: {text}")
    name, op, raw = found.group(1), found.group(2), found.group(3)
    quoted = raw.startswith('"')
    body = raw[1:] if quoted else raw
    if not valid_utf8(body):
        raise ValueError(f"matcher value not valid UTF-8: {raw}")
    out: list[str] = []
    escaped = False
    last = len(body) - 1
    for i, c in enumerate(body):
        if escaped:
            escaped = False
            out.append("\n" if c == "n" else c if c in '"\\' else "\\" + c)
        elif c == "\\":
            if i < last:
                escaped = True
            else:
                out.append("\\")  # a final lone backslash is literal
        elif c == '"':
            if not quoted or i < last:
                raise ValueError(f"matcher value contains unescaped double quote: {raw}")
            quoted = False  # the closing quote
        else:
            out.append(c)
    if quoted:
        raise ValueError(f"matcher value contains unescaped double quote: {raw}")
    return Matcher(name, cast(Op, op), "".join(out))


def parse_matchers(text: str) -> list[Matcher]:
    """A comma-separated list, optionally in braces: `{a="b", c!~"d"}`, `a=b,c!=d`. Commas inside double
    quotes do not separate; a trailing comma is dropped; an empty item between commas is an error."""
    text = text.removeprefix("{").removesuffix("}")
    tokens: list[str] = []
    current: list[str] = []
    inside = escaped = False
    for c in text:
        if c == ",":
            if not inside:
                tokens.append("".join(current))
                current = []
                continue
            # A quoted comma leaves `escaped` as it was (Go's switch has no reset for it): in `"x\,"` the
            # quote after the comma is still escaped and does not close.
        elif c == '"':
            if escaped:
                escaped = False
            else:
                inside = not inside
        elif c == "\\":
            escaped = not escaped
        else:
            escaped = False
        current.append(c)
    last = "".join(current).strip(_GO_SPACE)
    if last:
        tokens.append(last)
    return [parse_matcher(token) for token in tokens]


def parse_matcher_list(items: Iterable[str]) -> list[Matcher]:
    """The `matchers:` list of an Alertmanager route: each item may hold several matchers; the result is
    sorted as Alertmanager keeps it. The error names the item it comes from."""
    out: list[Matcher] = []
    for item in items:
        try:
            out.extend(parse_matchers(item))
        except ValueError as err:
            raise ValueError(f"invalid matcher {item!r}: {err}") from None
    return sorted(out, key=Matcher.sort_key)


def matches_all(matchers: Iterable[Matcher], labels: Mapping[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)


def format_matchers(matchers: Sequence[Matcher]) -> str:
    """`{a="b",c!~"d"}`: Alertmanager's Matchers.String(), in the order given."""
    return "{" + ",".join(str(m) for m in matchers) + "}"


def valid_utf8(text: str) -> bool:
    """False for text with lone surrogates (what JSON's `\\ud800` decodes to): Go's strings must be UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
