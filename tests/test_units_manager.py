"""UnitManager with real processes: supervised commands are started, watched, restarted and stopped
for real; systemd units go through a fake systemctl (no systemd runs in tests)."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from agent.config.schema import Config
from agent.systemctl import parse_show, parse_timestamp
from agent.units.config import UnitConfig
from agent.units.manager import UnitManager, human_bytes
from tests.checks.fake_systemctl import install, read_state, write_state

PY = sys.executable
SLEEPER = [PY, "-c", "import sys, time; print('sleeper up', flush=True); time.sleep(600)"]
# Ignores SIGTERM, says so once the handler is in place (stop must escalate to SIGKILL).
STUBBORN = [PY, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                      "print('ignoring SIGTERM', flush=True); time.sleep(600)"]
# Starts a grandchild in the same process group, then sleeps: stopping must end both.
PARENT = [PY, "-c", "import subprocess, sys, time; "
                    "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); "
                    "print('child', c.pid, flush=True); time.sleep(600)"]


def units(*docs: dict[str, Any]) -> list[UnitConfig]:
    """Through the real schema, as a vigil.yaml `units:` list would be."""
    return Config.model_validate({"units": list(docs)}).units


async def until(predicate: Callable[[], Any], within: float, what: str) -> Any:
    """Poll a predicate (plain or async) until it is truthy; its value."""
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if inspect.isawaitable(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out after {within}s waiting for {what} (last: {last!r})")


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.fixture
async def managers(tmp_path: Path) -> AsyncIterator[Callable[..., UnitManager]]:
    made: list[UnitManager] = []

    def make(*docs: dict[str, Any], systemctl: str = "systemctl") -> UnitManager:
        m = UnitManager(units(*docs), systemctl, str(tmp_path / "state"))
        made.append(m)
        return m

    yield make
    for m in made:
        await m.close()


# --- formatting and parsing ---------------------------------------------------------------


def test_human_bytes() -> None:
    assert human_bytes(None) is None
    assert human_bytes(512) == "512B"
    assert human_bytes(145 * 1024 * 1024) == "145MB"
    assert human_bytes(int(1.5 * 1024**3)) == "1.5GB"
    assert human_bytes(3 * 1024**5) == "3072TB"


def test_parse_show_and_timestamps() -> None:
    props = parse_show("ActiveState=active\nSubState=running\nDescription=A = B\n\nbogus line\n")
    assert props == {"ActiveState": "active", "SubState": "running", "Description": "A = B"}
    assert parse_timestamp("@1700000000") == 1700000000.0
    assert parse_timestamp("Tue 2023-11-14 22:13:20 UTC") == 1700000000.0
    assert parse_timestamp("2023-11-14 22:13:20 UTC") == 1700000000.0
    local = time.mktime(time.strptime("2023-11-14 22:13:20", "%Y-%m-%d %H:%M:%S"))
    assert parse_timestamp("Tue 2023-11-14 22:13:20 CET") == local
    for empty in ("", "n/a", "@0", "0", "garbage"):
        assert parse_timestamp(empty) is None


# --- supervised commands ------------------------------------------------------------------


async def test_supervised_start_status_stop(managers, tmp_path: Path) -> None:
    m = managers({"name": "sleeper", "command": SLEEPER, "description": "sleeps", "autostart": False})
    assert m.names() == ["sleeper"]
    assert m.get("sleeper").command == SLEEPER
    before = await m.status("sleeper")
    assert before["status"] == "stopped" and before["pid"] is None and before["kind"] == "supervised"

    result = await m.action("sleeper", "start")
    assert result["status"] == "completed", result
    assert result["unit"] == "sleeper" and result["action"] == "start" and result["duration_ms"] >= 0
    state = result["state"]
    pid = state["pid"]
    assert state["status"] == "running" and state["active_state"] == "active" and alive(pid)
    assert psutil.Process(pid).cmdline()[:2] == SLEEPER[:2]
    assert os.getpgid(pid) == pid  # its own session and process group

    log_file = tmp_path / "state" / "units" / "sleeper.log"
    assert state["log_file"] == str(log_file)
    await until(lambda: "sleeper up" in log_file.read_text().splitlines(), 10, "the program's output")

    await asyncio.sleep(0.3)
    state = await m.status("sleeper")
    assert state["uptime_seconds"] >= 0.3 and state["uptime"] == "0s"
    assert state["started_at"].endswith("Z")
    assert state["memory_bytes"] > 1024 * 1024 and state["memory"].endswith("MB")
    assert state["description"] == "sleeps" and state["restarts"] == 0 and state["error"] is None

    again = await m.action("sleeper", "start")
    assert again["status"] == "completed" and "already running" in again["message"]
    assert again["state"]["pid"] == pid

    stopped = await m.action("sleeper", "stop")
    assert stopped["status"] == "completed" and "SIGTERM" in stopped["message"]
    assert not alive(pid)
    assert stopped["state"]["status"] == "stopped" and stopped["state"]["pid"] is None
    assert stopped["state"]["last_exit_code"] == -signal.SIGTERM
    text = log_file.read_text()
    assert f"started pid {pid}" in text and "killed by SIGTERM" in text
    assert not (tmp_path / "state" / "units" / "sleeper.pid").exists()


async def test_restart_replaces_the_process(managers) -> None:
    m = managers({"name": "s", "command": SLEEPER})
    await m.start()  # autostart
    first = (await m.status("s"))["pid"]
    assert first and alive(first)
    result = await m.action("s", "restart")
    assert result["status"] == "completed", result
    second = result["state"]["pid"]
    assert second != first and alive(second) and not alive(first)
    assert result["state"]["restarts"] == 0  # restarts counts automatic ones only


async def test_crash_is_restarted_on_failure(managers) -> None:
    m = managers({"name": "s", "command": SLEEPER, "restart": "on-failure", "restart_delay": "100ms"})
    await m.start()
    first = (await m.status("s"))["pid"]
    os.kill(first, signal.SIGKILL)

    async def restarted() -> dict[str, Any] | None:
        state = await m.status("s")
        return state if state["status"] == "running" and state["pid"] != first else None

    state = await until(restarted, 10, "the automatic restart")
    assert state["restarts"] == 1 and state["last_exit_code"] == -signal.SIGKILL


async def test_clean_exit_is_not_restarted_on_failure(managers) -> None:
    m = managers({"name": "once", "command": [PY, "-c", "print('done')"], "restart": "on-failure",
                  "restart_delay": 0})
    await m.start()
    state = await until(lambda: _status_is(m, "once", "stopped"), 10, "the exit")
    assert state["last_exit_code"] == 0 and state["restarts"] == 0 and state["error"] is None
    await asyncio.sleep(0.3)
    assert (await m.status("once"))["restarts"] == 0


async def test_restart_always_and_no(managers) -> None:
    m = managers(
        {"name": "always", "command": [PY, "-c", "print('done')"], "restart": "always", "restart_delay": 0},
        {"name": "never", "command": [PY, "-c", "raise SystemExit(3)"], "restart": "no"},
    )
    await m.start()
    await until(lambda: _restarts_at_least(m, "always", 1), 10, "the clean exit to be restarted")
    state = await until(lambda: _status_is(m, "never", "failed"), 10, "the failure")
    assert state["last_exit_code"] == 3 and "exited with status 3" in state["error"]
    await asyncio.sleep(0.3)
    assert (await m.status("never"))["restarts"] == 0


async def test_crash_loop_backs_off(managers) -> None:
    m = managers({"name": "crash", "command": [PY, "-c", "raise SystemExit(1)"], "restart": "on-failure",
                  "restart_delay": "200ms"})
    started = time.monotonic()
    await m.start()
    # Delays: 0.2 s after the first quick failure, then 1 s, 2 s, 4 s ... up to 60 s.
    state = await until(lambda: _restarts_at_least(m, "crash", 2), 15, "two automatic restarts")
    elapsed = time.monotonic() - started
    assert elapsed >= 1.2, f"two restarts after {elapsed:.2f}s: no backoff"

    async def waiting() -> dict[str, Any] | None:
        s = await m.status("crash")
        return s if s["restarts"] == 2 and s["sub_state"] == "auto-restart" else None

    state = await until(waiting, 10, "the third backoff wait")
    assert state["status"] == "failed"  # a crash loop shows as failed while it waits
    assert 1.0 < state["next_start_in"] <= 2.0
    assert state["last_exit_code"] == 1 and "exited with status 1" in state["error"]
    assert (await m.action("crash", "stop"))["state"]["status"] == "stopped"
    await asyncio.sleep(2.2)
    assert (await m.status("crash"))["restarts"] == 2  # stop cancelled the pending start


async def test_stop_escalates_to_sigkill(managers, tmp_path: Path) -> None:
    m = managers({"name": "stubborn", "command": STUBBORN, "stop_timeout": "500ms"})
    await m.start()
    log_file = tmp_path / "state" / "units" / "stubborn.log"
    await until(lambda: log_file.exists() and "ignoring SIGTERM" in log_file.read_text().splitlines(), 10,
                "the SIGTERM handler")
    pid = (await m.status("stubborn"))["pid"]
    result = await m.action("stubborn", "stop")
    assert result["status"] == "completed" and "SIGKILL after 0.5s" in result["message"]
    assert result["duration_ms"] >= 500
    assert result["state"]["last_exit_code"] == -signal.SIGKILL and not alive(pid)


async def test_stop_ends_the_whole_process_group(managers, tmp_path: Path) -> None:
    m = managers({"name": "parent", "command": PARENT})
    await m.start()
    log_file = tmp_path / "state" / "units" / "parent.log"
    line = await until(lambda: (next(
        (x for x in log_file.read_text().splitlines() if x.startswith("child ")), None)), 10, "the grandchild")
    child = int(line.split()[1])
    assert alive(child)
    state = await m.status("parent")
    assert state["memory_bytes"] > psutil.Process(state["pid"]).memory_info().rss  # the group's memory
    await m.action("parent", "stop")
    await until(lambda: not alive(child), 5, "the grandchild to be gone")


async def test_unstartable_command_fails_with_reason(managers, tmp_path: Path) -> None:
    m = managers({"name": "missing", "command": [str(tmp_path / "no-such-program")], "restart": "no"})
    result = await m.action("missing", "start")
    assert result["status"] == "failed"
    assert "cannot run" in result["message"] and "No such file" in result["message"]
    assert result["state"]["status"] == "failed" and result["state"]["error"] == result["message"]


async def test_leftover_from_a_killed_vigil_is_stopped(managers, tmp_path: Path) -> None:
    """A copy whose Vigil died without stopping it is found by its pid file and stopped first."""
    units_dir = tmp_path / "state" / "units"
    units_dir.mkdir(parents=True)
    orphan = await asyncio.create_subprocess_exec(*SLEEPER, start_new_session=True, stdout=asyncio.subprocess.DEVNULL)
    try:
        (units_dir / "s.pid").write_text(f"{orphan.pid} {psutil.Process(orphan.pid).create_time()}\n")
        m = managers({"name": "s", "command": SLEEPER})
        await m.start()
        assert await asyncio.wait_for(orphan.wait(), 10) == -signal.SIGTERM
        state = await m.status("s")
        assert state["status"] == "running" and state["pid"] != orphan.pid
    finally:
        if orphan.returncode is None:
            orphan.kill()
            await orphan.wait()


async def test_unknown_unit_and_action(managers) -> None:
    m = managers({"name": "s", "command": SLEEPER, "autostart": False})
    assert m.get("nginx") is None
    with pytest.raises(KeyError):
        await m.status("nginx")
    with pytest.raises(KeyError):
        await m.action("nginx", "restart")
    with pytest.raises(ValueError, match="unknown action 'reload'"):
        await m.action("s", "reload")


async def test_configure_adds_removes_and_respawns(managers) -> None:
    keep = {"name": "keep", "command": SLEEPER}
    gone = {"name": "gone", "command": SLEEPER}
    m = managers(keep, gone)
    await m.start()
    keep_pid = (await m.status("keep"))["pid"]
    gone_pid = (await m.status("gone"))["pid"]

    changed = {**keep, "environment": {"VIGIL_TEST": "1"}}
    await m.configure(units(changed, {"name": "new", "command": SLEEPER}, {"name": "web", "unit": "web.service"}))
    assert m.names() == ["keep", "new", "web"]
    assert not alive(gone_pid)  # removed from the allowlist: stopped
    with pytest.raises(KeyError):
        await m.status("gone")
    keep_state = await m.status("keep")
    assert keep_state["pid"] != keep_pid and not alive(keep_pid)  # new environment: respawned
    assert psutil.Process(keep_state["pid"]).environ()["VIGIL_TEST"] == "1"
    assert (await m.status("new"))["status"] == "running"  # added: autostarted

    same_pid = keep_state["pid"]
    await m.configure(units({**changed, "restart_delay": "5s"}, {"name": "new", "command": SLEEPER}))
    assert (await m.status("keep"))["pid"] == same_pid  # a policy change needs no respawn
    assert m.get("keep").restart_delay == 5.0


# --- systemd units (tests/checks/fake_systemctl.py) --------------------------------------------


WEB = {"ActiveState": "active", "SubState": "running", "MainPID": 4242, "NRestarts": 3,
       "MemoryCurrent": 152043520, "Description": "Web server", "ExecMainStatus": 0}


async def test_systemd_status(managers, tmp_path: Path) -> None:
    systemctl = install(tmp_path, {"web.service": {**WEB, "ActiveEnterTimestamp": time.time() - 90}})
    m = managers({"name": "web", "unit": "web.service"}, systemctl=str(systemctl))
    state = await m.status("web")
    assert state["kind"] == "systemd" and state["unit"] == "web.service" and state["command"] is None
    assert state["status"] == "running" and state["active_state"] == "active" and state["sub_state"] == "running"
    assert state["pid"] == 4242 and state["restarts"] == 3 and state["last_exit_code"] == 0
    assert state["memory_bytes"] == 152043520 and state["memory"] == "145MB"
    assert 89 <= state["uptime_seconds"] <= 120 and state["uptime"].startswith("1m 3")
    assert state["description"] == "Web server" and state["load_state"] == "loaded" and state["error"] is None
    show = read_state(systemctl)["calls"][-1]
    assert show[0] == "show" and show[-2:] == ["--", "web.service"] and "--timestamp=unix" in show
    assert show[1] == ("--property=ActiveState,SubState,NRestarts,MainPID,ActiveEnterTimestamp,MemoryCurrent,"
                       "LoadState,Description,ExecMainStatus")


@contextlib.contextmanager
def local_zone(zone: str) -> Iterator[None]:
    """The host's zone for this process and the programs it runs (the fake systemctl among them)."""
    if not Path("/usr/share/zoneinfo", zone).exists():
        pytest.skip(f"no tzdata for {zone}")
    before = os.environ.get("TZ")
    os.environ["TZ"] = zone
    time.tzset()
    try:
        yield
    finally:
        if before is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = before
        time.tzset()


@pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin", "America/New_York"])
async def test_systemd_without_unix_timestamps(managers, tmp_path: Path, zone: str) -> None:
    """systemctl before 248 rejects --timestamp=unix: the default format, in local time, is parsed instead."""
    started = int(time.time()) - 3700
    systemctl = install(tmp_path, {"web.service": {**WEB, "ActiveEnterTimestamp": started}}, no_unix_timestamps=True)
    m = managers({"name": "web", "unit": "web.service"}, systemctl=str(systemctl))
    with local_zone(zone):
        first = await m.status("web")
        second = await m.status("web")
    for state in (first, second):
        assert state["status"] == "running" and state["error"] is None
        assert 3700 <= state["uptime_seconds"] <= 3730 and state["started_at"] is not None
    calls = read_state(systemctl)["calls"]
    assert ["--timestamp=unix" in c for c in calls] == [True, False, False]  # asked once, then remembered


async def test_systemd_stopped_and_unknown(managers, tmp_path: Path) -> None:
    systemctl = install(tmp_path, {"idle.service": {"MemoryCurrent": None}})
    m = managers({"name": "idle", "unit": "idle.service"}, {"name": "ghost", "unit": "ghost.service"},
                 systemctl=str(systemctl))
    idle = await m.status("idle")
    assert idle["status"] == "stopped" and idle["sub_state"] == "dead" and idle["pid"] is None
    assert idle["uptime_seconds"] is None and idle["memory_bytes"] is None and idle["memory"] is None
    ghost = await m.status("ghost")
    assert ghost["status"] == "unknown" and ghost["load_state"] == "not-found"
    assert ghost["error"] == "unit ghost.service is not loaded (LoadState=not-found)"

    state = read_state(systemctl)
    state["not_running"] = True
    write_state(systemctl, state)
    down = await m.status("idle")
    assert down["status"] == "unknown" and "has not been booted with systemd" in down["error"]

    missing = managers({"name": "idle", "unit": "idle.service"}, systemctl=str(tmp_path / "no-systemctl"))
    gone = await missing.status("idle")
    assert gone["status"] == "unknown" and gone["error"].startswith("cannot run")


