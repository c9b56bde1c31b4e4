"""GET /api/v1/logs and `vigil logs` through a real daemon: Vigil's own events from the store, the
configured log files, filters, plain-text search, pagination by offset and by signed cursor, retention;
and the log queue's bound (LogBook on a real store file)."""

from __future__ import annotations

import base64
import json
import os
import select
import sqlite3
import subprocess
import sys
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.logbook.book import LogBook
from agent.logbook.config import LogStoreConfig
from agent.selfmetrics import SelfMetrics
from agent.store import Store
from agent.store import logbook as log_rows
from tests.conftest import REPO, Vigil, wait_for

BASE = datetime(2025, 1, 15, 10, 0, 0, tzinfo=UTC).timestamp()


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def app_lines() -> list[str]:
    """25 dated lines a second apart (levels cycling), plus lines whose text looks like regexes."""
    levels = ["DEBUG", "INFO", "WARN", "ERROR", "INFO"]
    lines = [f"{iso(BASE + i)} {levels[i % 5]} worker step {i:02d} done" for i in range(25)]
    lines += [
        f"{iso(BASE + 30)} ERROR query failed near (a+b)*[x in clause",
        f"{iso(BASE + 31)} INFO " + "a" * 5000 + "!",
        f"{iso(BASE + 32)} INFO axb is not a.b",
        "    continuation of the line before, without a time",
    ]
    return lines


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Vigil]:
    root = tmp_path_factory.mktemp("logs")
    app = root / "app.log"
    app.write_text("\n".join(app_lines()) + "\n")
    formats = root / "formats.log"
    formats.write_text(
        '{"time": "2025-01-16T08:00:00Z", "level": "error", "msg": "json line", "user": "u1"}\n'
        '127.0.0.1 - - [16/Jan/2025:09:00:00 +0100] "GET / HTTP/1.1" 500 12\n'
        "2025-01-16 10:00:00,123 [warning] local time line\n"
    )
    v = Vigil(root, {
        "log": {
            "store": {"flush_interval": "100ms"},
            "files": [{"name": "app", "path": str(app)}, {"name": "formats", "path": str(formats)},
                      {"name": "missing", "path": str(root / "nope.log")},
                      {"name": "live", "path": str(root / "live.log")}],
        },
    })
    v.start()
    wait_for(lambda: v.get("/api/v1/logs?source=vigil&search=vigil_started").json()["data"]["logs"], 10,
             "the start-up event to be stored")
    yield v
    assert v.stop() == 0


def logs(agent: Vigil, **params: Any) -> dict[str, Any]:
    r = agent.get("/api/v1/logs?" + urllib.parse.urlencode(params))
    assert r.status == 200, r
    return r.json()["data"]


def test_own_events_are_stored_with_context(agent: Vigil) -> None:
    data = logs(agent, source="vigil", search="vigil_started")
    (started,) = data["logs"]
    assert started["service"] == "daemon" and started["source"] == "vigil" and started["level"] == "info"
    assert started["context"]["pid"] == agent.proc.pid  # type: ignore[union-attr]
    assert started["timestamp"].endswith("Z")


def test_level_is_a_minimum_and_summary_counts_every_level(agent: Vigil) -> None:
    assert agent.get("/api/v1/health", key="vgl_wrong").status == 401  # an auth_failed warning
    wait_for(lambda: logs(agent, source="vigil", level="warn", search="auth_failed")["logs"], 10,
             "the auth_failed warning to be stored")
    data = logs(agent, source="files", service="app", level="warning")
    assert {e["level"] for e in data["logs"]} == {"warning", "error"}
    summary = data["summary"]
    # The summary counts all levels of what the other filters select; the total only the levels asked.
    assert summary["total_logs"] == 29
    assert summary["debug_count"] == 5 and summary["warning_count"] == 5 and summary["error_count"] == 6
    assert data["pagination"]["total"] == 11 == len(data["logs"])
    assert all(e["level"] == "error" for e in logs(agent, service="app", level="error")["logs"])
    bad = agent.get("/api/v1/logs?level=loud")
    assert bad.status == 400 and bad.json()["details"]["errors"][0]["field"] == "level"


def test_service_and_source_filters(agent: Vigil) -> None:
    daemon = logs(agent, source="vigil", service="daemon,store")["logs"]
    assert daemon and {e["service"] for e in daemon} <= {"daemon", "store"}
    assert {e["source"] for e in logs(agent, source="files", limit=1000)["logs"]} == {"file"}
    assert {e["source"] for e in logs(agent, source="vigil", limit=50)["logs"]} == {"vigil"}
    assert logs(agent, source="vigil", service="app")["logs"] == []  # a file's name selects no stored events


