"""Cleanup: old temp files go, only inside the configured directories (symlinks are neither followed nor
deleted, their targets stay), dry runs delete nothing, Vigil's own files are never touched; and the
cleanup task through the daemon reports items and bytes per category, prunes by retention and vacuums."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from pydantic import ValidationError

from agent.cleanup.tempfiles import Cancelled, clean_dir, file_id
from agent.config.schema import Config
from agent.selfmetrics import SelfMetrics
from agent.store import Store, StoreError
from agent.store import diagnostics as diag_rows
from tests.conftest import Vigil, wait_for

DAY = 86400.0
OLD = time.time() - 30 * DAY


def write(path: Path, size: int, mtime: float | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def old_link(link: Path, target: Path) -> Path:
    link.symlink_to(target)
    os.utime(link, (OLD, OLD), follow_symlinks=False)  # the link itself is old too: it still must stay
    return link


def layout(tmp_path: Path) -> dict[str, Path]:
    """A temp dir with old and new files, a nested dir, links pointing outside (to a file and to a
    directory full of old files), and a FIFO; plus the outside files they point at."""
    temp, outside = tmp_path / "temp", tmp_path / "outside"
    paths = {
        "old": write(temp / "old.txt", 100, OLD),
        "new": write(temp / "new.txt", 10),
        "nested_old": write(temp / "a" / "b" / "old.bin", 50, OLD),
        "target": write(outside / "target.txt", 7, OLD),
        "outside_old": write(outside / "inner" / "old.txt", 9, OLD),
    }
    paths["link_file"] = old_link(temp / "to-target", paths["target"])
    paths["link_dir"] = old_link(temp / "a" / "to-outside", outside / "inner")
    paths["fifo"] = temp / "pipe"
    os.mkfifo(paths["fifo"])
    os.utime(paths["fifo"], (OLD, OLD))
    paths["temp"], paths["outside"] = temp, outside
    return paths


def test_deletes_only_old_regular_files_and_never_follows_or_deletes_symlinks(tmp_path: Path) -> None:
    p = layout(tmp_path)
    result = clean_dir(str(p["temp"]), time.time() - 7 * DAY, dry_run=False)
    assert (result.files, result.bytes) == (2, 150)
    assert not p["old"].exists() and not p["nested_old"].exists()
    assert p["new"].exists() and p["fifo"].exists()
    assert os.path.islink(p["link_file"]) and os.path.islink(p["link_dir"])
    assert p["target"].read_bytes() == b"x" * 7 and p["outside_old"].exists()
    assert (result.kept, result.skipped_symlinks, result.skipped_other) == (1, 2, 1)
    assert result.errors == [] and (p["temp"] / "a" / "b").is_dir()  # directories stay


def test_dry_run_counts_the_same_and_deletes_nothing(tmp_path: Path) -> None:
    p = layout(tmp_path)
    before = sorted(str(x) for x in p["temp"].rglob("*"))
    result = clean_dir(str(p["temp"]), time.time() - 7 * DAY, dry_run=True)
    assert (result.files, result.bytes, result.kept) == (2, 150, 1)
    assert sorted(str(x) for x in p["temp"].rglob("*")) == before


def test_protected_directories_and_files_are_skipped_and_a_linked_root_is_refused(tmp_path: Path) -> None:
    temp = tmp_path / "temp"
    state = temp / "state"
    db = write(state / "vigil.db", 20, OLD)
    loose_db = write(temp / "other.db", 30, OLD)
    plain = write(temp / "plain.tmp", 40, OLD)
    fid = file_id(str(state))
    loose = file_id(str(loose_db))
    assert fid is not None and loose is not None
    result = clean_dir(str(temp), time.time(), dry_run=False, protected_dirs={fid}, protected_files={loose})
    assert db.exists() and loose_db.exists() and not plain.exists()
    assert result.excluded == [str(state)] and result.files == 1

    (tmp_path / "linked").symlink_to(temp)
    refused = clean_dir(str(tmp_path / "linked"), time.time(), dry_run=False)
    assert refused.files == 0 and "is a symlink" in refused.errors[0]
    assert clean_dir(str(state), time.time(), dry_run=False, protected_dirs={fid}).errors[0].endswith(
        "nothing in it is deleted")
    assert "does not exist" in clean_dir(str(tmp_path / "nope"), time.time(), dry_run=False).errors[0]


def test_a_cancel_stops_the_walk_with_what_was_done(tmp_path: Path) -> None:
    temp = tmp_path / "temp"
    for i in range(600):
        write(temp / f"f{i:03d}", 1, OLD)
    with pytest.raises(Cancelled) as caught:
        clean_dir(str(temp), time.time(), dry_run=False, cancelled=lambda: True)
    assert 0 < caught.value.partial.files < 600
    assert len(list(temp.iterdir())) == 600 - caught.value.partial.files


def test_config_refuses_relative_paths_and_system_directories() -> None:
    assert Config.model_validate({"cleanup": {"temp_dirs": ["/var/tmp/app/", "/var/tmp/app"]}}).cleanup.temp_dirs == [
        "/var/tmp/app"]
    for bad in ("tmp/app", "/", "//etc", "/var/lib/", "/usr"):
        with pytest.raises(ValidationError):
            Config.model_validate({"cleanup": {"temp_dirs": [bad]}})


async def test_vacuum_runs_alone_between_batches_while_other_writes_wait(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "vigil.db"), SelfMetrics())
    await store.open()
    try:
        async def fill(db: aiosqlite.Connection) -> None:
            await db.execute("CREATE TABLE IF NOT EXISTS junk (v BLOB)")
            await db.executemany("INSERT INTO junk (v) VALUES (?)", [(b"x" * 4000,) for _ in range(500)])

        async def empty(db: aiosqlite.Connection) -> None:
            await db.execute("DELETE FROM junk")

        async def count(db: aiosqlite.Connection) -> int:
            return int((await (await db.execute("SELECT count(*) FROM junk")).fetchone() or (0,))[0])

        await store.write(fill)
        await store.write(empty)
        size = os.path.getsize(store.path) + os.path.getsize(store.path + "-wal")
        # Writes queued before and after the VACUUM: the batch before commits, VACUUM runs outside any
        # transaction (inside one SQLite refuses it), then the writes behind it.
        results = await asyncio.gather(store.write(fill), diag_rows.vacuum(store), store.write(fill))
        assert results[1] == {"auto_vacuum_switched": False, "checkpoint_busy": False}
        assert await store.read(count) == 1000
        await store.write(empty)
        await diag_rows.vacuum(store)
        assert os.path.getsize(store.path) + os.path.getsize(store.path + "-wal") < size

        async def broken(db: aiosqlite.Connection) -> None:
            await db.execute("BEGIN")
            await db.execute("INSERT INTO junk (v) VALUES (x'00')")
            raise RuntimeError("gave up half-way")

        with pytest.raises(RuntimeError):
            await store.write_alone(broken)
        assert await store.read(count) == 0  # what it left open was rolled back, not committed by the next batch
        await store.write(fill)
        assert await store.read(count) == 500
    finally:
        await store.close()
    with pytest.raises(StoreError):
        await diag_rows.vacuum(store)


# --- through the daemon -----------------------------------------------------------------------


def run_task(v: Vigil, body: dict[str, Any]) -> dict[str, Any]:
    r = v.post("/api/v1/maintenance/cleanup", body)
    assert r.status == 202, r
    task_id = r.json()["data"]["task_id"]
    assert r.headers["Location"] == f"/api/v1/tasks/{task_id}"

    def finished() -> dict[str, Any] | None:
        task = v.get(f"/api/v1/tasks/{task_id}").json()["data"]
        return task if task["status"] not in ("pending", "running") else None

    task = wait_for(finished, 30, f"cleanup task {task_id}")
    assert task["status"] == "completed", task
    return task


def add_old_results(v: Vigil, count: int) -> None:
    """Check results from 30 days ago, written as the checks runner would have (a second connection: WAL)."""
    db = sqlite3.connect(v.state_dir / "vigil.db", timeout=10)
    with db:
        db.executemany("INSERT INTO check_results (check_name, ts, status, state, message, duration)"
                       " VALUES ('web', ?, 'ok', 'ok', '', 0.1)", [(OLD + i,) for i in range(count)])
    db.close()


def test_cleanup_task_reports_per_category_and_touches_nothing_outside(make_vigil: Any, tmp_path: Path) -> None:
    p = layout(tmp_path)
    week_old = write(p["temp"] / "two-days.log", 5, time.time() - 2 * DAY)
    v = make_vigil({"cleanup": {"temp_dirs": [str(p["temp"]), str(tmp_path / "missing")]},
                    "api": {"rate_limit": {"categories": {"maintenance": 10_000}}}}).start()
    add_old_results(v, 25)

    dry = run_task(v, {"dry_run": True})
    report = dry["result"]["categories"]
    assert dry["result"]["dry_run"] is True
    temp_dirs = report["temp_files"]["details"]["directories"]
    assert (report["temp_files"]["items"], report["temp_files"]["bytes"]) == (2, 150)
    assert temp_dirs[0]["skipped_symlinks"] == 2 and "does not exist" in temp_dirs[1]["errors"][0]
    assert report["check_results"]["details"]["results"] == 25
    assert p["old"].exists() and p["nested_old"].exists()
    assert [s["name"] for s in dry["steps"]] == list(report) and all(s["status"] == "completed" for s in dry["steps"])

    done = run_task(v, {"categories": ["database", "temp_files", "check_results"]})
    report = done["result"]["categories"]
    assert list(report) == ["temp_files", "check_results", "database"]  # always in the documented order
    assert (report["temp_files"]["items"], report["temp_files"]["bytes"]) == (2, 150)
    assert not p["old"].exists() and not p["nested_old"].exists() and week_old.exists()
    assert os.path.islink(p["link_file"]) and p["target"].exists() and p["outside_old"].exists()
    assert report["check_results"]["details"]["results"] == 25
    assert report["database"]["details"]["vacuumed"] is True
    assert done["result"]["totals"]["items"] >= 27 and done["result"]["failed"] == []
    again = run_task(v, {"categories": ["check_results"], "dry_run": True})
    assert again["result"]["categories"]["check_results"]["details"]["results"] == 0

    younger = run_task(v, {"categories": ["temp_files"], "older_than_days": 1})
    assert younger["result"]["categories"]["temp_files"]["items"] == 1 and not week_old.exists()
    assert p["new"].exists()

    store = v.get("/api/v1/store").json()["data"]
    assert store["last_vacuum"]["at"] is not None
    assert store["last_vacuum"]["bytes_before"] >= store["last_vacuum"]["bytes_after"] > 0
    assert store["last_optimize"] is not None

    bad = v.post("/api/v1/maintenance/cleanup", {"categories": ["temp_files", "audit"]})
    assert bad.status == 400 and "categories" in bad.json()["error"]
    assert v.post("/api/v1/maintenance/cleanup", {"older_than_days": -1}).status == 400
    assert v.stop() == 0
