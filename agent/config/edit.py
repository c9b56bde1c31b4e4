"""Config changes over the API: a partial document becomes edits of the YAML files that hold each setting.

The change goes through the same gate as an edit made with a text editor: the whole proposed set of files
is validated as one config (`parse_sources`), and only a valid set is written, atomically, keeping the
operator's comments and key order (`agent.config.yamledit`), then loaded by `ConfigManager.write_files`,
which versions it. On top of what a file edit gets:

- a change that would lock the caller out (`REFUSALS`) is refused before anything is written;
- a change made while the files on disk differ from the running config (an edit not loaded yet, or
  one that was rejected) is refused, so an API change never overwrites what the operator is doing;
- with `rollback_on_failure`, a change that a component fails to take is undone by itself: the
  previous files are put back, and the components keep (get back) the previous config.

A partial document merges into the config: mappings merge key by key, given scalars and lists replace
what is there, and `null` removes the key from the file (the setting returns to its default). Each
changed key is edited in the file that defines it (the main file or the drop-in whose value is the
effective one); a key that no file defines yet goes into the main file. A secret shown masked (`***`)
and sent back unchanged keeps its value, or its `${file:...}`/`${env:...}` reference.
"""

from __future__ import annotations

import asyncio
import functools
import re
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from pydantic import SecretStr

from agent.config.diff import diff_documents, is_secret_path, touches
from agent.config.errors import ConfigError, ConfigIssue
from agent.config.loader import LoadedConfig, parse_sources, read_sources
from agent.config.manager import ConfigManager
from agent.config.schema import RESTART_REQUIRED
from agent.config.secrets import MASK
from agent.config.yamledit import REMOVE, EditError, apply_edits, lookup
from agent.config.yamlsource import Located, Path, format_path, merge, parse_yaml
from agent.store import apikeys
from agent.store import config_versions as versions
from agent.store.apikeys import ApiKeyRow

log = structlog.get_logger("vigil.config")
Key = tuple[str, ...]


@dataclass(frozen=True)
class ProposedChange:
    """What a refusal check is shown: the config running now, the one proposed, and who proposes it."""

    current: LoadedConfig
    proposed: LoadedConfig
    actor: str | None
    remote: str | None  # the caller's address; None when the change does not come from the network
    keys: list[ApiKeyRow]


Refusal = Callable[[ProposedChange], list[str]]
REFUSALS: list[Refusal] = []
"""Checks run on every proposed change (API change and rollback alike) after it validated; each returns
the reasons to refuse it (empty: no objection). The access policy registers the lockout check here."""


