"""One newest-first list over Vigil's stored events and the configured files.

Every entry has a key (time, source, seq) that orders it among all sources: stored events have source
"" and their row id, file lines the file's name and their byte offset. A cursor is the key of the last
entry shown; the next page is everything older. With an `offset` instead, only the file lines (few,
in memory) and at most offset + limit stored rows are looked at: the stored rows that can fall in the
page start at index offset - len(file lines), and the file lines before that point are counted by key.
"""

from __future__ import annotations

import asyncio
import bisect
import heapq
import itertools
from dataclasses import dataclass, field
from typing import Any, Literal

from agent.logbook.files import FileLine, FileRead, FileSource
from agent.store import Store
from agent.store import logbook as rows
from agent.store.logbook import LogFilter, LogKey, LogRow

Sources = Literal["all", "vigil", "files"]
LEVEL_NAMES = {10: "debug", 20: "info", 30: "warning", 40: "error", 50: "critical"}


def level_name(level: int) -> str:
    return LEVEL_NAMES.get(level) or LEVEL_NAMES[max([n for n in LEVEL_NAMES if n <= level] or [10])]


@dataclass
class LogEntry:
    key: LogKey
    level: int
    service: str
    source: str  # vigil or file
    message: str
    context: dict[str, Any]

    @property
    def ts(self) -> float:
        return self.key[0]

    @property
    def id(self) -> str:
        return f"vigil:{self.key[2]}" if self.source == "vigil" else f"file:{self.service}:{self.key[2]}"


@dataclass
class LogQuery:
    filter: LogFilter
    sources: Sources = "all"
    before: LogKey | None = None
    offset: int = 0
    limit: int = 100


@dataclass
class LogPage:
    entries: list[LogEntry]
    total: int
    by_level: dict[int, int]
    has_more: bool
    files: list[dict[str, Any]] = field(default_factory=list)


def _from_row(row: LogRow) -> LogEntry:
    return LogEntry((row.ts, "", row.id), row.level, row.service, "vigil", row.message, row.context)


def _from_line(read: FileRead, line: FileLine) -> LogEntry:
    return LogEntry((line.ts, read.name, line.offset), line.level, read.name, "file", line.message,
                    {**line.context, "file": read.path})


def _file_matches(f: LogFilter, line: FileLine) -> bool:
    if f.since is not None and line.ts < f.since:
        return False
    if f.until is not None and line.ts > f.until:
        return False
    return not f.search or f.search in line.lowered


_Match = tuple[LogKey, FileRead, FileLine]


def _file_side(sources: list[FileSource], f: LogFilter, before: LogKey | None
               ) -> tuple[list[FileRead], dict[int, int], list[_Match]]:
    """Blocking (a thread): read the files, count their matching lines by level, and return the lines
    of the page's levels older than `before`, oldest first."""
    reads = [s.read() for s in sources]
    by_level: dict[int, int] = {}
    matches: list[_Match] = []
    for read in reads:
        for line in read.lines:
            if not _file_matches(f, line):
                continue
            by_level[line.level] = by_level.get(line.level, 0) + 1
            key = (line.ts, read.name, line.offset)
            if line.level >= f.min_level and (before is None or key < before):
                matches.append((key, read, line))
    matches.sort(key=lambda m: m[0])
    return reads, by_level, matches


async def run(store: Store, files: list[FileSource], q: LogQuery) -> LogPage:
    f = q.filter
    wanted = [s for s in files if q.sources != "vigil" and (not f.services or s.config.name in f.services)]
    reads, by_level, in_files = await asyncio.to_thread(_file_side, wanted, f, q.before) if wanted else ([], {}, [])
    use_store = q.sources != "files"
    if use_store:
        for level, n in (await rows.level_counts(store, f)).items():
            by_level[level] = by_level.get(level, 0) + n
    total = sum(n for level, n in by_level.items() if level >= f.min_level)

    # Stored rows before index `start` lie before the page whatever the files hold (at most
    # len(in_files) file lines can precede the page's first entry).
    start = max(0, q.offset - len(in_files))
    stored: list[LogEntry] = []
    if use_store:
        want = min(q.offset, len(in_files)) + q.limit + 1
        stored = [_from_row(r) for r in await rows.page(store, f, q.before, start, want)]
    if start == 0:
        file_from, position = 0, 0
    elif not stored:  # fewer stored rows than `start`: the merged list is shorter than the offset
        return LogPage([], total, by_level, False, _file_info(reads))
    else:  # the file lines newer than the first stored row fetched come before it
        file_from = len(in_files) - bisect.bisect_right(in_files, stored[0].key, key=lambda m: m[0])
        position = start + file_from
    newest_first = (_from_line(read, line) for _, read, line in itertools.islice(reversed(in_files), file_from, None))
    merged = heapq.merge(stored, newest_first, key=lambda e: e.key, reverse=True)
    window: list[LogEntry] = []
    skip = q.offset - position
    for entry in merged:
        if skip > 0:
            skip -= 1
            continue
        window.append(entry)
        if len(window) > q.limit:
            break
    return LogPage(window[:q.limit], total, by_level, len(window) > q.limit, _file_info(reads))


def _file_info(reads: list[FileRead]) -> list[dict[str, Any]]:
    return [{"name": r.name, "path": r.path, "size": r.size, "read_bytes": r.read_bytes, "lines": len(r.lines),
             "error": r.error} for r in reads]
