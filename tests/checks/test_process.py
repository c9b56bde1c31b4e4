"""`process` checks against real processes started by the test."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pydantic
import pytest

from agent.checks.base import CheckContext, CheckResult, Status
from agent.checks.process import ProcessCheck, ProcessConfig
from tests.checks.common import config_error, perf, run_check

Spawn = Callable[..., subprocess.Popen[bytes]]


def config(**keys: Any) -> ProcessConfig:
    return ProcessConfig.model_validate({"name": "t", "type": "process", **keys})


async def run_once(**keys: Any) -> CheckResult:
    return await run_check(ProcessCheck, keys)


@pytest.fixture
def marker() -> str:
    return f"vigil-test-marker-{uuid.uuid4().hex}"


@pytest.fixture
def spawn(marker: str) -> Iterator[Spawn]:
    """Start processes whose command line carries the test's marker; all are killed afterwards."""
    started: list[subprocess.Popen[bytes]] = []

    def start(code: str = "import time; time.sleep(60)", argv: list[str] | None = None) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(argv or [sys.executable, "-c", code, marker])
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.kill()
        proc.wait()


async def test_count_by_cmdline_regex(spawn: Spawn, marker: str) -> None:
    procs = [spawn() for _ in range(3)]
    result = await run_once(cmdline=f"{marker}$")
    assert result.status is Status.OK
    assert result.message.startswith(f"3 processes matching cmdline /{marker}$/ (min 1), RSS ")
    assert sorted(result.details["pids"]) == sorted(p.pid for p in procs)
    assert perf(result)["count"] == 3
    assert perf(result)["rss"] > 1024 * 1024
    assert "cpu" not in perf(result)  # the first run has no previous sample


async def test_count_bounds(spawn: Spawn, marker: str) -> None:
    spawn()
    spawn()
    result = await run_once(cmdline=marker, min_count=3)
    assert result.status is Status.CRITICAL
    assert result.message.startswith(f"2 processes matching cmdline /{marker}/ (min 3), ")
    result = await run_once(cmdline=marker, max_count=1)
    assert result.status is Status.CRITICAL
    assert result.message.startswith(f"2 processes matching cmdline /{marker}/ (min 1, max 1), ")
    result = await run_once(cmdline=marker, min_count=2, max_count=2)
    assert result.status is Status.OK


async def test_killed_processes_are_critical(spawn: Spawn, marker: str) -> None:
    proc = spawn()
    check = ProcessCheck(config(cmdline=marker), CheckContext())
    assert (await check.run()).status is Status.OK
    proc.kill()  # not reaped yet: a zombie, which runs nothing and is not counted
    result = await check.run()
    assert result.status is Status.CRITICAL
    assert result.message == f"0 processes matching cmdline /{marker}/ (min 1)"
    proc.wait()
    assert (await check.run()).status is Status.CRITICAL


async def test_min_count_zero_allows_none(marker: str) -> None:
    result = await run_once(cmdline=marker, min_count=0, max_count=0)
    assert result.status is Status.OK
    assert result.message == f"0 processes matching cmdline /{marker}/ (min 0, max 0)"


async def test_by_exact_name(spawn: Spawn, tmp_path: Path) -> None:
    name = f"vt{uuid.uuid4().hex[:10]}"
    program = tmp_path / name
    shutil.copy("/bin/sleep", program)
    spawn(argv=[str(program), "60"])
    result = await run_once(process_name=name)
    assert result.status is Status.OK
    assert result.message.startswith(f"1 process matching {name} (min 1)")
    assert (await run_once(process_name=name[:-1])).status is Status.CRITICAL  # exact, not a prefix


