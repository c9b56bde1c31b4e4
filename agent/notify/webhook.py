"""`webhook`: POST each notification to a URL, as Alertmanager's webhook does, or as Slack-style text.

`format: json` (the default) sends Alertmanager's webhook body (version 4), so a receiver written for
Alertmanager reads Vigil's notifications unchanged; Vigil adds `hostname`, a `test` flag, and each
alert's `id` (its `/api/v1/alerts/{id}`) and `value`. Times are RFC 3339 and an unknown `endsAt` is
Go's zero time, as Alertmanager writes them. `format: slack` sends `{"text": ...}`, which Slack,
Mattermost, Rocket.Chat and Teams-style incoming webhooks accept: a title line, then one line per alert.

With `hmac_secret`, each request carries `X-Vigil-Signature: sha256=<hex>`, the HMAC-SHA256 of the
exact body bytes (as GitHub's `X-Hub-Signature-256`), and `X-Vigil-Timestamp` (Unix seconds, when it
was sent). `X-Vigil-Message-Id` is the outbox id: delivery is at-least-once, so a receiver can drop a
message it already has. With `send_events: true`, bus events (alert and check state changes) are
posted too, as `{"type": ..., "data": ..., "id": ..., "time": ..., "hostname": ...}`.

Answers 2xx are success; 401, 403, 408, 429, 5xx, timeouts and connection errors are retried by the
outbox (wrong credentials hold messages until the config is fixed, within the outbox's limits); any
other answer (and a redirect, which is not followed) drops the message with a counter.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator

from agent.notify.base import AlertItem, DeliveryError, Message, Notification, Receiver, ReceiverConfig, register
from agent.notify.common import (
    CaFile,
    HttpSender,
    HttpUrl,
    Scrubber,
    alert_line,
    event_line,
    json_number,
    rfc3339,
    subject_line,
)

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
RESERVED_HEADERS = frozenset({
    "content-length", "content-type", "host", "transfer-encoding", "connection",
    "x-vigil-signature", "x-vigil-timestamp", "x-vigil-message-id",
})


class WebhookConfig(ReceiverConfig):
    type: Literal["webhook"]
    url: HttpUrl = Field(description="http:// or https:// URL the notifications are POSTed to")
    headers: dict[str, SecretStr] = Field(
        default_factory=dict, description="extra request headers (values are secrets: masked, never logged)"
    )
    hmac_secret: SecretStr | None = Field(
        None, description="sign each body: X-Vigil-Signature: sha256=<hex HMAC-SHA256 of the body>"
    )
    format: Literal["json", "slack"] = Field(
        "json", description="json: Alertmanager's webhook body (version 4); slack: {\"text\": ...}"
    )
    max_alerts: int = Field(0, ge=0, description="at most this many alerts per message (0: all), as Alertmanager")
    send_events: bool = Field(False, description="also POST bus events (alert and check state changes)")
    tls_verify: bool = Field(True, description="verify the server's certificate chain and name")
    ca_file: CaFile | None = Field(None, description="PEM file of CAs to trust instead of the system's")

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for name, secret in value.items():
            if not _TOKEN.fullmatch(name):
                raise ValueError(f"{name!r} is not a valid header name")
            if name.lower() in RESERVED_HEADERS:
                raise ValueError(f"header {name!r} is set by Vigil and cannot be configured")
            if any(ch in secret.get_secret_value() for ch in "\r\n\0"):
                raise ValueError(f"the value of header {name!r} contains a line break or NUL")
        return value

    @field_validator("hmac_secret")
    @classmethod
    def _hmac_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value():
            raise ValueError("hmac_secret is empty (leave it out to send unsigned requests)")
        return value


@register
class WebhookReceiver(Receiver):
    type = "webhook"
    Config = WebhookConfig

    def __init__(self, config: WebhookConfig, hostname: str):
        super().__init__(config, hostname)
        self.config: WebhookConfig = config
        # Per instance: only a webhook configured with send_events wants them queued.
        self.accepts_events = config.send_events  # type: ignore[misc]
        scrub = Scrubber([*config.headers.values(), config.hmac_secret])
        self._http = HttpSender(timeout=config.timeout, tls_verify=config.tls_verify, ca_file=config.ca_file,
                                scrub=scrub)

    async def deliver(self, message: Message) -> None:
        cfg = self.config
        if message.kind == "event":
            if not cfg.send_events:
                raise DeliveryError("this webhook does not take events (send_events is false)", retryable=False)
            doc = self._event_body(message.body)
        else:
            doc = self._notification_body(message.notification(), test=message.kind == "test")
        body = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
        headers = {name: value.get_secret_value() for name, value in cfg.headers.items()}
        headers["Content-Type"] = "application/json"
        headers["X-Vigil-Message-Id"] = str(message.id)
        if cfg.hmac_secret is not None:
            digest = hmac.new(cfg.hmac_secret.get_secret_value().encode(), body, hashlib.sha256).hexdigest()
            headers["X-Vigil-Signature"] = f"sha256={digest}"
            headers["X-Vigil-Timestamp"] = str(int(time.time()))
        await self._http.post(cfg.url, body, headers)

    def _notification_body(self, n: Notification, test: bool) -> dict[str, Any]:
        hostname = n.hostname or self.hostname
        alerts = n.alerts
        truncated = 0
        if self.config.max_alerts and len(alerts) > self.config.max_alerts:
            truncated = len(alerts) - self.config.max_alerts
            alerts = alerts[: self.config.max_alerts]
        if self.config.format == "slack":
            lines = [("[TEST] " if test or n.test else "") + subject_line(n)]
            lines += [alert_line(a, hostname) for a in alerts]
            if truncated:
                lines.append(f"… and {truncated} more")
            return {"text": _slack_escape("\n".join(lines))}
        return {
            "version": "4",
            "groupKey": n.group_key,
            "truncatedAlerts": truncated,
            "status": n.status,
            "receiver": n.receiver or self.name,
            "groupLabels": n.group_labels,
            "commonLabels": n.common_labels,
            "commonAnnotations": n.common_annotations,
            "externalURL": n.external_url,
            "alerts": [_alert(a) for a in alerts],
            "hostname": hostname,
            "test": test or n.test,
        }

    def _event_body(self, event: dict[str, Any]) -> dict[str, Any]:
        if self.config.format == "slack":
            return {"text": _slack_escape(event_line(event, self.hostname))}
        return {**event, "hostname": self.hostname}

    async def close(self) -> None:
        await self._http.close()


def _alert(a: AlertItem) -> dict[str, Any]:
    return {
        "status": a.status,
        "labels": a.labels,
        "annotations": a.annotations,
        "startsAt": rfc3339(a.starts_at),
        "endsAt": rfc3339(a.ends_at),
        "generatorURL": a.generator_url,
        "fingerprint": a.fingerprint,
        "id": a.alert_id,
        "value": json_number(a.value),
    }


def _slack_escape(text: str) -> str:
    """Slack reads `<...>` as links and mentions: the three characters it asks to be escaped."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
