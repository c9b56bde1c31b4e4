"""Running a program for a check or an action: no shell, a timeout, bounded output.

The program gets its own process group so that a timeout kills what it started too (a plugin
that forks `ping` must not leave it behind), and output beyond `max_bytes` is drained and
dropped rather than buffered: a command printing megabytes costs no memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from dataclasses import dataclass


@dataclass
class ProcResult:
    argv: list[str]
    returncode: int | None  # None: killed at the timeout
    stdout: str
    stderr: str
    duration: float
    timed_out: bool = False
    truncated: bool = False
    error: str | None = None  # could not start (not found, not executable)


async def _read_bounded(stream: asyncio.StreamReader | None, max_bytes: int) -> tuple[bytes, bool]:
    if stream is None:
        return b"", False
    kept = bytearray()
    truncated = False
    while True:
        chunk = await stream.read(65536)
        if not chunk:
            return bytes(kept), truncated
        room = max_bytes - len(kept)
        if room > 0:
            kept += chunk[:room]
        if len(chunk) > room:
            truncated = True


async def run_program(
    argv: list[str], timeout: float, max_bytes: int = 65536, env: dict[str, str] | None = None,  # noqa: ASYNC109
    stdin: bytes | None = None, cwd: str | None = None,
) -> ProcResult:
    started = time.perf_counter()
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            start_new_session=True, env=env, cwd=cwd,
        )
    except OSError as exc:
        return ProcResult(argv, None, "", "", time.perf_counter() - started,
                          error=f"cannot run {argv[0]}: {exc.strerror or exc}")
    if stdin is not None and proc.stdin is not None:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            proc.stdin.write(stdin)
            await proc.stdin.drain()
        proc.stdin.close()
    readers = asyncio.gather(_read_bounded(proc.stdout, max_bytes), _read_bounded(proc.stderr, max_bytes))
    timed_out = False
    try:
        (out, out_cut), (err, err_cut) = await asyncio.wait_for(asyncio.shield(readers), timeout)
        await asyncio.wait_for(proc.wait(), max(timeout - (time.perf_counter() - started), 0.05))
    except asyncio.CancelledError:  # the caller gave up (the runner's timeout): leave nothing running
        kill_group(proc.pid)
        raise
    except TimeoutError:
        timed_out = True
        kill_group(proc.pid)
        # The pipes close once every process of the group is gone; a child that escaped the group
        # could hold them open, so do not wait for the readers forever.
        try:
            (out, out_cut), (err, err_cut) = await asyncio.wait_for(readers, 2.0)
        except TimeoutError:
            (out, out_cut), (err, err_cut) = (b"", False), (b"", False)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), 2.0)
    finally:
        if not readers.done():
            readers.cancel()
    return ProcResult(
        argv, None if timed_out else proc.returncode, out.decode("utf-8", "replace"),
        err.decode("utf-8", "replace"), time.perf_counter() - started, timed_out, out_cut or err_cut,
    )


def kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