class ChangeError(Exception):
    """A change that was not made; nothing was written (`ChangeFailed` says whether it was undone)."""

    status = 400
    error_type: str | None = None

    def __init__(self, message: str, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        self.details = details or {}


class InvalidChange(ChangeError):
    """The proposed config does not validate: every issue, each with its path, file and line."""

    status = 422

    def __init__(self, issues: list[ConfigIssue]):
        self.issues = issues
        summary = "; ".join(str(i) for i in issues[:20]) + (f"; ... ({len(issues)} errors)" if len(issues) > 20 else "")
        super().__init__(f"invalid configuration: {summary}", {"errors": [i.as_dict() for i in issues]})


class ChangeRefused(ChangeError):
    """Valid, but it would lock the operator out (or another registered check objects)."""

    status = 409

    def __init__(self, reasons: list[str]):
        self.reasons = reasons
        super().__init__("refused: " + "; ".join(reasons), {"reasons": reasons})


class ChangeConflict(ChangeError):
    """The change cannot be made as asked in the files as they are (the message says what to do)."""

    status = 409


class ChangeFailed(ChangeError):
    """Valid and written, but applying it failed; `rolled_back` says whether the files were put back."""

    status = 422
    error_type = "apply_failed"

    def __init__(self, issues: list[ConfigIssue], rolled_back: bool):
        self.issues = issues
        self.rolled_back = rolled_back
        what = "the previous config was restored" if rolled_back else (
            "the files keep the change (rollback_on_failure was false) while the components run the previous config")
        super().__init__(f"{'; '.join(i.message for i in issues)}; {what}",
                         {"errors": [i.as_dict() for i in issues], "rolled_back": rolled_back})


@dataclass
class ChangeResult:
    changes: list[dict[str, Any]]  # {path, old_value, new_value}, secrets masked
    applied_at: float | None  # None for a dry run
    requires_restart: list[str]  # changed settings that take effect at the next restart only
    rollback_id: int | None  # the version to roll back to, to undo this change
    version_id: int | None  # the version this change made (the current one when nothing changed)
    files: list[str]  # the files written (or that would be, for a dry run)
    restarted_services: list[str]  # components reconfigured in place to take the change
    dry_run: bool = False
    proposed: LoadedConfig | None = field(default=None, repr=False)


def effective_view(loaded: LoadedConfig, sensitive: bool = False) -> dict[str, Any]:
    """The effective config (defaults filled in) with the keys as written in YAML; secrets masked unless
    `sensitive`, in which case they are the values in use (references resolved)."""
    shown = loaded.config.model_dump(mode="json", by_alias=True)
    if sensitive:
        return _revealed(shown, loaded.config.model_dump(by_alias=True))
    return _masked(shown, (), loaded.secret_paths)


def _masked(value: Any, path: Path, references: set[Path]) -> Any:
    if path in references:
        return MASK
    if isinstance(value, dict):
        return {k: _masked(v, (*path, k), references) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v, (*path, i), references) for i, v in enumerate(value)]
    if value is not None and path and _secret_shape(tuple(0 if isinstance(p, int) else p for p in path)):
        return MASK
    return value


@functools.lru_cache(maxsize=4096)
def _secret_shape(path: Path) -> bool:
    """is_secret_path does not depend on list positions: asked once per shape, not once per check."""
    return is_secret_path(path)


def _revealed(shown: Any, raw: Any) -> Any:
    if isinstance(raw, SecretStr):
        return raw.get_secret_value()
    if isinstance(shown, dict) and isinstance(raw, dict):
        return {k: _revealed(v, raw.get(k)) for k, v in shown.items()}
    if isinstance(shown, list) and isinstance(raw, list | tuple):
        return [_revealed(v, r) for v, r in zip(shown, raw, strict=False)]
    return shown


def with_effective_values(changes: list[dict[str, Any]], old: LoadedConfig, new: LoadedConfig) -> list[dict[str, Any]]:
    """Changes as the files differ (`null`: not written), with a setting that was or becomes unwritten shown
    at its effective value, the default (`log.level` info -> debug, not null -> debug)."""
    views: dict[int, Any] = {}
    out = []
    for change in changes:
        shown = dict(change)
        for side, loaded in (("old_value", old), ("new_value", new)):
            if shown[side] is not None:
                continue
            if id(loaded) not in views:
                views[id(loaded)] = effective_view(loaded)
            found, value = _at(views[id(loaded)], _parse_path(change["path"]))
            if found:
                shown[side] = value
        out.append(shown)
    return out


_PATH_PART = re.compile(r"\[(\d+)\]|\.?([^.\[\]]+)")


def _parse_path(text: str) -> Path:
    return tuple(int(index) if index else key for index, key in _PATH_PART.findall(text))


def _at(data: Any, path: Path) -> tuple[bool, Any]:
    for part in path:
        in_list = isinstance(part, int) and isinstance(data, list) and part < len(data)
        if not (in_list or (isinstance(data, dict) and part in data)):
            return False, None
        data = data[part]
    return True, data


def partial_for(category: str, settings: dict[str, Any]) -> dict[str, Any]:
    """The seed's `{"category": "api.rate_limit", "settings": {...}}` as a nested partial document."""
    parts = [p for p in category.split(".")]
    if not all(parts):
        raise ChangeError(f"category {category!r} is not a config section (e.g. log, api.rate_limit)")
    doc: dict[str, Any] = settings
    for part in reversed(parts):
        doc = {part: doc}
    return doc


