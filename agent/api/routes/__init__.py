"""One module per resource; each adds its endpoints to the shared table when imported."""

from agent.api.routing import RouteTable

ROUTES = RouteTable()

from agent.api.routes import (  # noqa: E402,F401
    checks,
    events,
    history,
    incidents,
    keys,
    metrics,
    openapi,
    processes,
    query,
    services,
    system,
    units,
)

__all__ = ["ROUTES"]
