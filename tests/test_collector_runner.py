"""The collector runner with the real scheduler and collectors: a slow collector is cut off by
its timeout, is not started again while its thread is stuck, and never holds up the others."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable

from agent.collectors import CollectorContext
from agent.collectors.filesystem import FilesystemCollector
from agent.collectors.runner import CollectorRunner
from agent.config.schema import CollectorsConfig
from agent.events import EventBus
from agent.scheduler import Scheduler
from agent.selfmetrics import SelfMetrics


async def poll(predicate: Callable[[], object], within: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def test_slow_collector_times_out_alone() -> None:
    metrics = SelfMetrics()
    scheduler = Scheduler(metrics)
    bus = EventBus(metrics)
    runner = CollectorRunner(CollectorContext(metrics), scheduler, bus, metrics)
    release = threading.Event()
    calls: list[str] = []

    def hung_statvfs(path: str) -> os.statvfs_result:
        calls.append(path)
        release.wait(30)  # a hung NFS server: the one stand-in we use (no NFS in tests)
        return os.statvfs(path)

    events = bus.subscribe({"collector_failed", "collector_recovered"})
    config = CollectorsConfig.model_validate(
        {"interval": "1s", "filesystem": {"timeout": "300ms", "stat_timeout": "200ms"}}
    )
    # Past the config guard on purpose: a collector that outlasts its timeout, whatever the cause.
    config.filesystem.stat_timeout = 20.0
    scheduler.start()
    runner.configure(config)
    fs = runner._collectors["filesystem"]
    assert isinstance(fs, FilesystemCollector)
    fs._statvfs = hung_statvfs
    try:
        result = await runner.run_once("filesystem")
        assert not result.success and "timed out after 0.3s" in (result.error or "")
        assert 0.25 < result.duration < 5
        # Still stuck: the next run is skipped instead of piling up another thread.
        again = await runner.run_once("filesystem")
        assert not again.success and "has not returned" in (again.error or "")
        assert len(calls) <= 4  # one per mount at most (the collector runs statvfs in parallel)
        # The others ran on their own schedule meanwhile.
        await poll(lambda: runner.latest.get("cpu") is not None and runner.latest["cpu"].success, 5, "cpu")
        assert metrics.registry.get_sample_value("vigil_collector_success", {"collector": "filesystem"}) == 0
        assert metrics.registry.get_sample_value("vigil_collector_success", {"collector": "cpu"}) == 1
        failed = await asyncio.wait_for(events.get(), 5)
        assert failed.type == "collector_failed" and failed.data["collector"] == "filesystem"
        release.set()
        fs._statvfs = os.statvfs
        await poll(lambda: runner.latest["filesystem"].success, 10, "filesystem to recover")
        recovered = await asyncio.wait_for(events.get(), 5)
        assert recovered.type == "collector_recovered"
    finally:
        release.set()
        scheduler.shutdown()
        runner.close()