async def apply_change(
    manager: ConfigManager, partial: dict[str, Any], *, actor: str | None, remote: str | None, reason: str,
    rollback_on_failure: bool = True, dry_run: bool = False,
) -> ChangeResult:
    """Merge `partial` into the config files, validate the whole, refuse lock-outs, write, apply.
    Raises a ChangeError (InvalidChange, ChangeRefused, ChangeConflict, ChangeFailed)."""
    if not isinstance(partial, dict) or not partial:
        raise ChangeError("no settings given: send a partial config document or category and settings")
    async with _lock(manager):
        await _ensure_loaded_files(manager)
        current = manager.current
        texts = await asyncio.to_thread(_edited_texts, manager.path, current, partial)  # YAML work: off the loop
        return await _propose(manager, texts, "api", actor=actor, remote=remote, reason=reason,
                              rollback_on_failure=rollback_on_failure, dry_run=dry_run)


async def rollback_to(
    manager: ConfigManager, version_id: int, *, actor: str | None, remote: str | None, reason: str | None = None,
    dry_run: bool = False,
) -> ChangeResult:
    """Put the files back as they were in `version_id` (files added since are removed), through the same
    validation and refusals as any change. Raises LookupError for an unknown version."""
    row = await versions.get(manager.store, version_id)
    if row is None:
        raise LookupError(version_id)
    async with _lock(manager):
        current = manager.current
        texts: dict[str, str | None] = {p: t for p, t in row.sources.items() if current.sources.get(p) != t}
        texts.update({p: None for p in current.sources if p not in row.sources})
        return await _propose(manager, texts, "rollback", actor=actor, remote=remote,
                              reason=reason or f"rollback to version {version_id}", rollback_on_failure=True,
                              dry_run=dry_run)


async def try_change(manager: ConfigManager, partial: dict[str, Any], *, actor: str | None,
                      remote: str | None) -> ChangeResult:
    """A dry run; an empty `partial` tests the running config as it is."""
    if not partial:
        current = manager.current
        return ChangeResult([], None, [], manager.version_id, manager.version_id, [], [], True, current)
    return await apply_change(manager, partial, actor=actor, remote=remote, reason="test", dry_run=True)


def reconfigured(changes: list[dict[str, Any]], restart: list[str]) -> list[str]:
    """The components that take these changes in place (what the daemon's apply step reconfigures)."""
    names: list[str] = []
    applied = [c for c in changes if c["path"] not in restart]
    for prefix, name in _COMPONENTS:
        if touches(applied, (prefix,)) and name not in names:
            names.append(name)
    return names


_COMPONENTS = (
    ("log", "logging"), ("api.rate_limit", "api"), ("api.max_body_bytes", "api"), ("metrics", "api"),
    ("processes", "processes"), ("tasks", "tasks"), ("collectors", "collectors"), ("checks", "checks"),
    ("check_runner", "checks"), ("history", "history"), ("maintenance", "maintenance"), ("units", "units"),
    ("check_runner.systemctl", "units"), ("alerting", "alerting"), ("rule_files", "alerting"),
    ("notifications", "notifications"), ("include", "config"), ("reload", "config"),
    ("alerting.rule_files", "config"), ("security", "security"), ("environment", "api"), ("hostname", "api"),
)

_LOCKS: weakref.WeakKeyDictionary[ConfigManager, asyncio.Lock] = weakref.WeakKeyDictionary()


def _lock(manager: ConfigManager) -> asyncio.Lock:
    """One change at a time: each is computed from the files the previous one left."""
    lock = _LOCKS.get(manager)
    if lock is None:
        lock = _LOCKS[manager] = asyncio.Lock()
    return lock


async def _ensure_loaded_files(manager: ConfigManager) -> None:
    try:
        on_disk = await asyncio.to_thread(read_sources, manager.path)
    except ConfigError as exc:
        raise ChangeConflict(f"the config files cannot be read: {exc}") from None
    loaded = manager.current.sources
    differ = sorted(p for p in set(on_disk) | set(loaded) if on_disk.get(p) != loaded.get(p))
    if differ:
        raise ChangeConflict(
            f"the config files on disk differ from the running config ({', '.join(differ)}): an edit that is not "
            "loaded yet, or one that was rejected (see GET /api/v1/config/status); fix or reload the files, or "
            "roll back, before changing the config over the API", {"files": differ})


