"""Silences: Alertmanager 0.25's API semantics through a real daemon (create, list, get, edit in place or
by replacement, expire, 400s and 404s, kill -9), and the SilenceBook with a clock the test moves
(`silenced_by`, state changes, retention)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agent.alerting.matchers import parse_matchers
from agent.alerting.silencebook import SilenceBook, SilenceExpired, SilenceNotFound
from agent.audit import Audit
from agent.events import EventBus
from agent.selfmetrics import SelfMetrics
from agent.store import Store
from tests.conftest import Vigil


def rfc3339(delta: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=delta)).isoformat().replace("+00:00", "Z")


def am_body(**extra: Any) -> dict[str, Any]:
    """Alertmanager v2's PostableSilence, as amtool sends it."""
    return {
        "matchers": [{"name": "alertname", "value": "DiskFull", "isRegex": False, "isEqual": True},
                     {"name": "mountpoint", "value": "/var.*", "isRegex": True, "isEqual": True}],
        "startsAt": rfc3339(0), "endsAt": rfc3339(3600), "createdBy": "alice", "comment": "replacing the disk",
        **extra,
    }


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Vigil]:
    v = Vigil(tmp_path_factory.mktemp("silences"))
    v.start()
    yield v
    assert v.stop() == 0


def create(agent: Vigil, body: dict[str, Any]) -> dict[str, Any]:
    r = agent.post("/api/v1/silences", body)
    assert r.status == 201, r
    return r.json()["data"]


# --- through the daemon -------------------------------------------------------------------------------


def test_create_get_and_list(agent: Vigil) -> None:
    data = create(agent, am_body())
    sid = data["silenceID"]
    assert data["id"] == sid and data["status"] == {"state": "active"}
    got = agent.get(f"/api/v1/silences/{sid}").json()["data"]
    assert set(got) >= {"id", "status", "updatedAt", "matchers", "startsAt", "endsAt", "createdBy", "comment"}
    assert got["matchers"] == am_body()["matchers"]
    assert got["matchersText"] == '{alertname="DiskFull",mountpoint=~"/var.*"}'
    assert got["createdBy"] == "alice" and got["comment"] == "replacing the disk"
    listed = agent.get("/api/v1/silences?state=active").json()["data"]
    assert sid in [s["id"] for s in listed["silences"]]
    assert listed["summary"]["active"] >= 1 and listed["pagination"]["total"] == len(listed["silences"])
    assert sid not in [s["id"] for s in agent.get("/api/v1/silences?state=pending").json()["data"]["silences"]]


def test_snake_case_and_string_matchers(agent: Vigil) -> None:
    data = create(agent, {"matchers": ['severity=~"crit.*"', 'team!="db"'], "starts_at": rfc3339(600),
                          "ends_at": rfc3339(7200), "created_by": "bob", "comment": ""})
    assert data["status"]["state"] == "pending"
    assert data["matchers"] == [{"name": "severity", "value": "crit.*", "isRegex": True, "isEqual": True},
                                {"name": "team", "value": "db", "isRegex": False, "isEqual": False}]
    one_string = create(agent, {"matchers": '{job="node",instance=~"web-.+"}', "endsAt": time.time() + 600,
                                "createdBy": "bob", "comment": "unix seconds work too"})
    assert [m["name"] for m in one_string["matchers"]] == ["job", "instance"]
    pending = agent.get("/api/v1/silences?state=pending").json()["data"]["silences"]
    assert data["id"] in [s["id"] for s in pending]


def test_filter(agent: Vigil) -> None:
    wanted = create(agent, am_body(matchers=['alertname="FilterMe"', 'env="prod"']))["id"]
    create(agent, am_body(matchers=['alertname="Other"']))
    found = agent.get('/api/v1/silences?filter=alertname%3D%22FilterMe%22').json()["data"]["silences"]
    assert [s["id"] for s in found] == [wanted]
    both = agent.get('/api/v1/silences?matcher=alertname%3D%22FilterMe%22&matcher=env%3D~%22pr.*%22')
    assert [s["id"] for s in both.json()["data"]["silences"]] == [wanted]
    bad = agent.get('/api/v1/silences?filter=alertname%3D~%22(%22')
    assert bad.status == 400 and "error parsing regexp" in bad.json()["error"]


