"""`notifications:` — receivers, the routing tree, flap damping, the outbox's limits, forwarded events,
metrics snapshots."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from agent.config.durations import Duration
from agent.config.section import Section, unique_names
from agent.notify.base import ReceiverConfig
from agent.notify.outbox import OutboxConfig
from agent.notify.receivers import ReceiverUnion
from agent.notify.routing import RootRouteConfig, RouteConfig

DEFAULT_EVENTS = [
    "alert_state_changed", "alert_acknowledged", "alert_resolved", "check_state_changed",
    "maintenance_started", "maintenance_ended", "config_reloaded", "config_rejected",
]


class FlapDampingConfig(Section):
    """Netdata's `delay: up U down D multiplier M max X`: a change of an alert is notified after U (firing)
    or D (resolved); a change within that time cancels it and multiplies the delay, up to X."""

    delay_up: Duration = Field(0.0, ge=0, description="wait before notifying that an alert fires")
    delay_down: Duration = Field(0.0, ge=0, description="wait before notifying that an alert resolved")
    multiplier: float = Field(2.0, ge=1.0, description="the delay grows by this while the alert flaps")
    max: Duration = Field(3600.0, ge=0, description="the delay never grows past this")


class MetricsSnapshotConfig(Section):
    """Snapshots of the history views' current values, sent as `metrics` events (MQTT `…/metrics`)."""

    interval: Duration | None = Field(
        None, ge=1, description="send a snapshot this often to the receivers that take events; off when unset",
    )
    views: list[str] = Field(
        default_factory=list, description="names of history.views in each snapshot; all of them when empty",
    )


class NotificationsConfig(Section):
    receivers: list[ReceiverUnion] = Field(default_factory=list, description="where notifications go (agent/notify)")
    route: RootRouteConfig | None = Field(
        None, description="Alertmanager's routing tree; without it every receiver gets every alert, by alertname",
    )
    flap_damping: FlapDampingConfig = Field(default_factory=FlapDampingConfig)
    outbox: OutboxConfig = Field(default_factory=OutboxConfig)
    events: list[str] = Field(
        default_factory=lambda: list(DEFAULT_EVENTS),
        description="event types sent to receivers that take events (MQTT `…/events`)",
    )
    metrics: MetricsSnapshotConfig = Field(default_factory=MetricsSnapshotConfig)

    def forwarded_events(self) -> set[str]:
        """The event types receivers get: `events`, and `metrics` while snapshots are on."""
        return set(self.events) | ({"metrics"} if self.metrics.interval else set())

    @field_validator("receivers")
    @classmethod
    def _unique(cls, receivers: list[ReceiverConfig]) -> list[ReceiverConfig]:
        unique_names(receivers, "receiver")
        return receivers

    @model_validator(mode="after")
    def _known_receivers(self) -> NotificationsConfig:
        if self.route is not None:
            names = {r.name for r in self.receivers}
            unknown = sorted(self.route.receivers() - names)
            if unknown:
                raise ValueError(f"route names receivers that are not defined: {', '.join(unknown)}"
                                 f" (defined: {', '.join(sorted(names)) or 'none'})")
        return self


def effective_route(config: NotificationsConfig) -> RouteConfig | None:
    """The configured tree, or one that gives every alert to every receiver, grouped by alertname."""
    if config.route is not None:
        return config.route
    if not config.receivers:
        return None
    return RootRouteConfig.model_validate({
        "receiver": config.receivers[0].name, "group_by": ["alertname"],
        "routes": [{"receiver": r.name, "continue": True} for r in config.receivers],
    })
