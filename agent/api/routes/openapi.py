"""The OpenAPI 3 document, generated from the route table so it cannot drift from the routes."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from agent import __version__
from agent.api.routes import ROUTES
from agent.api.routing import Endpoint

_PATH_PARAM = re.compile(r"\{(\w+)\}")


def _error_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["status", "errorType", "error"],
        "properties": {
            "status": {"type": "string", "enum": ["error"]},
            "errorType": {"type": "string"},
            "error": {"type": "string"},
            "details": {"type": "object"},
            "request_id": {"type": "string"},
        },
    }


def _success_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["status", "data"],
        "properties": {"status": {"type": "string", "enum": ["success"]}, "data": {}},
    }


def _operation(ep: Endpoint, defs: dict[str, Any]) -> dict[str, Any]:
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _PATH_PARAM.findall(ep.path)
    ]
    if ep.query is not None:
        schema = ep.query.model_json_schema(ref_template="#/components/schemas/{model}")
        defs.update(schema.pop("$defs", {}))
        required = set(schema.get("required", []))
        for name, prop in schema.get("properties", {}).items():
            param = {"name": name, "in": "query", "required": name in required, "schema": prop}
            if "description" in prop:
                param["description"] = prop["description"]
            params.append(param)
    op: dict[str, Any] = {
        "summary": ep.summary,
        "operationId": f"{ep.method.lower()}_{re.sub(r'[^a-zA-Z0-9]+', '_', ep.path).strip('_')}",
        "tags": [ep.tag],
        "parameters": params,
        "responses": {},
    }
    if ep.body is not None:
        schema = ep.body.model_json_schema(ref_template="#/components/schemas/{model}")
        defs.update(schema.pop("$defs", {}))
        defs[ep.body.__name__] = schema
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ep.body.__name__}"}}},
        }
    success = 101 if ep.websocket else next((c for c in ep.responses if c < 300), 200)
    op["responses"][str(success)] = {"description": ep.responses.get(success, "success")}
    if ep.envelope and not ep.websocket:
        op["responses"][str(success)]["content"] = {
            "application/json": {"schema": {"$ref": "#/components/schemas/Success"}}}
    errors = {400: "bad input", 404: "not found"} if (ep.query or ep.body or "{" in ep.path) else {}
    if ep.body is not None:
        errors[413] = "request body too large"
    if ep.scope is not None:
        op["security"] = [{"bearer": []}, {"apiKey": []}]
        op["x-required-scope"] = ep.scope
        op["x-rate-limit-category"] = ep.category
        errors.update({401: "missing, wrong, expired or revoked key", 403: f"key lacks {ep.scope}",
                       429: "rate limit exceeded"})
        if ep.method not in ("GET", "HEAD", "OPTIONS"):
            errors[503] = "maintenance mode (MAINTENANCE_MODE) or the store is unavailable (disk full)"
    for code, text in {**errors, **{c: t for c, t in ep.responses.items() if c >= 300}}.items():
        op["responses"][str(code)] = {"description": text}
        if ep.envelope:
            op["responses"][str(code)]["content"] = {
                "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    return op


def build_document() -> dict[str, Any]:
    defs: dict[str, Any] = {"Error": _error_schema(), "Success": _success_schema()}
    paths: dict[str, dict[str, Any]] = {}
    for ep in ROUTES.endpoints:
        paths.setdefault(ep.path, {})[ep.method.lower()] = _operation(ep, defs)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Vigil admin API", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": defs,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
        },
    }


@ROUTES.route("GET", "/api/v1/openapi.json", summary="This API's OpenAPI 3 document", scope="read:system",
              tag="meta", envelope=False)
async def openapi(request: web.Request) -> web.Response:
    return web.json_response(build_document())
