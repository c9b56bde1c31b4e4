"""The admin API through its real door: a daemon on a free port, HTTP requests, JSON answers."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import Vigil, wait_for


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Vigil]:
    v = Vigil(tmp_path_factory.mktemp("api"), {"api": {"max_body_bytes": 4096}})
    v.start()
    yield v
    assert v.stop() == 0


def make_key(agent: Vigil, role: str, **extra: str) -> tuple[str, dict]:
    r = agent.post("/api/v1/api-keys", {"name": f"test {role}", "role": role, **extra})
    assert r.status == 201, r
    data = r.json()["data"]
    return data["key"], data


def assert_envelope(r, status: int, error_type: str) -> dict:
    assert r.status == status, r
    body = r.json()
    assert body["status"] == "error"
    assert body["errorType"] == error_type
    assert body["error"]
    assert body["request_id"] == r.headers["X-Request-ID"]
    return body


def test_probes_need_no_key(agent: Vigil) -> None:
    assert agent.get("/healthz", key=None).json() == {"status": "ok"}
    ready = agent.get("/readyz", key=None)
    assert ready.status == 200
    assert ready.json()["checks"] == {"store": True, "scheduler": True, "started": True}


def test_no_key_is_401_with_envelope(agent: Vigil) -> None:
    body = assert_envelope(agent.get("/api/v1/health", key=None), 401, "unauthorized")
    assert body["details"]["reason"] == "missing"
    assert_envelope(agent.get("/api/v1/health", key="vgl_not-a-key"), 401, "unauthorized")


def test_x_api_key_header_works(agent: Vigil) -> None:
    r = agent.get("/api/v1/status", key=None, headers={"X-API-Key": agent.admin_key})
    assert r.status == 200


def test_viewer_on_admin_route_is_403(agent: Vigil) -> None:
    viewer, _ = make_key(agent, "viewer")
    assert agent.get("/api/v1/health", key=viewer).status == 200
    body = assert_envelope(agent.get("/api/v1/api-keys", key=viewer), 403, "forbidden")
    assert body["details"]["required_scope"] == "admin:keys"
    assert_envelope(agent.post("/api/v1/api-keys", {"name": "x"}, key=viewer), 403, "forbidden")


def test_head_is_authorized_like_get(agent: Vigil) -> None:
    assert agent.request("HEAD", "/api/v1/api-keys", key=None).status == 401
    assert agent.request("HEAD", "/api/v1/api-keys").status == 200
    assert agent.request("HEAD", "/healthz", key=None).status == 200


def test_unknown_route_and_method(agent: Vigil) -> None:
    assert_envelope(agent.get("/api/v1/nope"), 404, "not_found")
    r = agent.request("PUT", "/api/v1/health")
    assert_envelope(r, 405, "method_not_allowed")
    assert "GET" in r.headers.get("Allow", "")


def test_bad_parameters_are_400(agent: Vigil) -> None:
    body = assert_envelope(agent.get("/api/v1/processes?limit=abc"), 400, "bad_data")
    assert body["details"]["errors"][0]["field"] == "limit"
    assert_envelope(agent.get("/api/v1/processes?sort=bogus"), 400, "bad_data")
    body = assert_envelope(agent.get("/api/v1/processes?limt=5"), 400, "bad_data")
    assert "limt" in body["error"]
    assert_envelope(agent.get("/api/v1/processes?limit=100000"), 400, "bad_data")


def test_bad_bodies(agent: Vigil) -> None:
    before = len(agent.get("/api/v1/api-keys").json()["data"]["api_keys"])
    assert_envelope(agent.post("/api/v1/api-keys", raw=b"{not json"), 400, "bad_data")
    body = assert_envelope(agent.post("/api/v1/api-keys", {"name": "x", "role": "root"}), 400, "bad_data")
    assert body["details"]["errors"][0]["field"] == "role"
    assert_envelope(agent.post("/api/v1/api-keys", {"name": "x", "colour": "red"}), 400, "bad_data")
    assert_envelope(agent.post("/api/v1/api-keys", {"name": "x", "expires_at": "2001-01-01T00:00:00Z"}),
                    400, "bad_data")
    assert_envelope(agent.post("/api/v1/api-keys", {"name": "x", "expires_at": "9999-12-31T23:59:59-23:59"}),
                    400, "bad_data")
    assert_envelope(agent.post("/api/v1/api-keys", raw=b"[" * 4000), 400, "bad_data")
    big = {"name": "x" * 10_000}
    assert_envelope(agent.post("/api/v1/api-keys", big), 413, "payload_too_large")
    assert len(agent.get("/api/v1/api-keys").json()["data"]["api_keys"]) == before


def test_key_lifecycle(agent: Vigil) -> None:
    token, created = make_key(agent, "operator")
    assert token.startswith("vgl_") and created["key_preview"].endswith(token[-4:])
    listed = {k["id"]: k for k in agent.get("/api/v1/api-keys").json()["data"]["api_keys"]}
    assert created["id"] in listed
    assert "key" not in listed[created["id"]] and token not in json.dumps(listed)
    assert agent.get("/api/v1/status", key=token).status == 200
    r = agent.delete(f"/api/v1/api-keys/{created['id']}")
    assert r.status == 200 and r.json()["data"]["status"] == "revoked"
    body = assert_envelope(agent.get("/api/v1/status", key=token), 401, "unauthorized")
    assert body["details"]["reason"] == "revoked"
    assert_envelope(agent.delete(f"/api/v1/api-keys/{created['id']}"), 409, "conflict")
    assert_envelope(agent.delete("/api/v1/api-keys/key_nope"), 404, "not_found")


def test_expired_key_is_401(agent: Vigil) -> None:
    soon = (datetime.now(UTC) + timedelta(seconds=1.5)).isoformat()
    token, _ = make_key(agent, "viewer", expires_at=soon)
    assert agent.get("/api/v1/status", key=token).status == 200
    wait_for(lambda: agent.get("/api/v1/status", key=token).status == 401, 10, "the key to expire")
    assert agent.get("/api/v1/status", key=token).json()["details"]["reason"] == "expired"


def test_health_shape(agent: Vigil) -> None:
    data = agent.get("/api/v1/health").json()["data"]
    assert data["overall"]["status"] in ("healthy", "degraded")
    assert data["overall"]["environment"] == "test"
    assert set(data["components"]) >= {"store", "scheduler", "collectors", "api"}
    assert data["components"]["store"]["status"] == "healthy"
    assert data["components"]["store"]["response_time_ms"] >= 0
    res = data["resources"]
    assert res["cpu"]["cores"] >= 1 and len(res["cpu"]["load_average"]) == 3
    meminfo = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    assert res["memory"]["total_bytes"] == int(meminfo["MemTotal"].split()[0]) * 1024


def test_status_shape(agent: Vigil) -> None:
    data = agent.get("/api/v1/status").json()["data"]
    assert data["version"] and data["hostname"]
    assert data["config"]["version"] >= 1
    assert data["components"]["store"] == "healthy"
    assert "cpu" in data["collectors"]


def test_processes(agent: Vigil) -> None:
    import os

    r = agent.get("/api/v1/processes?sort=rss&limit=5")
    data = r.json()["data"]
    assert len(data["processes"]) == 5 and data["total_processes"] >= 5
    rss = [p["rss"] for p in data["processes"]]
    assert rss == sorted(rss, reverse=True)
    p = data["processes"][0]
    assert set(p) >= {"pid", "name", "user", "status", "cpu_percent", "memory_percent", "rss", "cmdline"}
    mine = agent.get("/api/v1/processes?name=pytest&limit=1000").json()["data"]["processes"]
    assert os.getpid() in {p["pid"] for p in mine}
    by_name = agent.get("/api/v1/processes?sort=name&limit=1000").json()["data"]["processes"]
    assert [p["name"] for p in by_name] == sorted(p["name"] for p in by_name)


def test_rate_limit_429(make_vigil) -> None:
    v = make_vigil({"api": {"rate_limit": {"window": "100y", "default": 1000, "categories": {"health": 3}}}})
    v.start()
    seen = [v.get("/api/v1/health") for _ in range(3)]
    assert [r.headers["X-RateLimit-Remaining"] for r in seen] == ["2", "1", "0"]
    assert all(r.headers["X-RateLimit-Limit"] == "3" for r in seen)
    r = v.get("/api/v1/health")
    body = assert_envelope(r, 429, "rate_limited")
    assert int(r.headers["Retry-After"]) >= 1
    assert body["details"]["category"] == "health"
    assert v.get("/api/v1/api-keys").status == 200  # another category is not affected
    assert v.stop() == 0


def test_openapi_matches_routes(agent: Vigil) -> None:
    doc = agent.get("/api/v1/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    from agent.api.routes import ROUTES

    declared = {(ep.method.lower(), ep.path) for ep in ROUTES.endpoints}
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert declared == documented
    params = {p["name"] for p in doc["paths"]["/api/v1/processes"]["get"]["parameters"]}
    assert {"sort", "limit", "name"} <= params
    # Every documented route exists: it answers something other than 404 "no route".
    for method, path in documented:
        if "{" in path or method != "get" or path == "/api/v1/events":
            continue
        assert agent.get(path).status != 404, path


def test_request_id_is_echoed(agent: Vigil) -> None:
    r = agent.get("/api/v1/nope", headers={"X-Request-ID": "trace-123"})
    assert r.headers["X-Request-ID"] == "trace-123" and r.json()["request_id"] == "trace-123"


def test_events_websocket(agent: Vigil) -> None:
    import asyncio

    import aiohttp

    async def scenario() -> list[dict]:
        async with aiohttp.ClientSession() as session:
            denied = await session.get(agent.url + "/api/v1/events")
            assert denied.status == 401
            headers = {"Authorization": f"Bearer {agent.admin_key}"}
            async with session.ws_connect(agent.url + "/api/v1/events?types=api_key_created",
                                          headers=headers) as ws:
                hello = await ws.receive_json(timeout=5)
                async with session.post(agent.url + "/api/v1/api-keys", json={"name": "ws"},
                                        headers=headers) as r:
                    assert r.status == 201
                return [hello, await ws.receive_json(timeout=5)]

    hello, event = asyncio.run(scenario())
    assert hello["type"] == "hello"
    assert event["type"] == "api_key_created" and event["data"]["role"] == "viewer"
    assert time.time() - event["time"] < 30


def test_chunked_bodies(agent: Vigil) -> None:
    import http.client

    def post_chunks(chunks: list[bytes]) -> tuple[int, dict]:
        conn = http.client.HTTPConnection("127.0.0.1", agent.port, timeout=10)
        conn.putrequest("POST", "/api/v1/api-keys")
        conn.putheader("Authorization", f"Bearer {agent.admin_key}")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        for chunk in chunks:
            conn.send(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            time.sleep(0.05)  # arrive in separate reads, as a slow client's would
        conn.send(b"0\r\n\r\n")
        resp = conn.getresponse()
        body = json.loads(resp.read())
        conn.close()
        return resp.status, body

    status, body = post_chunks([b'{"name": ', b'"chunked"}'])
    assert status == 201 and body["data"]["name"] == "chunked"
    status, body = post_chunks([b'{"name": "' + b"x" * 3000, b"y" * 3000 + b'"}'])
    assert status == 413 and body["errorType"] == "payload_too_large"


def test_non_utf8_credentials_are_401(agent: Vigil) -> None:
    import http.client

    for header in (b"Authorization: Bearer \xff\xfe", b"X-API-Key: \xff"):
        conn = http.client.HTTPConnection("127.0.0.1", agent.port, timeout=10)
        conn.putrequest("GET", "/api/v1/health")
        conn.putheader(*header.decode("latin-1").split(": ", 1))
        conn.endheaders()
        resp = conn.getresponse()
        assert resp.status == 401, header
        assert json.loads(resp.read())["errorType"] == "unauthorized"
        conn.close()


def test_undeclared_query_parameters_are_400(agent: Vigil) -> None:
    body = assert_envelope(agent.get("/api/v1/health?foo=1"), 400, "bad_data")
    assert body["details"]["errors"] == [{"field": "foo", "message": "unknown query parameter"}]
    assert agent.get("/healthz?probe=1", key=None).status == 200  # probes and scrapes are lenient


def test_process_rows_agree_with_psutil(agent: Vigil) -> None:
    import os

    import psutil

    rows = {p["pid"]: p for p in agent.get("/api/v1/processes?limit=1000").json()["data"]["processes"]}
    me = psutil.Process(os.getpid())
    row = rows[os.getpid()]
    assert row["name"] == me.name() and row["cmdline"] == me.cmdline()
    assert row["user"] == me.username() and abs(row["create_time"] - me.create_time()) < 0.05
    assert row["status"] in ("running", "sleeping")
    assert abs(row["rss"] - me.memory_info().rss) < 64 * 1024 * 1024
    daemon = rows[agent.proc.pid]  # type: ignore[union-attr]
    assert daemon["cmdline"][1:4] == ["-m", "agent", "run"]
