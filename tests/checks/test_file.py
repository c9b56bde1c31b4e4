"""`file` checks against real files in tmp_path (aged with os.utime)."""

from __future__ import annotations

import grp
import os
import pwd
import time
from pathlib import Path
from typing import Any

import pydantic
import pytest

from agent.checks.base import CheckContext, CheckResult, Status
from agent.checks.file import FileCheck, FileConfig
from tests.checks.common import config_error, perf, run_check

HOUR = 3600.0


def config(path: Path | str, **keys: Any) -> FileConfig:
    return FileConfig.model_validate({"name": "t", "type": "file", "path": str(path), **keys})


async def run_once(path: Path | str, **keys: Any) -> CheckResult:
    return await run_check(FileCheck, {"path": str(path), **keys})


@pytest.fixture
def backup(tmp_path: Path) -> Path:
    path = tmp_path / "db.gz"
    path.write_bytes(b"x" * 5000)
    return path


def age(path: Path, seconds: float) -> None:
    when = time.time() - seconds
    os.utime(path, (when, when))


async def test_existing_file_is_ok(backup: Path) -> None:
    age(backup, 3 * HOUR + 60)
    result = await run_once(backup)
    assert result.status is Status.OK
    assert result.message == f"{backup}: 4.9 KiB, modified 3h1m ago"
    assert perf(result)["size"] == 5000
    assert perf(result)["age"] == pytest.approx(3 * HOUR + 60, abs=5)
    assert [p.uom for p in result.perfdata] == ["s", "B"]


async def test_missing_file_is_critical(tmp_path: Path) -> None:
    result = await run_once(tmp_path / "nope")
    assert result.status is Status.CRITICAL
    assert result.message == f"{tmp_path / 'nope'} does not exist"
    (tmp_path / "plain").write_text("")
    result = await run_once(tmp_path / "plain" / "x")  # ENOTDIR: a parent is a file
    assert (result.status, result.message) == (Status.CRITICAL, f"{tmp_path / 'plain' / 'x'} does not exist")


async def test_file_that_must_not_exist(tmp_path: Path) -> None:
    lock = tmp_path / "maintenance.lock"
    result = await run_once(lock, exists=False)
    assert (result.status, result.message) == (Status.OK, f"{lock} does not exist, as required")
    lock.write_text("")
    result = await run_once(lock, exists=False)
    assert (result.status, result.message) == (Status.CRITICAL, f"{lock} exists (it must not)")


async def test_too_old(backup: Path) -> None:
    age(backup, 26 * HOUR + 30)
    result = await run_once(backup, max_age="25h")
    assert result.status is Status.CRITICAL
    assert result.message == f"{backup} is 26h old (max 25h)"
    result = await run_once(backup, max_age="30h", max_age_warning="1d")
    assert result.status is Status.WARNING
    assert result.message == f"{backup} is 26h old (warning at 24h)"
    assert (await run_once(backup, max_age="27h")).status is Status.OK


async def test_age_uses_the_context_clock(backup: Path) -> None:
    mtime = backup.stat().st_mtime
    check = FileCheck(config(backup, max_age="1h"), CheckContext(now=lambda: mtime + 2 * HOUR))
    result = await check.run()
    assert result.message == f"{backup} is 2h old (max 1h)"


async def test_size_bounds(backup: Path) -> None:
    result = await run_once(backup, min_size="1MiB")
    assert result.status is Status.CRITICAL
    assert result.message == f"{backup} is 4.9 KiB (min 1.0 MiB)"
    result = await run_once(backup, max_size=4096)
    assert result.message == f"{backup} is 4.9 KiB (max 4.0 KiB)"
    assert (await run_once(backup, min_size=5000, max_size=5000)).status is Status.OK


async def test_several_problems_in_one_message(backup: Path) -> None:
    age(backup, 2 * HOUR)
    backup.chmod(0o644)
    result = await run_once(backup, max_age="1h", min_size="1MiB", mode="0600")
    assert result.status is Status.CRITICAL
    assert result.message == f"{backup} is 2h old (max 1h), is 4.9 KiB (min 1.0 MiB), has mode 0644 (expected 0600)"


async def test_mode_owner_group(backup: Path) -> None:
    backup.chmod(0o640)
    me = pwd.getpwuid(os.getuid()).pw_name
    my_group = grp.getgrgid(os.getgid()).gr_name
    result = await run_once(backup, mode="0640", owner=me, group=my_group)
    assert result.status is Status.OK, result
    assert result.details["mode"] == "0640"
    assert (await run_once(backup, owner=str(os.getuid()), group=str(os.getgid()))).status is Status.OK
    assert (await run_once(backup, mode="640")).status is Status.OK
    result = await run_once(backup, mode="0600")
    assert (result.status, result.message) == (Status.CRITICAL, f"{backup} has mode 0640 (expected 0600)")
    other = "nobody" if me != "nobody" else "root"
    result = await run_once(backup, owner=other)
    assert (result.status, result.message) == (Status.CRITICAL, f"{backup} is owned by {me} (expected {other})")
    other_group = "nogroup" if my_group != "nogroup" else "root"
    result = await run_once(backup, group=other_group)
    assert result.message == f"{backup} has group {my_group} (expected {other_group})"