@pytest.mark.parametrize(("body", "fragment"), [
    ({"matchers": ['severity=~"("']}, "error parsing regexp"),
    ({"matchers": []}, "matchers is required"),
    ({"matchers": ['foo=~".*"']}, "at least one matcher must not match the empty string"),
    ({"matchers": ["no operator"]}, "bad matcher format"),
    ({"matchers": [{"name": "1x", "value": "a"}]}, "invalid label name"),
    ({"endsAt": "2001-01-01T00:00:00Z", "startsAt": "2000-01-01T00:00:00Z"}, "end time can't be in the past"),
    ({"endsAt": "tomorrow"}, "is not an RFC 3339 time"),
    ({"colour": "red"}, "unknown field 'colour'"),
    ({"createdBy": None, "created_by": None}, "created_by is required"),
    ({"endsAt": rfc3339(60), "ends_at": rfc3339(60)}, "ends_at is given twice"),
])
def test_bad_silences_are_400(agent: Vigil, body: dict[str, Any], fragment: str) -> None:
    merged = {k: v for k, v in {**am_body(), **body}.items() if v is not None}
    r = agent.post("/api/v1/silences", merged)
    assert r.status == 400, r
    assert fragment in r.json()["error"], r.json()["error"]
    assert agent.post("/api/v1/silences", raw=b"[1]", headers={"Content-Type": "application/json"}).status == 400


def test_edit_in_place_and_by_replacement(agent: Vigil) -> None:
    original = create(agent, am_body())
    sid = original["id"]
    # Same matchers, an active silence, a later end: edited in place (200, same id).
    longer = agent.post("/api/v1/silences", {**am_body(startsAt=original["startsAt"], endsAt=rfc3339(7200)),
                                             "id": sid})
    assert longer.status == 200, longer
    assert longer.json()["data"]["silenceID"] == sid
    assert agent.get(f"/api/v1/silences/{sid}").json()["data"]["endsAt"] == longer.json()["data"]["endsAt"]
    # Other matchers: the old one is expired and a new one replaces it (201, new id).
    replaced = agent.post("/api/v1/silences", {**am_body(matchers=['alertname="DiskFull"']), "id": sid})
    assert replaced.status == 201, replaced
    new_id = replaced.json()["data"]["silenceID"]
    assert new_id != sid
    assert agent.get(f"/api/v1/silences/{sid}").json()["data"]["status"]["state"] == "expired"
    assert agent.get(f"/api/v1/silences/{new_id}").json()["data"]["status"]["state"] == "active"
    # Posting a GET answer back (with its read-only fields) is an edit, as in Alertmanager's UI.
    got = agent.get(f"/api/v1/silences/{new_id}").json()["data"]
    got.pop("matchersText")
    again = agent.post("/api/v1/silences", {**got, "comment": "edited from the UI"})
    assert again.status == 200 and again.json()["data"]["comment"] == "edited from the UI"
    # A pending silence may move its start.
    pending = create(agent, am_body(startsAt=rfc3339(600), endsAt=rfc3339(1200)))
    moved = agent.post("/api/v1/silences", {**am_body(startsAt=rfc3339(900), endsAt=rfc3339(1200)),
                                            "id": pending["id"]})
    assert moved.status == 200 and moved.json()["data"]["silenceID"] == pending["id"]
    # An id nobody knows cannot be edited.
    assert agent.post("/api/v1/silences", {**am_body(), "id": "no-such-id"}).status == 404


def test_expire(agent: Vigil) -> None:
    sid = create(agent, am_body())["id"]
    r = agent.delete(f"/api/v1/silences/{sid}")
    assert r.status == 200 and r.json()["data"]["status"]["state"] == "expired"
    assert sid in [s["id"] for s in agent.get("/api/v1/silences?state=expired").json()["data"]["silences"]]
    again = agent.delete(f"/api/v1/silences/{sid}")
    assert again.status == 409 and "already expired" in again.json()["error"]
    assert agent.delete("/api/v1/silences/nope").status == 404
    assert agent.get("/api/v1/silences/nope").status == 404
    # A pending silence that is expired never takes effect: it starts and ends now.
    pending = create(agent, am_body(startsAt=rfc3339(600)))["id"]
    ended = agent.delete(f"/api/v1/silences/{pending}").json()["data"]
    assert ended["startsAt"] == ended["endsAt"]


def test_changes_are_audited(agent: Vigil) -> None:
    sid = create(agent, am_body(comment="audit me"))["id"]
    agent.delete(f"/api/v1/silences/{sid}")
    with sqlite3.connect(f"file:{agent.state_dir / 'vigil.db'}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT event_type FROM audit_log WHERE target=? ORDER BY id", (f"silence:{sid}",))
        assert [r[0] for r in rows] == ["silence_created", "silence_expired"]


def test_viewer_reads_but_cannot_write(agent: Vigil) -> None:
    viewer = agent.post("/api/v1/api-keys", {"name": "silence viewer", "role": "viewer"}).json()["data"]["key"]
    assert agent.get("/api/v1/silences", key=viewer).status == 200
    assert agent.post("/api/v1/silences", am_body(), key=viewer).status == 403


