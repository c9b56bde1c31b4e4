"""Load vigil.yaml and its drop-ins into a validated `Config`, or fail with every issue."""

from __future__ import annotations

import copy
import fnmatch
import glob
import os
import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from agent.alerting.rulefile import RuleGroup, parse_rule_file
from agent.config.errors import ConfigError, ConfigIssue
from agent.config.schema import AlertingConfig, Config
from agent.config.secrets import mask_paths, resolve_references
from agent.config.yamlsource import Located, Path, format_path, merge, parse_yaml

DEFAULT_INCLUDE = Config.model_fields["include"].default_factory()  # type: ignore[misc]
DEFAULT_RULE_FILES = AlertingConfig.model_fields["rule_files"].default_factory()  # type: ignore[misc]


@dataclass
class LoadedConfig:
    config: Config
    raw: dict[str, Any]  # merged document as written, references unresolved (safe to store)
    sources: dict[str, str]  # file path -> text, for versions and rollback
    secret_paths: set[Path] = field(default_factory=set)
    overrides: dict[str, Any] = field(default_factory=dict)
    rule_groups: list[RuleGroup] = field(default_factory=list)
    rule_files: list[str] = field(default_factory=list)
    """The sources that are Prometheus rule files (not merged into the config document)."""

    def masked(self) -> dict[str, Any]:
        """The effective config for display: defaults filled in, secrets masked."""
        dumped = self.config.model_dump(mode="json")
        return mask_paths(dumped, self.secret_paths)


def include_files(config_path: str, patterns: list[str]) -> list[str]:
    base = os.path.dirname(os.path.abspath(config_path))
    files: list[str] = []
    for pattern in patterns:
        full = pattern if os.path.isabs(pattern) else os.path.join(base, pattern)
        files.extend(sorted(glob.glob(full)))
    return files


def _absolute_globs(config_path: str, patterns: list[str]) -> list[str]:
    base = os.path.dirname(os.path.abspath(config_path))
    return [p if os.path.isabs(p) else os.path.join(base, p) for p in patterns]


def declared_patterns(main: Any) -> tuple[list[str], list[str]]:
    """The drop-in and rule-file globs the main document declares (defaults when it does not)."""
    include, rules = DEFAULT_INCLUDE, DEFAULT_RULE_FILES
    if isinstance(main, dict):
        if isinstance(main.get("include"), list):
            include = [str(p) for p in main["include"]]
        alerting = main.get("alerting")
        if isinstance(alerting, dict) and isinstance(alerting.get("rule_files"), list):
            rules = [str(p) for p in alerting["rule_files"]]
    return include, rules


def include_dirs(config_path: str, patterns: list[str]) -> list[str]:
    """Directories the drop-ins live in, for the watcher (they may not exist yet)."""
    base = os.path.dirname(os.path.abspath(config_path))
    return sorted({os.path.dirname(p if os.path.isabs(p) else os.path.join(base, p)) for p in patterns})