def test_log_files_are_parsed(agent: Vigil) -> None:
    data = logs(agent, service="formats", limit=10)
    by_message = {e["message"]: e for e in data["logs"]}
    json_line = by_message["json line"]
    assert (json_line["timestamp"], json_line["level"]) == ("2025-01-16T08:00:00.000Z", "error")
    assert json_line["context"]["user"] == "u1" and json_line["context"]["file"].endswith("formats.log")
    clf = next(e for e in data["logs"] if e["message"].startswith("127.0.0.1"))
    assert clf["timestamp"] == "2025-01-16T08:00:00.000Z"  # 09:00 at +0100
    local = next(e for e in data["logs"] if "local time line" in e["message"])
    assert local["level"] == "warning"
    assert local["timestamp"] == iso(datetime(2025, 1, 16, 10, 0, 0, 123000).timestamp())  # the host's zone
    assert [(f["name"], f["lines"], f["error"]) for f in data["files"]] == [("formats", 3, None)]
    files = {f["name"]: f for f in logs(agent, source="files")["files"]}
    assert "nope.log" in files["missing"]["error"] and files["missing"]["lines"] == 0
    # A line without a time keeps the time of the line before it.
    tail = logs(agent, service="app", search="continuation")["logs"][0]
    assert tail["timestamp"] == iso(BASE + 32)


def test_time_window(agent: Vigil) -> None:
    data = logs(agent, service="app", **{"from": iso(BASE + 10), "to": iso(BASE + 14)})
    assert [e["message"][-12:] for e in data["logs"]] == [f"step {i:02d} done" for i in (14, 13, 12, 11, 10)]
    assert logs(agent, service="app", **{"from": str(BASE + 24), "to": str(BASE + 24)})["pagination"]["total"] == 1
    recent = logs(agent, time_range="1h", limit=1000)
    assert recent["logs"] and not {e["service"] for e in recent["logs"]} & {"app", "formats"}  # lines of 2025
    assert agent.get("/api/v1/logs?time_range=1h&from=2025-01-01T00:00:00Z").status == 400
    assert agent.get("/api/v1/logs?from=yesterday").status == 400
    assert agent.get(f"/api/v1/logs?from={iso(BASE + 5)}&to={iso(BASE)}").status == 400


def test_search_is_plain_text_not_a_pattern(agent: Vigil) -> None:
    found = logs(agent, service="app", search="(a+b)*[x")["logs"]
    assert [e["message"] for e in found] == [f"{iso(BASE + 30)} ERROR query failed near (a+b)*[x in clause"]
    # "axb" does not match: "." is a dot
    assert [e["message"][-10:] for e in logs(agent, service="app", search="a.b")["logs"]] == ["is not a.b"]
    assert logs(agent, service="app", search="QUERY FAILED")["pagination"]["total"] == 1  # case-insensitive
    # A pattern that backtracks exponentially as a regex against a long run of "a": here it is just text.
    assert logs(agent, search="(a+)+$")["logs"] == []
    assert logs(agent, service="app", search="aaaa!")["pagination"]["total"] == 1
    # The same for stored events: a request path full of metacharacters is found as written.
    marker = f"zz(.*)+$[{uuid.uuid4().hex[:8]}"
    assert agent.get("/api/v1/" + urllib.parse.quote(marker)).status == 404
    hit = wait_for(lambda: logs(agent, source="vigil", search=marker)["logs"], 10, "the request to be logged")
    assert hit[0]["message"] == "http_request" and hit[0]["context"]["path"] == "/api/v1/" + marker


def test_offset_and_cursor_pages_agree(agent: Vigil) -> None:
    by_offset = []
    for offset in range(0, 40, 7):
        by_offset += logs(agent, service="app", limit=7, offset=offset)["logs"]
    by_cursor: list[dict[str, Any]] = []
    params: dict[str, Any] = {"service": "app", "limit": 7}
    pages = 0
    while True:
        data = logs(agent, **params)
        by_cursor += data["logs"]
        pages += 1
        pag = data["pagination"]
        assert pag["total"] == 29
        if not pag["has_more"]:
            assert pag["next_cursor"] is None
            break
        params["cursor"] = pag["next_cursor"]
    assert pages == 5
    assert [e["id"] for e in by_cursor] == [e["id"] for e in by_offset]
    assert len({e["id"] for e in by_cursor}) == 29
    times = [e["timestamp"] for e in by_cursor]
    assert times == sorted(times, reverse=True)


