"""On-demand tests of Vigil's components (`POST /api/v1/components/diagnostics`, run as a task):
`connectivity` (does it answer), `performance` (how fast, on a small fixed workload) and `stress`
(how it holds up under concurrent load, bounded to STRESS_SECONDS and a cap of operations).

Every test works through the component's public interface, as real callers do, and leaves nothing
behind: the store's stress writes go to a TEMP table of the writer's connection (never the database
file), the scheduler's probe jobs are removed, the event bus test publishes a few `diagnostics_probe`
events. A test a component has no meaningful form of is `skipped`, saying why.
"""

from __future__ import annotations

import asyncio
import itertools
import ssl
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp

from agent.config import ConfigError, load_config
from agent.config.schema import split_listen
from agent.diagnostics.health import grade, loop_lag, worst, write_round_trip
from agent.store import diagnostics as diag_rows
from agent.tasks import TaskContext

if TYPE_CHECKING:
    from agent.api.services import Services

TESTS = ("connectivity", "performance", "stress")
STRESS_SECONDS = 2.0
STRESS_MAX_OPS = 5000
PROBE_TIMEOUT = 15.0  # any one test, whatever it waits on


@dataclass
class Outcome:
    status: str  # pass, warn, fail, skipped
    details: dict[str, Any] = field(default_factory=dict)
    message: str | None = None


Probe = Callable[["Services"], Awaitable[Outcome]]


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def _latencies(samples: list[float]) -> dict[str, Any]:
    if not samples:
        return {"count": 0}
    ordered = sorted(samples)
    return {"count": len(samples), "avg_ms": _ms(statistics.fmean(samples)), "min_ms": _ms(ordered[0]),
            "p95_ms": _ms(ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]), "max_ms": _ms(ordered[-1])}


async def _timed(op: Callable[[], Awaitable[Any]]) -> float:
    started = time.perf_counter()
    await op()
    return time.perf_counter() - started


async def _hammer(op: Callable[[], Awaitable[Any]], workers: int, seconds: float = STRESS_SECONDS,
                  max_ops: int = STRESS_MAX_OPS) -> dict[str, Any]:
    """Run `op` from `workers` coroutines until `seconds` pass or `max_ops` were started."""
    deadline = time.monotonic() + seconds
    latencies: list[float] = []
    errors: list[str] = []
    started_ops = 0

    async def worker() -> None:
        nonlocal started_ops
        while time.monotonic() < deadline and started_ops < max_ops:
            started_ops += 1
            try:
                latencies.append(await _timed(op))
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    elapsed = time.perf_counter() - began
    return {"workers": workers, "seconds": round(elapsed, 3), "operations": len(latencies) + len(errors),
            "errors": len(errors), "first_error": errors[0] if errors else None,
            "per_second": round((len(latencies) + len(errors)) / elapsed, 1) if elapsed else None,
            "latency": _latencies(latencies)}


# --- store ------------------------------------------------------------------------------------


async def store_connectivity(svc: Services) -> Outcome:
    ping = await svc.store.ping()
    rtt = await write_round_trip(svc)
    return Outcome(worst([grade(ping, 0.1, 1.0), grade(rtt, 0.25, 2.0)]),
                   {"read_ms": _ms(ping), "write_round_trip_ms": _ms(rtt)}, "read and empty write answered")


async def store_performance(svc: Services) -> Outcome:
    reads = [await _timed(svc.store.ping) for _ in range(100)]
    writes = [await _timed(lambda: write_round_trip(svc)) for _ in range(20)]
    status = worst([grade(statistics.fmean(reads), 0.01, 0.1), grade(statistics.fmean(writes), 0.05, 0.5)])
    return Outcome(status, {"reads": _latencies(reads), "writes": _latencies(writes),
                            "reads_per_second": round(len(reads) / sum(reads), 1)})


async def store_stress(svc: Services) -> Outcome:
    payload = b"x" * 256
    try:
        writes = await _hammer(lambda: diag_rows.stress_write(svc.store, payload), workers=16)
        reads = await _hammer(svc.store.ping, workers=8, seconds=STRESS_SECONDS / 2)
    finally:
        await diag_rows.stress_cleanup(svc.store)
    status = "fail" if writes["errors"] or reads["errors"] else worst(
        [grade(writes["latency"].get("p95_ms", 0) / 1000, 0.5, 2.0)])
    return Outcome(status, {"writes": writes, "reads": reads},
                   "concurrent writes to a temporary table (the database file is not touched) and reads")


# --- scheduler --------------------------------------------------------------------------------


