"""One module per resource; each adds its endpoints to the shared table when imported."""

from agent.api.routing import RouteTable

ROUTES = RouteTable()

from agent.api.routes import (  # noqa: E402,F401
    events,
    history,
    keys,
    metrics,
    openapi,
    processes,
    query,
    system,
)

__all__ = ["ROUTES"]
