"""`http` checks against real aiohttp servers on loopback: plain and TLS (certificates made here)."""

from __future__ import annotations

import asyncio
import json
import re
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pydantic
import pytest
from aiohttp import web

from agent.checks.base import CheckContext, CheckResult, Status
from agent.checks.http import HttpCheck, HttpConfig, parse_json_path
from tests.checks.common import config_error, perf, run_check
from tests.checks.tls_fixtures import Issued, make_ca, make_leaf, server_context, write_pem
from tests.conftest import free_port

DOC = {"status": "ok", "count": 3, "healthy": True, "data": {"items": [{"state": "up", "load": 0.5}]},
       "a.b": "dotted", "version": "1.4.2"}


PEERS = web.AppKey("peers", list[int])


def _app() -> web.Application:
    peers: list[int] = []

    async def ok(request: web.Request) -> web.Response:
        peers.append(request.transport.get_extra_info("peername")[1] if request.transport else 0)
        return web.Response(text="hello vigil")

    async def status(request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["code"]), text="status page")

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.query["delay"]))
        return web.Response(text="finally")

    async def doc(request: web.Request) -> web.Response:
        return web.json_response(DOC)

    async def redirect(request: web.Request) -> web.Response:
        left = int(request.match_info["n"])
        raise web.HTTPFound(f"/redirect/{left - 1}" if left > 1 else "/ok")

    async def loop(request: web.Request) -> web.Response:
        raise web.HTTPFound("/loop")

    async def big(request: web.Request) -> web.Response:
        return web.Response(body=b"a" * 1_000_000 + b"needle")

    async def echo(request: web.Request) -> web.Response:
        return web.json_response({"method": request.method, "headers": dict(request.headers),
                                  "body": await request.text()})

    async def login(request: web.Request) -> web.Response:
        if "session" in request.cookies:
            return web.Response(status=409, text="cookie from an earlier run")
        response = web.HTTPFound("/private")
        response.set_cookie("session", "s3cret")
        raise response

    async def private(request: web.Request) -> web.Response:
        if request.cookies.get("session") != "s3cret":
            return web.Response(status=403, text="no session")
        return web.Response(text="welcome")

    app = web.Application()
    app[PEERS] = peers
    app.router.add_get("/ok", ok)
    app.router.add_get("/status/{code}", status)
    app.router.add_get("/slow", slow)
    app.router.add_get("/json", doc)
    app.router.add_get("/redirect/{n}", redirect)
    app.router.add_get("/loop", loop)
    app.router.add_get("/big", big)
    app.router.add_route("*", "/echo", echo)
    app.router.add_get("/login", login)
    app.router.add_get("/private", private)
    return app