async def scheduler_connectivity(svc: Services) -> Outcome:
    healthy = svc.scheduler.healthy()
    return Outcome("pass" if healthy else "fail",
                   {"running": svc.scheduler.running, "jobs": len(svc.scheduler.job_ids())},
                   None if healthy else "its heartbeat job is not running")


async def _probe_jobs(svc: Services, count: int, interval: float, seconds: float) -> dict[str, Any]:
    """Schedule `count` jobs every `interval` for `seconds`; how late each run came compared with its
    predecessor plus the interval."""
    runs: dict[int, list[float]] = {i: [] for i in range(count)}

    def job(i: int) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            runs[i].append(time.monotonic())
        return run

    ids = [f"diagnostics.probe.{i}" for i in range(count)]
    try:
        for i, job_id in enumerate(ids):
            svc.scheduler.every(job_id, interval, job(i), group="diagnostics")
        await asyncio.sleep(seconds)
    finally:
        for job_id in ids:
            svc.scheduler.remove(job_id)
    lateness = [max(b - a - interval, 0.0) for times in runs.values() for a, b in itertools.pairwise(times)]
    expected = count * int(seconds / interval)
    done = sum(len(times) for times in runs.values())
    return {"jobs": count, "interval_ms": _ms(interval), "runs": done, "expected_runs": expected,
            "lateness": _latencies(lateness)}


async def scheduler_performance(svc: Services) -> Outcome:
    found = await _probe_jobs(svc, 1, 0.1, 1.0)
    p95 = found["lateness"].get("p95_ms", 0) / 1000
    return Outcome(grade(p95, 0.05, 0.5) if found["runs"] else "fail", found)


async def scheduler_stress(svc: Services) -> Outcome:
    found = await _probe_jobs(svc, 20, 0.05, STRESS_SECONDS * 0.75)
    p95 = found["lateness"].get("p95_ms", 0) / 1000
    missing = found["expected_runs"] and found["runs"] < found["expected_runs"] * 0.5
    return Outcome("fail" if missing else grade(p95, 0.1, 1.0), found)


# --- collectors -------------------------------------------------------------------------------


async def collectors_connectivity(svc: Services) -> Outcome:
    latest = dict(svc.collectors.latest)
    failing = svc.collectors.failing()
    status = "pass" if not failing else "fail" if len(failing) == len(latest) else "warn"
    return Outcome(status, {"collectors": sorted(latest), "failing": {n: latest[n].error for n in failing}},
                   "last results of each collector")


async def collectors_performance(svc: Services) -> Outcome:
    names = sorted(svc.collectors.latest)
    results = await asyncio.gather(*(svc.collectors.run_once(n) for n in names), return_exceptions=True)
    config = svc.config.config.collectors
    out: dict[str, Any] = {}
    statuses = []
    for name, result in zip(names, results, strict=True):
        if isinstance(result, BaseException):
            out[name] = {"success": False, "error": f"{type(result).__name__}: {result}"}
            statuses.append("fail")
            continue
        out[name] = {"success": result.success, "duration_ms": _ms(result.duration), "error": result.error}
        statuses.append("fail" if not result.success else grade(result.duration, 0.8 * config.timeout_of(name),
                                                                config.timeout_of(name)))
    return Outcome(worst(statuses), {"collectors": out}, "each enabled collector run once now")


# --- history ----------------------------------------------------------------------------------

COUNT_QUERY = 'count({__name__=~".+"})'


async def history_connectivity(svc: Services) -> Outcome:
    took = await _timed(lambda: svc.queries.instant("vector(1)", int(time.time() * 1000), 5.0))
    return Outcome(grade(took, 0.5, 5.0), {"query_ms": _ms(took)}, "the query engine answered vector(1)")


async def history_performance(svc: Services) -> Outcome:
    now_ms = int(time.time() * 1000)
    instant = await _timed(lambda: svc.queries.instant(COUNT_QUERY, now_ms, 10.0))
    ranged = await _timed(lambda: svc.queries.range(
        "sum(rate(vigil_http_requests_total[5m]))", now_ms - 3600_000, now_ms, 60_000, 10.0))
    stats = svc.tsdb.stats()
    return Outcome(worst([grade(instant, 1.0, 10.0), grade(ranged, 1.0, 10.0)]), {
        "instant_query_ms": _ms(instant), "range_query_1h_ms": _ms(ranged), "series": stats["series"],
        "queries": {"instant": COUNT_QUERY, "range": "sum(rate(vigil_http_requests_total[5m])) over 1h, step 1m"}})


