"""`http`: a URL answers as expected (Nagios check_http, blackbox_exporter's http prober).

Every run opens a new connection (the connector closes it after each response), so a server
that stops accepting or a certificate that changed is seen at once, as blackbox_exporter sees
it. What can be reused is: one ClientSession per check, and the SSL contexts, which are shared
by all checks with the same TLS settings (`agent.checks.tls.ssl_context`); loading the system
trust store per run or per check would dominate the cost of 500 checks.

The certificate whose expiry is graded is the one the server presented on the very connection
that carried the (final) response, read in binary form from the TLS object, so it is known with
`tls_verify: false` too. Its days to expiry are always reported; they change the status only when
`cert_expiry_warning_days`/`cert_expiry_critical_days` are set (then a certificate that is not yet
valid is critical as well).

JSON conditions use a small path syntax: an optional `$`, then `.key` (or a bare first key),
`[0]` (negative counts from the end) or `["key with.dots"]`; e.g. `$.status`,
`data.items[0].state`, `$["a.b"][-1]`. Each condition names one operator: `equals`,
`not_equals`, `exists` (true/false), `lt`, `le`, `gt`, `ge` (numbers) or `matches` (a regex
searched in the value, JSON-encoded unless it is a string).
"""

from __future__ import annotations

import codecs
import json
import re
import socket
import ssl
import time
from typing import Any, Literal

import aiohttp
from pydantic import (
    Field,
    PrivateAttr,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)
from yarl import URL

from agent import __version__
from agent.checks import tls
from agent.checks.base import (
    Check,
    CheckConfig,
    CheckContext,
    CheckResult,
    Perfdata,
    Status,
    grade,
    os_reason,
    register,
    thresholds_ordered,
    worst,
)
from agent.config.durations import Duration
from agent.config.section import Pattern, Section

StatusRange = tuple[int, int]
PathStep = str | int

_STATUS_ITEM = re.compile(r"(\d{3})(?:-(\d{3}))?|([1-5])xx")
_METHOD = re.compile(r"[A-Z][A-Z0-9_-]*")
_PATH_STEP = re.compile(
    r"""\.([^.\[\]\s]+)|\[\s*(-?\d+)\s*\]|\[\s*"((?:[^"\\]|\\.)*)"\s*\]|\[\s*'([^']*)'\s*\]"""
)
_JSON_OPS = ("equals", "not_equals", "exists", "lt", "le", "gt", "ge", "matches")
_MISSING = object()


def parse_status_ranges(items: list[int | str]) -> list[StatusRange]:
    """`200`, `"200-299"` or `"2xx"` into inclusive ranges; ValueError says which item is wrong."""
    ranges: list[StatusRange] = []
    for item in items:
        if isinstance(item, int):
            low = high = item
        else:
            m = _STATUS_ITEM.fullmatch(item.strip())
            if m is None:
                raise ValueError(f"expected_status: {item!r} is not a status code, a range like 200-299, or 2xx")
            if m.group(3):
                low, high = int(m.group(3)) * 100, int(m.group(3)) * 100 + 99
            else:
                low = int(m.group(1))
                high = int(m.group(2)) if m.group(2) else low
        if not 100 <= low <= high <= 599:
            raise ValueError(f"expected_status: {item!r} is not within 100-599 (low end first)")
        ranges.append((low, high))
    if not ranges:
        raise ValueError("expected_status: give at least one code or range")
    return ranges


def parse_json_path(text: str) -> tuple[PathStep, ...]:
    """`$.a.b[0]["c.d"]` into ("a", "b", 0, "c.d"); ValueError points at the first bad part."""
    rest = text.strip()
    if rest.startswith("$"):
        rest = rest[1:]
    elif rest and not rest.startswith((".", "[")):
        rest = "." + rest
    steps: list[PathStep] = []
    pos = 0
    while pos < len(rest):
        m = _PATH_STEP.match(rest, pos)
        if m is None:
            raise ValueError(
                f"JSON path {text!r}: cannot read {rest[pos:]!r}"
                " (use .key, [0] or [\"key\"], e.g. $.data.items[0].state)"
            )
        key, index, quoted, single = m.groups()
        if index is not None:
            steps.append(int(index))
        elif quoted is not None:
            steps.append(json.loads(f'"{quoted}"'))
        else:
            steps.append(key if key is not None else single)
        pos = m.end()
    return tuple(steps)


