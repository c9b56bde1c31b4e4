"""The daemon's lifecycle: build the components from config, start them in order, serve,
reload on SIGHUP or file edits, and stop cleanly on SIGTERM.

Start order is store, keys, scheduler and collectors, API listener; READY=1 goes to systemd
only once the listener accepts and the store is open. Stop order is the reverse, and the store
closes last so that everything the API acknowledged is committed.
"""

from __future__ import annotations

import asyncio
import faulthandler
import gc
import os
import signal
import socket
import ssl
import sys
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import web

from agent import __version__, logs
from agent.alerting.maintenance import Maintenance
from agent.alerting.manager import RuleManager
from agent.alerting.metrics import RuleMetrics
from agent.alerting.silencebook import SilenceBook
from agent.api.app import build_app
from agent.api.pagination import set_cursor_secret
from agent.api.ratelimit import RateLimiter
from agent.api.services import Services
from agent.audit import Audit
from agent.auth.keys import KeyRing
from agent.checks import CheckContext
from agent.checks.metrics import CheckMetrics
from agent.checks.runner import CheckRunner
from agent.collectors import CollectorContext
from agent.collectors.runner import CollectorRunner
from agent.config import ConfigError, LoadedConfig, load_config
from agent.config.manager import ConfigManager
from agent.config.schema import Config, TLSServerConfig, split_listen
from agent.config.watcher import ConfigWatcher
from agent.events import EventBus
from agent.exporter import Exporter
from agent.history import History
from agent.hostview import HostView
from agent.logbook.book import LogBook
from agent.notify.dispatcher import Dispatcher
from agent.notify.outbox import Outbox
from agent.notify.snapshots import MetricsSnapshots
from agent.processes import ProcessTable
from agent.scheduler import Scheduler
from agent.sdnotify import Notifier, watchdog_interval
from agent.security.policy import AccessPolicy
from agent.selfmetrics import SelfMetrics
from agent.store import Store, StoreError, cursor_secret
from agent.tasks import TaskRunner
from agent.units.manager import UnitManager

log = structlog.get_logger("vigil.daemon")
LOOP_LAG_INTERVAL = 2.0


class StartupError(Exception):
    """The daemon cannot start; the message says why (printed, exit status 1)."""


@dataclass
class Options:
    config_path: str
    listen: str | None = None
    state_dir: str | None = None


