"""The operator console, ``GET /admin/`` and ``/admin/dashboard``: a shell without data.

A browser cannot attach a bearer header to a page it navigates to, so the shell is served
without authentication, a decision: it holds no data (no room names, no counts, no token) and
is the same static document for everybody. It asks for the token once, keeps it in
``sessionStorage`` (gone when the tab closes, never in a cookie, so no CSRF), and calls the
admin API with the ``Authorization`` header: ``/admin/stats`` every 2 s (the rooms table), the
selected room's ``history`` (charts of the last hour) and ``schedule`` (phase and countdown),
and the controls' routes (pause, resume, admit N, PATCH capacity, admit rate, message). The
data is only ever served with a valid token.

The page loads nothing else (it must work offline and the CSP forbids it): its script,
``templates/console.js``, is inlined with the style under one per-response nonce, as the
waiting page inlines ``waitroom.js``. The charts are inline SVG the script draws; data goes in
with ``textContent``/``setAttribute``, never as markup. An error answer of the API is shown
with its ``detail`` under the controls.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from jinja2 import Environment, select_autoescape
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from waitroom_proxy.admin.auth import NO_STORE
from waitroom_proxy.asgi.page_sources import builtin_source as _builtin_source
from waitroom_proxy.asgi.page_sources import content_security_policy, new_nonce

__all__ = ["PUBLIC_PATHS", "dashboard"]

PUBLIC_PATHS = frozenset({"/admin/", "/admin/dashboard"})
"""The dashboard shell: static, data-free, served without a token."""


@cache
def _template() -> Any:
    env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
    return env.from_string(_builtin_source("dashboard.html"))


@cache
def _script() -> Markup:
    return Markup(_builtin_source("console.js"))  # noqa: S704 - our own file


async def dashboard(request: Request) -> Response:
    """The shell, with a fresh nonce for its one script and one style."""
    nonce = new_nonce()
    return HTMLResponse(
        _template().render(nonce=nonce, script=_script()),
        headers={
            "content-security-policy": content_security_policy(nonce),
            "referrer-policy": "no-referrer",
            "x-content-type-options": "nosniff",
            "x-frame-options": "DENY",
            **NO_STORE,
        },
    )
