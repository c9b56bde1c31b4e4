"""Messages as the dispatcher queues them, for the receiver tests."""

from __future__ import annotations

import itertools
import time
from typing import Any

from agent.notify.base import AlertItem, Message, MessageKind, Notification

_ids = itertools.count(1)
HOST = "web1"


def alert(name: str = "HighLoad", status: str = "firing", fingerprint: str = "a1b2c3d4e5f60718", *,
          starts_at: float | None = None, ends_at: float | None = None, value: float | None = 7.25,
          alert_id: int | None = 41, **labels: str) -> AlertItem:
    start = starts_at if starts_at is not None else time.time() - 120
    return AlertItem(
        fingerprint=fingerprint, status=status,  # type: ignore[arg-type]
        labels={"alertname": name, "severity": "critical", **labels},
        annotations={"summary": f"{name} on {HOST}", "description": "load is 7.25 for 5m", "runbook_url": "http://rb"},
        starts_at=start, ends_at=ends_at, generator_url="http://web1:9100/graph?g0.expr=up", value=value,
        alert_id=alert_id,
    )


def notification(*alerts: AlertItem, receiver: str = "r", **fields: Any) -> Notification:
    firing = any(a.status == "firing" for a in alerts)
    base: dict[str, Any] = {
        "group_key": '{}/{}:{alertname="HighLoad"}', "group_labels": {"alertname": "HighLoad"},
        "common_labels": {"alertname": "HighLoad", "severity": "critical"},
        "common_annotations": {}, "external_url": "http://web1:9108", "hostname": HOST,
    }
    base.update(fields)
    return Notification(receiver=receiver, status="firing" if firing else "resolved", alerts=list(alerts), **base)


def message(body: Notification | dict[str, Any], kind: MessageKind = "notification", receiver: str = "r") -> Message:
    doc = body.to_dict() if isinstance(body, Notification) else body
    return Message(id=next(_ids), receiver=receiver, kind=kind, body=doc, created_at=time.time())


def probe_message(receiver: str = "r") -> Message:
    """What `POST /api/v1/notifications/test` queues (agent.notify.dispatcher.Dispatcher.send_test)."""
    now = time.time()
    item = AlertItem(
        fingerprint="0000000000000000", status="firing",
        labels={"alertname": "VigilTestNotification", "severity": "info", "instance": HOST},
        annotations={"summary": "Test notification from Vigil", "description": f"Sent to check receiver {receiver}."},
        starts_at=now, ends_at=now + 60,
    )
    body = Notification(receiver=receiver, status="firing", alerts=[item], hostname=HOST,
                        common_labels=dict(item.labels), test=True)
    return message(body, kind="test", receiver=receiver)


def event(type_: str = "alert_state_changed", **data: Any) -> Message:
    return message({"id": next(_ids), "type": type_, "time": time.time(), "data": data}, kind="event")