def read_sources(config_path: str) -> dict[str, str]:
    """Main file and drop-ins as text; raises ConfigError when the main file cannot be read."""
    try:
        with open(config_path, encoding="utf-8") as fh:
            main = fh.read()
    except OSError as exc:
        raise ConfigError([ConfigIssue(config_path, None, "", f"cannot read config: {exc.strerror or exc}")]) from None
    sources = {config_path: main}
    located, _ = parse_yaml(main, config_path)
    include, rules = declared_patterns(located.data if located else None)
    for kind, patterns in (("drop-in", include), ("rule file", rules)):
        for path in include_files(config_path, patterns):
            if path in sources:
                continue
            try:
                with open(path, encoding="utf-8") as fh:
                    sources[path] = fh.read()
            except (OSError, UnicodeDecodeError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
                raise ConfigError([ConfigIssue(path, None, "", f"cannot read {kind}: {reason}")]) from None
    return sources


def load_config(config_path: str, overrides: dict[str, Any] | None = None) -> LoadedConfig:
    return parse_sources(read_sources(config_path), config_path, overrides)


def parse_sources(
    sources: dict[str, str], config_path: str, overrides: dict[str, Any] | None = None
) -> LoadedConfig:
    """Validate a set of file texts as one config (also used for proposed changes and rollback)."""
    issues: list[ConfigIssue] = []
    doc: Located | None = None
    main_text = sources.get(config_path)
    main_doc = parse_yaml(main_text, config_path)[0] if main_text is not None else None
    rule_globs = _absolute_globs(config_path, declared_patterns(main_doc.data if main_doc else None)[1])
    rule_sources = {p: t for p, t in sources.items()
                    if p != config_path and any(fnmatch.fnmatch(os.path.abspath(p), g) for g in rule_globs)}
    for path, text in sources.items():
        if path in rule_sources:
            continue
        located, found = parse_yaml(text, path)
        issues.extend(found)
        if located is None:
            continue
        if not isinstance(located.data, dict):
            line = located.lines.get((), (path, 1))[1]
            issues.append(ConfigIssue(path, line, "", "the top level must be a mapping of keys"))
            continue
        if doc is None:
            doc = located
        else:
            merge(doc, located)
    if doc is None:
        doc = Located(data={})
    raw = copy.deepcopy(doc.data)
    for key, value in (overrides or {}).items():
        if value is not None:
            doc.data[key] = value
            doc.lines[(key,)] = ("command line", 0)
    resolved, secret_paths, ref_issues = resolve_references(doc)
    issues.extend(ref_issues)
    config: Config | None = None
    try:
        config = Config.model_validate(resolved)
    except ValidationError as exc:
        issues.extend(_validation_issues(exc, doc))
    groups: list[RuleGroup] = []
    for path, text in rule_sources.items():
        try:
            groups.extend(parse_rule_file(text, path))
        except ConfigError as exc:
            issues.extend(exc.issues)
    if issues or config is None:
        raise ConfigError(sorted(issues, key=lambda i: (i.file != config_path, i.file, i.line or 0)))
    return LoadedConfig(config, raw, dict(sources), secret_paths, dict(overrides or {}), groups, list(rule_sources))


def _validation_issues(exc: ValidationError, doc: Located) -> list[ConfigIssue]:
    issues = []
    for err in exc.errors(include_url=False):
        path = _clean_loc(err["loc"], doc.data)
        message = err["msg"].removeprefix("Value error, ")
        located = _AT.match(message)
        if located:  # a validator of a list pointing at one entry: "at [3].name: ..."
            parts = (index or key for index, key in _PATH_PART.findall(located.group(1)))
            path = (*path, *(int(p) if p.isdigit() else p for p in parts))
            message = located.group(2)
        file, line = doc.where(path)
        if err["type"] == "extra_forbidden":
            allowed = _allowed_keys(path[:-1])
            message = f"unknown key {path[-1]!r}" + (f" (allowed: {', '.join(allowed)})" if allowed else "")
        elif err["type"] == "union_tag_invalid":
            ctx = err.get("ctx") or {}
            field_name = str(ctx.get("discriminator", "type")).strip("'")
            message = f"unknown {field_name} {ctx.get('tag')!r} (known: {ctx.get('expected_tags')})"
            path = (*path, "type")
        elif err["type"] == "missing":
            message = "required key is missing"
        issues.append(ConfigIssue(file or "?", line if line else None, format_path(path), message))
    return issues


_AT = re.compile(r"^at ((?:\[\d+\]|\.?[A-Za-z_][A-Za-z0-9_]*)+): (.*)$", re.S)
_PATH_PART = re.compile(r"\[(\d+)\]|([A-Za-z_][A-Za-z0-9_]*)")


def _clean_loc(loc: tuple[Any, ...], data: Any) -> Path:
    """Drop pydantic's union/validator tags so the path is the one written in YAML: a tag is a
    part that is not a key of the mapping at that point but names its `type` (check types)."""
    out: list[str | int] = []
    after_index = False
    for part in loc:
        if isinstance(part, str) and ("[" in part or part in ("str", "int", "float", "bool", "none")):
            continue
        # The tag comes right after the list index, even when the type also has a key of its name
        # (`command` checks have a `command` key): there, the first `command` is the tag.
        if isinstance(data, dict) and isinstance(part, str) and data.get("type") == part and (
                part not in data or after_index):
            after_index = False
            continue
        after_index = isinstance(part, int)
        out.append(part)
        data = data.get(part) if isinstance(data, dict) else (
            data[part] if isinstance(data, list) and isinstance(part, int) and part < len(data) else None)
    return tuple(out)


def _allowed_keys(path: Path) -> list[str]:
    model: Any = Config
    for part in path:
        if isinstance(part, int) or not (isinstance(model, type) and issubclass(model, BaseModel)):
            return []
        info = model.model_fields.get(part)
        if info is None:
            return []
        model = _model_in(info.annotation)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    return []


def _model_in(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None
