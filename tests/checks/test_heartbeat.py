"""`heartbeat` checks read the HeartbeatBook the API writes; time is the test's, through `ctx.now`."""

from __future__ import annotations

import pydantic
import pytest

import agent.config  # noqa: F401  (first: importing agent.checks before agent.config is a circular import)

# isort: split
from agent.checks.base import CheckContext, Status
from agent.checks.heartbeat import HeartbeatCheck, HeartbeatConfig, human
from agent.checks.heartbeats import HeartbeatBook
from tests.checks.common import config_error, perf

TOKEN = "s3cr3t-token-0123456789"
T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make(book: HeartbeatBook, clock: Clock, **keys: object) -> HeartbeatCheck:
    cfg = HeartbeatConfig.model_validate(
        {"name": "nightly-backup", "type": "heartbeat", "period": "1h", "grace": "5m", "token": TOKEN, **keys}
    )
    return HeartbeatCheck(cfg, CheckContext(heartbeats=book, now=clock))


async def test_on_time_due_and_late() -> None:
    book, clock = HeartbeatBook(), Clock()
    check = make(book, clock)
    book.record("nightly-backup", "ping", T0, exit_status=0, run_time=42.0)
    clock.now = T0 + 600
    on_time = await check.run()
    assert on_time.status is Status.OK
    assert on_time.message == "last ping 10m ago (ran 42s), next due by 2027-01-15T09:00:00Z"
    assert perf(on_time) == {"since_last_ping": 600.0, "run_time": 42.0}
    assert on_time.details["last_ping"] == "2027-01-15T08:00:00Z"
    assert on_time.details["late_at"] == "2027-01-15T09:05:00Z"
    clock.now = T0 + 3600 + 120
    due = await check.run()
    assert due.status is Status.OK
    assert due.message.startswith("due: last ping 1h 2m ago")
    assert "late after 2027-01-15T09:05:00Z" in due.message
    clock.now = T0 + 3600 + 301
    late = await check.run()
    assert late.status is Status.CRITICAL
    assert late.message == (
        "late: last ping 1h 5m ago at 2027-01-15T08:00:00Z, expected every 1h (+grace 5m)"
    )
    book.record("nightly-backup", "ping", clock.now)
    assert (await check.run()).status is Status.OK


async def test_fail_and_non_zero_exit_status() -> None:
    book, clock = HeartbeatBook(), Clock()
    check = make(book, clock)
    book.record("nightly-backup", "ping", T0)
    book.record("nightly-backup", "fail", T0 + 60, message="pg_dump: connection refused")
    clock.now = T0 + 90
    failed = await check.run()
    assert failed.status is Status.CRITICAL
    assert failed.message == "job reported failure 30s ago: pg_dump: connection refused"
    assert failed.details["last_fail"] == "2027-01-15T08:01:00Z"
    book.record("nightly-backup", "ping", T0 + 120, exit_status=3, message="disk full")
    clock.now = T0 + 125
    exit3 = await check.run()
    assert exit3.status is Status.CRITICAL
    assert exit3.message == "job reported failure (exit status 3) 5.0s ago: disk full"
    assert exit3.details["exit_status"] == 3
    book.record("nightly-backup", "start", T0 + 200)  # the retry running does not clear the failure
    clock.now = T0 + 210
    assert (await check.run()).status is Status.CRITICAL
    book.record("nightly-backup", "ping", T0 + 230, exit_status=0)
    clock.now = T0 + 240
    recovered = await check.run()
    assert recovered.status is Status.OK
    assert perf(recovered)["run_time"] == 30.0  # measured from the /start


async def test_never_pinged_then_late() -> None:
    book, clock = HeartbeatBook(), Clock()
    check = make(book, clock)
    first = await check.run()
    assert first.status is Status.OK
    assert first.message == "waiting for the first ping (due by 2027-01-15T09:00:00Z)"
    assert book.get("nightly-backup") is not None and book.get("nightly-backup").first_seen == T0
    assert "since_last_ping" not in perf(first)
    clock.now = T0 + 3600 + 300
    assert (await check.run()).status is Status.OK  # reaching the deadline is not yet late
    clock.now += 1
    late = await check.run()
    assert late.status is Status.CRITICAL
    assert late.message == (
        "no ping since Vigil started watching at 2027-01-15T08:00:00Z (1h 5m ago), expected every 1h (+grace 5m)"
    )


