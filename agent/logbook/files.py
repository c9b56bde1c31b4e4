"""The host's log files named in `log.files`, read on demand from their end.

A read is blocking file I/O (callers run it in a thread), takes at most `max_read_bytes` from the
end of the file, and is cached until the file changes (inode, size or mtime), so paging through
the same lines does not parse them again. Each line gets a time (from the line itself when it
carries one: ISO 8601, syslog, the common log format or a JSON `timestamp`; else the time of the
line before it) and a level (a JSON `level`, or a level word such as `ERROR` or `[warn]`; else info).
"""

from __future__ import annotations

import json
import os
import re
import stat
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from agent.logbook.config import LogFileConfig

MAX_LINE = 8 * 1024  # longer lines are cut in the answer (search sees the cut line too)
_HEAD = 200  # a level word is looked for near the start of a line only

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def ascii_lower(text: str) -> str:
    """Lowercase A-Z only, as SQLite's lower() does, so search matches the same in files and the store."""
    return text.translate(_ASCII_LOWER)


LEVEL_WORDS = {
    "trace": 10, "debug": 10, "info": 20, "notice": 20, "warn": 30, "warning": 30, "error": 40, "err": 40,
    "severe": 40, "crit": 50, "critical": 50, "fatal": 50, "alert": 50, "emerg": 50, "panic": 50,
}
_LEVEL_UPPER = re.compile(r"\b(TRACE|DEBUG|INFO|NOTICE|WARN|WARNING|ERROR|ERR|SEVERE|CRIT|CRITICAL|FATAL|ALERT"
                          r"|EMERG|PANIC)\b")
_LEVEL_TAGGED = re.compile(r"(?:\[|<|level=|lvl=|severity=)\"?(trace|debug|info|notice|warn|warning|error|err|severe"
                           r"|crit|critical|fatal|alert|emerg|panic)\b", re.IGNORECASE)
_ISO = re.compile(r"^\[?(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})(?:[.,](\d{1,9}))?\s?(Z|[+-]\d{2}(?::?\d{2})?)?")
_SYSLOG = re.compile(r"^([A-Z][a-z]{2}) {1,2}(\d{1,2}) (\d{2}):(\d{2}):(\d{2})\b")
_CLF = re.compile(r"\[(\d{2})/([A-Z][a-z]{2})/(\d{4}):(\d{2}):(\d{2}):(\d{2}) ([+-])(\d{2})(\d{2})\]")
_MONTHS = {m: i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), start=1)}
_JSON_TIME = ("timestamp", "time", "ts", "@timestamp", "datetime", "date")
_JSON_LEVEL = ("level", "severity", "levelname", "lvl", "log.level")
_JSON_MESSAGE = ("message", "msg", "event")


@dataclass(frozen=True)
class FileLine:
    offset: int  # of the line's first byte in the file: its place among lines of the same time
    ts: float
    level: int
    message: str
    context: dict[str, Any]
    lowered: str  # the line as search sees it


@dataclass
class FileRead:
    name: str
    path: str
    lines: list[FileLine] = field(default_factory=list)  # oldest first, as in the file
    size: int = 0
    read_bytes: int = 0
    error: str | None = None


def _time_value(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) / 1000.0 if value > 1e11 else float(value)  # milliseconds, as JavaScript logs them
    if isinstance(value, str):
        match = _ISO.match(value.strip())
        if match:
            return _iso_time(match)
    return None


def _iso_time(match: re.Match[str]) -> float | None:
    date, clock, fraction, zone = match.groups()
    text = f"{date}T{clock}" + (f".{fraction[:6].ljust(6, '0')}" if fraction else "")
    if zone:
        text += "+00:00" if zone == "Z" else (zone if ":" in zone or len(zone) == 3 else f"{zone[:3]}:{zone[3:]}")
    try:
        return datetime.fromisoformat(text).timestamp()  # no zone: the host's local time, as the file was written
    except ValueError:
        return None


def _syslog_time(match: re.Match[str], now: float) -> float | None:
    month = _MONTHS.get(match.group(1))
    if month is None:
        return None
    year = time.localtime(now).tm_year
    try:
        ts = datetime(year, month, int(match.group(2)), int(match.group(3)), int(match.group(4)),
                      int(match.group(5))).timestamp()
        if ts > now + 86400:  # syslog has no year: December's lines read in January
            ts = datetime(year - 1, month, int(match.group(2)), int(match.group(3)), int(match.group(4)),
                          int(match.group(5))).timestamp()
    except ValueError:
        return None
    return ts


