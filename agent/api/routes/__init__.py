"""One module per resource; each adds its endpoints to the shared table when imported."""

from agent.api.routing import RouteTable

ROUTES = RouteTable()

from agent.api.routes import (  # noqa: E402,F401
    alerts,
    checks,
    events,
    history,
    incidents,
    keys,
    maintenance,
    metrics,
    notifications,
    openapi,
    processes,
    query,
    rules,
    services,
    silences,
    system,
    units,
)

__all__ = ["ROUTES"]
