"""Assemble the aiohttp application from the route table and the middlewares."""

from __future__ import annotations

from aiohttp import web

from agent.api.middlewares import ENDPOINTS, authenticate, envelope, input_limits, maintenance_gate
from agent.api.routes import ROUTES
from agent.api.services import SERVICES, Services


def build_app(svc: Services) -> web.Application:
    # The body limit is enforced by our middleware from live config; aiohttp's own is a backstop.
    app = web.Application(middlewares=[envelope, authenticate, maintenance_gate, input_limits],
                          client_max_size=64 * 1024 * 1024)
    app[SERVICES] = svc
    table = {}
    for ep in ROUTES.endpoints:
        methods = [ep.method, "HEAD"] if ep.method == "GET" and not ep.websocket else [ep.method]
        for method in methods:
            # HEAD runs the GET handler, so it maps to the same endpoint: same scope, same limits.
            route = app.router.add_route(method, ep.path, ep.handler)
            table[(method, route.resource.canonical if route.resource else ep.path)] = ep
    app[ENDPOINTS] = table
    return app