def _clf_time(match: re.Match[str]) -> float | None:
    day, mon, year, hh, mm, ss, sign, zh, zm = match.groups()
    month = _MONTHS.get(mon)
    if month is None:
        return None
    try:
        ts = datetime(int(year), month, int(day), int(hh), int(mm), int(ss), tzinfo=UTC).timestamp()
    except ValueError:
        return None
    offset = (int(zh) * 3600 + int(zm) * 60) * (1 if sign == "+" else -1)
    return ts - offset


def _level_word(head: str) -> int | None:
    match = _LEVEL_TAGGED.search(head) or _LEVEL_UPPER.search(head)
    return LEVEL_WORDS.get(match.group(1).lower()) if match else None


def parse_line(text: str, now: float) -> tuple[float | None, int | None, str, dict[str, Any]]:
    """(time or None, level or None, message, context) of one line."""
    stripped = text.lstrip()
    if stripped.startswith("{"):
        try:
            doc = json.loads(stripped)
        except (ValueError, RecursionError):
            doc = None
        if isinstance(doc, dict):
            ts = next((t for k in _JSON_TIME if (t := _time_value(doc.get(k))) is not None), None)
            level = next((LEVEL_WORDS.get(str(doc[k]).lower()) for k in _JSON_LEVEL if k in doc), None)
            message = next((str(doc[k]) for k in _JSON_MESSAGE if isinstance(doc.get(k), str)), text)
            context = {str(k): v for k, v in list(doc.items())[:50]
                       if k not in _JSON_MESSAGE and isinstance(v, str | int | float | bool | type(None))}
            return ts, level, message, context
    head = text[:_HEAD]
    ts: float | None = None
    if (match := _ISO.match(head)) is not None:
        ts = _iso_time(match)
    elif (match := _SYSLOG.match(head)) is not None:
        ts = _syslog_time(match, now)
    elif (match := _CLF.search(head)) is not None:
        ts = _clf_time(match)
    return ts, _level_word(head), text, {}


def read_tail(path: str, max_bytes: int) -> tuple[bytes, int, int]:
    """(the last whole lines within max_bytes, the file offset they start at, the file size).

    Opened non-blocking and checked to be a regular file, so a FIFO or device named by mistake cannot
    hang the reading thread."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(f"{path} is not a regular file")
        size = st.st_size
        start = max(0, size - max_bytes)
        data = os.pread(fd, size - start, start)
    finally:
        os.close(fd)
    if start > 0:  # the first line is probably cut: start at the next whole line
        cut = data.find(b"\n")
        if cut < 0:
            return b"", size, size
        data = data[cut + 1:]
        start += cut + 1
    return data, start, size


def parse(data: bytes, start: int, mtime: float, now: float) -> list[FileLine]:
    pending: list[tuple[int, int | None, str, dict[str, Any], str, float | None]] = []
    offset = start
    for raw in data.split(b"\n"):
        line_offset = offset
        offset += len(raw) + 1
        if not raw.strip():
            continue
        text = raw[:MAX_LINE].decode("utf-8", "replace").rstrip("\r")
        ts, level, message, context = parse_line(text, now)
        pending.append((line_offset, level, message, context, ascii_lower(text), ts))
    # A line without a time (a stack trace, a wrapped message) belongs with the line before it; lines
    # before the first dated one take its time, and a file without any takes its modification time.
    lines: list[FileLine] = []
    first = next((p[5] for p in pending if p[5] is not None), mtime)
    current = first
    for line_offset, level, message, context, lowered, ts in pending:
        if ts is not None:
            current = ts
        lines.append(FileLine(line_offset, current, level if level is not None else 20, message, context, lowered))
    return lines


class FileSource:
    """One configured file; `read()` blocks (run it in a thread)."""

    def __init__(self, config: LogFileConfig):
        self.config = config
        self._lock = threading.Lock()
        self._cached: tuple[tuple[int, int, int, int, int], FileRead] | None = None

    def read(self) -> FileRead:
        cfg = self.config
        try:
            st = os.stat(cfg.path)
        except OSError as exc:
            return FileRead(cfg.name, cfg.path, error=f"cannot read {cfg.path}: {exc.strerror or exc}")
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, cfg.max_read_bytes)
        with self._lock:
            if self._cached is not None and self._cached[0] == key:
                return self._cached[1]
            try:
                data, start, size = read_tail(cfg.path, cfg.max_read_bytes)
            except OSError as exc:
                return FileRead(cfg.name, cfg.path, error=f"cannot read {cfg.path}: {exc.strerror or exc}")
            result = FileRead(cfg.name, cfg.path, parse(data, start, st.st_mtime, time.time()), size, len(data))
            self._cached = (key, result)
            return result
