"""Managed services: the units in config (`units:`), and nothing else, can be seen and controlled.

The allowlist is the config: a name that is not in it is unknown here (KeyError), so the API can
never be used to start or stop an arbitrary unit on the host. systemd units are driven through
systemctl; commands without a unit are run and supervised by Vigil itself.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import structlog

from agent.api.formats import human_duration, iso
from agent.units.config import UnitConfig
from agent.units.supervised import SupervisedUnit
from agent.units.systemd import SystemctlRunner, SystemdUnit

log = structlog.get_logger("vigil.units")

ACTIONS = ("start", "stop", "restart")
STATUSES = ("running", "stopped", "failed", "starting", "unknown")

Unit = SystemdUnit | SupervisedUnit


def human_bytes(n: int | None) -> str | None:
    """`145MB`, `1.5GB` (powers of 1024, as `ps` and `top` count)."""
    if n is None:
        return None
    value = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{value:.1f}{unit}" if unit != "B" and value < 10 else f"{value:.0f}{unit}"
        value /= 1024
    return f"{value:.0f}TB"


class UnitStartError(Exception):
    """Units that a reloaded config starts did not start (the message names each and says why)."""


class UnitManager:
    def __init__(self, units: list[UnitConfig], systemctl: str, state_dir: str):
        self.state_dir = state_dir
        self._runner = SystemctlRunner(systemctl)
        self._units: dict[str, Unit] = {cfg.name: self._make(cfg) for cfg in units}
        self._locks: dict[str, asyncio.Lock] = {}  # one systemctl action at a time per unit
        self._started = False

    def _make(self, cfg: UnitConfig) -> Unit:
        if cfg.unit is not None:
            return SystemdUnit(cfg, self._runner)
        return SupervisedUnit(cfg, self.state_dir)

    def _supervised(self) -> list[SupervisedUnit]:
        return [u for u in self._units.values() if isinstance(u, SupervisedUnit)]

    async def start(self) -> None:
        """Start the supervised commands marked `autostart`."""
        self._started = True
        await self._each("unit_autostart_failed", [u.start() for u in self._supervised() if u.config.autostart])

    async def configure(self, units: list[UnitConfig], systemctl: str | None = None, strict: bool = False) -> None:
        """Apply a reloaded allowlist: new units appear (supervised ones autostart), removed supervised
        commands are stopped, a changed command or environment restarts a running one. With `strict`
        (a config reload), a unit the change adds whose autostart fails raises UnitStartError once
        everything else is done, so the reload is refused and undone. A restart that fails does not:
        undoing the change would not start the previous command again."""
        if systemctl is not None and systemctl != self._runner.systemctl:
            self._runner = SystemctlRunner(systemctl)
            for unit in self._units.values():
                if isinstance(unit, SystemdUnit):
                    unit.runner = self._runner
        old = self._units
        wanted = {cfg.name: cfg for cfg in units}
        kept: dict[str, Unit] = {}
        retired: list[SupervisedUnit] = [u for n, u in old.items() if n not in wanted and isinstance(u, SupervisedUnit)]
        starts: list[SupervisedUnit] = []
        restarts: list[SupervisedUnit] = []
        for name, cfg in wanted.items():
            current = old.get(name)
            if current is not None and current.config.kind == cfg.kind:
                if isinstance(current, SupervisedUnit):
                    respawn = current.running and current.spawn_settings_differ(cfg)
                    current.update(cfg)
                    if respawn:
                        restarts.append(current)
                else:
                    current.config = cfg
                kept[name] = current
                continue
            if isinstance(current, SupervisedUnit):
                retired.append(current)
            unit = self._make(cfg)
            kept[name] = unit
            if isinstance(unit, SupervisedUnit) and cfg.autostart and self._started:
                starts.append(unit)
        # Swap first: from here on the API no longer offers what is being removed.
        self._units = kept
        for name in list(self._locks):
            if name not in kept:
                del self._locks[name]
        added = [n for n in wanted if n not in old]
        removed = [n for n in old if n not in wanted]
        if added or removed or restarts:
            log.info("units_configured", added=added, removed=removed, restarted=[u.name for u in restarts])
        await self._each("unit_stop_failed", [u.close() for u in retired])
        await self._each("unit_restart_failed", [u.restart() for u in restarts], restarts)
        failed = await self._each("unit_autostart_failed", [u.start() for u in starts], starts)
        if strict and failed:
            raise UnitStartError("; ".join(failed))

    def names(self) -> list[str]:
        return list(self._units)

    def get(self, name: str) -> UnitConfig | None:
        unit = self._units.get(name)
        return unit.config if unit is not None else None

    def _unit(self, name: str) -> Unit:
        unit = self._units.get(name)
        if unit is None:
            raise KeyError(name)
        return unit

    async def status(self, name: str) -> dict[str, Any]:
        unit = self._unit(name)
        return self._view(unit.config, await unit.status())

    async def statuses(self) -> list[dict[str, Any]]:
        units = list(self._units.values())
        raws = await asyncio.gather(*(u.status() for u in units))
        return [self._view(u.config, raw) for u, raw in zip(units, raws, strict=True)]

    async def action(self, name: str, action: str) -> dict[str, Any]:
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}; expected one of {', '.join(ACTIONS)}")
        unit = self._unit(name)
        started = time.perf_counter()
        if isinstance(unit, SupervisedUnit):
            ok, message = await getattr(unit, action)()
        else:
            async with self._locks.setdefault(name, asyncio.Lock()):
                ok, message = await unit.action(action)
        duration_ms = round((time.perf_counter() - started) * 1000, 1)
        state = self._view(unit.config, await unit.status())
        return {
            "unit": name, "action": action, "status": "completed" if ok else "failed",
            "duration_ms": duration_ms, "message": message, "state": state,
        }

    async def close(self) -> None:
        """Stop the supervised commands (SIGTERM, SIGKILL after each one's stop_timeout)."""
        await self._each("unit_stop_failed", [u.close() for u in self._supervised()])

    @staticmethod
    async def _each(event: str, steps: list[Any], units: list[SupervisedUnit] | None = None) -> list[str]:
        """Run the steps together; what failed, in words (a start answers (False, why) rather than raising)."""
        failures = []
        for i, result in enumerate(await asyncio.gather(*steps, return_exceptions=True)):
            name = units[i].name if units else "?"
            if isinstance(result, BaseException):
                log.error(event, error=repr(result))
                failures.append(f"unit {name!r}: {result!r}")
            elif isinstance(result, tuple) and result and result[0] is False:
                failures.append(f"unit {name!r} did not start: {result[1]}")
        return failures

    @staticmethod
    def _view(cfg: UnitConfig, raw: dict[str, Any]) -> dict[str, Any]:
        uptime = raw.pop("uptime_seconds", None)
        started_at = raw.pop("started_at", None)
        memory = raw.pop("memory_bytes", None)
        found_description = raw.pop("description", None)
        view: dict[str, Any] = {
            "name": cfg.name,
            "kind": cfg.kind,
            "unit": cfg.unit,
            "command": cfg.command,
            "description": cfg.description or found_description or "",
            "status": raw.pop("status", "unknown"),
            "active_state": raw.pop("active_state", None),
            "sub_state": raw.pop("sub_state", None),
            "pid": raw.pop("pid", None),
            "uptime_seconds": round(uptime, 3) if uptime is not None else None,
            "uptime": human_duration(uptime) if uptime is not None else None,
            "started_at": iso(started_at),
            "restarts": raw.pop("restarts", 0),
            "memory_bytes": memory,
            "memory": human_bytes(memory),
            "last_exit_code": raw.pop("last_exit_code", None),
            "error": raw.pop("error", None),
        }
        view.update(raw)  # kind-specific extras: load_state; log_file, restart_policy, next_start_in
        return view
