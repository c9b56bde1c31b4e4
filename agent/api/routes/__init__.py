"""One module per resource; each adds its endpoints to the shared table when imported."""

from agent.api.routing import RouteTable

ROUTES = RouteTable()

from agent.api.routes import (  # noqa: E402,F401
    alerts,
    audit,
    cache,
    checks,
    cleanup,
    components,
    config,
    events,
    healthcheck,
    history,
    incidents,
    keys,
    logs,
    maintenance,
    metrics,
    notifications,
    openapi,
    processes,
    query,
    rules,
    security,
    services,
    silences,
    store,
    system,
    tasks,
    units,
)

__all__ = ["ROUTES"]