async def history_stress(svc: Services) -> Outcome:
    workers = max(2, svc.queries.config.concurrency * 2)
    found = await _hammer(lambda: svc.queries.instant(COUNT_QUERY, int(time.time() * 1000), 10.0), workers,
                          max_ops=500)
    status = "fail" if found["errors"] else grade(found["latency"].get("p95_ms", 0) / 1000, 2.0, 10.0)
    return Outcome(status, {**found, "query": COUNT_QUERY, "concurrency_limit": svc.queries.config.concurrency})


# --- events -----------------------------------------------------------------------------------


async def _event_round_trip(svc: Services, rounds: int) -> list[float]:
    out = []
    with svc.bus.subscribe({"diagnostics_probe"}) as sub:
        for i in range(rounds):
            started = time.perf_counter()
            svc.bus.publish("diagnostics_probe", sequence=i)
            await asyncio.wait_for(sub.get(), 2.0)
            out.append(time.perf_counter() - started)
    return out


async def events_connectivity(svc: Services) -> Outcome:
    took = await _event_round_trip(svc, 1)
    return Outcome(grade(took[0], 0.1, 1.0), {"round_trip_ms": _ms(took[0]), "subscribers": svc.bus.subscriber_count},
                   "a diagnostics_probe event went through the bus")


async def events_performance(svc: Services) -> Outcome:
    took = await _event_round_trip(svc, 20)
    return Outcome(grade(statistics.fmean(took), 0.01, 0.1), {"round_trips": _latencies(took)})


# --- api --------------------------------------------------------------------------------------


def _self_url(svc: Services) -> tuple[str | None, ssl.SSLContext | None, str | None]:
    """URL of our own /healthz, the TLS context to reach it, or why it cannot be reached."""
    config = svc.config.running.config
    host, port = split_listen(config.listen)
    host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
    tls = config.tls_server_config
    if tls is None:
        return f"http://{f'[{host}]' if ':' in host else host}:{port}/healthz", None, None
    if tls.client_auth_type in ("RequireAnyClientCert", "RequireAndVerifyClientCert"):
        return None, None, "the listener requires client certificates, which Vigil has none of for itself"
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # our own listener on loopback: reaching it is the test, not its name
    return f"https://{f'[{host}]' if ':' in host else host}:{port}/healthz", ctx, None


async def _api(svc: Services, run: Callable[[aiohttp.ClientSession, str], Awaitable[Outcome]]) -> Outcome:
    url, ctx, why = _self_url(svc)
    if url is None:
        return Outcome("skipped", {}, why)
    connector = aiohttp.TCPConnector(ssl=ctx if ctx is not None else False, limit=20)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=5)) as session:
        return await run(session, url)


async def _get(session: aiohttp.ClientSession, url: str) -> None:
    async with session.get(url) as resp:
        await resp.read()
        if resp.status != 200:
            raise RuntimeError(f"/healthz answered {resp.status}")


async def api_connectivity(svc: Services) -> Outcome:
    async def run(session: aiohttp.ClientSession, url: str) -> Outcome:
        took = await _timed(lambda: _get(session, url))
        lag = await loop_lag()
        return Outcome(grade(took, 0.5, 5.0), {"url": url, "response_ms": _ms(took), "event_loop_lag_ms": _ms(lag)},
                       "GET /healthz through the listener")

    return await _api(svc, run)


async def api_performance(svc: Services) -> Outcome:
    async def run(session: aiohttp.ClientSession, url: str) -> Outcome:
        took = [await _timed(lambda: _get(session, url)) for _ in range(50)]
        return Outcome(grade(statistics.fmean(took), 0.05, 0.5), {"url": url, "requests": _latencies(took)})

    return await _api(svc, run)


async def api_stress(svc: Services) -> Outcome:
    async def run(session: aiohttp.ClientSession, url: str) -> Outcome:
        found = await _hammer(lambda: _get(session, url), workers=10, max_ops=2000)
        status = "fail" if found["errors"] else grade(found["latency"].get("p95_ms", 0) / 1000, 0.5, 2.0)
        return Outcome(status, {"url": url, **found})

    return await _api(svc, run)


# --- the rest ---------------------------------------------------------------------------------


async def config_connectivity(svc: Services) -> Outcome:
    path = svc.config.path

    def load() -> str | None:
        try:
            load_config(path, svc.config.current.overrides)
        except ConfigError as exc:
            return str(exc).splitlines()[0] if str(exc) else "invalid"
        return None

    started = time.perf_counter()
    problem = await asyncio.to_thread(load)
    took = time.perf_counter() - started
    if problem is not None:
        return Outcome("warn", {"path": path, "load_ms": _ms(took)},
                       f"the files on disk do not validate (the running config stays): {problem}")
    return Outcome("pass", {"path": path, "load_ms": _ms(took), "version": svc.config.version_id},
                   "the config files read and validate")


