"""The notification routing tree, as Alertmanager's (`dispatch/route.go`, v0.25): an operator's Alertmanager
`route:` block, pasted under Vigil's notifications, sends each alert to the same receivers with the same
grouping and timers.

Semantics kept from Alertmanager:
- a node matches when all its matchers match (a missing label is the empty string); its children are
  tried depth-first in order, the first matching child ends the search unless it has `continue: true`,
  and a node none of whose children match is itself the match (so the root catches everything);
- unset `receiver`, `group_by`, `group_wait` (30s), `group_interval` (5m) and `repeat_interval` (4h) are
  inherited from the parent; `group_by: ['...']` groups by all labels; a `group_by` naming no label
  (`[]`) inherits, as in Alertmanager;
- `matchers` (a list of strings, each one or more matchers) and the legacy `match`/`match_re` maps are
  merged and sorted; `match_re` values are anchored as Alertmanager stores them, so route keys read the
  same (`{}/{owner=~"^(?:team-(B|C))$"}`);
- the group key of an alert is `<route key>:<group labels>`, `{}/{severity="critical"}:{alertname="X"}`,
  the key Alertmanager hands receivers (`groupKey` of a webhook).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Annotated

from pydantic import AfterValidator, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from agent.alerting.matchers import LABEL_NAME_RE, Matcher, format_matchers, parse_matcher_list, parse_matchers
from agent.config.durations import Duration
from agent.config.section import Section

DEFAULT_GROUP_WAIT = 30.0
DEFAULT_GROUP_INTERVAL = 300.0
DEFAULT_REPEAT_INTERVAL = 4 * 3600.0
GROUP_BY_ALL = "..."


def _check_matcher_item(value: str) -> str:
    try:
        parse_matchers(value)
    except ValueError as err:
        raise ValueError(f"invalid matcher {value!r}: {err}") from None
    return value


MatcherText = Annotated[str, AfterValidator(_check_matcher_item)]


class RouteConfig(Section):
    """One node of the routing tree, with Alertmanager's keys and checks."""

    model_config = ConfigDict(extra="forbid", validate_default=True, populate_by_name=True)

    receiver: str | None = Field(None, description="receiver name; inherited from the parent when unset or empty")
    matchers: list[MatcherText] = Field(
        default_factory=list, description='label matchers, e.g. [\'severity=~"critical|warning"\', "team=db"]'
    )
    match: dict[str, str] = Field(default_factory=dict, description="legacy: label -> exact value")
    match_re: dict[str, str] = Field(default_factory=dict, description="legacy: label -> RE2 regex (anchored)")
    group_by: list[str] | None = Field(None, description="labels to group by; ['...'] groups by all labels")
    group_wait: Duration | None = Field(None, description="wait before the first notification of a group (30s)")
    group_interval: Duration | None = Field(None, description="wait before notifying a group's changes (5m)")
    repeat_interval: Duration | None = Field(None, description="wait before re-sending an unchanged group (4h)")
    continue_: bool = Field(False, alias="continue", description="keep matching the next siblings")
    routes: list[RouteConfig] = Field(default_factory=list, description="child routes, tried in order")

    @field_validator("match")
    @classmethod
    def _match_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not LABEL_NAME_RE.match(name):
                raise ValueError(f"invalid label name {go_quote(name)}")
        return value

    @field_validator("match_re")
    @classmethod
    def _match_re(cls, value: dict[str, str]) -> dict[str, str]:
        for name, pattern in value.items():
            if not LABEL_NAME_RE.match(name):
                raise ValueError(f"invalid label name {go_quote(name)}")
            try:
                Matcher(name, "=~", pattern)
            except ValueError as err:
                raise ValueError(f"{name}: {err}") from None
        return value

    @field_validator("group_by")
    @classmethod
    def _group_by(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        names = [v for v in value if v != GROUP_BY_ALL]
        for name in names:
            if not LABEL_NAME_RE.match(name):
                raise ValueError(f"invalid label name {go_quote(name)} in group_by list")
        if names and len(names) != len(value):
            raise ValueError("cannot have wildcard group_by (`...`) and other labels at the same time")
        seen: set[str] = set()
        for name in names:
            if name in seen:
                raise ValueError(f"duplicated label {go_quote(name)} in group_by")
            seen.add(name)
        return value

    @field_validator("group_interval", "repeat_interval")
    @classmethod
    def _not_zero(cls, value: float | None, info: ValidationInfo) -> float | None:
        if value is not None and value == 0:
            raise ValueError(f"{info.field_name} cannot be zero")
        return value

    def receivers(self) -> set[str]:
        """Every receiver named in this subtree, to check against the configured receivers."""
        found = {self.receiver} if self.receiver else set()
        for child in self.routes:
            found |= child.receivers()
        return found


class RootRouteConfig(RouteConfig):
    """The top of the tree: it catches every alert, so it needs a receiver and may not filter or continue."""

    @model_validator(mode="after")
    def _root_rules(self) -> RootRouteConfig:
        if not self.receiver:
            raise ValueError("root route must specify a default receiver")
        if self.matchers or self.match or self.match_re:
            raise ValueError("root route must not have any matchers")
        if self.continue_:
            raise ValueError("cannot have continue in root route")
        return self


@dataclass(eq=False)
class Route:
    """A built node: its own matchers and the options it ended up with after inheritance. Compared by
    identity, so a route can key a table of aggregation groups."""

    receiver: str
    matchers: tuple[Matcher, ...] = ()
    group_by: frozenset[str] = frozenset()
    group_by_all: bool = False
    group_wait: float = DEFAULT_GROUP_WAIT
    group_interval: float = DEFAULT_GROUP_INTERVAL
    repeat_interval: float = DEFAULT_REPEAT_INTERVAL
    continue_: bool = False
    routes: list[Route] = field(default_factory=list)
    parent: Route | None = field(default=None, repr=False)

    @classmethod
    def from_config(cls, config: RouteConfig, parent: Route | None = None) -> Route:
        node = cls(receiver="")
        if parent is not None:
            node.receiver, node.group_by, node.group_by_all = parent.receiver, parent.group_by, parent.group_by_all
            node.group_wait, node.group_interval = parent.group_wait, parent.group_interval
            node.repeat_interval = parent.repeat_interval
        if config.receiver:
            node.receiver = config.receiver
        if config.group_by is not None:
            names = frozenset(v for v in config.group_by if v != GROUP_BY_ALL)
            if names:
                node.group_by, node.group_by_all = names, False
            elif GROUP_BY_ALL in config.group_by:
                node.group_by_all = True
        if config.group_wait is not None:
            node.group_wait = config.group_wait
        if config.group_interval is not None:
            node.group_interval = config.group_interval
        if config.repeat_interval is not None:
            node.repeat_interval = config.repeat_interval
        matchers = [Matcher(name, "=", value) for name, value in config.match.items()]
        matchers += [Matcher(name, "=~", f"^(?:{value})$") for name, value in config.match_re.items()]
        matchers += parse_matcher_list(config.matchers)
        node.matchers = tuple(sorted(matchers, key=Matcher.sort_key))
        node.continue_ = config.continue_
        node.parent = parent
        node.routes = [cls.from_config(child, node) for child in config.routes]
        return node

    def matches_self(self, labels: Mapping[str, str]) -> bool:
        return all(m.matches(labels) for m in self.matchers)

    def match(self, labels: Mapping[str, str]) -> list[Route]:
        """The routes an alert with these labels goes to, in tree order (Alertmanager's Route.Match)."""
        if not self.matches_self(labels):
            return []
        found: list[Route] = []
        for child in self.routes:
            matched = child.match(labels)
            found += matched
            if matched and not child.continue_:
                break
        return found or [self]

    def key(self) -> str:
        """The node's matchers prefixed by its ancestors' (`{}/{team="db"}`); not unique in general."""
        own = format_matchers(self.matchers)
        return own if self.parent is None else f"{self.parent.key()}/{own}"

    def id(self) -> str:
        """The key plus the node's position among its siblings: unique in the tree."""
        if self.parent is None:
            return self.key()
        position = next(i for i, sibling in enumerate(self.parent.routes) if sibling is self)
        return f"{self.key()}/{position}"

    def walk(self) -> Iterator[Route]:
        """This node and its descendants, depth-first in order."""
        yield self
        for child in self.routes:
            yield from child.walk()

    def group_labels(self, labels: Mapping[str, str]) -> dict[str, str]:
        if self.group_by_all:
            return dict(labels)
        return {name: value for name, value in labels.items() if name in self.group_by}

    def group_key(self, labels: Mapping[str, str]) -> str:
        """The aggregation group an alert falls in on this route, spelled as Alertmanager spells it."""
        return f"{self.key()}:{format_labelset(self.group_labels(labels))}"


def build_tree(config: RouteConfig) -> Route:
    return Route.from_config(config)


def format_labelset(labels: Mapping[str, str]) -> str:
    """Go's model.LabelSet.String() as Alertmanager v0.25 links it: `name="value"` pairs with Go quoting,
    sorted as formatted strings (so `a0="x"` sorts before `a="y"`), joined by ", " in braces."""
    pairs = sorted(f"{name}={go_quote(value)}" for name, value in labels.items())
    return "{" + ", ".join(pairs) + "}"


_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v",
               '"': '\\"', "\\": "\\\\"}


def go_quote(text: str) -> str:
    """Go's strconv.Quote (`%q`): printable characters as they are, the rest escaped."""
    out = ['"']
    for c in text:
        code = ord(c)
        if c in _GO_ESCAPES:
            out.append(_GO_ESCAPES[c])
        elif c.isprintable() and not 0xD800 <= code <= 0xDFFF:
            out.append(c)
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif 0xD800 <= code <= 0xDFFF:
            out.append("\\ufffd")  # not a valid rune in Go: written as the replacement character
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)
