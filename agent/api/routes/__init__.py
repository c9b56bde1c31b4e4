"""One module per resource; each adds its endpoints to the shared table when imported."""

from agent.api.routing import RouteTable

ROUTES = RouteTable()

from agent.api.routes import events, keys, metrics, openapi, processes, system  # noqa: E402,F401

__all__ = ["ROUTES"]