def test_merged_sources_page_consistently(agent: Vigil) -> None:
    """Stored events and file lines form one list: every offset page is the matching slice of it."""
    with open(Path(agent.root) / "live.log", "a") as fh:
        fh.writelines(f"{iso(time.time())} INFO merged line {i}\n" for i in range(3))
    until = time.time()
    # Everything logged before `until` is stored once something logged after it is (the queue is FIFO).
    wait_for(lambda: logs(agent, source="vigil", **{"from": iso(until + 0.001)})["logs"], 10, "the queue to drain")
    window = {"to": iso(until), "from": iso(until - 3600)}
    whole = logs(agent, limit=1000, **window)["logs"]
    assert {e["source"] for e in whole} == {"vigil", "file"}
    keys = [(e["timestamp"], e["id"]) for e in whole]
    assert [k[0] for k in keys] == sorted((k[0] for k in keys), reverse=True)
    for offset in (0, 1, 3, len(whole) - 2):
        part = logs(agent, limit=4, offset=offset, **window)["logs"]
        assert [e["id"] for e in part] == [e["id"] for e in whole[offset:offset + 4]]
    cursor_ids: list[str] = []
    params: dict[str, Any] = {"limit": 5, **window}
    while True:
        data = logs(agent, **params)
        cursor_ids += [e["id"] for e in data["logs"]]
        if not data["pagination"]["has_more"]:
            break
        params["cursor"] = data["pagination"]["next_cursor"]
    assert cursor_ids == [e["id"] for e in whole]


def _tamper(cursor: str) -> str:
    payload, _, signature = cursor.partition(".")
    position = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    position["k"][0] += 1000.0  # later: would show lines the client already saw
    edited = base64.urlsafe_b64encode(json.dumps(position, separators=(",", ":")).encode()).decode().rstrip("=")
    return f"{edited}.{signature}"


def test_tampered_cursor_is_400(agent: Vigil) -> None:
    cursor = logs(agent, service="app", limit=5)["pagination"]["next_cursor"]
    assert agent.get("/api/v1/logs?" + urllib.parse.urlencode({"cursor": cursor, "service": "app"})).status == 200
    for bad in (_tamper(cursor), cursor[:-2] + ("AA" if not cursor.endswith("AA") else "BB"), "garbage",
                cursor.partition(".")[0]):
        r = agent.get("/api/v1/logs?" + urllib.parse.urlencode({"cursor": bad}))
        assert r.status == 400, (bad, r)
        assert r.json()["details"]["errors"][0]["field"] == "cursor"
    # Every list uses the same signed cursors: an edited offset cursor of another list is refused too.
    r = agent.get("/api/v1/incidents?" + urllib.parse.urlencode({"cursor": _tamper_offset(cursor)}))
    assert r.status == 400, r
    # A genuine cursor of another list is not a position in this one.
    assert agent.post("/api/v1/api-keys", {"name": "cursor test", "role": "viewer"}).status == 201
    audit_cursor = agent.get("/api/v1/security/audit?limit=1").json()["data"]["pagination"]["next_cursor"]
    assert audit_cursor is not None
    assert agent.get("/api/v1/logs?" + urllib.parse.urlencode({"cursor": audit_cursor})).status == 400


def _tamper_offset(cursor: str) -> str:
    signature = cursor.partition(".")[2]
    edited = base64.urlsafe_b64encode(b'{"offset":5}').decode().rstrip("=")
    return f"{edited}.{signature}"


def test_limit_bounds(agent: Vigil) -> None:
    assert agent.get("/api/v1/logs?limit=1001").status == 400
    assert agent.get("/api/v1/logs?limit=0").status == 400
    assert len(logs(agent, service="app")["logs"]) == 29  # default limit 100
    assert agent.get("/api/v1/logs", key=None).status == 401


def vigil_cli(agent: Vigil, *args: str) -> list[str]:
    return [sys.executable, "-m", "agent", *args, "--url", agent.url]


