"""What the receivers share: Alertmanager's time and text formats, endpoint checks for their settings,
TLS contexts, one HTTP sender, and keeping secrets out of error texts.

An error text of a receiver ends up in the log, in the outbox's `last_error` and in the API, so every
DeliveryError is built here from parts that cannot hold a secret (an HTTP URL is shown as its scheme,
host and port only: the path of a Slack-style webhook is its token), and scrubbed of the receiver's
secret values on top of that.
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
import os
import re
import ssl
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any

import aiohttp
from pydantic import AfterValidator, SecretStr
from yarl import URL

from agent import __version__
from agent.notify.base import AlertItem, DeliveryError, Notification

ZERO_TIME = "0001-01-01T00:00:00Z"
"""Go's zero time: the `endsAt` Alertmanager writes for an alert whose end is not known."""
USER_AGENT = f"Vigil/{__version__}"
ERROR_BODY_BYTES = 512
"""Of an HTTP error answer, this much is read into the error text (the rest is not read)."""
OK_BODY_BYTES = 64 * 1024
"""Of a success answer, this much is read so the connection can be reused; a longer one is closed."""


def rfc3339(timestamp: float | None) -> str:
    """Go's time.Time in JSON (RFC 3339, UTC, fraction without trailing zeros), as Alertmanager writes
    times; None is Go's zero time."""
    if timestamp is None:
        return ZERO_TIME
    moment = datetime.fromtimestamp(timestamp, UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    return text + "Z"


def json_number(value: float | None) -> float | str | None:
    """A sample value for JSON, which has no NaN or infinities: those as Prometheus's API writes them."""
    if value is None or math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")


# --- text ---------------------------------------------------------------------------------------------

def alert_target(alert: AlertItem, hostname: str) -> str:
    """Where an alert is about: its `instance`, else `host`/`hostname` labels, else this host."""
    labels = alert.labels
    return labels.get("instance") or labels.get("host") or labels.get("hostname") or hostname


def alert_summary(alert: AlertItem) -> str:
    annotations = alert.annotations
    return annotations.get("summary") or annotations.get("description") or annotations.get("message") or ""


def alert_line(alert: AlertItem, hostname: str) -> str:
    """One readable line: `FIRING HighLoad on web1: load is 7.2`."""
    name = alert.labels.get("alertname", "(no alertname)")
    line = f"{alert.status.upper()} {name} on {alert_target(alert, hostname)}"
    summary = alert_summary(alert)
    return f"{line}: {summary}" if summary else line


def subject_line(notification: Notification) -> str:
    """Alertmanager's default title, `[FIRING:2] HighLoad (web1 critical)`: status (with the count of
    firing alerts), the group's label values, then the values of the other labels all alerts share,
    in label-name order. A notification without group labels (Alertmanager receivers, tests) leads with
    its alert names instead. One line: label values with line breaks are flattened."""
    firing = sum(1 for a in notification.alerts if a.status == "firing")
    status = f"FIRING:{firing}" if notification.status == "firing" else "RESOLVED"
    group = notification.group_labels
    head = [group[name] for name in sorted(group)]
    shown = set(group)
    if not head:
        names = sorted({a.labels.get("alertname", "") for a in notification.alerts} - {""})
        head, shown = names, {"alertname"}
    rest = [value for name, value in sorted(notification.common_labels.items()) if name not in shown and value]
    text = f"[{status}] {' '.join(head)}".rstrip()
    if rest:
        text += f" ({' '.join(rest)})"
    return " ".join(text.split())


def event_line(body: Mapping[str, Any], hostname: str) -> str:
    """A bus event as one line: `[web1] alert_state_changed: alertname=HighLoad, state=firing`."""
    data = body.get("data") or {}
    parts = [f"{k}={v}" for k, v in data.items() if isinstance(v, str | int | float | bool) or v is None]
    text = f"[{hostname}] {body.get('type', 'event')}"
    return f"{text}: {', '.join(parts)}" if parts else text


# --- secrets ------------------------------------------------------------------------------------------

class Scrubber:
    """Replaces each secret value (and other text that must not be shown) in an error text."""

    def __init__(self, secrets: Iterable[SecretStr | str | None] = (), replacements: Mapping[str, str] | None = None):
        pairs: dict[str, str] = dict(replacements or {})
        for secret in secrets:
            value = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
            if value:
                pairs[value] = "***"
        self._pairs = sorted(pairs.items(), key=lambda p: len(p[0]), reverse=True)

    def __call__(self, text: str) -> str:
        for value, replacement in self._pairs:
            if value in text:
                text = text.replace(value, replacement)
        return text


def shown_url(url: str | URL) -> str:
    """The part of a URL that may be shown: `https://hooks.example.com:443`. The path, query and
    credentials are left out, since any of them may be the secret (a Slack webhook's path is)."""
    parsed = url if isinstance(url, URL) else URL(url)
    return f"{parsed.scheme}://{parsed.host}:{parsed.port}" if parsed.host else "(url)"


# --- settings -----------------------------------------------------------------------------------------

def _check_http_url(value: str) -> str:
    """Errors name what is wrong without echoing the URL: it may hold a token."""
    value = value.strip()
    if any(ch.isspace() for ch in value):
        raise ValueError("the URL contains white space")
    try:
        url = URL(value)
        port = url.port
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not a valid URL ({exc})") from None
    if url.scheme not in ("http", "https"):
        raise ValueError(f"the URL must start with http:// or https:// (scheme {url.scheme or 'missing'!r})")
    if not url.host:
        raise ValueError("the URL has no host")
    if port is not None and not 0 < port < 65536:
        raise ValueError(f"port {port} is out of range")
    return value


HttpUrl = Annotated[str, AfterValidator(_check_http_url)]

_HOST_PORT = re.compile(r"\[(?P<ip6>[0-9A-Fa-f:.%a-zA-Z]+)\]:(?P<port6>\d+)|(?P<host>[^\s:\[\]/@]+):(?P<port>\d+)")


def split_host_port(value: str) -> tuple[str, int]:
    """`host:port` or `[ipv6]:port` (Go's net.SplitHostPort, as Alertmanager reads `smarthost`)."""
    m = _HOST_PORT.fullmatch(value.strip())
    if m is None:
        raise ValueError(f"{value!r} is not host:port (e.g. mail.example.com:587 or [2001:db8::1]:25)")
    host = m.group("ip6") or m.group("host")
    port = int(m.group("port6") or m.group("port"))
    if m.group("ip6"):
        try:
            ipaddress.IPv6Address(host.split("%")[0])
        except ValueError:
            raise ValueError(f"{value!r}: {host!r} in brackets is not an IPv6 address") from None
    if not 0 < port < 65536:
        raise ValueError(f"{value!r}: port {port} is out of range (1-65535)")
    return host, port


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def _check_ca_file(value: str) -> str:
    """A CA file that cannot be opened is a config error with file:line, not a failed delivery later."""
    if not os.path.isabs(value):
        raise ValueError(f"ca_file {value!r} is not an absolute path")
    try:
        with open(value, "rb"):
            return value
    except OSError as exc:
        raise ValueError(f"ca_file {value}: {exc.strerror or exc}") from None


CaFile = Annotated[str, AfterValidator(_check_ca_file)]


def client_ssl_context(verify: bool, ca_file: str | None) -> ssl.SSLContext:
    """Blocking (it reads the trust store): call it in a thread. Raises OSError/ssl.SSLError."""
    if not verify:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    return ssl.create_default_context(cafile=ca_file)


def tls_reason(exc: BaseException) -> str:
    """OpenSSL's words for a failed verification ("certificate has expired"), else the error text."""
    message = getattr(exc, "verify_message", None)
    if message:
        return str(message)
    reason = getattr(exc, "reason", None)
    if reason:
        return str(reason).replace("_", " ").lower()
    return str(exc) or type(exc).__name__


def os_reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def connect_reason(exc: OSError) -> str:
    """A connection that failed in the TLS handshake or at the socket, in the words every receiver's
    errors use, so an operator sees the same text from a delivery and from a connection test."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate not accepted: {tls_reason(exc)}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {tls_reason(exc)}"
    return f"cannot connect: {os_reason(exc)}"


# --- HTTP ---------------------------------------------------------------------------------------------

def status_retryable(status: int) -> bool:
    """408, 429 and 5xx may pass later. So may 401 and 403: credentials are fixed in the config, and
    messages are held (within the outbox's limits) until then rather than dropped. Any other refusal
    concerns the message itself and will be the same next time."""
    return status in (401, 403, 408, 429) or status >= 500


class HttpSender:
    """One aiohttp session per receiver, so connections are kept alive between deliveries (a webhook
    taking a thousand notifications a second must not pay a TCP and TLS handshake each time). The
    session is made on first use, inside the running loop, and the SSL context with it in a thread."""

    def __init__(self, *, timeout: float, tls_verify: bool, ca_file: str | None, scrub: Scrubber):
        self.timeout = timeout
        self.tls_verify = tls_verify
        self.ca_file = ca_file
        self.scrub = scrub
        self._session: aiohttp.ClientSession | None = None

    async def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            try:
                ctx = await asyncio.to_thread(client_ssl_context, self.tls_verify, self.ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise DeliveryError(f"cannot load ca_file {self.ca_file}: {tls_reason(exc)}") from None
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=ctx), headers={"User-Agent": USER_AGENT},
            )
        return self._session

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> None:
        """One attempt, cut after `timeout`; raises DeliveryError. Redirects are not followed: a POST
        that is redirected is a URL to fix, not a message to send elsewhere. A kept-alive connection that
        the server closed just as it was reused is replaced once, within the attempt."""
        where = shown_url(url)
        try:
            async with asyncio.timeout(self.timeout):
                session = await self._open()
                try:
                    answer = await self._exchange(session, url, body, headers)
                except aiohttp.ServerDisconnectedError:
                    answer = await self._exchange(session, url, body, headers)
        except TimeoutError:
            raise DeliveryError(f"{where}: no answer within {self.timeout:g}s") from None
        except aiohttp.ClientError as exc:
            raise DeliveryError(self.scrub(f"{where}: {describe_client_error(exc, url)}")) from None
        if answer is None:
            return
        status, reason, text = answer
        detail = " ".join(text.split())[:200]
        message = f"{where} answered {status} {reason}".rstrip()
        if 300 <= status < 400:
            message += " (redirects are not followed: point the url at the final address)"
        elif detail:
            message += f": {detail}"
        raise DeliveryError(self.scrub(message), retryable=status_retryable(status))

    @staticmethod
    async def _exchange(session: aiohttp.ClientSession, url: str, body: bytes,
                        headers: Mapping[str, str]) -> tuple[int, str, str] | None:
        """None for a 2xx answer, else its status, reason and the start of its body."""
        async with session.post(url, data=body, headers=dict(headers), allow_redirects=False) as resp:
            if 200 <= resp.status < 300:
                await resp.content.read(OK_BODY_BYTES)
                return None
            text = (await resp.content.read(ERROR_BODY_BYTES)).decode("utf-8", "replace")
            return resp.status, resp.reason or "", text

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def describe_client_error(exc: aiohttp.ClientError, url: str) -> str:
    """An aiohttp error in words that do not repeat the URL's path or query."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return f"certificate not accepted: {tls_reason(exc.certificate_error)}"
    if isinstance(exc, aiohttp.ClientSSLError):
        return f"TLS error: {tls_reason(exc.os_error)}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect: {os_reason(exc.os_error)}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the server closed the connection without an answer"
    text = str(exc)
    for form in {url, str(URL(url)), URL(url).path_qs}:
        if form and form != "/":
            text = text.replace(form, "…")
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