def test_silences_survive_kill9(make_vigil: Callable[..., Vigil]) -> None:
    v = make_vigil().start()
    r = v.post("/api/v1/silences", am_body(matchers=['alertname="Persist"', 'path="a\\"b,c"']))
    assert r.status == 201
    before = r.json()["data"]
    v.kill9()
    v.start()
    after = v.get(f"/api/v1/silences/{before['id']}").json()["data"]
    for key in ("matchers", "startsAt", "endsAt", "createdBy", "comment", "status"):
        assert after[key] == before[key], key
    assert v.delete(f"/api/v1/silences/{before['id']}").status == 200
    assert v.stop() == 0


def test_silence_changes_pass_the_maintenance_gate_only_when_allowed(make_vigil: Callable[..., Vigil]) -> None:
    v = make_vigil().start()
    assert v.post("/api/v1/maintenance/enable", {"reason": "r"}).status == 200
    refused = v.post("/api/v1/silences", am_body())
    assert refused.status == 503 and refused.json()["errorType"] == "MAINTENANCE_MODE"
    assert v.get("/api/v1/silences").status == 200
    assert v.stop() == 0


# --- the SilenceBook, with a clock the test moves -----------------------------------------------------


class Clock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def book_parts(tmp_path: Path) -> AsyncIterator[tuple[Store, EventBus, Audit, Clock]]:
    metrics = SelfMetrics()
    store = Store(str(tmp_path / "vigil.db"), metrics)
    await store.open()
    yield store, EventBus(metrics), Audit(store), Clock(1_750_000_000.0)
    await store.close()


async def test_silenced_by_follows_time(book_parts: tuple[Store, EventBus, Audit, Clock]) -> None:
    store, bus, audit, clock = book_parts
    book = SilenceBook(store, bus, audit, clock)
    await book.load()
    changes: list[float] = []
    book.on_change(lambda: changes.append(clock.now))
    t0 = clock.now
    now_silence = await book.create_or_update(
        {"matchers": ['severity=~"crit.*|warn.*"'], "ends_at": t0 + 100, "created_by": "a", "comment": ""}, "k", None)
    later = await book.create_or_update(
        {"matchers": ['alertname="Disk"'], "starts_at": t0 + 50, "ends_at": t0 + 200, "created_by": "a",
         "comment": ""}, "k", None)
    assert changes == [t0, t0]
    labels = {"alertname": "Disk", "severity": "critical"}
    assert book.silenced_by(labels, t0) == [now_silence.id]
    assert book.silenced_by({"alertname": "Disk", "severity": "info"}, t0) == []
    assert book.silenced_by(labels, t0 + 60) == sorted([now_silence.id, later.id])
    assert book.silenced_by(labels, t0 + 100) == [later.id]  # the end is not included
    assert book.silenced_by(labels, t0 + 200) == []
    clock.now = t0 + 10
    await book.tick()
    assert changes == [t0, t0]  # nothing started or ended
    clock.now = t0 + 50
    await book.tick()
    assert changes[-1] == t0 + 50  # the pending one started
    clock.now = t0 + 150
    await book.tick()
    assert changes[-1] == t0 + 150
    assert [s.id for s in book.list("expired")] == [now_silence.id]
    assert [s.id for s in book.list(None, parse_matchers('alertname="Disk"'))] == [later.id]


async def test_errors_and_retention(book_parts: tuple[Store, EventBus, Audit, Clock]) -> None:
    store, bus, audit, clock = book_parts
    book = SilenceBook(store, bus, audit, clock)
    await book.load()
    t0 = clock.now
    s = await book.create_or_update({"matchers": ['a="b"'], "ends_at": t0 + 60, "created_by": "x", "comment": ""},
                                    None, None)
    with pytest.raises(SilenceNotFound):
        await book.expire("missing", None, None)
    with pytest.raises(SilenceNotFound):
        await book.create_or_update({"id": "missing", "matchers": ['a="b"'], "ends_at": t0 + 60,
                                     "created_by": "x", "comment": ""}, None, None)
    await book.expire(s.id, None, None)
    with pytest.raises(SilenceExpired):
        await book.expire(s.id, None, None)
    clock.now = t0 + 4 * 86400
    assert await book.prune() == 0
    clock.now = t0 + 5 * 86400 + 1
    assert await book.prune() == 1
    assert book.get(s.id) is None
    reloaded = SilenceBook(store, bus, audit, clock)
    await reloaded.load()
    assert reloaded.list() == []
