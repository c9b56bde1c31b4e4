"""structlog setup: JSON lines on stdout for journald, or a console renderer for humans."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, TextIO

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
# structlog's method names and the stdlib's level names, as numbers (what the store keeps and filters on).
LEVEL_NUMBERS = {
    "debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "warning": logging.WARNING,
    "error": logging.ERROR, "exception": logging.ERROR, "critical": logging.CRITICAL, "fatal": logging.CRITICAL,
}
# Where every event at or above the sink's level goes besides stdout: (logger name, level number, event dict).
Sink = Callable[[str, int, dict[str, Any]], None]

# Logger name prefix -> the component (GET /api/v1/services/{name}) whose recent errors it files.
COMPONENT_OF_LOGGER = {
    "vigil.store": "store",
    "vigil.scheduler": "scheduler",
    "apscheduler": "scheduler",
    "vigil.collectors": "collectors",
    "vigil.checks": "checks",
    "vigil.history": "history",
    "vigil.tsdb": "history",
    "vigil.ingest": "history",
    "vigil.config": "config",
    "vigil.units": "units",
    "vigil.api": "api",
    "aiohttp": "api",
}
RECENT_ERRORS = 20
MERGE_WINDOW = 60.0  # the same event and error again within this many seconds only counts up
_CONTEXT_SKIP = {
    "event", "level", "timestamp", "error", "errors", "message", "exc_info", "exception", "logger", "stack_info",
}
_WARNING_LEVELS = {"warning", "warn", "error", "critical", "exception", "fatal"}
# Warnings about what Vigil watches, not about Vigil: a check going critical is the check's news.
_NOT_COMPONENT_ERRORS = {"check_state_changed"}


class ErrorBook:
    """The last warning and error events of each component, for the components API.

    Cheap on purpose: it sees only warning+ events, keeps a short deque per component, and folds a
    repeat of the newest matching entry (same event and error within MERGE_WINDOW) into a count, so a
    failure that repeats every few seconds does not push everything else out."""

    def __init__(self, size: int = RECENT_ERRORS):
        self._size = size
        self._books: dict[str, deque[dict[str, Any]]] = {}
        self._lock = threading.Lock()  # collector and query threads may log too

    def add(self, component: str, level: str, event: str, error: str | None, context: dict[str, Any],
            now: float | None = None) -> None:
        at = time.time() if now is None else now
        with self._lock:
            book = self._books.setdefault(component, deque(maxlen=self._size))
            for entry in reversed(book):
                if at - entry["at"] > MERGE_WINDOW:
                    break
                if entry["event"] == event and entry["error"] == error and entry["level"] == level:
                    entry["count"] += 1
                    entry["at"] = at
                    entry["context"] = context
                    return
            book.append({"at": at, "first_at": at, "level": level, "event": event, "error": error,
                         "context": context, "count": 1})

    def recent(self, component: str, since: float = 0.0) -> list[dict[str, Any]]:
        """Newest first; copies, so callers may keep them."""
        with self._lock:
            book = self._books.get(component, ())
            return [dict(entry) for entry in reversed(book) if entry["at"] >= since]


ERRORS = ErrorBook()


def recent_errors(component: str, since: float = 0.0) -> list[dict[str, Any]]:
    """The component's last warning/error events (newest first): at, first_at, level, event, error,
    context, count."""
    return ERRORS.recent(component, since)


def component_of(logger_name: str) -> str | None:
    for prefix, component in COMPONENT_OF_LOGGER.items():
        if logger_name == prefix or logger_name.startswith(prefix + "."):
            return component
    return None


def _error_text(event_dict: dict[str, Any]) -> str | None:
    for key in ("error", "message", "reason"):
        value = event_dict.get(key)
        if value is not None:
            return str(value)[:500]
    errors = event_dict.get("errors")
    if isinstance(errors, list | tuple) and errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        return f"{errors[0]}{more}"[:500]
    exc_info = event_dict.get("exc_info")
    exc: BaseException | None = None
    if isinstance(exc_info, BaseException):
        exc = exc_info
    elif isinstance(exc_info, tuple) and len(exc_info) == 3:
        exc = exc_info[1]
    elif exc_info:
        exc = sys.exc_info()[1]
    return None if exc is None else f"{type(exc).__name__}: {exc}"[:500]


def file_errors(logger: Any, method_name: str, event_dict: Any) -> Any:
    """structlog processor: warning+ events of Vigil's components into ERRORS (the dict goes on unchanged)."""
    level = str(event_dict.get("level") or method_name).lower()
    if level not in _WARNING_LEVELS or event_dict.get("event") in _NOT_COMPONENT_ERRORS:
        return event_dict
    name = getattr(logger, "name", None) or event_dict.get("logger")
    component = component_of(name) if isinstance(name, str) else None
    if component is None:
        return event_dict
    context = {
        k: (v[:200] if isinstance(v, str) else v) for k, v in list(event_dict.items())[:20]
        if k not in _CONTEXT_SKIP and isinstance(v, str | int | float | bool)
    }
    ERRORS.add(component, "error" if level in {"exception", "critical", "fatal"} else level,
               str(event_dict.get("event")), _error_text(event_dict), context)
    return event_dict


