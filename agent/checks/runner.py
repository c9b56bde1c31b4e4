"""Runs every configured check on its schedule and turns results into state, history and actions.

Per result: flap protection decides the state (agent.checks.state); a state change is written at
once, together with the incident it opens or resolves, and only then published as
`check_state_changed`; plain results are batched and written every `check_runner.flush_interval`.
The state (counters, remediation attempts, memo, pause, heartbeats) is what a restart restores,
so a restart neither re-alerts nor forgets an outage.

First runs are spread over the first interval (at most 10 s) by a hash of the name, so hundreds
of checks do not all fire in the same tick, and each keeps its phase afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiosqlite
import structlog

from agent import incidents
from agent.audit import Audit
from agent.checks.base import REGISTRY, Check, CheckConfig, CheckContext, CheckResult, Perfdata, Status
from agent.checks.heartbeats import Heartbeat, HeartbeatBook
from agent.checks.perfdata import normalise
from agent.checks.remediation import decide, execute
from agent.checks.state import FlapState, Transition, is_up
from agent.collectors.base import Family
from agent.config.schema import CheckRunnerConfig
from agent.events import EventBus
from agent.scheduler import Scheduler
from agent.selfmetrics import SelfMetrics
from agent.store import Store, StoreError
from agent.store import checks as rows
from agent.store.checks import ResultRow, StateRow, TransitionRow
from agent.store.incidents import prune as prune_incidents

log = structlog.get_logger("vigil.checks")
SnapshotHook = Callable[[str, list[Family], float], None]
MAX_FIRST_OFFSET = 10.0
RETENTION_INTERVAL = 3600.0
MAX_BUFFERED_RESULTS = 100_000


@dataclass
class Outcome:
    """One run as the API shows it."""

    status: Status
    message: str
    started_at: float
    duration: float
    perfdata: list[Perfdata] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status.label, "message": self.message, "started_at": self.started_at,
                "duration": self.duration, "perfdata": [p.as_dict() for p in self.perfdata],
                "details": self.details}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Outcome:
        return cls(Status.parse(data["status"]), data["message"], data["started_at"], data["duration"],
                   [Perfdata.from_dict(p) for p in data.get("perfdata") or []], data.get("details") or {})


@dataclass
class Entry:
    config: CheckConfig
    check: Check
    flap: FlapState = field(default_factory=FlapState)
    last: Outcome | None = None
    paused_at: float | None = None
    paused_by: str | None = None
    remediation: dict[str, Any] = field(default_factory=dict)
    incident_id: int | None = None
    runs: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    remediating: bool = False

    @property
    def name(self) -> str:
        return self.config.name


def first_offset(name: str, interval: float) -> float:
    """A stable spread of first runs: the same check always gets the same phase."""
    window = min(interval, MAX_FIRST_OFFSET)
    return (zlib.crc32(name.encode()) % 10_000) / 10_000 * window


class CheckRunner:
    def __init__(
        self, store: Store, scheduler: Scheduler, bus: EventBus, metrics: SelfMetrics, audit: Audit,
        ctx: CheckContext, config: CheckRunnerConfig,
    ):
        self.store = store
        self.scheduler = scheduler
        self.bus = bus
        self.metrics = metrics
        self.audit = audit
        self.ctx = ctx
        self.config = config
        self.heartbeats = HeartbeatBook()
        ctx.heartbeats = self.heartbeats
        self.entries: dict[str, Entry] = {}
        self.maintenance_active: Callable[[], bool] = lambda: False  # set by maintenance mode (alerting)
        self.started_at = time.time()
        self.errors: list[dict[str, Any]] = []  # recent failures of Vigil's own (components API)
        self._hooks: list[SnapshotHook] = []
        self._restored: dict[str, StateRow] = {}
        self._results: list[ResultRow] = []
        self._dirty: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._checks: list[CheckConfig] = []

    def add_hook(self, hook: SnapshotHook) -> None:
        """`hook(source, families, timestamp)` after every run (the metrics history)."""
        self._hooks.append(hook)

    async def load(self) -> None:
        """Read the persisted states; they are applied when the checks are configured."""
        self._restored = {row.name: row for row in await rows.load_states(self.store)}
        for row in self._restored.values():
            if row.heartbeat:
                self.heartbeats.restore(row.name, Heartbeat.from_dict(row.heartbeat))

    def start(self) -> None:
        self.scheduler.every("checks.flush", self.config.flush_interval, self.flush)
        self.scheduler.every("checks.retention", RETENTION_INTERVAL, self.apply_retention, first_in=60.0)

    async def configure(self, checks: list[CheckConfig], config: CheckRunnerConfig | None = None) -> None:
        """Match the running checks to the config: start new ones, rebuild changed ones (keeping
        their state when the type is the same), stop removed ones."""
        if config is not None:
            if config.flush_interval != self.config.flush_interval:
                self.scheduler.every("checks.flush", config.flush_interval, self.flush)
            self.config = config
            self.ctx.max_output_bytes = config.max_output_bytes
            self.ctx.systemctl = config.systemctl
        self._checks = list(checks)
        wanted = {c.name: c for c in checks if c.enabled}
        for name in [n for n in self.entries if n not in wanted]:
            await self._remove(name)
        for name, cfg in wanted.items():
            entry = self.entries.get(name)
            if entry is not None and entry.config == cfg:
                continue
            check = REGISTRY[cfg.type](cfg, self.ctx)
            if entry is None:
                entry = self._restore(cfg, check)
                self.entries[name] = entry
            else:
                old_check, old_interval = entry.check, entry.config.interval
                same_type = entry.config.type == cfg.type
                check.memo = old_check.memo if same_type else {}
                entry.config, entry.check = cfg, check
                if not same_type:
                    entry.flap, entry.last, entry.remediation = FlapState(), None, {}
                await _close_quietly(old_check)
                if old_interval == cfg.interval:
                    continue
            if cfg.type == "heartbeat":
                self.heartbeats.watch(name, time.time())
            self.scheduler.every(f"check.{name}", cfg.interval, self._job(name),
                                 first_in=first_offset(name, cfg.interval), group="check")
            self._dirty.add(name)

    def _restore(self, cfg: CheckConfig, check: Check) -> Entry:
        entry = Entry(cfg, check)
        row = self._restored.pop(cfg.name, None)
        if row is None or row.type != cfg.type:
            return entry
        entry.flap = FlapState(Status.parse(row.state) if row.state else None, row.since, row.fails, row.passes)
        entry.last = Outcome.from_dict(row.last_result) if row.last_result else None
        entry.paused_at, entry.paused_by = row.paused_at, row.paused_by
        entry.remediation = row.remediation
        entry.incident_id = row.incident_id
        check.memo = row.memo
        return entry

    async def _remove(self, name: str) -> None:
        entry = self.entries.pop(name)
        self.scheduler.remove(f"check.{name}")
        await _close_quietly(entry.check)
        self.heartbeats.forget(name)
        self._dirty.discard(name)
        self._run_hooks(name, [], time.time())

        async def op(db: aiosqlite.Connection) -> None:
            await rows.delete_state(db, name)

        with contextlib.suppress(StoreError):
            await self.store.write(op)

    def _job(self, name: str) -> Callable[[], Any]:
        async def job() -> None:
            entry = self.entries.get(name)
            if entry is None or entry.paused_at is not None:
                return
            await self.run(name)

        return job

    async def run(self, name: str) -> Outcome:
        """Run a check now (also while paused, when asked over the API) and record its result."""
        entry = self.entries[name]
        async with entry.lock:
            started = time.time()
            t0 = time.perf_counter()
            cfg = entry.config
            try:
                result = await asyncio.wait_for(entry.check.run(), cfg.timeout)
            except TimeoutError:
                result = CheckResult(entry.check.timeout_status, f"timed out after {cfg.timeout:g}s")
            except Exception as exc:
                log.exception("check_crashed", check=name)
                self._error(f"check {name} crashed: {type(exc).__name__}: {exc}")
                result = CheckResult(Status.UNKNOWN, f"check failed: {type(exc).__name__}: {exc}")
            outcome = Outcome(result.status, _one_line(result.message), started, time.perf_counter() - t0,
                              result.perfdata, result.details)
            if self.entries.get(name) is entry:
                await self._record(entry, outcome)
            return outcome

    async def _record(self, entry: Entry, outcome: Outcome) -> None:
        cfg = entry.config
        entry.last = outcome
        entry.runs += 1
        now = outcome.started_at + outcome.duration
        transition = entry.flap.advance(outcome.status, cfg.fall, cfg.rise, now)
        state = entry.flap.state
        self._results.append(ResultRow(
            cfg.name, outcome.started_at, outcome.status.label, state.label if state is not None else None,
            outcome.message, outcome.duration, [p.as_dict() for p in outcome.perfdata], outcome.details,
        ))
        self._dirty.add(cfg.name)
        # At the end of the run, as the state is from then on (History also records it between runs).
        self._run_hooks(cfg.name, self.families(entry), now)
        if transition is not None:
            await self._transition(entry, transition, outcome, now)
        if state is not None and state is not Status.OK and cfg.on_failure and entry.flap.fails:
            self._remediate(entry, now)

    async def _transition(self, entry: Entry, transition: Transition, outcome: Outcome, now: float) -> None:
        cfg = entry.config
        suppressed = self.suppressed_by(entry)
        current = transition.current
        if current is Status.OK:
            entry.remediation = {}  # recovered for `rise` results: counters start over
        incident_before = entry.incident_id

        async def op(db: aiosqlite.Connection) -> None:
            await rows.insert_transitions(db, [TransitionRow(
                cfg.name, now, transition.previous.label if transition.previous else None, current.label,
                outcome.message)])
            if entry.incident_id is not None:
                still_open = await incidents.follow_check(db, entry.incident_id, current, outcome.message, now)
                if current is Status.OK or not still_open:
                    entry.incident_id = None
            elif current is not Status.OK and not suppressed:
                entry.incident_id = await incidents.open_for_check(db, cfg.name, current, outcome.message, now)
            await rows.upsert_states(db, [self._state_row(entry, now)])

        try:
            await self.store.write(op)
        except StoreError as exc:
            entry.incident_id = incident_before
            self._dirty.add(cfg.name)
            log.error("check_state_not_saved", check=cfg.name, error=str(exc))
            self._error(f"state change of {cfg.name} not saved: {exc}")
        self._dirty.discard(cfg.name)
        previous = transition.previous.label if transition.previous else None
        (log.info if current is Status.OK else log.warning)(
            "check_state_changed", check=cfg.name, type=cfg.type, previous=previous, state=current.label,
            message=outcome.message, suppressed=suppressed or None,
        )
        self.bus.publish(
            "check_state_changed", check=cfg.name, type=cfg.type, previous=previous, state=current.label,
            message=outcome.message, labels=cfg.labels, suppressed_by=suppressed, incident_id=entry.incident_id,
        )

    def suppressed_by(self, entry: Entry) -> list[str]:
        """Dependencies that are down now: this check's alerts, incidents and actions wait for them."""
        down = []
        for dep in entry.config.depends_on:
            other = self.entries.get(dep)
            if other is not None and other.flap.state is not None and not is_up(other.flap.state):
                down.append(dep)
        return down

    def _remediate(self, entry: Entry, now: float) -> None:
        if entry.remediating or self.suppressed_by(entry):
            return
        decisions = decide(entry.config.on_failure, entry.remediation, entry.flap.fails, now,
                           self.maintenance_active())
        if not decisions:
            return
        entry.remediating = True
        task = asyncio.create_task(self._act(entry, decisions), name=f"remediate-{entry.name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _act(self, entry: Entry, decisions: list[Any]) -> None:
        name = entry.name
        try:
            await self._save_state(entry)  # attempts are counted before the action runs
            for decision in decisions:
                action = decision.action
                base = {"check": name, "action": action.kind, "target": action.target, "index": decision.index}
                if decision.verdict == "skip_maintenance":
                    log.info("check_remediation_paused", reason="maintenance", **base)
                    continue
                if decision.verdict == "exhausted":
                    log.error("check_remediation_exhausted", max_attempts=action.max_attempts,
                              window=action.window, **base)
                    self.bus.publish("check_remediation_exhausted", max_attempts=action.max_attempts,
                                     window=action.window, **base)
                    await self._audit("check_remediation_exhausted", name, "exhausted", base)
                    continue
                attempt = len(entry.remediation.get(str(decision.index), {}).get("attempts", []))
                await self._audit("check_remediation", name, "started",
                                  {**base, "attempt": attempt, "max_attempts": action.max_attempts})
                ok, what = await execute(action, self.ctx.systemctl, self.ctx.max_output_bytes)
                outcome = "success" if ok else "failure"
                self.metrics.remediations.labels(name, action.kind, outcome).inc()
                (log.info if ok else log.error)("check_remediation", outcome=outcome, result=what,
                                                attempt=attempt, **base)
                self.bus.publish("check_remediation", outcome=outcome, result=what, attempt=attempt,
                                 max_attempts=action.max_attempts, **base)
                await self._audit("check_remediation", name, outcome, {**base, "attempt": attempt, "result": what})
        except Exception as exc:
            log.exception("check_remediation_crashed", check=name)
            self._error(f"remediation of {name} failed: {type(exc).__name__}: {exc}")
        finally:
            entry.remediating = False

    async def _audit(self, event: str, check: str, outcome: str, details: dict[str, Any]) -> None:
        try:
            await self.audit.record(event, actor="vigil", target=f"check:{check}", outcome=outcome, details=details)
        except StoreError as exc:
            log.error("audit_not_saved", event_type=event, error=str(exc))

    async def _save_state(self, entry: Entry) -> None:
        row = self._state_row(entry, time.time())

        async def op(db: aiosqlite.Connection) -> None:
            await rows.upsert_states(db, [row])

        await self.store.write(op)
        self._dirty.discard(entry.name)

    def _state_row(self, entry: Entry, now: float) -> StateRow:
        beat = self.heartbeats.get(entry.name)
        flap = entry.flap
        return StateRow(
            entry.name, entry.config.type, flap.state.label if flap.state is not None else None, flap.since, flap.fails,
            flap.passes, entry.last.as_dict() if entry.last else None, entry.paused_at, entry.paused_by,
            entry.check.memo, entry.remediation, beat.as_dict() if beat else None, entry.incident_id, now,
        )

    async def flush(self) -> None:
        """Write batched results and changed states in one transaction."""
        results, self._results = self._results, []
        dirty, self._dirty = self._dirty, set()
        states = [self._state_row(self.entries[n], time.time()) for n in dirty if n in self.entries]
        if not results and not states:
            return

        async def op(db: aiosqlite.Connection) -> None:
            await rows.insert_results(db, results)
            await rows.upsert_states(db, states)

        try:
            await self.store.write(op)
        except StoreError:
            # Try again next time; while the store stays down, keep the newest results only.
            self._results = (results + self._results)[-MAX_BUFFERED_RESULTS:]
            self._dirty |= dirty
            raise

    async def apply_retention(self) -> None:
        now = time.time()
        removed = await rows.prune(self.store, now - self.config.result_retention, now - self.config.state_retention)
        closed = await prune_incidents(self.store, now - self.config.state_retention)
        if any(removed) or closed:
            log.info("check_retention", results=removed[0], transitions=removed[1], incidents=closed)

    async def set_paused(self, name: str, paused: bool, by: str) -> Entry:
        entry = self.entries[name]
        if paused and entry.paused_at is None:
            entry.paused_at, entry.paused_by = time.time(), by
        elif not paused and entry.paused_at is not None:
            entry.paused_at = entry.paused_by = None
            entry.remediation = {}  # an operator resuming a check gives its remediation a fresh start
        await self._save_state(entry)
        self.bus.publish("check_paused" if paused else "check_resumed", check=name, by=by)
        return entry

    async def heartbeat(self, name: str, kind: str, exit_status: int | None, run_time: float | None,
                        message: str | None) -> Heartbeat:
        """Record a ping (committed before this returns), then evaluate the check at once."""
        entry = self.entries[name]
        beat = self.heartbeats.record(name, kind, time.time(), exit_status, run_time, message)
        await self._save_state(entry)
        if kind != "start" and entry.paused_at is None:
            task = asyncio.create_task(self.run(name), name=f"heartbeat-{name}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return beat

    def families(self, entry: Entry) -> list[Family]:
        """The check's series: for /metrics (at scrape) and the history (at each run)."""
        cfg = entry.config
        extra = tuple(sorted(cfg.labels))
        names = ("check", "type", *extra)
        values = (cfg.name, cfg.type, *(cfg.labels[k] for k in extra))
        state = entry.flap.state
        out: list[Family] = []

        def gauge(name: str, help_text: str, value: float, label_names: tuple[str, ...] = names,
                  label_values: tuple[str, ...] = values) -> Family:
            fam = Family(name, help_text, "gauge", label_names)
            fam.add(value, *label_values)
            out.append(fam)
            return fam

        if state is not None:
            gauge("vigil_check_status", "State of the check after flap protection: 0 ok, 1 warning, "
                  "2 critical, 3 unknown.", int(state))
            gauge("vigil_check_up", "1 when the check is ok or warning.", 1 if is_up(state) else 0)
        gauge("vigil_check_suppressed", "1 while a check this one depends on is down.",
              1 if self.suppressed_by(entry) else 0)
        gauge("vigil_check_paused", "1 while an operator has paused the check.", 1 if entry.paused_at else 0)
        if entry.last is not None:
            gauge("vigil_check_duration_seconds", "Duration of the last run.", entry.last.duration)
            gauge("vigil_check_last_run_timestamp_seconds", "When the last run started.", entry.last.started_at)
            if entry.last.perfdata:
                perf = Family("vigil_check_perfdata", "Performance data of the last run, in base units.", "gauge",
                              (*names, "label", "unit"))
                for p in entry.last.perfdata:
                    value, unit = normalise(p)
                    perf.add(value, *values, p.label, unit)
                out.append(perf)
        if cfg.on_failure:
            exhausted = Family("vigil_check_remediation_exhausted",
                               "1 when remediation gave up after max_attempts within its window.", "gauge",
                               (*names, "action", "index"))
            for i, action in enumerate(cfg.on_failure):
                done = entry.remediation.get(str(i), {}).get("exhausted", False)
                exhausted.add(1 if done else 0, *values, action.kind, str(i))
            out.append(exhausted)
        return out

    def _run_hooks(self, name: str, families: list[Family], timestamp: float) -> None:
        for hook in self._hooks:
            try:
                hook(f"check:{name}", families, timestamp)
            except Exception:
                log.exception("check_hook_failed", check=name)

    def _error(self, text: str) -> None:
        self.errors.append({"at": time.time(), "error": text})
        del self.errors[:-50]

    async def restart(self) -> None:
        """Restart in place (components API): stop every check and start them again from config."""
        checks = self._checks
        for name in list(self.entries):
            entry = self.entries.pop(name)
            self.scheduler.remove(f"check.{name}")
            await _close_quietly(entry.check)
            self._restored[name] = self._state_row(entry, time.time())
        await self.configure(checks)
        self.started_at = time.time()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for name in list(self.entries):
            self.scheduler.remove(f"check.{name}")
        try:
            await self.flush()
        except StoreError as exc:
            log.warning("check_flush_failed", error=str(exc))
        for entry in self.entries.values():
            await _close_quietly(entry.check)


async def _close_quietly(check: Check) -> None:
    try:
        await check.close()
    except Exception:
        log.exception("check_close_failed", check=check.name)


def _one_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line[:1000]
