"""ASGI layer: the gatekeeper middleware, the streaming reverse proxy, routes and admin API."""