class NamedPrintLogger(structlog.PrintLogger):
    """A PrintLogger that remembers the name it was asked for (`get_logger("vigil.store")`), which
    structlog's own factory drops, so processors can tell which component logged."""

    def __init__(self, file: TextIO | None = None, name: str = ""):
        super().__init__(file)
        self.name = name


class NamedPrintLoggerFactory:
    def __init__(self, file: TextIO | None = None):
        self._file = file

    def __call__(self, *args: Any) -> NamedPrintLogger:
        name = args[0] if args and isinstance(args[0], str) else ""
        return NamedPrintLogger(self._file, name)


class _Output:
    """What `configure` last set up, so that `set_sink` can redo it with the sink's level."""

    level = "info"
    format = "json"
    sink: Sink | None = None
    sink_level = logging.INFO


def _level_of(method_name: str, event_dict: Any) -> int:
    return LEVEL_NUMBERS.get(str(event_dict.get("level") or method_name).lower(), logging.INFO)


def to_sink(logger: Any, method_name: str, event_dict: Any) -> Any:
    """structlog processor: hand the event to the sink (the logbook) when it is at the sink's level."""
    sink = _Output.sink
    if sink is not None:
        level = _level_of(method_name, event_dict)
        if level >= _Output.sink_level:
            name = getattr(logger, "name", None) or event_dict.get("logger") or ""
            sink(str(name), level, event_dict)
    return event_dict


def drop_below_output(logger: Any, method_name: str, event_dict: Any) -> Any:
    """structlog processor: the store may keep debug events that stdout (log.level) does not show."""
    if _level_of(method_name, event_dict) < _LEVELS[_Output.level]:
        raise structlog.DropEvent
    return event_dict


def set_sink(sink: Sink | None, level: str = "info") -> None:
    """Also give every event at `level` or above to `sink` (None: stop). The sink is called in the
    logging thread and must return at once."""
    _Output.sink, _Output.sink_level = sink, _LEVELS[level]
    configure(_Output.level, _Output.format)


def configure(level: str = "info", fmt: str = "json") -> None:
    _Output.level, _Output.format = level, fmt
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    )
    lowest = min(_LEVELS[level], _Output.sink_level) if _Output.sink is not None else _LEVELS[level]
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            file_errors,
            structlog.processors.format_exc_info,
            to_sink,
            drop_below_output,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(lowest),
        logger_factory=NamedPrintLoggerFactory(file=sys.stdout),
        cache_logger_on_first_use=False,
    )
    # Libraries (aiohttp, apscheduler) log through stdlib logging: same renderer, their warnings up.
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processor=renderer,
            foreign_pre_chain=[
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                file_errors,
                to_sink,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(max(_LEVELS[level], logging.WARNING))
