"""Connection tests of receiver settings (`POST /api/v1/config/test`): would Vigil reach each receiver
with the proposed settings?

Nothing is delivered and no running receiver is touched: each test opens its own connection with the
proposed settings and closes it.
- mqtt: a full MQTT CONNECT with the credentials and TLS settings, under a client id of its own (the
  broker would otherwise cut the running receiver's session, which uses the configured one), without a
  Last Will, then a clean DISCONNECT: nothing is published.
- email: the SMTP session up to authentication (EHLO, STARTTLS or TLS, AUTH), then QUIT: no mail.
- alertmanager: `GET /-/ready` of its base URL, with the configured authorization.
- webhook: a TCP connection (and the TLS handshake for https) to the URL's host and port: a request
  would be a notification, so none is sent.
Every test is bounded by `seconds` (and the receiver's own, if shorter). Error texts never hold the
password, token or the URL's path (which may itself be the secret).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import math
import secrets
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import aiohttp
import aiomqtt
from pydantic import SecretStr
from yarl import URL

from agent.notify.alertmanager import AlertmanagerConfig
from agent.notify.base import ReceiverConfig
from agent.notify.common import (
    USER_AGENT,
    Scrubber,
    client_ssl_context,
    connect_reason,
    describe_client_error,
    shown_url,
    split_host_port,
    tls_reason,
)
from agent.notify.email import EmailConfig, SmtpRefused, smtp_session
from agent.notify.mqtt import MqttConfig
from agent.notify.webhook import WebhookConfig

MAX_CONCURRENT = 8
_background: set[asyncio.Task[Any]] = set()


@dataclass(frozen=True)
class ProbeResult:
    receiver: str
    type: str
    target: str
    status: str  # ok, error, skipped
    error: str | None
    duration_ms: float

    def as_dict(self) -> dict[str, Any]:
        return {"receiver": self.receiver, "type": self.type, "target": self.target, "status": self.status,
                "error": self.error, "duration_ms": self.duration_ms}


class _Failed(Exception):
    """What went wrong, in words safe to show."""


async def probe_all(configs: Iterable[ReceiverConfig], hostname: str, seconds: float) -> list[ProbeResult]:
    """Every receiver at once (at most MAX_CONCURRENT connections open), in the order given."""
    gate = asyncio.Semaphore(MAX_CONCURRENT)

    async def one(config: ReceiverConfig) -> ProbeResult:
        async with gate:
            return await probe(config, hostname, seconds)

    return list(await asyncio.gather(*(one(c) for c in configs)))


async def probe(config: ReceiverConfig, hostname: str, seconds: float) -> ProbeResult:
    limit = min(seconds, config.timeout)
    started = time.monotonic()
    target = _target(config)
    test = _TESTS.get(type(config))
    if test is None:
        return ProbeResult(config.name, config.type, target, "skipped", "no connection test for this type", 0.0)
    scrub = Scrubber(_secrets(config))
    try:
        async with asyncio.timeout(limit):
            await test(config, hostname, limit)
    except TimeoutError:
        error: str | None = f"{target}: no answer within {limit:g}s"
    except _Failed as exc:
        error = scrub(f"{target}: {exc}")
    else:
        error = None
    duration = round((time.monotonic() - started) * 1000, 1)
    return ProbeResult(config.name, config.type, target, "error" if error else "ok", error, duration)


def _target(config: ReceiverConfig) -> str:
    if isinstance(config, MqttConfig):
        return f"{config.host}:{config.port or (8883 if config.tls else 1883)}"
    if isinstance(config, EmailConfig):
        return config.smarthost
    url = getattr(config, "url", None)
    return shown_url(str(url)) if url else config.name


def _secrets(config: ReceiverConfig) -> list[SecretStr | str | None]:
    found: list[SecretStr | str | None] = []
    for value in config.__dict__.values():
        if isinstance(value, SecretStr):
            found.append(value)
        elif hasattr(value, "password") and isinstance(value.password, SecretStr):
            found.append(value.password)
    return found


async def _ssl(verify: bool, ca_file: str | None) -> ssl.SSLContext:
    try:
        return await asyncio.to_thread(client_ssl_context, verify, ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise _Failed(f"cannot load ca_file {ca_file}: {tls_reason(exc)}") from None


async def _mqtt(config: ReceiverConfig, hostname: str, seconds: float) -> None:
    assert isinstance(config, MqttConfig)
    port = config.port or (8883 if config.tls else 1883)
    context = await _ssl(config.tls_verify, config.ca_file) if config.tls else None
    base = config.client_id or f"vigil-{hostname or 'localhost'}"
    client = aiomqtt.Client(
        config.host, port, username=config.username,
        password=config.password.get_secret_value() if config.password is not None else None,
        identifier=f"{base[:200]}-test-{secrets.token_hex(4)}", clean_session=True,
        keepalive=max(5, math.ceil(seconds) * 2), tls_context=context, timeout=seconds,
    )
    # aiomqtt connects in an executor thread that a cancellation does not stop: a connection that comes
    # up after the test gave up is closed then.
    entering = asyncio.ensure_future(client.__aenter__())
    try:
        await asyncio.shield(entering)
    except BaseException as exc:
        entering.add_done_callback(lambda done: _late_close(done, client))
        if isinstance(exc, aiomqtt.MqttError | OSError | ssl.SSLError):
            raise _Failed(_mqtt_reason(exc)) from None
        raise
    with contextlib.suppress(aiomqtt.MqttError, OSError):
        await client.__aexit__(None, None, None)


def _late_close(entering: asyncio.Future[Any], client: aiomqtt.Client) -> None:
    if entering.cancelled() or entering.exception() is not None:
        return
    task = asyncio.get_running_loop().create_task(_quietly(client.__aexit__(None, None, None)))
    _background.add(task)
    task.add_done_callback(_background.discard)


async def _quietly(step: Any) -> None:
    with contextlib.suppress(Exception):
        async with asyncio.timeout(5):
            await step


def _mqtt_reason(exc: BaseException) -> str:
    if isinstance(exc, aiomqtt.MqttCodeError) and exc.rc is not None:
        return f"the broker refused the connection: {exc.rc}"
    if isinstance(exc, OSError):
        return connect_reason(exc)
    return str(exc) or type(exc).__name__


async def _email(config: ReceiverConfig, hostname: str, seconds: float) -> None:
    assert isinstance(config, EmailConfig)
    context = await _ssl(config.tls_verify, config.ca_file) if config.tls != "none" else None
    await asyncio.to_thread(_smtp_session, config, hostname, context, time.monotonic() + seconds)


def _smtp_session(config: EmailConfig, hostname: str, context: ssl.SSLContext | None, deadline: float) -> None:
    """Runs in a thread: the receiver's session (connect, EHLO, STARTTLS/TLS, AUTH), then QUIT."""
    host, port = split_host_port(config.smarthost)
    try:
        with smtp_session(config, host, port, hostname, context, deadline) as smtp:
            smtp.noop()  # the session took the login and still answers; nothing is sent
    except SmtpRefused as exc:
        raise _Failed(str(exc)) from None


