"""The admin API (aiohttp): middlewares, one module of routes per resource, the OpenAPI document."""