async def test_content_change_is_reported_for_fall_runs_then_becomes_the_baseline(backup: Path) -> None:
    check = FileCheck(config(backup, content_changed="warning", fall=2), CheckContext())
    first = await check.run()
    assert first.status is Status.OK
    assert first.message.endswith(", checksum recorded")
    baseline = check.memo["sha256"]
    assert (await check.run()).status is Status.OK
    backup.write_bytes(b"y" * 5000)
    changed = await check.run()
    assert changed.status is Status.WARNING
    assert changed.message.startswith(f"{backup} content changed (sha256 {baseline[:12]}… → ")
    assert (await check.run()).status is Status.WARNING  # second run: flap protection (fall 2) trips
    settled = await check.run()
    assert settled.status is Status.OK
    assert check.memo["sha256"] == settled.details["sha256"] != baseline


async def test_content_change_survives_a_restart(backup: Path) -> None:
    check = FileCheck(config(backup, content_changed="critical"), CheckContext())
    await check.run()
    memo = dict(check.memo)
    backup.write_bytes(b"changed while Vigil was down")
    restarted = FileCheck(config(backup, content_changed="critical"), CheckContext())
    restarted.memo = memo  # what the runner restores
    result = await restarted.run()
    assert result.status is Status.CRITICAL
    assert "content changed" in result.message


async def test_a_change_reverted_before_being_reported_twice_is_ok(backup: Path) -> None:
    check = FileCheck(config(backup, content_changed="critical", fall=3), CheckContext())
    await check.run()
    original = backup.read_bytes()
    backup.write_bytes(b"edited")
    assert (await check.run()).status is Status.CRITICAL
    backup.write_bytes(original)
    assert (await check.run()).status is Status.OK
    assert "changed_to" not in check.memo


async def test_other_path_or_limit_starts_a_new_baseline(backup: Path, tmp_path: Path) -> None:
    check = FileCheck(config(backup, content_changed="critical"), CheckContext())
    await check.run()
    other = tmp_path / "other"
    other.write_text("other content")
    moved = FileCheck(config(other, content_changed="critical"), CheckContext())
    moved.memo = dict(check.memo)  # the runner keeps the memo when a check's config changes
    result = await moved.run()
    assert result.status is Status.OK
    assert result.message.endswith("checksum recorded")


async def test_large_files_are_hashed_up_to_the_limit(backup: Path) -> None:
    check = FileCheck(config(backup, content_changed="critical", max_hash_bytes=1024), CheckContext())
    first = await check.run()
    assert first.message.endswith("checksum recorded (first 1.0 KiB hashed)")
    assert first.details["hashed_bytes"] == 1024
    with backup.open("r+b") as fh:
        fh.seek(4000)
        fh.write(b"zz")  # past the hashed part: not seen, as documented
    assert (await check.run()).status is Status.OK
    with backup.open("r+b") as fh:
        fh.write(b"zz")
    result = await check.run()
    assert result.status is Status.CRITICAL
    assert result.message.endswith("(first 1.0 KiB hashed)")


async def test_content_of_a_directory_cannot_be_compared(tmp_path: Path) -> None:
    result = await run_once(tmp_path, content_changed="critical")
    assert result.status is Status.UNKNOWN
    assert result.message == f"{tmp_path} is not a regular file, its content cannot be compared"


def test_bad_config_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(pydantic.ValidationError, match="is not an absolute path"):
        config("var/backups/db.gz")
    with pytest.raises(pydantic.ValidationError, match="exists: false cannot be combined with max_age, mode"):
        config(tmp_path, exists=False, max_age="1h", mode="0640")
    with pytest.raises(pydantic.ValidationError, match=r"max_age: warning \(90000\) must not exceed critical"):
        config(tmp_path, max_age="1d", max_age_warning="25h")
    with pytest.raises(pydantic.ValidationError, match=r"min_size \(2048\) must not exceed max_size \(1024\)"):
        config(tmp_path, min_size="2KiB", max_size="1KiB")
    with pytest.raises(pydantic.ValidationError, match="is not an octal mode"):
        config(tmp_path, mode="0999")
    with pytest.raises(pydantic.ValidationError, match="quoted octal string"):
        config(tmp_path, mode=416)
    with pytest.raises(pydantic.ValidationError, match="content_changed"):
        config(tmp_path, content_changed="alert")
    with pytest.raises(pydantic.ValidationError, match="write GiB"):
        config(tmp_path, max_size="1GB")


def test_unquoted_mode_in_config_file_names_file_and_line() -> None:
    text = (
        "checks:\n"
        "  - name: sudoers\n"
        "    type: file\n"
        "    path: /etc/sudoers\n"
        "    mode: 0440\n"
    )
    message = config_error(text)
    assert "/etc/vigil/vigil.yaml:5: checks[0].mode:" in message
    assert 'quoted octal string such as "0640" (YAML read a number, 288)' in message
