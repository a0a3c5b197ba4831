"""``/admin/openapi.json``: the admin API described, generated from its routes and models.

FastAPI writes the document from the routes' parameter and answer models, and the PATCH body's
schema is the settings schema's runtime-mutable room fields (:data:`~waitroom_proxy.admin.models.
PolicyPatch`), so the document advertises exactly the values the API accepts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi.openapi.utils import get_openapi
from pydantic.json_schema import models_json_schema
from starlette.routing import BaseRoute

from waitroom_proxy.admin.models import PolicyPatch

__all__ = ["document"]

_METRICS_PATH = {
    "get": {
        "operationId": "metrics",
        "summary": "Prometheus metrics of this process",
        "responses": {
            "200": {
                "description": "Prometheus text exposition format",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }
        },
    }
}


def document(routes: Sequence[BaseRoute]) -> dict[str, Any]:
    """The document of ``routes``, with what FastAPI cannot see: the ``/metrics`` route (a
    plain ASGI app), the PATCH body's schema (the API reads that body itself) and the bearer
    token every operation but the dashboard's needs."""
    doc = get_openapi(
        title="waitroom-proxy admin API",
        version="1",
        description="Served on the admin listener. Every route needs the bearer token.",
        routes=routes,
    )
    doc["paths"] = {"/metrics": _METRICS_PATH, **doc["paths"]}
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    _, defs = models_json_schema(
        [(PolicyPatch, "validation")], ref_template="#/components/schemas/{model}"
    )
    for name, schema in defs.get("$defs", {}).items():
        schemas.setdefault(name, schema)
    doc["components"]["securitySchemes"] = {"bearerAuth": {"type": "http", "scheme": "bearer"}}
    doc["components"]["responses"] = {
        "Unauthorized": {
            "description": "Missing or wrong bearer token",
            "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
    }
    doc["security"] = [{"bearerAuth": []}]
    for ops in doc["paths"].values():
        for op in ops.values():
            if op.get("security") != []:
                op["responses"]["401"] = {"$ref": "#/components/responses/Unauthorized"}
    return doc