async def test_systemd_actions(managers, tmp_path: Path) -> None:
    systemctl = install(tmp_path, {"web.service": dict(WEB), "db.service": {"start_fails": True}})
    m = managers({"name": "web", "unit": "web.service"}, {"name": "db", "unit": "db.service"},
                 systemctl=str(systemctl))
    stopped = await m.action("web", "stop")
    assert stopped["status"] == "completed" and stopped["message"] == "systemctl stop web.service done"
    assert stopped["state"]["status"] == "stopped"
    started = await m.action("web", "start")
    assert started["status"] == "completed" and started["state"]["status"] == "running"
    first_pid = started["state"]["pid"]
    restarted = await m.action("web", "restart")
    assert restarted["status"] == "completed" and restarted["state"]["pid"] != first_pid
    assert [c for c in read_state(systemctl)["calls"] if c[0] != "show"] == [
        ["stop", "--", "web.service"], ["start", "--", "web.service"], ["restart", "--", "web.service"]]

    failed = await m.action("db", "start")
    assert failed["status"] == "failed"
    assert failed["message"].startswith("systemctl start db.service failed: Job for db.service failed")
    assert failed["state"]["status"] == "failed" and failed["state"]["last_exit_code"] == 1


async def test_configure_switches_systemctl(managers, tmp_path: Path) -> None:
    first = install(tmp_path / "a", {"web.service": dict(WEB)})
    second = install(tmp_path / "b", {"web.service": {**WEB, "ActiveState": "failed"}})
    m = managers({"name": "web", "unit": "web.service"}, systemctl=str(first))
    assert (await m.status("web"))["status"] == "running"
    await m.configure(units({"name": "web", "unit": "web.service"}), systemctl=str(second))
    assert (await m.status("web"))["status"] == "failed"


async def _status_is(m: UnitManager, name: str, status: str) -> dict[str, Any] | None:
    state = await m.status(name)
    return state if state["status"] == status else None


async def _restarts_at_least(m: UnitManager, name: str, n: int) -> dict[str, Any] | None:
    state = await m.status(name)
    return state if state["restarts"] >= n else None