async def _alertmanager(config: ReceiverConfig, hostname: str, seconds: float) -> None:
    assert isinstance(config, AlertmanagerConfig)
    url = str(config.url).rstrip("/") + "/-/ready"
    headers = {"User-Agent": USER_AGENT}
    if config.bearer_token is not None:
        headers["Authorization"] = f"Bearer {config.bearer_token.get_secret_value()}"
    elif config.basic_auth is not None:
        pair = f"{config.basic_auth.username}:{config.basic_auth.password.get_secret_value()}"
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
    context = await _ssl(config.tls_verify, config.ca_file) if URL(url).scheme == "https" else None
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context or False)) as session, \
                session.get(url, headers=headers, allow_redirects=False) as resp:
            if resp.status != 200:
                raise _Failed(f"GET /-/ready answered {resp.status} {resp.reason or ''}".rstrip())
    except aiohttp.ClientError as exc:
        raise _Failed(describe_client_error(exc, url)) from None


async def _webhook(config: ReceiverConfig, hostname: str, seconds: float) -> None:
    assert isinstance(config, WebhookConfig)
    url = URL(str(config.url))
    context = await _ssl(config.tls_verify, config.ca_file) if url.scheme == "https" else None
    try:
        _reader, writer = await asyncio.open_connection(url.host, url.port, ssl=context,
                                                        server_hostname=url.host if context else None)
    except OSError as exc:  # ssl.SSLError included
        raise _Failed(connect_reason(exc)) from None
    writer.close()
    with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
        async with asyncio.timeout(1):
            await writer.wait_closed()


_TESTS = {MqttConfig: _mqtt, EmailConfig: _email, AlertmanagerConfig: _alertmanager, WebhookConfig: _webhook}
