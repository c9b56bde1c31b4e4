"""The full health check (the seed's system health check, `POST /api/v1/health/check`): database,
authentication, storage, performance, security, backups and logs, each `healthy`, `warning`,
`critical` or `not_configured`, with its figures, issues (critical) and warnings; stored as a report
that `GET /api/v1/health/reports/{id}` returns later.

Unlike `GET /api/v1/components/health` (cheap, any time), this reads the whole database for its
figures, verifies the audit chain, and sizes the configured temp directories: it runs as a task.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import stat
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import psutil

from agent.api.formats import iso
from agent.config.schema import split_listen
from agent.diagnostics.health import loop_lag, metric_sum, write_round_trip
from agent.diagnostics.storeinfo import check_integrity
from agent.security.policy import key_deadline
from agent.store import audit as audit_rows
from agent.store import diagnostics as diag_rows
from agent.store import logbook as log_rows
from agent.store.migrations import MIGRATIONS
from agent.tasks import TaskContext

if TYPE_CHECKING:
    from agent.api.services import Services

SECTIONS = ("database", "authentication", "storage", "performance", "security", "backups", "logs")
TITLES = {
    "database": "Database Health", "authentication": "Authentication Health", "storage": "Storage Health",
    "performance": "Performance Health", "security": "Security Health", "backups": "Backup Health",
    "logs": "Log Health",
}
RANK = {"healthy": 0, "not_configured": 0, "warning": 1, "critical": 2}
DAY = 86400.0
MiB = 1024 * 1024
USAGE_MAX_FILES = 100_000  # files a temp directory's size is counted over; beyond, it says "at least"
LOOPBACK = ("127.", "::1", "localhost")


@dataclass
class Section:
    name: str
    metrics: dict[str, Any] = field(default_factory=dict)
    issues: list[str] = field(default_factory=list)  # critical
    warnings: list[str] = field(default_factory=list)
    details: str = ""
    configured: bool = True

    @property
    def status(self) -> str:
        if not self.configured:
            return "not_configured"
        return "critical" if self.issues else "warning" if self.warnings else "healthy"

    def as_dict(self, duration: float) -> dict[str, Any]:
        return {"name": self.name, "title": TITLES[self.name], "status": self.status,
                "details": self.details or self._summary(), "metrics": self.metrics, "issues": self.issues,
                "warnings": self.warnings, "duration_ms": round(duration * 1000, 3)}

    def _summary(self) -> str:
        if self.issues:
            return self.issues[0]
        if self.warnings:
            return self.warnings[0]
        return f"{TITLES[self.name].removesuffix(' Health')} is healthy"


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


# --- sections ---------------------------------------------------------------------------------


async def database(svc: Services, s: Section, integrity: bool) -> None:
    ping = await svc.store.ping()
    rtt = await write_round_trip(svc, limit=10.0)
    info = await asyncio.to_thread(diag_rows.database_info, svc.store.path)
    done = await diag_rows.records(svc.store)
    s.metrics.update({
        "response_time_ms": _ms(ping), "write_round_trip_ms": _ms(rtt), "file_bytes": info["file_bytes"],
        "wal_bytes": info["wal_bytes"], "free_bytes": info["free_bytes"], "schema_version": info["schema_version"],
        "tables": len(info["tables"]), "rows": sum(t["rows"] for t in info["tables"]),
        "largest_tables": [{"name": t["name"], "rows": t["rows"], "bytes": (t["bytes"] or 0) + (t["index_bytes"] or 0)}
                           for t in info["tables"][:5]],
        "last_vacuum": iso(done["vacuum"]["at"]) if "vacuum" in done else None,
        "last_integrity_check": iso(done["integrity_check"]["at"]) if "integrity_check" in done else None,
    })
    s.details = f"Database answers in {_ms(ping)} ms; {info['file_bytes'] // MiB} MiB in {len(info['tables'])} tables"
    if info["schema_version"] != len(MIGRATIONS):
        s.issues.append(f"schema version {info['schema_version']}, this Vigil expects {len(MIGRATIONS)}")
    if ping > 1.0 or rtt > 2.0:
        s.warnings.append(f"slow: a read took {_ms(ping)} ms, an empty write {_ms(rtt)} ms")
    if info["wal_bytes"] > 64 * MiB:
        s.warnings.append(f"the WAL is {info['wal_bytes'] // MiB} MiB: checkpoints are held up by a long read")
    if info["free_bytes"] > 64 * MiB and info["free_bytes"] > info["file_bytes"] // 4:
        s.warnings.append(f"{info['free_bytes'] // MiB} MiB of the file is free pages: "
                          "POST /api/v1/maintenance/cleanup with category database returns them")
    last = done.get("integrity_check")
    if last is not None and not last["details"].get("ok", True):
        s.issues.append(f"the last integrity check ({iso(last['at'])}) found problems: "
                        f"{(last['details'].get('errors') or ['foreign keys'])[0]}")
    if integrity:
        checked = await check_integrity(svc.store.path, True, 10)
        s.metrics["quick_check"] = {"ok": checked["ok"], "duration_ms": _ms(checked["duration_seconds"])}
        if not checked["ok"]:
            s.issues.append(f"PRAGMA quick_check: {(checked['errors'] or ['failed'])[0]}")


async def authentication(svc: Services, s: Section) -> None:
    now = time.time()
    settings = svc.config.config.security
    rows = svc.keys.all()
    active = [r for r in rows if r.revoked_at is None and (r.expires_at is None or r.expires_at > now)]
    admins = [r for r in active if r.role == "admin"]
    soon = []
    for r in active:
        deadline = key_deadline(r, settings)
        if deadline is not None and deadline[0] < now + 7 * DAY:
            soon.append({"id": r.id, "name": r.name, "ends_at": iso(deadline[0]), "because": deadline[1]})
    idle = [r.id for r in active if (r.last_used or r.created_at) < now - 90 * DAY]
    failures = await svc.security.failures_since(now - DAY)
    locked = svc.security.lockouts.all_active()
    s.metrics.update({
        "keys": len(rows), "active_keys": len(active), "admin_keys": len(admins), "keys_ending_within_7d": soon,
        "unused_90d": idle, "failed_authentications_24h": sum(failures.values()), "failures_by_reason_24h": failures,
        "locked_addresses": [lock.address for lock in locked],
        "auth_failures_since_start": int(metric_sum(svc.metrics.auth_failures, "_total")),
    })
    s.details = f"{len(active)} active API keys ({len(admins)} admin)"
    if not admins:
        s.issues.append("no active admin key: nobody can change keys or configuration over the API")
    if soon:
        s.warnings.append(f"{len(soon)} key(s) stop working within 7 days: {', '.join(k['id'] for k in soon)}")
    if sum(failures.values()) >= 100:
        s.warnings.append(f"{sum(failures.values())} failed authentications in 24 h")
    if locked:
        s.warnings.append(f"{len(locked)} address(es) locked out: {', '.join(lock.address for lock in locked)}")


def _dir_usage(path: str) -> dict[str, Any]:
    files = total = 0
    truncated = False
    for _dirpath, _dirnames, filenames, dirfd in os.fwalk(path, follow_symlinks=False):
        for name in filenames:
            try:
                st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                files += 1
                total += st.st_size
            if files >= USAGE_MAX_FILES:
                truncated = True
                break
        if truncated:
            break
    return {"path": path, "files": files, "bytes": total, "at_least": truncated}


async def storage(svc: Services, s: Section) -> None:
    state_dir = os.path.abspath(svc.config.config.state_dir)
    usage = await asyncio.to_thread(shutil.disk_usage, os.path.dirname(os.path.abspath(svc.store.path)))
    free_pct = usage.free / usage.total * 100 if usage.total else 0.0
    temp = [await asyncio.to_thread(_dir_usage, d) for d in svc.config.config.cleanup.temp_dirs if os.path.isdir(d)]
    stats = svc.tsdb.stats()
    s.metrics.update({
        "state_dir": state_dir, "disk_total_bytes": usage.total, "disk_free_bytes": usage.free,
        "disk_free_percent": round(free_pct, 2), "history_bytes": stats["disk_bytes"],
        "history_chunk_bytes": stats["chunk_bytes"], "temp_dirs": temp,
    })
    s.details = f"{usage.free // MiB} MiB free ({free_pct:.1f}%) where the database lives"
    if free_pct < 3 or usage.free < 50 * MiB:
        s.issues.append(f"only {usage.free // MiB} MiB ({free_pct:.1f}%) free: writes will fail soon")
    elif free_pct < 10:
        s.warnings.append(f"{free_pct:.1f}% free where the database lives")
    missing = [d for d in svc.config.config.cleanup.temp_dirs if not os.path.isdir(d)]
    if missing:
        s.warnings.append(f"configured temp directories that do not exist: {', '.join(missing)}")


async def performance(svc: Services, s: Section) -> None:
    lag = await loop_lag()
    query_started = time.perf_counter()
    await svc.queries.instant("vector(1)", int(time.time() * 1000), 5.0)
    query = time.perf_counter() - query_started
    proc = psutil.Process()

    def own() -> dict[str, Any]:
        with proc.oneshot():
            times = proc.cpu_times()
            return {"rss_bytes": proc.memory_info().rss, "cpu_seconds": round(times.user + times.system, 3),
                    "threads": proc.num_threads(), "open_files": proc.num_fds()}

    figures = await asyncio.to_thread(own)
    requests = metric_sum(svc.metrics.http_duration, "_count")
    commit = metric_sum(svc.metrics.store_commit, "_count")
    s.metrics.update({
        "event_loop_lag_ms": _ms(lag), "query_ms": _ms(query),
        "api_average_latency_ms": _ms(metric_sum(svc.metrics.http_duration, "_sum") / requests) if requests else None,
        "store_average_commit_ms": _ms(metric_sum(svc.metrics.store_commit, "_sum") / commit) if commit else None,
        "scheduler_heartbeat_delay_ms": _ms(svc.scheduler.heartbeat_delay), **figures,
    })
    s.details = f"Event loop lag {_ms(lag)} ms, a trivial query {_ms(query)} ms"
    if lag > 1.0:
        s.issues.append(f"the event loop is {_ms(lag)} ms late: every request and job waits that long")
    elif lag > 0.1:
        s.warnings.append(f"the event loop is {_ms(lag)} ms late")
    delay = svc.scheduler.heartbeat_delay  # None until the heartbeat job has run twice
    if delay is not None and delay > 1.0:
        s.warnings.append(f"scheduled jobs start {_ms(delay)} ms late")


def _mode_problem(path: str, forbid: int, what: str) -> str | None:
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return None
    if mode & forbid:
        return f"{what} {path} has mode {stat.S_IMODE(mode):04o}"
    return None


async def security(svc: Services, s: Section) -> None:
    config = svc.config.running.config
    host, _port = split_listen(config.listen)
    exposed = not host.startswith(LOOPBACK)
    state_dir = os.path.abspath(svc.config.config.state_dir)
    settings = svc.config.config.security

    def files() -> list[str]:
        found = [
            _mode_problem(os.path.join(state_dir, "admin.key"), 0o077, "the admin key file (should be 0600)"),
            _mode_problem(state_dir, 0o002, "the state directory is world-writable:"),
            _mode_problem(svc.config.path, 0o002, "the config file is world-writable:"),
            _mode_problem(svc.store.path, 0o004, "the database is world-readable:"),
        ]
        return [f for f in found if f]

    problems = await asyncio.to_thread(files)
    s.metrics.update({
        "listen": config.listen, "exposed": exposed, "tls": config.tls_server_config is not None,
        "metrics_auth": bool(config.metrics.basic_auth_users or config.metrics.bearer_token
                             or config.metrics.require_api_key),
        "allowlist": len(settings.allowlist), "max_key_age_seconds": settings.max_key_age,
        "max_failed_auth": settings.max_failed_auth,
    })
    s.details = f"Listening on {config.listen}" + (" over TLS" if config.tls_server_config else "")
    s.issues.extend(p for p in problems if "admin key" in p or "world-writable" in p)
    s.warnings.extend(p for p in problems if p not in s.issues)
    if exposed and config.tls_server_config is None:
        s.warnings.append(f"the API listens on {config.listen} without TLS: keys cross the network in clear")
    if exposed and not settings.allowlist:
        s.warnings.append("the API listens beyond loopback and security.allowlist is empty: any address may try keys")
    if exposed and not s.metrics["metrics_auth"] and config.metrics.enabled:
        s.warnings.append("/metrics is served without credentials beyond loopback")


async def backups(svc: Services, s: Section) -> None:
    s.configured = False
    s.details = "Backups are not configured: Vigil has no backup job yet"


async def logs(svc: Services, s: Section) -> None:
    now = time.time()
    counts = await log_rows.level_counts(svc.store, log_rows.LogFilter(since=now - 3600))
    errors = sum(n for level, n in counts.items() if level >= 40)
    warnings = sum(n for level, n in counts.items() if 30 <= level < 40)
    chain = await asyncio.to_thread(audit_rows.verify_file, svc.store.path)
    s.metrics.update({
        "errors_last_hour": errors, "warnings_last_hour": warnings,
        "audit_rows_verified": chain.rows, "audit_chain_intact": chain.broken is None,
        "stored_log_retention_seconds": svc.config.config.log.store.retention,
    })
    s.details = f"{errors} error and {warnings} warning log events in the last hour; audit chain " + (
        "intact" if chain.broken is None else "broken")
    if chain.broken is not None:
        s.issues.append(f"the audit log's chain is broken at row {chain.broken.id}: {chain.broken.problem}")
    if errors:
        s.warnings.append(f"{errors} error log events in the last hour (GET /api/v1/logs?level=error)")


Handler = Callable[["Services", Section], Awaitable[None]]
_HANDLERS: dict[str, Handler] = {
    "authentication": authentication, "storage": storage, "performance": performance, "security": security,
    "backups": backups, "logs": logs,
}


async def run_health_check(svc: Services, ctx: TaskContext, sections: list[str], integrity: bool,
                           actor: str | None) -> dict[str, Any]:
    """The task's work: every section, then the report stored; the task's result names it."""
    created = time.time()
    started = time.perf_counter()
    checks = []
    for i, name in enumerate(sections):
        await ctx.checkpoint()
        section = Section(name)
        section_started = time.perf_counter()
        async with ctx.step(name):
            try:
                if name == "database":
                    await database(svc, section, integrity)
                else:
                    await _HANDLERS[name](svc, section)
            except TimeoutError:
                section.issues.append("did not answer in time")
            except Exception as exc:
                section.issues.append(f"could not be checked: {type(exc).__name__}: {exc}")
        checks.append(section.as_dict(time.perf_counter() - section_started))
        ctx.log(f"{name}: {section.status}")
        await ctx.progress((i + 1) / len(sections), f"{name}: {section.status}")
    overall = max((c["status"] for c in checks), key=RANK.__getitem__, default="healthy")
    overall = "healthy" if overall == "not_configured" else overall
    report_id = "hc_" + time.strftime("%Y%m%d_%H%M%S", time.gmtime(created)) + "_" + secrets.token_hex(3)
    completed = time.time()
    report = {
        "checks": checks,
        "metrics": {"overall_response_time_ms": _ms(time.perf_counter() - started),
                    "sections": len(checks)},
        "issues": [f"{c['name']}: {text}" for c in checks for text in c["issues"]],
        "warnings": [f"{c['name']}: {text}" for c in checks for text in c["warnings"]],
    }
    summary = {"checks": {c["name"]: c["status"] for c in checks}, "issues": len(report["issues"]),
               "warnings": len(report["warnings"])}
    await diag_rows.save_report(svc.store, {
        "id": report_id, "task_id": ctx.task_id, "created_at": created, "completed_at": completed,
        "created_by": actor, "overall": overall, "summary": summary, "report": report})
    ctx.log(f"report {report_id} stored: {overall}")
    return {"report_id": report_id, "overall": overall, **summary,
            "links": {"report": f"/api/v1/health/reports/{report_id}"}}


def report_view(row: dict[str, Any]) -> dict[str, Any]:
    """A stored report as the API shows it (the seed's systemHealthChecks document)."""
    out = {
        "id": row["id"], "task_id": row["task_id"], "created_at": iso(row["created_at"]),
        "completed_at": iso(row["completed_at"]), "created_by": row["created_by"], "overall": row["overall"],
        "summary": row["summary"], "duration_seconds": round(row["completed_at"] - row["created_at"], 3),
        "links": {"self": f"/api/v1/health/reports/{row['id']}"},
    }
    if "report" in row:
        out.update(row["report"])
    return out
