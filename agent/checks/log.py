"""`log`: lines of a log file matching a pattern, counted over a sliding window (check_logfiles).

The file is followed as `tail -F` follows it: by device, inode and offset, kept in `memo` so that
a restart of Vigil continues where it stopped, neither counting old lines again nor missing the
lines written meanwhile. Both ways logrotate rotates are recognised:

- `create`: the file is renamed to `path.1` and a new one created. The inode changes; the rest
  of the old file is read from `path.1` (only there: finding a renamed inode anywhere else would
  mean scanning directories), then the new file from its start.
- `copytruncate`: the file shrinks under the offset, or (refilled past the offset before the next
  run) the bytes just before the offset are not those read last time; either way it is read again
  from its start. Lines written between the last run and the copy are in `path.1` only and are
  not counted.

Lines are stamped when they are read (log formats differ too much to parse their own times),
so "in the last 5m" means "read in the last 5m", to the resolution of the check's interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any, Literal

from pydantic import Field, model_validator

from agent.checks.base import Check, CheckConfig, CheckResult, Perfdata, Status, grade, register, thresholds_ordered
from agent.config.durations import Duration
from agent.config.section import AbsolutePath, Pattern

MAX_BUCKETS = 300  # match counts kept per window in memo: the window's resolution is window / 300
LAST_LINE_CHARS = 200
MARK_BYTES = 64
MIB = 1024 * 1024


class LogCheckConfig(CheckConfig):
    type: Literal["log"]
    path: AbsolutePath = Field(min_length=1, description="absolute path of the log file")
    pattern: Pattern = Field(description="regular expression (Python syntax) searched for in each line")
    window: Duration = Field(300.0, gt=0, description="matches are counted over this much time back")
    warning: int | None = Field(None, ge=1, description="matches within the window that make the check WARNING")
    critical: int | None = Field(
        None, ge=1, description="matches within the window that make it CRITICAL; 1 when neither threshold is given"
    )
    from_start: bool = Field(False, description="read a file seen for the first time from its start, not its end")
    max_read_bytes: int = Field(
        16 * MIB, ge=1024, le=1024 * MIB, description="read at most this much per run; the rest is read by the next"
    )

    @model_validator(mode="after")
    def _thresholds(self) -> LogCheckConfig:
        thresholds_ordered(self.warning, self.critical, "matches")
        if self.warning is None and self.critical is None:
            self.critical = 1  # a log check without thresholds could never fail: any match is the alarm
        return self


@dataclass
class Cursor:
    """Where reading stopped in one file, told apart from its successors by (dev, ino), and from
    a rewrite of itself by `mark`, a digest of the bytes just before the offset."""

    dev: int
    ino: int
    offset: int
    mark: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"dev": self.dev, "ino": self.ino, "offset": self.offset, "mark": self.mark}

    @classmethod
    def from_memo(cls, data: Any) -> Cursor | None:
        try:
            return cls(int(data["dev"]), int(data["ino"]), int(data["offset"]), data.get("mark"))
        except (AttributeError, KeyError, TypeError, ValueError):
            return None


def mark_at(fd: int, offset: int) -> str:
    """Digest of the (up to) MARK_BYTES before `offset`: if they changed while the file did not
    shrink, it was truncated and written again past the offset between two runs (copytruncate)."""
    before = os.pread(fd, min(offset, MARK_BYTES), max(offset - MARK_BYTES, 0))
    return hashlib.blake2b(before, digest_size=8).hexdigest()


@dataclass
class Scan:
    current: Cursor
    pending: Cursor | None  # a rotated file (at path.1) not yet read to its end
    matches: int = 0
    last_line: str | None = None
    read_bytes: int = 0
    unread_bytes: int = 0
    limited: bool = False  # max_read_bytes stopped a read before the end of a file
    size: int = 0
    notes: list[str] = field(default_factory=list)


def _read_lines(fh: IO[bytes], scan: Scan, offset: int, budget: int, regex: re.Pattern[str], final: bool) -> int:
    """Count matches in the complete lines from `offset` (at most `budget` bytes); the new offset.

    A trailing line without its newline is left for the next run (the writer is in the middle of
    it), unless the file is `final` (rotated away) or the line alone is longer than the budget."""
    fh.seek(offset)
    data = fh.read(budget)
    at_eof = len(data) < budget
    scan.limited = scan.limited or not at_eof
    if not (final and at_eof):
        cut = data.rfind(b"\n") + 1
        data = data[:cut] if cut or at_eof else data
    text = data.decode("utf-8", "replace")
    lines = text.split("\n")
    if not lines[-1]:
        lines.pop()
    for raw in lines:
        line = raw.removesuffix("\r")
        if regex.search(line):
            scan.matches += 1
            scan.last_line = line
    scan.read_bytes += len(data)
    return offset + len(data)


def scan_file(path: str, regex: re.Pattern[str], current: Cursor | None, pending: Cursor | None,
              from_start: bool, budget: int) -> Scan:
    """Read what was added since the cursors (blocking: runs in a thread). Raises OSError when
    `path` cannot be opened."""
    with open(path, "rb") as fh:
        st = os.fstat(fh.fileno())
        notes: list[str] = []
        if current is None:
            current = Cursor(st.st_dev, st.st_ino, 0 if from_start else st.st_size)
            if not from_start:
                notes.append("first sight of the file: following it from its end")
        elif (current.dev, current.ino) != (st.st_dev, st.st_ino):
            if pending is not None:
                notes.append("rotated again before the previous file was read to its end: its rest is skipped")
            pending = current
            current = Cursor(st.st_dev, st.st_ino, 0)
            notes.append("the file was rotated: reading the new one from its start")
        elif st.st_size < current.offset:
            notes.append(f"the file shrank below the offset {current.offset} (copytruncate): reading from its start")
            current.offset = 0
        elif current.mark is not None and mark_at(fh.fileno(), current.offset) != current.mark:
            notes.append("the file was truncated and written again (copytruncate): reading from its start")
            current.offset = 0
        scan = Scan(current, pending, notes=notes)
        if pending is not None:
            _finish_rotated(path + ".1", scan, regex, budget)
        if scan.pending is None:
            current.offset = _read_lines(fh, scan, current.offset, budget - scan.read_bytes, regex, final=False)
        current.mark = mark_at(fh.fileno(), current.offset)
        scan.size = os.fstat(fh.fileno()).st_size
        scan.unread_bytes += max(scan.size - current.offset, 0)
    if scan.limited and scan.unread_bytes:
        scan.notes.append(f"read {scan.read_bytes} bytes (max_read_bytes); {scan.unread_bytes} more next run")
    return scan


def _finish_rotated(old_path: str, scan: Scan, regex: re.Pattern[str], budget: int) -> None:
    pending = scan.pending
    assert pending is not None
    # Gone, unreadable or another file: the rotated file's unread lines are lost, and said so below.
    with contextlib.suppress(OSError), open(old_path, "rb") as old:
        st = os.fstat(old.fileno())
        if (st.st_dev, st.st_ino) == (pending.dev, pending.ino):
            pending.offset = _read_lines(old, scan, pending.offset, budget, regex, final=True)
            scan.unread_bytes = max(st.st_size - pending.offset, 0)
            scan.pending = pending if scan.unread_bytes else None
            return
    scan.notes.append(f"the rotated file is not at {old_path}: lines written to it after the last run are not counted")
    scan.pending = None


def short_duration(seconds: float) -> str:
    """"5m", "1h30m": as durations are written in the config."""
    if seconds != int(seconds):
        return f"{seconds:g}s"
    rest, parts = int(seconds), []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, rest = divmod(rest, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@register
class LogCheck(Check):
    type = "log"
    Config = LogCheckConfig

    def _now(self) -> float:
        return self.ctx.now() if self.ctx.now is not None else time.time()

    async def run(self) -> CheckResult:
        cfg = self.config
        assert isinstance(cfg, LogCheckConfig)
        now = self._now()
        memo = self.memo
        if memo.get("path") != cfg.path:  # another file under the same check name: nothing carries over
            memo.clear()
        if memo.get("pattern") != cfg.pattern:
            memo.update(buckets=[], last_line=None, last_at=None)
        try:
            scan = await asyncio.to_thread(
                scan_file, cfg.path, re.compile(cfg.pattern), Cursor.from_memo(memo.get("cursor")),
                Cursor.from_memo(memo.get("pending")), cfg.from_start, cfg.max_read_bytes,
            )
        except OSError as exc:
            return CheckResult(Status.UNKNOWN, f"cannot read {cfg.path}: {exc.strerror or exc}",
                               details={"path": cfg.path})
        buckets = [[t, n] for t, n in memo.get("buckets") or [] if t > now - cfg.window]
        if scan.matches:
            if buckets and now - buckets[-1][0] < cfg.window / MAX_BUCKETS:
                buckets[-1][1] += scan.matches
            else:
                buckets.append([now, scan.matches])
        last_line, last_at = memo.get("last_line"), memo.get("last_at")
        if scan.last_line is not None:
            last_line, last_at = scan.last_line[:LAST_LINE_CHARS], now
        memo.update(path=cfg.path, pattern=cfg.pattern, cursor=scan.current.as_dict(),
                    pending=scan.pending.as_dict() if scan.pending else None, buckets=buckets,
                    last_line=last_line, last_at=last_at)
        count = int(sum(n for _, n in buckets))
        status = grade(count, cfg.warning, cfg.critical)
        what = f"/{cfg.pattern}/ in the last {short_duration(cfg.window)}"
        if count:
            message = f"{count} line{'s' if count != 1 else ''} matching {what}; last: {last_line}"
        else:
            message = f"no lines matching {what}"
        perf = [Perfdata("matches", count, "", warn=None if cfg.warning is None else str(cfg.warning),
                         crit=None if cfg.critical is None else str(cfg.critical), min=0.0)]
        details = {"path": cfg.path, "inode": scan.current.ino, "offset": scan.current.offset, "size": scan.size,
                   "read_bytes": scan.read_bytes, "unread_bytes": scan.unread_bytes, "new_matches": scan.matches,
                   "last_line": last_line, "last_match_at": _iso(last_at), "notes": scan.notes}
        return CheckResult(status, message, perf, details)
