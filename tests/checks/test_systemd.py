"""`systemd` checks, against the fake systemctl (PID 1 is not systemd here nor in CI) and the real one."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pydantic
import pytest

from agent.checks.base import CheckContext, CheckResult, Status
from agent.checks.proc import run_program
from agent.checks.systemd import SystemdCheck, SystemdConfig
from agent.systemctl import parse_timestamp
from tests.checks.common import config_error, perf, run_check
from tests.checks.fake_systemctl import install, read_state, write_state
from tests.conftest import require_binary

RUNNING = {"ActiveState": "active", "SubState": "running", "MainPID": 4242, "NRestarts": 0}


def config(unit: str, **keys: Any) -> SystemdConfig:
    return SystemdConfig.model_validate({"name": "t", "type": "systemd", "unit": unit, **keys})


async def run_once(systemctl: Path | str, unit: str, **keys: Any) -> CheckResult:
    return await run_check(SystemdCheck, {"unit": unit, **keys}, CheckContext(systemctl=str(systemctl)))


async def test_active_unit_is_ok_with_uptime_and_restarts(tmp_path: Path) -> None:
    started = time.time() - 2 * 3600 - 5 * 60
    systemctl = install(tmp_path, {"nginx.service": {**RUNNING, "NRestarts": 1, "ActiveEnterTimestamp": started}})
    result = await run_once(systemctl, "nginx.service")
    assert result.status is Status.OK
    assert result.message == "nginx.service is active (running) for 2h5m, 1 restart"
    assert perf(result)["restarts"] == 1
    assert perf(result)["uptime"] == pytest.approx(2 * 3600 + 5 * 60, abs=5)
    assert result.details["main_pid"] == 4242
    assert result.details["active_since"] == int(started)
    (call,) = read_state(systemctl)["calls"]
    assert call == ["show", "--property=LoadState,ActiveState,SubState,NRestarts,MainPID,ActiveEnterTimestamp",
                    "--no-pager", "--timestamp=unix", "--", "nginx.service"]


@pytest.mark.parametrize(("unit", "status", "message"), [
    ({"ActiveState": "inactive"}, Status.CRITICAL, "app.service is inactive (dead), expected active"),
    ({"ActiveState": "failed", "NRestarts": 5}, Status.CRITICAL,
     "app.service is failed (failed), expected active, 5 restarts"),
    ({"ActiveState": "activating", "SubState": "auto-restart"}, Status.WARNING,
     "app.service is activating (auto-restart)"),
    ({**RUNNING, "ActiveState": "reloading", "SubState": "reload"}, Status.WARNING,
     "app.service is reloading (reload)"),
    ({"ActiveState": "deactivating"}, Status.WARNING, "app.service is deactivating (stop)"),
    ({"LoadState": "masked"}, Status.CRITICAL, "unit app.service is masked, inactive (dead)"),
    ({"LoadState": "bad-setting"}, Status.CRITICAL,
     "unit app.service cannot be loaded (LoadState=bad-setting), inactive (dead)"),
])
async def test_states_when_expected_active(tmp_path: Path, unit: dict[str, Any], status: Status, message: str) -> None:
    systemctl = install(tmp_path, {"app.service": unit})
    result = await run_once(systemctl, "app.service")
    assert (result.status, result.message) == (status, message)


async def test_unknown_unit_is_critical(tmp_path: Path) -> None:
    systemctl = install(tmp_path, {})
    result = await run_once(systemctl, "nope")
    assert (result.status, result.message) == (Status.CRITICAL, "unit nope.service not found")


async def test_too_many_restarts_is_a_warning(tmp_path: Path) -> None:
    # Up for 3h: a slow machine's extra seconds do not change the minutes shown.
    started = time.time() - 3 * 3600
    systemctl = install(tmp_path, {"worker.service": {**RUNNING, "NRestarts": 4, "ActiveEnterTimestamp": started}})
    result = await run_once(systemctl, "worker.service", max_restarts=3)
    assert result.status is Status.WARNING
    assert result.message == "worker.service is active (running) for 3h, restarted 4 times (max 3)"
    assert (await run_once(systemctl, "worker.service", max_restarts=4)).status is Status.OK


@pytest.mark.parametrize(("unit", "status", "message"), [
    ({"ActiveState": "inactive"}, Status.OK, "debug-shell.service is inactive (dead)"),
    ({"LoadState": "masked"}, Status.OK, "debug-shell.service is inactive (dead)"),
    ({**RUNNING}, Status.CRITICAL, "debug-shell.service is active (running), expected inactive"),
    ({"ActiveState": "activating"}, Status.CRITICAL, "debug-shell.service is activating (start), expected inactive"),
    ({"ActiveState": "deactivating"}, Status.WARNING, "debug-shell.service is deactivating (stop)"),
    ({"ActiveState": "failed"}, Status.CRITICAL, "debug-shell.service is failed (failed)"),
])
async def test_expected_inactive(tmp_path: Path, unit: dict[str, Any], status: Status, message: str) -> None:
    systemctl = install(tmp_path, {"debug-shell.service": unit})
    result = await run_once(systemctl, "debug-shell.service", expect_active=False)
    assert (result.status, result.message) == (status, message)


async def test_follows_start_stop_restart(tmp_path: Path) -> None:
    systemctl = install(tmp_path, {"app.service": {"ActiveState": "inactive", "NRestarts": 2}})
    check = SystemdCheck(config("app.service"), CheckContext(systemctl=str(systemctl)))
    assert (await check.run()).status is Status.CRITICAL
    proc = await systemctl_verb([str(systemctl), "start", "app.service"])
    assert proc == (0, "")
    started = await check.run()
    assert started.status is Status.OK
    pid = started.details["main_pid"]
    assert await systemctl_verb([str(systemctl), "is-active", "app"]) == (0, "active\n")
    state = read_state(systemctl)
    state["units"]["app.service"]["ActiveEnterTimestamp"] = time.time() - 600
    write_state(systemctl, state)
    assert perf(await check.run())["uptime"] >= 600
    assert (await systemctl_verb([str(systemctl), "restart", "app.service"]))[0] == 0
    restarted = await check.run()
    assert perf(restarted)["uptime"] < 60
    assert restarted.details["main_pid"] != pid
    assert restarted.details["restarts"] == 2  # NRestarts counts automatic restarts only
    assert (await systemctl_verb([str(systemctl), "stop", "app.service"]))[0] == 0
    stopped = await check.run()
    assert stopped.status is Status.CRITICAL
    assert stopped.message == "app.service is inactive (dead), expected active, 2 restarts"


async def test_failing_start_leaves_the_unit_failed(tmp_path: Path) -> None:
    systemctl = install(tmp_path, {"app.service": {"ActiveState": "inactive", "start_fails": True}})
    code, _ = await systemctl_verb([str(systemctl), "restart", "app.service"])
    assert code == 1
    result = await run_once(systemctl, "app.service")
    assert (result.status, result.message) == (Status.CRITICAL, "app.service is failed (failed), expected active")


async def test_systemctl_without_unix_timestamps(tmp_path: Path) -> None:
    started = time.time() - 3 * 86400
    systemctl = install(tmp_path, {"db.service": {**RUNNING, "ActiveEnterTimestamp": started}},
                        no_unix_timestamps=True)
    check = SystemdCheck(config("db.service"), CheckContext(systemctl=str(systemctl)))
    for _ in range(2):
        result = await check.run()
        assert result.status is Status.OK
        assert result.message == "db.service is active (running) for 3d"
        assert perf(result)["uptime"] == pytest.approx(3 * 86400, abs=5)
    calls = read_state(systemctl)["calls"]
    assert ["--timestamp=unix" in call for call in calls] == [True, False, False]  # asked once, then remembered


async def test_systemd_not_running_is_unknown(tmp_path: Path) -> None:
    systemctl = install(tmp_path, {}, not_running=True)
    result = await run_once(systemctl, "nginx.service")
    assert result.status is Status.UNKNOWN
    assert result.message == ("systemd is not running: System has not been booted with systemd as init system "
                              "(PID 1). Can't operate.")


async def test_real_systemctl() -> None:
    systemctl = require_binary("systemctl")
    result = await run_once(systemctl, "vigil-test-no-such-unit.service")
    if os.path.isdir("/run/systemd/system"):  # booted with systemd (sd_booted)
        assert (result.status, result.message) == (Status.CRITICAL, "unit vigil-test-no-such-unit.service not found")
    else:
        assert result.status is Status.UNKNOWN
        assert result.message.startswith("systemd is not running: System has not been booted with systemd")


async def test_missing_systemctl_is_unknown(tmp_path: Path) -> None:
    result = await run_once(tmp_path / "systemctl", "nginx.service")
    assert result.status is Status.UNKNOWN
    assert result.message == f"cannot run {tmp_path / 'systemctl'}: No such file or directory"


async def test_hanging_systemctl_is_unknown(tmp_path: Path) -> None:
    systemctl = tmp_path / "systemctl"
    systemctl.write_text("#!/bin/sh\nexec sleep 30\n")
    systemctl.chmod(0o755)
    assert SystemdCheck.timeout_status is Status.UNKNOWN
    result = await run_once(systemctl, "nginx.service", timeout="1s", interval="5s")
    assert (result.status, result.message) == (Status.UNKNOWN, "systemctl show nginx.service timed out after 0.9s")


def test_parse_timestamp() -> None:
    assert parse_timestamp("@1700000000") == 1700000000
    assert parse_timestamp("Mon 2026-11-23 10:00:00 UTC") == 1795428000
    assert parse_timestamp("Mon 2026-11-23 10:00:00.250000 UTC") == 1795428000.25
    assert parse_timestamp("2026-11-23 10:00:00 UTC") == 1795428000
    local = time.mktime(time.strptime("2026-11-23 10:00:00", "%Y-%m-%d %H:%M:%S"))
    assert parse_timestamp(f"Mon 2026-11-23 10:00:00 {time.strftime('%Z', time.localtime(local))}") == local
    for unset in ("", "n/a", "@0", "0", "garbage"):
        assert parse_timestamp(unset) is None


def test_unit_names() -> None:
    assert config("nginx").unit == "nginx.service"
    assert config("getty@tty1.service").unit == "getty@tty1.service"
    assert config("-.mount").unit == "-.mount"
    assert config("backup.timer").unit == "backup.timer"
    with pytest.raises(pydantic.ValidationError, match="is not a systemd unit name"):
        config("nginx; reboot")
    with pytest.raises(pydantic.ValidationError, match="max_restarts"):
        config("nginx", max_restarts=-1)


def test_bad_unit_in_config_file_names_file_and_line() -> None:
    text = (
        "checks:\n"
        "  - name: web\n"
        "    type: systemd\n"
        "    unit: 'nginx service'\n"
    )
    message = config_error(text)
    assert "/etc/vigil/vigil.yaml:4: checks[0].unit:" in message
    assert "is not a systemd unit name" in message


async def systemctl_verb(argv: list[str]) -> tuple[int, str]:
    """Run the fake for a verb the check does not use (start, stop, restart, is-active)."""
    result = await run_program(argv, 10)
    assert result.returncode is not None
    return result.returncode, result.stdout
