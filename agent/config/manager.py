"""The running config: reload from files, signal or API, all-or-nothing, with versions.

A reload parses and validates everything first (in a thread: it reads files). Only a fully
valid config reaches the components, through their `apply` listeners; if a listener fails, the
previous config is re-applied and the change is reported as rejected.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from agent.config.diff import diff_documents, touches
from agent.config.errors import ConfigError, ConfigIssue
from agent.config.loader import LoadedConfig, load_config, parse_sources
from agent.config.schema import RESTART_REQUIRED, Config
from agent.config.secrets import MASK
from agent.config.yamlsource import format_path
from agent.events import EventBus
from agent.selfmetrics import SelfMetrics
from agent.store import Store, StoreError
from agent.store import config_versions as versions

log = structlog.get_logger("vigil.config")
Listener = Callable[[LoadedConfig, LoadedConfig], Awaitable[None] | None]


@dataclass
class ReloadResult:
    ok: bool
    at: float
    source: str
    version_id: int | None = None
    changes: list[dict[str, Any]] = field(default_factory=list)
    requires_restart: list[str] = field(default_factory=list)
    errors: list[ConfigIssue] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "successful": self.ok,
            "at": self.at,
            "source": self.source,
            "version_id": self.version_id,
            "changes": self.changes,
            "requires_restart": self.requires_restart,
            "errors": [str(e) for e in self.errors],
        }


class ConfigManager:
    def __init__(
        self, path: str, loaded: LoadedConfig, store: Store, bus: EventBus, metrics: SelfMetrics,
    ):
        self.path = path
        self.current = loaded
        self.running = loaded  # what the process started with: restart-only settings stay at this
        self.store = store
        self.bus = bus
        self.metrics = metrics
        self.version_id: int | None = None
        self.loaded_at = time.time()
        self.last_reload: ReloadResult | None = None
        self.pending_restart: list[str] = []
        self._listeners: list[Listener] = []
        self._lock = asyncio.Lock()

    @property
    def config(self) -> Config:
        return self.current.config

    def on_apply(self, listener: Listener) -> None:
        self._listeners.append(listener)

    async def record_startup(self) -> None:
        """Store the config we started with as a version, unless it is the latest one already."""
        latest = await versions.latest(self.store)
        if latest is not None and latest.sources == self.current.sources:
            self.version_id = latest.id
        else:
            old_raw = _raw_of(latest.sources, self.path) if latest else {}
            changes = diff_documents(old_raw, self.current.raw)
            self.version_id = await versions.insert(
                self.store, time.time(), "startup", None, None, changes, self.current.sources
            )
        self.metrics.reload_ok.set(1)
        self.metrics.reload_ts.set(self.loaded_at)
        self.metrics.config_version.set(self.version_id)

    async def reload(
        self, source: str, actor: str | None = None, reason: str | None = None,
        sources: dict[str, str] | None = None,
    ) -> ReloadResult:
        """Re-read the files (or take `sources`, a proposed set of texts) and apply if valid."""
        async with self._lock:
            try:
                if sources is None:
                    new = await asyncio.to_thread(load_config, self.path, self.current.overrides)
                else:
                    new = await asyncio.to_thread(parse_sources, sources, self.path, self.current.overrides)
            except ConfigError as exc:
                return self._rejected(source, exc.issues)
            old = self.current
            changes = (diff_documents(old.raw, new.raw) or _rotated_secrets(old, new)) + _rule_file_changes(old, new)
            if not changes and new.sources == old.sources:
                return self._accepted(source, self.version_id, [], [])
            try:
                await self._apply(new, old)
            except Exception as exc:
                log.exception("config_apply_failed", source=source)
                await self._restore(old, new)
                return self._rejected(
                    source, [ConfigIssue(self.path, None, "", f"applying the change failed: {exc}")]
                )
            try:
                version_id = await versions.insert(
                    self.store, time.time(), source, actor, reason, changes, new.sources
                )
            except StoreError as exc:
                await self._restore(old, new)
                return self._rejected(source, [ConfigIssue(self.path, None, "", f"cannot record the version: {exc}")])
            # No await from here on: readers see the new config, version and result together.
            self.current = new
            self.version_id = version_id
            restart = touches(changes, RESTART_REQUIRED)
            self.pending_restart = touches(diff_documents(self.running.raw, new.raw), RESTART_REQUIRED)
            return self._accepted(source, version_id, changes, restart)

    async def write_files(
        self, texts: dict[str, str | None], source: str, actor: str | None = None, reason: str | None = None,
        restore_on_failure: bool = True,
    ) -> ReloadResult:
        """Change config files over the API: the proposed set is validated as a whole first; only a valid
        one is written (atomically, file by file) and then loaded like any edit. If loading it fails after
        all (a component refused it, or the files changed under us), the previous texts are put back,
        unless `restore_on_failure` is False: then the files keep the change for the operator to look at,
        while the components keep running the previous config (a reload re-applies it on failure)."""
        proposed = {p: t for p, t in {**self.current.sources, **texts}.items() if t is not None}
        try:
            await asyncio.to_thread(parse_sources, proposed, self.path, self.current.overrides)
        except ConfigError as exc:
            return self._rejected(source, exc.issues, publish=False)
        previous = {path: self.current.sources.get(path) for path in texts}
        try:
            await asyncio.to_thread(_write_texts, texts)
        except OSError as exc:
            await asyncio.to_thread(_write_texts_quietly, previous)
            where = getattr(exc, "filename", None) or self.path
            return self._rejected(source, [ConfigIssue(str(where), None, "", f"cannot write: {exc.strerror or exc}")],
                                  publish=False)
        result = await self.reload(source, actor, reason)
        if not result.ok and restore_on_failure:
            await asyncio.to_thread(_write_texts, previous)
        return result

    async def _apply(self, new: LoadedConfig, old: LoadedConfig) -> None:
        for listener in self._listeners:
            outcome = listener(new, old)
            if outcome is not None:
                await outcome

    async def _restore(self, old: LoadedConfig, new: LoadedConfig) -> None:
        """Hand the previous config back to the components; a component failing again is logged (the
        reload is refused either way, and the rest must still get the previous config back)."""
        try:
            await self._apply(old, new)
        except Exception:
            log.exception("config_restore_failed")

    def _accepted(
        self, source: str, version_id: int | None, changes: list[dict[str, Any]], restart: list[str]
    ) -> ReloadResult:
        now = time.time()
        result = ReloadResult(True, now, source, version_id, changes, restart)
        self.last_reload = result
        self.loaded_at = now
        self.metrics.reload_ok.set(1)
        self.metrics.reload_ts.set(now)
        if version_id is not None:
            self.metrics.config_version.set(version_id)
        if changes:
            log.info("config_reloaded", source=source, version=version_id, changes=len(changes),
                     requires_restart=restart or None)
            self.bus.publish("config_reloaded", source=source, version=version_id, changes=changes,
                             requires_restart=restart)
        return result

    def _rejected(self, source: str, issues: list[ConfigIssue], publish: bool = True) -> ReloadResult:
        """`publish` False: a proposal that was refused, not a failed reload (the running config is
        still the files' config, so the reload state and its metric stay as they are)."""
        result = ReloadResult(False, time.time(), source, self.version_id, errors=issues)
        if not publish:
            log.info("config_change_refused", source=source, errors=[str(i) for i in issues])
            return result
        self.last_reload = result
        self.metrics.reload_ok.set(0)
        log.error("config_rejected", source=source, errors=[str(i) for i in issues])
        self.bus.publish("config_rejected", source=source, errors=[i.as_dict() for i in issues])
        return result


def _rotated_secrets(old: LoadedConfig, new: LoadedConfig) -> list[dict[str, Any]]:
    """Referenced secrets whose value changed while the YAML did not (a rotated token file)."""
    if old.config == new.config:
        return []
    before, after = old.config.model_dump(), new.config.model_dump()
    changed = []
    for path in sorted(new.secret_paths, key=str):
        if _value_at(before, path) != _value_at(after, path):
            changed.append({"path": format_path(path), "old_value": MASK, "new_value": MASK})
    return changed


def _write_texts(texts: dict[str, str | None]) -> None:
    """Each file replaced by rename (a reader never sees half a file); None removes the file. The new
    file keeps the old one's mode and owner: a config holding secrets is often 0640 root:vigil, and an
    API change must not leave it world-readable. A new file starts as 0600."""
    for path, text in texts.items():
        if text is None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            continue
        directory = os.path.dirname(path) or "."
        os.makedirs(directory, exist_ok=True)
        try:
            old: os.stat_result | None = os.stat(path)
        except FileNotFoundError:
            old = None
        tmp = f"{path}.vigil-tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            if old is not None:
                os.fchmod(fh.fileno(), stat.S_IMODE(old.st_mode))
                with contextlib.suppress(PermissionError):
                    os.fchown(fh.fileno(), old.st_uid, old.st_gid)
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the rename itself survives a power loss
        finally:
            os.close(dir_fd)


def _write_texts_quietly(texts: dict[str, str | None]) -> None:
    """Put files back after a failed write, as far as the disk lets us."""
    for path, text in texts.items():
        with contextlib.suppress(OSError):
            _write_texts({path: text})


def _rule_file_changes(old: LoadedConfig, new: LoadedConfig) -> list[dict[str, Any]]:
    """Rule files are not part of the config document: a changed file is one change, with its rule counts."""
    changes = []
    for path in sorted(set(old.rule_files) | set(new.rule_files)):
        before, after = old.sources.get(path), new.sources.get(path)
        if before != after:
            changes.append({"path": f"rule_files[{path}]", "old_value": _rule_count(old, path),
                            "new_value": _rule_count(new, path)})
    return changes


def _rule_count(loaded: LoadedConfig, path: str) -> str | None:
    if path not in loaded.sources:
        return None
    return f"{sum(len(g.rules) for g in loaded.rule_groups if g.file == path)} rules"


def _value_at(data: Any, path: tuple[str | int, ...]) -> Any:
    for part in path:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _raw_of(sources: dict[str, str], path: str) -> dict[str, Any]:
    """The unvalidated merged document of stored texts (they may not validate any more)."""
    try:
        return parse_sources(sources, path).raw
    except ConfigError:
        return {}
