"""Notifications: the receivers with their outbox queues, and a test message to one receiver."""

from __future__ import annotations

from aiohttp import web
from pydantic import Field

from agent.api.errors import ApiError, ok
from agent.api.formats import iso
from agent.api.routes import ROUTES
from agent.api.routing import BodyModel, parse_body
from agent.api.services import Services, services
from agent.notify.dispatcher import Dispatcher


def notifier_of(svc: Services) -> Dispatcher:
    if svc.notifier is None:
        raise ApiError(503, "notifications are not running")
    return svc.notifier


@ROUTES.route("GET", "/api/v1/notifications", summary="Receivers, their outbox queues and delivery counts",
              scope="read:alerts", tag="alerts")
async def list_receivers(request: web.Request) -> web.Response:
    svc = services(request)
    notifier = notifier_of(svc)
    stats = await notifier.outbox.stats()
    receivers = []
    for r in notifier.receivers.values():
        figures = stats.get(r.name, {})
        receivers.append({"name": r.name, "type": r.type, **figures,
                          "last_success_at": iso(figures.get("last_success_at"))})
    return ok({"receivers": receivers, "groups": len(notifier.groups), "maintenance_hold": svc.maintenance.is_active()})


class TestMessage(BodyModel):
    receiver: str = Field(min_length=1, max_length=100, description="name of a configured receiver")


@ROUTES.route("POST", "/api/v1/notifications/test", summary="Queue a test notification for one receiver",
              scope="write:alerts", body=TestMessage, tag="alerts",
              responses={202: "queued; delivery is tracked in GET /api/v1/notifications", 404: "no such receiver"})
async def send_test(request: web.Request) -> web.Response:
    svc = services(request)
    body = await parse_body(request, TestMessage, svc.config.config.api.max_body_bytes)
    notifier = notifier_of(svc)
    try:
        message_id = await notifier.send_test(body.receiver, request["key"].id)
    except KeyError:
        known = ", ".join(sorted(notifier.receivers)) or "none configured"
        raise ApiError(404, f"no receiver named {body.receiver!r} (receivers: {known})") from None
    await svc.audit.record("notification_test", actor=request["key"].id, remote=request.remote,
                           target=f"receiver:{body.receiver}", outcome="queued", details={"message_id": message_id})
    return ok({"receiver": body.receiver, "message_id": message_id, "status": "queued"}, status=202)
