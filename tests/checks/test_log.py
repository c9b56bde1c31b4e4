"""`log` checks on real files in tmp_path, rotated as logrotate rotates them (create and copytruncate)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pydantic
import pytest

import agent.config  # noqa: F401  (first: importing agent.checks before agent.config is a circular import)

# isort: split
from agent.checks.base import CheckContext, CheckResult, Status
from agent.checks.log import LogCheck, LogCheckConfig
from agent.checks.proc import run_program
from agent.config.errors import ConfigError
from agent.config.loader import parse_sources
from tests.conftest import require_binary


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make(path: Path, clock: Clock | None = None, **keys: object) -> LogCheck:
    cfg = LogCheckConfig.model_validate(
        {"name": "app-errors", "type": "log", "path": str(path), "pattern": "ERROR", **keys}
    )
    return LogCheck(cfg, CheckContext(now=clock or Clock()))


def append(path: Path, *lines: str) -> None:
    with path.open("a", encoding="utf-8") as fh:
        fh.writelines(line + "\n" for line in lines)


async def run(check: LogCheck) -> CheckResult:
    result = await check.run()
    json.dumps(check.memo)  # the runner persists it as JSON
    return result


def matches(result: CheckResult) -> float:
    return next(p.value for p in result.perfdata if p.label == "matches")


async def test_first_sight_follows_from_the_end(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    append(log, "ERROR old one", "ERROR old two")
    check = make(log)
    first = await run(check)
    assert first.status is Status.OK
    assert first.message == "no lines matching /ERROR/ in the last 5m"
    assert any("from its end" in n for n in first.details["notes"])
    append(log, "INFO fine", "ERROR db timeout")
    second = await run(check)
    assert second.status is Status.CRITICAL  # no thresholds given: one match is critical
    assert second.message == "1 line matching /ERROR/ in the last 5m; last: ERROR db timeout"
    assert matches(second) == 1


async def test_from_start_counts_existing_lines_and_grades(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    append(log, "ERROR a", "INFO b", "ERROR c", "warn: ERROR d")
    check = make(log, from_start=True, warning=2, critical=4)
    result = await run(check)
    assert result.status is Status.WARNING
    assert result.message == "3 lines matching /ERROR/ in the last 5m; last: warn: ERROR d"
    perf = result.perfdata[0]
    assert (perf.label, perf.value, perf.warn, perf.crit) == ("matches", 3, "2", "4")
    append(log, "ERROR e")
    assert (await run(check)).status is Status.CRITICAL


async def test_rotation_by_rename_and_create_loses_and_repeats_nothing(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    append(log, "ERROR 1", "INFO x", "ERROR 2", "ERROR 3")
    check = make(log, from_start=True, critical=100)
    assert matches(await run(check)) == 3
    inode = check.memo["cursor"]["ino"]
    append(log, "ERROR 4", "ERROR 5")  # written after the run, before the rotation: only in app.log.1
    log.rename(tmp_path / "app.log.1")
    append(log, "ERROR 6", "INFO y", "ERROR 7")
    rotated = await run(check)
    assert matches(rotated) == 7
    assert rotated.details["new_matches"] == 4
    assert rotated.message.endswith("last: ERROR 7")
    assert check.memo["cursor"]["ino"] != inode and check.memo["pending"] is None
    assert any("rotated" in n for n in rotated.details["notes"])
    assert matches(await run(check)) == 7  # nothing counted twice
    append(log, "ERROR 8")
    assert matches(await run(check)) == 8


async def test_rotated_file_gone_is_said(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    append(log, "ERROR 1")
    check = make(log, from_start=True)
    assert matches(await run(check)) == 1
    append(log, "ERROR lost")
    log.rename(tmp_path / "app.log.1.gz")  # compressed at once: not at app.log.1
    append(log, "ERROR 2")
    result = await run(check)
    assert matches(result) == 2
    assert any("not at" in n and "app.log.1" in n for n in result.details["notes"])


async def test_copytruncate(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    append(log, *[f"ERROR {i} with some padding to make the file longer" for i in range(5)])
    check = make(log, from_start=True, critical=100)
    assert matches(await run(check)) == 5
    inode = check.memo["cursor"]["ino"]
    shutil.copyfile(log, tmp_path / "app.log.1")
    with log.open("r+b") as fh:
        fh.truncate(0)
    append(log, "ERROR after truncate", "INFO ok")
    result = await run(check)
    assert matches(result) == 6
    assert result.message.endswith("last: ERROR after truncate")
    assert check.memo["cursor"]["ino"] == inode
    assert any("copytruncate" in n for n in result.details["notes"])
    assert matches(await run(check)) == 6
    with log.open("r+b") as fh:  # truncated and refilled past the offset before the next run
        fh.truncate(0)
    append(log, *[f"ERROR refilled {i}, a longer line than the ones before" for i in range(3)])
    refilled = await run(check)
    assert matches(refilled) == 9
    assert refilled.message.endswith("last: ERROR refilled 2, a longer line than the ones before")
    assert any("written again" in n for n in refilled.details["notes"])


async def logrotate(log: Path, mode: str) -> None:
    """Rotate `log` with Debian's logrotate itself (forced, own state file), in `mode` (create or copytruncate)."""
    binary = require_binary("logrotate")
    conf = log.parent / "logrotate.conf"
    conf.write_text(f"{log} {{\n    rotate 3\n    {mode}\n    missingok\n}}\n")
    done = await run_program([binary, "--force", "--state", str(log.parent / "logrotate.state"), str(conf)], 30)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("mode", ["create", "copytruncate"])