async def test_cpu_needs_two_samples_then_is_graded(spawn: Spawn, marker: str) -> None:
    spawn("while True: pass")
    check = ProcessCheck(config(cmdline=marker, cpu_warning=5, cpu_critical=100000), CheckContext())
    first = await check.run()
    assert first.status is Status.OK
    assert "CPU not measured yet" in first.message
    assert first.details["cpu_percent"] is None
    deadline = time.monotonic() + 10
    result = first
    while result.status is not Status.WARNING and time.monotonic() < deadline:
        await asyncio.sleep(0.05)  # CPU time moves in clock ticks: give each sample a few of them
        result = await check.run()
    assert result.status is Status.WARNING, result
    assert perf(result)["cpu"] >= 5
    assert "(warning at 5%)" in result.message
    assert result.details["cpu_measured"] == 1


async def test_memory_thresholds(spawn: Spawn, marker: str) -> None:
    spawn()
    result = await run_once(cmdline=marker, memory_warning="1KiB", memory_critical=1024 * 1024 * 1024)
    assert result.status is Status.WARNING
    assert "(warning at 1.0 KiB)" in result.message
    result = await run_once(cmdline=marker, memory_critical=1)
    assert result.status is Status.CRITICAL
    assert "(critical at 1 B)" in result.message


async def test_pidfile(spawn: Spawn, tmp_path: Path) -> None:
    proc = spawn()
    pidfile = tmp_path / "app.pid"
    pidfile.write_text(f"{proc.pid}\n")
    result = await run_once(pidfile=str(pidfile))
    assert result.status is Status.OK
    assert result.message.startswith(f"1 process matching pidfile {pidfile} (min 1)")
    assert result.details["pids"] == [proc.pid]


async def test_pidfile_problems_are_critical(spawn: Spawn, tmp_path: Path) -> None:
    pidfile = tmp_path / "app.pid"
    result = await run_once(pidfile=str(pidfile))
    assert result.status is Status.CRITICAL
    assert result.message == f"cannot read pidfile {pidfile}: No such file or directory"
    pidfile.write_text("not a pid\n")
    result = await run_once(pidfile=str(pidfile))
    assert result.status is Status.CRITICAL
    assert result.message == f"pidfile {pidfile} does not hold a pid ('not a pid')"
    proc = spawn()
    proc.kill()
    proc.wait()
    pidfile.write_text(f"{proc.pid}\n")
    result = await run_once(pidfile=str(pidfile))
    assert result.status is Status.CRITICAL
    assert result.message == f"stale pidfile {pidfile}: process {proc.pid} is not running"


def test_bad_config_is_rejected() -> None:
    with pytest.raises(pydantic.ValidationError, match="give exactly one of process_name, cmdline or pidfile"):
        config()
    with pytest.raises(pydantic.ValidationError, match=r"got process_name, cmdline"):
        config(process_name="nginx", cmdline="nginx")
    with pytest.raises(pydantic.ValidationError, match="invalid regular expression"):
        config(cmdline="nginx(")
    with pytest.raises(pydantic.ValidationError, match=r"max_count \(1\) must not be below min_count \(2\)"):
        config(process_name="nginx", min_count=2, max_count=1)
    with pytest.raises(pydantic.ValidationError, match=r"cpu: warning \(90\) must not exceed critical \(80\)"):
        config(process_name="nginx", cpu_warning=90, cpu_critical=80)
    with pytest.raises(pydantic.ValidationError, match="memory: warning"):
        config(process_name="nginx", memory_warning="2GiB", memory_critical="1GiB")
    with pytest.raises(pydantic.ValidationError, match="write MiB"):
        config(process_name="nginx", memory_warning="512MB")
    with pytest.raises(pydantic.ValidationError, match="is not an absolute path"):
        config(pidfile="run/app.pid")


def test_bad_regex_in_config_file_names_file_and_line() -> None:
    text = (
        "checks:\n"
        "  - name: workers\n"
        "    type: process\n"
        "    cmdline: 'gunicorn: worker ['\n"
    )
    message = config_error(text, "/etc/vigil/checks.d/app.yaml")
    assert "/etc/vigil/checks.d/app.yaml:4: checks[0].cmdline:" in message
    assert "invalid regular expression" in message
