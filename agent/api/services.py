"""What route handlers may use: the daemon's components, handed over as one object."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

from aiohttp import web

from agent.alerting.maintenance import Maintenance
from agent.alerting.manager import RuleManager
from agent.alerting.silencebook import SilenceBook
from agent.api.ratelimit import RateLimiter
from agent.audit import Audit
from agent.auth.keys import KeyRing
from agent.checks.runner import CheckRunner
from agent.collectors.runner import CollectorRunner
from agent.components import Components, build
from agent.config.manager import ConfigManager
from agent.diagnostics.caches import Caches
from agent.diagnostics.caches import build as build_caches
from agent.events import EventBus
from agent.exporter import Exporter
from agent.hostview import HostView
from agent.logbook.book import LogBook
from agent.notify.dispatcher import Dispatcher
from agent.processes import ProcessTable
from agent.queries import QueryService
from agent.scheduler import Scheduler
from agent.security.policy import AccessPolicy
from agent.selfmetrics import SelfMetrics
from agent.store import Store
from agent.tasks import TaskRunner
from agent.tsdb.db import TSDB
from agent.units.manager import UnitManager


@dataclass
class Services:
    config: ConfigManager
    store: Store
    keys: KeyRing
    bus: EventBus
    scheduler: Scheduler
    collectors: CollectorRunner
    exporter: Exporter
    processes: ProcessTable
    metrics: SelfMetrics
    hostview: HostView
    limiter: RateLimiter
    tsdb: TSDB
    queries: QueryService
    units: UnitManager
    checks: CheckRunner
    audit: Audit
    silences: SilenceBook
    maintenance: Maintenance
    security: AccessPolicy
    tasks: TaskRunner
    started_at: float
    is_ready: Callable[[], bool]
    rules: RuleManager | None = None
    notifier: Dispatcher | None = None
    logbook: LogBook | None = None
    stopping: asyncio.Event = field(default_factory=asyncio.Event)


    @property
    def hostname(self) -> str:
        return self.config.config.hostname or socket.gethostname()

    @cached_property
    def components(self) -> Components:
        """Vigil's own components (`/api/v1/services`), built on first use from the fields above."""
        return build(self)

    @cached_property
    def caches(self) -> Caches:
        """Vigil's own caches (`/api/v1/cache`), built on first use from the fields above."""
        return build_caches(self)


SERVICES = web.AppKey("services", Services)


def services(request: web.Request) -> Services:
    return request.app[SERVICES]
