"""What a collector is: a named class whose blocking `collect()` returns metric families.

As in node_exporter's collector package, one file per collector, each registered by name with
its own enable flag, interval and timeout in config (`collectors.<name>`). `collect()` runs in a
worker thread with a timeout, so it may block on /proc, /sys or statfs; it raises on failure.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from agent.config.schema import CollectorSettings
from agent.selfmetrics import SelfMetrics


@dataclass(slots=True)
class Family:
    """One metric family. `name` is the exposed name (counters end in `_total`)."""

    name: str
    help: str
    type: Literal["gauge", "counter"]
    label_names: tuple[str, ...] = ()
    samples: list[tuple[tuple[str, ...], float]] = field(default_factory=list)

    def add(self, value: float, *label_values: str) -> None:
        self.samples.append((label_values, float(value)))


@dataclass(frozen=True)
class CollectorContext:
    """Where to read from (tests and containers can point elsewhere) and the self metrics."""

    metrics: SelfMetrics
    proc_path: str = "/proc"
    sys_path: str = "/sys"


class Collector(ABC):
    name: ClassVar[str]

    def __init__(self, ctx: CollectorContext):
        self.ctx = ctx

    @abstractmethod
    def collect(self, settings: CollectorSettings) -> list[Family]:
        """Read the host and return the families; raise when the source cannot be read."""

    def read_proc(self, *parts: str) -> tuple[str, str]:
        """A procfs file's path (for error messages) and text, under the configured proc_path."""
        path = os.path.join(self.ctx.proc_path, *parts)
        with open(path) as f:
            return path, f.read()

    def close(self) -> None:  # noqa: B027 (optional hook; most collectors hold nothing)
        """Release threads or files the collector holds; the default holds none."""


REGISTRY: dict[str, type[Collector]] = {}


def register(cls: type[Collector]) -> type[Collector]:
    REGISTRY[cls.name] = cls
    return cls


Factory = Callable[[CollectorContext], Collector]