def resolve_json_path(doc: Any, steps: tuple[PathStep, ...]) -> Any:
    """The value at `steps`, or `_MISSING` when a key or index is absent (or the type differs)."""
    value = doc
    for step in steps:
        if isinstance(step, int):
            if not isinstance(value, list) or not -len(value) <= step < len(value):
                return _MISSING
            value = value[step]
        else:
            if not isinstance(value, dict) or step not in value:
                return _MISSING
            value = value[step]
    return value


def _same(found: Any, expected: Any) -> bool:
    """JSON equality: `true` is not `1`, `1` is `1.0`."""
    if isinstance(found, bool) or isinstance(expected, bool):
        return found is expected
    return bool(found == expected)


def _shown(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class JsonCondition(Section):
    """One condition on the JSON body; exactly one operator besides `path`."""

    path: str = Field(description='where the value is: $.status, data.items[0].state, $["a.b"]')
    equals: Any = None
    not_equals: Any = None
    exists: bool | None = None
    lt: float | None = None
    le: float | None = None
    gt: float | None = None
    ge: float | None = None
    matches: Pattern | None = Field(None, description="regex searched in the value")

    _steps: tuple[PathStep, ...] = PrivateAttr(default=())

    @model_validator(mode="after")
    def _one_operator(self) -> JsonCondition:
        self._steps = parse_json_path(self.path)
        given = [op for op in _JSON_OPS if op in self.model_fields_set]
        if len(given) != 1:
            raise ValueError(f"JSON condition on {self.path!r}: give exactly one of {', '.join(_JSON_OPS)}")
        if given[0] not in ("equals", "not_equals") and getattr(self, given[0]) is None:
            raise ValueError(f"JSON condition on {self.path!r}: {given[0]} needs a value")
        return self

    @model_serializer(mode="wrap")
    def _only_the_operator(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Dump the one operator given, so a dumped config validates again (`equals: null` is a value)."""
        data: dict[str, Any] = handler(self)
        return {k: v for k, v in data.items() if k not in _JSON_OPS or k in self.model_fields_set}

    @property
    def operator(self) -> str:
        return next(op for op in _JSON_OPS if op in self.model_fields_set)

    def failure(self, doc: Any) -> str | None:
        """None when the condition holds, else what was found instead."""
        found = resolve_json_path(doc, self._steps)
        op = self.operator
        where = f"json {self.path}"
        if op == "exists":
            if (found is not _MISSING) == self.exists:
                return None
            return f"{where} not found" if self.exists else f"{where} is {_shown(found)}, expected it absent"
        if found is _MISSING:
            return f"{where} not found"
        if op == "equals":
            return None if _same(found, self.equals) else f"{where} is {_shown(found)}, expected {_shown(self.equals)}"
        if op == "not_equals":
            return None if not _same(found, self.not_equals) else f"{where} is {_shown(found)}, expected another value"
        if op == "matches":
            assert self.matches is not None
            text = found if isinstance(found, str) else json.dumps(found)
            return None if re.search(self.matches, text) else f"{where} is {_shown(found)}, expected /{self.matches}/"
        if isinstance(found, bool) or not isinstance(found, int | float):
            return f"{where} is {_shown(found)}, not a number"
        limit = getattr(self, op)
        holds = {"lt": found < limit, "le": found <= limit, "gt": found > limit, "ge": found >= limit}[op]
        symbol = {"lt": "<", "le": "<=", "gt": ">", "ge": ">="}[op]
        return None if holds else f"{where} is {_shown(found)}, expected {symbol} {limit:g}"


class HttpConfig(CheckConfig):
    type: Literal["http"]
    url: str = Field(description="http:// or https:// URL")
    method: str = Field("GET", description="GET, HEAD, POST, PUT, ... (any upper-case token)")
    headers: dict[str, str] = Field(default_factory=dict, description="request headers (User-Agent defaults to Vigil)")
    body: str | None = Field(None, description="request body, sent as UTF-8")
    expected_status: list[int | str] = Field(
        default_factory=lambda: ["200-399"], description="codes, ranges (200-299) or classes (2xx) counted as up"
    )
    body_regex: Pattern | None = Field(None, description="regex the body must match (searched, Python syntax)")
    body_regex_invert: bool = Field(False, description="the body must NOT match body_regex")
    json_conditions: list[JsonCondition] = Field(
        default_factory=list, description="conditions on the JSON body; all must hold"
    )
    tls_verify: bool = Field(True, description="verify the server's certificate chain and name")
    ca_file: str | None = Field(None, description="PEM file of CAs to trust instead of the system's")
    follow_redirects: bool = True
    max_redirects: int = Field(10, ge=1, le=100)
    response_time_warning: Duration | None = None
    response_time_critical: Duration | None = None
    cert_expiry_warning_days: float | None = Field(None, ge=0, description="https: days to expiry that warn")
    cert_expiry_critical_days: float | None = Field(None, ge=0, description="https: days to expiry that are critical")
    max_body_bytes: int | None = Field(
        None, ge=1, le=64 * 1024 * 1024,
        description="body bytes read for regex/JSON (more is not read); default: the check runner's max_output_bytes",
    )

    _status_ranges: list[StatusRange] = PrivateAttr(default_factory=list)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        value = value.strip()
        try:
            url = URL(value)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a URL: {exc}") from None
        if url.scheme not in ("http", "https"):
            raise ValueError(f"{value!r}: the scheme must be http or https")
        if not url.host:
            raise ValueError(f"{value!r} has no host")
        if any(ch.isspace() for ch in value):
            raise ValueError(f"{value!r} contains white space")
        return value

    @field_validator("method", mode="before")
    @classmethod
    def _method(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.strip().upper()
            if not _METHOD.fullmatch(value):
                raise ValueError(f"{value!r} is not an HTTP method")
        return value

    @field_validator("headers")
    @classmethod
    def _headers(cls, headers: dict[str, str]) -> dict[str, str]:
        for name, value in headers.items():
            if not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", name):
                raise ValueError(f"{name!r} is not a header name")
            if "\r" in value or "\n" in value:
                raise ValueError(f"header {name}: value contains a line break")
        return headers

    @field_validator("ca_file")
    @classmethod
    def _ca_file(cls, value: str | None) -> str | None:
        return tls.readable_file(value, "ca_file")

    @model_validator(mode="after")
    def _consistent(self) -> HttpConfig:
        self._status_ranges = parse_status_ranges(self.expected_status)
        thresholds_ordered(self.response_time_warning, self.response_time_critical, "response_time")
        thresholds_ordered(
            self.cert_expiry_warning_days, self.cert_expiry_critical_days, "cert_expiry_days", below=True
        )
        if self.body_regex_invert and self.body_regex is None:
            raise ValueError("body_regex_invert needs body_regex")
        return self

    @property
    def status_ranges(self) -> list[StatusRange]:
        return self._status_ranges


def _ranges_text(ranges: list[StatusRange]) -> str:
    return ", ".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in ranges)


class _PeerCertResponse(aiohttp.ClientResponse):
    """Keeps the DER certificate of the connection the response came on: aiohttp releases the
    connection as soon as an empty body (HEAD, 204, most redirects) is complete, so it has to be
    taken when the response starts."""

    peer_cert: bytes | None = None

    async def start(self, connection: aiohttp.connector.Connection) -> aiohttp.ClientResponse:
        transport = connection.transport
        ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
        if ssl_object is not None:
            self.peer_cert = ssl_object.getpeercert(binary_form=True)
        return await super().start(connection)


@register
class HttpCheck(Check):
    type = "http"
    Config = HttpConfig

    def __init__(self, config: CheckConfig, ctx: CheckContext) -> None:
        assert isinstance(config, HttpConfig)
        super().__init__(config, ctx)
        self._session: aiohttp.ClientSession | None = None
        self._body = config.body.encode() if config.body is not None else None
        self._regex = re.compile(config.body_regex) if config.body_regex is not None else None
        self._cap = config.max_body_bytes or ctx.max_output_bytes
        # the last DER seen, its parse and its details (days_left aside): parsed again only when it changes
        self._cert: tuple[bytes, tls.CertFacts, dict[str, Any]] | None = None

    def _session_for_run(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            cfg = self.config
            assert isinstance(cfg, HttpConfig)
            connector = aiohttp.TCPConnector(force_close=True, use_dns_cache=False, limit=0)
            self._session = aiohttp.ClientSession(
                connector=connector,
                response_class=_PeerCertResponse,
                cookie_jar=aiohttp.CookieJar(unsafe=True),
                timeout=aiohttp.ClientTimeout(total=cfg.timeout),
                headers={"User-Agent": f"Vigil/{__version__}"},
                trust_env=False,
            )
        self._session.cookie_jar.clear()  # cookies live for one run's redirects, as in a fresh client
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _cert_facts(self, der: bytes, now: float) -> tuple[tls.CertFacts, dict[str, Any]]:
        if self._cert is None or self._cert[0] != der:
            cert = tls.facts(tls.load_der(der))
            self._cert = (der, cert, cert.as_details(now))
        cert, details = self._cert[1], self._cert[2]
        return cert, {**details, "days_left": round(cert.days_left(now), 3)}

    async def run(self) -> CheckResult:
        cfg = self.config
        assert isinstance(cfg, HttpConfig)
        try:
            ssl_ctx = tls.ssl_context(cfg.tls_verify, cfg.ca_file)
        except (OSError, ssl.SSLError) as exc:
            return CheckResult(Status.UNKNOWN, f"cannot load ca_file {cfg.ca_file}: {tls.verify_reason(exc)}")
        session = self._session_for_run()
        started = time.perf_counter()
        try:
            async with session.request(
                cfg.method, cfg.url, headers=cfg.headers, data=self._body, ssl=ssl_ctx,
                allow_redirects=cfg.follow_redirects, max_redirects=cfg.max_redirects,
            ) as resp:
                body, truncated = await _read_capped(resp, self._cap)
                elapsed = time.perf_counter() - started
                return self._judge(resp, body, truncated, elapsed)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            return CheckResult(Status.CRITICAL, _failure_text(exc, cfg), details={"error": type(exc).__name__})

    def _judge(self, resp: aiohttp.ClientResponse, body: bytes, truncated: bool, elapsed: float) -> CheckResult:
        cfg = self.config
        assert isinstance(cfg, HttpConfig)
        code = resp.status
        reason = resp.reason or ""
        parts: list[tuple[Status, str]] = []
        answer = f"{code} {reason}".rstrip() + f" in {elapsed * 1000:.1f} ms"
        if any(lo <= code <= hi for lo, hi in cfg.status_ranges):
            time_status = grade(elapsed, cfg.response_time_warning, cfg.response_time_critical)
            parts.append((time_status, answer + (" (slow)" if time_status is not Status.OK else "")))
        else:
            parts.append((Status.CRITICAL, f"expected status {_ranges_text(cfg.status_ranges)}, got {answer}"))
        if self._regex is not None or cfg.json_conditions:
            text = body.decode(_charset(resp), "replace")
            if self._regex is not None and (self._regex.search(text) is None) != cfg.body_regex_invert:
                verb = "matches" if cfg.body_regex_invert else "does not match"
                parts.append((Status.CRITICAL, f"body {verb} /{cfg.body_regex}/"))
            if cfg.json_conditions:
                parts.extend((Status.CRITICAL, p) for p in _json_failures(text, cfg.json_conditions, truncated))
        final = resp.url.with_user(None) if resp.url.user else resp.url  # no credentials in results
        details: dict[str, Any] = {
            "status_code": code, "reason": reason, "url": str(final), "redirects": len(resp.history),
            "size": len(body), "body_truncated": truncated, "content_type": resp.headers.get("Content-Type"),
        }
        perf = [Perfdata("time", elapsed, "s", min=0.0), Perfdata("size", float(len(body)), "B", min=0.0),
                Perfdata("status_code", float(code))]
        der = getattr(resp, "peer_cert", None)
        if der:
            now = self.ctx.now() if self.ctx.now is not None else time.time()
            try:
                cert, cert_details = self._cert_facts(der, now)
            except ValueError as exc:
                parts.append((Status.CRITICAL, f"cannot parse the server's certificate: {exc}"))
            else:
                days = cert.days_left(now)
                graded = cfg.cert_expiry_warning_days is not None or cfg.cert_expiry_critical_days is not None
                cert_status = grade(days, cfg.cert_expiry_warning_days, cfg.cert_expiry_critical_days, below=True)
                if graded and now < cert.not_before:
                    cert_status = Status.CRITICAL
                if cert_status is not Status.OK:
                    parts.append((cert_status, f"certificate {tls.expiry_phrase(cert, now)}"))
                perf.append(Perfdata("cert_days_left", round(days, 3)))
                details["certificate"] = cert_details
        status = worst(*(s for s, _ in parts))
        order = {Status.CRITICAL: 0, Status.WARNING: 1, Status.UNKNOWN: 2, Status.OK: 3}
        shown = [text for _, text in sorted(parts, key=lambda p: order[p[0]])]
        return CheckResult(status, "; ".join(shown), perf, details)


async def _read_capped(resp: aiohttp.ClientResponse, cap: int) -> tuple[bytes, bool]:
    """At most `cap` bytes of the body; the rest is never read (the connection is closed anyway)."""
    chunks: list[bytes] = []
    size = 0
    while size <= cap:
        chunk = await resp.content.read(cap + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    body = b"".join(chunks)
    return body[:cap], size > cap


def _charset(resp: aiohttp.ClientResponse) -> str:
    charset = resp.charset or "utf-8"
    try:
        codecs.lookup(charset)
    except LookupError:
        return "utf-8"
    return charset


def _json_failures(text: str, conditions: list[JsonCondition], truncated: bool) -> list[str]:
    try:
        doc = json.loads(text)
    except ValueError as exc:
        cut = " (body cut at max_body_bytes)" if truncated else ""
        return [f"body is not JSON: {exc}{cut}"]
    return [f for f in (c.failure(doc) for c in conditions) if f is not None]


def _failure_text(exc: BaseException, cfg: HttpConfig) -> str:
    """One line saying which step failed, in the words an operator searches for."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return f"TLS verification failed for {exc.host}:{exc.port}: {tls.verify_reason(exc.certificate_error)}"
    if isinstance(exc, aiohttp.ClientSSLError):
        return f"TLS handshake with {exc.host}:{exc.port} failed: {tls.verify_reason(exc.os_error)}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        if isinstance(exc.os_error, socket.gaierror):
            return f"cannot resolve {exc.host}: {exc.os_error.strerror or exc.os_error}"
        return f"cannot connect to {exc.host}:{exc.port}: {os_reason(exc.os_error)}"
    if isinstance(exc, aiohttp.TooManyRedirects):
        return f"more than {cfg.max_redirects} redirects (last to {exc.request_info.real_url})"
    if isinstance(exc, TimeoutError):
        return f"no complete answer within {cfg.timeout:g}s"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the server closed the connection without a complete answer"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return f"broken response body: {exc}"
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"invalid HTTP response: {exc.message}"
    if isinstance(exc, aiohttp.InvalidURL):
        return f"bad redirect target: {exc}"
    if isinstance(exc, OSError):
        return f"request failed: {os_reason(exc)}"
    return f"request failed: {exc or type(exc).__name__}"
