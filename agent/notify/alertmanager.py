"""`alertmanager`: hand alerts to an Alertmanager as Prometheus does (POST `<url>/api/v2/alerts`).

Alertmanager groups, deduplicates, silences and routes by itself, so the dispatcher sends this receiver
what Prometheus's notifier sends: every firing alert again each resend delay, and each resolved alert
once. Each alert goes with its labels (plus `instance` = this host's name when the rule left it out,
so alerts of different hosts never merge in Alertmanager), its annotations, `startsAt`, and
`generatorURL` when known. `endsAt`:
- a resolved alert: the time it resolved (the time it was queued when that is not known);
- a firing alert: the alert's `ends_at` when the dispatcher set one (Prometheus sends its `ValidUntil`,
  the evaluation time plus four resend intervals, so an agent that dies lets its alerts expire), moved
  on by the time the message waited in the outbox; and otherwise no `endsAt`, which Alertmanager reads
  as "now + resolve_timeout". Moved on, because after an outage of Alertmanager the outbox hands it
  the backlog in order: a firing alert delivered an hour late with its original `endsAt` would be
  resolved on arrival and fire again with the next message, a flap notified downstream. The backlog
  holds the resolution too, if there was one, and it comes after.

A test message (`POST /api/v1/notifications/test`) is sent as one alert `alertname=VigilTestNotification`
starting at delivery and ending a minute later (the length the test message carries, re-timed to the
delivery). It is not sent already resolved: Alertmanager never notifies a group whose alerts resolved
before its `group_wait` ran out, so such a test would reach nobody downstream. This way it shows in
Alertmanager's UI, goes out as firing through Alertmanager's route, and then resolves by itself.

Alertmanager answers 200, or 400 with the reason for a batch it refuses (which is dropped: it would be
refused again); 401/403 (credentials), 5xx, timeouts and connection errors are retried.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from yarl import URL

from agent.config.section import Section
from agent.notify.base import AlertItem, DeliveryError, Message, Receiver, ReceiverConfig, register
from agent.notify.common import CaFile, HttpSender, HttpUrl, Scrubber, rfc3339

API_PATH = "/api/v2/alerts"
TEST_ALERT_SECONDS = 60.0


class BasicAuth(Section):
    username: str = Field(min_length=1)
    password: SecretStr


class AlertmanagerConfig(ReceiverConfig):
    type: Literal["alertmanager"]
    url: HttpUrl = Field(description=f"Alertmanager's base URL, e.g. http://alertmanager:9093 ({API_PATH} is added)")
    basic_auth: BasicAuth | None = Field(None, description="username and password")
    bearer_token: SecretStr | None = Field(None, description="sent as Authorization: Bearer <token>")
    tls_verify: bool = Field(True, description="verify the server's certificate chain and name")
    ca_file: CaFile | None = Field(None, description="PEM file of CAs to trust instead of the system's")

    @field_validator("url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        path = URL(value).path.rstrip("/")
        if path.endswith(("/api/v2/alerts", "/api/v1/alerts", "/api/v2", "/api/v1")):
            raise ValueError(f"give Alertmanager's base URL without the API path ({API_PATH} is added)")
        return value

    @model_validator(mode="after")
    def _one_auth(self) -> AlertmanagerConfig:
        if self.basic_auth is not None and self.bearer_token is not None:
            raise ValueError("at most one of basic_auth and bearer_token can be configured")
        return self

    @property
    def alerts_url(self) -> str:
        return self.url.rstrip("/") + API_PATH


@register
class AlertmanagerReceiver(Receiver):
    type = "alertmanager"
    Config = AlertmanagerConfig

    def __init__(self, config: AlertmanagerConfig, hostname: str):
        super().__init__(config, hostname)
        self.config: AlertmanagerConfig = config
        secrets: list[SecretStr | None] = [config.bearer_token]
        self._authorization: str | None = None
        if config.bearer_token is not None:
            self._authorization = f"Bearer {config.bearer_token.get_secret_value()}"
        elif config.basic_auth is not None:
            pair = f"{config.basic_auth.username}:{config.basic_auth.password.get_secret_value()}"
            self._authorization = "Basic " + base64.b64encode(pair.encode()).decode()
            secrets += [config.basic_auth.password, self._authorization.split(" ", 1)[1]]
        self._http = HttpSender(timeout=config.timeout, tls_verify=config.tls_verify, ca_file=config.ca_file,
                                scrub=Scrubber(secrets))

    async def deliver(self, message: Message) -> None:
        if message.kind == "event":
            raise DeliveryError("alertmanager receivers take alerts, not events", retryable=False)
        notification = message.notification()
        hostname = notification.hostname or self.hostname
        if message.kind == "test" or notification.test:
            alerts = [self._test_alert(a, hostname) for a in notification.alerts]
        else:
            alerts = [self._alert(a, hostname, message.created_at) for a in notification.alerts]
        if not alerts:
            return
        body = json.dumps(alerts, separators=(",", ":"), ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json"}
        if self._authorization is not None:
            headers["Authorization"] = self._authorization
        await self._http.post(self.config.alerts_url, body, headers)

    @staticmethod
    def _alert(a: AlertItem, hostname: str, queued_at: float) -> dict[str, Any]:
        doc = _labels_and_annotations(a, hostname)
        doc["startsAt"] = rfc3339(a.starts_at)
        if a.status == "resolved":
            # Alertmanager refuses an alert that ends before it starts (400 for the whole batch).
            doc["endsAt"] = rfc3339(max(a.ends_at if a.ends_at is not None else queued_at, a.starts_at))
        elif a.ends_at is not None and a.ends_at > a.starts_at:
            doc["endsAt"] = rfc3339(a.ends_at + max(0.0, time.time() - queued_at))
        if a.generator_url:
            doc["generatorURL"] = a.generator_url
        return doc

    @staticmethod
    def _test_alert(a: AlertItem, hostname: str) -> dict[str, Any]:
        length = a.ends_at - a.starts_at if a.ends_at is not None and a.ends_at > a.starts_at else TEST_ALERT_SECONDS
        now = time.time()
        doc = _labels_and_annotations(a, hostname)
        doc["startsAt"], doc["endsAt"] = rfc3339(now), rfc3339(now + length)
        if a.generator_url:
            doc["generatorURL"] = a.generator_url
        return doc

    async def close(self) -> None:
        await self._http.close()


def _labels_and_annotations(a: AlertItem, hostname: str) -> dict[str, Any]:
    """Empty values left out, as Prometheus drops empty labels (Alertmanager would keep `x=""` apart)."""
    labels = {k: v for k, v in a.labels.items() if v != ""}
    if hostname:
        labels.setdefault("instance", hostname)
    return {"labels": labels, "annotations": {k: v for k, v in a.annotations.items() if v != ""}}