async def _propose(
    manager: ConfigManager, texts: dict[str, str | None], source: str, *, actor: str | None, remote: str | None,
    reason: str, rollback_on_failure: bool, dry_run: bool,
) -> ChangeResult:
    current = manager.current
    texts = {p: t for p, t in texts.items() if current.sources.get(p) != t}
    sources = {p: t for p, t in {**current.sources, **texts}.items() if t is not None}
    try:
        proposed = await asyncio.to_thread(parse_sources, sources, manager.path, current.overrides)
    except ConfigError as exc:
        raise InvalidChange(exc.issues) from None
    keys = await apikeys.all_keys(manager.store)
    change = ProposedChange(current, proposed, actor, remote, keys)
    reasons = [reason_ for check in REFUSALS for reason_ in check(change)]
    if reasons:
        log.warning("config_change_refused", actor=actor, remote=remote, reasons=reasons)
        raise ChangeRefused(reasons)
    previous = manager.version_id
    files = sorted(texts)
    if dry_run or not texts:
        changes = diff_documents(current.raw, proposed.raw)
        restart = touches(changes, RESTART_REQUIRED)
        shown = await asyncio.to_thread(with_effective_values, changes, current, proposed)
        return ChangeResult(shown, None if dry_run else time.time(), restart, previous, previous, files,
                            reconfigured(changes, restart), dry_run, proposed)
    result = await manager.write_files(texts, source, actor, reason, restore_on_failure=rollback_on_failure)
    if not result.ok:
        raise ChangeFailed(result.errors, rolled_back=rollback_on_failure)
    changes = await asyncio.to_thread(with_effective_values, result.changes, current, manager.current)
    outcome = ChangeResult(changes, result.at, result.requires_restart, previous, result.version_id, files,
                           reconfigured(result.changes, result.requires_restart), False, manager.current)
    manager.bus.publish("config_changed", source=source, version=outcome.version_id, rollback_id=previous,
                        actor=actor, reason=reason, changes=outcome.changes,
                        requires_restart=outcome.requires_restart, files=files)
    return outcome


# --- from a partial document to file edits ----------------------------------------------------------------


def _edited_texts(main: str, current: LoadedConfig, partial: dict[str, Any]) -> dict[str, str | None]:
    ops = _operations(partial, current)
    files = [p for p in current.sources if p not in current.rule_files]
    docs = {p: _data(current.sources[p], p) for p in files}
    edits: dict[str, list[tuple[Key, Any]]] = {}
    for path, value in ops:
        holders = [p for p in files if lookup(docs[p], path)[0]]
        if value is REMOVE:
            for holder in holders:
                edits.setdefault(holder, []).append((path, REMOVE))
            continue
        lists = [p for p in holders if isinstance(lookup(docs[p], path)[1], list)]
        if isinstance(value, list) and len(lists) > 1:
            raise ChangeConflict(
                f"{format_path(path)} is a list written in several files ({', '.join(lists)}), which add up; "
                "replacing it over the API would have to rewrite all of them: change it in the files",
                {"path": format_path(path), "files": lists})
        target = holders[-1] if holders else main
        edits.setdefault(target, []).append((path, value))
    texts: dict[str, str | None] = {}
    for path, file_edits in edits.items():
        try:
            texts[path] = apply_edits(current.sources[path], file_edits)
        except EditError as exc:
            raise ChangeConflict(f"{path}: {exc}", {"file": path}) from None
    _check_placed(ops, files, {**current.sources, **texts})
    return texts