async def test_max_run_time() -> None:
    book, clock = HeartbeatBook(), Clock()
    check = make(book, clock, max_run_time="30m")
    book.record("nightly-backup", "ping", T0 - 1800)
    book.record("nightly-backup", "start", T0)
    clock.now = T0 + 1200
    running = await check.run()
    assert running.status is Status.OK
    assert running.message.endswith("; running since 2027-01-15T08:00:00Z")
    assert running.details["running_since"] == "2027-01-15T08:00:00Z"
    clock.now = T0 + 1801
    stuck = await check.run()
    assert stuck.status is Status.CRITICAL
    assert stuck.message == "started at 2027-01-15T08:00:00Z, no completion after 30m 1s (max_run_time 30m)"
    book.record("nightly-backup", "ping", T0 + 1900)
    clock.now = T0 + 1910
    done = await check.run()
    assert done.status is Status.OK and done.details["running_since"] is None
    assert perf(done)["run_time"] == 1900.0


async def test_without_a_book_is_unknown() -> None:
    cfg = HeartbeatConfig.model_validate({"name": "hb", "type": "heartbeat", "period": 60, "token": TOKEN})
    result = await HeartbeatCheck(cfg, CheckContext()).run()
    assert result.status is Status.UNKNOWN


def test_defaults_and_token() -> None:
    cfg = HeartbeatConfig.model_validate({"name": "hb", "type": "heartbeat", "period": "1d", "token": TOKEN})
    assert (cfg.grace, cfg.interval, cfg.timeout, cfg.fall, cfg.rise) == (300.0, 60.0, 5.0, 1, 1)
    assert TOKEN not in repr(cfg) and TOKEN not in str(cfg.model_dump(mode="json"))
    assert cfg.token_matches(TOKEN)
    assert not cfg.token_matches(TOKEN[:-1] + "x")
    assert not cfg.token_matches("")


def test_human() -> None:
    assert [human(s) for s in (0, 2.5, 45, 303, 3725, 86400, 90000)] == [
        "0s", "2.5s", "45s", "5m 3s", "1h 2m", "1d", "1d 1h",
    ]


@pytest.mark.parametrize(
    ("keys", "match"),
    [
        ({"token": "short-token"}, "at least 16 characters \\(got 11\\)"),
        ({"token": "has spaces in the token"}, "without spaces"),
        ({"period": 0}, "greater than 0"),
        ({"period": "daily"}, "expected a duration"),
        ({"grace": "-5m"}, "expected a duration"),
        ({"max_run_time": 0}, "greater than 0"),
        ({"interval": "2s"}, "timeout \\(5s\\) must not exceed interval \\(2s\\)"),
    ],
)
def test_bad_config(keys: dict[str, object], match: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=match):
        HeartbeatConfig.model_validate({"name": "hb", "type": "heartbeat", "period": "1h", "token": TOKEN, **keys})


def test_short_token_error_does_not_show_it() -> None:
    with pytest.raises(pydantic.ValidationError) as err:
        HeartbeatConfig.model_validate({"name": "hb", "type": "heartbeat", "period": "1h", "token": "tiny-secret"})
    assert "tiny-secret" not in err.value.errors()[0]["msg"]


def test_config_error_has_file_and_line() -> None:
    main = "/etc/vigil/vigil.yaml"
    text = "checks:\n  - name: backup\n    type: heartbeat\n    token: tiny-secret\n    period: 1d\n"
    message = config_error(text, main)
    assert f"{main}:4: checks[0].token: token must have at least 16 characters" in message
    assert "tiny-secret" not in message
    text = "checks:\n  - name: backup\n    type: heartbeat\n    token: " + TOKEN + "\n"
    assert f"{main}:2: checks[0].period: required key is missing" in config_error(text, main)
