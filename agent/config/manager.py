"""The running config: reload from files, signal or API, all-or-nothing, with versions.

A reload parses and validates everything first (in a thread: it reads files). Only a fully
valid config reaches the components, through their `apply` listeners; if a listener fails, the
previous config is re-applied and the change is reported as rejected.
"""

from __future__ import annotations

import asyncio
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
Listener = Callable[[Config, Config], Awaitable[None] | None]


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
            changes = diff_documents(old.raw, new.raw) or _rotated_secrets(old, new)
            if not changes and new.sources == old.sources:
                return self._accepted(source, self.version_id, [], [])
            try:
                await self._apply(new.config, old.config)
            except Exception as exc:
                log.exception("config_apply_failed", source=source)
                await self._apply(old.config, new.config)
                return self._rejected(
                    source, [ConfigIssue(self.path, None, "", f"applying the change failed: {exc}")]
                )
            try:
                version_id = await versions.insert(
                    self.store, time.time(), source, actor, reason, changes, new.sources
                )
            except StoreError as exc:
                await self._apply(old.config, new.config)
                return self._rejected(source, [ConfigIssue(self.path, None, "", f"cannot record the version: {exc}")])
            # No await from here on: readers see the new config, version and result together.
            self.current = new
            self.version_id = version_id
            restart = touches(changes, RESTART_REQUIRED)
            self.pending_restart = touches(diff_documents(self.running.raw, new.raw), RESTART_REQUIRED)
            return self._accepted(source, version_id, changes, restart)

    async def _apply(self, new: Config, old: Config) -> None:
        for listener in self._listeners:
            outcome = listener(new, old)
            if outcome is not None:
                await outcome

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

    def _rejected(self, source: str, issues: list[ConfigIssue]) -> ReloadResult:
        result = ReloadResult(False, time.time(), source, self.version_id, errors=issues)
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