def _operations(partial: dict[str, Any], current: LoadedConfig) -> list[tuple[Key, Any]]:
    """Leaves of the partial document as (path, value); null becomes REMOVE, masked secrets are dropped
    (or, inside a list or mapping that replaces one, given back their values)."""
    ops: list[tuple[Key, Any]] = []
    problems: list[ConfigIssue] = []

    def secret(path: Path) -> bool:
        return is_secret_path(path) or path in current.secret_paths

    def walk(doc: dict[str, Any], prefix: Key) -> None:
        for key, value in doc.items():
            if not isinstance(key, str) or not key:
                raise ChangeError(f"{format_path(prefix) or '<root>'}: keys must be non-empty strings")
            path = (*prefix, key)
            if isinstance(value, dict) and value:
                walk(value, path)
                continue
            if value is None:
                ops.append((path, REMOVE))
                continue
            found, old = lookup(current.raw, path)
            try:
                restored = _unmasked(value, old if found else _MISSING, path, secret)
            except _MaskedWithoutValue as exc:
                problems.append(ConfigIssue("request", None, format_path(exc.path),
                                            f"{MASK!r} is how a secret is shown; give the value (or a ${{file:...}} "
                                            "or ${env:...} reference): there is none to keep"))
                continue
            if restored is _UNCHANGED:
                continue
            ops.append((path, restored))

    walk(partial, ())
    if problems:
        raise InvalidChange(problems)
    return ops


class _Missing:
    """A sentinel: no value at that path (distinct from an explicit null)."""


_MISSING: Any = _Missing()
_UNCHANGED: Any = _Missing()


class _MaskedWithoutValue(Exception):
    def __init__(self, path: Path):
        self.path = path


def _unmasked(value: Any, old: Any, path: Path, secret: Callable[[Path], bool]) -> Any:
    """`value` with each masked secret replaced by what the file has (_UNCHANGED for a masked scalar)."""
    if isinstance(value, str) and value == MASK and secret(path):
        if old is _MISSING or old is None:
            raise _MaskedWithoutValue(path)
        return _UNCHANGED if len(path) and not isinstance(old, dict | list) else old
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            previous = old.get(key, _MISSING) if isinstance(old, dict) else _MISSING
            restored = _unmasked(item, previous, (*path, key), secret)
            out[key] = previous if restored is _UNCHANGED else restored
        return out
    if isinstance(value, list):
        items = []
        for index, item in enumerate(value):
            previous, old_index = _counterpart(item, index, old)
            restored = _unmasked(item, previous, (*path, old_index), secret)
            items.append(previous if restored is _UNCHANGED else restored)
        return items
    return value


def _counterpart(item: Any, index: int, old: Any) -> tuple[Any, int]:
    """The entry of the old list that `item` stands for: the one of the same name (receivers, checks and
    units are named, and may have been reordered), else the one at the same place."""
    if not isinstance(old, list):
        return _MISSING, index
    if isinstance(item, dict) and isinstance(item.get("name"), str):
        for i, entry in enumerate(old):
            if isinstance(entry, dict) and entry.get("name") == item["name"]:
                return entry, i
        return _MISSING, index
    return (old[index], index) if index < len(old) else (_MISSING, index)


def _data(text: str, path: str) -> Any:
    located, _ = parse_yaml(text, path)
    return located.data if located is not None else {}


def _check_placed(ops: list[tuple[Key, Any]], files: list[str], texts: dict[str, str | None]) -> None:
    """Read the edited files back as the loader merges them: each setting must now be what was asked."""
    merged: Located | None = None
    for path in files:
        text = texts.get(path)
        if text is None:
            continue
        located, _ = parse_yaml(text, path)
        if located is None or not isinstance(located.data, dict):
            continue
        if merged is None:
            merged = located
        else:
            merge(merged, located)
    data = merged.data if merged is not None else {}
    for path, value in ops:
        found, got = lookup(data, path)
        if (value is REMOVE and not found) or (value is not REMOVE and found and got == value):
            continue
        others = [f for f in files if any(lookup(_data(texts[f] or "", f), path[:n])[0]
                                          for n in range(1, len(path) + 1))]
        raise ChangeConflict(
            f"{format_path(path)} cannot be changed over the API as the files are written: another file overrides "
            f"it ({', '.join(others) or 'none found'}); change it in the files", {"path": format_path(path)})
