"""Watch the config file and its drop-in dirs; call back once per burst of edits.

The directories are watched, not the files: editors and config management replace files by
rename, which a watch on the old inode would miss.
"""

from __future__ import annotations

import asyncio
import fnmatch
import os
from collections.abc import Awaitable, Callable

import structlog
import watchfiles

log = structlog.get_logger("vigil.config")


class ConfigWatcher:
    def __init__(
        self, config_path: str, patterns: list[str], debounce: float,
        on_change: Callable[[list[str]], Awaitable[None]],
    ):
        self.config_path = os.path.abspath(config_path)
        base = os.path.dirname(self.config_path)
        self.globs = [p if os.path.isabs(p) else os.path.join(base, p) for p in patterns]
        self.debounce = debounce
        self.on_change = on_change
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._roots: set[str] = set()

    def relevant(self, path: str) -> bool:
        path = os.path.abspath(path)
        # A drop-in dir itself counts: files written right after its mkdir can land before the
        # new dir is watched, so its creation triggers a reload that reads whatever is there.
        return (path == self.config_path or any(fnmatch.fnmatch(path, g) for g in self.globs)
                or any(path == os.path.dirname(g) for g in self.globs))

    def start(self) -> None:
        self._roots = self.roots()
        self._task = asyncio.create_task(self._run(), name="config-watcher")

    def roots(self) -> set[str]:
        """Directories to watch: the config file's (recursively: conf.d/ may appear later) and
        each drop-in directory that exists. One outside the config dir that does not exist yet is
        picked up by the next reload (SIGHUP) after it is created."""
        roots = {os.path.dirname(self.config_path)}
        roots.update(os.path.dirname(g) for g in self.globs if os.path.isdir(os.path.dirname(g)))
        return roots

    def stale(self) -> bool:
        return self._roots != self.roots()

    async def _run(self) -> None:
        roots = self._roots
        for g in self.globs:
            if not os.path.isdir(os.path.dirname(g)) and not any(os.path.dirname(g).startswith(r + os.sep)
                                                                    for r in roots):
                log.warning("include_dir_missing", dir=os.path.dirname(g),
                            hint="create it, then reload (SIGHUP) to watch it")
        step = max(int(self.debounce * 1000), 10)
        while not self._stop.is_set():
            try:
                async for changes in watchfiles.awatch(
                    *sorted(roots), stop_event=self._stop, debounce=max(800, step * 4), step=step,
                    watch_filter=lambda _change, path: self.relevant(path), recursive=True,
                ):
                    paths = sorted({p for _c, p in changes})
                    await self.on_change(paths)
            except Exception:
                log.exception("config_watch_failed")
                try:
                    await asyncio.wait_for(self._stop.wait(), 5)
                except TimeoutError:
                    continue

    async def stop(self) -> None:
        self._stop.set()
        # Stopped from its own callback (a reload that changed `include`): the loop ends by itself.
        if self._task is not None and self._task is not asyncio.current_task():
            try:
                await asyncio.wait_for(self._task, 5)
            except TimeoutError:
                self._task.cancel()