def test_cli_logs_and_follow(agent: Vigil) -> None:
    env = {**os.environ, "VIGIL_API_KEY": agent.admin_key}
    out = subprocess.run(vigil_cli(agent, "logs", "--service", "app", "--level", "error", "--limit", "3"),
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 3 and all(" ERROR " in line for line in lines)
    assert lines[-1].startswith(iso(BASE + 30))  # oldest first, the newest error last
    # The follower gets a key of its own, so its first request can be seen in the log before the line to follow.
    created = agent.post("/api/v1/api-keys", {"name": "follower", "role": "viewer"}).json()["data"]
    marker = uuid.uuid4().hex
    follow = subprocess.Popen(vigil_cli(agent, "logs", "--follow", "--source", "vigil", "--search", marker,
                                        "--interval", "0.2"),
                              cwd=REPO, env={**env, "VIGIL_API_KEY": created["key"]}, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: logs(agent, source="vigil", search=created["id"])["logs"], 15, "the follower's first request")
        assert follow.stdout is not None
        assert agent.get(f"/api/v1/{marker}").status == 404
        ready, _, _ = select.select([follow.stdout], [], [], 15)
        assert ready, "vigil logs --follow printed nothing within 15 s"
        line = follow.stdout.readline()
        assert marker in line and "http_request" in line and " INFO " in line
    finally:
        follow.terminate()
        follow.wait(10)


def test_dropped_events_metric_is_exported(agent: Vigil) -> None:
    assert agent.metric("vigil_log_events_dropped_total") == 0
    assert (agent.metric("vigil_log_events_stored_total") or 0) > 0


def test_retention_restart_store_level_and_reload(make_vigil: Any, tmp_path: Path) -> None:
    config: dict[str, Any] = {"log": {"level": "info", "store": {"retention": "2d", "level": "debug",
                                                                  "flush_interval": "100ms"}}}
    v = make_vigil(config).start()
    cursor = wait_for(lambda: v.get("/api/v1/logs?source=vigil&limit=1").json()["data"]["pagination"]["next_cursor"],
                      10, "two stored events")
    # The store keeps debug events (a scrape of /metrics is one) that stdout, at info, leaves out.
    assert v.get("/metrics", key=None).status == 200
    scrape = wait_for(lambda: v.get("/api/v1/logs?level=debug&search=%2Fmetrics").json()["data"]["logs"], 10,
                      "the debug event of the scrape")
    assert scrape[0]["level"] == "debug" and scrape[0]["context"]["path"] == "/metrics"
    assert '"path": "/metrics"' not in v.log()
    assert v.stop() == 0
    now = time.time()
    db = sqlite3.connect(v.state_dir / "vigil.db")
    with db:
        db.executemany("INSERT INTO log_events (ts, level, service, message, context) VALUES (?, 20, 'old', ?, '{}')",
                       [(now - 3 * 86400, "three days old"), (now - 86400, "one day old")])
    db.close()
    v.start()
    wait_for(lambda: v.get("/api/v1/logs?search=three+days+old").json()["data"]["pagination"]["total"] == 0, 15,
             "the prune job to delete the event past retention")
    kept = v.get("/api/v1/logs?service=old").json()["data"]["logs"]
    assert [e["message"] for e in kept] == ["one day old"]
    # The cursor secret lives in the database: a cursor from before the restart is still good.
    assert v.get("/api/v1/logs?" + urllib.parse.urlencode({"cursor": cursor, "source": "vigil"})).status == 200
    # A log file added to the config is read after the reload, without a restart.
    added = tmp_path / "added.log"
    added.write_text("2025-02-01T00:00:00Z ERROR from the added file\n")
    config["log"]["files"] = [{"name": "added", "path": str(added)}]
    v.write_config({**yaml.safe_load(v.config_path.read_text()), **config})
    found = wait_for(lambda: v.get("/api/v1/logs?source=files").json()["data"]["logs"], 10, "the added file")
    assert [(e["service"], e["level"]) for e in found] == [("added", "error")]
    assert v.stop() == 0


async def test_full_queue_drops_and_counts_then_drains(tmp_path: Path) -> None:
    metrics = SelfMetrics()
    book = LogBook(metrics, LogStoreConfig(queue_size=100, flush_interval=60))
    for i in range(150):
        book.capture("vigil.test", 20, {"event": "burst", "i": i})
    assert book.queued() == 100
    assert metrics.registry.get_sample_value("vigil_log_events_dropped_total") == 50
    store = Store(str(tmp_path / "v.db"), metrics)
    await store.open()
    try:
        book.start(store)
        await book.close()  # writes what is queued
        store_rows = await log_rows.page(store, log_rows.LogFilter(), None, 0, 1000)
        assert len(store_rows) == 100 and {r.service for r in store_rows} == {"test"}
        assert sorted(r.context["i"] for r in store_rows) == list(range(100))  # the first 100 kept, in order
        assert metrics.registry.get_sample_value("vigil_log_events_stored_total") == 100
    finally:
        await store.close()
