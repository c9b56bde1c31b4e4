"""What a receiver is: a named destination that delivers one outbox message at a time.

Notifications never go straight to a receiver. The dispatcher (routing, grouping, damping) writes
each message into the outbox in SQLite first; the delivery loop of each receiver then hands the
oldest pending message to `deliver()`, and deletes it only once `deliver()` returned. A message
that fails stays at the head of its receiver's queue and is retried with backoff, so a receiver
that is down gets everything when it comes back, in order, and never holds up the others.

As with checks, one file per type (`agent/notify/<type>.py`), each registering its class under its
`type` with its settings model (`Config`, a subclass of `ReceiverConfig`) next to its code.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from pydantic import Field

from agent.config.durations import Duration
from agent.config.section import Section

RECEIVER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")
MessageKind = Literal["notification", "event", "test"]


class DeliveryError(Exception):
    """The message was not delivered. `retryable` False means retrying cannot help (a 4xx other
    than 401/403/408/429, a payload the receiver refuses): the message is dropped with a counter."""

    def __init__(self, message: str, retryable: bool = True):
        super().__init__(message)
        self.retryable = retryable


@dataclass
class AlertItem:
    """One alert instance inside a notification, in Alertmanager's webhook shape plus Vigil's fields."""

    fingerprint: str
    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: float
    ends_at: float | None = None
    generator_url: str = ""
    value: float | None = None
    alert_id: int | None = None
    """The alert instance's id in `/api/v1/alerts/{id}`."""
    acknowledged: bool = False
    """An operator took it: no repeat notifications while it keeps firing."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint, "status": self.status, "labels": self.labels,
            "annotations": self.annotations, "startsAt": self.starts_at, "endsAt": self.ends_at,
            "generatorURL": self.generator_url, "value": self.value, "id": self.alert_id,
            "acknowledged": self.acknowledged,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AlertItem:
        return cls(
            fingerprint=data["fingerprint"], status=data["status"], labels=dict(data["labels"]),
            annotations=dict(data.get("annotations") or {}), starts_at=float(data["startsAt"]),
            ends_at=data.get("endsAt"), generator_url=data.get("generatorURL") or "", value=data.get("value"),
            alert_id=data.get("id"), acknowledged=bool(data.get("acknowledged", False)),
        )


@dataclass
class Notification:
    """One group of alerts for one receiver: the body of Alertmanager's webhook (version 4).

    Timestamps are Unix seconds here; each receiver formats them as its protocol wants (RFC 3339
    for Alertmanager and webhooks)."""

    receiver: str
    status: Literal["firing", "resolved"]
    alerts: list[AlertItem]
    group_key: str = ""
    group_labels: dict[str, str] = field(default_factory=dict)
    common_labels: dict[str, str] = field(default_factory=dict)
    common_annotations: dict[str, str] = field(default_factory=dict)
    external_url: str = ""
    hostname: str = ""
    test: bool = False
    """A message from `POST /api/v1/notifications/test`: receivers may say so in their text."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "receiver": self.receiver, "status": self.status, "alerts": [a.to_dict() for a in self.alerts],
            "groupKey": self.group_key, "groupLabels": self.group_labels, "commonLabels": self.common_labels,
            "commonAnnotations": self.common_annotations, "externalURL": self.external_url,
            "hostname": self.hostname, "test": self.test,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Notification:
        return cls(
            receiver=data["receiver"], status=data["status"],
            alerts=[AlertItem.from_dict(a) for a in data.get("alerts", [])],
            group_key=data.get("groupKey", ""), group_labels=dict(data.get("groupLabels") or {}),
            common_labels=dict(data.get("commonLabels") or {}),
            common_annotations=dict(data.get("commonAnnotations") or {}),
            external_url=data.get("externalURL", ""), hostname=data.get("hostname", ""),
            test=bool(data.get("test", False)),
        )


@dataclass
class Message:
    """An outbox entry as handed to `deliver()`: a notification, a bus event (MQTT `…/events`), or a test."""

    id: int
    receiver: str
    kind: MessageKind
    body: dict[str, Any]
    created_at: float
    attempts: int = 0

    def notification(self) -> Notification:
        return Notification.from_dict(self.body)


class ReceiverConfig(Section):
    """Keys every receiver has; each type adds its own."""

    name: str = Field(pattern=RECEIVER_NAME.pattern, description="referenced by routes")
    type: str
    timeout: Duration = Field(10.0, gt=0, description="one delivery attempt is cut after this")
    send_resolved: bool = Field(True, description="also notify when alerts resolve")


class Receiver(ABC):
    type: ClassVar[str]
    Config: ClassVar[type[ReceiverConfig]]
    accepts_events: ClassVar[bool] = False
    """Whether bus events (alert and check state changes) are queued for it too (MQTT `…/events`)."""

    def __init__(self, config: ReceiverConfig, hostname: str):
        self.config = config
        self.name = config.name
        self.hostname = hostname

    @abstractmethod
    async def deliver(self, message: Message) -> None:
        """Deliver once, within `config.timeout`; raise DeliveryError saying what failed."""

    def greeting(self) -> dict[str, Any] | None:
        """An event body queued for this receiver when it is configured (at start and when its settings
        change), or None. MQTT's makes the connection that publishes the retained `online` status as soon
        as the broker can be reached, instead of at the first alert."""
        return None

    async def close(self) -> None:
        """Release connections; called when the receiver is removed or Vigil stops."""
        return None


REGISTRY: dict[str, type[Receiver]] = {}


def register(cls: type[Receiver]) -> type[Receiver]:
    REGISTRY[cls.type] = cls
    return cls