async def test_real_logrotate(tmp_path: Path, mode: str) -> None:
    log = tmp_path / "app.log"
    append(log, *[f"ERROR before {i}" for i in range(3)], "INFO fine")
    check = make(log, from_start=True, critical=100)
    assert matches(await run(check)) == 3
    inode = log.stat().st_ino
    if mode == "create":
        append(log, "ERROR between the run and the rotation")
    await logrotate(log, mode)
    assert (tmp_path / "app.log.1").exists()
    assert (log.stat().st_ino == inode) == (mode == "copytruncate")
    append(log, "ERROR after 1", "ERROR after 2")
    result = await run(check)
    assert matches(result) == (6 if mode == "create" else 5)
    assert result.message.endswith("last: ERROR after 2")
    assert matches(await run(check)) == matches(result)  # nothing counted twice
    await logrotate(log, mode)  # app.log.1 becomes app.log.2; the second rotation is followed too
    append(log, "ERROR after the second rotation")
    assert matches(await run(check)) == matches(result) + 1


async def test_window_expiry(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.touch()
    clock = Clock()
    check = make(log, clock, window="5m", warning=2, critical=3)
    await run(check)
    append(log, "ERROR a", "ERROR b")
    assert matches(await run(check)) == 2
    clock.now += 200
    append(log, "ERROR c")
    result = await run(check)
    assert (matches(result), result.status) == (3, Status.CRITICAL)
    clock.now += 101  # the first two are 301 s old
    result = await run(check)
    assert (matches(result), result.status) == (1, Status.OK)
    assert result.message == "1 line matching /ERROR/ in the last 5m; last: ERROR c"
    clock.now += 200
    result = await run(check)
    assert result.message == "no lines matching /ERROR/ in the last 5m"
    assert result.details["last_line"] == "ERROR c"  # still known, for the API


async def test_memo_stays_small(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.touch()
    clock = Clock()
    check = make(log, clock, window="1h")
    await run(check)
    for _ in range(1900):  # a match every 2 s for longer than the window
        clock.now += 2
        append(log, "ERROR tick")
        result = await run(check)
    assert len(check.memo["buckets"]) <= 301
    assert len(json.dumps(check.memo)) < 10_000
    assert 1790 <= matches(result) <= 1800  # 1800 in the hour, less what shares a bucket with expired ones


async def test_restart_continues_from_the_offset(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    append(log, "ERROR 1", "ERROR 2")
    clock = Clock()
    check = make(log, clock, from_start=True, critical=100)
    assert matches(await run(check)) == 2
    saved = json.loads(json.dumps(check.memo))
    await check.close()
    append(log, "ERROR 3")
    clock.now += 10
    again = make(log, clock, from_start=True, critical=100)
    again.memo = saved  # what the runner restores before the first run
    result = await run(again)
    assert matches(result) == 3 and result.details["new_matches"] == 1


async def test_partial_line_waits_for_its_newline(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.touch()
    check = make(log)
    await run(check)
    with log.open("a") as fh:
        fh.write("ERROR half")
    assert matches(await run(check)) == 0
    with log.open("a") as fh:
        fh.write(" written\r\n")
    result = await run(check)
    assert matches(result) == 1 and result.message.endswith("last: ERROR half written")


async def test_crlf_lines_match_anchored_patterns(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(b"job failed\r\njob ok\r\n")
    result = await run(make(log, from_start=True, pattern="failed$"))
    assert matches(result) == 1


async def test_max_read_bytes_reads_the_rest_next_run(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    lines = [f"ERROR {i:03d} " + "x" * 89 for i in range(30)]  # 30 lines of 100 bytes
    append(log, *lines)
    check = make(log, from_start=True, max_read_bytes=1024, critical=1000)
    first = await run(check)
    assert matches(first) == 10 and first.details["read_bytes"] == 1000
    assert first.details["unread_bytes"] == 2000
    assert any("max_read_bytes" in n for n in first.details["notes"])
    assert matches(await run(check)) == 20
    last = await run(check)
    assert matches(last) == 30 and last.details["unread_bytes"] == 0
    assert not any("max_read_bytes" in n for n in last.details["notes"])


async def test_big_rotated_file_is_finished_before_the_new_one(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.touch()
    check = make(log, max_read_bytes=1024, critical=1000)
    await run(check)
    append(log, *[f"ERROR old {i:03d} " + "x" * 85 for i in range(15)])  # 1500 bytes
    log.rename(tmp_path / "app.log.1")
    append(log, "ERROR new")
    first = await run(check)
    assert matches(first) == 10 and first.message.endswith(f"last: ERROR old 009 {'x' * 85}")
    assert check.memo["pending"] is not None
    second = await run(check)
    assert matches(second) == 16 and second.message.endswith("last: ERROR new")
    assert check.memo["pending"] is None


async def test_long_line_is_cut_in_the_message(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    append(log, "ERROR " + "y" * 500)
    result = await run(make(log, from_start=True))
    assert result.details["last_line"] == ("ERROR " + "y" * 500)[:200]
    assert len(result.message) < 300


async def test_missing_file_is_unknown_and_keeps_the_cursor(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    append(log, "ERROR 1")
    check = make(log, from_start=True)
    await run(check)
    cursor = dict(check.memo["cursor"])
    log.rename(tmp_path / "app.log.1")
    result = await run(check)
    assert result.status is Status.UNKNOWN
    assert result.message == f"cannot read {log}: No such file or directory"
    assert check.memo["cursor"] == cursor
    append(tmp_path / "app.log.1", "ERROR 2")
    append(log, "ERROR 3")
    assert matches(await run(check)) == 3


async def test_unreadable_directory_is_unknown(tmp_path: Path) -> None:
    result = await run(make(tmp_path))
    assert result.status is Status.UNKNOWN and "cannot read" in result.message


async def test_changed_pattern_recounts_only_new_lines(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    append(log, "ERROR 1", "FATAL 1")
    check = make(log, from_start=True)
    assert matches(await run(check)) == 1
    changed = make(log, from_start=True, pattern="FATAL")
    changed.memo = check.memo
    append(log, "FATAL 2")
    assert matches(await run(changed)) == 1


@pytest.mark.parametrize(
    ("keys", "match"),
    [
        ({"pattern": "ERROR("}, "invalid regular expression"),
        ({"path": "var/log/app.log"}, "is not an absolute path"),
        ({"warning": 5, "critical": 2}, "warning .5. must not exceed critical .2."),
        ({"warning": 0}, "greater than or equal to 1"),
        ({"max_read_bytes": 10}, "greater than or equal to 1024"),
        ({"window": "soon"}, "expected a duration"),
    ],
)
def test_bad_config(keys: dict[str, object], match: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=match):
        LogCheckConfig.model_validate({"name": "t", "type": "log", "path": "/var/log/app.log", "pattern": "x", **keys})


def test_default_threshold() -> None:
    cfg = LogCheckConfig.model_validate({"name": "t", "type": "log", "path": "/var/log/a", "pattern": "x"})
    assert (cfg.warning, cfg.critical, cfg.window, cfg.max_read_bytes) == (None, 1, 300.0, 16 * 1024 * 1024)
    only_warning = LogCheckConfig.model_validate(
        {"name": "t", "type": "log", "path": "/var/log/a", "pattern": "x", "warning": 3}
    )
    assert (only_warning.warning, only_warning.critical) == (3, None)


def test_config_error_has_file_and_line() -> None:
    path = os.path.join("/etc/vigil/checks.d", "logs.yaml")
    main = "/etc/vigil/vigil.yaml"
    text = "checks:\n  - name: app-errors\n    type: log\n    path: /var/log/app.log\n    pattern: 'ERROR ['\n"
    with pytest.raises(ConfigError) as err:
        parse_sources({main: "listen: 127.0.0.1:9847\n", path: text}, main)
    assert f"{path}:5: checks[0].pattern:" in str(err.value)
    assert "invalid regular expression" in str(err.value)
