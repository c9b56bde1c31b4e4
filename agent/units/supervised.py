"""A command Vigil runs and supervises itself, for hosts (or containers) where a program is not a
systemd unit.

The program runs in its own session, so stopping it reaches whatever it started: SIGTERM to the
process group, SIGKILL after `stop_timeout`. Its output is appended to `<state_dir>/units/<name>.log`.
After an exit it is started again by its `restart` policy, but a program that keeps failing
within STABLE_AFTER seconds of starting waits twice as long each time (up to BACKOFF_CAP): a crash
loop costs a start a minute, not a spinning core. A pid file lets a Vigil that was killed without
stopping its programs find and stop the orphan before starting a second copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from typing import IO, Any

import psutil
import structlog

from agent.api.formats import iso
from agent.units.config import UnitConfig

log = structlog.get_logger("vigil.units")

STABLE_AFTER = 10.0  # a run shorter than this counts as a crash-loop iteration
BACKOFF_CAP = 60.0
BACKOFF_FLOOR = 1.0  # restart_delay 0 restarts at once the first time, then backs off from 1 s
LOG_ROTATE_BYTES = 10 * 1024 * 1024  # at a start, a larger log moves to <name>.log.1
# Variables that belong to Vigil's own relation with systemd, not to the programs it runs.
_PRIVATE_ENV = ("NOTIFY_SOCKET", "WATCHDOG_PID", "WATCHDOG_USEC", "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")


def signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of a process group, from /proc.

    Zombies do not count: a grandchild that exited is reparented to PID 1, and in a container
    whose PID 1 does not reap, it would otherwise keep every stop waiting for stop_timeout."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return []
    except PermissionError:
        return [pgid]
    members = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        fields = data[data.rfind(b")") + 2:].split()  # after "pid (comm) ": state ppid pgrp ...
        if len(fields) > 2 and fields[0] not in (b"Z", b"X") and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


async def end_group(pgid: int, timeout: float) -> bool:  # noqa: ASYNC109
    """SIGTERM to the group, SIGKILL to what is left after `timeout`; True when SIGKILL was needed."""
    signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while await asyncio.to_thread(group_members, pgid):
        if time.monotonic() >= deadline:
            signal_group(pgid, signal.SIGKILL)
            return True
        await asyncio.sleep(0.05)
    return False


def _group_rss(pid: int) -> int | None:
    try:
        main = psutil.Process(pid)
        total = main.memory_info().rss
        for child in main.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                total += child.memory_info().rss
    except psutil.Error:
        return None
    return total


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with status {code}"


class SupervisedUnit:
    def __init__(self, config: UnitConfig, state_dir: str):
        assert config.command is not None
        self.config = config
        self.dir = os.path.join(state_dir, "units")
        self.log_path = os.path.join(self.dir, f"{config.name}.log")
        self.pid_path = os.path.join(self.dir, f"{config.name}.pid")
        self._lock = asyncio.Lock()
        self._proc: asyncio.subprocess.Process | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._restart_task: asyncio.Task[None] | None = None
        self._started_at: float | None = None  # wall clock, for the API
        self._started_mono = 0.0
        self._wanted = False  # an operator (or autostart) asked for it to run
        self._stopping = False
        self._restarts = 0
        self._last_exit_code: int | None = None
        self._failed = False
        self._error: str | None = None
        self._delay = config.restart_delay
        self._quick_failures = 0
        self._next_start: float | None = None  # monotonic time of a scheduled automatic start

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    def update(self, config: UnitConfig) -> None:
        """Take new policy settings (restart, delays, timeouts); they apply from the next exit or start."""
        self.config = config

    def spawn_settings_differ(self, other: UnitConfig) -> bool:
        """Whether `other` starts the program differently (a running one must restart to pick it up)."""
        return (other.command, other.working_dir, other.environment) != (
            self.config.command, self.config.working_dir, self.config.environment)

    # --- operator actions -----------------------------------------------------------------

    async def start(self) -> tuple[bool, str]:
        async with self._lock:
            return await self._start_locked()

    async def stop(self) -> tuple[bool, str]:
        async with self._lock:
            return await self._stop_locked()

    async def restart(self) -> tuple[bool, str]:
        async with self._lock:
            ok, stopped = await self._stop_locked()
            if not ok:
                return ok, stopped
            ok, started = await self._start_locked()
            return ok, f"{stopped}; {started}"

    async def close(self) -> None:
        await self.stop()

    async def _start_locked(self) -> tuple[bool, str]:
        self._wanted = True
        self._cancel_restart()
        self._delay = self.config.restart_delay
        self._quick_failures = 0
        if self.running:
            assert self._proc is not None
            return True, f"already running (pid {self._proc.pid})"
        error = await self._spawn()
        if error is not None:
            self._after_exit(failed=True, ran_for=0.0)
            return False, error
        assert self._proc is not None
        return True, f"started (pid {self._proc.pid})"

    async def _stop_locked(self) -> tuple[bool, str]:
        self._wanted = False
        self._cancel_restart()
        proc = self._proc
        if proc is None or proc.returncode is not None:
            self._failed = False
            return True, "not running"
        self._stopping = True
        try:
            killed = await end_group(proc.pid, self.config.stop_timeout)
            try:
                await asyncio.wait_for(proc.wait(), 5.0)
            except TimeoutError:
                return False, f"pid {proc.pid} did not exit after SIGKILL"
            if self._watcher is not None:
                await asyncio.shield(self._watcher)
        finally:
            self._stopping = False
        self._failed = False
        self._error = None
        how = f"SIGKILL after {self.config.stop_timeout:g}s" if killed else "SIGTERM"
        log.info("unit_stopped", unit=self.name, pid=proc.pid, signal="SIGKILL" if killed else "SIGTERM",
                 exit_code=proc.returncode)
        return True, f"stopped pid {proc.pid} ({how})"

    # --- the process ----------------------------------------------------------------------

    async def _spawn(self) -> str | None:
        """Start the program; the error message when it could not be started."""
        cfg = self.config
        assert cfg.command is not None
        await self._end_leftover()
        env = {k: v for k, v in os.environ.items() if k not in _PRIVATE_ENV}
        env.update(cfg.environment)
        try:
            out = await asyncio.to_thread(self._open_log)
        except OSError as exc:
            return self._spawn_failed(f"cannot open {self.log_path}: {exc.strerror or exc}")
        try:
            proc = await asyncio.create_subprocess_exec(
                *cfg.command, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out,
                cwd=cfg.working_dir, env=env, start_new_session=True,
            )
        except OSError as exc:
            await asyncio.to_thread(self._note, out, f"cannot start: {exc.strerror or exc}", close=True)
            return self._spawn_failed(f"cannot run {cfg.command[0]}: {exc.strerror or exc}")
        self._proc = proc
        self._started_at = time.time()
        self._started_mono = time.monotonic()
        self._failed = False
        self._error = None
        self._watcher = asyncio.create_task(self._watch(proc, self._started_mono), name=f"unit-{self.name}")
        log.info("unit_started", unit=self.name, pid=proc.pid, command=cfg.command[0])
        try:
            await asyncio.to_thread(self._started, out, proc.pid)
        except OSError as exc:
            log.warning("unit_pid_file_failed", unit=self.name, path=self.pid_path, error=str(exc))
        return None

    def _spawn_failed(self, message: str) -> str:
        self._proc = None
        self._failed = True
        self._error = message
        self._last_exit_code = None
        log.error("unit_start_failed", unit=self.name, error=message)
        return message

    async def _watch(self, proc: asyncio.subprocess.Process, started: float) -> None:
        code = await proc.wait()
        ran_for = time.monotonic() - started
        self._last_exit_code = code
        await asyncio.to_thread(self._exited, code)
        if self._stopping or self._proc is not proc:
            return  # an operator's stop (it ends the group and reports) or already started again
        # What the program left behind in its group would hold ports and files of the next start.
        await end_group(proc.pid, self.config.stop_timeout)
        if self._stopping or self._proc is not proc:
            return
        failed = code != 0
        self._failed = failed
        self._error = f"{describe_exit(code)} after {ran_for:.1f}s" if failed else None
        log.warning("unit_exited", unit=self.name, pid=proc.pid, exit_code=code, ran_for=round(ran_for, 3))
        self._after_exit(failed, ran_for)

    def _after_exit(self, failed: bool, ran_for: float) -> None:
        """Schedule the automatic start the policy asks for, backing off in a crash loop."""
        policy = self.config.restart
        if not self._wanted or policy == "no" or (policy == "on-failure" and not failed):
            return
        if ran_for >= STABLE_AFTER:
            self._delay = self.config.restart_delay
            self._quick_failures = 0
        delay = self._delay
        if ran_for < STABLE_AFTER:
            self._quick_failures += 1
            cap = max(BACKOFF_CAP, self.config.restart_delay)
            self._delay = min(max(self._delay * 2, BACKOFF_FLOOR), cap)
        self._next_start = time.monotonic() + delay
        if self._quick_failures > 1:
            log.warning("unit_crash_loop", unit=self.name, failures=self._quick_failures, next_start_in=delay)
        self._restart_task = asyncio.create_task(self._restart_later(delay), name=f"unit-{self.name}-restart")

    async def _restart_later(self, delay: float) -> None:
        await asyncio.sleep(delay)
        async with self._lock:
            if self._restart_task is not asyncio.current_task():
                return
            self._restart_task = None
            self._next_start = None
            if not self._wanted or self.running:
                return
            self._restarts += 1
            log.info("unit_restarting", unit=self.name, restarts=self._restarts)
            if await self._spawn() is not None:
                self._after_exit(failed=True, ran_for=0.0)

    def _cancel_restart(self) -> None:
        if self._restart_task is not None:
            self._restart_task.cancel()
            self._restart_task = None
        self._next_start = None

    async def _end_leftover(self) -> None:
        """Stop a copy a previous Vigil left running (it died without stopping its programs)."""
        pid = await asyncio.to_thread(self._leftover_pid)
        if pid is not None:
            log.warning("unit_leftover_stopped", unit=self.name, pid=pid)
            await end_group(pid, self.config.stop_timeout)

    # --- files (run in a thread) ----------------------------------------------------------

    def _open_log(self) -> IO[bytes]:
        os.makedirs(self.dir, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            if os.path.getsize(self.log_path) > LOG_ROTATE_BYTES:
                os.replace(self.log_path, self.log_path + ".1")
        return open(self.log_path, "ab")

    def _note(self, out: IO[bytes], text: str, close: bool = False) -> None:
        try:
            out.write(f"-- vigil {iso(time.time())}: {text}\n".encode())
            out.flush()
        finally:
            if close:
                out.close()

    def _started(self, out: IO[bytes], pid: int) -> None:
        self._note(out, f"started pid {pid}: {' '.join(self.config.command or [])}", close=True)
        try:
            create_time = psutil.Process(pid).create_time()
        except psutil.Error:
            return
        tmp = self.pid_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(f"{pid} {create_time}\n")
        os.replace(tmp, self.pid_path)

    def _exited(self, code: int) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.pid_path)
        with contextlib.suppress(OSError), open(self.log_path, "ab") as out:
            self._note(out, describe_exit(code))

    def _leftover_pid(self) -> int | None:
        try:
            with open(self.pid_path) as f:
                pid_text, created_text = f.read().split()
            pid, created = int(pid_text), float(created_text)
        except (OSError, ValueError):
            return None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.pid_path)
        try:
            same = abs(psutil.Process(pid).create_time() - created) < 0.01
        except psutil.Error:
            return None
        return pid if same else None

    # --- state ----------------------------------------------------------------------------

    async def status(self) -> dict[str, Any]:
        """Raw state fields (see UnitManager.status for their meaning)."""
        proc = self._proc
        state: dict[str, Any] = {
            "restarts": self._restarts, "last_exit_code": self._last_exit_code, "error": self._error,
            "description": None, "log_file": self.log_path, "restart_policy": self.config.restart,
        }
        if proc is not None and proc.returncode is None:
            state.update(status="running", active_state="active", sub_state="running", pid=proc.pid,
                         started_at=self._started_at,
                         uptime_seconds=max(time.monotonic() - self._started_mono, 0.0),
                         memory_bytes=await asyncio.to_thread(_group_rss, proc.pid))
            return state
        if self._next_start is not None:
            crash_loop = self._quick_failures > 1
            state.update(status="failed" if crash_loop else "starting",
                         active_state="failed" if crash_loop else "activating", sub_state="auto-restart",
                         next_start_in=round(max(self._next_start - time.monotonic(), 0.0), 1))
        elif self._failed:
            state.update(status="failed", active_state="failed", sub_state="failed")
        else:
            state.update(status="stopped", active_state="inactive", sub_state="dead")
        return state
