"""`mqtt`: alert state, events and this agent's presence on an MQTT broker (Mosquitto, EMQX, ...).

Topics, under `topic_prefix` (default `vigil/<hostname>`):
- `…/status`: retained `online` on every (re)connect; the broker publishes the Last Will, retained
  `offline`, when the connection dies without a DISCONNECT; `close()` publishes `offline` itself and
  then disconnects cleanly.
- `…/alerts/<alertname>/<fingerprint>`: retained JSON of a firing alert (status, labels, annotations,
  startsAt, value, id, ...), replaced by an empty retained message when it resolves, which clears it:
  a dashboard subscribing to `…/alerts/#` gets exactly the alerts firing now.
- `…/events`: bus events (alert and check state changes, maintenance, config reloads) as JSON, not
  retained, and test messages (`"type": "test"`); `…/metrics` for events of type `metrics`.

One connection, opened on the first delivery and kept. Publishes are QoS 1 (configurable) and awaited:
for QoS 1 aiomqtt returns once the broker's PUBACK came, so a delivery that returned is on the broker.
A failure drops the connection (without DISCONNECT, so the broker marks the agent offline) and raises
a retryable DeliveryError; the next delivery, paced by the outbox's backoff, connects again. No task
of its own reconnects in the background: with nothing to send there is nothing to reconnect for, and
an idle connection is kept alive by MQTT's keepalive. A connection that the broker closed since the
last delivery is noticed at the first publish and replaced at once, within that delivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import socket
import ssl
import time
from typing import Any, Literal

import aiomqtt
import paho.mqtt.client as paho
import structlog
from aiomqtt.exceptions import MqttConnectError
from pydantic import Field, SecretStr, field_validator, model_validator

from agent.config.durations import Duration
from agent.notify.base import AlertItem, DeliveryError, Message, Receiver, ReceiverConfig, register
from agent.notify.common import CaFile, Scrubber, client_ssl_context, json_number, rfc3339, tls_reason

log = structlog.get_logger("vigil.notify")
CLOSE_SECONDS = 5.0
"""At most this long for `close()` (publish `offline`, disconnect) and for letting go of a broken connection."""


def _topic_part(text: str) -> str:
    """A label value as one topic level: no level separator, wildcards or NUL."""
    cleaned = "".join("_" if ch in "/+#\0" else ch for ch in text)
    return cleaned or "_"


class MqttConfig(ReceiverConfig):
    type: Literal["mqtt"]
    host: str = Field(min_length=1, description="broker host name or address")
    port: int | None = Field(None, ge=1, le=65535, description="broker port; default 1883, or 8883 with tls")
    tls: bool = Field(False, description="connect with TLS")
    tls_verify: bool = Field(True, description="verify the broker's certificate chain and name")
    ca_file: CaFile | None = Field(None, description="PEM file of CAs to trust instead of the system's")
    username: str | None = Field(None, min_length=1)
    password: SecretStr | None = None
    client_id: str | None = Field(None, min_length=1, max_length=256, description="default: vigil-<hostname>")
    topic_prefix: str | None = Field(None, description="default: vigil/<hostname>")
    qos: int = Field(1, ge=0, le=2, description="of every publish; 1 or 2 make a delivery wait for the broker")
    keepalive: Duration = Field(
        60.0, ge=1, le=65535, description="MQTT keepalive; the broker sees a dead connection after 1.5 times this"
    )

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        value = value.strip()
        if "://" in value or any(ch.isspace() or ch in "/@" for ch in value):
            raise ValueError(f"host {value!r} must be a host name or address (set port and tls separately)")
        return value.strip("[]")

    @field_validator("topic_prefix")
    @classmethod
    def _prefix(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value or value.startswith("/") or value.endswith("/"):
            raise ValueError("topic_prefix must not be empty or start or end with '/' (e.g. vigil/web1)")
        if any(ch in value for ch in "+#\0"):
            raise ValueError("topic_prefix must not contain the wildcards + or # (or NUL)")
        if value.startswith("$"):
            raise ValueError("topic_prefix must not start with '$' (reserved for the broker, e.g. $SYS)")
        return value

    @model_validator(mode="after")
    def _checks(self) -> MqttConfig:
        if self.password is not None and self.username is None:
            raise ValueError("a password needs a username")
        if not self.send_resolved:
            raise ValueError("send_resolved cannot be false for mqtt: the resolved message clears the retained"
                             " alert state")
        return self


@register
class MqttReceiver(Receiver):
    type = "mqtt"
    Config = MqttConfig
    accepts_events = True

    def __init__(self, config: MqttConfig, hostname: str):
        super().__init__(config, hostname)
        self.config: MqttConfig = config
        self.port = config.port or (8883 if config.tls else 1883)
        self.prefix = config.topic_prefix or f"vigil/{_topic_part(hostname or 'localhost')}"
        self.status_topic = f"{self.prefix}/status"
        self.client_id = config.client_id or f"vigil-{hostname or 'localhost'}"
        self.where = f"{config.host}:{self.port}"
        self._client: aiomqtt.Client | None = None
        self._ssl: ssl.SSLContext | None = None
        self._lock = asyncio.Lock()
        self._closed = False
        self._background: set[asyncio.Task[None]] = set()
        self._scrub = Scrubber([config.password])

    # --- what goes where ---

    def publications(self, message: Message) -> list[tuple[str, bytes, bool]]:
        """(topic, payload, retain) for a message, in the order they are published."""
        if message.kind == "event":
            topic = "metrics" if message.body.get("type") == "metrics" else "events"
            return [(f"{self.prefix}/{topic}", _json(message.body), False)]
        notification = message.notification()
        if message.kind == "test":
            body = {"type": "test", "time": time.time(),
                    "data": {"receiver": self.name, "hostname": notification.hostname or self.hostname,
                             "alerts": [self.alert_state(a) for a in notification.alerts]}}
            return [(f"{self.prefix}/events", _json(body), False)]
        out = []
        for alert in notification.alerts:
            topic = self.alert_topic(alert)
            payload = _json(self.alert_state(alert)) if alert.status == "firing" else b""
            out.append((topic, payload, True))
        return out

    def alert_topic(self, alert: AlertItem) -> str:
        name = _topic_part(alert.labels.get("alertname", ""))
        return f"{self.prefix}/alerts/{name}/{_topic_part(alert.fingerprint)}"

    @staticmethod
    def alert_state(a: AlertItem) -> dict[str, Any]:
        return {
            "status": a.status, "labels": a.labels, "annotations": a.annotations, "startsAt": rfc3339(a.starts_at),
            "endsAt": rfc3339(a.ends_at), "value": json_number(a.value), "id": a.alert_id,
            "fingerprint": a.fingerprint, "generatorURL": a.generator_url, "acknowledged": a.acknowledged,
        }

    def greeting(self) -> dict[str, Any]:
        return {"type": "agent_online", "time": time.time(),
                "data": {"hostname": self.hostname, "receiver": self.name, "status_topic": self.status_topic}}

    # --- delivery ---

    async def deliver(self, message: Message) -> None:
        publications = self.publications(message)
        async with self._lock:
            if self._closed:
                raise DeliveryError("the receiver is closed")
            try:
                async with asyncio.timeout(self.config.timeout):
                    await self._publish_all(publications)
            except TimeoutError:
                self._abandon()
                raise DeliveryError(f"{self.where}: no answer within {self.config.timeout:g}s") from None
            except DeliveryError:
                self._abandon()
                raise
            except (aiomqtt.MqttError, OSError, ssl.SSLError) as exc:
                self._abandon()
                raise DeliveryError(self._scrub(f"{self.where}: {_describe(exc)}")) from None
            except asyncio.CancelledError:
                self._abandon()  # a publish may be half done: start afresh next time
                raise

    async def _publish_all(self, publications: list[tuple[str, bytes, bool]]) -> None:
        reused = self._client is not None
        client = await self._connection()
        for i, (topic, payload, retain) in enumerate(publications):
            try:
                await client.publish(topic, payload, qos=self.config.qos, retain=retain, timeout=math.inf)
            except aiomqtt.MqttCodeError as exc:
                if not (reused and i == 0 and exc.rc == paho.MQTT_ERR_NO_CONN):
                    raise
                # The broker closed the kept connection since the last delivery: a new one, once.
                self._abandon()
                reused = False
                client = await self._connection()
                await client.publish(topic, payload, qos=self.config.qos, retain=retain, timeout=math.inf)

    async def _connection(self) -> aiomqtt.Client:
        if self._client is not None:
            return self._client
        cfg = self.config
        if cfg.tls and self._ssl is None:
            try:
                self._ssl = await asyncio.to_thread(client_ssl_context, cfg.tls_verify, cfg.ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise DeliveryError(f"cannot load ca_file {cfg.ca_file}: {tls_reason(exc)}") from None
        client = aiomqtt.Client(
            cfg.host, self.port, username=cfg.username,
            password=cfg.password.get_secret_value() if cfg.password is not None else None,
            identifier=self.client_id, clean_session=True, keepalive=math.ceil(cfg.keepalive),
            will=aiomqtt.Will(self.status_topic, b"offline", qos=cfg.qos, retain=True),
            tls_context=self._ssl if cfg.tls else None, timeout=cfg.timeout,
        )
        # aiomqtt connects in an executor thread that a cancellation does not stop: let it finish, then let
        # go of a connection that came up after its caller gave up, or of the socket of one that failed.
        entering = asyncio.ensure_future(client.__aenter__())
        try:
            await asyncio.shield(entering)
        except BaseException:
            entering.add_done_callback(lambda done: self._after_failed_connect(done, client))
            raise
        self._client = client
        await client.publish(self.status_topic, b"online", qos=cfg.qos, retain=True, timeout=math.inf)
        log.info("mqtt_connected", receiver=self.name, broker=self.where, client_id=self.client_id)
        return client

    def _after_failed_connect(self, entering: asyncio.Future[Any], client: aiomqtt.Client) -> None:
        if entering.cancelled() or entering.exception() is not None:
            _shut_down(client)  # aiomqtt leaves the socket of a CONNACK that never came open
        else:
            self._abandon(client)

    def _abandon(self, client: aiomqtt.Client | None = None) -> None:
        """Let go of the connection without DISCONNECT, so the broker publishes the Last Will (`offline`)
        if it is still there, and release the client in the background."""
        if client is None:
            client, self._client = self._client, None
        if client is None:
            return
        _shut_down(client)
        task = asyncio.get_running_loop().create_task(self._release(client), name=f"mqtt-release-{self.name}")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _release(self, client: aiomqtt.Client) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CLOSE_SECONDS):
                await client.__aexit__(None, None, None)
        # The lost connection is aiomqtt's `_disconnected` error: looked at here, so asyncio does not log
        # it as never retrieved.
        with contextlib.suppress(BaseException):
            client._disconnected.exception()

    async def close(self) -> None:
        """Say `offline` and disconnect cleanly (the broker then drops the Last Will)."""
        async with self._lock:
            self._closed = True
            client, self._client = self._client, None
            if client is not None:
                try:
                    async with asyncio.timeout(CLOSE_SECONDS):
                        await client.publish(self.status_topic, b"offline", qos=self.config.qos, retain=True,
                                             timeout=math.inf)
                        await client.__aexit__(None, None, None)
                    log.info("mqtt_disconnected", receiver=self.name, broker=self.where)
                except (TimeoutError, aiomqtt.MqttError, OSError) as exc:
                    log.warning("mqtt_close_failed", receiver=self.name, broker=self.where,
                                error=self._scrub(_describe(exc)))
                    self._abandon(client)
            if self._background:
                await asyncio.gather(*self._background, return_exceptions=True)


def _shut_down(client: aiomqtt.Client) -> None:
    """Shut the connection's socket down under paho, which then sees the connection lost and cleans up
    (aiomqtt has no call to drop a connection without DISCONNECT)."""
    sock = client._client.socket()
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _json(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, MqttConnectError):
        return f"the broker refused the connection: {exc.rc}"
    if isinstance(exc, aiomqtt.MqttCodeError):
        return f"{exc.args[0]}: {exc}" if exc.args else str(exc)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate not accepted: {tls_reason(exc)}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {tls_reason(exc)}"
    if isinstance(exc, TimeoutError):  # an OSError too: before the general case, which would say nothing
        return "timed out"
    if isinstance(exc, OSError):
        return f"cannot connect: {exc.strerror or exc}"
    return str(exc) or type(exc).__name__