Serve = Callable[..., Awaitable[str]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Starts the test app on a free loopback port (with TLS when given a context); yields the base URL."""
    runners: list[web.AppRunner] = []

    async def start(ssl_context: Any = None, app: web.Application | None = None) -> str:
        runner = web.AppRunner(app or _app(), handler_cancellation=True, shutdown_timeout=0.1)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
        await site.start()
        port = runner.addresses[0][1]
        return f"{'https' if ssl_context else 'http'}://127.0.0.1:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()


async def probe(ctx: CheckContext | None = None, **settings: Any) -> CheckResult:
    return await run_check(HttpCheck, {"name": "web", **settings}, ctx)


async def test_ok_answer(serve: Serve) -> None:
    base = await serve()
    result = await probe(url=f"{base}/ok")
    assert result.status is Status.OK, result.message
    assert re.fullmatch(r"200 OK in \d+\.\d ms", result.message)
    assert perf(result)["size"] == len("hello vigil")
    assert perf(result)["status_code"] == 200
    assert 0 < perf(result)["time"] < 5
    assert result.details["url"] == f"{base}/ok"
    assert result.details["redirects"] == 0
    assert "cert_days_left" not in perf(result)


async def test_unexpected_status_is_critical(serve: Serve) -> None:
    base = await serve()
    result = await probe(url=f"{base}/status/503", expected_status=["200-299"])
    assert result.status is Status.CRITICAL
    assert result.message.startswith("expected status 200-299, got 503 Service Unavailable in ")
    assert result.details["status_code"] == 503


@pytest.mark.parametrize(("code", "expected", "status"), [
    (404, [404], Status.OK),
    (404, ["500-599", 404], Status.OK),
    (418, ["4xx"], Status.OK),
    (500, ["200-399"], Status.CRITICAL),
    (302, [200, "204"], Status.CRITICAL),
])
async def test_expected_status_forms(serve: Serve, code: int, expected: list[Any], status: Status) -> None:
    base = await serve()
    result = await probe(url=f"{base}/status/{code}", expected_status=expected, follow_redirects=False)
    assert result.status is status, result.message


async def test_default_expected_status_accepts_redirect_answers(serve: Serve) -> None:
    base = await serve()
    result = await probe(url=f"{base}/redirect/1", follow_redirects=False)
    assert result.status is Status.OK
    assert result.message.startswith("302 Found in ")


async def test_response_time_thresholds(serve: Serve) -> None:
    base = await serve()
    warn = await probe(url=f"{base}/slow?delay=0.3", response_time_warning="100ms", response_time_critical="5s")
    assert warn.status is Status.WARNING
    assert warn.message.endswith("ms (slow)")
    assert perf(warn)["time"] >= 0.3
    crit = await probe(url=f"{base}/slow?delay=0.3", response_time_warning="100ms", response_time_critical="200ms")
    assert crit.status is Status.CRITICAL
    fast = await probe(url=f"{base}/ok", response_time_warning="5s")
    assert fast.status is Status.OK


async def test_hanging_server_is_cut_at_timeout(serve: Serve) -> None:
    base = await serve()
    loop = asyncio.get_running_loop()
    started = loop.time()
    result = await probe(url=f"{base}/slow?delay=30", timeout="300ms", interval="10s")
    assert loop.time() - started < 3
    assert result.status is Status.CRITICAL
    assert result.message == "no complete answer within 0.3s"


async def test_connection_refused() -> None:
    port = free_port()
    result = await probe(url=f"http://127.0.0.1:{port}/")
    assert result.status is Status.CRITICAL
    assert result.message.startswith(f"cannot connect to 127.0.0.1:{port}: ")
    assert "refused" in result.message.lower()


async def test_each_run_opens_a_new_connection(serve: Serve) -> None:
    app = _app()
    base = await serve(app=app)
    cfg = HttpConfig.model_validate({"name": "web", "type": "http", "url": f"{base}/ok"})
    check = HttpCheck(cfg, CheckContext())
    try:
        for _ in range(3):
            assert (await check.run()).status is Status.OK
    finally:
        await check.close()
    assert len(set(app[PEERS])) == 3, app[PEERS]


async def test_body_regex(serve: Serve) -> None:
    base = await serve()
    assert (await probe(url=f"{base}/ok", body_regex=r"hel+o\s+vig")).status is Status.OK
    miss = await probe(url=f"{base}/ok", body_regex=r"^goodbye")
    assert miss.status is Status.CRITICAL
    assert miss.message.startswith("body does not match /^goodbye/; 200 OK in ")
    inverted = await probe(url=f"{base}/ok", body_regex="vigil", body_regex_invert=True)
    assert inverted.status is Status.CRITICAL
    assert inverted.message.startswith("body matches /vigil/")
    assert (await probe(url=f"{base}/ok", body_regex="error", body_regex_invert=True)).status is Status.OK


async def test_body_is_read_only_up_to_the_cap(serve: Serve) -> None:
    base = await serve()
    cut = await probe(url=f"{base}/big", body_regex="needle", max_body_bytes=1024)
    assert cut.status is Status.CRITICAL
    assert cut.details["body_truncated"] is True
    assert perf(cut)["size"] == 1024
    by_context = await probe(CheckContext(max_output_bytes=2048), url=f"{base}/big")
    assert perf(by_context)["size"] == 2048
    whole = await probe(url=f"{base}/big", body_regex="needle$", max_body_bytes=2_000_000)
    assert whole.status is Status.OK, whole.message
    assert whole.details["body_truncated"] is False


@pytest.mark.parametrize(("condition", "failure"), [
    ({"path": "$.status", "equals": "ok"}, None),
    ({"path": "status", "not_equals": "down"}, None),
    ({"path": "data.items[0].state", "equals": "up"}, None),
    ({"path": "$.data.items[-1].load", "lt": 0.9}, None),
    ({"path": "$.count", "ge": 3}, None),
    ({"path": "$.healthy", "equals": True}, None),
    ({"path": '$["a.b"]', "equals": "dotted"}, None),
    ({"path": "$.version", "matches": r"^1\.4\."}, None),
    ({"path": "$.missing", "exists": False}, None),
    ({"path": "$.status", "exists": True}, None),
    ({"path": "$.status", "equals": "degraded"}, 'json $.status is "ok", expected "degraded"'),
    ({"path": "$.count", "gt": 10}, "json $.count is 3, expected > 10"),
    ({"path": "$.count", "equals": "3"}, 'json $.count is 3, expected "3"'),
    ({"path": "$.healthy", "equals": 1}, "json $.healthy is true, expected 1"),
    ({"path": "$.status", "lt": 1}, 'json $.status is "ok", not a number'),
    ({"path": "data.items[3].state", "equals": "up"}, "json data.items[3].state not found"),
    ({"path": "$.data", "exists": False}, "json $.data is {"),
    ({"path": "$.nothing", "exists": True}, "json $.nothing not found"),
])
async def test_json_conditions(serve: Serve, condition: dict[str, Any], failure: str | None) -> None:
    base = await serve()
    result = await probe(url=f"{base}/json", json_conditions=[condition])
    if failure is None:
        assert result.status is Status.OK, result.message
    else:
        assert result.status is Status.CRITICAL
        assert result.message.startswith(failure), result.message


async def test_json_conditions_on_a_body_that_is_not_json(serve: Serve) -> None:
    base = await serve()
    result = await probe(url=f"{base}/ok", json_conditions=[{"path": "$.status", "equals": "ok"}])
    assert result.status is Status.CRITICAL
    assert result.message.startswith("body is not JSON: ")


async def test_all_failures_are_reported_worst_first(serve: Serve) -> None:
    base = await serve()
    result = await probe(url=f"{base}/json", body_regex="nope", response_time_warning="0s",
                         json_conditions=[{"path": "$.status", "equals": "ok"}, {"path": "$.count", "lt": 2}])
    assert result.status is Status.CRITICAL
    parts = result.message.split("; ")
    assert parts[:2] == ["body does not match /nope/", "json $.count is 3, expected < 2"]
    assert parts[2].startswith("200 OK in ") and parts[2].endswith("(slow)")


async def test_redirects_are_followed_and_counted(serve: Serve) -> None:
    base = await serve()
    result = await probe(url=f"{base}/redirect/3", body_regex="hello")
    assert result.status is Status.OK, result.message
    assert result.details["redirects"] == 3
    assert result.details["url"] == f"{base}/ok"
    loop = await probe(url=f"{base}/loop", max_redirects=5)
    assert loop.status is Status.CRITICAL
    assert loop.message.startswith("more than 5 redirects")


async def test_cookies_live_within_one_run(serve: Serve) -> None:
    base = await serve()
    cfg = HttpConfig.model_validate({"name": "web", "type": "http", "url": f"{base}/login", "body_regex": "welcome"})
    check = HttpCheck(cfg, CheckContext())
    try:
        for _ in range(2):
            result = await check.run()
            assert result.status is Status.OK, result.message
            assert result.details["redirects"] == 1
    finally:
        await check.close()


async def test_method_headers_and_body_are_sent(serve: Serve) -> None:
    base = await serve()
    result = await probe(
        url=f"{base}/echo", method="post", headers={"X-Probe": "vigil", "Content-Type": "application/json"},
        body='{"ping": 1}',
        json_conditions=[{"path": "$.method", "equals": "POST"}, {"path": "$.headers.X-Probe", "equals": "vigil"},
                         {"path": "$.body", "equals": '{"ping": 1}'}, {"path": "$.headers.User-Agent",
                                                                       "matches": "^Vigil/"}],
    )
    assert result.status is Status.OK, result.message


async def test_head_request(serve: Serve) -> None:
    base = await serve()
    result = await probe(url=f"{base}/ok", method="HEAD")
    assert result.status is Status.OK, result.message
    assert perf(result)["size"] == 0


# --- TLS -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> Issued:
    return make_ca()


async def test_certificate_expiring_in_5_days_is_critical(serve: Serve, ca: Issued, tmp_path: Path) -> None:
    base = await serve(server_context(make_leaf(ca, days=5), tmp_path))
    result = await probe(url=f"{base}/ok", tls_verify=False, cert_expiry_warning_days=21, cert_expiry_critical_days=7)
    assert result.status is Status.CRITICAL
    assert re.match(r"certificate expires in (4\.9|5\.0) days \(\d{4}-\d\d-\d\d\); 200 OK in ", result.message)
    assert 4.9 < perf(result)["cert_days_left"] <= 5
    cert = result.details["certificate"]
    assert cert["subject"] == "CN=localhost"
    assert cert["issuer"] == "CN=Vigil Test CA"
    assert cert["sans"] == ["localhost", "127.0.0.1"]


async def test_certificate_expiring_in_10_days_warns(serve: Serve, ca: Issued, tmp_path: Path) -> None:
    base = await serve(server_context(make_leaf(ca, days=10), tmp_path))
    result = await probe(url=f"{base}/ok", tls_verify=False, cert_expiry_warning_days=21, cert_expiry_critical_days=7)
    assert result.status is Status.WARNING, result.message
    assert result.message.startswith("certificate expires in 10.0 days")


async def test_certificate_is_read_for_empty_bodies_and_after_redirects(
    serve: Serve, ca: Issued, tmp_path: Path
) -> None:
    base = await serve(server_context(make_leaf(ca, days=5), tmp_path))
    head = await probe(url=f"{base}/ok", method="HEAD", tls_verify=False, cert_expiry_critical_days=7)
    assert head.status is Status.CRITICAL
    assert "certificate expires in" in head.message
    redirected = await probe(url=f"{base}/redirect/2", tls_verify=False, cert_expiry_critical_days=7)
    assert redirected.status is Status.CRITICAL
    assert redirected.details["redirects"] == 2
    assert "cert_days_left" in perf(redirected)


async def test_expired_and_not_yet_valid_certificates(serve: Serve, ca: Issued, tmp_path: Path) -> None:
    expired = await serve(server_context(make_leaf(ca, days=-2, valid_from_days=-30), tmp_path))
    graded = await probe(url=f"{expired}/ok", tls_verify=False, cert_expiry_critical_days=7)
    assert graded.status is Status.CRITICAL
    assert re.match(r"certificate expired 2\.0 days ago \(", graded.message)
    assert (await probe(url=f"{expired}/ok", tls_verify=False)).status is Status.OK  # no thresholds: reported only
    ca_file = write_pem(tmp_path / "ca.pem", ca)
    verified = await probe(url=f"{expired}/ok", ca_file=str(ca_file))
    assert verified.status is Status.CRITICAL
    assert verified.message.endswith(": certificate has expired")
    future = await serve(server_context(make_leaf(ca, days=60, valid_from_days=1), tmp_path))
    early = await probe(url=f"{future}/ok", tls_verify=False, cert_expiry_warning_days=21)
    assert early.status is Status.CRITICAL
    assert early.message.startswith("certificate not valid before ")


async def test_verified_with_ca_file(serve: Serve, ca: Issued, tmp_path: Path) -> None:
    base = await serve(server_context(make_leaf(ca, days=60), tmp_path))
    ca_file = write_pem(tmp_path / "ca.pem", ca)
    result = await probe(url=f"{base}/ok", ca_file=str(ca_file), cert_expiry_warning_days=21)
    assert result.status is Status.OK, result.message
    assert 59 < perf(result)["cert_days_left"] <= 60
    localhost = await probe(url=f"{base.replace('127.0.0.1', 'localhost')}/ok", ca_file=str(ca_file))
    assert localhost.status is Status.OK, localhost.message


async def test_ca_file_that_is_not_pem_is_unknown(tmp_path: Path) -> None:
    junk = tmp_path / "ca.pem"
    junk.write_text("not a certificate\n")
    result = await probe(url="https://127.0.0.1:1/", ca_file=str(junk))
    assert result.status is Status.UNKNOWN
    assert result.message.startswith(f"cannot load ca_file {junk}: ")


async def test_untrusted_certificate_fails_verification(serve: Serve, ca: Issued, tmp_path: Path) -> None:
    base = await serve(server_context(make_leaf(ca, days=60), tmp_path))
    result = await probe(url=f"{base}/ok")
    assert result.status is Status.CRITICAL
    port = base.rsplit(":", 1)[1]
    assert result.message.startswith(f"TLS verification failed for 127.0.0.1:{port}: ")
    assert "local issuer" in result.message


async def test_hostname_mismatch_fails_verification(serve: Serve, ca: Issued, tmp_path: Path) -> None:
    base = await serve(server_context(make_leaf(ca, ["other.example"], days=60), tmp_path))
    ca_file = write_pem(tmp_path / "ca.pem", ca)
    result = await probe(url=f"{base}/ok", ca_file=str(ca_file))
    assert result.status is Status.CRITICAL
    assert "TLS verification failed" in result.message
    assert "mismatch" in result.message.lower()
    unverified = await probe(url=f"{base}/ok", tls_verify=False)
    assert unverified.status is Status.OK


async def test_plain_http_to_a_tls_port(serve: Serve, ca: Issued, tmp_path: Path) -> None:
    base = await serve(server_context(make_leaf(ca), tmp_path))
    result = await probe(url=base.replace("https://", "http://") + "/ok")
    assert result.status is Status.CRITICAL
    assert result.message


# --- config ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("settings", "message"), [
    ({"url": "ftp://example.org/"}, "the scheme must be http or https"),
    ({"url": "http:///path"}, "has no host"),
    ({"url": "example.org/health"}, "the scheme must be http or https"),
    ({"url": "http://example.org:99999/"}, "is not a URL"),
    ({"url": "http://exa mple.org/"}, "white space"),
    ({"url": "http://h/", "method": "GET /x"}, "is not an HTTP method"),
    ({"url": "http://h/", "headers": {"Bad Header": "x"}}, "is not a header name"),
    ({"url": "http://h/", "body_regex": "(unclosed"}, "invalid regular expression"),
    ({"url": "http://h/", "body_regex_invert": True}, "body_regex_invert needs body_regex"),
    ({"url": "http://h/", "expected_status": ["2xx-3xx"]}, "is not a status code"),
    ({"url": "http://h/", "expected_status": ["299-200"]}, "within 100-599"),
    ({"url": "http://h/", "expected_status": [700]}, "within 100-599"),
    ({"url": "http://h/", "expected_status": []}, "at least one"),
    ({"url": "http://h/", "json_conditions": [{"path": "$.a..b", "equals": 1}]}, "cannot read"),
    ({"url": "http://h/", "json_conditions": [{"path": "$.a[x]", "equals": 1}]}, "cannot read"),
    ({"url": "http://h/", "json_conditions": [{"path": "$.a"}]}, "give exactly one of"),
    ({"url": "http://h/", "json_conditions": [{"path": "$.a", "lt": 1, "gt": 0}]}, "give exactly one of"),
    ({"url": "http://h/", "json_conditions": [{"path": "$.a", "matches": "("}]}, "invalid regular expression"),
    ({"url": "http://h/", "json_conditions": [{"path": "$.a", "exists": None}]}, "exists needs a value"),
    ({"url": "http://h/", "response_time_warning": "2s", "response_time_critical": "1s"}, "must not exceed"),
    ({"url": "http://h/", "cert_expiry_warning_days": 3, "cert_expiry_critical_days": 7}, "must not be below"),
    ({"url": "http://h/", "ca_file": "/nonexistent/ca.pem"}, "ca_file /nonexistent/ca.pem: No such file"),
    ({"url": "http://h/", "max_redirects": 0}, "greater than or equal to 1"),
])
def test_bad_config_is_rejected(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=re.escape(message)):
        HttpConfig.model_validate({"name": "web", "type": "http", **settings})


def test_json_paths() -> None:
    assert parse_json_path("$") == ()
    assert parse_json_path("$.a.b[0]") == ("a", "b", 0)
    assert parse_json_path("a.b") == ("a", "b")
    assert parse_json_path("[2].x") == (2, "x")
    assert parse_json_path("""$["a.b"]['c d'][-1]""") == ("a.b", "c d", -1)
    assert parse_json_path(r'$["q\"uote"]') == ('q"uote',)


def test_bad_url_in_a_config_file_names_the_line() -> None:
    text = textwrap.dedent("""\
        checks:
          - name: web
            type: http
            url: "ftp://example.org/"
          - name: api
            type: http
            url: http://127.0.0.1/
            json_conditions:
              - path: "$.a..b"
                equals: 1
        """)
    message = config_error(text)
    assert "/etc/vigil/vigil.yaml:4: checks[0].url:" in message
    assert "scheme must be http or https" in message
    assert re.search(r"/etc/vigil/vigil\.yaml:(9|10): checks\[1\]\.json_conditions\[0\]", message), message


def test_config_dump_validates_again() -> None:
    cfg = HttpConfig.model_validate({"name": "web", "type": "http", "url": "https://h/x", "expected_status": ["2xx"],
                                     "json_conditions": [{"path": "$.a", "equals": None}]})
    again = HttpConfig.model_validate(json.loads(cfg.model_dump_json()))
    assert again.status_ranges == [(200, 299)]
    assert again.json_conditions[0].operator == "equals"