async def notifications_connectivity(svc: Services) -> Outcome:
    if svc.notifier is None:
        return Outcome("skipped", {}, "notifications are not running")
    stats = await svc.notifier.outbox.stats()
    stuck = {n: s["last_error"] for n, s in stats.items() if s["queued"] and s["last_error"]}
    return Outcome("warn" if stuck else "pass", {"receivers": stats},
                   f"failing deliveries: {', '.join(sorted(stuck))} (POST /api/v1/config/test tries a connection)"
                   if stuck else "the outbox answers; receivers are tried by delivery")


async def units_connectivity(svc: Services) -> Outcome:
    rows = await asyncio.wait_for(svc.units.statuses(), 5.0)
    failed = [r["name"] for r in rows if r["status"] == "failed"]
    return Outcome("warn" if failed else "pass", {"units": len(rows), "failed": failed})


async def checks_connectivity(svc: Services) -> Outcome:
    return Outcome("pass", {"checks": len(svc.checks.entries), "internal_errors": len(svc.checks.errors)})


async def tasks_connectivity(svc: Services) -> Outcome:
    return Outcome("pass", {"running": svc.tasks.running_count, "max_concurrent": svc.tasks.config.max_concurrent},
                   "this diagnostics run is itself a task")


PROBES: dict[str, dict[str, Probe]] = {  # the order of GET /api/v1/components/health
    "store": {"connectivity": store_connectivity, "performance": store_performance, "stress": store_stress},
    "scheduler": {"connectivity": scheduler_connectivity, "performance": scheduler_performance,
                  "stress": scheduler_stress},
    "collectors": {"connectivity": collectors_connectivity, "performance": collectors_performance},
    "checks": {"connectivity": checks_connectivity},
    "history": {"connectivity": history_connectivity, "performance": history_performance, "stress": history_stress},
    "notifications": {"connectivity": notifications_connectivity},
    "events": {"connectivity": events_connectivity, "performance": events_performance},
    "config": {"connectivity": config_connectivity},
    "units": {"connectivity": units_connectivity},
    "api": {"connectivity": api_connectivity, "performance": api_performance, "stress": api_stress},
    "tasks": {"connectivity": tasks_connectivity},
}
NOT_APPLICABLE = {
    ("collectors", "stress"): "collectors read /proc and /sys on their schedule; running them in a loop only loads "
                              "the host",
    ("events", "stress"): "it would flood every subscriber of the event stream",
}


async def run_diagnostics(svc: Services, ctx: TaskContext, components: list[str], tests: list[str]) -> dict[str, Any]:
    """The task's work: each component's tests in turn, a step per component."""
    started = time.perf_counter()
    results = []
    total = len(components) * len(tests)
    done = 0
    for name in components:
        entries = []
        async with ctx.step(name):
            for test in tests:
                await ctx.checkpoint()
                probe = PROBES[name].get(test)
                test_started = time.perf_counter()
                if probe is None:
                    outcome = Outcome("skipped", {}, NOT_APPLICABLE.get((name, test), f"{name} has no {test} test"))
                else:
                    try:
                        outcome = await asyncio.wait_for(probe(svc), PROBE_TIMEOUT)
                    except TimeoutError:
                        outcome = Outcome("fail", {}, f"no answer within {PROBE_TIMEOUT:g}s")
                    except Exception as exc:
                        outcome = Outcome("fail", {}, f"{type(exc).__name__}: {exc}")
                entries.append({"name": test, "status": outcome.status,
                                "duration_ms": _ms(time.perf_counter() - test_started),
                                "message": outcome.message, "details": outcome.details})
                ctx.log(f"{name} {test}: {outcome.status}" + (f" ({outcome.message})" if outcome.message and
                                                               outcome.status != "pass" else ""))
                done += 1
                await ctx.progress(done / total, f"{name}: {test}")
        graded = [e["status"] for e in entries if e["status"] != "skipped"]
        results.append({"component": name, "status": worst(graded), "tests": entries})
    counts = {s: sum(1 for r in results for t in r["tests"] if t["status"] == s)
              for s in ("pass", "warn", "fail", "skipped")}
    return {"test_run_id": ctx.task_id, "status": "completed", "overall": worst([r["status"] for r in results]),
            "duration_ms": _ms(time.perf_counter() - started), "components": components, "tests": tests,
            "results": results, "summary": counts}