def ssl_context(tls: TLSServerConfig) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(tls.cert_file, tls.key_file)
        if tls.client_ca_file:
            ctx.load_verify_locations(tls.client_ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise StartupError(f"tls_server_config: cannot load certificate or key: {exc}") from None
    ctx.verify_mode = {
        "NoClientCert": ssl.CERT_NONE,
        "RequestClientCert": ssl.CERT_OPTIONAL,
        "RequireAnyClientCert": ssl.CERT_REQUIRED,
        "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
        "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
    }[tls.client_auth_type]
    return ctx


class Daemon:
    def __init__(self, options: Options):
        self.options = options
        self.metrics = SelfMetrics()
        self.notifier = Notifier()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._ready = False
        self._lag = 0.0
        self._watcher: ConfigWatcher | None = None
        self._manager: ConfigManager | None = None
        self._history: History | None = None
        self._snapshots: MetricsSnapshots | None = None
        self._logbook: LogBook | None = None

    async def run(self) -> int:
        overrides = {"listen": self.options.listen, "state_dir": self.options.state_dir}
        try:
            loaded = await asyncio.to_thread(load_config, self.options.config_path, overrides)
        except ConfigError as exc:
            print(f"vigil: invalid configuration:\n{exc}", file=sys.stderr)
            return 1
        config = loaded.config
        logs.configure(config.log.level, config.log.format)
        # Capturing starts now, so that the start-up's own events are stored once the store opens.
        self._logbook = LogBook(self.metrics, config.log.store, config.log.files)
        if config.log.store.enabled:
            logs.set_sink(self._logbook.capture, config.log.store.level)
        try:
            return await self._serve(loaded)
        except StartupError as exc:
            log.error("startup_failed", error=str(exc))
            print(f"vigil: cannot start: {exc}", file=sys.stderr)
            return 1

    async def _serve(self, loaded: LoadedConfig) -> int:
        config = loaded.config
        started_at = time.time()
        self.metrics.start_time.set(started_at)
        state_dir = os.path.abspath(config.state_dir)
        store = Store(config.store.path or os.path.join(state_dir, "vigil.db"), self.metrics,
                      config.store.synchronous, config.store.batch_max)
        try:
            await store.open()
        except StoreError as exc:
            raise StartupError(str(exc)) from None
        runner: web.AppRunner | None = None
        scheduler = Scheduler(self.metrics)
        collectors: CollectorRunner | None = None
        keys: KeyRing | None = None
        history: History | None = None
        checks: CheckRunner | None = None
        units: UnitManager | None = None
        rules: RuleManager | None = None
        notifier: Dispatcher | None = None
        tasks: TaskRunner | None = None
        logbook = self._logbook or LogBook(self.metrics, config.log.store, config.log.files)
        logbook.start(store)
        try:
            try:
                set_cursor_secret(await cursor_secret.load_or_create(store))
            except StoreError as exc:
                raise StartupError(f"cannot load the cursor secret: {exc}") from None
            keys = KeyRing(store)
            try:
                await keys.load()
            except StoreError as exc:
                raise StartupError(str(exc)) from None
            try:
                await keys.ensure_bootstrap_key(state_dir)
            except (OSError, StoreError) as exc:
                raise StartupError(f"cannot create the admin key in {state_dir}: {exc}") from None
            bus = EventBus(self.metrics)
            manager = ConfigManager(self.options.config_path, loaded, store, bus, self.metrics)
            try:
                await manager.record_startup()
            except StoreError as exc:
                raise StartupError(f"cannot record the config version: {exc}") from None
            tasks = TaskRunner(store, bus, config.tasks)
            try:
                await tasks.recover()  # what a crash left running is interrupted, before anything new starts
            except StoreError as exc:
                raise StartupError(f"cannot recover the state of tasks: {exc}") from None
            history = History(store, config.history, self.metrics)
            try:
                await history.open()
            except StoreError as exc:
                raise StartupError(f"cannot open the metrics history: {exc}") from None
            units = UnitManager(config.units, config.check_runner.systemctl, state_dir)
            ctx = CollectorContext(self.metrics, config.collectors.proc_path, config.collectors.sys_path)
            collectors = CollectorRunner(ctx, scheduler, bus, self.metrics)
            collectors.add_hook(history.collector_hook)
            audit = Audit(store)
            silences = SilenceBook(store, bus, audit)
            maintenance = Maintenance(store, bus, audit, scheduler, config.maintenance)
            try:
                await silences.load()
                await maintenance.load()
            except StoreError as exc:
                raise StartupError(f"cannot load silences and maintenance periods: {exc}") from None
            security = AccessPolicy(store, audit, bus, lambda: manager.config.security)
            try:
                await security.load()  # a restart does not unlock an address
            except StoreError as exc:
                raise StartupError(f"cannot load the lockouts: {exc}") from None
            check_ctx = CheckContext(config.check_runner.max_output_bytes, config.check_runner.systemctl,
                                     config.collectors.proc_path, state_dir)
            checks = CheckRunner(store, scheduler, bus, self.metrics, audit, check_ctx, config.check_runner)
            checks.maintenance_active = maintenance.is_active
            checks.add_hook(history.collector_hook)
            try:
                await checks.load()
            except StoreError as exc:
                raise StartupError(f"cannot load the state of checks: {exc}") from None
            rules = RuleManager(store, history.tsdb, scheduler, bus, audit, config.alerting,
                                engine=history.queries.engine, default_url=f"http://{config.listen}")
            hostname = config.hostname or socket.gethostname()
            notifier = Dispatcher(
                store, Outbox(store, self.metrics, config.notifications.outbox), bus, config.notifications, hostname,
                silenced_by=silences.silenced_by, in_maintenance=maintenance.is_active,
                resend_delay=lambda: rules.config.resend_delay if rules else 60.0,
                external_url=lambda: rules.external_url if rules else "",
            )
            try:
                await rules.load()
                await notifier.load()
            except StoreError as exc:
                raise StartupError(f"cannot load the state of alerts: {exc}") from None
            rules.add_sink(notifier.process)
            rules.on_acknowledged(notifier.acknowledged)
            silences.on_change(notifier.held)
            maintenance.on_change(lambda _active: notifier.held())
            exporter = Exporter(collectors, self.metrics)
            exporter.live.register(CheckMetrics(checks))
            exporter.live.register(RuleMetrics(rules))
            history.record_registry("vigil-live", exporter.live)
            hostview = HostView(collectors)
            limiter = RateLimiter(config.api.rate_limit)
            svc = Services(
                config=manager, store=store, keys=keys, bus=bus, scheduler=scheduler, collectors=collectors,
                exporter=exporter, checks=checks, audit=audit, silences=silences, maintenance=maintenance, tasks=tasks,
                security=security,
                processes=ProcessTable(config.processes.cache_ttl, config.collectors.proc_path),
                metrics=self.metrics, hostview=hostview, limiter=limiter,
                tsdb=history.tsdb, queries=history.queries, units=units,
                started_at=started_at, rules=rules, notifier=notifier, logbook=logbook,
                is_ready=lambda: self._ready,
            )
            self._history = history
            manager.on_apply(lambda new, old: self._apply(svc, new, old))

            scheduler.start()
            maintenance.start()
            scheduler.every("alerting.silences_tick", 1.0, silences.tick)
            scheduler.every("alerting.silences_prune", 3600.0, silences.prune, first_in=60.0)
            history.start(scheduler)
            collectors.configure(config.collectors)
            await units.start()
            checks.start()
            await checks.configure(config.checks)
            await notifier.configure(config.notifications)
            notifier.start()
            self._snapshots = MetricsSnapshots(bus, history.queries, hostname)
            self._schedule_snapshots(scheduler, config)
            scheduler.every("notify.tick", 1.0, notifier.tick)
            scheduler.every("notify.prune", 60.0, notifier.prune, first_in=60.0)
            try:
                history.record_self()
            except Exception:  # as the scheduled job would: a metric that cannot be read must not stop the start
                log.exception("self_metrics_failed")
            rules.start()
            await rules.configure(loaded.rule_groups)
            scheduler.every("vigil.keys_last_used", 60, keys.flush_last_used)
            scheduler.every("logbook.prune", 3600.0, logbook.prune_job, first_in=2.0)
            scheduler.every("tasks.prune", 3600.0, tasks.prune, first_in=60.0)

            runner = web.AppRunner(build_app(svc), access_log=None, handle_signals=False,
                                   shutdown_timeout=config.api.shutdown_timeout)
            await runner.setup()
            host, port = split_listen(config.listen)
            tls = ssl_context(config.tls_server_config) if config.tls_server_config else None
            site = web.TCPSite(runner, host or None, port, ssl_context=tls, reuse_address=True)
            try:
                await site.start()
            except OSError as exc:
                raise StartupError(f"cannot listen on {config.listen}: {exc.strerror or exc}") from None

            self._install_signals(manager)
            self._manager = manager
            await self._restart_watcher(config)
            self._tasks.append(asyncio.create_task(self._measure_lag(), name="loop-lag"))
            interval = watchdog_interval()
            if interval:
                self._tasks.append(asyncio.create_task(self._watchdog(scheduler, interval), name="watchdog"))
            self._ready = True
            settle_garbage_collector()
            self.notifier.ready()
            log.info("vigil_started", version=__version__, listen=config.listen, state_dir=state_dir,
                     config=self.options.config_path, config_version=manager.version_id, pid=os.getpid())
            await self._stop.wait()

            log.info("vigil_stopping")
            self._ready = False
            self.notifier.stopping()
            svc.stopping.set()
        finally:
            for task in self._tasks:
                task.cancel()
            # Each step is guarded: a failure in one must not skip the final flush and the close.
            if self._watcher is not None:
                await _logged("watcher_stop_failed", self._watcher.stop())
            scheduler.shutdown()
            if runner is not None:
                await _logged("api_stop_failed", runner.cleanup())  # stop accepting, finish in-flight requests
            if tasks is not None:  # before the components their work may use, and the store they write to
                await _logged("tasks_stop_failed", tasks.close())
            if collectors is not None:
                collectors.close()
            if rules is not None:
                await _logged("rules_stop_failed", rules.close())
            if notifier is not None:
                await _logged("notify_stop_failed", notifier.close())
            if checks is not None:
                await _logged("checks_stop_failed", checks.close())
            if units is not None:
                await _logged("units_stop_failed", units.close())
            if history is not None:
                try:
                    await history.close()
                except StoreError as exc:
                    log.warning("history_flush_failed", error=str(exc))
            if keys is not None:
                try:
                    await keys.flush_last_used()
                except StoreError as exc:
                    log.warning("keys_flush_failed", error=str(exc))
            await _logged("logbook_stop_failed", logbook.close())  # the events of the shutdown above, too
            logs.set_sink(None)
            await store.close()
            self.notifier.close()
        log.info("vigil_stopped")
        return 0

    async def _apply(self, svc: Services, new_loaded: LoadedConfig, old_loaded: LoadedConfig) -> None:
        """Hand a validated config to the running components (no restart, state kept)."""
        new, old = new_loaded.config, old_loaded.config
        if new.log != old.log:
            logs.configure(new.log.level, new.log.format)
            if svc.logbook is not None:
                svc.logbook.configure(new.log.store, new.log.files)
                logs.set_sink(svc.logbook.capture if new.log.store.enabled else None, new.log.store.level)
        svc.limiter.config = new.api.rate_limit
        svc.processes.ttl = new.processes.cache_ttl
        if new.tasks != old.tasks:
            await svc.tasks.configure(new.tasks)
        if new.collectors != old.collectors:
            svc.collectors.configure(new.collectors)
        if new.checks != old.checks or new.check_runner != old.check_runner:
            await svc.checks.configure(new.checks, new.check_runner)
        if new.history != old.history and self._history is not None:
            self._history.configure(new.history)
        if new.maintenance != old.maintenance:
            svc.maintenance.configure(new.maintenance)
        if new.units != old.units or new.check_runner.systemctl != old.check_runner.systemctl:
            # strict: a unit the change starts and that fails to start refuses the change (and undoes it)
            await svc.units.configure(new.units, systemctl=new.check_runner.systemctl, strict=True)
        if svc.rules is not None:
            svc.rules.engine = svc.queries.engine
            if new_loaded.rule_groups != old_loaded.rule_groups or new.alerting != old.alerting:
                await svc.rules.configure(new_loaded.rule_groups, new.alerting)
        if svc.notifier is not None and new.notifications != old.notifications:
            await svc.notifier.configure(new.notifications)
        if (new.notifications.metrics, new.history.views) != (old.notifications.metrics, old.history.views):
            self._schedule_snapshots(svc.scheduler, new)
        if (new.include, new.reload, new.alerting.rule_files) != (old.include, old.reload, old.alerting.rule_files):
            await self._restart_watcher(new)

    def _schedule_snapshots(self, scheduler: Scheduler, config: Config) -> None:
        snapshots = self._snapshots
        if snapshots is None:
            return
        snapshots.configure(config.notifications.metrics, config.history.views)
        interval = config.notifications.metrics.interval
        if interval:
            scheduler.every("notify.metrics", interval, snapshots.publish)
        else:
            scheduler.remove("notify.metrics")

    async def _restart_watcher(self, config: Config) -> None:
        manager = self._manager
        assert manager is not None
        if self._watcher is not None:
            await self._watcher.stop()
            self._watcher = None
        if config.reload.watch:
            self._watcher = ConfigWatcher(self.options.config_path, config.include + config.alerting.rule_files,
                                          config.reload.debounce,
                                          lambda _paths: self._reload(manager, "file"))
            self._watcher.start()

    async def _reload(self, manager: ConfigManager, source: str) -> None:
        self.notifier.reloading()
        try:
            await manager.reload(source)
            if self._watcher is not None and self._watcher.stale():
                await self._restart_watcher(manager.config)
        finally:
            self.notifier.ready()

    def _install_signals(self, manager: ConfigManager) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stop)
        loop.add_signal_handler(signal.SIGINT, self.stop)
        loop.add_signal_handler(signal.SIGHUP, lambda: self._spawn(self._reload(manager, "signal")))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        self._tasks = [t for t in self._tasks if not t.done()]
        self._tasks.append(asyncio.create_task(coro))

    def stop(self) -> None:
        self._stop.set()

    async def _measure_lag(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(LOOP_LAG_INTERVAL)
            self._lag = max(time.perf_counter() - before - LOOP_LAG_INTERVAL, 0.0)
            self.metrics.loop_lag.observe(self._lag)

    async def _watchdog(self, scheduler: Scheduler, interval: float) -> None:
        """WATCHDOG=1 only while the loop is responsive and the scheduler runs its jobs."""
        while True:
            await asyncio.sleep(interval)
            if scheduler.healthy() and self._lag < interval:
                self.notifier.watchdog()
            else:
                log.error("watchdog_withheld", scheduler_healthy=scheduler.healthy(), loop_lag=self._lag)


async def _logged(event: str, step: Coroutine[Any, Any, Any]) -> None:
    try:
        await step
    except Exception:
        log.exception(event)


def settle_garbage_collector() -> None:
    """Move everything start-up created out of the collector's reach, and collect young objects less
    often: a query allocates many short-lived objects, and full collections scanning the whole
    heap showed up as 20 ms pauses in query latency."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 20, 20)


def run(options: Options) -> int:
    # On a watchdog timeout systemd sends SIGABRT: leave a traceback of the hang in the journal.
    faulthandler.enable()
    code = asyncio.run(Daemon(options).run())
    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        # A statfs on a hung mount can hold a worker thread forever, and the interpreter would
        # join it at exit. Everything is committed and closed by now: leave without waiting.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code
