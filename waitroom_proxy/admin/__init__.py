"""The admin API, served on its own listener.

``build_admin(engine, token)`` returns the ASGI app that ``waitroom-proxy serve`` runs on
``admin_host:admin_port``. Routes:

================================================  =============================================
``GET    /metrics``                               Prometheus text format (this process)
``GET    /admin/rooms``                           every room: effective policy, pause, overrides,
                                                  counts, ETA of the last waiter, admissions/min
``GET    /admin/rooms/{room}``                    one room
``PATCH  /admin/rooms/{room}``                    change policy fields at runtime (JSON body)
``DELETE /admin/rooms/{room}/overrides``          back to the configured policy
``POST   /admin/rooms/{room}/pause`` / ``resume`` stop / restart admissions
``POST   /admin/rooms/{room}/admit?count=N``      promote N waiters now (even while paused)
``POST   /admin/rooms/{room}/sessions/{id}/revoke`` end one session on every replica
``GET    /admin/stats``                           all rooms + store and event-bus health
``GET    /admin/rooms/{room}/history[?since=T]``  the last hour's samples (the console's charts)
``GET    /admin/openapi.json``                    the OpenAPI document of all of this
``GET    /admin/`` and ``/admin/dashboard``       the operator console (charts, controls)
================================================  =============================================

Every route needs ``Authorization: Bearer <token>``, except the dashboard's data-free shell.

==============  ===========================================================================
module          its job
==============  ===========================================================================
``auth``        the bearer-token check, before routing, in constant time
``api``         the FastAPI app: routes and error answers
``openapi``     the OpenAPI document, generated from the routes and their models
``models``      the bodies the document describes (the policy and PATCH from the schema)
``overrides``   a PATCH checked with the settings schema, merged into the stored overrides
``rooms``       what the API reads and changes in the engine (the only module touching it)
``dashboard``   the console's shell page (its script: ``templates/console.js``)
``history``     the console's samples of the last hour: a ring per room (pure)
``history_api`` the route that serves them
``sampler``     the task that takes the samples
``schedule``    a room's scheduled sale: read, set, preview, cancel
``metrics``     the ``/metrics`` endpoint, also for host apps
==============  ===========================================================================
"""

from __future__ import annotations

from waitroom_proxy.admin.api import build_admin, openapi_document
from waitroom_proxy.admin.auth import BearerAuth
from waitroom_proxy.admin.metrics import MetricsApp, metrics_app
from waitroom_proxy.admin.overrides import validate_overrides

__all__ = [
    "BearerAuth",
    "MetricsApp",
    "build_admin",
    "metrics_app",
    "openapi_document",
    "validate_overrides",
]
