"""`command` checks: Debian's monitoring-plugins and small scripts written by the test, run for real."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psutil
import pydantic
import pytest

from agent.checks.base import CheckContext, CheckResult, Status
from agent.checks.command import CommandCheck, CommandConfig
from agent.checks.perfdata import normalise
from tests.checks.common import config_error, run_check
from tests.conftest import free_port, require_binary, wait_for

PLUGINS = "/usr/lib/nagios/plugins"


def config(command: list[str], **extra: Any) -> CommandConfig:
    return CommandConfig.model_validate({"name": "t", "type": "command", "command": command, **extra})


async def run(command: list[str], ctx: CheckContext | None = None, **extra: Any) -> CheckResult:
    return await run_check(CommandCheck, {"command": command, **extra}, ctx)


def script(tmp_path: Path, name: str, body: str) -> str:
    """An executable Python script in tmp_path (the test's own interpreter, so no PATH lookup)."""
    path = tmp_path / name
    path.write_text(f"#!{sys.executable}\n{body}")
    path.chmod(0o755)
    return str(path)


@pytest.fixture
def dummy() -> str:
    return require_binary(f"{PLUGINS}/check_dummy")


async def test_check_dummy_ok(dummy: str) -> None:
    result = await run([dummy, "0", "all good"])
    assert result.status is Status.OK
    assert result.message == "OK: all good"
    assert result.perfdata == []
    assert result.details["exit_status"] == 0


@pytest.mark.parametrize(("code", "status", "word"), [
    ("1", Status.WARNING, "WARNING"), ("2", Status.CRITICAL, "CRITICAL"), ("3", Status.UNKNOWN, "UNKNOWN"),
])
async def test_check_dummy_states(dummy: str, code: str, status: Status, word: str) -> None:
    result = await run([dummy, code, "some text"])
    assert result.status is status
    assert result.message == f"{word}: some text"


@pytest.fixture
async def listener() -> AsyncIterator[int]:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


async def test_check_tcp_against_a_real_listener(listener: int) -> None:
    check_tcp = require_binary(f"{PLUGINS}/check_tcp")
    result = await run([check_tcp, "-H", "127.0.0.1", "-p", str(listener)])
    assert result.status is Status.OK, result
    assert result.message.startswith("TCP OK")
    (time_perf,) = [p for p in result.perfdata if p.label == "time"]
    assert time_perf.uom == "s"
    assert 0 <= time_perf.value < 5
    assert normalise(time_perf) == (time_perf.value, "seconds")


async def test_check_tcp_closed_port_is_critical() -> None:
    check_tcp = require_binary(f"{PLUGINS}/check_tcp")
    result = await run([check_tcp, "-H", "127.0.0.1", "-p", str(free_port())])
    assert result.status is Status.CRITICAL
    assert "Connection refused" in result.message


async def test_check_disk_perfdata_in_byte_units() -> None:
    check_disk = require_binary(f"{PLUGINS}/check_disk")
    result = await run([check_disk, "-w", "10%", "-c", "5%", "-p", "/"])
    assert result.status in (Status.OK, Status.WARNING, Status.CRITICAL), result
    assert result.message.startswith("DISK ")
    (root,) = [p for p in result.perfdata if p.label == "/"]
    assert root.uom in ("B", "KB", "MB", "GB", "TB")  # B in monitoring-plugins 2.3.3, MB before
    assert root.max is not None and root.max > 0
    value, unit = normalise(root)
    assert unit == "bytes"
    total = os.statvfs("/").f_blocks * os.statvfs("/").f_frsize
    assert 0 < value <= total


async def test_timeout_is_unknown_with_the_reason_and_kills_the_program(tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    path = script(tmp_path, "slow", (
        "import subprocess, sys, time\n"
        "print('starting', flush=True)\n"
        f"subprocess.Popen(['sh', '-c', 'echo $$ > {pidfile}; exec sleep 30'])\n"
        "time.sleep(30)\n"
    ))
    started = time.monotonic()
    check = CommandCheck(config([path], timeout="1s", interval="10s"), CheckContext())
    result = await check.run()
    assert time.monotonic() - started < 3
    assert CommandCheck.timeout_status is Status.UNKNOWN
    assert result.status is Status.UNKNOWN
    assert result.message == "timed out after 0.9s"
    assert result.details["output"] == "starting"
    grandchild = int(wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 5, "the grandchild's pid"))

    def gone() -> bool:
        try:
            return psutil.Process(grandchild).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    wait_for(gone, 5, "the program's child to be killed with it")


async def test_megabytes_of_output_are_truncated(tmp_path: Path) -> None:
    path = script(tmp_path, "chatty", (
        "import sys\n"
        "sys.stdout.write('OK: lots of output | first=1s\\n')\n"
        "for i in range(50000):\n"
        "    sys.stdout.write(f'line {i} | x{i}=123456789\\n')\n"
    ))
    result = await run([path], CheckContext(max_output_bytes=4096))
    assert result.status is Status.OK
    assert result.message == "OK: lots of output"
    assert result.details["truncated"] == "(output truncated at 4096 bytes)"
    assert result.perfdata[0].label == "first"
    # Only complete lines are read, so no perfdata item is cut in the middle of its value.
    assert all(p.value == 123456789 for p in result.perfdata[1:])


async def test_one_huge_line_is_a_bounded_message(tmp_path: Path) -> None:
    path = script(tmp_path, "oneline", "import sys\nsys.stdout.write('WARNING: ' + 'x' * 3_000_000)\nsys.exit(1)\n")
    result = await run([path])
    assert result.status is Status.WARNING
    assert result.message.startswith("WARNING: xxx")
    assert len(result.message) <= 501
    assert "truncated" in result.details


async def test_long_output_kept_in_details_is_clipped(tmp_path: Path) -> None:
    path = script(tmp_path, "verbose", "print('OK: fine')\nfor i in range(5000):\n    print(f'detail line {i}')\n")
    result = await run([path], CheckContext(max_output_bytes=1024 * 1024))
    assert "truncated" not in result.details
    assert result.details["long_output"].startswith("detail line 0\ndetail line 1\n")
    assert len(result.details["long_output"]) == 4097  # 4096 characters and an ellipsis


async def test_exit_status_outside_the_protocol_is_unknown(tmp_path: Path) -> None:
    path = script(tmp_path, "seven", "print('something odd')\nraise SystemExit(7)\n")
    result = await run([path])
    assert result.status is Status.UNKNOWN
    assert result.message == "seven: exit status 7 is not a plugin state (0-3): something odd"
    assert result.details["exit_status"] == 7


async def test_killed_by_a_signal_is_unknown(tmp_path: Path) -> None:
    path = script(tmp_path, "killed", "import os, signal\nos.kill(os.getpid(), signal.SIGTERM)\n")
    result = await run([path])
    assert result.status is Status.UNKNOWN
    assert result.message == "killed: killed by signal SIGTERM"


async def test_long_output_and_perfdata_lines(tmp_path: Path) -> None:
    path = script(tmp_path, "long", (
        "print('CRITICAL - 2 of 3 bad | total=3;;;0')\n"
        "print('db1 ok')\n"
        "print('db2 down | \\'db2 lag\\'=12.5s;5;10')\n"
        "print('junk=12,5% db3=7B')\n"
        "raise SystemExit(2)\n"
    ))
    result = await run([path])
    assert result.status is Status.CRITICAL
    assert result.message == "CRITICAL - 2 of 3 bad"
    assert result.details["long_output"] == "db1 ok\ndb2 down"
    assert [(p.label, p.value, p.uom) for p in result.perfdata] == [
        ("total", 3.0, ""), ("db2 lag", 12.5, "s"), ("db3", 7.0, "B")]
    assert result.details["perfdata_skipped"] == 1
    assert result.details["perfdata_skipped_items"] == ["junk=12,5%"]


async def test_message_from_stderr_when_stdout_is_empty(tmp_path: Path) -> None:
    path = script(tmp_path, "err", "import sys\nsys.stderr.write('cannot open /etc/thing: Permission denied\\n')\n"
                                   "sys.exit(3)\n")
    result = await run([path])
    assert result.status is Status.UNKNOWN
    assert result.message == "cannot open /etc/thing: Permission denied"
    assert "Permission denied" in result.details["stderr"]


async def test_no_output_says_so(tmp_path: Path) -> None:
    result = await run([script(tmp_path, "quiet", "raise SystemExit(1)\n")])
    assert (result.status, result.message) == (Status.WARNING, "no output (exit status 1)")


async def test_minimal_environment_plus_configured_variables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIL_TEST_SECRET", "hunter2")
    path = script(tmp_path, "env", "import os\nprint('OK', sorted(os.environ), os.environ.get('GREETING'))\n")
    result = await run([path], environment={"GREETING": "hello"})
    assert result.status is Status.OK
    assert "VIGIL_TEST_SECRET" not in result.message
    assert "'LANG'" in result.message and "'PATH'" in result.message
    assert result.message.endswith("hello")


async def test_working_dir(tmp_path: Path) -> None:
    (tmp_path / "work").mkdir()
    path = script(tmp_path, "cwd", "import os\nprint('OK: in', os.getcwd())\n")
    result = await run([path], working_dir=str(tmp_path / "work"))
    assert result.message == f"OK: in {tmp_path / 'work'}"


async def test_program_found_on_the_configured_path(dummy: str) -> None:
    result = await run(["check_dummy", "0", "via PATH"], environment={"PATH": PLUGINS})
    assert (result.status, result.message) == (Status.OK, "OK: via PATH")


async def test_program_that_cannot_be_executed_is_unknown(tmp_path: Path) -> None:
    path = tmp_path / "garbage"
    path.write_bytes(b"\x00\x01\x02 not a program")
    path.chmod(0o755)
    result = await run([str(path)])
    assert result.status is Status.UNKNOWN
    assert result.message == f"cannot run {path}: Exec format error"


async def test_program_removed_after_config_load_is_unknown(tmp_path: Path) -> None:
    path = script(tmp_path, "gone", "print('OK')\n")
    check = CommandCheck(config([path]), CheckContext())
    os.unlink(path)
    result = await check.run()
    assert result.status is Status.UNKNOWN
    assert result.message == f"cannot run {path}: No such file or directory"


def test_bad_programs_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(pydantic.ValidationError, match="program /nonexistent/check_x does not exist"):
        config(["/nonexistent/check_x"])
    with pytest.raises(pydantic.ValidationError, match="'plugins/check_x' is a relative path"):
        config(["plugins/check_x"])
    with pytest.raises(pydantic.ValidationError, match="'no_such_plugin_xyz' was not found on PATH"):
        config(["no_such_plugin_xyz"])
    plain = tmp_path / "plain"
    plain.write_text("#!/bin/sh\n")
    plain.chmod(0o644)
    with pytest.raises(pydantic.ValidationError, match=f"program {plain} is not executable"):
        config([str(plain)])
    with pytest.raises(pydantic.ValidationError, match=f"program {tmp_path} is a directory"):
        config([str(tmp_path)])
    with pytest.raises(pydantic.ValidationError, match="command needs at least the program"):
        config([""])
    with pytest.raises(pydantic.ValidationError, match="at least 1 item"):
        config([])
    with pytest.raises(pydantic.ValidationError, match="is not an absolute path"):
        config(["/bin/true"], working_dir="tmp")
    with pytest.raises(pydantic.ValidationError, match="is not a directory"):
        config(["/bin/true"], working_dir=str(tmp_path / "nope"))
    with pytest.raises(pydantic.ValidationError, match="is not an environment variable name"):
        config(["/bin/true"], environment={"A=B": "x"})


def test_missing_program_in_config_file_names_file_and_line() -> None:
    text = (
        "checks:\n"
        "  - name: disk\n"
        "    type: command\n"
        "    command: [/usr/lib/nagios/plugins/check_nothing_here, -w, '10%']\n"
    )
    message = config_error(text)
    assert "/etc/vigil/vigil.yaml:4: checks[0].command:" in message
    assert "check_nothing_here does not exist" in message
